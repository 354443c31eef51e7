/* The kernel API (objaudio.h, with params.h) and the engine API (objaudio_engine.h) in one translation unit:
 * a host that runs the whole generation through libobjaudio and calls a kernel itself includes both
 * (issue 19 item 5: OBJAUDIO_OK was a #define in one and an enum member in the other). Compiled as C99
 * and as C++ by tests/native/test_native.py; it only has to compile. */
#include <string.h>

#include "objaudio.h"
#include "objaudio_engine.h"

int objaudio_headers_agree(void) {
    ObjaudioStepParams step;
    objaudio_request request;
    memset(&step, 0, sizeof step);
    memset(&request, 0, sizeof request);
    step.n_history = OBJAUDIO_MAX_HISTORY;
    request.sampler = OBJAUDIO_SAMPLER_UNIPC;
    return OBJAUDIO_KERNEL_OK == 0 && OBJAUDIO_OK == 0 && step.n_history > 0 && request.sampler > 0 ? 0 : 1;
}
