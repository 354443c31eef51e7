/* Binary PPM (P6) and PGM (P5) reading for the C host programs. */
#ifndef OBJAUDIO_TOOLS_PNM_H
#define OBJAUDIO_TOOLS_PNM_H

#include <stdint.h>

/* Reads a binary PPM (channels 3) or PGM (channels 1) of at most 8192x8192 into *pixels (malloc'd, 8-bit,
 * scaled to 255; a 0/1 mask is kept as it is, as the Python loader reads it). On failure prints one line
 * "PROG: error: ..." on stderr and returns -1. */
int pnm_read(const char* prog, const char* path, int channels, uint8_t** pixels, uint32_t* width, uint32_t* height);

#endif
