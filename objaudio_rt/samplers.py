"""DDIM and DPM-Solver++(2M) on AudioLDM's schedule, as per-step affine coefficient tables.

Every update used here is affine in the current latent x, the guided noise prediction eps and
(for DPM-Solver++ 2M) the previous step's data prediction x0_prev:

    x_next  = cx[i] * x + ce[i] * eps + cp[i] * x0_prev
    x0_cur  = dx[i] * x + de[i] * eps           (kept as history for the next step)
    eps     = eps_u + cfg * (eps_c - eps_u)      (classifier-free guidance)

`SamplerPlan.build` computes the tables once per (sampler, steps) on the host in float64, so
the denoising loop needs no host-device sync and a fused kernel (kernels/) can do guidance
and the update in one pass. `reference_step` is the plain PyTorch version of that pass.
The tables reproduce diffusers' DDIMScheduler (AudioLDM settings: leading spacing,
steps_offset 1, set_alpha_to_one False, eta 0) and DPMSolverMultistepScheduler
(dpmsolver++, order 2, midpoint, linspace spacing, final sigma zero); tests/runtime/test_samplers.py
holds them to diffusers.
"""
from __future__ import annotations

import functools

from dataclasses import dataclass

import numpy as np
import torch

from .config import ScheduleConfig
from .errors import check
from .options import SAMPLERS, max_steps


def check_steps(steps, schedule: ScheduleConfig = ScheduleConfig()) -> None:
    top = max_steps(schedule.num_train_timesteps)
    check(isinstance(steps, int) and 0 < steps <= top, f"steps must be an integer in [1, {top}], got {steps!r}")


def alphas_cumprod(schedule: ScheduleConfig) -> np.ndarray:
    """(T,) float64 cumulative products of 1 - beta for AudioLDM's scaled-linear betas."""
    betas = np.linspace(schedule.beta_start ** 0.5, schedule.beta_end ** 0.5,
                        schedule.num_train_timesteps, dtype=np.float64) ** 2
    return np.cumprod(1.0 - betas)


@dataclass(frozen=True)
class SamplerPlan:
    sampler: str
    timesteps: torch.Tensor      # (S,) int64, the UNet's t at each step
    coefs: torch.Tensor          # (S, 5) float64: cx, ce, cp, dx, de

    @property
    def steps(self) -> int:
        return int(self.timesteps.numel())

    @functools.cached_property
    def coef_rows(self) -> list[list[float]]:
        """`coefs` as Python floats, row by row: what the host step reads, without a tensor op per value."""
        return self.coefs.tolist()

    @staticmethod
    def build(sampler: str, steps: int, schedule: ScheduleConfig = ScheduleConfig()) -> "SamplerPlan":
        check(sampler in SAMPLERS, f"unknown sampler {sampler!r}: use one of {', '.join(SAMPLERS)}")
        check_steps(steps, schedule)
        acp = alphas_cumprod(schedule)
        if sampler == "ddim":
            return _ddim_plan(acp, steps, schedule.num_train_timesteps)
        return _dpmpp_2m_plan(acp, steps, schedule.num_train_timesteps)


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


def _dpmpp_2m_plan(acp: np.ndarray, steps: int, num_train: int) -> SamplerPlan:
    timesteps = np.linspace(0, num_train - 1, steps + 1).round()[::-1][:-1].astype(np.int64)
    alpha = np.sqrt(acp[timesteps])
    sigma = np.sqrt(1 - acp[timesteps])
    alpha = np.append(alpha, 1.0)        # final sigma zero: the last step lands on x0
    sigma = np.append(sigma, 0.0)
    with np.errstate(divide="ignore"):
        lam = np.log(alpha) - np.log(sigma)        # lam[-1] = +inf
    coefs = np.zeros((steps, 5))
    for i in range(steps):
        a_s, s_s, a_t, s_t = alpha[i], sigma[i], alpha[i + 1], sigma[i + 1]
        h = lam[i + 1] - lam[i]
        g = -a_t * np.expm1(-h)                    # -alpha_t (e^{-h} - 1)
        dx, de = 1 / a_s, -s_s / a_s               # x0 = dx * x + de * eps
        first_order = i == 0 or i == steps - 1     # warm start; lower-order final step
        if first_order:
            w0, w1 = 1.0, 0.0
        else:
            r0 = (lam[i] - lam[i - 1]) / h
            w0, w1 = 1 + 0.5 / r0, -0.5 / r0       # D0 + 0.5 D1 with D1 = (m0 - m1) / r0
        coefs[i] = (s_t / s_s + g * w0 * dx, g * w0 * de, g * w1, dx, de)
    return SamplerPlan("dpmpp", torch.from_numpy(timesteps.copy()), torch.from_numpy(coefs))


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
                   cfg: float | torch.Tensor, x0_prev: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One guided sampler step in plain PyTorch (the fused kernels' reference).

    coefs: (5,) for this step, a tensor or floats (SamplerPlan.coef_rows); x: (B, C, H, W); eps_pair: (2B, C, H, W), unconditional first;
    cfg: a number or a (1,) / (B,) float32 tensor. Returns (x_next, x0_cur), both (B, C, H, W) in
    x's dtype; arithmetic in float32.
    """
    c = coefs.tolist() if isinstance(coefs, torch.Tensor) else [float(v) for v in coefs]
    xf = as_dtype(x, torch.float32)
    eps = guided_eps(as_dtype(eps_pair, torch.float32), cfg)
    x_next = torch.add(c[0] * xf, eps, alpha=c[1])                 # cx x + ce eps: two calls, not three
    if x0_prev is not None and c[2] != 0.0:
        x_next = torch.add(x_next, as_dtype(x0_prev, torch.float32), alpha=c[2])
    x0 = torch.add(c[3] * xf, eps, alpha=c[4])
    return as_dtype(x_next, x.dtype), as_dtype(x0, x.dtype)


@dataclass
class DeviceTables:
    """A sampler plan on the device, indexed by a device step counter (no host sync per step)."""
    plan: SamplerPlan           # the host plan: float64 coefficients, and which steps read the history
    timesteps: torch.Tensor     # (S,) int64
    coefs: torch.Tensor         # (S, 5) float32: cx, ce, cp, dx, de
    step: torch.Tensor          # (1,) int64, the current step index

    @staticmethod
    def upload(plan: SamplerPlan, device: torch.device) -> "DeviceTables":
        return DeviceTables(plan, plan.timesteps.to(device),
                            plan.coefs.to(device=device, dtype=torch.float32).contiguous(),
                            torch.zeros(1, dtype=torch.int64, device=device))
