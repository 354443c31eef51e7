"""The paper's training step: latent diffusion UNet + grounding, trained jointly; then calibration.

Per batch (CLIP, CLAP and VAE frozen; their outputs precomputed in a `LatentSet`):

    a  = grounding.attention(E_t, E_v)              (B, 1, P)   E_t: CLAP text_embeds, E_v: CLIP patch tokens
    c  = MLP(a V)                                   (B, cond)   replaced by the null (zeros) with p = 0.1
    z_t = sqrt(acp_t) z_0 + sqrt(1 - acp_t) eps     AudioLDM's schedule (samplers.alphas_cumprod)
    loss = || unet(z_t, t, encoder_hidden_states=None, class_labels=c) - eps ||^2

AdamW, betas (0.95, 0.999), eps 1e-6, weight decay 1e-3 (the paper's). The paper's lr is 1e-4 for
fine-tuning a pretrained AudioLDM; a small UNet trained from scratch for minutes converges far
faster at a few times that (`LdmConfig.lr`), with a short linear warm-up. An EMA of the UNet
and grounding weights is what gets saved (`ema_decay`; 0 disables it).

Two SynthScenes-only additions, both off for the paper's recipe (`train_real`), both needed
because tiny-synth learns from a few thousand scenes in minutes where the paper had VGGSound
and days:
  * `attn_weight`: an auxiliary loss -log(sum_p a_p w_p) on the text attention, w = the
    examples' target-object coverage scaled to a peak of 1 (the masks say where the named
    objects are). It makes the attention object-focused early, so its calibrated spread
    (below) is that of an attention that picks objects out.
  * `mask_prob`: with this probability (and always for "silent" examples, whose target is
    silence and which no caption names) the attention weights are replaced by the rescaled
    mask of the target objects, exactly the test-time substitution of section 3.3, with the
    running attention std as sigma. Training sees the substituted input directly.

Calibration (`calibrate`): sigma = mean over calibration examples of the std over patches of
the trained attention weights; mean = 1/P (any softmax). Stored as objaudio_rt.modelio.model.Calibration.

Multi-GPU / multi-node: run under torchrun; the Denoiser (UNet + grounding) is wrapped in
DistributedDataParallel, each rank draws its own batches (generator seeded by seed + rank), and
rank 0 logs and saves.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn

from objaudio_rt.core.errors import ObjaudioError
from objaudio_rt.core.grounding import GroundingAttention, rescale_patch_weights
from objaudio_rt.modelio.model import Calibration, ObjaudioModel
from objaudio_rt.core.samplers import alphas_cumprod

from .data import KINDS
from .synthscenes import ALL_CLASSES
from .train_components import StageBudget, load_partial, run_loop, save_partial


@dataclass
class LdmConfig:
    lr: float = 1e-4
    warmup_steps: int = 100
    betas: tuple[float, float] = (0.95, 0.999)
    eps: float = 1e-6
    weight_decay: float = 1e-3
    cond_drop: float = 0.1
    ema_decay: float = 0.999
    attn_weight: float = 0.0
    mask_prob: float = 0.0
    grad_clip: float = 1.0
    freeze_unet: bool = False         # train the grounding only (the paper's "frozen diffusion" ablation)
    # share of each batch drawn from each example kind (training.data.KINDS order; a kind absent from
    # the data gives its share to the others); None: uniform over examples
    kind_weights: tuple[float, ...] | None = None
    # > 0: each example's eps MSE weighted by min(1 + 1/SNR(t), cap), divided by that weight's mean over
    # the schedule (the loss keeps its scale). 1 + 1/SNR turns the eps loss into v-prediction's; the
    # high-noise steps, where a sampler decides whether there is a sound at all, weigh more. 0: plain MSE.
    high_noise_cap: float = 0.0
    # > 1: within the "single" kind (its share unchanged), examples of scenes with >= 3 sounding objects
    # are drawn this many times as often as those of two-object scenes (leakage is highest in busy scenes)
    busy_single: float = 1.0
    # > 1: within the "single" kind, the examples naming one of `hard_classes` (training.synthscenes class
    # names) are drawn this many times as often (on top of busy_single): the classes picked least well
    hard_classes: tuple[str, ...] = ()
    hard_weight: float = 1.0
    # > 0: this share of the "mixture" examples conditioned on a mask gets the whole image (every patch) as
    # its mask, so that a whole-scene selection (Whole(): uniform patch weights) is a condition the model has
    # seen, meaning the scene's mixture; without it the whole scene came out near-silent (peak 0.04)
    whole_prob: float = 0.0


def noise_weights(acp: torch.Tensor, cap: float) -> torch.Tensor:
    """(T,) per-timestep loss weights min(1 + 1/SNR, cap) / their mean (LdmConfig.high_noise_cap); ones for cap 0."""
    if cap <= 0:
        return torch.ones_like(acp)
    w = (1.0 + (1.0 - acp) / acp).clamp(max=cap)                   # SNR = acp / (1 - acp)
    return w / w.mean()


@dataclass
class LatentSet:
    """Precomputed inputs of the diffusion stage. E examples, S images."""
    latents: torch.Tensor            # (E, C, h, w) float, already times the VAE scaling factor
    text: torch.Tensor               # (E, Lq) CLAP text_embeds
    tokens: torch.Tensor             # (S, P, L) CLIP patch tokens
    ex_scene: torch.Tensor           # (E,) int64 index into tokens
    cover: torch.Tensor | None = None       # (E, P) target-object patch coverage (SynthScenes)
    mask_only: torch.Tensor | None = None   # (E,) bool: always condition on the mask
    kind: torch.Tensor | None = None        # (E,) int64 example kind (index into training.data.KINDS)
    classes: torch.Tensor | None = None     # (E, C) multi-hot of the targeted classes (SynthCache.target_classes)

    def save(self, path: Path) -> None:
        tensors = {k: v.contiguous() for k, v in self.__dict__.items() if v is not None}
        save_file(tensors, str(path))

    @staticmethod
    def load(path: Path) -> "LatentSet":
        return LatentSet(**load_file(str(path)))

    def to(self, device: torch.device) -> "LatentSet":
        return LatentSet(**{k: (v.to(device) if v is not None else None) for k, v in self.__dict__.items()})


def substitute_masks(a: torch.Tensor, cover: torch.Tensor, use_mask: torch.Tensor, attn_std: float,
                     rescale: str) -> torch.Tensor:
    """The patch weights (B, H, P) that replace the attention `a` (B, H, P): for the examples with
    `use_mask` and a target (cover (B, P) not all zero), the target's coverage rescaled as
    Pipeline.select rescales a mask, on every head; the attention itself for the rest."""
    has = cover.sum(-1) > 0
    safe = torch.where(has[:, None], cover, torch.ones_like(cover))
    masked = rescale_patch_weights(safe, attn_std, rescale)                         # (B, P)
    return torch.where((use_mask & has)[:, None, None], masked[:, None, :], a)


class Denoiser(nn.Module):
    """UNet + grounding: one module, so DDP synchronises both. forward returns the loss terms."""

    def __init__(self, unet: nn.Module, grounding: GroundingAttention, cond_dim: int, acp: torch.Tensor,
                 cfg: LdmConfig):
        super().__init__()
        self.unet, self.grounding, self.cfg = unet, grounding, cfg
        self.register_buffer("acp", acp.float(), persistent=False)                   # (T,)
        self.register_buffer("t_weight", noise_weights(acp.float(), cfg.high_noise_cap), persistent=False)
        self.register_buffer("null", torch.zeros(cond_dim), persistent=False)
        self.register_buffer("attn_std", torch.tensor(1.0 / grounding.cfg.num_patches), persistent=False)

    def forward(self, z0, text, tokens, cover, use_mask, drop, t, noise):
        """z0: (B, C, h, w); text: (B, Lq); tokens: (B, P, L); cover: (B, P) or None;
        use_mask, drop: (B,) bool; t: (B,) int64; noise like z0. Returns (mse, attn_loss, attn_std)."""
        a = self.grounding.attention(text, tokens)                                   # (B, H, P)
        std = a.detach().std(dim=-1, unbiased=False).mean()
        weights = a
        if cover is not None and bool(use_mask.any()):
            weights = substitute_masks(a, cover, use_mask, float(self.attn_std), "moments")
        c = self.grounding.condition_from_weights(weights, tokens)                   # (B, cond)
        c = torch.where(drop[:, None], self.null.expand_as(c), c)
        acp = self.acp[t].view(-1, 1, 1, 1)
        zt = acp.sqrt() * z0 + (1 - acp).sqrt() * noise
        pred = self.unet(zt, t, encoder_hidden_states=None, class_labels=c).sample
        mse = ((pred - noise).pow(2).mean(dim=(1, 2, 3)) * self.t_weight[t]).mean()
        attn_loss = mse.new_zeros(())
        if cover is not None and self.cfg.attn_weight > 0:
            peak = cover.amax(-1, keepdim=True)
            text_rows = (~use_mask) & (peak[:, 0] > 0)
            if bool(text_rows.any()):
                w = cover / peak.clamp_min(1e-6)
                mass = (a * w[:, None, :]).sum(-1).clamp_min(1e-6)                   # (B, H)
                attn_loss = -(mass.log().mean(-1) * text_rows).sum() / text_rows.sum()
        return mse, attn_loss, std


def _ema_update(ema: nn.Module, live: nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), live.parameters()):
            e.lerp_(p.detach(), 1 - decay)


def train_ldm(model: ObjaudioModel, data: LatentSet, budget: StageBudget, cfg: LdmConfig, log_path: Path,
              device: torch.device, seed: int, resume: Path | None = None, save_every_s: float = 120.0) -> dict:
    """Trains model.unet and model.grounding in place (the EMA weights end up in the model).

    `resume`: a partial-state file written every `save_every_s` seconds (and read back on start),
    so an interrupted stage continues from its last save.
    """
    rank = dist.get_rank() if dist.is_initialized() else 0
    acp = torch.from_numpy(alphas_cumprod(model.config.schedule))
    den = Denoiser(model.unet, model.grounding, model.config.unet.cond_dim, acp, cfg).to(device).train()
    den.unet.requires_grad_(not cfg.freeze_unet)
    ema = copy.deepcopy(den).eval().requires_grad_(False) if cfg.ema_decay > 0 else None
    opt = torch.optim.AdamW([p for p in den.parameters() if p.requires_grad], lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                            weight_decay=cfg.weight_decay)
    start_step = 0
    if resume is not None and resume.is_file():
        start_step = load_partial(resume, den, ema, opt)
    wrapped = nn.parallel.DistributedDataParallel(den) if dist.is_initialized() else den
    data = data.to(device)
    gen = torch.Generator(device="cpu").manual_seed(seed + 1000 * rank + start_step)
    n_ex, n_t = data.latents.shape[0], acp.numel()
    last_save = [time.time()]
    draw = example_weights(data, cfg.kind_weights, cfg.busy_single, cfg.hard_classes, cfg.hard_weight)                                 # (E,) or None

    def step(i):
        i += start_step
        for group in opt.param_groups:
            group["lr"] = cfg.lr * min(1.0, (i + 1) / max(1, cfg.warmup_steps))
        b = budget.batch_size
        idx = (torch.randint(n_ex, (b,), generator=gen) if draw is None
               else torch.multinomial(draw, b, replacement=True, generator=gen))
        use_mask = torch.rand(b, generator=gen) < cfg.mask_prob
        if data.mask_only is not None:
            use_mask |= data.mask_only[idx].cpu()
        drop = torch.rand(b, generator=gen) < cfg.cond_drop
        t = torch.randint(n_t, (b,), generator=gen)
        noise = torch.randn(data.latents[idx].shape, generator=gen)
        dev = lambda x: x.to(device)
        cover = data.cover[dev(idx)] if data.cover is not None else None
        if cover is not None and cfg.whole_prob > 0 and data.kind is not None:
            whole = use_mask & (data.kind[dev(idx)].cpu() == KINDS.index("mixture")) & (
                torch.rand(b, generator=gen) < cfg.whole_prob)
            cover = torch.where(dev(whole)[:, None], torch.ones_like(cover), cover)    # the attention loss skips them
        mse, attn_loss, std = wrapped(data.latents[dev(idx)], data.text[dev(idx)],
                                      data.tokens[data.ex_scene[dev(idx)]], cover,
                                      dev(use_mask), dev(drop), dev(t), dev(noise))
        loss = mse + cfg.attn_weight * attn_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(den.parameters(), cfg.grad_clip)
        opt.step()
        den.attn_std.lerp_(std.detach(), 0.05)
        if ema is not None:
            _ema_update(ema, den, min(cfg.ema_decay, (1 + i) / (10 + i)))
            ema.attn_std.copy_(den.attn_std)
        if rank == 0 and resume is not None and time.time() - last_save[0] > save_every_s:
            save_partial(resume, den, ema, opt, i + 1)
            last_save[0] = time.time()
        return {"loss": loss.item(), "mse": mse.item(), "attn": attn_loss.item(), "attn_std": std.item()}

    metrics = run_loop("ldm", budget, step, log_path if rank == 0 else None, ["loss", "mse", "attn", "attn_std"],
                       sync=_all_ranks_agree if dist.is_initialized() else None, first_step=start_step)
    final = ema if ema is not None else den
    model.unet.load_state_dict(final.unet.state_dict())
    model.grounding.load_state_dict(final.grounding.state_dict())
    model.unet.eval()
    model.grounding.eval()
    return {**metrics, "steps_total": start_step + metrics["steps"]}


def example_weights(data: LatentSet, kind_weights: tuple[float, ...] | None, busy_single: float = 1.0,
                    hard_classes: tuple[str, ...] = (), hard_weight: float = 1.0) -> torch.Tensor | None:
    """Per-example sampling weights (E,) giving each kind its share of a batch; None: uniform.

    Inside the "single" kind (its share unchanged), the examples of scenes with >= 3 sounding objects
    (scenes with >= 3 single examples) weigh `busy_single` times the others, and those naming one of
    `hard_classes` `hard_weight` times (both: the product). LdmConfig documents them."""
    if kind_weights is None:
        return None
    if data.kind is None:
        raise ObjaudioError("kind_weights needs the example kinds in the latent set: delete "
                            "cache/latents.safetensors so that it is rebuilt")
    for name, factor in (("busy_single", busy_single), ("hard_weight", hard_weight)):
        if not (math.isfinite(factor) and factor > 0):
            raise ObjaudioError(f"{name} must be > 0, got {factor}")
    shares = torch.tensor(kind_weights, dtype=torch.float64)
    kinds = data.kind.cpu()
    if bool((kinds < 0).any()) or int(kinds.max()) >= shares.numel() or bool((shares < 0).any()):
        raise ObjaudioError(f"kind_weights {kind_weights} must be >= 0 with one share per example kind "
                            f"(kinds 0..{int(kinds.max())} present)")
    within = torch.ones(kinds.numel(), dtype=torch.float64)                  # relative weight inside a kind
    single = kinds == KINDS.index("single")
    if busy_single != 1.0 and bool(single.any()):
        scene = data.ex_scene.cpu()
        singles_per_scene = torch.bincount(scene[single], minlength=int(scene.max()) + 1)
        within[single & (singles_per_scene[scene] >= 3)] = busy_single
    if hard_classes and hard_weight != 1.0:
        unknown = sorted(set(hard_classes) - set(ALL_CLASSES))
        if unknown:
            raise ObjaudioError(f"hard_classes {unknown} are not SynthScenes classes: use some of {', '.join(ALL_CLASSES)}")
        if data.classes is None:
            raise ObjaudioError("hard_classes needs the examples' classes (LatentSet.classes, from "
                                "SynthCache.target_classes)")
        hard = data.classes.cpu()[:, [ALL_CLASSES.index(c) for c in hard_classes]].amax(dim=1) > 0
        within[single & hard] *= hard_weight
    totals = torch.zeros(shares.numel(), dtype=torch.float64).index_add_(0, kinds, within)
    per_example = torch.where(totals > 0, shares / totals.clamp_min(1e-12), torch.zeros_like(shares))[kinds] * within
    if float(per_example.sum()) <= 0:
        raise ObjaudioError(f"kind_weights {kind_weights} give every example kind present a share of 0")
    return (per_example / per_example.sum()).float()


def _all_ranks_agree(stop: bool) -> bool:
    """Stop when any rank's budget is spent, so that all ranks run the same number of steps."""
    flag = torch.tensor([float(stop)])
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


@torch.no_grad()
def calibrate(model: ObjaudioModel, data: LatentSet, device: torch.device, num: int = 1024,
              rows: torch.Tensor | None = None) -> Calibration:
    """Mean and std over patches of the trained attention on `num` examples (or the given rows)."""
    ground = model.grounding.to(device).eval()
    rows = rows if rows is not None else torch.arange(min(num, data.text.shape[0]))
    stds = []
    for chunk in rows.split(256):
        a = ground.attention(data.text[chunk].to(device), data.tokens[data.ex_scene[chunk]].to(device))
        stds.append(a.flatten(0, 1).std(dim=-1, unbiased=False))                    # (B*H,)
    std = torch.cat(stds)
    p = model.config.image.num_patches
    return Calibration(attn_mean=1.0 / p, attn_std=float(std.mean()), num_samples=int(std.numel()))

