// CUDA twin of objaudio_rt/kernels/grounding.py: the single-query grounding pool (fp32 arithmetic).
#include <math.h>

#include "common.cuh"

namespace {

using objaudio::to_float;

constexpr int kPoolThreads = 256;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// One block per selection. Pass 1: one warp per patch row computes X_p . k; pass 2: warp 0
// turns the P scores (in shared memory) into softmax weights; pass 3: one thread per column
// of X accumulates a X. X is read twice; for one image it stays in L2 across the B blocks.
template <typename T>
__global__ void __launch_bounds__(kPoolThreads) grounding_pool_kernel(objaudio_kernel_grounding_params p) {
  extern __shared__ float a[];  // (patches)
  const int b = blockIdx.x;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  const T* tok = static_cast<const T*>(p.tokens) + b * p.tokens_batch_stride;
  const T* pe = static_cast<const T*>(p.pe);
  if (p.k_vec != nullptr) {
    const float* k = p.k_vec + (int64_t)b * p.dim;
    for (int i = warp; i < p.patches; i += warps) {
      float s = 0.f;
      for (int l = lane; l < p.dim; l += 32)
        s += (to_float(tok[i * p.tokens_row_stride + l]) + to_float(pe[i * p.pe_row_stride + l])) * k[l];
      s = warp_sum(s);
      if (lane == 0) a[i] = s;
    }
    __syncthreads();
    if (warp == 0) {  // each lane rewrites only the entries it reads: no barrier needed inside
      float m = -INFINITY;
      for (int i = lane; i < p.patches; i += 32) m = fmaxf(m, a[i]);
      m = warp_max(m);
      float sum = 0.f;
      for (int i = lane; i < p.patches; i += 32) {
        const float e = __expf(a[i] - m);
        a[i] = e;
        sum += e;
      }
      const float inv = 1.f / warp_sum(sum);
      for (int i = lane; i < p.patches; i += 32) a[i] *= inv;
    }
  } else {
    for (int i = threadIdx.x; i < p.patches; i += blockDim.x) a[i] = p.weights_in[(int64_t)b * p.patches + i];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < p.patches; i += blockDim.x) p.weights_out[(int64_t)b * p.patches + i] = a[i];
  for (int l = threadIdx.x; l < p.dim; l += blockDim.x) {
    float acc = 0.f;
    for (int i = 0; i < p.patches; ++i)
      acc += a[i] * (to_float(tok[i * p.tokens_row_stride + l]) + to_float(pe[i * p.pe_row_stride + l]));
    p.pooled[(int64_t)b * p.dim + l] = acc;
  }
}

template <typename T>
void launch_pool(const objaudio_kernel_grounding_params& p, cudaStream_t stream) {
  grounding_pool_kernel<T><<<p.batch, kPoolThreads, p.patches * sizeof(float), stream>>>(p);
}

}  // namespace

extern "C" int objaudio_kernel_grounding_pool(const objaudio_kernel_grounding_params* p,
                                              objaudio_kernel_stream stream) {
  if (p == nullptr || p->tokens == nullptr || p->pe == nullptr || p->weights_out == nullptr || p->pooled == nullptr)
    return OBJAUDIO_KERNEL_ERR_NULL_POINTER;
  if ((p->k_vec == nullptr) == (p->weights_in == nullptr)) return OBJAUDIO_KERNEL_ERR_NULL_POINTER;
  if (p->batch < 0 || p->patches <= 0 || p->patches > OBJAUDIO_MAX_PATCHES || p->dim <= 0)
    return OBJAUDIO_KERNEL_ERR_BAD_SIZE;
  if (p->batch == 0) return OBJAUDIO_KERNEL_OK;
  switch (p->dtype) {
    case OBJAUDIO_KERNEL_FLOAT32: launch_pool<float>(*p, stream); break;
    case OBJAUDIO_KERNEL_FLOAT16: launch_pool<__half>(*p, stream); break;
    case OBJAUDIO_KERNEL_BFLOAT16: launch_pool<__nv_bfloat16>(*p, stream); break;
    default: return OBJAUDIO_KERNEL_ERR_BAD_DTYPE;
  }
  return objaudio::launch_status();
}
