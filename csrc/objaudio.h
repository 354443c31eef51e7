/* objaudio CUDA kernels: a C interface for hosts without Python (a game engine, a plugin).
 *
 * Link libobjaudio_kernels (CMakeLists.txt at the repository root). Each call checks its
 * parameters, enqueues one kernel on `stream` and returns without synchronising:
 *   OBJAUDIO_KERNEL_OK (0)   enqueued
 *   negative                 bad parameters (see objaudio_kernel_error_string), nothing enqueued
 *   positive                 the cudaError_t of the launch
 * Every name here and in params.h carries the OBJAUDIO_KERNEL_ / objaudio_kernel_ prefix, so a host may
 * include this header and the engine API's (objaudio_engine.h) in one translation unit
 * (tests/native/check_headers.c). It needs no CUDA header: a plain C compiler takes it.
 */
#ifndef OBJAUDIO_KERNEL_H
#define OBJAUDIO_KERNEL_H

#include "params.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OBJAUDIO_KERNEL_OK 0
#define OBJAUDIO_KERNEL_ERR_NULL_POINTER (-1)
#define OBJAUDIO_KERNEL_ERR_BAD_SIZE (-2)
#define OBJAUDIO_KERNEL_ERR_BAD_DTYPE (-3)

/* A cudaStream_t (the CUDA runtime declares it as this same pointer type); 0 is the default stream. */
typedef struct CUstream_st* objaudio_kernel_stream;

int objaudio_kernel_guided_step(const objaudio_kernel_step_params* params, objaudio_kernel_stream stream);
int objaudio_kernel_grounding_pool(const objaudio_kernel_grounding_params* params, objaudio_kernel_stream stream);
const char* objaudio_kernel_error_string(int code);

#ifdef __cplusplus
}
#endif

#endif /* OBJAUDIO_KERNEL_H */
