// objaudio_rt/core/samplers.py in C++: each function mirrors the Python one of the same name, in the same order
// of operations (numpy evaluates `a * b * v` as (a * b) * v, elementwise over v).
#include "samplers.h"

#include <array>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace objaudio {
namespace {

using Vec3 = std::array<double, 3>;   // weights of (m_i, m_{i-1}, m_{i-2}), this step's data prediction first

Vec3 scaled(double s, const Vec3& v) { return {s * v[0], s * v[1], s * v[2]}; }
Vec3 divided(const Vec3& v, double s) { return {v[0] / s, v[1] / s, v[2] / s}; }
Vec3 plus(const Vec3& a, const Vec3& b) { return {a[0] + b[0], a[1] + b[1], a[2] + b[2]}; }
Vec3 minus(const Vec3& a, const Vec3& b) { return {a[0] - b[0], a[1] - b[1], a[2] - b[2]}; }

// The multistep solvers' schedule: timesteps (S,) by linspace spacing and alpha, sigma, lambda (S + 1,)
// with the final sigma zero (lambda = +inf there).
struct Schedule {
    std::vector<int64_t> timesteps;
    std::vector<double> alpha, sigma, lam;
};

Schedule linspace_schedule(const std::vector<double>& acp, int steps) {
    const int64_t num_train = static_cast<int64_t>(acp.size());
    const double stop = static_cast<double>(num_train - 1);
    const double step = stop / steps;                       // numpy.linspace(0, T - 1, S + 1): i * step, last = stop
    Schedule s;
    for (int j = 0; j < steps; ++j) {                       // reversed, without the final 0
        const int k = steps - j;
        const double y = k == steps ? stop : static_cast<double>(k) * step;
        s.timesteps.push_back(static_cast<int64_t>(std::nearbyint(y)));   // numpy rounds half to even
    }
    for (int64_t t : s.timesteps) {
        s.alpha.push_back(std::sqrt(acp[t]));
        s.sigma.push_back(std::sqrt(1 - acp[t]));
    }
    s.alpha.push_back(1.0);
    s.sigma.push_back(0.0);
    for (size_t i = 0; i < s.alpha.size(); ++i) s.lam.push_back(std::log(s.alpha[i]) - std::log(s.sigma[i]));
    return s;
}

// The row of x_next = a x + w[0] m + w[1] h_1 + .. with m = dx x + de eps, for K = k (samplers._row).
void put_row(SamplerTable& t, double a, const std::vector<double>& w, double dx, double de) {
    const int k = t.history();
    t.coefs.push_back(a + w[0] * dx);
    t.coefs.push_back(w[0] * de);
    for (int j = 1; j <= k; ++j) t.coefs.push_back(j < static_cast<int>(w.size()) ? w[j] : 0.0);
    t.coefs.push_back(dx);
    t.coefs.push_back(de);
}

SamplerTable ddim_plan(const std::vector<double>& acp, int steps) {
    const int64_t ratio = static_cast<int64_t>(acp.size()) / steps;
    SamplerTable t{"ddim", {}, 5, {}};
    for (int i = 0; i < steps; ++i) {
        const int64_t ts = static_cast<int64_t>(steps - 1 - i) * ratio + 1;   // leading, offset 1
        const int64_t prev = ts - ratio;
        const double a_t = acp[ts], a_prev = prev >= 0 ? acp[prev] : acp[0];
        t.timesteps.push_back(ts);
        t.coefs.push_back(std::sqrt(a_prev / a_t));
        t.coefs.push_back(std::sqrt(1 - a_prev) - std::sqrt(a_prev) * std::sqrt(1 - a_t) / std::sqrt(a_t));
        t.coefs.push_back(0.0);
        t.coefs.push_back(1 / std::sqrt(a_t));
        t.coefs.push_back(-std::sqrt(1 - a_t) / std::sqrt(a_t));
    }
    return t;
}

int dpmpp_order(const std::string& sampler, int i, int steps) {
    if (i == 0 || i == steps - 1) return 1;
    if (sampler == "dpmpp" || i == 1 || (i == steps - 2 && steps < 15)) return 2;
    return 3;
}

std::vector<double> third_order_weights(double h, double h0, double h1, double a_t) {
    const double r0 = h0 / h, r1 = h1 / h;
    const Vec3 d1_0 = divided({1.0, -1.0, 0.0}, r0);
    const Vec3 d1_1 = divided({0.0, 1.0, -1.0}, r1);
    const Vec3 d1 = plus(d1_0, scaled(r0 / (r0 + r1), minus(d1_0, d1_1)));
    const Vec3 d2 = divided(minus(d1_0, d1_1), r0 + r1);
    const double phi = std::expm1(-h);
    const Vec3 w = minus(plus(scaled(-a_t * phi, {1.0, 0.0, 0.0}), scaled(a_t * (phi / h + 1), d1)),
                         scaled(a_t * ((phi + h) / (h * h) - 0.5), d2));
    return {w[0], w[1], w[2]};
}

SamplerTable dpmpp_plan(const std::string& sampler, const std::vector<double>& acp, int steps) {
    const Schedule s = linspace_schedule(acp, steps);
    SamplerTable t{sampler, s.timesteps, sampler == "dpmpp" ? 5 : 6, {}};
    for (int i = 0; i < steps; ++i) {
        const double a_s = s.alpha[i], s_s = s.sigma[i], a_t = s.alpha[i + 1], s_t = s.sigma[i + 1];
        const double h = s.lam[i + 1] - s.lam[i];
        const double g = -a_t * std::expm1(-h);
        const double dx = 1 / a_s, de = -s_s / a_s;
        std::vector<double> w;
        switch (dpmpp_order(sampler, i, steps)) {
            case 1: w = {g}; break;
            case 2: {
                const double r0 = (s.lam[i] - s.lam[i - 1]) / h;
                w = {g * (1 + 0.5 / r0), g * (-0.5 / r0)};
                break;
            }
            default: w = third_order_weights(h, s.lam[i] - s.lam[i - 1], s.lam[i - 1] - s.lam[i - 2], a_t);
        }
        put_row(t, s_t / s_s, w, dx, de);
    }
    return t;
}

std::array<double, 2> unic_rhos(double h, double r) {
    const double hh = -h;
    const double bh = std::expm1(hh);
    const double k1 = std::expm1(hh) / hh - 1;
    const double k2 = k1 / hh - 0.5;
    const double b1 = k1 / bh, b2 = 2 * k2 / bh;
    const double rho0 = (b1 - b2) / (1 - r);
    return {rho0, b1 - rho0};
}

SamplerTable unipc_plan(const std::vector<double>& acp, int steps) {
    const Schedule s = linspace_schedule(acp, steps);
    SamplerTable t{"unipc", s.timesteps, 6, {}};
    for (int i = 0; i < steps; ++i) {
        const double dx = 1 / s.alpha[i], de = -s.sigma[i] / s.alpha[i];
        Vec3 corr{0.0, 0.0, 0.0};
        if (i >= 1) {
            const double h = s.lam[i] - s.lam[i - 1];
            const double bh = std::expm1(-h);
            if (i == 1) {
                corr = scaled(-s.alpha[i] * bh * 0.5, {1.0, -1.0, 0.0});
            } else {
                const double r = (s.lam[i - 2] - s.lam[i - 1]) / h;
                const auto [rho0, rho1] = unic_rhos(h, r);
                const Vec3 d1 = divided({0.0, -1.0, 1.0}, r);
                corr = scaled(s.alpha[i] * bh, minus(scaled(0.5 - rho0, d1), scaled(rho1, {1.0, -1.0, 0.0})));
            }
        }
        const double h = s.lam[i + 1] - s.lam[i];
        const double phi = std::expm1(-h);
        Vec3 pred = scaled(-s.alpha[i + 1] * phi, {1.0, 0.0, 0.0});
        if (0 < i && i < steps - 1) {
            const double r = (s.lam[i - 1] - s.lam[i]) / h;
            pred = minus(pred, divided(scaled(s.alpha[i + 1] * phi * 0.5, {-1.0, 1.0, 0.0}), r));
        }
        const double a = s.sigma[i + 1] / s.sigma[i];
        const Vec3 w = plus(scaled(a, corr), pred);
        put_row(t, a, {w[0], w[1], w[2]}, dx, de);
    }
    return t;
}

}  // namespace

std::vector<double> alphas_cumprod(const std::vector<double>& betas) {
    std::vector<double> out;
    double p = 1.0;
    for (size_t i = 0; i < betas.size(); ++i) {
        p = i == 0 ? 1.0 - betas[0] : p * (1.0 - betas[i]);
        out.push_back(p);
    }
    return out;
}

SamplerTable build_sampler_table(const std::string& sampler, int steps, const std::vector<double>& acp) {
    const int top = static_cast<int>(acp.size()) - 1;
    if (steps < 1 || steps > top)
        throw std::invalid_argument("steps must be in [1, " + std::to_string(top) + "], got " + std::to_string(steps));
    if (sampler == "ddim") return ddim_plan(acp, steps);
    if (sampler == "unipc") return unipc_plan(acp, steps);
    if (sampler == "dpmpp" || sampler == "dpmpp3m") return dpmpp_plan(sampler, acp, steps);
    throw std::invalid_argument("unknown sampler '" + sampler + "'");
}

}  // namespace objaudio
