// torch bindings for the objaudio CUDA kernels (built as objaudio_rt._C by setup.py).
// Python picks them for the one op name of each kernel (objaudio_rt/kernels/_cuda.py).
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include <cmath>
#include <tuple>
#include <vector>

#include "objaudio.h"

#define CHECK_CUDA(x) TORCH_CHECK((x).is_cuda(), #x " must be a CUDA tensor")
#define CHECK_CONTIGUOUS(x) TORCH_CHECK((x).is_contiguous(), #x " must be contiguous")
#define CHECK_SHAPE(x, ...) TORCH_CHECK((x).sizes() == at::IntArrayRef({__VA_ARGS__}), #x " must have shape (" #__VA_ARGS__ ")")
#define CHECK_DTYPE(x, t) TORCH_CHECK((x).scalar_type() == (t), #x " must be " #t)

namespace {

objaudio_kernel_dtype objaudio_dtype(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return OBJAUDIO_KERNEL_FLOAT32;
    case at::kHalf: return OBJAUDIO_KERNEL_FLOAT16;
    case at::kBFloat16: return OBJAUDIO_KERNEL_BFLOAT16;
    default: TORCH_CHECK(false, "objaudio kernels take float32, float16 or bfloat16, got ", t.scalar_type());
  }
}

void check_status(int code) {
  TORCH_CHECK(code == OBJAUDIO_KERNEL_OK, "objaudio kernel: ", objaudio_kernel_error_string(code));
}

std::tuple<at::Tensor, at::Tensor> guided_step(const at::Tensor& coefs, const at::Tensor& step, const at::Tensor& x,
                                               const at::Tensor& eps_pair, const at::Tensor& cfg,
                                               const std::vector<at::Tensor>& history) {
  CHECK_CUDA(coefs); CHECK_CUDA(step); CHECK_CUDA(cfg); CHECK_CUDA(x); CHECK_CUDA(eps_pair);
  CHECK_CONTIGUOUS(coefs); CHECK_CONTIGUOUS(cfg); CHECK_CONTIGUOUS(x); CHECK_CONTIGUOUS(eps_pair);
  CHECK_DTYPE(coefs, at::kFloat); CHECK_DTYPE(step, at::kLong); CHECK_DTYPE(cfg, at::kFloat);
  TORCH_CHECK(coefs.dim() == 2 && coefs.size(1) >= 4 && coefs.size(1) <= 4 + OBJAUDIO_KERNEL_MAX_HISTORY,
              "coefs must be the (S, K + 4) table, K <= ", OBJAUDIO_KERNEL_MAX_HISTORY);
  TORCH_CHECK(static_cast<int64_t>(history.size()) <= coefs.size(1) - 4, "more history slots than the table has");
  TORCH_CHECK(step.numel() == 1, "step must hold one index");
  TORCH_CHECK(cfg.dim() == 1 && (cfg.size(0) == 1 || cfg.size(0) == x.size(0)), "cfg must be (1,) or (B,)");
  TORCH_CHECK(x.dim() >= 1 && eps_pair.dim() == x.dim() && eps_pair.size(0) == 2 * x.size(0) &&
              eps_pair.numel() == 2 * x.numel(), "eps_pair must be (2B, ...) for x (B, ...)");
  CHECK_DTYPE(eps_pair, x.scalar_type());
  for (const at::Tensor& h : history) {
    CHECK_CUDA(h); CHECK_CONTIGUOUS(h); CHECK_DTYPE(h, x.scalar_type());
    CHECK_SHAPE(h, x.sizes());
  }
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor x_next = at::empty_like(x), x0 = at::empty_like(x);
  objaudio_kernel_step_params p{};
  p.coefs = coefs.data_ptr<float>();
  p.width = coefs.size(1);
  p.step = step.data_ptr<int64_t>();
  p.cfg = cfg.data_ptr<float>();
  p.cfg_items = cfg.size(0);
  p.x = x.data_ptr();
  p.eps_pair = eps_pair.data_ptr();
  for (size_t k = 0; k < history.size(); ++k) p.history[k] = history[k].data_ptr();
  p.n_history = static_cast<int32_t>(history.size());
  p.x_next = x_next.data_ptr();
  p.x0 = x0.data_ptr();
  p.n = x.numel();
  p.dtype = objaudio_dtype(x);
  check_status(objaudio_kernel_guided_step(&p, at::cuda::getCurrentCUDAStream()));
  return {x_next, x0};
}

std::tuple<at::Tensor, at::Tensor> grounding_pool(const at::Tensor& tokens, const at::Tensor& pe,
                                                  const c10::optional<at::Tensor>& k_vec,
                                                  const c10::optional<at::Tensor>& weights) {
  CHECK_CUDA(tokens); CHECK_CUDA(pe);
  TORCH_CHECK(k_vec.has_value() != weights.has_value(), "give exactly one of k_vec and weights");
  TORCH_CHECK(pe.dim() == 2 && pe.stride(1) == 1, "pe must be (P, L) with unit stride along L");
  const int64_t P = pe.size(0), L = pe.size(1);
  TORCH_CHECK(tokens.dim() == 3 && tokens.size(1) == P && tokens.size(2) == L && tokens.stride(2) == 1,
              "tokens must be (B or 1, P, L) with unit stride along L");
  CHECK_DTYPE(pe, tokens.scalar_type());
  const at::Tensor& sel = k_vec ? *k_vec : *weights;
  CHECK_CUDA(sel); CHECK_CONTIGUOUS(sel); CHECK_DTYPE(sel, at::kFloat);
  const int64_t B = sel.size(0);
  CHECK_SHAPE(sel, B, k_vec ? L : P);
  TORCH_CHECK(tokens.size(0) == 1 || tokens.size(0) == B, "tokens batch must be 1 or ", B);
  const c10::cuda::CUDAGuard guard(tokens.device());
  const auto f32 = tokens.options().dtype(at::kFloat);
  at::Tensor pooled = at::empty({B, L}, f32), weights_out = at::empty({B, P}, f32);
  objaudio_kernel_grounding_params p{};
  p.tokens = tokens.data_ptr();
  p.tokens_batch_stride = tokens.size(0) == 1 ? 0 : tokens.stride(0);
  p.tokens_row_stride = tokens.stride(1);
  p.pe = pe.data_ptr();
  p.pe_row_stride = pe.stride(0);
  p.k_vec = k_vec ? k_vec->data_ptr<float>() : nullptr;
  p.weights_in = weights ? weights->data_ptr<float>() : nullptr;
  p.weights_out = weights_out.data_ptr<float>();
  p.pooled = pooled.data_ptr<float>();
  p.batch = static_cast<int32_t>(B);
  p.patches = static_cast<int32_t>(P);
  p.dim = static_cast<int32_t>(L);
  p.dtype = objaudio_dtype(tokens);
  check_status(objaudio_kernel_grounding_pool(&p, at::cuda::getCurrentCUDAStream()));
  return {pooled, weights_out};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "objaudio CUDA kernels (csrc/sampler_step.cu, csrc/grounding.cu)";
  m.def("guided_step", &guided_step, "fused guided sampler step -> (x_next, x0)");
  m.def("grounding_pool", &grounding_pool, "single-query grounding pool -> (pooled fp32, weights fp32)");
}
