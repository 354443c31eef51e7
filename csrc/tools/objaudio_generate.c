/* objaudio-generate: the sound of the masked objects of an image, from C, through libobjaudio.
 *
 *   objaudio-generate --engine DIR --image scene.ppm --mask obj.pgm [--mask obj2.pgm ...]
 *                     [--union compose|mask] [--sampler NAME] [--steps N] [--cfg W] [--seed S]
 *                     --out out.wav
 *
 * The image is a binary PPM (P6), each mask a binary PGM (P5) of the image's size (0 = outside,
 * maxval = inside); no --mask means the whole scene. Writes a mono 32-bit float WAV at the engine's
 * sample rate. Exit status: 0 ok, 1 bad input or failed generation (one line on stderr), 2 bad usage.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "objaudio_engine.h"

#define MAX_MASKS 16

static const char* USAGE =
    "usage: objaudio-generate --engine DIR --image scene.ppm --mask obj.pgm [--mask obj2.pgm ...]\n"
    "                         [--union compose|mask] [--sampler NAME] [--steps N] [--cfg W] [--seed S]\n"
    "                         --out out.wav\n"
    "  --engine DIR     engine folder built by python -m export.engine\n"
    "  --image FILE     binary PPM (P6) RGB image\n"
    "  --mask FILE      binary PGM (P5) mask of the image's size; repeat for a union; none: whole scene\n"
    "  --union MODE     compose (default: one condition per mask) or mask (the paper's pixel union)\n"
    "  --sampler NAME   ddim, dpmpp, dpmpp3m or unipc (default: the engine's)\n"
    "  --steps N        denoising steps, 1 to the engine's max_steps (999) (default: the engine's)\n"
    "  --cfg W          guidance scale >= 1 (default: the engine's)\n"
    "  --seed S         noise seed, the same noise as objaudio generate --seed S (default 0)\n"
    "  --out FILE       WAV file to write (32-bit float, mono)\n";

/* The objaudio_sampler of a name (the Python side's --sampler names), or OBJAUDIO_SAMPLER_DEFAULT for none. */
static int32_t sampler_of(const char* name) {
    static const char* const names[] = {"ddim", "dpmpp", "dpmpp3m", "unipc"};   /* objaudio_sampler order, from 1 */
    for (int32_t i = 0; i < 4; ++i)
        if (!strcmp(name, names[i])) return i + 1;
    return OBJAUDIO_SAMPLER_DEFAULT;
}

/* ---- PNM reading ---------------------------------------------------------------------------- */
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

/* Reads a binary PPM (channels 3) or PGM (channels 1) into *pixels (malloc'd, 8-bit, scaled to 255). */
static int read_pnm(const char* path, int channels, uint8_t** pixels, uint32_t* width, uint32_t* height) {
    char tok[32];
    long w, h, maxval;
    FILE* f = fopen(path, "rb");
    *pixels = NULL;
    if (!f) {
        fprintf(stderr, "error: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (pnm_token(f, tok, sizeof tok) || strcmp(tok, channels == 3 ? "P6" : "P5") != 0) {
        fprintf(stderr, "error: %s is not a binary %s file (convert it, e.g. with ImageMagick or PIL)\n", path,
                channels == 3 ? "PPM (P6)" : "PGM (P5)");
        fclose(f);
        return -1;
    }
    if (pnm_token(f, tok, sizeof tok) || (w = strtol(tok, NULL, 10)) <= 0 || w > 8192 ||
        pnm_token(f, tok, sizeof tok) || (h = strtol(tok, NULL, 10)) <= 0 || h > 8192 ||
        pnm_token(f, tok, sizeof tok) || (maxval = strtol(tok, NULL, 10)) <= 0 || maxval > 255) {
        fprintf(stderr, "error: %s has a bad header (8-bit images of at most 8192x8192 are read)\n", path);
        fclose(f);
        return -1;
    }
    size_t n = (size_t)w * (size_t)h * (size_t)channels;
    uint8_t* data = malloc(n);
    if (!data) {
        fprintf(stderr, "error: out of memory reading %s\n", path);
        fclose(f);
        return -1;
    }
    if (fread(data, 1, n, f) != n) {
        fprintf(stderr, "error: %s is truncated\n", path);
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

/* ---- WAV writing (IEEE float, mono) --------------------------------------------------------- */
static void put_u32(uint8_t* p, uint32_t v) { p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24; }
static void put_u16(uint8_t* p, uint16_t v) { p[0] = v; p[1] = v >> 8; }

static int write_wav(const char* path, const float* pcm, size_t n, int sample_rate) {
    uint8_t hdr[44];
    uint32_t bytes = (uint32_t)(n * 4);
    memcpy(hdr, "RIFF", 4);
    put_u32(hdr + 4, 36 + bytes);
    memcpy(hdr + 8, "WAVEfmt ", 8);
    put_u32(hdr + 16, 16);
    put_u16(hdr + 20, 3);                       /* WAVE_FORMAT_IEEE_FLOAT */
    put_u16(hdr + 22, 1);                       /* mono */
    put_u32(hdr + 24, (uint32_t)sample_rate);
    put_u32(hdr + 28, (uint32_t)sample_rate * 4);
    put_u16(hdr + 32, 4);
    put_u16(hdr + 34, 32);
    memcpy(hdr + 36, "data", 4);
    put_u32(hdr + 40, bytes);
    FILE* f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "error: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    int ok = fwrite(hdr, 1, sizeof hdr, f) == sizeof hdr;
    for (size_t i = 0; ok && i < n; ++i) {     /* little-endian float32 */
        uint32_t bits;
        uint8_t b[4];
        memcpy(&bits, &pcm[i], 4);
        put_u32(b, bits);
        ok = fwrite(b, 1, 4, f) == 4;
    }
    if (fclose(f) != 0 || !ok) {
        fprintf(stderr, "error: writing %s failed\n", path);
        remove(path);
        return -1;
    }
    return 0;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int parse_long(const char* s, long lo, long hi, long* out) {
    char* end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int main(int argc, char** argv) {
    const char *engine_dir = NULL, *image = NULL, *out = NULL, *masks[MAX_MASKS];
    size_t n_masks = 0;
    objaudio_request req;
    objaudio_request_init(&req);
    for (int i = 1; i < argc; ++i) {
        const char* a = argv[i];
        const char* v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(USAGE, stdout);
            return 0;
        }
        if (v == NULL) {
            fprintf(stderr, "error: %s needs a value\n%s", a, USAGE);
            return 2;
        }
        ++i;
        if (!strcmp(a, "--engine")) engine_dir = v;
        else if (!strcmp(a, "--image")) image = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--mask")) {
            if (n_masks == MAX_MASKS) {
                fprintf(stderr, "error: at most %d --mask\n", MAX_MASKS);
                return 2;
            }
            masks[n_masks++] = v;
        } else if (!strcmp(a, "--union") && (!strcmp(v, "compose") || !strcmp(v, "mask"))) {
            req.union_mode = !strcmp(v, "mask") ? OBJAUDIO_UNION_MASK : OBJAUDIO_UNION_COMPOSE;
        } else if (!strcmp(a, "--sampler") && sampler_of(v) != OBJAUDIO_SAMPLER_DEFAULT) {
            req.sampler = sampler_of(v);
        } else if (!strcmp(a, "--steps") && !parse_long(v, 1, 100000, &n)) {
            req.steps = (int32_t)n;
        } else if (!strcmp(a, "--cfg")) {
            char* end;
            req.cfg = strtof(v, &end);
            if (*end || end == v || !(req.cfg >= 1.0f)) {
                fprintf(stderr, "error: --cfg must be a number >= 1, got %s\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--seed")) {
            char* end;
            errno = 0;
            req.seed = strtoull(v, &end, 10);
            if (errno || *end || end == v || v[0] == '-') {
                fprintf(stderr, "error: --seed must be a non-negative integer, got %s\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "error: unknown flag or bad value: %s %s\n%s", a, v, USAGE);
            return 2;
        }
    }
    if (!engine_dir || !image || !out) {
        fprintf(stderr, "error: --engine, --image and --out are required\n%s", USAGE);
        return 2;
    }
    if (objaudio_abi_version() != OBJAUDIO_ABI_VERSION) {
        fprintf(stderr, "error: libobjaudio ABI %u, this program was built for %d: rebuild it\n",
                objaudio_abi_version(), OBJAUDIO_ABI_VERSION);
        return 1;
    }

    int rc = 1;
    char err[1024];
    objaudio_engine* eng = NULL;
    objaudio_scene* scene = NULL;
    uint8_t* rgb = NULL;
    uint8_t* mask_px[MAX_MASKS] = {0};
    float* pcm = NULL;
    uint32_t w = 0, h = 0;
    objaudio_engine_info info;
    double t0 = now_seconds(), t1, t2, t3;
    objaudio_status st = objaudio_engine_open(engine_dir, NULL, &eng, err, sizeof err);
    if (st != OBJAUDIO_OK) {
        fprintf(stderr, "error: %s\n", err);
        goto done;
    }
    t1 = now_seconds();
    if (read_pnm(image, 3, &rgb, &w, &h)) goto done;
    for (size_t k = 0; k < n_masks; ++k) {
        uint32_t mw, mh;
        if (read_pnm(masks[k], 1, &mask_px[k], &mw, &mh)) goto done;
        if (mw != w || mh != h) {
            fprintf(stderr, "error: mask %s is %ux%u but the image is %ux%u: make the mask the same size as the image\n",
                    masks[k], mw, mh, w, h);
            goto done;
        }
    }
    req.masks = (const uint8_t* const*)mask_px;
    req.n_masks = n_masks;
    req.mask_width = w;
    req.mask_height = h;
    if ((st = objaudio_engine_get_info(eng, &info)) != OBJAUDIO_OK ||
        (st = objaudio_scene_encode(eng, rgb, w, h, &scene)) != OBJAUDIO_OK) {
        fprintf(stderr, "error: %s\n", objaudio_last_error(eng));
        goto done;
    }
    t2 = now_seconds();
    pcm = malloc(info.clip_samples * sizeof(float));
    if (!pcm) {
        fprintf(stderr, "error: out of memory\n");
        goto done;
    }
    size_t written = 0;
    if ((st = objaudio_generate(eng, scene, &req, pcm, info.clip_samples, &written)) != OBJAUDIO_OK) {
        fprintf(stderr, "error: %s\n", objaudio_last_error(eng));
        goto done;
    }
    t3 = now_seconds();
    if (write_wav(out, pcm, written, info.sample_rate)) goto done;
    printf("%s: %zu samples at %d Hz (open %.3f s, encode %.3f s, generate %.3f s)\n", out, written,
           info.sample_rate, t1 - t0, t2 - t1, t3 - t2);
    rc = 0;
done:
    free(pcm);
    for (size_t k = 0; k < n_masks; ++k) free(mask_px[k]);
    free(rgb);
    objaudio_scene_free(scene);
    objaudio_engine_close(eng);
    return rc;
}
