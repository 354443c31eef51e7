/* The kernel API (objaudio.h, with params.h) and the engine API (objaudio_engine.h) in one translation unit:
 * a host that runs the whole generation through libobjaudio and calls a kernel itself includes both
 * (issue 19 item 5: OBJAUDIO_OK was a #define in one and an enum member in the other; the kernel API's
 * names now all carry OBJAUDIO_KERNEL_ / objaudio_kernel_). Compiled as C99 and as C++ with plain gcc,
 * without any CUDA header, by tests/native/test_native.py; it only has to compile. */
#include <string.h>

#include "objaudio.h"
#include "objaudio_engine.h"

int objaudio_headers_agree(void) {
    objaudio_kernel_step_params step;
    objaudio_kernel_grounding_params pool;
    objaudio_request request;
    memset(&step, 0, sizeof step);
    memset(&pool, 0, sizeof pool);
    memset(&request, 0, sizeof request);
    step.n_history = OBJAUDIO_KERNEL_MAX_HISTORY;
    step.dtype = OBJAUDIO_KERNEL_BFLOAT16;
    pool.dtype = OBJAUDIO_KERNEL_FLOAT16;
    request.sampler = OBJAUDIO_SAMPLER_UNIPC;
    return OBJAUDIO_KERNEL_OK == 0 && OBJAUDIO_OK == 0 && step.n_history > 0 && request.sampler > 0 &&
                   pool.dtype != step.dtype
               ? 0
               : 1;
}

/* Both APIs' functions, by address: the prototypes agree with how a host calls them. */
int (*const guided_step)(const objaudio_kernel_step_params*, objaudio_kernel_stream) = objaudio_kernel_guided_step;
objaudio_status (*const options_set)(objaudio_options*, const char*, const char*) = objaudio_options_set;
