#include "spec.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>

#include "json.h"
#include "samplers.h"

namespace objaudio {
namespace {

constexpr size_t kMaxJsonBytes = 64u << 20;

std::string join(const std::string& dir, const std::string& rel) {
    return dir.empty() || dir.back() == '/' ? dir + rel : dir + "/" + rel;
}

std::string read_text(const std::string& path, const std::string& what) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw Failure(OBJAUDIO_ERR_ENGINE_CORRUPT, what + " not found: " + path +
                                                           " (build the engine with python -m export.engine)");
    f.seekg(0, std::ios::end);
    std::streamoff size = f.tellg();
    if (size < 0 || static_cast<size_t>(size) > kMaxJsonBytes)
        throw Failure(OBJAUDIO_ERR_ENGINE_CORRUPT, what + " is not a readable file of at most 64 MiB: " + path);
    f.seekg(0);
    std::string text(static_cast<size_t>(size), '\0');
    f.read(text.data(), size);
    if (!f) throw Failure(OBJAUDIO_ERR_IO, "cannot read " + path);
    return text;
}

std::string sha256_file(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) throw Failure(OBJAUDIO_ERR_ENGINE_CORRUPT, "engine file missing: " + path +
                                                       " (rebuild the engine with python -m export.engine)");
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> closer(f, std::fclose);
    std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
        throw Failure(OBJAUDIO_ERR_OUT_OF_MEMORY, "cannot start a sha256 digest");
    std::vector<unsigned char> buf(1 << 20);
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) EVP_DigestUpdate(ctx.get(), buf.data(), n);
    if (std::ferror(f)) throw Failure(OBJAUDIO_ERR_IO, "cannot read " + path);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx.get(), digest, &len);
    std::string hex;
    char two[3];
    for (unsigned int i = 0; i < len; ++i) {
        std::snprintf(two, sizeof two, "%02x", digest[i]);
        hex += two;
    }
    return hex;
}

bool safe_relative_path(const std::string& rel) {
    return !rel.empty() && rel[0] != '/' && rel.find("..") == std::string::npos;
}

void verify_manifest(const std::string& dir, const EngineSpec& spec) {
    json::Value manifest;
    try {
        manifest = json::parse(read_text(join(dir, "manifest.json"), "manifest.json"));
    } catch (const json::Error& e) {
        throw Failure(OBJAUDIO_ERR_ENGINE_CORRUPT, "manifest.json is not valid JSON (" + std::string(e.what()) + ")");
    }
    const auto& files = manifest.at("files");
    if (files.kind != json::Value::Kind::Object) throw Failure(OBJAUDIO_ERR_ENGINE_CORRUPT, "manifest.json: no file list");
    std::vector<std::string> required = {"engine.json"};
    for (const auto& [name, rel] : spec.networks) required.push_back(rel);
    for (const std::string& rel : required)
        if (!files.has(rel))
            throw Failure(OBJAUDIO_ERR_ENGINE_CORRUPT, "manifest.json does not list " + rel + ": rebuild the engine");
    for (const auto& [rel, digest] : files.object) {
        if (!safe_relative_path(rel)) throw Failure(OBJAUDIO_ERR_ENGINE_CORRUPT, "manifest.json names a bad path " + rel);
        std::string got = sha256_file(join(dir, rel));
        if (got != digest.as_string("files." + rel))
            throw Failure(OBJAUDIO_ERR_ENGINE_CORRUPT, "engine file " + rel + " was altered (its sha256 differs from "
                                                       "manifest.json): rebuild the engine with python -m export.engine");
    }
}

int positive(long long v, const std::string& path, long long most = 1 << 24) {
    if (v <= 0 || v > most) throw json::Error("field '" + path + "' is out of range");
    return static_cast<int>(v);
}

EngineSpec parse_spec(const json::Value& e) {
    EngineSpec s;
    const auto& rt = e.at("runtime");
    s.torch_version = rt.at("torch_version", "runtime").as_string("runtime.torch_version");
    s.device = rt.at("device", "runtime").as_string("runtime.device");
    s.model_name = e.at("model").at("name", "model").as_string("model.name");

    const auto& audio = e.at("audio");
    s.sample_rate = positive(audio.at("sample_rate", "audio").as_int("audio.sample_rate"), "audio.sample_rate");
    s.clip_samples = positive(audio.at("clip_samples", "audio").as_int("audio.clip_samples"), "audio.clip_samples");
    std::vector<double> shape = e.at("latent").at("shape", "latent").as_numbers("latent.shape");
    if (shape.size() != 3) throw json::Error("latent.shape must be [C, H, W]");
    s.latent_c = positive(static_cast<long long>(shape[0]), "latent.shape", 4096);
    s.latent_h = positive(static_cast<long long>(shape[1]), "latent.shape", 4096);
    s.latent_w = positive(static_cast<long long>(shape[2]), "latent.shape", 4096);
    s.hop_length = positive(audio.at("hop_length", "audio").as_int("audio.hop_length"), "audio.hop_length", 65536);
    const int mel_frames = positive(audio.at("mel_frames", "audio").as_int("audio.mel_frames"), "audio.mel_frames");
    if (mel_frames % s.latent_h || static_cast<size_t>(mel_frames) * s.hop_length < s.clip_samples)
        throw json::Error("audio.mel_frames must be latent frames times the VAE factor and hold clip_samples at hop_length");
    s.downsample = mel_frames / s.latent_h;

    const auto& img = e.at("image");
    s.image_size = positive(img.at("size", "image").as_int("image.size"), "image.size", 4096);
    s.patch_size = positive(img.at("patch_size", "image").as_int("image.patch_size"), "image.patch_size", 4096);
    s.num_patches = positive(img.at("num_patches", "image").as_int("image.num_patches"), "image.num_patches");
    s.token_dim = positive(img.at("token_dim", "image").as_int("image.token_dim"), "image.token_dim");
    if (s.image_size % s.patch_size || (s.image_size / s.patch_size) * (s.image_size / s.patch_size) != s.num_patches)
        throw json::Error("image.size, image.patch_size and image.num_patches disagree");
    std::vector<double> mean = img.at("mean", "image").as_numbers("image.mean");
    std::vector<double> std = img.at("std", "image").as_numbers("image.std");
    if (mean.size() != 3 || std.size() != 3) throw json::Error("image.mean and image.std must hold 3 numbers");
    for (int i = 0; i < 3; ++i) {
        if (!(std[i] > 0)) throw json::Error("image.std must be positive");
        s.mean[i] = mean[i];
        s.std[i] = std[i];
    }

    const auto& mask = e.at("mask");
    s.mask_rescale = mask.at("rescale", "mask").as_string("mask.rescale");
    if (s.mask_rescale != "moments" && s.mask_rescale != "sum") throw json::Error("mask.rescale must be moments or sum");
    s.attn_std = mask.at("attn_std", "mask").as_number("mask.attn_std");
    if (!std::isfinite(s.attn_std) || s.attn_std < 0) throw json::Error("mask.attn_std must be finite and >= 0");

    const auto& g = e.at("grounding");
    s.heads = positive(g.at("num_heads", "grounding").as_int("grounding.num_heads"), "grounding.num_heads", 1024);
    s.cond_dim = positive(g.at("cond_dim", "grounding").as_int("grounding.cond_dim"), "grounding.cond_dim");
    for (double v : g.at("null_condition", "grounding").as_numbers("grounding.null_condition"))
        s.null_condition.push_back(static_cast<float>(v));
    if (static_cast<int>(s.null_condition.size()) != s.cond_dim)
        throw json::Error("grounding.null_condition must hold cond_dim numbers");

    const auto& sched = e.at("schedule");
    std::vector<double> betas = sched.at("betas", "schedule").as_numbers("schedule.betas");
    const int num_train = positive(sched.at("num_train_timesteps", "schedule").as_int("schedule.num_train_timesteps"),
                                   "schedule.num_train_timesteps", 1000000);
    if (static_cast<int>(betas.size()) != num_train || num_train < 2)
        throw json::Error("schedule.betas must hold num_train_timesteps (at least 2) numbers");
    for (double b : betas)
        if (!(b > 0 && b < 1)) throw json::Error("schedule.betas must lie in (0, 1)");
    s.alphas_cumprod = alphas_cumprod(betas);
    s.max_steps = num_train - 1;

    const auto& d = e.at("defaults");
    s.default_steps = positive(d.at("steps", "defaults").as_int("defaults.steps"), "defaults.steps", s.max_steps);
    s.default_sampler = d.at("sampler", "defaults").as_string("defaults.sampler");
    s.default_cfg = d.at("cfg", "defaults").as_number("defaults.cfg");
    const auto& names = sampler_names();
    if (std::find(names.begin(), names.end(), s.default_sampler) == names.end())
        throw json::Error("defaults.sampler '" + s.default_sampler + "' is not a sampler this libobjaudio builds");

    const auto& lim = e.at("limits");
    s.max_rows = positive(lim.at("max_rows", "limits").as_int("limits.max_rows"), "limits.max_rows", 1024);
    s.max_stems = positive(lim.at("max_stems", "limits").as_int("limits.max_stems"), "limits.max_stems", 1024);
    if (s.max_rows < 2) throw json::Error("limits.max_rows must be at least 2");

    std::vector<std::string> networks = {"image_encoder", "grounding_condition", "unet", "vae_decoder", "vocoder"};
    if (e.has("distilled")) {                  // a teacher's engine has no such key (and no sixth network)
        const auto& dist = e.at("distilled");
        s.distilled = true;
        s.cfg_min = dist.at("cfg_min", "distilled").as_number("distilled.cfg_min");
        s.cfg_max = dist.at("cfg_max", "distilled").as_number("distilled.cfg_max");
        if (!(std::isfinite(s.cfg_min) && std::isfinite(s.cfg_max) && 0 <= s.cfg_min && s.cfg_min <= s.cfg_max))
            throw json::Error("distilled.cfg_min and cfg_max must be finite with 0 <= cfg_min <= cfg_max");
        networks.push_back("guidance_embedding");
    }
    if (e.has("silence_gate")) {               // objaudio_rt/core/gate.py SilenceGate, weights inline
        const auto& g = e.at("silence_gate");
        s.gated = true;
        s.gate_hidden = positive(g.at("hidden_dim", "silence_gate").as_int("silence_gate.hidden_dim"),
                                 "silence_gate.hidden_dim", 4096);
        s.gate_threshold = g.at("threshold", "silence_gate").as_number("silence_gate.threshold");
        if (!(s.gate_threshold > 0 && s.gate_threshold < 1))
            throw json::Error("silence_gate.threshold must lie in (0, 1)");
        const auto floats = [&](const char* key, size_t n) {
            std::vector<float> out;
            for (double v : g.at(key, "silence_gate").as_numbers(std::string("silence_gate.") + key)) {
                if (!std::isfinite(v)) throw json::Error(std::string("silence_gate.") + key + " must be finite");
                out.push_back(static_cast<float>(v));
            }
            if (out.size() != n)
                throw json::Error(std::string("silence_gate.") + key + " must hold " + std::to_string(n) + " numbers");
            return out;
        };
        const size_t h = static_cast<size_t>(s.gate_hidden);
        s.gate_w1 = floats("w1", h * static_cast<size_t>(s.cond_dim));
        s.gate_b1 = floats("b1", h);
        s.gate_w2 = floats("w2", h);
        s.gate_b2 = floats("b2", 1)[0];
    }
    for (const std::string& name : networks) {
        const std::string path = "networks." + name;
        std::string rel = e.at("networks").at(name, "networks").at("file", path).as_string(path + ".file");
        if (!safe_relative_path(rel)) throw json::Error(path + ".file is not a path inside the engine folder");
        s.networks[name] = rel;
    }
    return s;
}

}  // namespace

EngineSpec read_engine_spec(const std::string& dir, bool verify_files) {
    json::Value e;
    try {
        e = json::parse(read_text(join(dir, "engine.json"), "engine.json"));
    } catch (const json::Error& err) {
        throw Failure(OBJAUDIO_ERR_ENGINE_CORRUPT, "engine.json is not valid JSON (" + std::string(err.what()) +
                                                   "): rebuild the engine");
    }
    EngineSpec spec;
    try {
        if (e.at("format").as_string("format") != kEngineFormat)
            throw Failure(OBJAUDIO_ERR_INCOMPATIBLE, dir + " is not an objaudio engine folder (format field)");
        long long version = e.at("version").as_int("version");
        if (version != kEngineVersion && version != kDistilledEngineVersion && version != kGatedEngineVersion)
            throw Failure(OBJAUDIO_ERR_INCOMPATIBLE, "engine format version " + std::to_string(version) +
                                                     " but this libobjaudio reads versions " +
                                                     std::to_string(kEngineVersion) + " to " +
                                                     std::to_string(kGatedEngineVersion) + ": rebuild the engine");
        if ((version == kGatedEngineVersion) != e.has("silence_gate"))
            throw Failure(OBJAUDIO_ERR_ENGINE_CORRUPT, "engine.json's version and its \"silence_gate\" section "
                                                       "disagree (version 4 is a gated engine's): rebuild the engine");
        if (version != kGatedEngineVersion && (version == kDistilledEngineVersion) != e.has("distilled"))
            throw Failure(OBJAUDIO_ERR_ENGINE_CORRUPT, "engine.json's version and its \"distilled\" section disagree "
                                                       "(version 3 is a guidance-distilled engine's): rebuild the engine");
        const std::string runtime = e.at("runtime").at("name", "runtime").as_string("runtime.name");
        if (runtime != kRuntime)
            throw Failure(OBJAUDIO_ERR_INCOMPATIBLE, "engine built for runtime '" + runtime + "', this libobjaudio runs '" +
                                                     kRuntime + "' engines");
        spec = parse_spec(e);
    } catch (const json::Error& err) {
        throw Failure(OBJAUDIO_ERR_ENGINE_CORRUPT, "engine.json: " + std::string(err.what()) + ": rebuild the engine");
    }
    spec.dir = dir;
    if (verify_files) {
        try {
            verify_manifest(dir, spec);
        } catch (const json::Error& err) {
            throw Failure(OBJAUDIO_ERR_ENGINE_CORRUPT, "manifest.json: " + std::string(err.what()));
        }
    }
    return spec;
}

}  // namespace objaudio
