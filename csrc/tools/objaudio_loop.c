/* objaudio-loop: the example of a game's use of libobjaudio. A seamless loop of the masked object's sound,
 * pulled from a stream block by block as an audio thread would pull it, and written into a WAV file as
 * it comes; no Python anywhere.
 *
 *   objaudio-loop ENGINE_DIR scene.ppm mask.pgm LOOP_SECONDS PLAY_SECONDS out.wav [STEPS [SEED]]
 *
 * LOOP_SECONDS is the loop's period (at least the engine's clip); PLAY_SECONDS how much to play: past one
 * period the stream plays the loop again, and the join is as seamless as the rest. out.wav (mono 32-bit
 * float at the engine's rate) must not exist yet. Prints when the first block came and the period.
 * Exit status: 0 ok, 1 a failure (one line on stderr), 2 bad usage.
 */
#define _XOPEN_SOURCE 700
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "objaudio_engine.h"
#include "pnm.h"

#define PROG "objaudio-loop"
#define BLOCK 1024                 /* samples per read: an audio callback's buffer */

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void put_u32(uint8_t* p, uint32_t v) { p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24; }
static void put_u16(uint8_t* p, uint16_t v) { p[0] = v; p[1] = v >> 8; }

/* The 44-byte header of a mono float32 WAV of n samples. */
static void wav_header(uint8_t h[44], uint32_t n, uint32_t rate) {
    memcpy(h, "RIFF", 4); put_u32(h + 4, 36 + 4 * n); memcpy(h + 8, "WAVEfmt ", 8);
    put_u32(h + 16, 16); put_u16(h + 20, 3 /* IEEE float */); put_u16(h + 22, 1); put_u32(h + 24, rate);
    put_u32(h + 28, 4 * rate); put_u16(h + 32, 4); put_u16(h + 34, 32);
    memcpy(h + 36, "data", 4); put_u32(h + 40, 4 * n);
}

static int fail(objaudio_engine* eng, const char* what) {
    fprintf(stderr, PROG ": error: %s: %s\n", what, eng ? objaudio_last_error(eng) : "");
    return 1;
}

int main(int argc, char** argv) {
    if (argc < 7 || argc > 9) {
        fprintf(stderr, "usage: " PROG " ENGINE_DIR scene.ppm mask.pgm LOOP_SECONDS PLAY_SECONDS out.wav "
                        "[STEPS [SEED]]\n");
        return 2;
    }
    const char *engine_dir = argv[1], *image = argv[2], *mask_path = argv[3], *out = argv[6];
    char* end;
    const double play = strtod(argv[5], &end);
    struct stat st;
    if (*end || !(play > 0 && play <= 3600)) {
        fprintf(stderr, PROG ": error: PLAY_SECONDS must be a number in (0, 3600], got '%s'\n", argv[5]);
        return 2;
    }
    if (stat(out, &st) == 0) {
        fprintf(stderr, PROG ": error: %s exists: give a new file (this example never replaces one)\n", out);
        return 2;
    }

    int rc = 1;
    uint8_t *rgb = NULL, *mask = NULL;
    uint32_t w, h, mw, mh;
    objaudio_engine* eng = NULL;
    objaudio_scene* scene = NULL;
    objaudio_options* opts = NULL;
    objaudio_stream* stream = NULL;
    FILE* f = NULL;
    char err[512];
    if (pnm_read(PROG, image, 3, &rgb, &w, &h) || pnm_read(PROG, mask_path, 1, &mask, &mw, &mh)) goto done;
    if (mw != w || mh != h) {
        fprintf(stderr, PROG ": error: the mask is %ux%u but the image %ux%u\n", mw, mh, w, h);
        goto done;
    }
    if (objaudio_abi_version() != OBJAUDIO_ABI_MAJOR || objaudio_abi_minor() < OBJAUDIO_ABI_MINOR) {
        fprintf(stderr, PROG ": error: libobjaudio ABI %u.%u, this program needs %d.%d or later\n",
                objaudio_abi_version(), objaudio_abi_minor(), OBJAUDIO_ABI_MAJOR, OBJAUDIO_ABI_MINOR);
        goto done;
    }
    if (objaudio_engine_open(engine_dir, NULL, &eng, err, sizeof err) != OBJAUDIO_OK) {
        fprintf(stderr, PROG ": error: %s\n", err);
        goto done;
    }
    if (objaudio_scene_encode(eng, rgb, w, h, &scene) != OBJAUDIO_OK) { fail(eng, "encoding the image"); goto done; }

    /* the run as text options: a new option never changes the header */
    if (objaudio_options_create(eng, &opts) != OBJAUDIO_OK ||
        objaudio_options_set(opts, "loop", "true") != OBJAUDIO_OK ||
        objaudio_options_set(opts, "duration", argv[4]) != OBJAUDIO_OK ||
        (argc > 7 && objaudio_options_set(opts, "steps", argv[7]) != OBJAUDIO_OK) ||
        (argc > 8 && objaudio_options_set(opts, "seed", argv[8]) != OBJAUDIO_OK)) {
        fail(eng, "options");
        rc = 2;
        goto done;
    }
    objaudio_request req;
    objaudio_request_init(&req);
    const uint8_t* masks[1] = {mask};
    req.masks = masks;
    req.n_masks = 1;
    req.mask_width = w;
    req.mask_height = h;

    const double t0 = now_seconds();
    if (objaudio_stream_open(eng, scene, &req, opts, &stream) != OBJAUDIO_OK) { fail(eng, "opening the stream"); goto done; }
    size_t period = 0, origin = 0;
    int32_t loop = 0;
    objaudio_engine_info info;
    objaudio_engine_get_info(eng, &info);
    objaudio_stream_info(stream, &period, &origin, &loop);
    const uint32_t total = (uint32_t)(play * info.sample_rate);

    f = fopen(out, "wb");
    uint8_t header[44];
    wav_header(header, total, (uint32_t)info.sample_rate);
    if (!f || fwrite(header, 1, 44, f) != 44) { fprintf(stderr, PROG ": error: cannot write %s\n", out); goto done; }
    float block[BLOCK];
    uint32_t written = 0;
    while (written < total) {                      /* what an audio thread's feeder does, block after block */
        const size_t want = total - written < BLOCK ? total - written : BLOCK;
        size_t got = 0;
        if (objaudio_stream_read(stream, block, want, &got) != OBJAUDIO_OK) { fail(eng, "reading the stream"); goto done; }
        if (written == 0) printf("first %zu samples after %.2f s\n", got, now_seconds() - t0);
        if (got == 0) break;                       /* a clip's stream ends; a loop's never does */
        if (fwrite(block, sizeof(float), got, f) != got) { fprintf(stderr, PROG ": error: cannot write %s\n", out); goto done; }
        written += (uint32_t)got;
    }
    if (written != total) { fprintf(stderr, PROG ": error: the loop ended after %u samples\n", written); goto done; }
    printf("loop of %zu samples (%.2f s at %d Hz, starting %zu samples in), %u samples played in %.2f s\n", period,
           (double)period / info.sample_rate, info.sample_rate, origin, written, now_seconds() - t0);
    rc = 0;
done:
    if (f && fclose(f) != 0 && rc == 0) {
        fprintf(stderr, PROG ": error: cannot write %s\n", out);
        rc = 1;
    }
    if (rc != 0 && f) remove(out);                 /* no half-written file stays behind */
    objaudio_stream_close(stream);
    objaudio_options_destroy(opts);
    objaudio_scene_free(scene);
    objaudio_engine_close(eng);
    free(rgb);
    free(mask);
    return rc;
}
