/* libobjaudio's C API checked from C (tests/native/test_native.py builds and runs it, once under
 * AddressSanitizer + UBSan): bad inputs return the right status and a message, never a crash; the
 * same seed gives the same waveform; caller-given noise equals seed noise; run options given as text
 * keys (objaudio_options) give what the same options in the request give, and a bad key or value is
 * refused with its own status and a message that names it; two threads generate at once on one engine
 * and get what they get alone; last errors stay per thread.
 *
 *   objaudio-check-api ENGINE_DIR NOISE_FILE SEED
 * NOISE_FILE holds C*H*W float32 values: torch.randn((C, H, W), generator=torch.Generator().manual_seed(SEED)).
 * Exit 0 when every check passes; the last line is "N passed, M failed".
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "objaudio_engine.h"

static int passed, failed;

#define CHECK(cond, ...)                                          \
    do {                                                          \
        if (cond) {                                               \
            ++passed;                                             \
        } else {                                                  \
            ++failed;                                             \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);           \
            printf(__VA_ARGS__);                                  \
            printf("\n");                                         \
        }                                                         \
    } while (0)

/* The call returns `want` and leaves a non-empty message for this thread. */
#define EXPECT_STATUS(eng, call, want)                                                            \
    do {                                                                                          \
        objaudio_status got_ = (call);                                                            \
        const char* msg_ = objaudio_last_error(eng);                                              \
        CHECK(got_ == (want) && msg_ && msg_[0], "%s -> %d (want %d), message '%s'", #call, got_, \
              (int)(want), msg_ ? msg_ : "(null)");                                               \
        if (got_ == (want)) printf("ok   %-28s %s\n", objaudio_status_string(got_), msg_);       \
    } while (0)

#define W 64
#define H 48
#define CHECK_STEPS 10

static uint8_t rgb[W * H * 3], mask[W * H], empty_mask[W * H], mask2[W * H];

typedef struct {
    objaudio_engine* eng;
    objaudio_scene* scene;
    uint64_t seed;
    float* pcm;
    size_t n;
    objaudio_status status;
    int bad_first;     /* make a failing call first: its message must stay this thread's */
    char error[256];
} job;

static objaudio_status generate_seed(objaudio_engine* eng, objaudio_scene* scene, uint64_t seed, float* pcm,
                                     size_t n) {
    const uint8_t* masks[1] = {mask};
    objaudio_request r;
    objaudio_request_init(&r);
    r.masks = masks;
    r.n_masks = 1;
    r.mask_width = W;
    r.mask_height = H;
    r.steps = CHECK_STEPS;
    r.sampler = OBJAUDIO_SAMPLER_DDIM;
    r.cfg = 3.0f;
    r.seed = seed;
    return objaudio_generate(eng, scene, &r, pcm, n, NULL);
}

static void* run_job(void* arg) {
    job* j = arg;
    if (j->bad_first) {
        objaudio_request r;
        objaudio_request_init(&r);
        r.steps = -3;
        objaudio_generate(j->eng, j->scene, &r, j->pcm, j->n, NULL);
    }
    j->status = generate_seed(j->eng, j->scene, j->seed, j->pcm, j->n);
    snprintf(j->error, sizeof j->error, "%s", objaudio_last_error(j->eng));
    return NULL;
}

static int same(const float* a, const float* b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

/* objaudio_options_set refuses `key` = `value` with `want` and a message holding `words`. */
static void expect_refused(objaudio_engine* eng, objaudio_options* opts, const char* key, const char* value,
                           objaudio_status want, const char* words) {
    objaudio_status got = objaudio_options_set(opts, key, value);
    const char* msg = objaudio_last_error(eng);
    CHECK(got == want && strstr(msg, words) != NULL, "set %s = %s -> %d (want %d), message '%s' (want '%s')",
          key ? key : "NULL", value ? value : "NULL", got, (int)want, msg, words);
    if (got == want) printf("ok   %-28s %s\n", objaudio_status_string(got), msg);
}

static objaudio_status set_all(objaudio_options* opts, const char* const (*pairs)[2], size_t n) {
    objaudio_status st = OBJAUDIO_OK;
    for (size_t i = 0; i < n && st == OBJAUDIO_OK; ++i) st = objaudio_options_set(opts, pairs[i][0], pairs[i][1]);
    return st;
}

/* Streams: bad arguments, a clip's stream equal to its generation, a long clip's length and end, a loop
 * that repeats its period forever; a loop's `loop`/`duration` keys through generate_with_options. */
static void check_streams(objaudio_engine* eng, objaudio_scene* scene, uint64_t seed, const float* seed_pcm, size_t n) {
    char seed_text[32];
    snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)seed);
    const uint8_t* one[1] = {mask};
    objaudio_request sel;
    objaudio_request_init(&sel);
    sel.masks = one;
    sel.n_masks = 1;
    sel.mask_width = W;
    sel.mask_height = H;
    objaudio_options* opts = NULL;
    const char* const clip[][2] = {{"steps", "10"}, {"sampler", "ddim"}, {"cfg", "3"}, {"seed", seed_text}};
    CHECK(objaudio_options_create(eng, &opts) == OBJAUDIO_OK && set_all(opts, clip, 4) == OBJAUDIO_OK,
          "stream options: %s", objaudio_last_error(eng));
    objaudio_stream* st = NULL;
    EXPECT_STATUS(eng, objaudio_stream_open(eng, scene, &sel, opts, NULL), OBJAUDIO_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(eng, objaudio_stream_open(eng, NULL, &sel, opts, &st), OBJAUDIO_ERR_INVALID_ARGUMENT);
    CHECK(st == NULL, "a refused stream_open leaves *stream NULL");
    CHECK(objaudio_stream_open(NULL, scene, &sel, opts, &st) == OBJAUDIO_ERR_INVALID_ARGUMENT, "NULL engine");
    CHECK(objaudio_stream_read(NULL, NULL, 0, NULL) == OBJAUDIO_ERR_INVALID_ARGUMENT, "read of a NULL stream");
    CHECK(objaudio_stream_info(NULL, NULL, NULL, NULL) == OBJAUDIO_ERR_INVALID_ARGUMENT, "info of a NULL stream");
    objaudio_stream_close(NULL);
    CHECK(objaudio_options_set(opts, "sample_rate", "48000") == OBJAUDIO_OK, "sample_rate");
    EXPECT_STATUS(eng, objaudio_stream_open(eng, scene, &sel, opts, &st), OBJAUDIO_ERR_INVALID_ARGUMENT);
    CHECK(strstr(objaudio_last_error(eng), "the engine's rate") != NULL, "a resampled stream is refused: '%s'",
          objaudio_last_error(eng));
    CHECK(objaudio_options_set(opts, "sample_rate", "16000") == OBJAUDIO_OK, "sample_rate 16000");

    /* the engine's clip: one block, the same samples as the generation; then the end */
    CHECK(objaudio_stream_open(eng, scene, &sel, opts, &st) == OBJAUDIO_OK && st, "open: %s", objaudio_last_error(eng));
    size_t samples = 0, origin = 1, got = 0;
    int32_t loop = 1;
    CHECK(objaudio_stream_info(st, &samples, &origin, &loop) == OBJAUDIO_OK && samples == n && origin == 0 && loop == 0,
          "a clip's stream: %zu samples, origin %zu, loop %d", samples, origin, (int)loop);
    float* out = malloc((n + 100) * sizeof(float));
    EXPECT_STATUS(eng, objaudio_stream_read(st, out, 10, NULL), OBJAUDIO_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(eng, objaudio_stream_read(st, NULL, 10, &got), OBJAUDIO_ERR_INVALID_ARGUMENT);
    size_t total = 0;
    while (total < n + 100) {
        CHECK(objaudio_stream_read(st, out + total, 777, &got) == OBJAUDIO_OK, "read: %s", objaudio_last_error(eng));
        if (got == 0) break;
        total += got;
    }
    CHECK(total == n && same(out, seed_pcm, n), "a clip's stream holds its %zu samples (got %zu), equal to the clip",
          n, total);
    CHECK(objaudio_stream_read(st, out, 10, &got) == OBJAUDIO_OK && got == 0, "after the end: 0 samples, OK");
    objaudio_stream_close(st);

    /* a mixed union's stream: its parts' streams summed, the mixed generation's samples (1e-3: another batch) */
    {
        const uint8_t* both[2] = {mask, mask2};
        sel.masks = both;
        sel.n_masks = 2;
        CHECK(objaudio_options_set(opts, "union", "mix") == OBJAUDIO_OK, "union mix: %s", objaudio_last_error(eng));
        float* want = malloc(n * sizeof(float));
        size_t written = 0;
        CHECK(objaudio_generate_with_options(eng, scene, &sel, opts, want, n, &written) == OBJAUDIO_OK && written == n,
              "a mixed union: %s", objaudio_last_error(eng));
        CHECK(objaudio_stream_open(eng, scene, &sel, opts, &st) == OBJAUDIO_OK, "open a mixed union: %s",
              objaudio_last_error(eng));
        total = 0;
        while (total < n + 100) {
            CHECK(objaudio_stream_read(st, out + total, 1000, &got) == OBJAUDIO_OK, "read: %s", objaudio_last_error(eng));
            if (got == 0) break;
            total += got;
        }
        double d = 0;
        for (size_t i = 0; i < n && i < total; ++i) d = fmax(d, fabs((double)out[i] - want[i]));
        CHECK(total == n && d < 1e-3, "a mixed union's stream holds the mixed clip (%zu samples, max diff %g)", total, d);
        objaudio_stream_close(st);
        free(want);
        sel.masks = one;
        sel.n_masks = 1;
        CHECK(objaudio_options_set(opts, "union", "compose") == OBJAUDIO_OK, "union compose");
    }

    /* a loop of two clips: whole periods, repeated forever */
    objaudio_engine_info info;
    objaudio_engine_get_info(eng, &info);
    char two_clips[32];
    snprintf(two_clips, sizeof two_clips, "%g", 2.0 * info.clip_samples / info.sample_rate);
    const char* const looped[][2] = {{"steps", "2"}, {"sampler", "dpmpp"}, {"loop", "true"}, {"duration", two_clips}};
    objaudio_options* lo = NULL;
    CHECK(objaudio_options_create(eng, &lo) == OBJAUDIO_OK && set_all(lo, looped, 4) == OBJAUDIO_OK,
          "loop options: %s", objaudio_last_error(eng));
    CHECK(objaudio_stream_open(eng, scene, &sel, lo, &st) == OBJAUDIO_OK, "open a loop: %s", objaudio_last_error(eng));
    CHECK(objaudio_stream_info(st, &samples, &origin, &loop) == OBJAUDIO_OK && samples == 2 * n && loop == 1 &&
              origin > 0 && origin < samples,
          "a loop's stream: %zu samples (want %zu), origin %zu, loop %d", samples, 2 * n, origin, (int)loop);
    const size_t play = 5 * n + 123;            /* two and a half periods */
    float* loop_pcm = malloc(play * sizeof(float));
    total = 0;
    while (total < play) {
        const size_t want = play - total < 1000 ? play - total : 1000;
        CHECK(objaudio_stream_read(st, loop_pcm + total, want, &got) == OBJAUDIO_OK && got == want,
              "a loop never ends: read %zu of %zu at %zu: %s", got, want, total, objaudio_last_error(eng));
        if (got != want) break;
        total += got;
    }
    CHECK(total == play && same(loop_pcm, loop_pcm + samples, samples) &&
              same(loop_pcm, loop_pcm + 2 * samples, play - 2 * samples),
          "the stream plays the loop's period again and again");
    objaudio_stream_close(st);
    size_t written = 0;
    EXPECT_STATUS(eng, objaudio_generate_with_options(eng, scene, &sel, lo, NULL, 0, &written),
                  OBJAUDIO_ERR_BUFFER_TOO_SMALL);
    CHECK(written == 2 * n, "a loop of two clips asks for %zu samples, want %zu", written, 2 * n);
    float* gen = malloc(written * sizeof(float));
    CHECK(objaudio_generate_with_options(eng, scene, &sel, lo, gen, written, &written) == OBJAUDIO_OK,
          "generate a loop: %s", objaudio_last_error(eng));
    double energy = 0;
    for (size_t i = 0; i < written; ++i) energy += (double)gen[i] * gen[i];
    CHECK(energy > 0 && isfinite(energy), "a finite, non-silent loop (energy %g)", energy);
    free(gen);
    free(loop_pcm);
    free(out);
    objaudio_options_destroy(lo);
    objaudio_options_destroy(opts);
}

/* The key/value path: `seed_pcm` is generate_seed(seed)'s clip (n samples), made through the request. */
static void check_options_as_text(objaudio_engine* eng, objaudio_scene* scene, uint64_t seed, const float* seed_pcm,
                                  size_t n) {
    char seed_text[32], clip_text[32];
    objaudio_engine_info info;
    objaudio_engine_get_info(eng, &info);
    snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)seed);
    snprintf(clip_text, sizeof clip_text, "%g", (double)info.clip_samples / info.sample_rate);
    objaudio_options* opts = NULL;
    CHECK(objaudio_options_create(NULL, &opts) == OBJAUDIO_ERR_INVALID_ARGUMENT && !opts, "options of a NULL engine");
    EXPECT_STATUS(eng, objaudio_options_create(eng, NULL), OBJAUDIO_ERR_INVALID_ARGUMENT);
    CHECK(objaudio_options_create(eng, &opts) == OBJAUDIO_OK && opts, "create: %s", objaudio_last_error(eng));
    CHECK(objaudio_options_set(NULL, "steps", "5") == OBJAUDIO_ERR_INVALID_ARGUMENT, "NULL options");

    /* generate_seed's run as text (each value set once before, to see a later one win) */
    const char* const run[][2] = {{"steps", "3"},       {"steps", "10"},   {"sampler", "unipc"}, {"sampler", "ddim"},
                                  {"cfg", "3"},         {"seed", "5"},     {"seed", seed_text},  {"union", "compose"},
                                  {"duration", clip_text}};
    CHECK(set_all(opts, run, sizeof run / sizeof run[0]) == OBJAUDIO_OK, "set: %s", objaudio_last_error(eng));

    /* bad keys and values: their status, a message naming them, and the options left as they were */
    const struct { const char *key, *value; objaudio_status want; const char* words; } bad[] = {
        {"stpes", "10", OBJAUDIO_ERR_UNKNOWN_OPTION, "unknown option 'stpes': this libobjaudio (ABI 2.4) takes steps"},
        {"looped", "true", OBJAUDIO_ERR_UNKNOWN_OPTION, "unknown option 'looped'"},
        {"loop", "yes", OBJAUDIO_ERR_INVALID_ARGUMENT, "loop must be true or false (or 1 or 0), got 'yes'"},
        {"loop", "TRUE", OBJAUDIO_ERR_INVALID_ARGUMENT, "got 'TRUE'"},
        {"guidance", "pag", OBJAUDIO_ERR_INVALID_ARGUMENT, "unknown guidance 'pag': use one of cfg, apg"},
        {"silence_gate", "maybe", OBJAUDIO_ERR_INVALID_ARGUMENT, "silence_gate must be true or false (or 1 or 0)"},
        {"", "1", OBJAUDIO_ERR_UNKNOWN_OPTION, "unknown option ''"},
        {"Steps", "10", OBJAUDIO_ERR_UNKNOWN_OPTION, "unknown option 'Steps'"},
        {NULL, "10", OBJAUDIO_ERR_INVALID_ARGUMENT, "key or value is NULL"},
        {"steps", NULL, OBJAUDIO_ERR_INVALID_ARGUMENT, "key or value is NULL"},
        {"steps", "0", OBJAUDIO_ERR_INVALID_ARGUMENT, "steps must be an integer in [1, 999], got '0'"},
        {"steps", "1000", OBJAUDIO_ERR_INVALID_ARGUMENT, "got '1000'"},
        {"steps", "99999999999", OBJAUDIO_ERR_INVALID_ARGUMENT, "got '99999999999'"},
        {"steps", "5.5", OBJAUDIO_ERR_INVALID_ARGUMENT, "got '5.5'"},
        {"steps", " 5", OBJAUDIO_ERR_INVALID_ARGUMENT, "got ' 5'"},
        {"steps", "5 ", OBJAUDIO_ERR_INVALID_ARGUMENT, "got '5 '"},
        {"steps", "+5", OBJAUDIO_ERR_INVALID_ARGUMENT, "got '+5'"},
        {"steps", "", OBJAUDIO_ERR_INVALID_ARGUMENT, "got ''"},
        {"sampler", "euler", OBJAUDIO_ERR_INVALID_ARGUMENT,
         "unknown sampler 'euler': use one of ddim, dpmpp, dpmpp3m, unipc"},
        {"sampler", "DDIM", OBJAUDIO_ERR_INVALID_ARGUMENT, "unknown sampler 'DDIM'"},
        {"cfg", "0.5", OBJAUDIO_ERR_INVALID_ARGUMENT, "cfg (guidance scale) must be a number in [1, 100], got '0.5'"},
        {"cfg", "100.5", OBJAUDIO_ERR_INVALID_ARGUMENT, "got '100.5'"},
        {"cfg", "nan", OBJAUDIO_ERR_INVALID_ARGUMENT, "got 'nan'"},
        {"cfg", "inf", OBJAUDIO_ERR_INVALID_ARGUMENT, "got 'inf'"},
        {"cfg", "4,5", OBJAUDIO_ERR_INVALID_ARGUMENT, "got '4,5'"},
        {"seed", "-1", OBJAUDIO_ERR_INVALID_ARGUMENT, "seed must be an integer in [0, 2**64 - 1]"},
        {"seed", "18446744073709551616", OBJAUDIO_ERR_INVALID_ARGUMENT, "got '18446744073709551616'"},
        {"seed", "12abc", OBJAUDIO_ERR_INVALID_ARGUMENT, "got '12abc'"},
        {"union", "or", OBJAUDIO_ERR_INVALID_ARGUMENT, "unknown union mode 'or': use one of compose, mask, mix"},
        {"sample_rate", "1000", OBJAUDIO_ERR_INVALID_ARGUMENT, "sample_rate must be an integer from 8000 to 192000"},
        {"sample_rate", "192001", OBJAUDIO_ERR_INVALID_ARGUMENT, "got '192001'"},
        {"sample_rate", "48000.0", OBJAUDIO_ERR_INVALID_ARGUMENT, "got '48000.0'"},
        {"duration", "1", OBJAUDIO_ERR_INVALID_ARGUMENT, "this engine's clip, or longer"},
        {"duration", "120.5", OBJAUDIO_ERR_INVALID_ARGUMENT, "got '120.5'"},
        {"duration", "nan", OBJAUDIO_ERR_INVALID_ARGUMENT, "got 'nan'"},
        {"duration", "0", OBJAUDIO_ERR_INVALID_ARGUMENT, "got '0'"},
        {"duration", "-1", OBJAUDIO_ERR_INVALID_ARGUMENT, "got '-1'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i)
        expect_refused(eng, opts, bad[i].key, bad[i].value, bad[i].want, bad[i].words);

    const uint8_t* one[1] = {mask};
    objaudio_request sel;
    objaudio_request_init(&sel);
    sel.masks = one;
    sel.n_masks = 1;
    sel.mask_width = W;
    sel.mask_height = H;
    float* out = malloc(n * sizeof(float));
    size_t written = 0;
    EXPECT_STATUS(eng, objaudio_generate_with_options(eng, scene, &sel, opts, NULL, 0, &written),
                  OBJAUDIO_ERR_BUFFER_TOO_SMALL);
    CHECK(written == n, "a size query with capacity 0 answers %zu samples, want %zu", written, n);
    EXPECT_STATUS(eng, objaudio_generate_with_options(eng, scene, &sel, opts, out, n, NULL),
                  OBJAUDIO_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(eng, objaudio_generate_with_options(eng, NULL, &sel, opts, out, n, &written),
                  OBJAUDIO_ERR_INVALID_ARGUMENT);
    sel.steps = 10;                          /* a run field in the request as well as in the options */
    EXPECT_STATUS(eng, objaudio_generate_with_options(eng, scene, &sel, opts, out, n, &written),
                  OBJAUDIO_ERR_INVALID_ARGUMENT);
    sel.steps = 0;
    objaudio_status st = objaudio_generate_with_options(eng, scene, &sel, opts, out, n, &written);
    CHECK(st == OBJAUDIO_OK && written == n && same(out, seed_pcm, n),
          "steps/sampler/cfg/seed as text == the same in the request (and no refused value took effect): %s",
          objaudio_last_error(eng));

    /* sample_rate: the clip through objaudio_resample, in the same call */
    size_t most = 0, got = 0;
    CHECK(objaudio_options_set(opts, "sample_rate", "48000") == OBJAUDIO_OK, "sample_rate: %s",
          objaudio_last_error(eng));
    EXPECT_STATUS(eng, objaudio_generate_with_options(eng, scene, &sel, opts, NULL, 0, &most),
                  OBJAUDIO_ERR_BUFFER_TOO_SMALL);
    CHECK(most == 3 * n + 1, "48 kHz asks for %zu samples, want %zu", most, 3 * n + 1);
    float* out48 = malloc(most * sizeof(float));
    float* want48 = malloc(most * sizeof(float));
    st = objaudio_generate_with_options(eng, scene, &sel, opts, out48, most, &written);
    CHECK(objaudio_resample(eng, seed_pcm, n, 48000, want48, most, &got) == OBJAUDIO_OK, "resample");
    CHECK(st == OBJAUDIO_OK && written == got && same(out48, want48, got),
          "sample_rate 48000 == objaudio_resample of the 16 kHz clip (%zu vs %zu samples): %s", written, got,
          objaudio_last_error(eng));
    free(out48);
    free(want48);

    /* union mask and the whole scene (request NULL), each against the request path */
    const uint8_t* two[2] = {mask, mask2};
    objaudio_request r;
    objaudio_request_init(&r);
    r.masks = two;
    r.n_masks = 2;
    r.mask_width = W;
    r.mask_height = H;
    r.steps = 2;
    r.union_mode = OBJAUDIO_UNION_MASK;
    float* want = malloc(n * sizeof(float));
    CHECK(objaudio_generate(eng, scene, &r, want, n, NULL) == OBJAUDIO_OK, "mask union: %s", objaudio_last_error(eng));
    objaudio_options* other = NULL;
    const char* const mask_union[][2] = {{"union", "mask"}, {"steps", "2"}};
    CHECK(objaudio_options_create(eng, &other) == OBJAUDIO_OK && set_all(other, mask_union, 2) == OBJAUDIO_OK,
          "union options: %s", objaudio_last_error(eng));
    sel.masks = two;
    sel.n_masks = 2;
    st = objaudio_generate_with_options(eng, scene, &sel, other, out, n, &written);
    CHECK(st == OBJAUDIO_OK && same(out, want, n), "union = mask as text == OBJAUDIO_UNION_MASK: %s",
          objaudio_last_error(eng));
    r.n_masks = 0;
    r.union_mode = OBJAUDIO_UNION_COMPOSE;
    CHECK(objaudio_generate(eng, scene, &r, want, n, NULL) == OBJAUDIO_OK, "whole scene: %s", objaudio_last_error(eng));
    st = objaudio_generate_with_options(eng, scene, NULL, other, out, n, &written);
    CHECK(st == OBJAUDIO_OK && same(out, want, n), "request NULL == the whole scene: %s", objaudio_last_error(eng));
    free(want);
    free(out);
    objaudio_options_destroy(other);
    objaudio_options_destroy(opts);
    objaudio_options_destroy(NULL);
}

int main(int argc, char** argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: objaudio-check-api ENGINE_DIR NOISE_FILE SEED\n");
        return 2;
    }
    const char* dir = argv[1];
    uint64_t seed = strtoull(argv[3], NULL, 10);
    for (int i = 0; i < W * H; ++i) {
        int x = i % W, y = i / W;
        rgb[3 * i] = (uint8_t)(4 * x);
        rgb[3 * i + 1] = (uint8_t)(5 * y);
        rgb[3 * i + 2] = (uint8_t)((x * y) & 255);
        mask[i] = (x > 10 && x < 30 && y > 8 && y < 30) ? 255 : 0;
        mask2[i] = (x > 40 && y > 20) ? 255 : 0;
    }
    CHECK(objaudio_abi_version() == OBJAUDIO_ABI_MAJOR && objaudio_abi_minor() == OBJAUDIO_ABI_MINOR,
          "library ABI %u.%u vs header %d.%d", objaudio_abi_version(), objaudio_abi_minor(), OBJAUDIO_ABI_MAJOR,
          OBJAUDIO_ABI_MINOR);

    /* ---- open -------------------------------------------------------------------------------- */
    char err[512];
    objaudio_engine* eng = (objaudio_engine*)0x1;
    objaudio_open_options opts;
    objaudio_open_options_init(&opts);
    CHECK(objaudio_engine_open(dir, NULL, NULL, err, sizeof err) == OBJAUDIO_ERR_INVALID_ARGUMENT && err[0],
          "NULL out pointer: %s", err);
    CHECK(objaudio_engine_open(NULL, NULL, &eng, err, sizeof err) == OBJAUDIO_ERR_INVALID_ARGUMENT && !eng && err[0],
          "NULL dir: %s", err);
    CHECK(objaudio_engine_open("/nonexistent/engine", NULL, &eng, err, sizeof err) == OBJAUDIO_ERR_ENGINE_CORRUPT &&
              strstr(err, "engine.json"), "missing engine: %s", err);
    printf("ok   missing engine: %s\n", err);
    CHECK(objaudio_engine_open(dir, NULL, &eng, NULL, 0) == OBJAUDIO_OK, "open with no error buffer");
    objaudio_engine_close(eng);
    opts.struct_size = 3;
    CHECK(objaudio_engine_open(dir, &opts, &eng, err, sizeof err) == OBJAUDIO_ERR_INVALID_ARGUMENT, "struct_size: %s", err);
    objaudio_open_options_init(&opts);
    opts.max_concurrent = 0;
    CHECK(objaudio_engine_open(dir, &opts, &eng, err, sizeof err) == OBJAUDIO_ERR_INVALID_ARGUMENT, "max_concurrent: %s", err);
    objaudio_open_options_init(&opts);
    opts.max_concurrent = 2;
    objaudio_status st = objaudio_engine_open(dir, &opts, &eng, err, sizeof err);
    CHECK(st == OBJAUDIO_OK, "open %s: %s", dir, err);
    if (st != OBJAUDIO_OK) {
        printf("%d passed, %d failed\n", passed, failed);
        return 1;
    }
    objaudio_engine_info info;
    CHECK(objaudio_engine_get_info(eng, &info) == OBJAUDIO_OK, "info");
    EXPECT_STATUS(eng, objaudio_engine_get_info(eng, NULL), OBJAUDIO_ERR_INVALID_ARGUMENT);
    CHECK(objaudio_engine_get_info(NULL, &info) == OBJAUDIO_ERR_INVALID_ARGUMENT, "NULL engine");
    CHECK(strcmp(objaudio_last_error(NULL), "") != 0, "last_error(NULL) says something");
    const size_t n = info.clip_samples, numel = (size_t)info.latent_channels * info.latent_frames * info.latent_bins;

    /* ---- scene ------------------------------------------------------------------------------- */
    objaudio_scene* scene = NULL;
    EXPECT_STATUS(eng, objaudio_scene_encode(eng, NULL, W, H, &scene), OBJAUDIO_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(eng, objaudio_scene_encode(eng, rgb, 0, H, &scene), OBJAUDIO_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(eng, objaudio_scene_encode(eng, rgb, 100000, 100000, &scene), OBJAUDIO_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(eng, objaudio_scene_encode(eng, rgb, W, H, NULL), OBJAUDIO_ERR_INVALID_ARGUMENT);
    CHECK(objaudio_scene_encode(eng, rgb, W, H, &scene) == OBJAUDIO_OK, "encode: %s", objaudio_last_error(eng));

    /* ---- generate: bad requests ------------------------------------------------------------- */
    float* pcm = malloc(n * sizeof(float));
    float* pcm2 = malloc(n * sizeof(float));
    float* noise = malloc(numel * sizeof(float));
    const uint8_t* one[1] = {mask};
    const uint8_t* empty[1] = {empty_mask};
    const uint8_t* with_null[2] = {mask, NULL};
    objaudio_request r;
#define RESET()                 \
    objaudio_request_init(&r);  \
    r.masks = one;              \
    r.n_masks = 1;              \
    r.mask_width = W;           \
    r.mask_height = H;          \
    r.steps = CHECK_STEPS
    RESET();
    EXPECT_STATUS(eng, objaudio_generate(eng, NULL, &r, pcm, n, NULL), OBJAUDIO_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(eng, objaudio_generate(eng, scene, NULL, pcm, n, NULL), OBJAUDIO_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(eng, objaudio_generate(eng, scene, &r, NULL, n, NULL), OBJAUDIO_ERR_INVALID_ARGUMENT);
    CHECK(objaudio_generate(NULL, scene, &r, pcm, n, NULL) == OBJAUDIO_ERR_INVALID_ARGUMENT, "NULL engine");
    EXPECT_STATUS(eng, objaudio_generate(eng, scene, &r, pcm, n - 1, NULL), OBJAUDIO_ERR_BUFFER_TOO_SMALL);
    EXPECT_STATUS(eng, objaudio_generate(eng, scene, &r, pcm, 0, NULL), OBJAUDIO_ERR_BUFFER_TOO_SMALL);
    r.mask_width = W + 1;
    EXPECT_STATUS(eng, objaudio_generate(eng, scene, &r, pcm, n, NULL), OBJAUDIO_ERR_INVALID_ARGUMENT);
    RESET();
    r.masks = empty;
    EXPECT_STATUS(eng, objaudio_generate(eng, scene, &r, pcm, n, NULL), OBJAUDIO_ERR_INVALID_ARGUMENT);
    RESET();
    r.masks = with_null;
    r.n_masks = 2;
    EXPECT_STATUS(eng, objaudio_generate(eng, scene, &r, pcm, n, NULL), OBJAUDIO_ERR_INVALID_ARGUMENT);
    RESET();
    r.masks = NULL;
    EXPECT_STATUS(eng, objaudio_generate(eng, scene, &r, pcm, n, NULL), OBJAUDIO_ERR_INVALID_ARGUMENT);
    RESET();
    r.n_masks = (size_t)-1;
    EXPECT_STATUS(eng, objaudio_generate(eng, scene, &r, pcm, n, NULL), OBJAUDIO_ERR_INVALID_ARGUMENT);
    RESET();
    r.steps = -1;
    EXPECT_STATUS(eng, objaudio_generate(eng, scene, &r, pcm, n, NULL), OBJAUDIO_ERR_INVALID_ARGUMENT);
    RESET();
    r.steps = info.max_steps + 1;
    EXPECT_STATUS(eng, objaudio_generate(eng, scene, &r, pcm, n, NULL), OBJAUDIO_ERR_INVALID_ARGUMENT);
    RESET();
    r.cfg = NAN;
    EXPECT_STATUS(eng, objaudio_generate(eng, scene, &r, pcm, n, NULL), OBJAUDIO_ERR_INVALID_ARGUMENT);
    RESET();
    r.cfg = 0.5f;
    EXPECT_STATUS(eng, objaudio_generate(eng, scene, &r, pcm, n, NULL), OBJAUDIO_ERR_INVALID_ARGUMENT);
    RESET();
    r.sampler = 42;
    EXPECT_STATUS(eng, objaudio_generate(eng, scene, &r, pcm, n, NULL), OBJAUDIO_ERR_INVALID_ARGUMENT);
    RESET();
    r.union_mode = 9;
    EXPECT_STATUS(eng, objaudio_generate(eng, scene, &r, pcm, n, NULL), OBJAUDIO_ERR_INVALID_ARGUMENT);
    RESET();
    r.struct_size = 0;
    EXPECT_STATUS(eng, objaudio_generate(eng, scene, &r, pcm, n, NULL), OBJAUDIO_ERR_INVALID_ARGUMENT);
    RESET();
    r.noise = noise;
    r.noise_count = numel - 1;
    EXPECT_STATUS(eng, objaudio_generate(eng, scene, &r, pcm, n, NULL), OBJAUDIO_ERR_INVALID_ARGUMENT);
    for (size_t i = 0; i < numel; ++i) noise[i] = 0.0f;
    noise[numel / 2] = NAN;
    r.noise_count = numel;
    EXPECT_STATUS(eng, objaudio_generate(eng, scene, &r, pcm, n, NULL), OBJAUDIO_ERR_INVALID_ARGUMENT);
    size_t count = 0;
    float tok[4];
    EXPECT_STATUS(eng, objaudio_scene_tokens(eng, scene, tok, 4, &count), OBJAUDIO_ERR_BUFFER_TOO_SMALL);
    CHECK(count > 4, "token count %zu", count);

    /* ---- sampler tables for any step count ------------------------------------------------------- */
    CHECK(info.max_steps == 999, "max_steps %d", info.max_steps);
    size_t width = 0;
    int64_t ts[7];
    double coefs[7 * 6];
    EXPECT_STATUS(eng, objaudio_sampler_table(eng, OBJAUDIO_SAMPLER_UNIPC, 7, ts, coefs, 0, &width),
                  OBJAUDIO_ERR_BUFFER_TOO_SMALL);
    CHECK(width == 6, "unipc's width %zu", width);
    CHECK(objaudio_sampler_table(eng, OBJAUDIO_SAMPLER_UNIPC, 7, ts, coefs, 7 * 6, &width) == OBJAUDIO_OK &&
              ts[0] == 999 && ts[6] > 0, "unipc x 7 table: t %lld .. %lld", (long long)ts[0], (long long)ts[6]);
    EXPECT_STATUS(eng, objaudio_sampler_table(eng, OBJAUDIO_SAMPLER_DDIM, 7, ts, coefs, 7 * 6, NULL),
                  OBJAUDIO_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(eng, objaudio_sampler_table(eng, 42, 7, ts, coefs, 7 * 6, &width), OBJAUDIO_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(eng, objaudio_sampler_table(eng, OBJAUDIO_SAMPLER_DDIM, 0, ts, coefs, 7 * 6, &width),
                  OBJAUDIO_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(eng, objaudio_sampler_table(eng, OBJAUDIO_SAMPLER_DDIM, 7, NULL, coefs, 7 * 6, &width),
                  OBJAUDIO_ERR_INVALID_ARGUMENT);
    for (int32_t sampler = OBJAUDIO_SAMPLER_DDIM; sampler <= OBJAUDIO_SAMPLER_UNIPC; ++sampler) {
        RESET();
        r.steps = 5;                 /* issue 21 item 10: a count the engine holds no precomputed table for */
        r.sampler = sampler;
        CHECK(objaudio_generate(eng, scene, &r, pcm2, n, NULL) == OBJAUDIO_OK, "sampler %d x 5 steps: %s", sampler,
              objaudio_last_error(eng));
    }

    /* ---- the same seed gives the same waveform; caller noise equals seed noise ---------------------- */
    size_t written = 0;
    st = generate_seed(eng, scene, seed, pcm, n);
    CHECK(st == OBJAUDIO_OK, "generate: %s", objaudio_last_error(eng));
    st = generate_seed(eng, scene, seed, pcm2, n);
    CHECK(st == OBJAUDIO_OK && same(pcm, pcm2, n), "same seed, same waveform");
    double energy = 0;
    for (size_t i = 0; i < n; ++i) energy += (double)pcm[i] * pcm[i];
    CHECK(energy > 0 && isfinite(energy), "a finite, non-silent clip (energy %g)", energy);
    FILE* f = fopen(argv[2], "rb");
    CHECK(f && fread(noise, sizeof(float), numel, f) == numel, "read %s (%zu floats)", argv[2], numel);
    if (f) fclose(f);
    RESET();
    r.sampler = OBJAUDIO_SAMPLER_DDIM;
    r.cfg = 3.0f;
    r.seed = seed + 1;      /* ignored: noise wins */
    r.noise = noise;
    r.noise_count = numel;
    st = objaudio_generate(eng, scene, &r, pcm2, n, &written);
    CHECK(st == OBJAUDIO_OK && written == n && same(pcm, pcm2, n), "given noise == torch.randn(seed) noise");

    /* ---- run options as text keys ---------------------------------------------------------------- */
    check_options_as_text(eng, scene, seed, pcm, n);

    /* ---- streams, long clips and loops ------------------------------------------------------------ */
    check_streams(eng, scene, seed, pcm, n);

    /* ---- unions, whole scene, stems ----------------------------------------------------------- */
    const uint8_t* two[2] = {mask, mask2};
    RESET();
    r.masks = two;
    r.n_masks = 2;
    CHECK(objaudio_generate(eng, scene, &r, pcm2, n, NULL) == OBJAUDIO_OK, "composed union: %s", objaudio_last_error(eng));
    r.union_mode = OBJAUDIO_UNION_MASK;
    CHECK(objaudio_generate(eng, scene, &r, pcm2, n, NULL) == OBJAUDIO_OK, "mask union: %s", objaudio_last_error(eng));
    {   /* union mix: each mask generated alone (the same noise), summed; unlike the composed union */
        float* composed = malloc(n * sizeof(float));
        float* part = malloc(n * sizeof(float));
        float* sum = calloc(n, sizeof(float));
        r.union_mode = OBJAUDIO_UNION_COMPOSE;
        CHECK(objaudio_generate(eng, scene, &r, composed, n, NULL) == OBJAUDIO_OK, "composed union: %s",
              objaudio_last_error(eng));
        r.union_mode = OBJAUDIO_UNION_MIX;
        CHECK(objaudio_generate(eng, scene, &r, pcm2, n, NULL) == OBJAUDIO_OK, "mixed union: %s",
              objaudio_last_error(eng));
        for (int k = 0; k < 2; ++k) {
            RESET();
            r.masks = &two[k];
            CHECK(objaudio_generate(eng, scene, &r, part, n, NULL) == OBJAUDIO_OK, "mask %d alone: %s", k,
                  objaudio_last_error(eng));
            for (size_t i = 0; i < n; ++i) sum[i] += part[i];
        }
        double mix_diff = 0, vs_composed = 0;
        for (size_t i = 0; i < n; ++i) {
            mix_diff = fmax(mix_diff, fabs((double)pcm2[i] - sum[i]));
            vs_composed = fmax(vs_composed, fabs((double)composed[i] - sum[i]));
        }
        /* 1e-3: a stem against its lone generation (below); the batch of two rounds differently */
        CHECK(mix_diff < 1e-3 && vs_composed > 1e-2, "a mixed union is its masks alone summed (max diff %g; the "
              "composed union differs by %g)", mix_diff, vs_composed);
        /* as a stem beside a composed union of the same masks: each as it is alone */
        objaudio_request pair[2];
        objaudio_request_init(&pair[0]);
        pair[0].masks = two;
        pair[0].n_masks = 2;
        pair[0].mask_width = W;
        pair[0].mask_height = H;
        pair[0].steps = CHECK_STEPS;
        pair[0].union_mode = OBJAUDIO_UNION_MIX;
        pair[1] = pair[0];
        pair[1].union_mode = OBJAUDIO_UNION_COMPOSE;
        float* got[2] = {part, sum};
        CHECK(objaudio_generate_stems(eng, scene, pair, 2, got, n) == OBJAUDIO_OK, "mixed and composed stems: %s",
              objaudio_last_error(eng));
        double d_mix = 0, d_comp = 0;
        for (size_t i = 0; i < n; ++i) {
            d_mix = fmax(d_mix, fabs((double)part[i] - pcm2[i]));
            d_comp = fmax(d_comp, fabs((double)sum[i] - composed[i]));
        }
        CHECK(d_mix < 1e-3 && d_comp < 1e-3, "stems: the mixed union as alone (max diff %g), the composed one (%g)",
              d_mix, d_comp);
        free(composed);
        free(part);
        free(sum);
    }
    RESET();
    r.n_masks = 0;
    CHECK(objaudio_generate(eng, scene, &r, pcm2, n, NULL) == OBJAUDIO_OK, "whole scene: %s", objaudio_last_error(eng));
    objaudio_request reqs[2];
    objaudio_request_init(&reqs[0]);
    reqs[0].masks = one;
    reqs[0].n_masks = 1;
    reqs[0].mask_width = W;
    reqs[0].mask_height = H;
    reqs[0].steps = CHECK_STEPS;
    reqs[0].sampler = OBJAUDIO_SAMPLER_DDIM;
    reqs[0].cfg = 3.0f;
    reqs[0].seed = seed;
    reqs[1] = reqs[0];
    reqs[1].n_masks = 0;
    float* outs[2] = {pcm2, malloc(n * sizeof(float))};
    st = objaudio_generate_stems(eng, scene, reqs, 2, outs, n);
    CHECK(st == OBJAUDIO_OK, "stems: %s", objaudio_last_error(eng));
    double diff = 0;
    for (size_t i = 0; i < n; ++i) diff = fmax(diff, fabs((double)pcm2[i] - pcm[i]));
    CHECK(diff < 1e-3, "a stem equals its lone generation (max diff %g)", diff);
    reqs[1].steps = 20;
    EXPECT_STATUS(eng, objaudio_generate_stems(eng, scene, reqs, 2, outs, n), OBJAUDIO_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(eng, objaudio_generate_stems(eng, scene, reqs, 0, outs, n), OBJAUDIO_ERR_INVALID_ARGUMENT);
    free(outs[1]);

    /* ---- the PCM at another rate (libsoxr) ------------------------------------------------------- */
    size_t n48 = 0;
    EXPECT_STATUS(eng, objaudio_resample(eng, pcm2, n, 48000, NULL, 0, &n48), OBJAUDIO_ERR_BUFFER_TOO_SMALL);
    CHECK(n48 == n * 3 + 1, "16 kHz -> 48 kHz asks for %zu samples, want %zu", n48, n * 3 + 1);
    float* pcm48 = malloc(n48 * sizeof(float));
    size_t got48 = 0;
    CHECK(objaudio_resample(eng, pcm2, n, 48000, pcm48, n48, &got48) == OBJAUDIO_OK && got48 == n * 3,
          "resample to 48 kHz: %zu samples, %s", got48, objaudio_last_error(eng));
    EXPECT_STATUS(eng, objaudio_resample(eng, pcm2, n, 1000, pcm48, n48, &got48), OBJAUDIO_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(eng, objaudio_resample(eng, pcm2, n, 192001, pcm48, n48, &got48), OBJAUDIO_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(eng, objaudio_resample(eng, pcm2, n, 48000, pcm48, n48, NULL), OBJAUDIO_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(eng, objaudio_resample(eng, NULL, n, 48000, pcm48, n48, &got48), OBJAUDIO_ERR_INVALID_ARGUMENT);
    EXPECT_STATUS(eng, objaudio_resample(eng, pcm2, n, 48000, pcm2, n48, &got48), OBJAUDIO_ERR_INVALID_ARGUMENT);
    pcm2[3] = NAN;
    EXPECT_STATUS(eng, objaudio_resample(eng, pcm2, n, 48000, pcm48, n48, &got48), OBJAUDIO_ERR_INVALID_ARGUMENT);
    CHECK(objaudio_resample(NULL, pcm2, n, 48000, pcm48, n48, &got48) == OBJAUDIO_ERR_INVALID_ARGUMENT, "NULL engine");
    free(pcm48);


    /* ---- two threads at once on one engine -------------------------------------------------- */
    job jobs[2];
    pthread_t th[2];
    for (int k = 0; k < 2; ++k) {
        jobs[k] = (job){eng, scene, seed + (uint64_t)k, malloc(n * sizeof(float)), n, OBJAUDIO_ERR_RUNTIME, k, ""};
        pthread_create(&th[k], NULL, run_job, &jobs[k]);
    }
    for (int k = 0; k < 2; ++k) pthread_join(th[k], NULL);
    float* alone = malloc(n * sizeof(float));
    for (int k = 0; k < 2; ++k) {
        CHECK(jobs[k].status == OBJAUDIO_OK, "thread %d: %s", k, jobs[k].error);
        generate_seed(eng, scene, jobs[k].seed, alone, n);
        CHECK(same(jobs[k].pcm, alone, n), "thread %d's clip equals the same seed generated alone", k);
        free(jobs[k].pcm);
    }
    CHECK(jobs[0].error[0] == '\0', "thread 0 made no failing call, its last error is '%s'", jobs[0].error);
    CHECK(strstr(jobs[1].error, "steps") != NULL, "thread 1 keeps its own last error: '%s'", jobs[1].error);
    free(alone);

    objaudio_scene_free(scene);
    objaudio_scene_free(NULL);
    objaudio_engine_close(eng);
    objaudio_engine_close(NULL);
    free(pcm);
    free(pcm2);
    free(noise);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
