// Every step mirrors objaudio_rt op for op (same ATen kernels, same order), so a generation from the
// same noise matches the Python pipeline to float32 rounding of the compiled networks.
#include "engine.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/_upsample_bicubic2d_aa.h>
#include <ATen/ops/adaptive_avg_pool2d.h>
#include <ATen/ops/avg_pool2d.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/full.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/minimum.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/rsub.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/std.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros_like.h>
#include <c10/util/Exception.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/version.h>

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

}  // namespace

void Engine::generate(const Scene& scene, const std::vector<Item>& items, const Options& options,
                      const std::vector<float*>& out) const {
    const EngineSpec& s = spec_;
    const at::Device dev = nets_->device;
    const size_t npix = static_cast<size_t>(scene.width) * scene.height;
    at::Tensor tokens = at::from_blob(const_cast<float*>(scene.tokens.data()),
                                      {1, s.num_patches, s.token_dim}, at::kFloat).to(dev);   // (1, P, L)

    // ---- 2-3. selections -> one condition per part (a composed union has several) ------------------
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
            conds.push_back(run((*nets_)["grounding_condition"], "grounding_condition",
                                {w.to(dev), tokens}).to(at::kFloat));
            owner.push_back(static_cast<int64_t>(b));
            part_weight.push_back(static_cast<float>(1.0 / static_cast<double>(pixels.size())));
        }
    }
    const int64_t nb = static_cast<int64_t>(items.size());
    const int64_t rows = nb + static_cast<int64_t>(conds.size());
    if (rows > s.max_rows)
        throw Failure(OBJAUDIO_ERR_INVALID_ARGUMENT, "too many masks in one generation: items plus conditions must be "
                                                     "at most " + std::to_string(s.max_rows));

    // ---- 4. guided denoising loop (objaudio_rt/core/denoise.py guided_loop: composed rows, one per part) ----
    std::vector<at::Tensor> noise;
    for (const Item& item : items) {
        if (item.noise != nullptr) {
            noise.push_back(at::from_blob(const_cast<float*>(item.noise), {s.latent_c, s.latent_h, s.latent_w},
                                          at::kFloat).clone());
        } else {   // torch.randn(shape, generator=torch.Generator().manual_seed(seed)), drawn on the CPU
            at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(item.seed);
            noise.push_back(at::randn({s.latent_c, s.latent_h, s.latent_w}, gen, at::TensorOptions(at::kFloat)));
        }
    }
    at::Tensor x = at::stack(noise).to(dev);                                                  // (B, C, H, W)
    at::Tensor own = at::tensor(owner, at::kLong).to(dev);                                    // (R,)
    at::Tensor wts = at::tensor(part_weight, at::kFloat).to(dev).view({-1, 1, 1, 1});         // (R, 1, 1, 1)
    at::Tensor null = at::from_blob(const_cast<float*>(s.null_condition.data()), {1, s.cond_dim}, at::kFloat).to(dev);
    at::Tensor cond_rows = at::cat({null.expand({nb, s.cond_dim}), at::cat(conds)});         // (B + R, cond_dim)
    std::vector<at::Tensor> history;                                                           // (B, C, H, W) each
    const SamplerTable& table = options.table;
    for (int i = 0; i < table.steps(); ++i) {
        at::Tensor t = at::full({1}, table.timesteps[i], at::TensorOptions(at::kLong).device(dev));
        at::Tensor eps = run((*nets_)["unet"], "unet", {at::cat({x, x.index_select(0, own)}), t, cond_rows})
                             .to(at::kFloat);                                                  // (B + R, C, H, W)
        at::Tensor eps_c = at::zeros_like(eps.slice(0, 0, nb)).index_add_(0, own, eps.slice(0, nb) * wts);
        x = sampler_step(table.row(i), table.history(), x, eps.slice(0, 0, nb), eps_c, options.cfg, history);
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
        std::memcpy(out[b], wave.data_ptr<float>(), s.clip_samples * sizeof(float));
    }
}

}  // namespace objaudio
