// Every step mirrors objaudio_rt op for op (same ATen kernels, same order), so a generation from the
// same noise matches the Python pipeline to float32 rounding of the compiled networks.
#include "engine.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/_upsample_bicubic2d_aa.h>
#include <ATen/ops/adaptive_avg_pool2d.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/avg_pool2d.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/full.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/lerp.h>
#include <ATen/ops/minimum.h>
#include <ATen/ops/mv.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/rsub.h>
#include <ATen/ops/sigmoid.h>
#include <ATen/ops/silu.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/std.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/util/Exception.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

namespace objaudio {
namespace {

using torch::inductor::AOTIModelPackageLoader;

std::string runtime_version() {
    return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
           std::to_string(TORCH_VERSION_PATCH);
}

// Runs one network on contiguous inputs (the layout it was compiled for); turns a LibTorch error into a
// Failure that names the network.
at::Tensor run(AOTIModelPackageLoader& net, const char* name, std::vector<at::Tensor> inputs) {
    for (at::Tensor& t : inputs) t = t.contiguous();
    try {
        std::vector<at::Tensor> out = net.run(inputs);
        if (out.empty()) throw Failure(OBJAUDIO_ERR_RUNTIME, std::string(name) + " returned no output");
        return out[0];
    } catch (const c10::Error& e) {
        throw Failure(OBJAUDIO_ERR_RUNTIME, std::string(name) + " failed: " + e.what_without_backtrace());
    }
}

}  // namespace

struct Engine::Networks {
    at::Device device{at::kCPU};
    std::map<std::string, std::unique_ptr<AOTIModelPackageLoader>> nets;   // thread-safe with num_runners slots

    AOTIModelPackageLoader& operator[](const std::string& name) const { return *nets.at(name); }
};

Engine::Engine(EngineSpec spec, std::unique_ptr<Networks> nets) : spec_(std::move(spec)), nets_(std::move(nets)) {}
Engine::~Engine() = default;

std::unique_ptr<Engine> Engine::open(const std::string& dir, int max_concurrent, bool verify_files) {
    EngineSpec spec = read_engine_spec(dir, verify_files);
    const std::string version = runtime_version();
    if (spec.torch_version != version)
        throw Failure(OBJAUDIO_ERR_INCOMPATIBLE, "engine compiled with torch " + spec.torch_version +
                                                 " but this libobjaudio runs LibTorch " + version +
                                                 ": rebuild the engine with that torch");
    auto nets = std::make_unique<Networks>();
    if (spec.device == "cuda") {
        if (!at::hasCUDA())
            throw Failure(OBJAUDIO_ERR_INCOMPATIBLE, "engine built for cuda but this machine has no usable CUDA GPU "
                                                     "(or this LibTorch has no CUDA): build a cpu engine");
        nets->device = at::Device(at::kCUDA, 0);
    } else if (spec.device != "cpu") {
        throw Failure(OBJAUDIO_ERR_INCOMPATIBLE, "engine built for unknown device '" + spec.device + "'");
    }
    const c10::DeviceIndex index = spec.device == "cuda" ? 0 : -1;
    for (const auto& [name, rel] : spec.networks) {
        const std::string path = dir + "/" + rel;
        try {
            nets->nets[name] = std::make_unique<AOTIModelPackageLoader>(path, "model", false,
                                                                        static_cast<size_t>(max_concurrent), index);
        } catch (const c10::Error& e) {
            throw Failure(OBJAUDIO_ERR_ENGINE_CORRUPT, "cannot load network " + name + " from " + path + ": " +
                                                       e.what_without_backtrace());
        }
    }
    return std::unique_ptr<Engine>(new Engine(std::move(spec), std::move(nets)));
}

// ---- 1. image -> patch tokens (objaudio_rt.modelio.encoders.ImageEncoder.preprocess, then the encoder) --------
Scene Engine::encode(const uint8_t* rgb, uint32_t width, uint32_t height) const {
    const EngineSpec& s = spec_;
    const int64_t side = s.image_size;
    at::Tensor img = at::from_blob(const_cast<uint8_t*>(rgb), {1, height, width, 3}, at::kByte);   // (1, H, W, 3)
    at::Tensor x = img.permute({0, 3, 1, 2}).to(at::kFloat) / 255.0;
    x = at::_upsample_bicubic2d_aa(x, {side, side}, false);                                         // (1, 3, S, S)
    at::Tensor mean = at::tensor({static_cast<float>(s.mean[0]), static_cast<float>(s.mean[1]),
                                  static_cast<float>(s.mean[2])}).view({1, 3, 1, 1});
    at::Tensor stdv = at::tensor({static_cast<float>(s.std[0]), static_cast<float>(s.std[1]),
                                  static_cast<float>(s.std[2])}).view({1, 3, 1, 1});
    x = (x.clamp(0, 1) - mean) / stdv;
    at::Tensor tokens = run((*nets_)["image_encoder"], "image_encoder", {x.to(nets_->device)})
                            .to(at::kCPU, at::kFloat).contiguous();                             // (1, P, L)
    if (tokens.numel() != static_cast<int64_t>(s.num_patches) * s.token_dim)
        throw Failure(OBJAUDIO_ERR_RUNTIME, "image_encoder returned " + std::to_string(tokens.numel()) +
                                            " values, engine.json expects P * L");
    Scene scene{width, height, std::vector<float>(tokens.numel())};
    std::memcpy(scene.tokens.data(), tokens.data_ptr<float>(), scene.tokens.size() * sizeof(float));
    return scene;
}

namespace {

// ---- 2. masks -> patch weights (images.load_mask, grounding.mask_to_patch_coverage, rescale_patch_weights) --
// A mask as load_mask reads it: values / 255, or as they are when the largest is 1. (H, W) float32.
std::vector<float> pixel_mask(const uint8_t* m, size_t n) {
    uint8_t peak = 0;
    for (size_t i = 0; i < n; ++i) peak = m[i] > peak ? m[i] : peak;
    const float div = peak > 1 ? 255.0f : 1.0f;
    std::vector<float> out(n);
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(m[i]) / div;
    return out;
}

at::Tensor patch_coverage(std::vector<float>& pixel, uint32_t w, uint32_t h, const EngineSpec& s) {
    at::Tensor m = at::from_blob(pixel.data(), {1, 1, h, w}, at::kFloat);
    m = at::adaptive_avg_pool2d(m, {s.image_size, s.image_size});        // F.interpolate(mode="area")
    return at::avg_pool2d(m, {s.patch_size, s.patch_size}).flatten(1);   // (1, P)
}

at::Tensor rescale_patch_weights(const at::Tensor& coverage, const EngineSpec& s) {
    at::Tensor p = coverage / coverage.sum(-1, true);
    if (s.mask_rescale == "sum") return p;
    const double mean = 1.0 / static_cast<double>(p.size(-1));
    at::Tensor stdv = at::std(p, {-1}, /*unbiased=*/false, /*keepdim=*/true);
    at::Tensor s_max = at::rsub(p.amin(-1, true), mean).clamp_min(1e-12).reciprocal() * mean;
    at::Tensor s_std = stdv.clamp_min(1e-12).reciprocal() * s.attn_std;                 // attn_std / std
    at::Tensor scale = at::minimum(at::where(stdv > 1e-12, s_std, at::ones_like(stdv)), s_max);
    return scale * (p - mean) + mean;
}

// ---- 4. one guided sampler step (samplers.reference_step) ------------------------------------------
// c: the row (cx, ce, c_1 .. c_K, dx, de), k = K; history: the previous data predictions, newest first
// (fewer than K at the first steps). Returns x_next and shifts this step's x0 into the history.
at::Tensor sampler_step(const double* c, int k, const at::Tensor& x, const at::Tensor& eps_u,
                        const at::Tensor& eps_c, double cfg, std::vector<at::Tensor>& history) {
    at::Tensor xf = x.to(at::kFloat);
    at::Tensor eps = eps_u + (eps_c - eps_u) * cfg;
    at::Tensor x_next = xf * c[0] + eps * c[1];
    for (size_t j = 0; j < history.size(); ++j)
        if (c[2 + j] != 0.0) x_next = x_next + history[j] * c[2 + j];
    history.insert(history.begin(), xf * c[k + 2] + eps * c[k + 3]);
    if (static_cast<int>(history.size()) > k) history.resize(k);
    return x_next;
}

// ---- 4b. adaptive projected guidance (guidance.APG with eta 0, no cap), op for op ------------------------
// The guided eps of one step: x0_c + (cfg - 1) times the part of D = x0_c - x0_u orthogonal to x0_c, per
// item, turned back into eps with the row's (dx, de). The step then runs at cfg 1 on (eps_u, this).
at::Tensor apg_eps(const double* c, int k, const at::Tensor& x, const at::Tensor& eps_u, const at::Tensor& eps_c,
                   double cfg) {
    const double dx = c[k + 2], de = c[k + 3];
    at::Tensor xf = x.to(at::kFloat);
    const std::vector<int64_t> dims = {1, 2, 3};
    auto norm = [&](const at::Tensor& t) { return t.square().sum(dims, true).sqrt(); };
    at::Tensor x0_c = xf * dx + eps_c * de;
    at::Tensor d = (eps_c - eps_u) * de;
    at::Tensor unit = x0_c / norm(x0_c).clamp_min(1e-12);
    at::Tensor par = (d * unit).sum(dims, true) * unit;
    at::Tensor w = at::full({1}, cfg, at::TensorOptions(at::kFloat).device(x.device())).view({-1, 1, 1, 1});
    at::Tensor x0 = x0_c + (w - 1.0) * (d - par + par * 0.0);
    return (x0 - xf * dx) / de;
}

// One guided step: classifier-free guidance, or APG then a step at cfg 1.
at::Tensor guided_step(const SamplerTable& table, int i, const at::Tensor& x, const at::Tensor& eps_u,
                       const at::Tensor& eps_c, double cfg, bool apg, std::vector<at::Tensor>& history) {
    if (!apg) return sampler_step(table.row(i), table.history(), x, eps_u, eps_c, cfg, history);
    at::Tensor eps_g = apg_eps(table.row(i), table.history(), x, eps_u, eps_c, cfg);
    return sampler_step(table.row(i), table.history(), x, eps_u, eps_g, 1.0, history);
}

}  // namespace

// ---- 2-3. selections -> one condition row per part (a composed union has several) ----------------------
// and 4, the guided loop's step on them (objaudio_rt/core/denoise.py guided_loop). Two-row guidance runs the
// UNet on B unconditional rows and the R part rows; a guidance-distilled UNet on the R part rows alone, each
// condition plus the embedding g(cfg) of the scale, and its eps is already guided (the step runs at scale 1).
struct Cond {
    at::Tensor rows;                     // (B + R, cond_dim): B null rows, then the R part rows;
                                         // distilled: (R, cond_dim), the part rows + g(cfg)
    at::Tensor own;                      // (R,) the item each part row belongs to
    at::Tensor wts;                      // (R, 1, 1, 1) 1 / parts of its item
    int64_t nb = 0;                      // B: the items with rows (0: every item is silent)
    bool distilled = false;
    std::vector<int64_t> kept;           // (B,) the request's index of each item with rows (the silence gate
                                         // leaves the silent ones out: objaudio_rt/core/gate.py)

    // The UNet's sample rows for x (B, C, W, M), in the order of `rows`.
    at::Tensor unet_input(const at::Tensor& x) const {
        at::Tensor parts = x.index_select(0, own);                                 // (R, C, W, M)
        return distilled ? parts : at::cat({x, parts});
    }

    // One step from the eps of the UNet's rows (eps, float32, as unet_input lays them out):
    // eps_c(b) = sum over the rows r of item b of w_r eps_r, then the sampler's step on (eps_u, eps_c).
    at::Tensor step(const SamplerTable& table, int i, const at::Tensor& x, const at::Tensor& eps, const Options& opt,
                    std::vector<at::Tensor>& history) const {
        at::Tensor eps_c = at::zeros_like(eps.slice(0, 0, nb))
                               .index_add_(0, own, (distilled ? eps : eps.slice(0, nb)) * wts);   // (B, C, W, M)
        if (distilled) return guided_step(table, i, x, eps_c, eps_c, 1.0, false, history);   // eps_c + 1 * 0
        return guided_step(table, i, x, eps.slice(0, 0, nb), eps_c, opt.cfg, opt.apg, history);
    }
};

// ---- long clips and loops: objaudio_rt/core/longform.py, step for step -----------------------------------
constexpr int64_t kOverlap = 4;          // OVERLAP: windows overlap by 1/4 of their length
constexpr int64_t kContext = 32;         // CONTEXT: log-mel frames of context around a vocoded span

struct Windows {                         // longform.Windows
    int64_t total = 0, size = 0;
    std::vector<int64_t> starts;
    bool loop = false;

    static Windows plan(int64_t total, int64_t size, bool loop) {
        size = std::min(size, total);
        int64_t overlap = size / kOverlap;
        Windows w{total, size, {}, loop};
        if (loop) {
            overlap = std::min(overlap, size / 2);
            const auto n = std::max<int64_t>(2, static_cast<int64_t>(std::ceil(static_cast<double>(total) /
                                                                                static_cast<double>(size - overlap))));
            for (int64_t i = 0; i < n; ++i) w.starts.push_back(py_round(static_cast<double>(i * total) / n));
            return w;
        }
        if (size == total) {
            w.starts = {0};
            return w;
        }
        const auto n = static_cast<int64_t>(std::ceil(static_cast<double>(total - overlap) /
                                                      static_cast<double>(size - overlap)));
        for (int64_t i = 0; i < n; ++i)
            w.starts.push_back(py_round(static_cast<double>(i * (total - size)) / static_cast<double>(n - 1)));
        return w;
    }

    // longform.plan_sequential; false for a loop too short to make in order (it is denoised jointly).
    static bool plan_sequential(int64_t total, int64_t size, bool loop, Windows& out) {
        if (!loop) {
            out = plan(total, size, false);
            return true;
        }
        size = std::min(size, total);
        const auto n = static_cast<int64_t>(std::floor(static_cast<double>(2 * total) /
                                                       static_cast<double>(size + size / kOverlap)));
        if (n < 2) return false;
        out = Windows{total, size, {}, true};
        for (int64_t i = 0; i < n; ++i) out.starts.push_back(py_round(static_cast<double>(i * total) / n));
        return true;
    }

    Windows scaled(int64_t f) const {
        Windows w{total * f, size * f, {}, loop};
        for (int64_t s : starts) w.starts.push_back(s * f);
        return w;
    }

    int64_t count() const { return static_cast<int64_t>(starts.size()); }

    std::vector<int64_t> frames(int64_t k) const {   // window k's frames (modulo total for a loop)
        std::vector<int64_t> f(size);
        for (int64_t j = 0; j < size; ++j) f[j] = (starts[k] + j) % total;
        return f;
    }

    at::Tensor index(int64_t k) const { return at::tensor(frames(k), at::kLong); }

    // (n, size) float32: each window's share of each of its frames (ramps over a quarter, shares sum to 1).
    std::vector<std::vector<float>> weights() const {
        const int64_t ramp = std::max<int64_t>(1, size / kOverlap);
        std::vector<double> own(size);
        for (int64_t j = 0; j < size; ++j)
            own[j] = std::min(std::min(static_cast<double>(j + 1), static_cast<double>(size - j)),
                              static_cast<double>(ramp) + 1.0) / (static_cast<double>(ramp) + 1.0);
        std::vector<double> cover(total, 0.0);
        for (int64_t k = 0; k < count(); ++k)
            for (int64_t j = 0; j < size; ++j) cover[(starts[k] + j) % total] += own[j];
        std::vector<std::vector<float>> w(count(), std::vector<float>(size));
        for (int64_t k = 0; k < count(); ++k)
            for (int64_t j = 0; j < size; ++j) w[k][j] = static_cast<float>(own[j] / cover[(starts[k] + j) % total]);
        return w;
    }
};

struct Span {                            // longform.Span: one vocoder call
    int64_t start, keep, stop;
};

// longform.vocoder_spans
std::vector<Span> vocoder_spans(int64_t frames, int64_t size, bool loop, int64_t origin) {
    if (!loop && size >= frames) return {Span{0, 0, frames}};
    std::vector<Span> spans;
    int64_t keep = origin;
    const int64_t end = origin + frames;
    while (keep < end) {
        int64_t start, stop;
        if (loop) {
            start = keep - kContext;
            stop = std::min(end, keep + size - 2 * kContext);
        } else {
            start = std::max<int64_t>(0, std::min(keep - kContext, frames - size));
            stop = start + size == frames ? frames : start + size - kContext;
        }
        spans.push_back(Span{start, keep, stop});
        keep = stop;
    }
    return spans;
}

int64_t floor_mod(int64_t a, int64_t n) { return ((a % n) + n) % n; }

// The frames of a window that earlier windows made (longform.Held): at every step pulled back towards the
// final latent noised to that level, with weights ramping from 1 deep inside the made part to 0 at the
// free frames.
struct Held {
    at::Tensor weight;                   // (1, 1, W, 1) float32
    at::Tensor clean, noise;             // (B, C, W, M)
    std::vector<std::pair<double, double>> levels;   // (alpha, sigma) before step 0 and after each step

    at::Tensor apply(const at::Tensor& x, size_t i) const {
        const auto [a, s] = levels[i];
        at::Tensor held = s > 0 ? clean * a + noise * s : clean;
        return at::lerp(x, held.to(x.scalar_type()), weight.to(x.scalar_type()));
    }
};

// longform.held_weights: 0 on free frames; on made ones min(1, d / (ramp + 1)), d the distance to the
// nearest free frame.
std::vector<float> held_weights(const std::vector<char>& known, int64_t ramp) {
    const auto n = static_cast<int64_t>(known.size());
    std::vector<float> w(known.size(), 0.0f);
    for (int64_t j = 0; j < n; ++j) {
        if (!known[j]) continue;
        int64_t d = n + 1;
        for (int64_t f = 0; f < n; ++f)
            if (!known[f]) d = std::min(d, f > j ? f - j : j - f);
        w[j] = d > n ? 1.0f : std::min(1.0f, static_cast<float>(d) / static_cast<float>(ramp + 1));
    }
    return w;
}

// longform.noise_levels
std::vector<std::pair<double, double>> noise_levels(const SamplerTable& table, const std::vector<double>& acp) {
    std::vector<std::pair<double, double>> out;
    for (int64_t t : table.timesteps) out.emplace_back(std::sqrt(acp[t]), std::sqrt(1.0 - acp[t]));
    out.emplace_back(1.0, 0.0);
    return out;
}

struct StreamState {
    const Engine* eng = nullptr;
    Cond cond;
    Options opt;
    at::Tensor noise;                            // (1, C, T, M) on the device
    enum class Mode { kOnePass, kJoint, kSequential, kSilent } mode = Mode::kOnePass;   // kSilent: the gate's zeros
    Windows win;                                 // the latent windows (kJoint, kSequential)
    // kSequential: the latent made so far and which of its frames are final
    at::Tensor z;
    std::vector<char> made;
    int64_t next_window = 0;
    bool denoised = false;                       // kOnePass, kJoint: the whole latent is made
    // the log-mel, assembled window by window (longform.MelAssembly)
    Windows mel_win;
    std::vector<std::vector<float>> mel_weights;
    at::Tensor mel;                              // (1, frames, n_mels)
    std::vector<int> cover, added;
    int64_t vocoder_size = 0;
    std::vector<Span> spans;
    size_t next_span = 0;
    size_t samples = 0, origin = 0, handed = 0;

    // ---- the networks -----------------------------------------------------------------------------------
    at::Tensor unet_rows(const at::Tensor& x, const at::Tensor& t) const {    // x (B, C, W, M) -> (rows, C, W, M)
        const Engine::Networks& n = *eng->nets_;
        return run(n["unet"], "unet", {cond.unet_input(x), t, cond.rows}).to(at::kFloat);
    }

    // The guided loop (denoise.guided_loop) on x; over `joint`'s windows blended (WindowedUNet), or with
    // frames held (Held).
    at::Tensor denoise(at::Tensor x, const Windows* joint, const Held* held) const {
        const at::Device dev = eng->nets_->device;
        const SamplerTable& table = opt.table;
        std::vector<at::Tensor> idx, wts;
        if (joint != nullptr) {
            const auto w = joint->weights();
            for (int64_t k = 0; k < joint->count(); ++k) {
                idx.push_back(joint->index(k).to(dev));
                wts.push_back(at::tensor(w[k], at::kFloat).to(dev).view({1, 1, -1, 1}));
            }
        }
        std::vector<at::Tensor> history;
        if (held != nullptr) x = held->apply(x, 0);
        for (int i = 0; i < table.steps(); ++i) {
            at::Tensor t = at::full({1}, table.timesteps[i], at::TensorOptions(at::kLong).device(dev));
            at::Tensor eps;
            if (joint == nullptr) {
                eps = unet_rows(x, t);                                                       // (rows, C, H, W)
            } else {
                eps = at::zeros({cond.rows.size(0), x.size(1), x.size(2), x.size(3)},
                                at::TensorOptions(at::kFloat).device(dev));
                for (size_t k = 0; k < idx.size(); ++k)
                    eps.index_add_(2, idx[k], unet_rows(x.index_select(2, idx[k]), t) * wts[k]);
            }
            x = cond.step(table, i, x, eps, opt, history);
            if (held != nullptr) x = held->apply(x, static_cast<size_t>(i) + 1);
        }
        return x;
    }

    // Decodes window k of the final latent zz into the log-mel (MelAssembly.add).
    void add_window(const at::Tensor& zz, int64_t k) {
        const Engine::Networks& n = *eng->nets_;
        const at::Device dev = n.device;
        at::Tensor m = run(n["vae_decoder"], "vae_decoder", {zz.index_select(2, win.index(k).to(dev))}).to(at::kFloat);
        m = m * at::tensor(mel_weights[k], at::kFloat).to(dev).view({1, -1, 1});
        if (!mel.defined()) mel = at::zeros({m.size(0), mel_win.total, m.size(2)}, m.options());
        mel.index_add_(1, mel_win.index(k).to(dev), m);
        for (int64_t f : mel_win.frames(k)) ++added[f];
    }

    bool span_ready(const Span& sp) const {
        const int64_t frames = mel_win.total;
        const int64_t n = win.loop ? vocoder_size : std::min(vocoder_size, frames);
        for (int64_t f = sp.start; f < sp.start + n; ++f)
            if (added[floor_mod(f, frames)] != cover[floor_mod(f, frames)]) return false;
        return true;
    }

    std::vector<float> vocode(const Span& sp) const {                           // longform.vocode_span
        const Engine::Networks& n = *eng->nets_;
        const int64_t frames = mel_win.total;
        const int64_t len = win.loop ? vocoder_size : std::min(vocoder_size, frames);
        std::vector<int64_t> f(len);
        for (int64_t j = 0; j < len; ++j) f[j] = floor_mod(sp.start + j, frames);
        at::Tensor wave = run(n["vocoder"], "vocoder", {mel.index_select(1, at::tensor(f, at::kLong).to(mel.device()))})
                              .to(at::kCPU, at::kFloat).flatten().contiguous();
        const int64_t hop = static_cast<int64_t>(eng->spec_.hop_length);
        const int64_t lo = (sp.keep - sp.start) * hop, count = (sp.stop - sp.keep) * hop;
        if (wave.numel() < lo + count)
            throw Failure(OBJAUDIO_ERR_RUNTIME, "vocoder returned " + std::to_string(wave.numel()) + " samples, fewer "
                                                "than its log-mel frames times engine.json's hop_length");
        wave = wave.slice(0, lo, lo + count);
        if (!at::isfinite(wave).all().item<bool>())
            throw Failure(OBJAUDIO_ERR_RUNTIME, "generation produced NaN or inf samples: the engine may be damaged; "
                                                "rebuild it from a good checkpoint");
        return std::vector<float>(wave.data_ptr<float>(), wave.data_ptr<float>() + wave.numel());
    }

    void set_mel_windows(const Windows& w, int64_t origin_frames) {
        const int64_t f = eng->spec_.downsample;
        win = w;
        mel_win = w.scaled(f);
        mel_weights = mel_win.weights();
        cover.assign(mel_win.total, 0);
        added.assign(mel_win.total, 0);
        for (int64_t k = 0; k < mel_win.count(); ++k)
            for (int64_t fr : mel_win.frames(k)) ++cover[fr];
        vocoder_size = std::max<int64_t>(w.size * f, 4 * kContext);
        spans = vocoder_spans(mel_win.total, vocoder_size, w.loop, origin_frames);
    }

    // Makes the next part of the latent (one window, or all of it) and decodes what it finishes.
    void advance() {
        if (mode == Mode::kSequential) {
            const at::Device dev = eng->nets_->device;
            const std::vector<int64_t> fr = win.frames(next_window);
            at::Tensor idx = at::tensor(fr, at::kLong).to(dev);
            std::vector<char> known(fr.size());
            bool any = false;
            for (size_t j = 0; j < fr.size(); ++j) any |= (known[j] = made[fr[j]]) != 0;
            at::Tensor x = noise.index_select(2, idx);
            at::Tensor out;
            if (any) {
                const int64_t ramp = std::max<int64_t>(0, win.size / kOverlap - 1);   // sequential_latents' default
                at::Tensor weight = at::tensor(held_weights(known, ramp), at::kFloat).to(dev).view({1, 1, -1, 1});
                Held held{weight, z.index_select(2, idx), x, noise_levels(opt.table, eng->spec_.alphas_cumprod)};
                out = denoise(x.clone(), nullptr, &held);
            } else {
                out = denoise(x.clone(), nullptr, nullptr);
            }
            z.index_copy_(2, idx, out.to(z.scalar_type()));
            for (int64_t f : fr) made[f] = 1;
            add_window(z, next_window++);
            return;
        }
        if (mode == Mode::kJoint) {
            z = denoise(noise.clone(), &win, nullptr);
            for (int64_t k = 0; k < win.count(); ++k) add_window(z, k);
        } else {
            z = denoise(noise.clone(), nullptr, nullptr);
            add_window(z, 0);
        }
        denoised = true;
    }

    bool next(std::vector<float>& out) {
        if (mode == Mode::kSilent) {                                  // digital silence, a second at a time
            if (handed >= samples) return false;
            const size_t n = std::min(samples - handed, static_cast<size_t>(eng->spec_.sample_rate));
            out.insert(out.end(), n, 0.0f);
            handed += n;
            return true;
        }
        while (handed < samples) {
            if (next_span < spans.size() && span_ready(spans[next_span])) {
                std::vector<float> block = vocode(spans[next_span++]);
                const size_t n = std::min(block.size(), samples - handed);
                out.insert(out.end(), block.begin(), block.begin() + static_cast<std::ptrdiff_t>(n));
                handed += n;
                if (n > 0) return true;
                continue;
            }
            const bool more = mode == Mode::kSequential ? next_window < win.count() : !denoised;
            if (!more) throw Failure(OBJAUDIO_ERR_RUNTIME, "stream ended before its last sample (an internal error)");
            advance();
        }
        return false;
    }
};

Stream::Stream(std::unique_ptr<StreamState> state) : state_(std::move(state)) {}
Stream::Stream(std::vector<std::unique_ptr<Stream>> parts) : parts_(std::move(parts)) {}
Stream::~Stream() = default;
size_t Stream::samples() const { return parts_.empty() ? state_->samples : parts_[0]->samples(); }
size_t Stream::origin() const { return parts_.empty() ? state_->origin : parts_[0]->origin(); }

bool Stream::next(std::vector<float>& out) {
    if (parts_.empty()) return state_->next(out);
    // union "mix": every part's next block (the same options make the same blocks), summed
    std::vector<float> sum, block;
    bool more = false;
    for (size_t k = 0; k < parts_.size(); ++k) {
        block.clear();
        const bool got = parts_[k]->next(block);
        if (k == 0) {
            more = got;
            sum = block;
        } else if (got != more || block.size() != sum.size()) {
            throw Failure(OBJAUDIO_ERR_RUNTIME,
                          "the parts of a mixed union streamed different blocks (an internal error)");
        } else {
            for (size_t i = 0; i < sum.size(); ++i) sum[i] += block[i];
        }
    }
    out.insert(out.end(), sum.begin(), sum.end());
    return more;
}

namespace {

// Per condition row (R, cond_dim): whether the silence gate calls it silent (objaudio_rt/core/gate.py SilenceGate:
// p = sigmoid(w2 . silu(W1 c + b1) + b2) >= threshold), computed on the host in float32.
std::vector<char> silent_parts(const at::Tensor& parts, const EngineSpec& s) {
    const int64_t h = s.gate_hidden;
    at::Tensor w1 = at::from_blob(const_cast<float*>(s.gate_w1.data()), {h, s.cond_dim}, at::kFloat);
    at::Tensor b1 = at::from_blob(const_cast<float*>(s.gate_b1.data()), {h}, at::kFloat);
    at::Tensor w2 = at::from_blob(const_cast<float*>(s.gate_w2.data()), {h}, at::kFloat);
    at::Tensor hidden = at::silu(at::addmm(b1, parts.to(at::kCPU, at::kFloat), w1.t()));          // (R, h)
    at::Tensor p = at::sigmoid(at::mv(hidden, w2) + s.gate_b2).contiguous();                      // (R,)
    std::vector<char> out(static_cast<size_t>(p.numel()));
    for (int64_t r = 0; r < p.numel(); ++r) out[r] = p.data_ptr<float>()[r] >= static_cast<float>(s.gate_threshold);
    return out;
}

}  // namespace

Cond Engine::conditions(const Scene& scene, const std::vector<Item>& items, double cfg, bool gate) const {
    const EngineSpec& s = spec_;
    const at::Device dev = nets_->device;
    AOTIModelPackageLoader& grounding = (*nets_)["grounding_condition"];
    const size_t npix = static_cast<size_t>(scene.width) * scene.height;
    at::Tensor tokens = at::from_blob(const_cast<float*>(scene.tokens.data()),
                                      {1, s.num_patches, s.token_dim}, at::kFloat).to(dev);   // (1, P, L)
    std::vector<at::Tensor> conds;           // (1, cond_dim) each
    std::vector<int64_t> owner;              // the item each condition row belongs to
    std::vector<float> part_weight;          // 1 / parts of its item
    for (size_t b = 0; b < items.size(); ++b) {
        const Item& item = items[b];
        std::vector<std::vector<float>> pixels;
        if (item.masks.empty()) {
            pixels.emplace_back(npix, 1.0f);                                   // the whole scene
        } else if (item.union_mask || item.masks.size() == 1) {
            std::vector<float> u = pixel_mask(item.masks[0], npix);
            for (size_t k = 1; k < item.masks.size(); ++k) {
                std::vector<float> m = pixel_mask(item.masks[k], npix);
                for (size_t i = 0; i < npix; ++i) u[i] = m[i] > u[i] ? m[i] : u[i];
            }
            pixels.push_back(std::move(u));
        } else {
            for (const uint8_t* m : item.masks) pixels.push_back(pixel_mask(m, npix));
        }
        for (std::vector<float>& pixel : pixels) {
            at::Tensor cov = patch_coverage(pixel, scene.width, scene.height, s);
            if (!(cov.sum().item<float>() > 0))
                throw Failure(OBJAUDIO_ERR_INVALID_ARGUMENT, "a mask covers no part of the image: draw a larger mask");
            at::Tensor w = rescale_patch_weights(cov, s).view({1, 1, s.num_patches}).expand({1, s.heads, s.num_patches});
            conds.push_back(run(grounding, "grounding_condition", {w.to(dev), tokens}).to(at::kFloat));
            owner.push_back(static_cast<int64_t>(b));
            part_weight.push_back(static_cast<float>(1.0 / static_cast<double>(pixels.size())));
        }
    }
    std::vector<int64_t> kept;                 // the items that keep rows, and each kept row's new item index
    if (gate && s.gated) {
        const std::vector<char> silent = silent_parts(at::cat(conds), s);
        std::vector<int64_t> left(items.size(), 0);
        for (size_t r = 0; r < conds.size(); ++r) left[owner[r]] += silent[r] ? 0 : 1;
        std::vector<int64_t> index(items.size(), -1);
        for (size_t b = 0; b < items.size(); ++b)
            if (left[b] > 0) index[b] = static_cast<int64_t>(kept.size()), kept.push_back(static_cast<int64_t>(b));
        std::vector<at::Tensor> c2;
        std::vector<int64_t> o2;
        std::vector<float> w2;
        for (size_t r = 0; r < conds.size(); ++r) {
            if (silent[r]) continue;
            c2.push_back(conds[r]);
            o2.push_back(index[owner[r]]);
            w2.push_back(static_cast<float>(1.0 / static_cast<double>(left[owner[r]])));
        }
        conds.swap(c2);
        owner.swap(o2);
        part_weight.swap(w2);
        if (kept.empty()) {                    // every item silent: no rows at all
            Cond none;
            none.distilled = s.distilled;
            return none;
        }
    } else {
        for (size_t b = 0; b < items.size(); ++b) kept.push_back(static_cast<int64_t>(b));
    }
    const int64_t nb = static_cast<int64_t>(kept.size());
    if (s.unet_rows(nb, static_cast<int64_t>(conds.size())) > s.max_rows)
        throw Failure(OBJAUDIO_ERR_INVALID_ARGUMENT, std::string("too many masks in one generation: ") +
                                                     (s.distilled ? "conditions" : "items plus conditions") +
                                                     " must be at most " + std::to_string(s.max_rows));
    at::Tensor parts = at::cat(conds);                                                          // (R, cond_dim)
    at::Tensor rows;
    if (s.distilled) {                          // the scale as an input: g(cfg) added to each condition row
        at::Tensor w = at::full({1}, cfg, at::TensorOptions(at::kFloat).device(dev));          // (1,)
        rows = parts + run((*nets_)["guidance_embedding"], "guidance_embedding", {w}).to(at::kFloat);   // (R, cond_dim)
    } else {
        at::Tensor null = at::from_blob(const_cast<float*>(s.null_condition.data()), {1, s.cond_dim}, at::kFloat);
        rows = at::cat({null.to(dev).expand({nb, s.cond_dim}), parts});                        // (B + R, cond_dim)
    }
    return Cond{rows, at::tensor(owner, at::kLong).to(dev),                                     // (R,)
                at::tensor(part_weight, at::kFloat).to(dev).view({-1, 1, 1, 1}), nb, s.distilled,    // (R, 1, 1, 1)
                kept};
}

namespace {

// Each item's initial latent (C, frames, W): its own noise, or torch.randn(shape,
// generator=torch.Generator().manual_seed(seed)) drawn on the CPU as Pipeline.noise draws it.
at::Tensor make_noise(const std::vector<Item>& items, const EngineSpec& s, int64_t frames, at::Device dev) {
    std::vector<at::Tensor> noise;
    for (const Item& item : items) {
        if (item.noise != nullptr) {
            noise.push_back(at::from_blob(const_cast<float*>(item.noise), {s.latent_c, frames, s.latent_w},
                                          at::kFloat).clone());
        } else {
            at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(item.seed);
            noise.push_back(at::randn({s.latent_c, frames, s.latent_w}, gen, at::TensorOptions(at::kFloat)));
        }
    }
    return at::stack(noise).to(dev);                                                          // (B, C, T, M)
}

}  // namespace

std::unique_ptr<Stream> Engine::stream(const Scene& scene, const Item& item, const Options& options) const {
    const EngineSpec& s = spec_;
    if (item.mix && item.masks.size() > 1) {                           // union "mix": a stream a part, summed
        std::vector<std::unique_ptr<Stream>> parts;
        for (const Item& part : mix_parts(item)) parts.push_back(stream(scene, part, options));
        return std::make_unique<Stream>(std::move(parts));
    }
    auto st = std::make_unique<StreamState>();
    st->eng = this;
    st->opt = options;
    const int64_t frames = options.frames > 0 ? options.frames : s.latent_h;
    st->cond = conditions(scene, {item}, options.cfg, options.silence_gate);
    st->samples = options.samples > 0 ? options.samples : s.clip_samples;
    if (st->cond.nb == 0) {                                            // the silence gate: zeros, nothing run
        st->mode = StreamState::Mode::kSilent;
        return std::make_unique<Stream>(std::move(st));
    }
    st->noise = make_noise({item}, s, frames, nets_->device);
    if (frames == s.latent_h && !options.loop) {
        st->mode = StreamState::Mode::kOnePass;
        st->set_mel_windows(Windows::plan(frames, frames, false), 0);
        return std::make_unique<Stream>(std::move(st));
    }
    Windows seq;
    if (Windows::plan_sequential(frames, s.latent_h, options.loop, seq)) {
        st->mode = StreamState::Mode::kSequential;
        st->z = at::zeros_like(st->noise);
        st->made.assign(frames, 0);
        const int64_t origin = options.loop ? (seq.starts.back() + seq.size - seq.total) * s.downsample + kContext : 0;
        st->set_mel_windows(seq, origin);
        st->origin = static_cast<size_t>(origin) * s.hop_length;
    } else {
        st->mode = StreamState::Mode::kJoint;
        st->set_mel_windows(Windows::plan(frames, s.latent_h, options.loop), 0);
    }
    return std::make_unique<Stream>(std::move(st));
}

void Engine::generate(const Scene& scene, const std::vector<Item>& items, const Options& options,
                      const std::vector<float*>& out) const {
    const EngineSpec& s = spec_;
    if (std::any_of(items.begin(), items.end(), [](const Item& it) { return it.mix && it.masks.size() > 1; })) {
        generate_mixed(scene, items, options, out);
        return;
    }
    if (options.loop || (options.frames > 0 && options.frames != s.latent_h)) {
        // a long clip or a loop: its windows denoised jointly (Pipeline.sample), then decoded in spans
        if (items.size() != 1) throw Failure(OBJAUDIO_ERR_INVALID_ARGUMENT, "long clips and loops take one selection");
        StreamState st;
        st.eng = this;
        st.opt = options;
        st.cond = conditions(scene, items, options.cfg, options.silence_gate);
        st.samples = options.samples;
        if (st.cond.nb == 0) {                                         // the silence gate: zeros, nothing run
            std::fill(out[0], out[0] + st.samples, 0.0f);
            return;
        }
        st.noise = make_noise(items, s, options.frames, nets_->device);
        st.mode = StreamState::Mode::kJoint;
        st.set_mel_windows(Windows::plan(options.frames, s.latent_h, options.loop), 0);
        std::vector<float> wave;
        wave.reserve(st.samples);
        while (st.next(wave)) {
        }
        std::memcpy(out[0], wave.data(), wave.size() * sizeof(float));
        return;
    }
    const at::Device dev = nets_->device;
    const Cond c = conditions(scene, items, options.cfg, options.silence_gate);
    const int64_t nb = c.nb;
    for (float* o : out) std::fill(o, o + s.clip_samples, 0.0f);                            // the gate's silent items
    if (nb == 0) return;
    std::vector<Item> with_rows;
    for (int64_t k : c.kept) with_rows.push_back(items[static_cast<size_t>(k)]);
    at::Tensor x = make_noise(with_rows, s, s.latent_h, dev);                                // (B, C, H, W)
    std::vector<at::Tensor> history;                                                           // (B, C, H, W) each
    const SamplerTable& table = options.table;
    for (int i = 0; i < table.steps(); ++i) {
        at::Tensor t = at::full({1}, table.timesteps[i], at::TensorOptions(at::kLong).device(dev));
        at::Tensor eps = run((*nets_)["unet"], "unet", {c.unet_input(x), t, c.rows}).to(at::kFloat);  // (rows, C, H, W)
        x = c.step(table, i, x, eps, options, history);
    }

    // ---- 5-6. latent -> mel -> waveform, one item at a time ---------------------------------------------
    for (int64_t b = 0; b < nb; ++b) {
        at::Tensor mel = run((*nets_)["vae_decoder"], "vae_decoder", {x.slice(0, b, b + 1)});
        at::Tensor wave = run((*nets_)["vocoder"], "vocoder", {mel.to(at::kFloat)})
                              .to(at::kCPU, at::kFloat).flatten().contiguous();
        if (wave.numel() < static_cast<int64_t>(s.clip_samples))
            throw Failure(OBJAUDIO_ERR_RUNTIME, "vocoder returned " + std::to_string(wave.numel()) + " samples, fewer "
                                                "than engine.json's clip_samples");
        wave = wave.slice(0, 0, static_cast<int64_t>(s.clip_samples));
        if (!at::isfinite(wave).all().item<bool>())
            throw Failure(OBJAUDIO_ERR_RUNTIME, "generation produced NaN or inf samples: the engine may be damaged; "
                                                "rebuild it from a good checkpoint");
        std::memcpy(out[static_cast<size_t>(c.kept[b])], wave.data_ptr<float>(), s.clip_samples * sizeof(float));
    }
}

// Union "mix" (objaudio_rt Pipeline.generate_batch): each mask of a mixed item is an item of its own (the same
// seed or noise: the part sounds as it does alone), generated in batches of at most max_rows UNet rows (one at a
// time for long clips and loops), and each item's parts summed into its output.
std::vector<Item> Engine::mix_parts(const Item& item) {
    std::vector<Item> parts;
    for (const uint8_t* m : item.masks) {
        Item part = item;
        part.masks = {m};
        part.mix = false;
        parts.push_back(part);
    }
    return parts;
}

void Engine::generate_mixed(const Scene& scene, const std::vector<Item>& items, const Options& options,
                            const std::vector<float*>& out) const {
    const EngineSpec& s = spec_;
    const size_t n = options.samples > 0 ? options.samples : s.clip_samples;
    std::vector<Item> parts;
    std::vector<size_t> owner;
    for (size_t i = 0; i < items.size(); ++i) {
        const std::vector<Item> mine = items[i].mix && items[i].masks.size() > 1 ? mix_parts(items[i])
                                                                                   : std::vector<Item>{items[i]};
        for (const Item& part : mine) {
            parts.push_back(part);
            owner.push_back(i);
        }
    }
    std::vector<std::vector<float>> waves(parts.size(), std::vector<float>(n));
    const bool one_at_a_time = options.loop || (options.frames > 0 && options.frames != s.latent_h);
    auto rows = [&](size_t a, size_t b) {              // UNet rows of parts [a, b) (a stem call may hold a
        int64_t r = 0;                                 // composed union beside a mixed one)
        for (size_t k = a; k < b; ++k) {
            const size_t m = parts[k].masks.size();
            r += s.unet_rows(1, parts[k].union_mask || m <= 1 ? 1 : static_cast<int64_t>(m));
        }
        return r;
    };
    for (size_t first = 0; first < parts.size();) {
        size_t last = first + 1;                      // parts [first, last) in one call
        while (!one_at_a_time && last < parts.size() && rows(first, last + 1) <= s.max_rows) ++last;
        std::vector<Item> batch(parts.begin() + static_cast<std::ptrdiff_t>(first),
                                parts.begin() + static_cast<std::ptrdiff_t>(last));
        std::vector<float*> dst;
        for (size_t k = first; k < last; ++k) dst.push_back(waves[k].data());
        generate(scene, batch, options, dst);
        first = last;
    }
    for (size_t i = 0; i < items.size(); ++i) std::fill(out[i], out[i] + n, 0.0f);
    for (size_t k = 0; k < parts.size(); ++k)
        for (size_t j = 0; j < n; ++j) out[owner[k]][j] += waves[k][j];
}

}  // namespace objaudio
