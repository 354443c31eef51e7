// A generation's PCM at another sample rate (44.1 or 48 kHz for games and DAWs) through libsoxr, driven
// exactly as objaudio_rt/core/audio.py's resample drives it (python-soxr's soxr.resample: very high quality,
// float32, the input fed in the same chunks), so the two sides give the same samples. No torch here.
#pragma once

#include <cstddef>

namespace objaudio {

// The most samples `resample` writes for n input samples: n * to / from + 1 (what python-soxr allocates).
size_t resampled_capacity(size_t n, int from, int to);

// Resamples n samples at `from` Hz into out (capacity >= resampled_capacity) at `to` Hz; returns the
// count written. Throws Failure(OBJAUDIO_ERR_RUNTIME) if libsoxr fails.
size_t resample(const float* in, size_t n, int from, int to, float* out, size_t capacity);

}  // namespace objaudio
