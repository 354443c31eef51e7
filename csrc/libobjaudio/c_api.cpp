// The C ABI (objaudio_engine.h): checks every argument, turns every C++ exception into a status code
// plus the calling thread's last-error message, and never lets one cross into the host.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine.h"
#include "objaudio_engine.h"
#include "resample.h"

struct objaudio_engine {
    std::unique_ptr<objaudio::Engine> engine;
    mutable std::mutex errors_mutex;
    mutable std::unordered_map<std::thread::id, std::string> errors;   // per calling thread

    void set_error(const std::string& message) const {
        std::lock_guard<std::mutex> lock(errors_mutex);
        errors[std::this_thread::get_id()] = message;
    }
};

struct objaudio_scene {
    objaudio::Scene scene;
    const objaudio_engine* owner = nullptr;
};

// The run options of one generation in the request's terms (0: the engine's default), whether they come
// from an objaudio_request (ABI 2.0) or from text keys (objaudio_options); one set of checks reads both.
struct RunFields {
    int32_t union_mode = OBJAUDIO_UNION_COMPOSE;
    int32_t sampler = OBJAUDIO_SAMPLER_DEFAULT;
    int32_t steps = 0;
    double cfg = 0.0;            // a double: "4.1" as text gives Python's cfg, not float(4.1)
    uint64_t seed = 0;
    int32_t sample_rate = 0;     // objaudio_options only: the PCM's rate
    double duration = 0.0;       // objaudio_options only: seconds (0: the engine's clip)
    bool loop = false;           // objaudio_options only: a seamless loop
    bool apg = false;            // objaudio_options only: guidance "apg"
    int silence_gate = -1;       // objaudio_options only: -1 the engine's default (on where it has a gate), 0 off, 1 on
};

struct objaudio_stream {
    std::unique_ptr<objaudio::Stream> stream;
    const objaudio_engine* owner = nullptr;
    bool loop = false;
    size_t samples = 0;                  // the clip's samples (a loop: one period)
    std::vector<float> made;             // every sample handed out by the generation so far
    size_t position = 0;                 // the next sample a read hands out (a loop: counts on past the period)
    std::string failed;                  // the message of a failure that ended the stream
};

struct objaudio_options {
    RunFields run;
    const objaudio_engine* owner = nullptr;
};

namespace {

using objaudio::Failure;

constexpr uint32_t kMinSide = 32;              // objaudio_rt/core/images.py MIN_SIDE
constexpr uint32_t kMaxSide = 8192;            // MAX_SIDE
constexpr uint64_t kMaxPixels = 40000000;      // MAX_PIXELS
constexpr double kMaxCfg = 100.0;              // objaudio_rt/core/options.py MAX_CFG

#define OBJ_CHECK(cond, msg) \
    do { if (!(cond)) throw Failure(OBJAUDIO_ERR_INVALID_ARGUMENT, msg); } while (0)

// Runs `body`; maps what it throws to a status and records the message for this thread on `eng`.
template <typename F>
objaudio_status guarded(const objaudio_engine* eng, F&& body) {
    if (eng == nullptr) return OBJAUDIO_ERR_INVALID_ARGUMENT;
    try {
        body();
        return OBJAUDIO_OK;
    } catch (const Failure& f) {
        eng->set_error(f.what());
        return f.status;
    } catch (const std::bad_alloc&) {
        eng->set_error("out of memory");
        return OBJAUDIO_ERR_OUT_OF_MEMORY;
    } catch (const std::exception& e) {
        eng->set_error(std::string("internal error: ") + e.what());
        return OBJAUDIO_ERR_RUNTIME;
    } catch (...) {
        eng->set_error("internal error (unknown exception)");
        return OBJAUDIO_ERR_RUNTIME;
    }
}

void check_image_size(uint32_t width, uint32_t height) {
    OBJ_CHECK(width >= kMinSide && height >= kMinSide,
              "image is " + std::to_string(width) + "x" + std::to_string(height) + ": each side must be at least 32");
    OBJ_CHECK(width <= kMaxSide && height <= kMaxSide,
              "image is " + std::to_string(width) + "x" + std::to_string(height) +
                  ": each side must be at most 8192; resize it first");
    OBJ_CHECK(static_cast<uint64_t>(width) * height <= kMaxPixels, "image has more than 40000000 pixels");
}

const char* const kUnionNames[] = {"compose", "mask", "mix"};   // objaudio_union order; options.py UNION_MODES

const std::string& sampler_name(int32_t sampler, const objaudio::EngineSpec& s) {
    const auto& names = objaudio::sampler_names();        // in objaudio_sampler order, from 1
    if (sampler == OBJAUDIO_SAMPLER_DEFAULT) return s.default_sampler;
    OBJ_CHECK(sampler >= 1 && sampler <= static_cast<int32_t>(names.size()),
              "unknown sampler " + std::to_string(sampler) + ": use OBJAUDIO_SAMPLER_DDIM, _DPMPP, _DPMPP3M or _UNIPC");
    return names[sampler - 1];
}

objaudio::SamplerTable sampler_table(int32_t sampler, int32_t steps, const objaudio::EngineSpec& s) {
    OBJ_CHECK(steps >= 1 && steps <= s.max_steps, "steps must be in [1, " + std::to_string(s.max_steps) + "], got " +
                                                      std::to_string(steps));
    return objaudio::build_sampler_table(sampler_name(sampler, s), steps, s.alphas_cumprod);
}

void check_request(const objaudio_request& r) {
    OBJ_CHECK(r.struct_size >= sizeof(objaudio_request), "request.struct_size is wrong: initialise the request "
                                                         "with objaudio_request_init");
}

RunFields run_of(const objaudio_request& r) {
    return RunFields{r.union_mode, r.sampler, r.steps, static_cast<double>(r.cfg), r.seed, 0};
}

std::string format_g(double x) {            // Python's f"{x:g}"
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", x);
    return buf;
}

std::string cfg_message(const std::string& got) {
    return "cfg (guidance scale) must be a number in [1, 100], got " + got;
}

// The latent frames and kept samples of a duration (Python's RunOptions.resolve and config.latent_shape):
// a clip of d seconds is int(d / (hop / rate)) log-mel frames rounded up to the VAE factor, and keeps
// int(d * rate) samples; a loop is round(d / one latent frame) latent frames and keeps all of them.
void set_length(objaudio::Options& o, const RunFields& r, const objaudio::EngineSpec& s) {
    const int f = s.downsample;
    const int64_t frame_samples = static_cast<int64_t>(f) * s.hop_length;
    if (r.duration == 0.0 && !r.loop) return;                        // the engine's clip, one pass
    const double seconds = r.duration == 0.0 ? static_cast<double>(s.clip_samples) / s.sample_rate : r.duration;
    if (r.loop) {
        o.frames = objaudio::py_round(seconds / (static_cast<double>(frame_samples) / s.sample_rate));
        o.samples = static_cast<size_t>(o.frames * frame_samples);
    } else {
        auto mel = static_cast<int64_t>(seconds / (static_cast<double>(s.hop_length) / s.sample_rate));
        if (mel % f) mel = (mel + f - 1) / f * f;
        o.frames = mel / f;
        o.samples = std::min(static_cast<size_t>(seconds * s.sample_rate), static_cast<size_t>(mel * s.hop_length));
    }
    o.loop = r.loop;
    if (!o.loop && o.frames == s.latent_h) o.frames = 0;              // the clip's frames: one pass
}

objaudio::Options check_options(const RunFields& r, const objaudio::EngineSpec& s) {
    OBJ_CHECK(std::isfinite(r.cfg), cfg_message("NaN or inf"));
    const double cfg = r.cfg == 0.0 ? s.default_cfg : r.cfg;
    OBJ_CHECK(cfg >= 1.0 && cfg <= kMaxCfg, cfg_message(std::to_string(cfg)));
    if (s.distilled) {                          // objaudio_rt/core/options.py RunOptions.resolve
        OBJ_CHECK(!r.apg, "this engine's UNet is guidance-distilled (its guidance is built in): use guidance cfg, "
                          "or an engine of its teacher checkpoint for apg");
        OBJ_CHECK(cfg >= s.cfg_min && cfg <= s.cfg_max,
                  "this engine's guidance-distilled UNet was trained for cfg in [" + format_g(s.cfg_min) + ", " +
                      format_g(s.cfg_max) + "], got " + format_g(cfg));
    }
    objaudio::Options o{sampler_table(r.sampler, r.steps == 0 ? s.default_steps : r.steps, s), cfg};
    set_length(o, r, s);
    o.apg = r.apg;
    OBJ_CHECK(r.silence_gate != 1 || s.gated, "this engine has no silence gate: leave silence_gate unset (or false), "
                                              "or build the engine from a checkpoint that has one");
    o.silence_gate = s.gated && r.silence_gate != 0;
    return o;
}

// The samples a generation of `o` writes at the engine's rate.
size_t clip_samples_of(const objaudio::Options& o, const objaudio::EngineSpec& s) {
    return o.samples > 0 ? o.samples : s.clip_samples;
}

// The selection of request `r` (masks, noise) with the union mode and seed of `run`.
objaudio::Item check_item(const objaudio_request& r, const RunFields& run, const objaudio_scene& sc,
                          const objaudio::EngineSpec& s, int64_t frames = 0) {
    objaudio::Item item;
    const int max_masks = s.max_rows - static_cast<int>(s.unet_rows(1, 0));
    OBJ_CHECK(r.n_masks <= static_cast<size_t>(max_masks),
              std::to_string(r.n_masks) + " masks: at most " + std::to_string(max_masks) + " per generation");
    OBJ_CHECK(r.n_masks == 0 || r.masks != nullptr, "request.masks is NULL but n_masks is " + std::to_string(r.n_masks));
    OBJ_CHECK(run.union_mode == OBJAUDIO_UNION_COMPOSE || run.union_mode == OBJAUDIO_UNION_MASK ||
                  run.union_mode == OBJAUDIO_UNION_MIX,
              "unknown union_mode " + std::to_string(run.union_mode) +
                  ": use OBJAUDIO_UNION_COMPOSE, OBJAUDIO_UNION_MASK or OBJAUDIO_UNION_MIX");
    if (r.n_masks > 0) {
        OBJ_CHECK(r.mask_width == sc.scene.width && r.mask_height == sc.scene.height,
                  "mask is " + std::to_string(r.mask_width) + "x" + std::to_string(r.mask_height) + " but the image is " +
                      std::to_string(sc.scene.width) + "x" + std::to_string(sc.scene.height) +
                      ": make the mask the same size as the image");
    }
    const size_t npix = static_cast<size_t>(sc.scene.width) * sc.scene.height;
    for (size_t k = 0; k < r.n_masks; ++k) {
        const uint8_t* m = r.masks[k];
        OBJ_CHECK(m != nullptr, "mask " + std::to_string(k) + " is NULL");
        bool any = false;
        for (size_t i = 0; i < npix && !any; ++i) any = m[i] != 0;
        OBJ_CHECK(any, "mask " + std::to_string(k) + " is empty (all zero): it selects nothing; draw the object's region");
        item.masks.push_back(m);
    }
    item.union_mask = run.union_mode == OBJAUDIO_UNION_MASK;
    item.mix = run.union_mode == OBJAUDIO_UNION_MIX && r.n_masks > 1;
    item.seed = run.seed;
    if (r.noise != nullptr) {
        const size_t need = frames > 0 ? static_cast<size_t>(s.latent_c) * static_cast<size_t>(frames) * s.latent_w
                                       : s.latent_numel();
        OBJ_CHECK(r.noise_count == need, "noise holds " + std::to_string(r.noise_count) +
                                             " floats; this run's latent needs " + std::to_string(need) +
                                             " (C * frames * W, frames = " +
                                             std::to_string(frames > 0 ? frames : s.latent_h) + ")");
        for (size_t i = 0; i < r.noise_count; ++i)
            OBJ_CHECK(std::isfinite(r.noise[i]), "noise contains NaN or inf");
        item.noise = r.noise;
    } else {
        OBJ_CHECK(r.noise_count == 0, "noise_count is set but noise is NULL");
    }
    return item;
}

void check_scene(const objaudio_engine* eng, const objaudio_scene* scene) {
    OBJ_CHECK(scene != nullptr, "scene is NULL: encode the image with objaudio_scene_encode first");
    OBJ_CHECK(scene->owner == eng, "scene was encoded by another engine: encode it with this one");
}

void check_capacity(size_t capacity, size_t need) {
    if (capacity < need)
        throw Failure(OBJAUDIO_ERR_BUFFER_TOO_SMALL, "pcm holds " + std::to_string(capacity) +
                                                     " samples; the clip needs " + std::to_string(need));
}

// ---- objaudio_options: one row per key. A new option is a new row here and a line of the header's key
// list; the header's types never change for it.

// Reads the whole of `text` as a number into `out` (std::from_chars: no '+', no spaces, the same under any
// locale); false if it is not one or does not fit T (`out` may then hold a partial value).
template <typename T>
bool parse_number(std::string_view text, T& out) {
    const auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), out);
    return err == std::errc() && end == text.data() + text.size();
}

std::string quoted(std::string_view value) { return "'" + std::string(value) + "'"; }

// The index of `value` in `names`, or -1.
template <typename Names>
int index_of(std::string_view value, const Names& names) {
    int i = 0;
    for (const auto& name : names) {
        if (value == name) return i;
        ++i;
    }
    return -1;
}

template <typename Names>
std::string joined(const Names& names) {
    std::string out;
    for (const auto& name : names) out += (out.empty() ? "" : ", ") + std::string(name);
    return out;
}

void set_steps(RunFields& run, std::string_view v, const objaudio::EngineSpec& s) {
    int32_t steps = 0;
    OBJ_CHECK(parse_number(v, steps) && steps >= 1 && steps <= s.max_steps,
              "steps must be an integer in [1, " + std::to_string(s.max_steps) + "], got " + quoted(v));
    run.steps = steps;
}

void set_sampler(RunFields& run, std::string_view v, const objaudio::EngineSpec&) {
    const auto& names = objaudio::sampler_names();          // objaudio_sampler order, from 1
    const int i = index_of(v, names);
    OBJ_CHECK(i >= 0, "unknown sampler " + quoted(v) + ": use one of " + joined(names));
    run.sampler = 1 + i;
}

void set_cfg(RunFields& run, std::string_view v, const objaudio::EngineSpec&) {
    double cfg = 0.0;
    OBJ_CHECK(parse_number(v, cfg) && cfg >= 1.0 && cfg <= kMaxCfg, cfg_message(quoted(v)));
    run.cfg = cfg;
}

void set_seed(RunFields& run, std::string_view v, const objaudio::EngineSpec&) {
    uint64_t seed = 0;
    OBJ_CHECK(parse_number(v, seed),
              "seed must be an integer in [0, 2**64 - 1] (what torch.Generator takes), got " + quoted(v));
    run.seed = seed;
}

void set_union(RunFields& run, std::string_view v, const objaudio::EngineSpec&) {
    const int mode = index_of(v, kUnionNames);
    OBJ_CHECK(mode >= 0, "unknown union mode " + quoted(v) + ": use one of " + joined(kUnionNames));
    run.union_mode = mode;
}

void set_sample_rate(RunFields& run, std::string_view v, const objaudio::EngineSpec&) {
    int32_t rate = 0;
    OBJ_CHECK(parse_number(v, rate) && rate >= OBJAUDIO_MIN_SAMPLE_RATE && rate <= OBJAUDIO_MAX_SAMPLE_RATE,
              "sample_rate must be an integer from 8000 to 192000 Hz (44100 or 48000 for games and DAWs), got " +
                  quoted(v));
    run.sample_rate = rate;
}

constexpr double kMaxSeconds = 120.0;       // objaudio_rt/core/options.py MAX_SECONDS

// From the engine's clip (one pass) to kMaxSeconds (overlapping windows of the clip, longform.py).
void set_duration(RunFields& run, std::string_view v, const objaudio::EngineSpec& s) {
    double seconds = 0.0;
    const bool number = parse_number(v, seconds) && std::isfinite(seconds) && seconds > 0.0;
    const double clip = static_cast<double>(s.clip_samples) / s.sample_rate;
    OBJ_CHECK(number && static_cast<size_t>(seconds * s.sample_rate) >= s.clip_samples && seconds <= kMaxSeconds,
              "duration must be in [" + format_g(clip) + ", " + format_g(kMaxSeconds) + "] seconds: this engine's "
              "clip, or longer, made over overlapping windows of it (shorter clips: make them in Python), got " +
                  quoted(v));
    run.duration = seconds;
}

void set_loop(RunFields& run, std::string_view v, const objaudio::EngineSpec&) {
    OBJ_CHECK(v == "true" || v == "false" || v == "1" || v == "0",
              "loop must be true or false (or 1 or 0), got " + quoted(v));
    run.loop = v == "true" || v == "1";
}

void set_guidance(RunFields& run, std::string_view v, const objaudio::EngineSpec&) {
    OBJ_CHECK(v == "cfg" || v == "apg", "unknown guidance " + quoted(v) + ": use one of cfg, apg");
    run.apg = v == "apg";
}

void set_silence_gate(RunFields& run, std::string_view v, const objaudio::EngineSpec&) {
    OBJ_CHECK(v == "true" || v == "false" || v == "1" || v == "0",
              "silence_gate must be true or false (or 1 or 0), got " + quoted(v));
    run.silence_gate = v == "true" || v == "1" ? 1 : 0;
}

struct OptionKey {
    const char* name;
    void (*set)(RunFields&, std::string_view, const objaudio::EngineSpec&);
};

constexpr OptionKey kOptionKeys[] = {{"steps", set_steps},   {"sampler", set_sampler},
                                     {"cfg", set_cfg},       {"seed", set_seed},
                                     {"union", set_union},   {"sample_rate", set_sample_rate},
                                     {"duration", set_duration}, {"loop", set_loop},
                                     {"guidance", set_guidance}, {"silence_gate", set_silence_gate}};

// The selection of an objaudio_options call: the request's masks and noise (NULL: the whole scene), its run
// fields left as objaudio_request_init sets them.
objaudio_request selection_of(const objaudio_request* request) {
    objaudio_request selection;
    objaudio_request_init(&selection);
    if (request != nullptr) {
        const objaudio_request& r = *request;
        check_request(r);
        OBJ_CHECK(r.union_mode == 0 && r.sampler == 0 && r.steps == 0 && r.cfg == 0.0f && r.seed == 0,
                  "the request sets union_mode, sampler, steps, cfg or seed: with objaudio_options give them as "
                  "the keys union, sampler, steps, cfg and seed, and leave the request's as objaudio_request_init "
                  "sets them");
        selection = r;
    }
    return selection;
}

void write_message(char* error, size_t error_size, const std::string& message) {
    if (error == nullptr || error_size == 0) return;
    const size_t n = message.size() < error_size - 1 ? message.size() : error_size - 1;
    std::memcpy(error, message.data(), n);
    error[n] = '\0';
}

}  // namespace

extern "C" {

uint32_t objaudio_abi_version(void) { return OBJAUDIO_ABI_MAJOR; }
uint32_t objaudio_abi_minor(void) { return OBJAUDIO_ABI_MINOR; }

const char* objaudio_status_string(objaudio_status status) {
    switch (status) {
        case OBJAUDIO_OK: return "ok";
        case OBJAUDIO_ERR_INVALID_ARGUMENT: return "invalid argument";
        case OBJAUDIO_ERR_IO: return "i/o error";
        case OBJAUDIO_ERR_ENGINE_CORRUPT: return "engine missing, altered or malformed";
        case OBJAUDIO_ERR_INCOMPATIBLE: return "engine built for another device, runtime or version";
        case OBJAUDIO_ERR_BUFFER_TOO_SMALL: return "output buffer too small";
        case OBJAUDIO_ERR_RUNTIME: return "runtime error";
        case OBJAUDIO_ERR_OUT_OF_MEMORY: return "out of memory";
        case OBJAUDIO_ERR_UNKNOWN_OPTION: return "unknown option key";
    }
    return "unknown status";
}

void objaudio_open_options_init(objaudio_open_options* options) {
    if (options == nullptr) return;
    std::memset(options, 0, sizeof *options);
    options->struct_size = sizeof *options;
    options->max_concurrent = 2;
    options->verify_files = 1;
}

void objaudio_request_init(objaudio_request* request) {
    if (request == nullptr) return;
    std::memset(request, 0, sizeof *request);
    request->struct_size = sizeof *request;
}

objaudio_status objaudio_engine_open(const char* engine_dir, const objaudio_open_options* options,
                                     objaudio_engine** engine, char* error, size_t error_size) {
    write_message(error, error_size, "");
    if (engine == nullptr) {
        write_message(error, error_size, "engine (the output pointer) is NULL");
        return OBJAUDIO_ERR_INVALID_ARGUMENT;
    }
    *engine = nullptr;
    objaudio_open_options opts;
    objaudio_open_options_init(&opts);
    try {
        if (engine_dir == nullptr || engine_dir[0] == '\0')
            throw Failure(OBJAUDIO_ERR_INVALID_ARGUMENT, "engine_dir is NULL or empty: give the engine folder");
        if (options != nullptr) {
            if (options->struct_size != sizeof(objaudio_open_options))
                throw Failure(OBJAUDIO_ERR_INVALID_ARGUMENT, "options.struct_size is wrong: initialise the options "
                                                             "with objaudio_open_options_init");
            opts = *options;
        }
        if (opts.max_concurrent < 1 || opts.max_concurrent > 64)
            throw Failure(OBJAUDIO_ERR_INVALID_ARGUMENT, "max_concurrent must be in [1, 64]");
        auto handle = std::make_unique<objaudio_engine>();
        handle->engine = objaudio::Engine::open(engine_dir, opts.max_concurrent, opts.verify_files != 0);
        *engine = handle.release();
        return OBJAUDIO_OK;
    } catch (const Failure& f) {
        write_message(error, error_size, f.what());
        return f.status;
    } catch (const std::bad_alloc&) {
        write_message(error, error_size, "out of memory while opening the engine");
        return OBJAUDIO_ERR_OUT_OF_MEMORY;
    } catch (const std::exception& e) {
        write_message(error, error_size, std::string("cannot open the engine: ") + e.what());
        return OBJAUDIO_ERR_RUNTIME;
    } catch (...) {
        write_message(error, error_size, "cannot open the engine (unknown exception)");
        return OBJAUDIO_ERR_RUNTIME;
    }
}

void objaudio_engine_close(objaudio_engine* engine) { delete engine; }

objaudio_status objaudio_sampler_table(objaudio_engine* engine, int32_t sampler, int32_t steps, int64_t* timesteps,
                                       double* coefs, size_t capacity, size_t* width) {
    return guarded(engine, [&] {
        OBJ_CHECK(width != nullptr, "width is NULL");
        const objaudio::SamplerTable t = sampler_table(sampler, steps, engine->engine->spec());
        *width = static_cast<size_t>(t.width);
        if (capacity < t.coefs.size())
            throw Failure(OBJAUDIO_ERR_BUFFER_TOO_SMALL, "coefs holds " + std::to_string(capacity) + " values; the table "
                                                         "has steps * width = " + std::to_string(t.coefs.size()));
        OBJ_CHECK(timesteps != nullptr && coefs != nullptr, "timesteps or coefs is NULL");
        std::copy(t.timesteps.begin(), t.timesteps.end(), timesteps);
        std::copy(t.coefs.begin(), t.coefs.end(), coefs);
    });
}

objaudio_status objaudio_resample(objaudio_engine* engine, const float* pcm, size_t n, int32_t rate, float* out,
                                  size_t capacity, size_t* n_written) {
    return guarded(engine, [&] {
        OBJ_CHECK(n_written != nullptr, "n_written is NULL");
        OBJ_CHECK(rate >= OBJAUDIO_MIN_SAMPLE_RATE && rate <= OBJAUDIO_MAX_SAMPLE_RATE,
                  "the sample rate must be an integer from 8000 to 192000 Hz (44100 or 48000 for games and DAWs), "
                  "got " + std::to_string(rate));
        const int from = engine->engine->spec().sample_rate;
        const size_t most = objaudio::resampled_capacity(n, from, rate);
        *n_written = most;
        if (capacity < most)
            throw Failure(OBJAUDIO_ERR_BUFFER_TOO_SMALL, "out holds " + std::to_string(capacity) + " samples; " +
                                                         std::to_string(n) + " at " + std::to_string(from) +
                                                         " Hz need up to " + std::to_string(most) + " at " +
                                                         std::to_string(rate) + " Hz");
        OBJ_CHECK(pcm != nullptr && out != nullptr, "pcm or out is NULL");
        OBJ_CHECK(n > 0, "pcm holds no samples");
        OBJ_CHECK(out + capacity <= pcm || pcm + n <= out, "pcm and out overlap: give a separate output buffer");
        for (size_t i = 0; i < n; ++i) OBJ_CHECK(std::isfinite(pcm[i]), "pcm contains NaN or inf");
        *n_written = objaudio::resample(pcm, n, from, rate, out, capacity);
    });
}

const char* objaudio_last_error(const objaudio_engine* engine) {
    if (engine == nullptr) return "engine is NULL";
    std::lock_guard<std::mutex> lock(engine->errors_mutex);
    auto it = engine->errors.find(std::this_thread::get_id());
    return it == engine->errors.end() ? "" : it->second.c_str();
}

objaudio_status objaudio_engine_get_info(objaudio_engine* engine, objaudio_engine_info* info) {
    return guarded(engine, [&] {
        OBJ_CHECK(info != nullptr, "info is NULL");
        const objaudio::EngineSpec& s = engine->engine->spec();
        std::memset(info, 0, sizeof *info);
        info->struct_size = sizeof *info;
        info->sample_rate = s.sample_rate;
        info->clip_samples = s.clip_samples;
        info->latent_channels = s.latent_c;
        info->latent_frames = s.latent_h;
        info->latent_bins = s.latent_w;
        info->image_size = s.image_size;
        info->default_steps = s.default_steps;
        info->default_cfg = static_cast<float>(s.default_cfg);
        const auto& names = objaudio::sampler_names();
        info->default_sampler = 1 + static_cast<int32_t>(std::find(names.begin(), names.end(), s.default_sampler) -
                                                         names.begin());   // read_engine_spec checked it is one
        info->max_masks = s.max_rows - static_cast<int32_t>(s.unet_rows(1, 0));
        info->max_stems = s.max_stems;
        info->max_steps = s.max_steps;
        std::strncpy(info->device, s.device.c_str(), sizeof info->device - 1);
    });
}

objaudio_status objaudio_scene_encode(objaudio_engine* engine, const uint8_t* rgb, uint32_t width, uint32_t height,
                                      objaudio_scene** scene) {
    return guarded(engine, [&] {
        OBJ_CHECK(scene != nullptr, "scene (the output pointer) is NULL");
        *scene = nullptr;
        OBJ_CHECK(rgb != nullptr, "rgb is NULL: pass height rows of width * 3 bytes");
        check_image_size(width, height);
        auto handle = std::make_unique<objaudio_scene>();
        handle->scene = engine->engine->encode(rgb, width, height);
        handle->owner = engine;
        *scene = handle.release();
    });
}

void objaudio_scene_free(objaudio_scene* scene) { delete scene; }

objaudio_status objaudio_scene_tokens(objaudio_engine* engine, const objaudio_scene* scene, float* tokens,
                                      size_t capacity, size_t* count) {
    return guarded(engine, [&] {
        check_scene(engine, scene);
        const std::vector<float>& t = scene->scene.tokens;
        if (count != nullptr) *count = t.size();
        OBJ_CHECK(tokens != nullptr, "tokens is NULL");
        if (capacity < t.size())
            throw Failure(OBJAUDIO_ERR_BUFFER_TOO_SMALL, "tokens holds " + std::to_string(capacity) + " floats; the scene "
                                                         "has " + std::to_string(t.size()));
        std::memcpy(tokens, t.data(), t.size() * sizeof(float));
    });
}

objaudio_status objaudio_generate_stems(objaudio_engine* engine, const objaudio_scene* scene,
                                        const objaudio_request* requests, size_t n_requests, float* const* pcm,
                                        size_t capacity) {
    return guarded(engine, [&] {
        const objaudio::EngineSpec& s = engine->engine->spec();
        check_scene(engine, scene);
        OBJ_CHECK(requests != nullptr, "requests is NULL");
        OBJ_CHECK(n_requests >= 1 && n_requests <= static_cast<size_t>(s.max_stems),
                  "n_requests must be in [1, " + std::to_string(s.max_stems) + "], got " + std::to_string(n_requests));
        OBJ_CHECK(pcm != nullptr, "pcm is NULL");
        int64_t rows = 0;   // UNet rows per step (EngineSpec::unet_rows)
        for (size_t i = 0; i < n_requests; ++i) {
            const objaudio_request& r = requests[i];
            check_request(r);
            if (r.n_masks > 1 && r.union_mode == OBJAUDIO_UNION_MIX)
                rows += s.unet_rows(static_cast<int64_t>(r.n_masks), static_cast<int64_t>(r.n_masks));   // a stem a mask
            else
                rows += s.unet_rows(1, r.n_masks > 1 && r.union_mode == OBJAUDIO_UNION_COMPOSE ? r.n_masks : 1);
        }
        OBJ_CHECK(rows <= s.max_rows,
                  std::string("too many selections in one call: ") +
                      (s.distilled ? "their conditions" : "requests plus composed masks") + " need " +
                      std::to_string(rows) + " UNet rows, this engine takes at most " + std::to_string(s.max_rows));
        const objaudio::Options options = check_options(run_of(requests[0]), s);
        std::vector<objaudio::Item> items;
        std::vector<float*> out;
        for (size_t i = 0; i < n_requests; ++i) {
            const RunFields run = run_of(requests[i]);
            const objaudio::Options o = check_options(run, s);
            OBJ_CHECK(o.table.sampler == options.table.sampler && o.table.steps() == options.table.steps() &&
                          o.cfg == options.cfg,
                      "all requests of one generate_stems call must share steps, sampler and cfg");
            items.push_back(check_item(requests[i], run, *scene, s));
            OBJ_CHECK(pcm[i] != nullptr, "pcm[" + std::to_string(i) + "] is NULL");
            out.push_back(pcm[i]);
        }
        check_capacity(capacity, s.clip_samples);
        engine->engine->generate(scene->scene, items, options, out);
    });
}

objaudio_status objaudio_options_create(objaudio_engine* engine, objaudio_options** options) {
    return guarded(engine, [&] {
        OBJ_CHECK(options != nullptr, "options (the output pointer) is NULL");
        *options = nullptr;
        auto handle = std::make_unique<objaudio_options>();
        handle->owner = engine;
        *options = handle.release();
    });
}

objaudio_status objaudio_options_set(objaudio_options* options, const char* key, const char* value) {
    if (options == nullptr) return OBJAUDIO_ERR_INVALID_ARGUMENT;     // no engine to keep a message on
    return guarded(options->owner, [&] {
        OBJ_CHECK(key != nullptr && value != nullptr, "key or value is NULL: give both as NUL-terminated text");
        const auto it = std::find_if(std::begin(kOptionKeys), std::end(kOptionKeys),
                                     [&](const OptionKey& k) { return std::strcmp(k.name, key) == 0; });
        if (it == std::end(kOptionKeys)) {
            std::vector<std::string_view> known;
            for (const OptionKey& k : kOptionKeys) known.push_back(k.name);
            throw Failure(OBJAUDIO_ERR_UNKNOWN_OPTION, "unknown option " + quoted(key) + ": this libobjaudio (ABI " +
                                                           std::to_string(OBJAUDIO_ABI_MAJOR) + "." +
                                                           std::to_string(OBJAUDIO_ABI_MINOR) + ") takes " +
                                                           joined(known));
        }
        RunFields run = options->run;              // a refused value leaves the options as they were
        it->set(run, value, options->owner->engine->spec());
        options->run = run;
    });
}

void objaudio_options_destroy(objaudio_options* options) { delete options; }

objaudio_status objaudio_generate_with_options(objaudio_engine* engine, const objaudio_scene* scene,
                                               const objaudio_request* request, const objaudio_options* options,
                                               float* pcm, size_t capacity, size_t* n_written) {
    return guarded(engine, [&] {
        OBJ_CHECK(n_written != nullptr, "n_written is NULL: it receives the clip's length");
        *n_written = 0;
        const objaudio::EngineSpec& s = engine->engine->spec();
        OBJ_CHECK(options == nullptr || options->owner == engine,
                  "options were created with another engine: create them with this one");
        const RunFields run = options != nullptr ? options->run : RunFields{};
        const objaudio_request selection = selection_of(request);
        const int rate = run.sample_rate != 0 ? run.sample_rate : s.sample_rate;
        const objaudio::Options o = check_options(run, s);
        const size_t n = clip_samples_of(o, s);
        const size_t most = rate == s.sample_rate ? n : objaudio::resampled_capacity(n, s.sample_rate, rate);
        *n_written = most;
        check_capacity(capacity, most);
        OBJ_CHECK(pcm != nullptr, "pcm is NULL");
        check_scene(engine, scene);
        const objaudio::Item item = check_item(selection, run, *scene, s, o.frames);
        if (rate == s.sample_rate) {
            engine->engine->generate(scene->scene, {item}, o, {pcm});
            *n_written = n;
            return;
        }
        std::vector<float> clip(n);                     // at the engine's rate, then resampled into pcm
        engine->engine->generate(scene->scene, {item}, o, {clip.data()});
        *n_written = objaudio::resample(clip.data(), clip.size(), s.sample_rate, rate, pcm, capacity);
    });
}

objaudio_status objaudio_stream_open(objaudio_engine* engine, const objaudio_scene* scene,
                                     const objaudio_request* request, const objaudio_options* options,
                                     objaudio_stream** stream) {
    return guarded(engine, [&] {
        OBJ_CHECK(stream != nullptr, "stream (the output pointer) is NULL");
        *stream = nullptr;
        const objaudio::EngineSpec& s = engine->engine->spec();
        OBJ_CHECK(options == nullptr || options->owner == engine,
                  "options were created with another engine: create them with this one");
        const RunFields run = options != nullptr ? options->run : RunFields{};
        OBJ_CHECK(run.sample_rate == 0 || run.sample_rate == s.sample_rate,
                  "a stream is at the engine's rate (" + std::to_string(s.sample_rate) + " Hz): leave sample_rate "
                  "unset and let the host's mixer resample");
        const objaudio_request selection = selection_of(request);
        check_scene(engine, scene);
        const objaudio::Options o = check_options(run, s);
        const objaudio::Item item = check_item(selection, run, *scene, s, o.frames);
        auto handle = std::make_unique<objaudio_stream>();
        handle->stream = engine->engine->stream(scene->scene, item, o);
        handle->owner = engine;
        handle->loop = o.loop;
        handle->samples = handle->stream->samples();
        *stream = handle.release();
    });
}

objaudio_status objaudio_stream_info(objaudio_stream* stream, size_t* samples, size_t* origin, int32_t* loop) {
    if (stream == nullptr) return OBJAUDIO_ERR_INVALID_ARGUMENT;
    return guarded(stream->owner, [&] {
        if (samples != nullptr) *samples = stream->samples;
        if (origin != nullptr) *origin = stream->stream->origin();
        if (loop != nullptr) *loop = stream->loop ? 1 : 0;
    });
}

objaudio_status objaudio_stream_read(objaudio_stream* stream, float* out, size_t frames, size_t* got) {
    if (stream == nullptr) return OBJAUDIO_ERR_INVALID_ARGUMENT;
    return guarded(stream->owner, [&] {
        OBJ_CHECK(got != nullptr, "got is NULL: it receives the count of samples read");
        *got = 0;
        OBJ_CHECK(out != nullptr || frames == 0, "out is NULL");
        if (!stream->failed.empty())
            throw Failure(OBJAUDIO_ERR_RUNTIME, "the stream failed earlier (" + stream->failed + "): close it");
        const size_t want = stream->loop ? frames : std::min(frames, stream->samples - stream->position);
        const size_t need = stream->loop ? std::min(stream->position + want, stream->samples) : stream->position + want;
        try {
            while (stream->made.size() < need && stream->stream->next(stream->made)) {
            }
        } catch (const std::exception& e) {
            stream->failed = e.what();
            throw;
        }
        OBJ_CHECK(stream->made.size() >= need, "the stream ended early (an internal error)");
        for (size_t i = 0; i < want; ++i)
            out[i] = stream->made[stream->loop ? (stream->position + i) % stream->samples : stream->position + i];
        stream->position += want;
        *got = want;
    });
}

void objaudio_stream_close(objaudio_stream* stream) { delete stream; }

objaudio_status objaudio_generate(objaudio_engine* engine, const objaudio_scene* scene,
                                  const objaudio_request* request, float* pcm, size_t capacity, size_t* n_written) {
    if (n_written != nullptr) *n_written = 0;
    objaudio_status st = objaudio_generate_stems(engine, scene, request, 1, &pcm, capacity);
    if (st == OBJAUDIO_OK && n_written != nullptr) *n_written = engine->engine->spec().clip_samples;
    return st;
}

}  // extern "C"
