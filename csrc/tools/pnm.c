/* Binary PPM (P6) and PGM (P5) reading for the C host programs (objaudio-generate, objaudio-loop). */
#define _XOPEN_SOURCE 700
#include "pnm.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* One line on stderr: "PROG: error: MESSAGE". */
static void fail(const char* prog, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: error: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int pnm_token(FILE* f, char* buf, size_t size) {   /* next header token, skipping # comments */
    int c;
    size_t n = 0;
    while ((c = fgetc(f)) != EOF) {
        if (c == '#') {
            while ((c = fgetc(f)) != EOF && c != '\n') {}
        } else if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            break;
        }
    }
    while (c != EOF && c != ' ' && c != '\t' && c != '\n' && c != '\r' && n + 1 < size) {
        buf[n++] = (char)c;
        c = fgetc(f);
    }
    buf[n] = '\0';
    return n > 0 ? 0 : -1;   /* the one whitespace byte after maxval has been consumed */
}

int pnm_read(const char* prog, const char* path, int channels, uint8_t** pixels, uint32_t* width, uint32_t* height) {
    char tok[32];
    long w, h, maxval;
    struct stat st;
    *pixels = NULL;
    if (stat(path, &st) != 0) {
        fail(prog, "%s %s: %s", channels == 3 ? "image" : "mask", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {                  /* a named pipe would block fopen; a folder is no image */
        fail(prog, "%s %s is %s: give a binary %s file", channels == 3 ? "image" : "mask", path,
              S_ISDIR(st.st_mode) ? "a folder" : "not a regular file (a named pipe, a device or a socket)",
              channels == 3 ? "PPM (P6)" : "PGM (P5)");
        return -1;
    }
    FILE* f = fopen(path, "rb");
    if (!f) {
        fail(prog, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (pnm_token(f, tok, sizeof tok) || strcmp(tok, channels == 3 ? "P6" : "P5") != 0) {
        fail(prog, "%s is not a binary %s file (convert it, e.g. with ImageMagick or PIL)", path,
              channels == 3 ? "PPM (P6)" : "PGM (P5)");
        fclose(f);
        return -1;
    }
    if (pnm_token(f, tok, sizeof tok) || (w = strtol(tok, NULL, 10)) <= 0 || w > 8192 ||
        pnm_token(f, tok, sizeof tok) || (h = strtol(tok, NULL, 10)) <= 0 || h > 8192 ||
        pnm_token(f, tok, sizeof tok) || (maxval = strtol(tok, NULL, 10)) <= 0 || maxval > 255) {
        fail(prog, "%s has a bad header (8-bit images of at most 8192x8192 are read)", path);
        fclose(f);
        return -1;
    }
    size_t n = (size_t)w * (size_t)h * (size_t)channels;
    uint8_t* data = malloc(n);
    if (!data) {
        fail(prog, "out of memory reading %s", path);
        fclose(f);
        return -1;
    }
    if (fread(data, 1, n, f) != n) {
        fail(prog, "%s is truncated", path);
        free(data);
        fclose(f);
        return -1;
    }
    fclose(f);
    if (maxval != 255 && !(channels == 1 && maxval == 1)) {   /* 0/1 masks are read as the Python loader does */
        for (size_t i = 0; i < n; ++i) data[i] = (uint8_t)((data[i] > maxval ? maxval : data[i]) * 255 / maxval);
    }
    *pixels = data;
    *width = (uint32_t)w;
    *height = (uint32_t)h;
    return 0;
}
