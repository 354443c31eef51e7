#include "resample.h"

#include <soxr.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

#include "spec.h"

namespace objaudio {

size_t resampled_capacity(size_t n, int from, int to) {
    return static_cast<size_t>(static_cast<double>(n) * to / from) + 1;
}

size_t resample(const float* in, size_t n, int from, int to, float* out, size_t capacity) {
    if (from == to) {
        std::memcpy(out, in, n * sizeof(float));
        return n;
    }
    soxr_error_t err = nullptr;
    const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
    const soxr_quality_spec_t quality = soxr_quality_spec(SOXR_VHQ, 0);
    std::unique_ptr<soxr, decltype(&soxr_delete)> s(soxr_create(from, to, 1, &err, &io, &quality, nullptr),
                                                    soxr_delete);
    if (err != nullptr) throw Failure(OBJAUDIO_ERR_RUNTIME, std::string("libsoxr: ") + err);
    // python-soxr's csoxr_divide_proc: the input in chunks of max(1000, 48000 * from / to), then a flush
    const size_t chunk = static_cast<size_t>(std::max(1000.0, 48000.0 * from / to));
    size_t written = 0, done = 0;
    for (size_t i = 0; i < n && err == nullptr; i += chunk) {
        err = soxr_process(s.get(), in + i, std::min(chunk, n - i), nullptr, out + written, capacity - written, &done);
        written += done;
    }
    if (err == nullptr) {
        err = soxr_process(s.get(), nullptr, 0, nullptr, out + written, capacity - written, &done);
        written += done;
    }
    if (err != nullptr) throw Failure(OBJAUDIO_ERR_RUNTIME, std::string("libsoxr: ") + err);
    return written;
}

}  // namespace objaudio
