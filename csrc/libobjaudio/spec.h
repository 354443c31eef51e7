// The engine folder's description (engine.json) and its integrity check (manifest.json): no torch here.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "objaudio_engine.h"

namespace objaudio {

constexpr int kEngineVersion = 2;                 // export/engine.py ENGINE_VERSION
constexpr int kDistilledEngineVersion = 3;        // export/engine.py DISTILLED_ENGINE_VERSION: a guidance-distilled
                                                  // model's (a library reading only 2 refuses it, not runs it wrong)
constexpr int kGatedEngineVersion = 4;            // export/engine.py GATED_ENGINE_VERSION: a model with a silence gate
                                                  // (distilled or not); older libraries refuse it
constexpr const char* kEngineFormat = "objaudio-engine";
constexpr const char* kRuntime = "libtorch-aoti";  // export/engine.py RUNTIME

// Thrown inside the library; the C API turns it into a status code and the thread's last error.
struct Failure : std::runtime_error {
    objaudio_status status;
    Failure(objaudio_status s, const std::string& message) : std::runtime_error(message), status(s) {}
};

struct EngineSpec {
    std::string dir, device, torch_version, model_name;
    int sample_rate = 0;
    size_t clip_samples = 0;
    int latent_c = 0, latent_h = 0, latent_w = 0;
    int hop_length = 0;                        // samples per log-mel frame
    int downsample = 0;                        // log-mel frames per latent frame (the VAE's factor)
    int image_size = 0, patch_size = 0, num_patches = 0, token_dim = 0;
    std::array<double, 3> mean{}, std{};
    std::string mask_rescale;                  // "moments" or "sum"
    double attn_std = 0.0;                     // the calibration sigma
    int heads = 1, cond_dim = 0;
    std::vector<float> null_condition;         // (cond_dim,)
    std::vector<double> alphas_cumprod;        // (T,) from the schedule's betas; samplers.h builds the tables
    int max_steps = 0;                         // T - 1 (objaudio_rt/core/options.py max_steps)
    int default_steps = 0;
    std::string default_sampler;
    double default_cfg = 0.0;
    int max_rows = 0, max_stems = 0;           // UNet rows per call; requests per generate_stems
    bool distilled = false;                    // a guidance-distilled UNet (engine.json "distilled"): the scale's
    double cfg_min = 0.0, cfg_max = 0.0;       // embedding added to each condition row; the scales it was trained for
    // The silence gate (engine.json "silence_gate"; objaudio_rt/core/gate.py): p = sigmoid(w2 . silu(W1 c + b1) + b2)
    // of a condition row c; p >= gate_threshold is silent.
    bool gated = false;
    int gate_hidden = 0;
    double gate_threshold = 1.0;
    std::vector<float> gate_w1, gate_b1, gate_w2;   // (hidden, cond_dim) row-major, (hidden,), (hidden,)
    float gate_b2 = 0.0f;
    std::map<std::string, std::string> networks;   // name -> path inside the folder

    size_t latent_numel() const { return static_cast<size_t>(latent_c) * latent_h * latent_w; }
    // The UNet rows of a generation of `items` selections holding `parts` conditions in all: one unconditional
    // row per item and one per condition; a distilled UNet's, one per condition (objaudio_rt denoise.guided_loop).
    int64_t unet_rows(int64_t items, int64_t parts) const { return (distilled ? 0 : items) + parts; }
};

// Reads engine.json, checks format, version and runtime name, and (when verify_files) every file's
// sha256 against manifest.json. Device and torch version are checked by the caller, which knows them.
EngineSpec read_engine_spec(const std::string& dir, bool verify_files);

}  // namespace objaudio
