// CUDA twins of objaudio_rt/kernels/sampler_step.py and grounding.py (same math, fp32 arithmetic).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <math.h>

#include "objaudio.h"

namespace {

template <typename T> __device__ __forceinline__ float to_float(T v);
template <> __device__ __forceinline__ float to_float<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_float<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

constexpr int kStepThreads = 256;
constexpr int kStepMaxBlocks = 8192;
constexpr int kPoolThreads = 256;

template <typename T, bool kHasPrev>
__global__ void __launch_bounds__(kStepThreads) guided_step_kernel(ObjaudioStepParams p) {
  const float* c = p.coefs + 5 * (*p.step);
  const float cx = c[0], ce = c[1], cp = c[2], dx = c[3], de = c[4];
  const T* x = static_cast<const T*>(p.x);
  const T* eps_u = static_cast<const T*>(p.eps_pair);
  const T* eps_c = eps_u + p.n;
  const T* x0_prev = static_cast<const T*>(p.x0_prev);
  T* x_next = static_cast<T*>(p.x_next);
  T* x0 = static_cast<T*>(p.x0);
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < p.n; i += (int64_t)gridDim.x * blockDim.x) {
    const float xi = to_float(x[i]);
    const float u = to_float(eps_u[i]);
    const float eps = u + p.cfg * (to_float(eps_c[i]) - u);
    float next = cx * xi + ce * eps;
    if (kHasPrev) next += cp * to_float(x0_prev[i]);
    x_next[i] = from_float<T>(next);
    x0[i] = from_float<T>(dx * xi + de * eps);
  }
}

// One block per selection. Pass 1: one warp per patch row computes X_p . k; pass 2: warp 0
// turns the P scores (in shared memory) into softmax weights; pass 3: one thread per column
// of X accumulates a X. X is read twice; for one image it stays in L2 across the B blocks.
template <typename T>
__global__ void __launch_bounds__(kPoolThreads) grounding_pool_kernel(ObjaudioGroundingParams p) {
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
void launch_step(const ObjaudioStepParams& p, cudaStream_t stream) {
  const int64_t want = (p.n + kStepThreads - 1) / kStepThreads;
  const int blocks = (int)(want < kStepMaxBlocks ? want : kStepMaxBlocks);
  if (p.x0_prev != nullptr) guided_step_kernel<T, true><<<blocks, kStepThreads, 0, stream>>>(p);
  else guided_step_kernel<T, false><<<blocks, kStepThreads, 0, stream>>>(p);
}

template <typename T>
void launch_pool(const ObjaudioGroundingParams& p, cudaStream_t stream) {
  grounding_pool_kernel<T><<<p.batch, kPoolThreads, p.patches * sizeof(float), stream>>>(p);
}

int launch_status() {
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? OBJAUDIO_OK : (int)err;
}

}  // namespace

extern "C" int objaudio_guided_step(const ObjaudioStepParams* p, cudaStream_t stream) {
  if (p == nullptr || p->coefs == nullptr || p->step == nullptr || p->x == nullptr || p->eps_pair == nullptr ||
      p->x_next == nullptr || p->x0 == nullptr)
    return OBJAUDIO_ERR_NULL_POINTER;
  if (p->n < 0) return OBJAUDIO_ERR_BAD_SIZE;
  if (p->n == 0) return OBJAUDIO_OK;
  switch (p->dtype) {
    case OBJAUDIO_FLOAT32: launch_step<float>(*p, stream); break;
    case OBJAUDIO_FLOAT16: launch_step<__half>(*p, stream); break;
    case OBJAUDIO_BFLOAT16: launch_step<__nv_bfloat16>(*p, stream); break;
    default: return OBJAUDIO_ERR_BAD_DTYPE;
  }
  return launch_status();
}

extern "C" int objaudio_grounding_pool(const ObjaudioGroundingParams* p, cudaStream_t stream) {
  if (p == nullptr || p->tokens == nullptr || p->pe == nullptr || p->weights_out == nullptr || p->pooled == nullptr)
    return OBJAUDIO_ERR_NULL_POINTER;
  if ((p->k_vec == nullptr) == (p->weights_in == nullptr)) return OBJAUDIO_ERR_NULL_POINTER;
  if (p->batch < 0 || p->patches <= 0 || p->patches > OBJAUDIO_MAX_PATCHES || p->dim <= 0) return OBJAUDIO_ERR_BAD_SIZE;
  if (p->batch == 0) return OBJAUDIO_OK;
  switch (p->dtype) {
    case OBJAUDIO_FLOAT32: launch_pool<float>(*p, stream); break;
    case OBJAUDIO_FLOAT16: launch_pool<__half>(*p, stream); break;
    case OBJAUDIO_BFLOAT16: launch_pool<__nv_bfloat16>(*p, stream); break;
    default: return OBJAUDIO_ERR_BAD_DTYPE;
  }
  return launch_status();
}

extern "C" const char* objaudio_error_string(int code) {
  switch (code) {
    case OBJAUDIO_OK: return "ok";
    case OBJAUDIO_ERR_NULL_POINTER: return "a required pointer is NULL (or both/neither of k_vec and weights_in given)";
    case OBJAUDIO_ERR_BAD_SIZE: return "a size is out of range (see params.h)";
    case OBJAUDIO_ERR_BAD_DTYPE: return "unknown ObjaudioDtype";
    default: return code > 0 ? cudaGetErrorString((cudaError_t)code) : "unknown objaudio error";
  }
}
