"""The names a user picks from, defined once, and the run options of one generation.

Plain Python (the CLI imports this before torch):

    SAMPLERS     samplers.SamplerPlan.build
    UNION_MODES  how Pipeline.generate_many generates a union `A | B`
    BACKENDS     backends.make_backend (BACKEND_CHOICES adds "auto": backends.resolve_backend)
    DTYPE_NAMES  the precisions a backend option may name (backends.base.DTYPES maps them to torch)
    WAV_FORMATS  the sample formats of a written WAV (audio.wav_bytes)
    SAM_TYPES    the Segment Anything model types (sam.load_sam)
    MAX_TEXT     the longest text selection (selection.Text), for the CLI, Python and the service alike
    MIN_SAMPLE_RATE, MAX_SAMPLE_RATE  what a written WAV may be resampled to (audio.resample)
    MAX_SECONDS  the longest generation (a clip past the model's max_seconds, or a loop: longform.py)
    GUIDANCE     how the conditional and unconditional predictions combine (guidance.py)
    RunOptions   steps, sampler, cfg, seed, duration, union, loop, guidance, silence_gate, with the model's
                 defaults resolved
    add_path_flags  --full / --fewstep: which of a checkpoint's paths (config.ModelSource), for every command
    parse_backend_option  a KEY=VALUE backend option given on a command line (backends.make_backend checks it)
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import check

if TYPE_CHECKING:
    from .config import ModelConfig

SAMPLERS = ("ddim", "dpmpp", "dpmpp3m", "unipc")   # samplers.py: DDIM, DPM-Solver++ 2M and 3M, UniPC
# How a union `A | B` is generated, the first the default (Pipeline.generate_many): "mix": each part generated
# alone (one batch) and the waveforms summed; "compose": one pass, each part's guidance direction averaged;
# "mask": the paper's union mask (one condition). "mix" is the default since both of a union's objects are
# heard in 0.80-0.91 of unseen unions against 0.48-0.57 composed (training/README.md, issue 23)
UNION_MODES = ("mix", "compose", "mask")
# "cfg": classifier-free guidance (the paper's); "apg": adaptive projected guidance (guidance.APG, eta 0),
# measured against cfg on paired unseen selections (training/README.md)
GUIDANCE = ("cfg", "apg")
BACKENDS = ("eager", "fast", "onnxruntime", "tensorrt")
GRAPH_BACKENDS = ("onnxruntime", "tensorrt")   # run exported graphs: no PyTorch network is built (model.GraphModel)
BACKEND_CHOICES = ("auto", *BACKENDS)          # "auto": backends.resolve_backend picks one ready here
DTYPE_NAMES = ("fp32", "fp16", "bf16")
WAV_FORMATS = ("float", "pcm16")
SAM_TYPES = ("vit_b", "vit_l", "vit_h")


def parse_backend_option(text: str) -> tuple[str, object]:
    """A --backend-option KEY=VALUE: "true"/"false" as booleans, integers as int, anything else as given."""
    key, sep, value = text.partition("=")
    check(sep == "=" and key.strip() and value.strip(), f"--backend-option {text!r}: give KEY=VALUE, e.g. "
                                                        "vae_dtype=bf16")
    value = value.strip()
    lowered = value.lower()
    if lowered in ("true", "false"):
        return key.strip(), lowered == "true"
    return key.strip(), int(value) if value.lstrip("-").isdigit() else value


def add_path_flags(parser, what: str = "run") -> None:
    """--full / --fewstep (into `args.path`, None when neither): which of a checkpoint's paths, where it
    carries a few-step one (config.ModelSource.parse's `path`). `what`: the command's verb for the help."""
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--full", dest="path", action="store_const", const="full", default=None,
                   help=f"a checkpoint that carries a few-step path (fewstep/): {what} its own networks instead "
                        "(the 20-step two-row path)")
    g.add_argument("--fewstep", dest="path", action="store_const", const="fewstep",
                   help=f"{what} the checkpoint's carried few-step path (guidance-distilled, one UNet row a step; "
                        "its default where its record says the bar held)")
# Guidance scales in use are 1-10 (AudioLDM 2, tiny-synth 4). The guided update grows with cfg until the
# network's activations overflow (1e30 ended in NaN); tiny-synth's float32 loop was measured still finite
# at 1000, so 100 leaves a margin of ten for fp16 networks and other checkpoints.
MAX_CFG = 100.0
MAX_SEED = 2 ** 64 - 1                # torch.Generator.manual_seed takes 64-bit seeds
# The text encoder reads at most TextConfig.max_length (77) tokens and truncates the rest silently; 200
# characters hold any phrase of that length (the service has always capped text there).
MAX_TEXT = 200
# A WAV's rate: the model's own (16 kHz), or resampled for a game or a DAW (44.1 or 48 kHz); 8 kHz
# (telephone) to 192 kHz (the highest rate common audio interfaces run at).
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 192000
# Past the model's own max_seconds a clip is denoised over overlapping windows (longform.py): time and
# memory grow linearly with the length (benchmarks/longform.py measures both). Two
# minutes is longer than any ambience bed a game loops; the limit is checked before the model loads.
MAX_SECONDS = 120.0
MIN_LOOP_FRAMES = 8                   # latent frames (0.32 s): a shorter loop is a buzz, not a sound


def check_sample_rate(rate, what: str = "--sample-rate") -> int:
    """`rate` if it is an integer in [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE] Hz, else an ObjaudioError naming `what`."""
    check(isinstance(rate, int) and not isinstance(rate, bool) and MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE,
          f"{what} must be an integer from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz (44100 or 48000 for games "
          f"and DAWs), got {rate!r}")
    return rate


def max_steps(num_train_timesteps: int) -> int:
    """The most steps every sampler can take on a schedule of `num_train_timesteps`: that minus 1 (999).

    DDIM's leading spacing with offset 1 would ask for t = 1000 at 1000 steps (diffusers' own
    DDIMScheduler fails there too), and the multistep solvers' steps + 1 rounded linspace points over
    [0, 999] repeat a timestep beyond 999 steps (a zero step size)."""
    return num_train_timesteps - 1


def shortest_duration(config: ModelConfig) -> float:
    """One latent frame (VAE factor x hop: 0.04 s for every preset), in seconds."""
    return config.vae.downsample_factor * config.mel.hop_length / config.mel.sample_rate


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
    loop: bool = False                    # a seamless loop (longform.py): duration snapped to whole latent frames
    guidance: str | None = None           # one of GUIDANCE (default "cfg")
    silence_gate: bool | None = None      # the model's silence gate (core/gate.py); default: on where it has one

    def resolve(self, config: ModelConfig, union: str = UNION_MODES[0]) -> ResolvedRun:
        """Every field filled (`union`: the caller's default mode) and checked."""
        if isinstance(self, ResolvedRun):
            return self
        run = ResolvedRun(
            steps=config.default_steps if self.steps is None else self.steps,
            sampler=self.sampler or config.default_sampler,
            cfg=config.default_cfg if self.cfg is None else float(self.cfg),
            seed=self.seed,
            duration=config.clip_seconds if self.duration is None else float(self.duration),
            union=self.union or union, loop=self.loop, guidance=self.guidance or GUIDANCE[0],
            silence_gate=config.silence_gate is not None if self.silence_gate is None else self.silence_gate)
        top = max_steps(config.schedule.num_train_timesteps)
        check(isinstance(run.steps, int) and 0 < run.steps <= top,
              f"steps must be an integer in [1, {top}], got {run.steps!r}")
        check(run.sampler in SAMPLERS, f"unknown sampler {run.sampler!r}: use one of {', '.join(SAMPLERS)}")
        check(math.isfinite(run.cfg) and 1.0 <= run.cfg <= MAX_CFG,
              f"cfg (guidance scale) must be a number in [1, {MAX_CFG:g}], got {run.cfg!r}")
        check(isinstance(run.seed, int) and 0 <= run.seed <= MAX_SEED,
              f"seed must be an integer in [0, 2**64 - 1] (what torch.Generator takes), got {run.seed!r}")
        shortest = shortest_duration(config)
        check(math.isfinite(run.duration) and shortest <= run.duration <= MAX_SECONDS,
              f"duration must be in [{shortest:g}, {MAX_SECONDS:g}] seconds (past the model's "
              f"{config.max_seconds:g} s it is generated over overlapping windows), got {run.duration}")
        check(isinstance(run.loop, bool), f"loop must be true or false, got {run.loop!r}")
        if run.loop:
            frames = round(run.duration / shortest)
            check(frames >= MIN_LOOP_FRAMES, f"a loop must be at least {MIN_LOOP_FRAMES * shortest:g} seconds long, "
                                             f"got {run.duration:g}")
            run = dataclasses.replace(run, duration=round(frames * shortest, 6))   # whole latent frames: the period
        check(run.union in UNION_MODES, f"unknown union mode {run.union!r}: use one of {', '.join(UNION_MODES)}")
        check(run.guidance in GUIDANCE, f"unknown guidance {run.guidance!r}: use one of {', '.join(GUIDANCE)}")
        check(isinstance(run.silence_gate, bool), f"silence_gate must be true or false, got {run.silence_gate!r}")
        check(not run.silence_gate or config.silence_gate is not None,
              "this checkpoint has no silence gate: leave silence_gate unset (or false), or fit one with "
              "python -m training.silence_gate")
        d = config.distilled
        if d is not None:                                   # a guidance-distilled UNet (denoise.py's one-row path)
            check(run.guidance == "cfg", "this checkpoint's UNet is guidance-distilled (its guidance is built in): "
                                         "use guidance cfg, or its teacher checkpoint for apg")
            check(d.cfg_min <= run.cfg <= d.cfg_max, f"this checkpoint's guidance-distilled UNet was trained for cfg "
                                                     f"in [{d.cfg_min:g}, {d.cfg_max:g}], got {run.cfg:g}")
        return run


@dataclass(frozen=True)
class ResolvedRun(RunOptions):
    """RunOptions with every field filled and checked (what `RunOptions.resolve` returns): the stages
    below the front door (Pipeline.sample) take it as it is, without checking it again."""
