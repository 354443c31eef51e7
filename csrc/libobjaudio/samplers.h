// The sampler coefficient tables, built on the host for any step count: a port of objaudio_rt/core/samplers.py
// (SamplerPlan.build), operation for operation in float64, so a table equals Python's to the rounding of
// the math library's log and expm1. No torch here.
//
// Step i's row of K + 4 numbers (cx, ce, c_1 .. c_K, dx, de), with h_k the data predictions of the K
// previous steps, newest first:
//   x_next = cx x + ce eps + sum_k c_k h_k;   x0 = dx x + de eps;   history' = (x0, h_1, .., h_{K-1})
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace objaudio {

// The sampler names libobjaudio builds tables for (objaudio_rt/core/options.py SAMPLERS), in objaudio_sampler order.
inline const std::vector<std::string>& sampler_names() {
    static const std::vector<std::string> names = {"ddim", "dpmpp", "dpmpp3m", "unipc"};
    return names;
}

struct SamplerTable {
    std::string sampler;
    std::vector<int64_t> timesteps;   // (S,) the UNet's t at each step
    int width = 0;                    // K + 4
    std::vector<double> coefs;        // (S, width) row-major

    int steps() const { return static_cast<int>(timesteps.size()); }
    int history() const { return width - 4; }
    const double* row(int i) const { return coefs.data() + static_cast<size_t>(i) * width; }
};

// (T,) cumulative products of 1 - beta, in order (numpy.cumprod).
std::vector<double> alphas_cumprod(const std::vector<double>& betas);

// The table of `sampler` (one of sampler_names()) for 1 <= steps <= alphas_cumprod.size() - 1 (max_steps);
// throws std::invalid_argument otherwise.
SamplerTable build_sampler_table(const std::string& sampler, int steps, const std::vector<double>& alphas_cumprod);

}  // namespace objaudio
