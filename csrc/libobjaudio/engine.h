// The generation itself, readable top to bottom in engine.cpp (the only file that includes LibTorch):
//   image -> CLIP patch tokens -> masks -> patch coverage -> rescaled weights -> condition
//   -> guided denoising loop (coefficient tables) -> latent -> VAE decoder -> vocoder -> PCM
// Inputs arrive here already checked by c_api.cpp; this layer assumes sizes and pointers are valid.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "samplers.h"
#include "spec.h"

namespace objaudio {

struct Scene {
    uint32_t width = 0, height = 0;
    std::vector<float> tokens;           // (P, L) CLIP patch tokens, float32 on the host
};

struct Item {                            // one selection: its masks (each width*height bytes) or none
    std::vector<const uint8_t*> masks;   // empty: the whole scene
    bool union_mask = false;             // true: the paper's pixel union; false: composed conditions
    const float* noise = nullptr;        // (C, H, W) initial noise, or nullptr to draw it from seed
    uint64_t seed = 0;
};

struct Options {
    SamplerTable table;                  // built for the request's sampler and steps (samplers.h)
    double cfg = 0.0;
};

class Engine {
 public:
    static std::unique_ptr<Engine> open(const std::string& dir, int max_concurrent, bool verify_files);
    ~Engine();

    const EngineSpec& spec() const { return spec_; }
    Scene encode(const uint8_t* rgb, uint32_t width, uint32_t height) const;
    // Writes spec().clip_samples samples per item into out[i]. Thread-safe.
    void generate(const Scene& scene, const std::vector<Item>& items, const Options& options,
                  const std::vector<float*>& out) const;

 private:
    struct Networks;
    Engine(EngineSpec spec, std::unique_ptr<Networks> nets);
    EngineSpec spec_;
    std::unique_ptr<Networks> nets_;
};

}  // namespace objaudio
