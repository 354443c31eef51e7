// The generation itself, readable top to bottom in engine.cpp (the only file that includes LibTorch):
//   image -> CLIP patch tokens -> masks -> patch coverage -> rescaled weights -> condition
//   -> guided denoising loop (coefficient tables) -> latent -> VAE decoder -> vocoder -> PCM
// Inputs arrive here already checked by c_api.cpp; this layer assumes sizes and pointers are valid.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "samplers.h"
#include "spec.h"

namespace objaudio {

// Python's round() of a float: to the nearest integer, ties to even (the default rounding mode).
inline int64_t py_round(double x) { return static_cast<int64_t>(std::nearbyint(x)); }

struct Scene {
    uint32_t width = 0, height = 0;
    std::vector<float> tokens;           // (P, L) CLIP patch tokens, float32 on the host
};

struct Item {                            // one selection: its masks (each width*height bytes) or none
    std::vector<const uint8_t*> masks;   // empty: the whole scene
    bool union_mask = false;             // true: the paper's pixel union; false: composed conditions
    bool mix = false;                    // union "mix": each mask generated alone, the waves summed (Engine::generate)
    const float* noise = nullptr;        // (C, H, W) initial noise, or nullptr to draw it from seed
    uint64_t seed = 0;
};

struct Options {
    SamplerTable table;                  // built for the request's sampler and steps (samplers.h)
    double cfg = 0.0;
    int64_t frames = 0;                  // latent frames T; 0: the engine's clip (one pass)
    size_t samples = 0;                  // samples a generation keeps (a loop: one period); 0: clip_samples
    bool loop = false;                   // the latent's time axis wraps around
    bool apg = false;                    // adaptive projected guidance (objaudio_rt/core/guidance.py, eta 0)
    bool silence_gate = false;           // the engine's silence gate (objaudio_rt/core/gate.py): silent items are zeros
};

struct StreamState;
struct Cond;

// A generation handed out in order (objaudio_rt Pipeline.stream): a long clip or a loop is denoised window
// after window, each holding what the windows before it made, and decoded and vocoded as far as it is final.
class Stream {
 public:
    explicit Stream(std::unique_ptr<StreamState> state);
    // A union "mix": the parts' streams (same options: same blocks) handed out summed.
    explicit Stream(std::vector<std::unique_ptr<Stream>> parts);
    ~Stream();
    size_t samples() const;              // the samples of the clip (a loop: one period)
    size_t origin() const;               // a loop's stream starts this many samples into the period
    // Appends the next block of samples; false once all `samples` have been handed out.
    bool next(std::vector<float>& out);

 private:
    std::unique_ptr<StreamState> state_;
    std::vector<std::unique_ptr<Stream>> parts_;
};

class Engine {
 public:
    static std::unique_ptr<Engine> open(const std::string& dir, int max_concurrent, bool verify_files);
    ~Engine();

    const EngineSpec& spec() const { return spec_; }
    Scene encode(const uint8_t* rgb, uint32_t width, uint32_t height) const;
    // Writes options.samples (0: spec().clip_samples) samples per item into out[i]; a run of more frames than
    // the clip, or a loop, denoises its windows jointly (longform.py, one item). Thread-safe.
    void generate(const Scene& scene, const std::vector<Item>& items, const Options& options,
                  const std::vector<float*>& out) const;
    // One item's generation as a stream. The scene and the item's masks are read here, not kept.
    std::unique_ptr<Stream> stream(const Scene& scene, const Item& item, const Options& options) const;

 private:
    friend struct StreamState;
    struct Networks;
    Engine(EngineSpec spec, std::unique_ptr<Networks> nets);
    // The UNet's condition rows of `items` (a guidance-distilled UNet's carry the embedding of `cfg`); with
    // `gate`, the silence gate's silent parts left out and the items left with none not among Cond::kept.
    Cond conditions(const Scene& scene, const std::vector<Item>& items, double cfg, bool gate) const;
    // Union "mix": a mixed item's masks as items of their own; generate() of a batch holding mixed items.
    static std::vector<Item> mix_parts(const Item& item);
    void generate_mixed(const Scene& scene, const std::vector<Item>& items, const Options& options,
                        const std::vector<float*>& out) const;
    EngineSpec spec_;
    std::unique_ptr<Networks> nets_;
};

}  // namespace objaudio
