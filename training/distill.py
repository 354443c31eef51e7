"""Guidance distillation (Meng et al., CVPR 2023, "On Distillation of Guided Diffusion Models", stage one):
a student UNet that takes the guidance scale w as an input and predicts its teacher's guided eps in
one row per step instead of two (issue 20, item 3).

    python -m training.distill --teacher CKPT --out DIR [--budget-minutes M] [--scenes 2000]
        [--batch-size 16] [--lr 5e-5] [--cfg-range 1:8] [--sampler dpmpp --steps 4] [--teacher-dtype bf16]
        [--threads N] [--seed S]
    python -m training.distill --teacher CKPT --out DIR --snapshot SNAP     # a checkpoint of the run so far

Per training step, on the SynthScenes examples cached in DIR/cache (built on the first run, as
training.train builds them, with the targeted recipe's "pair" examples):

    c        the teacher's grounding condition of the example: its text attention, or its target mask
             pooled and rescaled exactly as at test time (Pipeline.select) with p = `mask_prob` and always
             for silent distractors; the null condition with p = `cond_drop`
    z_t      the example's latent noised to t: uniform over the schedule for half the batch, one of the
             timesteps the student is made for (`--sampler`, `--steps`) for the other half
    w        uniform in [cfg_min, cfg_max] for half the batch, the teacher's default scale for the rest
    target   eps_u + w (eps_c - eps_u), the frozen teacher's two rows
    loss     || student(z_t, t, c + g(w)) - target ||^2

Step distillation (`--substeps K`, issue 20 item 4; one round of progressive distillation, Salimans &
Ho 2022, from the guided teacher): the student is made for a first-order plan of `--steps S` (every
step a DDIM-form row x' = cx x + ce eps: DDIM at any S, or DPM-Solver++ at S <= 2, whose first and final
steps are first order), and each of its S steps is trained to land where K guided DDIM steps of the
teacher land over the same interval:

    i        one of the S steps, uniformly; z_t the example's latent noised to that step's timestep
    y        the teacher's K guided DDIM substeps (two rows each) from z_t to the next step's level
    target   eps* with cx z_t + ce eps* = y, (cx, ce) the student's DDIM row: one step, the same place
    loss     weighted by min(max(1, 1/SNR(t)), 20) (progressive distillation's truncated SNR weighting
             in eps terms, capped), divided by its mean over the S steps

Which plan matters at two steps. DDIM's leading spacing (AudioLDM's scheduler) puts them at t = 501 and 1,
so the first step sees pure noise labelled t = 501, a level it was never trained at; a 2-step DDIM
student stalled at object accuracy 0.41-0.43 on set C (training/README.md). DPM-Solver++ at 2 steps runs
DDIM's rows on linspace spacing, t = 999 and 500, landing on x0 (`--sampler dpmpp --steps 2`).

`--student-from` starts it from a guidance-distilled checkpoint (stage one) instead of the teacher.

`--teacher-dtype bf16` runs the frozen teacher's rows under bfloat16 autocast (targets only; the student
trains in fp32). Step distillation spends nearly all its time there (K substeps of two rows per example):
on this project's 2-core CPU with native bf16 a teacher call of 32 rows takes 458 ms instead of 800 ms, and
a row differs from fp32 by 0.5 % (relative L2), where the student misses its target by 3-7 % (the
square root of the logged loss: 0.001-0.005 against eps of unit variance).

The student is the teacher's UNet plus `guidance.GuidanceEmbedding` g, whose last layer starts at
zero: at step 0 it is the teacher's conditional prediction. Grounding, encoders, VAE and vocoder are
the teacher's, unchanged (a selection's condition is the same for both). An EMA of the student is
what is saved. The run saves its state every 2 minutes and a rerun of the same command continues from
it (the budget counts anew per invocation). The result, DIR/model, is a complete checkpoint whose
config has `distilled` set (config.DistilledConfig) and whose defaults are the sampler and steps it
was made for: the runtime then runs it one row per step (denoise.guided_loop).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from objaudio_rt.core.config import DistilledConfig
from objaudio_rt.core.errors import ObjaudioError, check, command
from objaudio_rt.core.guidance import GuidanceEmbedding
from objaudio_rt.core.options import SAMPLERS
from objaudio_rt.core.samplers import SamplerPlan, alphas_cumprod
from objaudio_rt.core.threads import check_threads, use_threads
from objaudio_rt.modelio.artifacts import model_fingerprint
from objaudio_rt.modelio.checkpoint import load_checkpoint, save_checkpoint
from objaudio_rt.modelio.model import Calibration, ObjaudioModel

from .data import SynthCache, SynthCacheConfig, build_synth_cache
from .train_components import StageBudget, load_partial, run_loop, save_partial
from .train_ldm import LatentSet, example_weights, substitute_masks


@dataclass(frozen=True)
class DistillConfig:
    lr: float = 3e-5                       # the UNet's: its start is within a few % of the target already
    embedding_lr_scale: float = 30.0       # the guidance embedding's rate, times lr (new, and starts at zero)
    warmup_steps: int = 50
    cfg_min: float = 1.0
    cfg_max: float = 8.0
    mask_prob: float = 0.6                 # the selection kinds the runtime conditions on: mostly masks
    cond_drop: float = 0.1
    kind_weights: tuple[float, ...] = (0.2, 0.35, 0.25, 0.2)   # KINDS: mixture, single, silent, pair
    focus: float = 0.5                     # share of the batch at the made-for sampler's timesteps
    default_share: float = 0.5             # share of the batch at the teacher's default scale
    ema_decay: float = 0.999
    betas: tuple[float, float] = (0.95, 0.999)
    weight_decay: float = 1e-3
    grad_clip: float = 1.0
    substeps: int = 0                      # > 0: step distillation, the teacher's substeps per student step
    snr_weight_cap: float = 20.0           # step distillation's loss weight cap (module docstring)
    teacher_dtype: str = "fp32"            # "bf16": the teacher's rows under autocast (module docstring)


class Student(nn.Module):
    """The student's trained parts: the UNet and the guidance embedding (one module: one state dict)."""

    def __init__(self, unet: nn.Module, embedding: GuidanceEmbedding):
        super().__init__()
        self.unet, self.embedding = unet, embedding

    def forward(self, zt: torch.Tensor, t: torch.Tensor, c: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.unet(zt, t, encoder_hidden_states=None, class_labels=c + self.embedding(w)).sample


def selection_conditions(model: ObjaudioModel, attn_std: float, data: LatentSet, idx: torch.Tensor,
                         use_mask: torch.Tensor) -> torch.Tensor:
    """(B, cond_dim) grounding conditions of examples `idx`: the text attention, or (use_mask, and the
    example has a target) its target coverage rescaled as Pipeline.select rescales a mask."""
    g = model.grounding
    tokens = data.tokens[data.ex_scene[idx]]
    a = g.attention(data.text[idx], tokens)                                            # (B, H, P)
    weights = substitute_masks(a, data.cover[idx], use_mask, attn_std, model.config.grounding.mask_rescale)
    return g.condition_from_weights(weights, tokens)


def teacher_rows(teacher: ObjaudioModel, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor,
                 null: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's (eps_u, eps_c), each (B, ...) float32, at timesteps t (B,): one call of 2B rows (under
    whatever autocast the caller set: `teacher_precision`)."""
    return teacher.unet(torch.cat([x, x]), torch.cat([t, t]), encoder_hidden_states=None,
                        class_labels=torch.cat([null.expand_as(c), c])).sample.float().chunk(2)


TEACHER_DTYPES = ("fp32", "bf16")


def teacher_precision(dtype: str, device: torch.device | str = "cpu"):
    """The context the teacher's rows run in: nothing for fp32, bfloat16 autocast for bf16."""
    check(dtype in TEACHER_DTYPES, f"teacher dtype must be one of {', '.join(TEACHER_DTYPES)}, got {dtype!r}")
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def guided_eps(teacher: ObjaudioModel, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor, w: torch.Tensor,
               null: torch.Tensor) -> torch.Tensor:
    """The teacher's classifier-free guided eps (B, ...) at timesteps t (B,) and scales w (B,): two rows each."""
    eps_u, eps_c = teacher_rows(teacher, x, t, c, null)
    return eps_u + w.view(-1, 1, 1, 1) * (eps_c - eps_u)


def jump_targets(teacher: ObjaudioModel, null: torch.Tensor, acp: torch.Tensor, plan: SamplerPlan, k: torch.Tensor,
                 x: torch.Tensor, c: torch.Tensor, w: torch.Tensor, substeps: int,
                 first: torch.Tensor | None = None) -> torch.Tensor:
    """eps* (B, ...): the eps whose DDIM step k of `plan` (row cx, ce) takes x where `substeps` guided DDIM
    steps of the teacher take it, from step k's timestep down to the next step's level (the plan's alpha
    after its last step: cx^2 times the last timestep's). Rows of one step run together. `first`: the
    teacher's guided eps at x and step k's timestep, when the caller has it (the first substep's)."""
    rows = plan.coef_rows
    out = torch.empty_like(x)
    for step in torch.unique(k).tolist():
        sel = torch.nonzero(k == step).flatten()
        cx, ce = rows[step][0], rows[step][1]
        t0 = int(plan.timesteps[step])
        a_end = min(1.0, cx * cx * float(acp[t0]))     # DDIM: cx = sqrt(a_next / a); 1 (x0) rounds above it
        t_end = int(plan.timesteps[step + 1]) if step + 1 < plan.steps else 0
        ts = [round(t0 + (t_end - t0) * j / substeps) for j in range(substeps)]       # t0 first, t_end not
        levels = [float(acp[t]) for t in ts] + [a_end]
        y = x[sel]
        for j, tj in enumerate(ts):
            eps = first[sel] if j == 0 and first is not None else \
                guided_eps(teacher, y, torch.full((len(sel),), tj, dtype=torch.long), c[sel], w[sel], null)
            a, an = levels[j], levels[j + 1]
            x0 = (y - (1 - a) ** 0.5 * eps) / a ** 0.5
            y = an ** 0.5 * x0 + (1 - an) ** 0.5 * eps
        out[sel] = (y - cx * x[sel]) / ce
    return out


def step_weights(acp: torch.Tensor, plan: SamplerPlan, cap: float) -> torch.Tensor:
    """(S,) loss weights of the plan's steps: min(max(1, 1/SNR(t)), cap), divided by their mean."""
    a = acp[plan.timesteps.long()]
    w = ((1 - a) / a).clamp(min=1.0, max=cap)
    return w / w.mean()


def distill(teacher: ObjaudioModel, calibration: Calibration, data: LatentSet, cfg: DistillConfig,
            budget: StageBudget, made_for: SamplerPlan, log_path: Path, state_path: Path, seed: int,
            save_every_s: float = 120.0, init: Student | None = None) -> tuple[Student, dict]:
    """Trains a student from `teacher` (left unchanged), or from `init` (a stage-one student), for `budget`;
    returns the EMA student and metrics."""
    teacher.eval().requires_grad_(False)
    d = teacher.config.unet.cond_dim
    live = copy.deepcopy(init) if init is not None else Student(copy.deepcopy(teacher.unet), GuidanceEmbedding(d))
    live = live.train().requires_grad_(True)                     # the copy of a frozen network is frozen too
    ema = copy.deepcopy(live).eval().requires_grad_(False)
    opt = torch.optim.AdamW([{"params": live.unet.parameters(), "scale": 1.0},
                             {"params": live.embedding.parameters(), "scale": cfg.embedding_lr_scale}],
                            lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    start = load_partial(state_path, live, ema, opt) if state_path.is_file() else 0
    acp = torch.from_numpy(alphas_cumprod(teacher.config.schedule)).float()
    focus_t = made_for.timesteps.long()
    k_weight = step_weights(acp, made_for, cfg.snr_weight_cap)
    draw = example_weights(data, cfg.kind_weights)
    gen = torch.Generator().manual_seed(seed + start)
    null = teacher.null_condition
    default_w = float(teacher.config.default_cfg)
    last_save = [time.time()]

    def step(i):
        i += start
        for group in opt.param_groups:
            group["lr"] = cfg.lr * group["scale"] * min(1.0, (i + 1) / max(1, cfg.warmup_steps))
        b = budget.batch_size
        idx = torch.multinomial(draw, b, replacement=True, generator=gen) if draw is not None else \
            torch.randint(data.latents.shape[0], (b,), generator=gen)
        use_mask = torch.rand(b, generator=gen) < cfg.mask_prob
        if data.mask_only is not None:
            use_mask |= data.mask_only[idx]
        drop = torch.rand(b, generator=gen) < cfg.cond_drop
        k = torch.randint(focus_t.numel(), (b,), generator=gen)                     # a step of the plan
        t = torch.randint(acp.numel(), (b,), generator=gen)
        at_focus = torch.rand(b, generator=gen) < (1.0 if cfg.substeps else cfg.focus)
        t = torch.where(at_focus, focus_t[k], t)
        w = cfg.cfg_min + (cfg.cfg_max - cfg.cfg_min) * torch.rand(b, generator=gen)
        w = torch.where(torch.rand(b, generator=gen) < cfg.default_share, torch.full_like(w, default_w), w)
        noise = torch.randn(data.latents[idx].shape, generator=gen)
        a = acp[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * data.latents[idx] + (1 - a).sqrt() * noise
        with torch.no_grad():
            c = selection_conditions(teacher, calibration.attn_std, data, idx, use_mask)
            c = torch.where(drop[:, None], null.expand_as(c), c)
            with teacher_precision(cfg.teacher_dtype, zt.device):
                eps_u, eps_c = teacher_rows(teacher, zt, t, c, null)
                target = eps_u + w.view(-1, 1, 1, 1) * (eps_c - eps_u)
                weight = torch.ones(b)
                if cfg.substeps:                               # the guided eps at t is the jump's first substep
                    target = jump_targets(teacher, null, acp, made_for, k, zt, c, w, cfg.substeps, first=target)
                    weight = k_weight[k]
        pred = live(zt, t, c, w)
        loss = ((pred - target).pow(2).mean(dim=(1, 2, 3)) * weight).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(live.parameters(), cfg.grad_clip)
        opt.step()
        with torch.no_grad():
            decay = min(cfg.ema_decay, (1 + i) / (10 + i))
            for e, p in zip(ema.parameters(), live.parameters()):
                e.lerp_(p, 1 - decay)
            start_err = ((eps_c - target).pow(2).mean(dim=(1, 2, 3)) * weight).mean()   # the conditional row alone
        if time.time() - last_save[0] > save_every_s:
            save_partial(state_path, live, ema, opt, i + 1)
            last_save[0] = time.time()
        return {"loss": loss.item(), "cond_only": start_err.item()}

    metrics = run_loop("distill", budget, step, log_path, ["loss", "cond_only"], first_step=start)
    save_partial(state_path, live, ema, opt, start + metrics["steps"])
    return ema, {**metrics, "steps_total": start + metrics["steps"]}


def student_checkpoint(teacher: ObjaudioModel, calibration: Calibration, student: Student, cfg: DistillConfig,
                       made_for: SamplerPlan, folder: Path) -> Path:
    """A complete checkpoint: the teacher's networks (and silence gate, which reads the same conditions)
    with the student's UNet and guidance embedding, config.distilled set and the defaults the student
    was made for."""
    config = replace(teacher.config, default_steps=made_for.steps, default_sampler=made_for.sampler,
                     distilled=DistilledConfig(cfg_min=cfg.cfg_min, cfg_max=cfg.cfg_max,
                                               teacher=model_fingerprint(teacher)))
    model = ObjaudioModel(config, unet=student.unet, vae=teacher.vae, vocoder=teacher.vocoder,   # the teacher's
                          image_encoder=teacher.image_encoder, text_encoder=teacher.text_encoder,   # networks, shared,
                          grounding=teacher.grounding)                                              # not changed
    model.guidance_embedding = student.embedding
    model.silence_gate = teacher.silence_gate
    return save_checkpoint(model, calibration, folder, force=True)


def prepare_latents(out: Path, teacher: ObjaudioModel, scenes: int, workers: int) -> LatentSet:
    """training.train's SynthScenes cache (with pair examples) and the teacher's latent set, made once in out/cache."""
    from .train import build_latent_set

    cache_dir = out / "cache"
    if not (cache_dir / "synth.json").is_file():
        cfg = teacher.config
        build_synth_cache(SynthCacheConfig(scenes=scenes, seed_start=0, seconds=cfg.clip_seconds,
                                           patch_image_size=cfg.image.image_size, patch_size=cfg.image.patch_size,
                                           workers=workers, pairs=True), cache_dir)
    path = cache_dir / "latents.safetensors"
    if path.is_file():
        return LatentSet.load(path)
    data = build_latent_set(teacher, SynthCache(cache_dir), torch.device("cpu"))
    data.save(path)
    return data


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.distill", description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", required=True, type=Path, help="the checkpoint to distil (e.g. the embedded model)")
    p.add_argument("--out", required=True, type=Path, help="run folder: cache, state, logs and model/")
    p.add_argument("--budget-minutes", type=float, default=30.0, help="training minutes of this invocation")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke tests)")
    p.add_argument("--scenes", type=int, default=2000, help="SynthScenes training scenes (first run only)")
    p.add_argument("--workers", type=int, default=1, help="processes generating scenes")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--ema-decay", type=float, default=DistillConfig.ema_decay,
                   help="decay of the saved EMA of the student (its average spans about 1/(1-decay) steps: a run of a "
                        "few thousand steps that still moves wants 0.995 or so)")
    p.add_argument("--lr", type=float, default=DistillConfig.lr,
                   help="the UNet's learning rate (the guidance embedding's is 30x)")
    p.add_argument("--cfg-range", default=f"{DistillConfig.cfg_min:g}:{DistillConfig.cfg_max:g}",
                   help="guidance scales the student learns, MIN:MAX")
    p.add_argument("--sampler", default="dpmpp", choices=SAMPLERS, help="the sampler the student is made for")
    p.add_argument("--steps", type=int, default=4, help="the steps the student is made for (its default)")
    p.add_argument("--substeps", type=int, default=0,
                   help="step distillation: each of the student's --steps steps (a first-order plan: DDIM, or "
                        "dpmpp at 2 steps) learns where this many guided teacher DDIM steps land; 0: guidance "
                        "distillation")
    p.add_argument("--teacher-dtype", default="fp32", choices=TEACHER_DTYPES,
                   help="bf16: the frozen teacher's rows (the targets) under bfloat16 autocast, about 1.7x faster on "
                        "a CPU with native bf16; the student still trains in fp32")
    p.add_argument("--student-from", type=Path, default=None,
                   help="start the student from this guidance-distilled checkpoint of --teacher (stage one)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: up to 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--snapshot", type=Path, default=None,
                   help="write a checkpoint of the run's saved state to this folder and stop (no training)")
    return p.parse_args(argv)


def parse_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(":"))
    except ValueError:
        raise ObjaudioError(f"--cfg-range must be MIN:MAX (e.g. 1:8), got {text!r}") from None
    check(1.0 <= lo <= hi, f"--cfg-range needs 1 <= MIN <= MAX, got {text!r}")
    return lo, hi


@command("python -m training.distill")
def main(argv=None) -> int:
    args = parse_args(argv)
    use_threads(check_threads(args.threads) if args.threads is not None else None)
    lo, hi = parse_range(args.cfg_range)
    cfg = DistillConfig(lr=args.lr, cfg_min=lo, cfg_max=hi, substeps=args.substeps, teacher_dtype=args.teacher_dtype,
                        ema_decay=args.ema_decay)
    check(args.batch_size >= 1, f"--batch-size must be >= 1, got {args.batch_size}")
    check(0.0 <= args.ema_decay < 1.0, f"--ema-decay must be in [0, 1), got {args.ema_decay}")
    check(args.substeps >= 0, f"--substeps must be >= 0, got {args.substeps}")
    teacher, calibration = load_checkpoint(args.teacher)
    check(teacher.config.distilled is None, f"{args.teacher} is already guidance-distilled: give its teacher")
    check(lo <= teacher.config.default_cfg <= hi, f"--cfg-range {args.cfg_range} must hold the teacher's default "
                                                  f"cfg {teacher.config.default_cfg:g}")
    made_for = SamplerPlan.build(args.sampler, args.steps, teacher.config.schedule)
    check(args.substeps == 0 or not any(made_for.history_reads),
          f"--substeps distils first-order steps (one DDIM-form row each), and {args.sampler} at {args.steps} steps "
          "has higher-order ones: use --sampler ddim, or --sampler dpmpp --steps 2 (t = 999 and 500)")
    init = None
    if args.student_from is not None:
        first, _ = load_checkpoint(args.student_from)
        d = first.config.distilled
        check(d is not None, f"--student-from {args.student_from} is not guidance-distilled: give a stage-one student")
        check(d.teacher == model_fingerprint(teacher), f"--student-from {args.student_from} was distilled from "
                                                       f"another teacher than {args.teacher}")
        init = Student(first.unet, first.guidance_embedding)
    args.out.mkdir(parents=True, exist_ok=True)
    state_path = args.out / "distill.state.safetensors"
    if args.snapshot is not None:
        check(state_path.is_file(), f"{args.out} has no saved state yet: train first (without --snapshot)")
        student = copy.deepcopy(init) if init is not None else \
            Student(copy.deepcopy(teacher.unet), GuidanceEmbedding(teacher.config.unet.cond_dim))
        step = load_partial(state_path, copy.deepcopy(student), student)
        folder = student_checkpoint(teacher, calibration, student, cfg, made_for, args.snapshot)
        print(f"[distill] snapshot of step {step} written to {folder}", file=sys.stderr)
        return 0
    t0 = time.time()
    data = prepare_latents(args.out, teacher, args.scenes, args.workers)
    check(data.cover is not None and data.kind is not None,
          f"{args.out / 'cache'} lacks masks or example kinds: delete that folder and run again")
    print(f"[distill] {data.latents.shape[0]} examples ready in {time.time() - t0:.0f} s; "
          f"{args.budget_minutes:g} min of training", file=sys.stderr)
    (args.out / "logs").mkdir(exist_ok=True)
    budget = StageBudget(seconds=args.budget_minutes * 60, max_steps=args.max_steps, batch_size=args.batch_size,
                         lr=cfg.lr)
    student, metrics = distill(teacher, calibration, data, cfg, budget, made_for, args.out / "logs" / "distill.csv",
                               state_path, args.seed, init=init)
    folder = student_checkpoint(teacher, calibration, student, cfg, made_for, args.out / "model")
    record = {"teacher": str(args.teacher), "metrics": metrics, "batch_size": args.batch_size,
              "student_from": str(args.student_from) if args.student_from else None,
              "threads": torch.get_num_threads(), "made_for": {"sampler": args.sampler, "steps": args.steps},
              "config": {k: v for k, v in cfg.__dict__.items()}, "wall_seconds": round(time.time() - t0, 1)}
    with open(args.out / "logs" / "runs.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"[distill] {metrics}; checkpoint written to {folder}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
