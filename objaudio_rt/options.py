"""The names a user picks from, defined once, and the run options of one generation.

Plain Python (the CLI imports this before torch):

    SAMPLERS     samplers.SamplerPlan.build
    UNION_MODES  how Pipeline.generate_many generates a union `A | B`
    BACKENDS     backends.make_backend
    DTYPE_NAMES  the precisions a backend option may name (backends.base.DTYPES maps them to torch)
    RunOptions   steps, sampler, cfg, seed, duration, union, with the model's defaults resolved
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import check

if TYPE_CHECKING:
    from .config import ModelConfig

SAMPLERS = ("ddim", "dpmpp")
UNION_MODES = ("compose", "mask")
BACKENDS = ("eager", "fast", "onnxruntime", "tensorrt")
DTYPE_NAMES = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class RunOptions:
    """How one generation runs. None means the model's default: `resolve` fills those in from the
    model's configuration and checks every value; it is the one place the defaults are read (by
    Pipeline.generate_many, training.evaluate and training.ablate)."""
    steps: int | None = None
    sampler: str | None = None
    cfg: float | None = None              # classifier-free guidance scale
    seed: int = 0
    duration: float | None = None         # seconds
    union: str | None = None              # one of UNION_MODES

    def resolve(self, config: ModelConfig, union: str = UNION_MODES[0]) -> RunOptions:
        """Every field filled (`union`: the caller's default mode) and checked."""
        run = RunOptions(
            steps=config.default_steps if self.steps is None else self.steps,
            sampler=self.sampler or config.default_sampler,
            cfg=config.default_cfg if self.cfg is None else float(self.cfg),
            seed=self.seed,
            duration=config.clip_seconds if self.duration is None else float(self.duration),
            union=self.union or union)
        check(isinstance(run.steps, int) and run.steps > 0, f"steps must be a positive integer, got {run.steps!r}")
        check(run.sampler in SAMPLERS, f"unknown sampler {run.sampler!r}: use one of {', '.join(SAMPLERS)}")
        check(math.isfinite(run.cfg) and run.cfg >= 1.0,
              f"cfg (guidance scale) must be a finite number >= 1, got {run.cfg!r}")
        check(isinstance(run.seed, int) and run.seed >= 0, f"seed must be a non-negative integer, got {run.seed!r}")
        check(math.isfinite(run.duration) and 0 < run.duration <= config.max_seconds,
              f"duration must be in (0, {config.max_seconds:g}] seconds for this model, got {run.duration}")
        check(run.union in UNION_MODES, f"unknown union mode {run.union!r}: use one of {', '.join(UNION_MODES)}")
        return run
