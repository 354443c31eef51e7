// CUDA twin of objaudio_rt/kernels/sampler_step.py: guided CFG + sampler update in one pass (fp32 arithmetic).
#include "common.cuh"

namespace {

using objaudio::from_float;
using objaudio::to_float;

constexpr int kStepThreads = 256;
constexpr int kStepMaxBlocks = 8192;

template <typename T, int kHistory>
__global__ void __launch_bounds__(kStepThreads) guided_step_kernel(objaudio_kernel_step_params p) {
  const float* c = p.coefs + p.width * (*p.step);
  const float cx = c[0], ce = c[1], dx = c[p.width - 2], de = c[p.width - 1];
  const int64_t item_numel = p.n / p.cfg_items;  // cfg_items divides n (checked by the caller)
  const T* x = static_cast<const T*>(p.x);
  const T* eps_u = static_cast<const T*>(p.eps_pair);
  const T* eps_c = eps_u + p.n;
  T* x_next = static_cast<T*>(p.x_next);
  T* x0 = static_cast<T*>(p.x0);
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < p.n; i += (int64_t)gridDim.x * blockDim.x) {
    const float cfg = p.cfg[p.cfg_items == 1 ? 0 : i / item_numel];
    const float xi = to_float(x[i]);
    const float u = to_float(eps_u[i]);
    const float eps = u + cfg * (to_float(eps_c[i]) - u);
    float next = cx * xi + ce * eps;
#pragma unroll
    for (int k = 0; k < kHistory; ++k) next += c[2 + k] * to_float(static_cast<const T*>(p.history[k])[i]);
    x_next[i] = from_float<T>(next);
    x0[i] = from_float<T>(dx * xi + de * eps);
  }
}

template <typename T>
void launch_step(const objaudio_kernel_step_params& p, cudaStream_t stream) {
  const int64_t want = (p.n + kStepThreads - 1) / kStepThreads;
  const int blocks = (int)(want < kStepMaxBlocks ? want : kStepMaxBlocks);
  static_assert(OBJAUDIO_KERNEL_MAX_HISTORY == 2, "launch_step instantiates 0, 1 and 2 history slots");
  switch (p.n_history) {
    case 0: guided_step_kernel<T, 0><<<blocks, kStepThreads, 0, stream>>>(p); break;
    case 1: guided_step_kernel<T, 1><<<blocks, kStepThreads, 0, stream>>>(p); break;
    default: guided_step_kernel<T, 2><<<blocks, kStepThreads, 0, stream>>>(p); break;
  }
}

}  // namespace

extern "C" int objaudio_kernel_guided_step(const objaudio_kernel_step_params* p, objaudio_kernel_stream stream) {
  if (p == nullptr || p->coefs == nullptr || p->step == nullptr || p->cfg == nullptr || p->x == nullptr ||
      p->eps_pair == nullptr || p->x_next == nullptr || p->x0 == nullptr)
    return OBJAUDIO_KERNEL_ERR_NULL_POINTER;
  if (p->n < 0 || p->cfg_items < 1 || p->n % p->cfg_items != 0 || p->width < 4 ||
      p->width > 4 + OBJAUDIO_KERNEL_MAX_HISTORY || p->n_history < 0 || p->n_history > p->width - 4)
    return OBJAUDIO_KERNEL_ERR_BAD_SIZE;
  for (int k = 0; k < p->n_history; ++k)
    if (p->history[k] == nullptr) return OBJAUDIO_KERNEL_ERR_NULL_POINTER;
  if (p->n == 0) return OBJAUDIO_KERNEL_OK;
  switch (p->dtype) {
    case OBJAUDIO_KERNEL_FLOAT32: launch_step<float>(*p, stream); break;
    case OBJAUDIO_KERNEL_FLOAT16: launch_step<__half>(*p, stream); break;
    case OBJAUDIO_KERNEL_BFLOAT16: launch_step<__nv_bfloat16>(*p, stream); break;
    default: return OBJAUDIO_KERNEL_ERR_BAD_DTYPE;
  }
  return objaudio::launch_status();
}
