"""A checkpoint with another vocoder: the same networks, its few-step path carried over.

    python -m training.swap_vocoder --checkpoint CKPT --vocoder-from SOURCE --out OUT [--force] [--note TEXT]

SOURCE is a checkpoint folder (its vocoder is taken), or the --out of a `training.train --stage vocoder`
run: its last partial save while it runs (`stages/vocoder.partial.safetensors`, every 2 minutes; the run
is not disturbed), else its finished stage (`stages/vocoder.safetensors`). The vocoder takes no part in the
diffusion or its distillation, so CKPT's few-step student stays its default path: its record names OUT as
its teacher and says which vocoder file replaced which (modelio.checkpoint.replace_vocoder). Both paths
still want evaluating with the new vocoder before OUT replaces anything (`training.evaluate`, paired).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from objaudio_rt.core.errors import check, command
from objaudio_rt.modelio.checkpoint import read_config, replace_vocoder


def vocoder_weights(source: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The vocoder's state_dict in `source` (see the module's text) and what it was read from."""
    if (source / "config.json").is_file():
        _, _, manifest = read_config(source)                       # every file's hash checked
        return load_file(str(manifest["paths"]["vocoder.safetensors"])), {"source": str(source)}
    partial = source / "stages" / "vocoder.partial.safetensors"
    if partial.is_file():
        with safe_open(str(partial), "pt") as f:
            step = int(f.metadata()["step"])
        state = {k[len("live."):]: v for k, v in load_file(str(partial)).items() if k.startswith("live.")}
        check(state, f"{partial} holds no vocoder weights: the run's partial save is damaged")
        return state, {"source": str(partial), "step": step}
    stage = source / "stages" / "vocoder.safetensors"
    check(stage.is_file(), f"{source} is neither a checkpoint folder nor a vocoder run's --out with a saved "
                           "state yet (stages/vocoder.partial.safetensors is written every 2 minutes): "
                           "give a checkpoint, or wait for the run's first save")
    state = {k[len("vocoder."):]: v for k, v in load_file(str(stage)).items() if k.startswith("vocoder.")}
    check(state, f"{stage} holds no vocoder weights")
    return state, {"source": str(stage)}


@command("python -m training.swap_vocoder")
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.swap_vocoder", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, type=Path, help="the checkpoint whose vocoder is replaced")
    p.add_argument("--vocoder-from", required=True, type=Path,
                   help="a checkpoint folder, or a training.train --stage vocoder run's --out")
    p.add_argument("--out", required=True, type=Path, help="the new checkpoint folder")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--note", default=None, help="a line for the few-step record, e.g. how the vocoder was trained")
    args = p.parse_args(argv)
    state, note = vocoder_weights(args.vocoder_from)
    if args.note:
        note["note"] = args.note
    out = replace_vocoder(args.checkpoint, state, args.out, note, force=args.force)
    print(json.dumps({"out": str(out), **note}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
