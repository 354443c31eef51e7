"""The samplers on AudioLDM's schedule, as per-step affine coefficient tables.

Every update used here is affine in the current latent x, the guided noise prediction eps and the
data predictions of the K previous steps, h_1 (the newest) .. h_K, so a step is one row of K + 4
numbers, [cx, ce, c_1 .. c_K, dx, de]:

    eps     = eps_u + cfg * (eps_c - eps_u)                 (classifier-free guidance)
    x_next  = cx[i] * x + ce[i] * eps + sum_k c_k[i] * h_k
    x0_cur  = dx[i] * x + de[i] * eps                        (this step's data prediction)
    history = (x0_cur, h_1, .., h_{K-1})                     (kept for the next step, newest first)

    sampler   K   diffusers scheduler it reproduces
    ddim      1   DDIMScheduler (c_1 = 0: DDIM reads no history)
    dpmpp     1   DPMSolverMultistepScheduler, solver_order 2 (DPM-Solver++ 2M)
    dpmpp3m   2   DPMSolverMultistepScheduler, solver_order 3 (DPM-Solver++ 3M)
    unipc     2   UniPCMultistepScheduler (bh2, predict_x0, its corrector UniC at every step)

For K = 1 the row is DDIM's and DPM-Solver++ 2M's table as it always was: cx, ce, cp, dx, de.
`SamplerPlan.build` computes the tables once per (sampler, steps) on the host in float64, so
the denoising loop needs no host-device sync and a fused kernel (kernels/) can do guidance
and the update in one pass. `reference_step` is the plain PyTorch version of that pass.

Settings, those diffusers uses for AudioLDM-style checkpoints (epsilon prediction, scaled-linear
betas 0.0015..0.0195 over 1000 steps): DDIM with leading spacing, steps_offset 1, set_alpha_to_one
False, eta 0 (AudioLDM's own scheduler config); the multistep solvers with diffusers' defaults,
linspace spacing, final sigma zero (the last step lands on x0) and lower_order_final (first order
at the last step; DPM-Solver++ 3M also second order at the one before it below 15 steps). UniPC
is solver_order 2 and bh2, which diffusers recommends for guided sampling (order 3 and bh1 are
for unconditional sampling), with no step's corrector disabled.

UniPC's corrector refines the current sample x_i with this step's model output before the
predictor runs from it; it starts from the previous corrected sample with the coefficient
sigma_i / sigma_{i-1}, exactly as the predictor that produced x_i did, so the corrected sample is
x_i plus model-output terms and needs no history slot of its own: K = 2 (the corrector at
order 2 and the predictor read m_{i-1} and m_{i-2}).

tests/runtime/test_samplers.py holds every table to its diffusers scheduler, step by step.
"""
from __future__ import annotations

import functools

from dataclasses import dataclass

import numpy as np
import torch

from .config import ScheduleConfig
from .errors import check
from .options import SAMPLERS, max_steps

HISTORY = {"ddim": 1, "dpmpp": 1, "dpmpp3m": 2, "unipc": 2}     # K, the data predictions a step may read


def check_steps(steps, schedule: ScheduleConfig = ScheduleConfig()) -> None:
    top = max_steps(schedule.num_train_timesteps)
    check(isinstance(steps, int) and 0 < steps <= top, f"steps must be an integer in [1, {top}], got {steps!r}")


def betas(schedule: ScheduleConfig) -> np.ndarray:
    """(T,) float64 AudioLDM's scaled-linear betas (what export/engine.py writes for libobjaudio)."""
    return np.linspace(schedule.beta_start ** 0.5, schedule.beta_end ** 0.5, schedule.num_train_timesteps,
                       dtype=np.float64) ** 2


def alphas_cumprod(schedule: ScheduleConfig) -> np.ndarray:
    """(T,) float64 cumulative products of 1 - beta."""
    return np.cumprod(1.0 - betas(schedule))


@dataclass(frozen=True)
class SamplerPlan:
    sampler: str
    timesteps: torch.Tensor      # (S,) int64, the UNet's t at each step
    coefs: torch.Tensor          # (S, K + 4) float64: cx, ce, c_1 .. c_K, dx, de

    @property
    def steps(self) -> int:
        return int(self.timesteps.numel())

    @property
    def history(self) -> int:
        """K: the previous data predictions a step may read."""
        return int(self.coefs.shape[1]) - 4

    @functools.cached_property
    def coef_rows(self) -> list[list[float]]:
        """`coefs` as Python floats, row by row: what the host step reads, without a tensor op per value."""
        return self.coefs.tolist()

    @functools.cached_property
    def history_reads(self) -> list[int]:
        """Per step, how many of the newest history slots it reads (0 at the first step, and always for DDIM):
        decided on the host, so a fused step skips the loads of the others without a sync."""
        k = self.history
        return [max((j + 1 for j in range(k) if row[2 + j] != 0.0), default=0) for row in self.coef_rows]

    @staticmethod
    def build(sampler: str, steps: int, schedule: ScheduleConfig = ScheduleConfig()) -> "SamplerPlan":
        check(sampler in SAMPLERS, f"unknown sampler {sampler!r}: use one of {', '.join(SAMPLERS)}")
        check_steps(steps, schedule)
        acp = alphas_cumprod(schedule)
        t = schedule.num_train_timesteps
        if sampler == "ddim":
            return _ddim_plan(acp, steps, t)
        if sampler == "unipc":
            return _unipc_plan(acp, steps, t)
        return _dpmpp_plan(sampler, acp, steps, t)


def _ddim_plan(acp: np.ndarray, steps: int, num_train: int) -> SamplerPlan:
    ratio = num_train // steps
    timesteps = (np.arange(0, steps) * ratio).round()[::-1].astype(np.int64) + 1   # leading, offset 1
    coefs = np.zeros((steps, 5))
    for i, t in enumerate(timesteps):
        prev = t - ratio
        a_t, a_prev = acp[t], (acp[prev] if prev >= 0 else acp[0])
        coefs[i, 0] = np.sqrt(a_prev / a_t)
        coefs[i, 1] = np.sqrt(1 - a_prev) - np.sqrt(a_prev) * np.sqrt(1 - a_t) / np.sqrt(a_t)
        coefs[i, 3] = 1 / np.sqrt(a_t)
        coefs[i, 4] = -np.sqrt(1 - a_t) / np.sqrt(a_t)
    return SamplerPlan("ddim", torch.from_numpy(timesteps.copy()), torch.from_numpy(coefs))


def _linspace_schedule(acp: np.ndarray, steps: int, num_train: int):
    """The multistep solvers' timesteps (S,) (linspace spacing) and alpha, sigma, lambda = log(alpha / sigma)
    at them, each (S + 1,) with the final sigma zero (lambda[-1] = +inf): the last step lands on x0."""
    timesteps = np.linspace(0, num_train - 1, steps + 1).round()[::-1][:-1].astype(np.int64)
    alpha = np.append(np.sqrt(acp[timesteps]), 1.0)
    sigma = np.append(np.sqrt(1 - acp[timesteps]), 0.0)
    with np.errstate(divide="ignore"):
        lam = np.log(alpha) - np.log(sigma)
    return timesteps, alpha, sigma, lam


def _row(a: float, w: list[float], dx: float, de: float, k: int) -> list[float]:
    """The table row of x_next = a x + w[0] m + w[1] h_1 + .. with m = dx x + de eps, for K = k."""
    tail = list(w[1:]) + [0.0] * (k + 1 - len(w))
    return [a + w[0] * dx, w[0] * de, *tail, dx, de]


def _dpmpp_order(sampler: str, i: int, steps: int) -> int:
    """The order diffusers' DPMSolverMultistepScheduler takes at step i (warm start, lower_order_final)."""
    if i == 0 or i == steps - 1:                 # final sigma zero: the last step is always first order
        return 1
    if sampler == "dpmpp" or i == 1 or (i == steps - 2 and steps < 15):
        return 2
    return 3


def _dpmpp_plan(sampler: str, acp: np.ndarray, steps: int, num_train: int) -> SamplerPlan:
    """DPM-Solver++ (multistep, data prediction) of order 2 (dpmpp, midpoint) or 3 (dpmpp3m)."""
    timesteps, alpha, sigma, lam = _linspace_schedule(acp, steps, num_train)
    k = HISTORY[sampler]
    coefs = np.zeros((steps, k + 4))
    for i in range(steps):
        a_s, s_s, a_t, s_t = alpha[i], sigma[i], alpha[i + 1], sigma[i + 1]
        h = lam[i + 1] - lam[i]
        g = -a_t * np.expm1(-h)                    # -alpha_t (e^{-h} - 1)
        dx, de = 1 / a_s, -s_s / a_s               # x0 = dx * x + de * eps
        order = _dpmpp_order(sampler, i, steps)
        if order == 1:
            w = [g]
        elif order == 2:
            r0 = (lam[i] - lam[i - 1]) / h
            w = [g * (1 + 0.5 / r0), g * (-0.5 / r0)]   # D0 + 0.5 D1 with D1 = (m0 - m1) / r0
        else:
            w = _third_order_weights(h, lam[i] - lam[i - 1], lam[i - 1] - lam[i - 2], a_t)
        coefs[i] = _row(s_t / s_s, w, dx, de, k)
    return SamplerPlan(sampler, torch.from_numpy(timesteps.copy()), torch.from_numpy(coefs))


def _third_order_weights(h: float, h0: float, h1: float, a_t: float) -> list[float]:
    """DPM-Solver++ 3M's weights of m0, m1, m2 (diffusers' multistep_dpm_solver_third_order_update)."""
    r0, r1 = h0 / h, h1 / h
    d1_0 = np.array([1.0, -1.0, 0.0]) / r0                   # (m0 - m1) / r0
    d1_1 = np.array([0.0, 1.0, -1.0]) / r1                   # (m1 - m2) / r1
    d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
    d2 = (d1_0 - d1_1) / (r0 + r1)
    phi = np.expm1(-h)
    w = -a_t * phi * np.array([1.0, 0.0, 0.0]) + a_t * (phi / h + 1) * d1 - a_t * ((phi + h) / (h * h) - 0.5) * d2
    return w.tolist()


def _unipc_plan(acp: np.ndarray, steps: int, num_train: int) -> SamplerPlan:
    """UniPC-2 with bh2 and data prediction: corrector UniC from step 1 on, then predictor UniP.

    Over m = (m_i, m_{i-1}, m_{i-2}), this step's and the two previous data predictions:
        x_c    = x + corr . m                                 (x itself at step 0)
        x_next = (sigma_{i+1} / sigma_i) x_c + pred . m
    """
    timesteps, alpha, sigma, lam = _linspace_schedule(acp, steps, num_train)
    coefs = np.zeros((steps, HISTORY["unipc"] + 4))
    for i in range(steps):
        dx, de = 1 / alpha[i], -sigma[i] / alpha[i]
        corr = np.zeros(3)
        if i >= 1:
            h = lam[i] - lam[i - 1]
            bh = np.expm1(-h)                                # bh2: B(h) = e^{-h} - 1 (diffusers' hh = -h)
            if i == 1:                                       # the corrector's order is the last predictor's: 1
                corr = -alpha[i] * bh * 0.5 * np.array([1.0, -1.0, 0.0])
            else:
                r = (lam[i - 2] - lam[i - 1]) / h
                rho0, rho1 = _unic_rhos(h, r)
                d1 = np.array([0.0, -1.0, 1.0]) / r          # (m_{i-2} - m_{i-1}) / r, the predictor's too
                corr = alpha[i] * bh * ((0.5 - rho0) * d1 - rho1 * np.array([1.0, -1.0, 0.0]))
        h = lam[i + 1] - lam[i]
        phi = np.expm1(-h)                                   # h phi_1 and, for bh2, B(h)
        pred = -alpha[i + 1] * phi * np.array([1.0, 0.0, 0.0])
        if 0 < i < steps - 1:                                # order 2 (order 1 first and, lower_order_final, last)
            r = (lam[i - 1] - lam[i]) / h
            pred = pred - alpha[i + 1] * phi * 0.5 * np.array([-1.0, 1.0, 0.0]) / r
        a = sigma[i + 1] / sigma[i]
        coefs[i] = _row(a, (a * corr + pred).tolist(), dx, de, HISTORY["unipc"])
    return SamplerPlan("unipc", torch.from_numpy(timesteps.copy()), torch.from_numpy(coefs))


def _unic_rhos(h: float, r: float) -> tuple[float, float]:
    """UniC-2's rho (bh2, data prediction): the solution of [[1, 1], [r, 1]] rho = b, b_n = n! k_n / B(h)
    with k_1 = phi_1(-h) / (-h) - 1 and k_{n+1} = k_n / (-h) - 1 / (n+1)! (diffusers' b)."""
    hh = -h
    bh = np.expm1(hh)
    k1 = np.expm1(hh) / hh - 1
    k2 = k1 / hh - 0.5
    b1, b2 = k1 / bh, 2 * k2 / bh
    rho0 = (b1 - b2) / (1 - r)
    return rho0, b1 - rho0


def guided_eps(eps_pair: torch.Tensor, cfg: float | torch.Tensor) -> torch.Tensor:
    """eps_pair: (2B, ...) with the unconditional half first; cfg: a number, or a (1,) or (B,) tensor
    (a device scalar: a captured loop reads it, so one capture serves every guidance value).
    Returns (B, ...)."""
    eps_u, eps_c = eps_pair.chunk(2)
    if isinstance(cfg, torch.Tensor):
        cfg = as_dtype(cfg, eps_u.dtype).view(-1, *([1] * (eps_u.ndim - 1)))      # (1 or B, 1, 1, 1)
    return eps_u + cfg * (eps_c - eps_u)


def as_dtype(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`t` in `dtype`; `t` itself when it is already (no operator call: a step's no-op `.to`s were a
    tenth of its CPU operator calls, benchmarks/profile.py)."""
    return t if t.dtype == dtype else t.to(dtype)


def reference_step(coefs: torch.Tensor | list[float], x: torch.Tensor, eps_pair: torch.Tensor,
                   cfg: float | torch.Tensor, history: tuple[torch.Tensor, ...] | None = None,
                   ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One guided sampler step in plain PyTorch (the fused kernels' reference).

    coefs: (K + 4,) for this step, a tensor or floats (SamplerPlan.coef_rows); x: (B, C, H, W); eps_pair:
    (2B, C, H, W), unconditional first; cfg: a number or a (1,) / (B,) float32 tensor; history: the previous
    steps' data predictions, newest first (fewer than K at the first steps, None or () at the first).
    Returns (x_next, history'): x_next (B, C, H, W) and history' = (x0_cur, *history[:K - 1]), in x's
    dtype; arithmetic in float32.
    """
    c = coefs.tolist() if isinstance(coefs, torch.Tensor) else [float(v) for v in coefs]
    k = len(c) - 4
    history = tuple(history or ())
    check(all(v == 0.0 for v in c[2 + len(history):2 + k]),
          f"this step reads {k} previous data predictions but was given {len(history)}: pass the history "
          "the previous step returned")
    xf = as_dtype(x, torch.float32)
    eps = guided_eps(as_dtype(eps_pair, torch.float32), cfg)
    x_next = torch.add(c[0] * xf, eps, alpha=c[1])                 # cx x + ce eps: two calls, not three
    for ck, h in zip(c[2:2 + k], history):
        if ck != 0.0:
            x_next = torch.add(x_next, as_dtype(h, torch.float32), alpha=ck)
    x0 = torch.add(c[k + 2] * xf, eps, alpha=c[k + 3])
    return as_dtype(x_next, x.dtype), (as_dtype(x0, x.dtype), *history[:k - 1])


@dataclass
class DeviceTables:
    """A sampler plan on the device, indexed by a device step counter (no host sync per step)."""
    plan: SamplerPlan           # the host plan: float64 coefficients, and which steps read the history
    timesteps: torch.Tensor     # (S,) int64
    coefs: torch.Tensor         # (S, K + 4) float32: cx, ce, c_1 .. c_K, dx, de
    step: torch.Tensor          # (1,) int64, the current step index

    @staticmethod
    def upload(plan: SamplerPlan, device: torch.device) -> "DeviceTables":
        return DeviceTables(plan, plan.timesteps.to(device),
                            plan.coefs.to(device=device, dtype=torch.float32).contiguous(),
                            torch.zeros(1, dtype=torch.int64, device=device))
