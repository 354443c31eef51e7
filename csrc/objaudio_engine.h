/* libobjaudio: object-aware image-to-audio generation from a C or C++ host, no Python in the process.
 *
 *   objaudio_engine* eng;  objaudio_scene* scene;  objaudio_options* opts;  char err[512];
 *   if (objaudio_abi_version() != OBJAUDIO_ABI_MAJOR || objaudio_abi_minor() < OBJAUDIO_ABI_MINOR) ...
 *   objaudio_engine_open("engines/tiny-synth-cpu", NULL, &eng, err, sizeof err);
 *   objaudio_scene_encode(eng, rgb, width, height, &scene);                 (CLIP patch tokens, kept)
 *   objaudio_request req;  objaudio_request_init(&req);                     (the selection)
 *   req.masks = masks;  req.n_masks = 1;  req.mask_width = width;  req.mask_height = height;
 *   objaudio_options_create(eng, &opts);                                    (how to generate it, as text)
 *   objaudio_options_set(opts, "steps", "20");  objaudio_options_set(opts, "sample_rate", "48000");
 *   objaudio_generate_with_options(eng, scene, &req, opts, pcm, capacity, &n_written);   (mono float PCM)
 *   objaudio_last_error(eng);  objaudio_options_destroy(opts);  objaudio_scene_free(scene);
 *   objaudio_engine_close(eng);
 * The ABI 2.0 way still works: run options in the request (req.steps = 20; req.cfg = 4.0f; req.seed = 7),
 * objaudio_generate (16 kHz PCM), then objaudio_resample for another rate.
 *
 * Conventions
 * - Every call returns an objaudio_status; OBJAUDIO_OK is 0. After a failed call on an engine,
 *   objaudio_last_error(engine) returns a one-line message saying what to do. The message is kept
 *   per engine AND per calling thread, so two threads never read each other's errors.
 *   objaudio_engine_open, which has no engine yet, writes its message into the caller's buffer.
 * - The caller owns every buffer it passes (images, masks, noise, PCM); the library copies what it
 *   keeps and never frees or retains a caller's pointer after a call returns.
 * - Handles are opaque. There is no global state: everything lives in an engine, a scene or options.
 * - The library's dynamic symbol table holds exactly the objaudio_* functions declared here (a linker
 *   version script, csrc/libobjaudio/exports.map; tests/native compares the two).
 * - Thread safety: ONE ENGINE MAY BE USED FROM SEVERAL THREADS AT ONCE (open it with
 *   options.max_concurrent >= the number of threads that generate together; more wait their turn).
 *   A scene is immutable after encoding and may be shared between threads. Close an engine only
 *   after every other call on it has returned and its scenes and options are freed.
 * - Selections: pixel masks (one, or a union of several) and the whole scene (n_masks == 0).
 *   Points, boxes and text selections need Segment Anything or the text encoder and stay
 *   Python-only for now (objaudio_rt).
 */
#ifndef OBJAUDIO_ENGINE_H
#define OBJAUDIO_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define OBJAUDIO_API __declspec(dllexport)
#else
#define OBJAUDIO_API __attribute__((visibility("default")))
#endif

/* The ABI as MAJOR.MINOR. MAJOR grows on any incompatible change of this header's types or functions
 * (2: objaudio_engine_info holds max_steps instead of a list of offered step counts), MINOR when
 * functions, status codes or option keys are added (1: objaudio_options, objaudio_generate_with_options,
 * OBJAUDIO_ERR_UNKNOWN_OPTION, objaudio_abi_minor; 2: durations past the clip, the `loop` key, and
 * objaudio_stream_open / _info / _read / _close; 3: the `silence_gate` key). A host built against MAJOR.MINOR runs with a library
 * of the same MAJOR and a MINOR at least its own: objaudio_abi_version() (the library's MAJOR) and
 * objaudio_abi_minor() tell. */
#define OBJAUDIO_ABI_MAJOR 2
#define OBJAUDIO_ABI_MINOR 4
#define OBJAUDIO_ABI_VERSION OBJAUDIO_ABI_MAJOR   /* the name ABI 2.0 hosts compare objaudio_abi_version() with */

/* The rates objaudio_resample converts to (objaudio_rt/core/options.py MIN_SAMPLE_RATE, MAX_SAMPLE_RATE). */
#define OBJAUDIO_MIN_SAMPLE_RATE 8000
#define OBJAUDIO_MAX_SAMPLE_RATE 192000

typedef enum objaudio_status {
    OBJAUDIO_OK = 0,
    OBJAUDIO_ERR_INVALID_ARGUMENT = 1,  /* a null pointer, a size out of range, NaN cfg, steps <= 0, ... */
    OBJAUDIO_ERR_IO = 2,                /* a file could not be read */
    OBJAUDIO_ERR_ENGINE_CORRUPT = 3,    /* an engine file is missing, altered (sha256) or malformed */
    OBJAUDIO_ERR_INCOMPATIBLE = 4,      /* engine built for another device, runtime or format version */
    OBJAUDIO_ERR_BUFFER_TOO_SMALL = 5,  /* the caller's output buffer cannot hold the result */
    OBJAUDIO_ERR_RUNTIME = 6,           /* a network failed to run, or produced NaN/inf */
    OBJAUDIO_ERR_OUT_OF_MEMORY = 7,
    OBJAUDIO_ERR_UNKNOWN_OPTION = 8     /* objaudio_options_set: a key this library does not know (an older
                                           library than the host's, or a typo); the options are unchanged */
} objaudio_status;

typedef enum objaudio_sampler {
    OBJAUDIO_SAMPLER_DEFAULT = 0,       /* the engine's default (engine.json "defaults") */
    OBJAUDIO_SAMPLER_DDIM = 1,
    OBJAUDIO_SAMPLER_DPMPP = 2,         /* DPM-Solver++ (2M) */
    OBJAUDIO_SAMPLER_DPMPP3M = 3,       /* DPM-Solver++ (3M) */
    OBJAUDIO_SAMPLER_UNIPC = 4          /* UniPC (bh2, order 2, with its corrector) */
} objaudio_sampler;

typedef enum objaudio_union {
    OBJAUDIO_UNION_COMPOSE = 0,         /* one condition per mask, guidance directions averaged (default) */
    OBJAUDIO_UNION_MASK = 1,            /* the paper's union mask: masks unioned pixel-wise, one condition */
    OBJAUDIO_UNION_MIX = 2              /* each mask generated alone (same noise, full guidance), the PCM summed:
                                           the union is its parts played together (ABI 2.4) */
} objaudio_union;

typedef struct objaudio_engine objaudio_engine;
typedef struct objaudio_scene objaudio_scene;
typedef struct objaudio_options objaudio_options;
typedef struct objaudio_stream objaudio_stream;

typedef struct objaudio_open_options {
    uint32_t struct_size;       /* sizeof(objaudio_open_options); set by objaudio_open_options_init */
    int32_t max_concurrent;     /* generations that may run at once on this engine (>= 1; default 2) */
    int32_t verify_files;       /* 1 (default): check every file's sha256 against the manifest */
} objaudio_open_options;

typedef struct objaudio_request {
    uint32_t struct_size;       /* sizeof(objaudio_request); set by objaudio_request_init */
    const uint8_t* const* masks;/* n_masks masks, each mask_width * mask_height bytes, row-major,
                                   0 = outside, 255 = inside (values between are a soft mask) */
    size_t n_masks;             /* 0: the whole scene */
    uint32_t mask_width, mask_height;   /* must equal the scene image's size */
    int32_t union_mode;         /* objaudio_union, for n_masks > 1 */
    int32_t sampler;            /* objaudio_sampler */
    int32_t steps;              /* 0: the engine's default; otherwise 1 .. objaudio_engine_info.max_steps */
    float cfg;                  /* guidance scale in [1, 100]; NaN is refused; 0 means the engine's default */
    uint64_t seed;              /* initial noise = torch.randn(latent_shape, generator=torch.Generator()
                                   .manual_seed(seed)), exactly as the Python pipeline draws it */
    const float* noise;         /* optional: the initial latent noise itself (noise_count floats,
                                   C*H*W row-major, see objaudio_engine_info); overrides seed */
    size_t noise_count;
} objaudio_request;

typedef struct objaudio_engine_info {
    uint32_t struct_size;
    int32_t sample_rate;        /* 16000 */
    size_t clip_samples;        /* samples one generation writes */
    int32_t latent_channels, latent_frames, latent_bins;   /* the noise shape (C, H, W) */
    int32_t image_size;         /* the CLIP input side the image is resized to */
    int32_t default_steps;
    float default_cfg;
    int32_t default_sampler;    /* objaudio_sampler */
    int32_t max_masks;          /* most masks (conditions) one generation may carry */
    int32_t max_stems;          /* most requests objaudio_generate_stems takes at once */
    int32_t max_steps;          /* the most steps a request may ask for (999: the schedule's 1000 less one) */
    char device[16];            /* "cpu" or "cuda" */
} objaudio_engine_info;

OBJAUDIO_API uint32_t objaudio_abi_version(void);   /* OBJAUDIO_ABI_MAJOR of the library */
OBJAUDIO_API uint32_t objaudio_abi_minor(void);     /* OBJAUDIO_ABI_MINOR of the library */
OBJAUDIO_API const char* objaudio_status_string(objaudio_status status);

OBJAUDIO_API void objaudio_open_options_init(objaudio_open_options* options);
OBJAUDIO_API void objaudio_request_init(objaudio_request* request);

/* Opens an engine folder (python -m export.engine): checks engine.json, the format, runtime and
 * device it was built for and (unless options->verify_files == 0) every file's sha256, then loads
 * the networks. options may be NULL. On failure *engine is NULL and a message is written into
 * error (error_size bytes, NUL-terminated; error may be NULL). */
OBJAUDIO_API objaudio_status objaudio_engine_open(const char* engine_dir, const objaudio_open_options* options,
                                                  objaudio_engine** engine, char* error, size_t error_size);
OBJAUDIO_API void objaudio_engine_close(objaudio_engine* engine);       /* NULL is ignored */
OBJAUDIO_API objaudio_status objaudio_engine_get_info(objaudio_engine* engine, objaudio_engine_info* info);

/* The coefficient table a generation with `sampler` and `steps` runs (objaudio_rt/core/samplers.py), built from
 * the engine's schedule: timesteps[i] (steps values) is the UNet's t at step i and coefs[i * width + j]
 * (steps * width values, width = K + 4) step i's row (cx, ce, c_1 .. c_K, dx, de). *width is written
 * first (NULL is refused), so a call with capacity 0 asks for the size (OBJAUDIO_ERR_BUFFER_TOO_SMALL). */
OBJAUDIO_API objaudio_status objaudio_sampler_table(objaudio_engine* engine, int32_t sampler, int32_t steps,
                                                    int64_t* timesteps, double* coefs, size_t capacity,
                                                    size_t* width);

/* The message of the calling thread's last failed call on engine ("" if none; a fixed text for NULL).
 * Valid until this thread's next call on the engine. */
OBJAUDIO_API const char* objaudio_last_error(const objaudio_engine* engine);

/* Encodes an RGB image (height rows of width * 3 bytes, no padding) into CLIP patch tokens. */
OBJAUDIO_API objaudio_status objaudio_scene_encode(objaudio_engine* engine, const uint8_t* rgb, uint32_t width,
                                                   uint32_t height, objaudio_scene** scene);
OBJAUDIO_API void objaudio_scene_free(objaudio_scene* scene);           /* NULL is ignored */
/* Copies the scene's patch tokens (P * L floats) into tokens; *count receives P * L. */
OBJAUDIO_API objaudio_status objaudio_scene_tokens(objaudio_engine* engine, const objaudio_scene* scene,
                                                   float* tokens, size_t capacity, size_t* count);

/* One generation: writes info.clip_samples float samples (16 kHz mono) into pcm. n_written may be NULL. */
OBJAUDIO_API objaudio_status objaudio_generate(objaudio_engine* engine, const objaudio_scene* scene,
                                               const objaudio_request* request, float* pcm, size_t capacity,
                                               size_t* n_written);

/* Several selections of one scene in one batched run (e.g. one stem per object): request i's clip goes
 * to pcm[i] (capacity floats each). All requests must share steps, sampler and cfg. */
OBJAUDIO_API objaudio_status objaudio_generate_stems(objaudio_engine* engine, const objaudio_scene* scene,
                                                     const objaudio_request* requests, size_t n_requests,
                                                     float* const* pcm, size_t capacity);

/* Run options as text keys and values, so that a new option is a new key of a later library, never a
 * change of this header. The keys are the HTTP service's field names (objaudio_rt/frontends/serve/requests.py):
 *   steps        integer, 1 .. objaudio_engine_info.max_steps                 (default: the engine's)
 *   sampler      ddim | dpmpp | dpmpp3m | unipc                               (default: the engine's)
 *   cfg          number, 1 .. 100: the guidance scale                         (default: the engine's)
 *   seed         integer, 0 .. 18446744073709551615 (2**64 - 1): the noise, as request.seed   (default 0)
 *   union        compose | mask | mix: how n_masks > 1 masks combine (objaudio_union; mix: ABI 2.4)
 *                                                                             (default compose)
 *   sample_rate  integer, OBJAUDIO_MIN_SAMPLE_RATE .. OBJAUDIO_MAX_SAMPLE_RATE Hz: the PCM's rate, through
 *                libsoxr as objaudio_resample                                 (default: the engine's)
 *   duration     seconds, from the engine's clip (clip_samples / sample_rate: one pass) to 120 (ABI 2.2). Past
 *                the clip the latent is denoised over overlapping windows of the clip's length, jointly
 *                (objaudio_rt/core/longform.py); int(duration * sample_rate) samples. Shorter clips: Python.
 *                                                                             (default: the clip)
 *   loop         true | false (or 1 | 0): a seamless loop of duration seconds (at least the clip), snapped
 *                to whole latent frames; the end flows into the start (ABI 2.2)       (default false)
 *   guidance     cfg | apg: classifier-free guidance (the paper's), or adaptive projected guidance, which keeps
 *                only the guidance update's part orthogonal to the conditional prediction (ABI 2.2)  (default cfg)
 *   silence_gate true | false (or 1 | 0): an engine built from a checkpoint with a silence gate (engine.json
 *                "silence_gate"; objaudio_rt/core/gate.py) writes zeros for a selection the gate calls silent,
 *                running no network past the grounding, and drops a composed union's silent parts; false
 *                generates every selection (the paper's behaviour). true on an engine without a gate is
 *                OBJAUDIO_ERR_INVALID_ARGUMENT (ABI 2.3)             (default: on where the engine has a gate)
 * An engine of a guidance-distilled checkpoint (engine.json "distilled") has its guidance built into the UNet,
 * one UNet row per condition a step: it refuses guidance apg, and a cfg outside the scales it was trained for
 * (engine.json distilled.cfg_min .. cfg_max), with OBJAUDIO_ERR_INVALID_ARGUMENT from the generation.
 * Numbers are plain decimal text ("20", "4.5"; no '+' and no spaces), read the same under any locale.
 * A key set again takes the new value. An unknown key returns OBJAUDIO_ERR_UNKNOWN_OPTION,
 * a bad value OBJAUDIO_ERR_INVALID_ARGUMENT; either way the options keep what they held and
 * objaudio_last_error(engine) of the engine they were created with says what to do (options NULL:
 * OBJAUDIO_ERR_INVALID_ARGUMENT with no message, there being no engine to keep it).
 * Options belong to the engine they were created with: destroy them before closing it. Setting is not
 * thread-safe; generations on several threads may read the same options at once. */
OBJAUDIO_API objaudio_status objaudio_options_create(objaudio_engine* engine, objaudio_options** options);
OBJAUDIO_API objaudio_status objaudio_options_set(objaudio_options* options, const char* key, const char* value);
OBJAUDIO_API void objaudio_options_destroy(objaudio_options* options);  /* NULL is ignored */

/* One generation of request's selection (masks, mask size, optional noise; NULL: the whole scene), run
 * as options say (NULL: every default). The request's run fields (union_mode, sampler, steps, cfg, seed)
 * must stay as objaudio_request_init leaves them: with options each is set once, as a key. *n_written
 * (not NULL) is first set to the most samples the call writes (clip_samples at the engine's rate, or
 * what sample_rate makes of them, as objaudio_resample counts), so a call with capacity 0 asks for the
 * size (OBJAUDIO_ERR_BUFFER_TOO_SMALL); on success it holds the count written. */
OBJAUDIO_API objaudio_status objaudio_generate_with_options(objaudio_engine* engine, const objaudio_scene* scene,
                                                            const objaudio_request* request,
                                                            const objaudio_options* options, float* pcm,
                                                            size_t capacity, size_t* n_written);

/* A generation's PCM (n samples at objaudio_engine_info.sample_rate) at another rate, rate in
 * [OBJAUDIO_MIN_SAMPLE_RATE, OBJAUDIO_MAX_SAMPLE_RATE] Hz (44100 or 48000 for games and DAWs), through
 * libsoxr at its very high quality setting, as objaudio_rt.core.audio.resample (`--sample-rate`) does: the same
 * samples give what the Python side gives. *n_written is first set to the most samples the call may
 * write (n * rate / sample_rate + 1), so a call with capacity 0 asks for the size
 * (OBJAUDIO_ERR_BUFFER_TOO_SMALL); on success it holds the count written. pcm and out must not overlap. */
OBJAUDIO_API objaudio_status objaudio_resample(objaudio_engine* engine, const float* pcm, size_t n, int32_t rate,
                                               float* out, size_t capacity, size_t* n_written);

/* Streaming (ABI 2.2): the generation of request's selection, as options say, handed out in order as a host
 * pulls it, so a long clip starts playing long before it is all made. A long clip or a loop is denoised
 * window after window (each window holds the frames the windows before it made, and makes the rest so that
 * they continue them), then decoded and vocoded as far as it is final; the first samples come after one
 * window (about one clip's generation). A stream of the engine's clip, or of a loop shorter than 1.25 clips,
 * is made whole on the first read. A stream's long clip is not the same sample as
 * objaudio_generate_with_options', which denoises all windows jointly.
 * There are no callbacks: objaudio_stream_read runs the generation on the calling thread as far as the
 * samples it asks for need (call it from a worker thread that feeds the audio thread's ring buffer).
 * A stream belongs to one thread at a time; several streams of one engine may run on several threads
 * (options.max_concurrent). Close every stream before closing its engine. The stream is at the engine's
 * rate: the sample_rate key is refused (a host's mixer resamples). Errors: objaudio_last_error(engine). */
OBJAUDIO_API objaudio_status objaudio_stream_open(objaudio_engine* engine, const objaudio_scene* scene,
                                                  const objaudio_request* request, const objaudio_options* options,
                                                  objaudio_stream** stream);
/* The stream's length: *samples, the clip's samples (a loop: one period); *origin, for a loop, where in the
 * period (samples from the start of objaudio_generate_with_options' loop of the same options) the stream
 * starts, the first point its first window alone decides; *loop, 1 for a loop. Any pointer may be NULL. */
OBJAUDIO_API objaudio_status objaudio_stream_info(objaudio_stream* stream, size_t* samples, size_t* origin,
                                                  int32_t* loop);
/* Writes the next `frames` mono float samples into out and their count into *got; blocks while it makes
 * them. A clip's stream ends after `samples`: *got is then less than frames (0 after the end), still
 * OBJAUDIO_OK. A loop's never ends: after one period it plays the period again, seamlessly. A stream that
 * failed (OBJAUDIO_ERR_RUNTIME) keeps failing: close it. */
OBJAUDIO_API objaudio_status objaudio_stream_read(objaudio_stream* stream, float* out, size_t frames, size_t* got);
OBJAUDIO_API void objaudio_stream_close(objaudio_stream* stream);      /* NULL is ignored */

#ifdef __cplusplus
}
#endif
#endif /* OBJAUDIO_ENGINE_H */
