/* objaudio-generate: the sound of the masked objects of an image, from C, through libobjaudio.
 *
 *   objaudio-generate --engine DIR --image scene.ppm --mask obj.pgm [--mask obj2.pgm ...]
 *                     [--union compose|mask|mix] [--sampler NAME] [--steps N] [--cfg W] [--seed S]
 *                     [--sample-rate HZ] [--duration S] [--loop] [--force] --out out.wav
 *
 * The image is a binary PPM (P6), each mask a binary PGM (P5) of the image's size (0 = outside,
 * maxval = inside); no --mask means the whole scene. Writes a mono 32-bit float WAV at the engine's
 * engine's sample rate (16 kHz), or at --sample-rate HZ (44100 or 48000 for games and DAWs) through
 * objaudio_resample (libsoxr, as objaudio generate --sample-rate).
 *
 * The output follows `objaudio generate`'s rules (objaudio_rt/frontends/outputs.py): it must end in .wav, is
 * never one of the inputs (the image, a mask, a file of the engine folder; also through a symbolic or
 * hard link), replaces an existing file only with --force (keeping its mode), and is written to a
 * temporary .NAME.<pid>.objaudio-part in its folder, then renamed into place; a temporary left by a
 * killed run is removed by the next write of that file. Every problem is one line on stderr,
 * `objaudio-generate: error: ...`. Exit status: 0 ok, 1 bad input or failed generation, 2 bad usage
 * (a flag, its value, or the output path).
 */
#define _XOPEN_SOURCE 700          /* nftw, realpath, fchmod, kill */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "objaudio_engine.h"
#include "pnm.h"

#define MAX_MASKS 16
#define MAX_STEPS 999              /* options.max_steps: the schedule's 1000 timesteps less one */
#define MAX_CFG 100.0f             /* options.MAX_CFG */
#define PART ".objaudio-part"      /* outputs.PART */
#define PROG "objaudio-generate"

static const char* USAGE =
    "usage: objaudio-generate --engine DIR --image scene.ppm --mask obj.pgm [--mask obj2.pgm ...]\n"
    "                         [--union compose|mask|mix] [--sampler NAME] [--steps N] [--cfg W] [--seed S]\n"
    "                         [--sample-rate HZ] [--duration S] [--loop] [--force] --out out.wav\n"
    "  --engine DIR     engine folder built by python -m export.engine\n"
    "  --image FILE     binary PPM (P6) RGB image\n"
    "  --mask FILE      binary PGM (P5) mask of the image's size; repeat for a union; none: whole scene\n"
    "  --union MODE     compose (default: one condition per mask), mask (the paper's pixel union) or mix\n"
    "                   (each mask generated alone, the sounds summed)\n"
    "  --sampler NAME   ddim, dpmpp, dpmpp3m or unipc (default: the engine's)\n"
    "  --steps N        denoising steps, 1 to the engine's max_steps (999) (default: the engine's)\n"
    "  --cfg W          guidance scale, 1 to 100 (default: the engine's)\n"
    "  --seed S         noise seed in [0, 2**64 - 1], the same noise as objaudio generate --seed S (default 0)\n"
    "  --sample-rate HZ the WAV's rate, 8000 to 192000 (44100 or 48000 for games and DAWs; default: the engine's)\n"
    "  --duration S     seconds, from the engine's clip to 120 (past the clip: overlapping windows)\n"
    "  --loop           a seamless loop of --duration seconds (default: the clip); the end flows into the start\n"
    "  --out FILE       WAV file to write (32-bit float, mono); never an input\n"
    "  --force          replace --out if it exists\n";

/* One line on stderr: "objaudio-generate: error: MESSAGE". */
static void error(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs(PROG ": error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* The objaudio_sampler of a name (the Python side's --sampler names), or OBJAUDIO_SAMPLER_DEFAULT for none. */
static int32_t sampler_of(const char* name) {
    static const char* const names[] = {"ddim", "dpmpp", "dpmpp3m", "unipc"};   /* objaudio_sampler order, from 1 */
    for (int32_t i = 0; i < 4; ++i)
        if (!strcmp(name, names[i])) return i + 1;
    return OBJAUDIO_SAMPLER_DEFAULT;
}

/* ---- output rules (objaudio_rt/frontends/outputs.py) ---------------------------------------------------- */
static dev_t g_out_dev;             /* the existing output file nftw compares the engine's files with */
static ino_t g_out_ino;
static char g_engine_hit[4096];

static int same_as_output(const char* path, const struct stat* st, int type, struct FTW* ftw) {
    (void)ftw;
    if (type == FTW_F && st->st_dev == g_out_dev && st->st_ino == g_out_ino) {
        snprintf(g_engine_hit, sizeof g_engine_hit, "%s", path);
        return 1;                   /* stops the walk */
    }
    return 0;
}

/* The folder of `path` ("." for a bare name), into `dir`. */
static void folder_of(const char* path, char* dir, size_t size) {
    const char* slash = strrchr(path, '/');
    if (!slash) snprintf(dir, size, ".");
    else if (slash == path) snprintf(dir, size, "/");
    else snprintf(dir, size, "%.*s", (int)(slash - path), path);
}

static int ends_with_wav(const char* path) {
    size_t n = strlen(path);
    if (n < 4) return 0;
    const char* e = path + n - 4;
    return e[0] == '.' && (e[1] | 32) == 'w' && (e[2] | 32) == 'a' && (e[3] | 32) == 'v';
}

/* 0 when `out` may be written: a .wav name, not a folder, none of the inputs (same inode: links too),
 * new unless `force`, in a writable folder. Else one error line and -1. */
static int check_output(const char* out, const char* const* inputs, size_t n_inputs, const char* engine_dir,
                        int force) {
    struct stat os, is;
    char dir[4096];
    const char* base = strrchr(out, '/') ? strrchr(out, '/') + 1 : out;
    if (!ends_with_wav(out) || strlen(base) <= 4) {
        error("--out must end in .wav (this program writes WAV files), got %s", out);
        return -1;
    }
    if (stat(out, &os) == 0) {
        if (S_ISDIR(os.st_mode)) {
            error("%s is a folder: give a file name for the output", out);
            return -1;
        }
        for (size_t k = 0; k < n_inputs; ++k) {
            if (stat(inputs[k], &is) == 0 && is.st_dev == os.st_dev && is.st_ino == os.st_ino) {
                error("output %s is the input %s: choose another output path (an output never replaces an input, "
                      "even with --force)", out, inputs[k]);
                return -1;
            }
        }
        g_out_dev = os.st_dev;
        g_out_ino = os.st_ino;
        if (nftw(engine_dir, same_as_output, 16, FTW_PHYS) == 1) {
            error("output %s is the engine's file %s: choose another output path (an output never replaces an "
                  "input, even with --force)", out, g_engine_hit);
            return -1;
        }
        if (!force) {
            error("%s already exists: choose another path or pass --force to overwrite it", out);
            return -1;
        }
    }
    folder_of(out, dir, sizeof dir);
    if (stat(dir, &is) != 0 || !S_ISDIR(is.st_mode)) {
        error("cannot write %s: folder %s does not exist", out, dir);
        return -1;
    }
    if (access(dir, W_OK) != 0) {
        error("cannot write %s: folder %s is not writable", out, dir);
        return -1;
    }
    return 0;
}

/* Removes .NAME.<pid>.objaudio-part files of `out` whose writer no longer runs (killed mid-write). */
static void remove_stale_parts(const char* out) {
    char dir[4096], path[8192];
    const char* base = strrchr(out, '/') ? strrchr(out, '/') + 1 : out;
    size_t nb = strlen(base), np = strlen(PART);
    folder_of(out, dir, sizeof dir);
    DIR* d = opendir(dir);
    if (!d) return;
    struct dirent* e;
    while ((e = readdir(d)) != NULL) {
        const char* name = e->d_name;
        size_t n = strlen(name);
        if (n <= nb + 2 + np || name[0] != '.' || strncmp(name + 1, base, nb) || name[nb + 1] != '.' ||
            strcmp(name + n - np, PART))
            continue;
        char* end;
        long pid = strtol(name + nb + 2, &end, 10);
        if (end != name + n - np || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == -1 && errno == ESRCH) {
            snprintf(path, sizeof path, "%s/%s", dir, name);
            unlink(path);
        }
    }
    closedir(d);
}

/* ---- WAV writing (IEEE float, mono) --------------------------------------------------------- */
static void put_u32(uint8_t* p, uint32_t v) { p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24; }
static void put_u16(uint8_t* p, uint16_t v) { p[0] = v; p[1] = v >> 8; }

static int write_all(int fd, const uint8_t* p, size_t n) {
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Writes the WAV to .NAME.<pid>.objaudio-part beside `path`, then renames it into place (an existing
 * file, replaced with --force, keeps its mode; a new one gets the umask's). Nothing is left on failure. */
static int write_wav(const char* path, const float* pcm, size_t n, int sample_rate) {
    uint8_t hdr[44];
    uint32_t bytes = (uint32_t)(n * 4);
    char dir[4096], tmp[8192];
    struct stat old;
    const char* base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
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
    remove_stale_parts(path);
    folder_of(path, dir, sizeof dir);
    snprintf(tmp, sizeof tmp, "%s/.%s.%ld%s", dir, base, (long)getpid(), PART);
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
    if (fd < 0) {
        error("cannot write %s: %s; nothing was written", path, strerror(errno));
        return -1;
    }
    int ok = (stat(path, &old) != 0 || fchmod(fd, old.st_mode & 07777) == 0) && write_all(fd, hdr, sizeof hdr) == 0;
    uint8_t buf[4096];
    for (size_t i = 0; ok && i < n;) {          /* little-endian float32, a buffer at a time */
        size_t k = 0;
        for (; k < sizeof buf && i < n; k += 4, ++i) {
            uint32_t bits;
            memcpy(&bits, &pcm[i], 4);
            put_u32(buf + k, bits);
        }
        ok = write_all(fd, buf, k) == 0;
    }
    ok = ok && fsync(fd) == 0;
    int saved = errno;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        if (ok) saved = errno;
        unlink(tmp);
        error("cannot write %s: %s; nothing was written", path,
              saved == ENOSPC ? "the disk is full" : strerror(saved));
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

/* A generation of `duration` seconds (NULL: the clip) or a loop through objaudio_options: the request's run
 * fields become text keys, the request keeps the selection. *pcm is malloc'd. */
static int generate_long(objaudio_engine* eng, objaudio_scene* scene, const objaudio_request* req,
                         const char* duration, int loop, float** pcm, size_t* written) {
    static const char* const samplers[] = {"ddim", "dpmpp", "dpmpp3m", "unipc"};
    objaudio_options* opts = NULL;
    objaudio_request sel = *req;
    char text[4][32];
    int rc = -1;
    snprintf(text[0], sizeof text[0], "%d", (int)req->steps);
    snprintf(text[1], sizeof text[1], "%.9g", (double)req->cfg);
    snprintf(text[2], sizeof text[2], "%llu", (unsigned long long)req->seed);
    snprintf(text[3], sizeof text[3], "%s", req->union_mode == OBJAUDIO_UNION_MASK ? "mask"
                                            : req->union_mode == OBJAUDIO_UNION_MIX ? "mix" : "compose");
    sel.union_mode = 0;
    sel.sampler = 0;
    sel.steps = 0;
    sel.cfg = 0.0f;
    sel.seed = 0;
    if (objaudio_options_create(eng, &opts) != OBJAUDIO_OK ||
        (req->steps && objaudio_options_set(opts, "steps", text[0]) != OBJAUDIO_OK) ||
        (req->sampler && objaudio_options_set(opts, "sampler", samplers[req->sampler - 1]) != OBJAUDIO_OK) ||
        (req->cfg != 0.0f && objaudio_options_set(opts, "cfg", text[1]) != OBJAUDIO_OK) ||
        objaudio_options_set(opts, "seed", text[2]) != OBJAUDIO_OK ||
        objaudio_options_set(opts, "union", text[3]) != OBJAUDIO_OK ||
        (duration && objaudio_options_set(opts, "duration", duration) != OBJAUDIO_OK) ||
        (loop && objaudio_options_set(opts, "loop", "true") != OBJAUDIO_OK)) {
        error("%s", objaudio_last_error(eng));
        goto done;
    }
    size_t most = 0;
    objaudio_generate_with_options(eng, scene, &sel, opts, NULL, 0, &most);      /* asks for the length */
    if (most == 0 || !(*pcm = malloc(most * sizeof(float)))) {
        error("%s", most == 0 ? objaudio_last_error(eng) : "out of memory");
        goto done;
    }
    if (objaudio_generate_with_options(eng, scene, &sel, opts, *pcm, most, written) != OBJAUDIO_OK) {
        error("%s", objaudio_last_error(eng));
        goto done;
    }
    rc = 0;
done:
    objaudio_options_destroy(opts);
    return rc;
}

int main(int argc, char** argv) {
    const char *engine_dir = NULL, *image = NULL, *out = NULL, *inputs[MAX_MASKS + 1];
    const char** masks = inputs + 1;
    size_t n_masks = 0;
    int force = 0;
    long rate = 0;                               /* 0: the engine's own */
    const char* duration = NULL;                 /* text, as the options key takes it */
    int loop = 0;
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
        if (!strcmp(a, "--force")) {
            force = 1;
            continue;
        }
        if (!strcmp(a, "--loop")) {
            loop = 1;
            continue;
        }
        if (strcmp(a, "--engine") && strcmp(a, "--image") && strcmp(a, "--out") && strcmp(a, "--mask") &&
            strcmp(a, "--union") && strcmp(a, "--sampler") && strcmp(a, "--steps") && strcmp(a, "--cfg") &&
            strcmp(a, "--seed") && strcmp(a, "--sample-rate") && strcmp(a, "--duration")) {
            error("unknown flag %s (see " PROG " --help)", a);
            return 2;
        }
        if (v == NULL) {
            error("%s needs a value (see " PROG " --help)", a);
            return 2;
        }
        ++i;
        if (!strcmp(a, "--engine")) engine_dir = v;
        else if (!strcmp(a, "--image")) image = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--mask")) {
            if (n_masks == MAX_MASKS) {
                error("at most %d --mask", MAX_MASKS);
                return 2;
            }
            masks[n_masks++] = v;
        } else if (!strcmp(a, "--union")) {
            if (strcmp(v, "compose") && strcmp(v, "mask") && strcmp(v, "mix")) {
                error("--union must be compose, mask or mix, got %s", v);
                return 2;
            }
            req.union_mode = !strcmp(v, "mask") ? OBJAUDIO_UNION_MASK
                           : !strcmp(v, "mix") ? OBJAUDIO_UNION_MIX : OBJAUDIO_UNION_COMPOSE;
        } else if (!strcmp(a, "--sampler")) {
            if ((req.sampler = sampler_of(v)) == OBJAUDIO_SAMPLER_DEFAULT) {
                error("unknown --sampler %s: use one of ddim, dpmpp, dpmpp3m, unipc", v);
                return 2;
            }
        } else if (!strcmp(a, "--steps")) {
            if (parse_long(v, 1, MAX_STEPS, &n)) {
                error("steps must be an integer in [1, %d], got %s", MAX_STEPS, v);
                return 2;
            }
            req.steps = (int32_t)n;
        } else if (!strcmp(a, "--sample-rate")) {
            if (parse_long(v, OBJAUDIO_MIN_SAMPLE_RATE, OBJAUDIO_MAX_SAMPLE_RATE, &rate)) {
                error("--sample-rate must be an integer from %d to %d Hz (44100 or 48000 for games and DAWs), got %s",
                      OBJAUDIO_MIN_SAMPLE_RATE, OBJAUDIO_MAX_SAMPLE_RATE, v);
                return 2;
            }
        } else if (!strcmp(a, "--duration")) {
            char* end;
            const double seconds = strtod(v, &end);
            if (*end || end == v || !(seconds > 0.0 && seconds <= 120.0)) {
                error("duration must be a number of seconds in (0, 120], got %s", v);
                return 2;
            }
            duration = v;
        } else if (!strcmp(a, "--cfg")) {
            char* end;
            req.cfg = strtof(v, &end);
            if (*end || end == v || !(req.cfg >= 1.0f && req.cfg <= MAX_CFG)) {
                error("cfg (guidance scale) must be a number in [1, %g], got %s", (double)MAX_CFG, v);
                return 2;
            }
        } else {                                 /* --seed: the Python side's range and message */
            char* end;
            errno = 0;
            req.seed = strtoull(v, &end, 10);
            if (errno || *end || end == v || v[0] == '-' || v[0] == '+' || v[0] == ' ') {
                error("seed must be an integer in [0, 2**64 - 1] (what torch.Generator takes), got %s", v);
                return 2;
            }
        }
    }
    if (!engine_dir || !image || !out) {
        error("--engine, --image and --out are required (see " PROG " --help)");
        return 2;
    }
    inputs[0] = image;
    if (check_output(out, inputs, n_masks + 1, engine_dir, force)) return 2;
    if (objaudio_abi_version() != OBJAUDIO_ABI_VERSION) {
        error("libobjaudio ABI %u, this program was built for %d: rebuild it", objaudio_abi_version(),
              OBJAUDIO_ABI_VERSION);
        return 1;
    }

    int rc = 1;
    char err[1024];
    objaudio_engine* eng = NULL;
    objaudio_scene* scene = NULL;
    uint8_t* rgb = NULL;
    uint8_t* mask_px[MAX_MASKS] = {0};
    float *pcm = NULL, *resampled = NULL;
    uint32_t w = 0, h = 0;
    objaudio_engine_info info;
    objaudio_status st;
    double t0, t1, t2, t3;
    if (pnm_read(PROG, image, 3, &rgb, &w, &h)) goto done;          /* the files before the engine: quick answers */
    for (size_t k = 0; k < n_masks; ++k) {
        uint32_t mw, mh;
        if (pnm_read(PROG, masks[k], 1, &mask_px[k], &mw, &mh)) goto done;
        if (mw != w || mh != h) {
            error("mask %s is %ux%u but the image is %ux%u: make the mask the same size as the image", masks[k],
                  mw, mh, w, h);
            goto done;
        }
    }
    t0 = now_seconds();
    st = objaudio_engine_open(engine_dir, NULL, &eng, err, sizeof err);
    if (st != OBJAUDIO_OK) {
        error("%s", err);
        goto done;
    }
    t1 = now_seconds();
    req.masks = (const uint8_t* const*)mask_px;
    req.n_masks = n_masks;
    req.mask_width = w;
    req.mask_height = h;
    if ((st = objaudio_engine_get_info(eng, &info)) != OBJAUDIO_OK ||
        (st = objaudio_scene_encode(eng, rgb, w, h, &scene)) != OBJAUDIO_OK) {
        error("%s", objaudio_last_error(eng));
        goto done;
    }
    t2 = now_seconds();
    size_t written = 0;
    if (duration || loop) {                      /* past the clip, or a loop: the run as text options */
        if (generate_long(eng, scene, &req, duration, loop, &pcm, &written)) goto done;
    } else {
        pcm = malloc(info.clip_samples * sizeof(float));
        if (!pcm) {
            error("out of memory");
            goto done;
        }
        if ((st = objaudio_generate(eng, scene, &req, pcm, info.clip_samples, &written)) != OBJAUDIO_OK) {
            error("%s", objaudio_last_error(eng));
            goto done;
        }
    }
    t3 = now_seconds();
    int out_rate = info.sample_rate;
    if (rate != 0 && rate != info.sample_rate) {
        size_t most = 0;
        objaudio_resample(eng, pcm, written, (int32_t)rate, NULL, 0, &most);     /* asks for the size */
        if (!(resampled = malloc(most * sizeof(float)))) {
            error("out of memory");
            goto done;
        }
        if ((st = objaudio_resample(eng, pcm, written, (int32_t)rate, resampled, most, &written)) != OBJAUDIO_OK) {
            error("%s", objaudio_last_error(eng));
            goto done;
        }
        out_rate = (int)rate;
    }
    if (write_wav(out, resampled ? resampled : pcm, written, out_rate)) goto done;
    printf("%s: %zu samples at %d Hz (open %.3f s, encode %.3f s, generate %.3f s)\n", out, written, out_rate,
           t1 - t0, t2 - t1, t3 - t2);
    rc = 0;
done:
    free(resampled);
    free(pcm);
    for (size_t k = 0; k < n_masks; ++k) free(mask_px[k]);
    free(rgb);
    objaudio_scene_free(scene);
    objaudio_engine_close(eng);
    return rc;
}
