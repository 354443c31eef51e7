// Device helpers shared by the objaudio kernels (sampler_step.cu, grounding.cu): dtype conversion
// to and from the fp32 arithmetic every kernel does, and the launch status.
#ifndef OBJAUDIO_COMMON_CUH
#define OBJAUDIO_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "objaudio.h"

namespace objaudio {

template <typename T> __device__ __forceinline__ float to_float(T v);
template <> __device__ __forceinline__ float to_float<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_float<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// OBJAUDIO_KERNEL_OK, or the cudaError_t of the last launch.
inline int launch_status() {
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? OBJAUDIO_KERNEL_OK : (int)err;
}

}  // namespace objaudio

#endif  // OBJAUDIO_COMMON_CUH
