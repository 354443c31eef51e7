"""What the exporters share (export.onnx, export.aoti, export.engine, export.trt): the flags that say
which weights they read, their output folder, and `--only` lists.

    --checkpoint DIR | tiny-synth | random:PRESET   which weights, in the runtime's own words
                                                    (objaudio_rt.core.config.ModelSource, parsed once)
    --seed S                                        the seed of random:PRESET weights

The artifacts' own rules (manifests, sidecars, fingerprints, network names, atomic writes, the
platform compiled code is tied to) are the runtime's: objaudio_rt/modelio/artifacts.py, read and written
through by both sides.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from objaudio_rt.core.config import PRESETS, RANDOM, ModelSource
from objaudio_rt.core.errors import ObjaudioError
from objaudio_rt.core.options import add_path_flags


def add_model_args(p: argparse.ArgumentParser) -> None:
    """The flags that say which weights an exporter reads (ModelSource.parse(args.checkpoint), then `load_model`)."""
    p.add_argument("--checkpoint", help="a checkpoint folder, the embedded model by its preset name (tiny-synth), "
                                        f"or {RANDOM}PRESET for random weights ({', '.join(PRESETS)}); "
                                        "default: the embedded model")
    p.add_argument("--seed", type=int, default=0, help=f"seed of {RANDOM}PRESET weights")
    add_path_flags(p, "export")


def model_source(args) -> ModelSource:
    """The weights add_model_args' flags name."""
    return ModelSource.parse(args.checkpoint, args.path)


def load_model(source: ModelSource, seed: int):
    """The Pipeline of the weights `source` names (random ones from `seed`): its .model, .calibration, .source."""
    from objaudio_rt.core.pipeline import Pipeline

    return Pipeline.from_pretrained(source, seed=seed)


def prepare_out_dir(out: Path) -> None:
    """Create `out` and make sure it takes files, before any work: an unwritable --out is one clear line."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ObjaudioError(f"cannot create output folder {out}: {exc.strerror or exc}; "
                            "choose a writable --out") from None
    try:
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ObjaudioError(f"output folder {out} is not writable ({exc.strerror or exc}): "
                            "choose a writable --out") from None


def parse_only(only: str | None) -> tuple[str, ...]:
    """An `--only unet,vae_decoder` list as names; () when not given."""
    return tuple(n.strip() for n in only.split(",") if n.strip()) if only else ()
