"""The guided denoising loop, written once; every backend runs it, graphed or not.

A batch of B items is conditioned on R part rows (`Conditions`): each row belongs to one item
(`owner`) with a weight, and an item's weights sum to 1. A single selection is one row with
weight 1; a composed union `A | B` is one row per part. Per step the UNet runs on the B
unconditional rows and the R part rows, and (composable guidance)

    eps_c(b) = sum over rows r of item b of w_r eps(x_b, c_r)
    eps      = eps_u + cfg * (eps_c - eps_u)

then the sampler's affine update (samplers.py), which also returns the history (previous data
predictions) the next step reads. With one row of weight 1 per item, eps_c is that
row's eps exactly (0 + 1 * eps), so the composed form is also the single-selection loop; such
conditions (`Conditions.single`, `identity`) skip the gather and the weighted sum, whose operator
calls were a sixth of a CPU step's outside the UNet.

A guidance-distilled UNet (the backend's `guidance_embedding` is set: config.DistilledConfig) has the
guidance built in: each row's condition gains the embedding of the scale, the UNet runs on the R
part rows only (no unconditional rows), eps = sum over rows r of item b of w_r eps(x_b, c_r + g(cfg)),
and the step reads (eps, eps) at scale 1: one row per step instead of two.

Backends supply only the network call (`unet_eps`) and the step (`step`: `reference_step` on
the host's float64 table, or the fused kernel reading the device table). The loop never syncs
with the host: the timestep and the coefficient row are read at a device step counter and the
guidance scale is a device tensor, so `denoise` can capture it whole as one CUDA graph
(backends/cuda_graph.py) for backends that graph their loop, and replay it for any guidance value.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..backends.base import Backend
from .errors import check
from .samplers import DeviceTables, SamplerPlan, as_dtype

WARMUP_STEPS = 3          # loop steps run on a side stream before capture (handles, Triton JIT, kernel variants)


@dataclass
class Conditions:
    """R condition rows for B items: rows (R, cond_dim), owner (R,) int64, weights (R,) float32.
    identity: row b is item b's only row, of weight 1 (R == B), as `single` builds them."""
    rows: torch.Tensor
    owner: torch.Tensor
    weights: torch.Tensor
    identity: bool = False

    @staticmethod
    def single(cond: torch.Tensor) -> "Conditions":
        """One row of weight 1 per item: cond (B, cond_dim)."""
        b = cond.shape[0]
        return Conditions(cond, torch.arange(b, device=cond.device), torch.ones(b, device=cond.device), identity=True)

    @staticmethod
    def composed(rows: torch.Tensor, owner: torch.Tensor, weights: torch.Tensor, items: int,
                 signed: bool = False) -> "Conditions":
        """Checked on the host: every item owns at least one row, weights >= 0 (any sign when `signed`)
        summing to 1 per item."""
        check(rows.ndim == 2 and owner.shape == weights.shape == rows.shape[:1],
              f"rows must be (R, cond_dim) with owner and weights (R,), got {tuple(rows.shape)}, "
              f"{tuple(owner.shape)} and {tuple(weights.shape)}")
        owner = owner.to(torch.int64).cpu()
        check(bool(((owner >= 0) & (owner < items)).all()) and torch.unique(owner).numel() == items,
              f"owner must name each of the {items} items at least once")
        total = torch.zeros(items, dtype=torch.float64).index_add_(0, owner, weights.double().cpu())
        check((signed or bool((weights >= 0).all())) and bool(torch.allclose(total, torch.ones_like(total), atol=1e-5)),
              "composition weights must be non-negative and sum to 1 per item")
        return Conditions(rows, owner, weights.float())

    @staticmethod
    def signed(rows: torch.Tensor, owner: torch.Tensor, weights: torch.Tensor, items: int,
               null: torch.Tensor) -> "Conditions":
        """Rows with any finite weights (e.g. a negative push away from a condition): per item whose
        weights do not sum to 1, one more row, the null condition `null` (cond_dim,), takes the rest,
        so that eps_c = sum_r w_r eps(x, c_r) + (1 - sum_r w_r) eps_u. Checked as `composed` is."""
        check(rows.ndim == 2 and owner.shape == weights.shape == rows.shape[:1],
              f"rows must be (R, cond_dim) with owner and weights (R,), got {tuple(rows.shape)}, "
              f"{tuple(owner.shape)} and {tuple(weights.shape)}")
        check(bool(torch.isfinite(weights).all()), "condition weights must be finite")
        owner = owner.to(torch.int64).cpu()
        check(bool(((owner >= 0) & (owner < items)).all()), f"owner must name items in [0, {items})")
        total = torch.zeros(items, dtype=torch.float64).index_add_(0, owner, weights.double().cpu())
        rest = [(item, 1.0 - float(t)) for item, t in enumerate(total)
                if abs(1.0 - float(t)) > 1e-6]            # float32 weights: 1/3 + 1/3 + 1/3 is 1
        rows = torch.cat([rows, null.reshape(1, -1).to(rows.dtype).expand(len(rest), -1)])
        owner = torch.cat([owner, torch.tensor([o for o, _ in rest], dtype=torch.int64)])
        weights = torch.cat([weights.float().cpu(), torch.tensor([w for _, w in rest], dtype=torch.float32)])
        return Conditions.composed(rows, owner, weights, items, signed=True)

    @property
    def items(self) -> int:
        """B, the number of items (each owns at least one row)."""
        return self.rows.shape[0] if self.identity else int(self.owner.max()) + 1

    def to(self, device: torch.device) -> "Conditions":
        return Conditions(self.rows.to(device), self.owner.to(device), self.weights.to(device), self.identity)


@torch.no_grad()
def guided_loop(backend: Backend, x: torch.Tensor, cond: Conditions, tables: DeviceTables, cfg: torch.Tensor,
                steps: int | None = None, progress: bool = False, held=None, guidance=None) -> torch.Tensor:
    """x: (B, C, H, W) noise; cfg: (1,) float32 device scalar. Runs the first `steps` steps (all by default).
    held (longform.Held, host-side, never captured): frames set back to a final latent at every level.
    guidance (guidance.APG): replaces classifier-free guidance's update; the step then runs at cfg 1 on
    (eps_u, the guided eps)."""
    b = x.shape[0]
    embed = getattr(backend, "guidance_embedding", None)                     # a distilled UNet: one row a step
    check(embed is None or guidance is None, "a guidance-distilled model has its guidance built in: run it with "
                                             "guidance cfg, or load its teacher for apg")
    if embed is None:
        null = backend.null_condition.to(cond.rows.dtype).expand(b, -1)
        cond_rows = torch.cat([null, cond.rows])                              # (B + R, cond_dim), unconditional first
    else:
        cond_rows = cond.rows + embed(cfg).to(cond.rows.dtype)                # (R, cond_dim): the scale as an input
    w = None if cond.identity else cond.weights.view(-1, *([1] * (x.ndim - 1)))   # (R, 1, 1, 1)
    tables.step.zero_()
    history: tuple[torch.Tensor, ...] = ()                                   # previous data predictions, newest first
    n = tables.plan.steps if steps is None else steps
    one = torch.ones_like(cfg) if guidance is not None or embed is not None else None
    if held is not None:
        x = held.apply(x, 0)
    for i in tqdm(range(n), desc=f"denoise ({tables.plan.sampler})", disable=not progress, leave=False):
        t = tables.timesteps.index_select(0, tables.step)                     # (1,) int64, read on the device
        scale = cfg
        if embed is not None:                                                 # eps = sum_r w_r eps(x, c_r + g(cfg))
            x_rows = x if cond.identity else x.index_select(0, cond.owner)
            eps = as_dtype(backend.unet_eps(x_rows, t, cond_rows), torch.float32)                 # (R, ...)
            if not cond.identity:
                eps = torch.zeros_like(eps[:b]).index_add_(0, cond.owner, eps * w)
            eps_pair, scale = torch.cat([eps, eps]), one                      # already guided: step at scale 1
        elif cond.identity:                                                   # eps_c(b) = eps(x_b, c_b)
            eps_pair = as_dtype(backend.unet_eps(torch.cat([x, x]), t, cond_rows), torch.float32)   # (2B, ...)
        else:
            x_rows = torch.cat([x, x.index_select(0, cond.owner)])            # (B + R, C, H, W)
            eps = as_dtype(backend.unet_eps(x_rows, t, cond_rows), torch.float32)                 # (B + R, ...)
            eps_c = torch.zeros_like(eps[:b]).index_add_(0, cond.owner, eps[b:] * w)   # (B, C, H, W)
            eps_pair = torch.cat([eps[:b], eps_c])
        if guidance is not None:
            eps_pair, scale = torch.cat([eps_pair[:b], guidance.eps(tables.plan.coef_rows[i], x, eps_pair, cfg)]), one
        x, history = backend.step(tables, i, x, eps_pair, scale, history)
        if held is not None:
            x = held.apply(x, i + 1)
        tables.step.add_(1)
    return x


@torch.no_grad()
def denoise(backend: Backend, noise: torch.Tensor, cond: Conditions, plan: SamplerPlan, cfg: float,
            progress: bool = True, guidance=None) -> torch.Tensor:
    """noise: (B, C, H, W), float32 (float64 for a reference run). Returns the final latent (B, C, H, W)
    on the backend's device; the sampler arithmetic is float32 (samplers.reference_step).

    Backends with a graph cache (`backend.graphs`) replay the loop captured once per shapes,
    sampler, steps and schedule; the others run it step by step.
    """
    dev = backend.device
    x = noise.to(dev)
    cond = cond.to(dev)
    cfg_t = torch.full((1,), float(cfg), dtype=torch.float32, device=dev)            # (1,) device scalar
    if backend.graphs is None or guidance is not None:                 # guidance: an experiment, not captured
        return guided_loop(backend, x, cond, DeviceTables.upload(plan, dev), cfg_t, progress=progress,
                           guidance=guidance)
    inputs = {"x": x, "rows": cond.rows, "owner": cond.owner, "weights": cond.weights, "cfg": cfg_t}

    def capture_body():
        tables = DeviceTables.upload(plan, dev)                      # owned by the captured graph

        def body(static: dict[str, torch.Tensor], warmup: bool) -> torch.Tensor:
            static_cond = Conditions(static["rows"], static["owner"], static["weights"], cond.identity)
            steps = min(plan.steps, WARMUP_STEPS) if warmup else None
            return guided_loop(backend, static["x"], static_cond, tables, static["cfg"], steps=steps)
        return body

    return backend.graphs.run((*plan_key(plan), cond.identity), inputs, capture_body)


def plan_key(plan: SamplerPlan) -> tuple:
    """What a captured loop depends on besides its input shapes: sampler, steps and the schedule."""
    schedule = hashlib.blake2b(plan.timesteps.numpy().tobytes() + plan.coefs.numpy().tobytes(),
                               digest_size=16).hexdigest()
    return plan.sampler, plan.steps, schedule
