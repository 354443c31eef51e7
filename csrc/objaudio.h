/* objaudio CUDA kernels: a C interface for hosts without Python (a game engine, a plugin).
 *
 * Link libobjaudio_kernels (CMakeLists.txt at the repository root). Each call checks its
 * parameters, enqueues one kernel on `stream` and returns without synchronising:
 *   OBJAUDIO_KERNEL_OK (0)   enqueued
 *   negative                 bad parameters (see objaudio_kernel_error_string), nothing enqueued
 *   positive                 the cudaError_t of the launch
 * Its names carry the OBJAUDIO_KERNEL_ / objaudio_kernel_ prefix where the engine API's
 * (objaudio_engine.h) would clash, so a host may include both headers in one translation unit.
 */
#ifndef OBJAUDIO_H
#define OBJAUDIO_H

#include <cuda_runtime.h>

#include "params.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OBJAUDIO_KERNEL_OK 0
#define OBJAUDIO_KERNEL_ERR_NULL_POINTER (-1)
#define OBJAUDIO_KERNEL_ERR_BAD_SIZE (-2)
#define OBJAUDIO_KERNEL_ERR_BAD_DTYPE (-3)

int objaudio_guided_step(const ObjaudioStepParams* params, cudaStream_t stream);
int objaudio_grounding_pool(const ObjaudioGroundingParams* params, cudaStream_t stream);
const char* objaudio_kernel_error_string(int code);

#ifdef __cplusplus
}
#endif

#endif /* OBJAUDIO_H */
