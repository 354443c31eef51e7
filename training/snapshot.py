"""A checkpoint from a diffusion stage that is still running (or was stopped): its last partial save.

    python -m training.snapshot --run DIR --init-from CHECKPOINT --out SNAPSHOT_DIR [--force]

`DIR` is the `--out` of a `training.train --stage ldm` run; its `stages/ldm.partial.safetensors`
(written every 2 minutes) holds the live and EMA weights. The snapshot is `--init-from`'s model
with the EMA UNet and grounding put in (what the stage itself saves when its budget ends), and the
attention calibrated again on the run's latent set exactly as the stage does at its end. The run
is not disturbed: it keeps training, and a later snapshot is taken the same way. What was taken
(run, step, calibration) is written beside the checkpoint as `SNAPSHOT_DIR.snapshot.json`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from objaudio_rt.modelio.checkpoint import load_checkpoint, save_checkpoint
from objaudio_rt.core.errors import check, command
from objaudio_rt.core.threads import use_threads

from .train_ldm import LatentSet, calibrate


def snapshot(run: Path, init_from: Path, out: Path, force: bool = False) -> dict:
    """Writes the checkpoint `out`; returns {"step": ..., "calibration": ...}."""
    partial = run / "stages" / "ldm.partial.safetensors"
    latents = run / "cache" / "latents.safetensors"
    check(partial.is_file(), f"{partial}: no partial save yet (the ldm stage writes one every 2 minutes)")
    check(latents.is_file(), f"{latents}: the run's latent set is missing")
    with safe_open(str(partial), "pt") as f:
        step = int(f.metadata()["step"])
    state = load_file(str(partial))
    prefix = "ema." if any(k.startswith("ema.") for k in state) else "live."
    model, _ = load_checkpoint(init_from)
    from .silence_gate import drop_gate

    for name in ("unet", "grounding"):
        head = f"{prefix}{name}."
        part = {k[len(head):]: v for k, v in state.items() if k.startswith(head)}
        check(part, f"{partial} holds no {name} weights")
        getattr(model, name).load_state_dict(part)
    model.eval()
    drop_gate(model, "the run trained the grounding")
    data = LatentSet.load(latents)
    rows = torch.nonzero(~data.mask_only).squeeze(1)[:2048]           # as training.train's ldm stage does
    calibration = calibrate(model, data, torch.device("cpu"), rows=rows)
    save_checkpoint(model, calibration, out, force=force)
    info = {"run": str(run), "step": step, "weights": prefix.rstrip("."), "init_from": str(init_from),
            "calibration": calibration.to_dict()}
    out.with_name(out.name + ".snapshot.json").write_text(json.dumps(info, indent=2))   # beside: not in the checkpoint
    return info


@command("python -m training.snapshot")
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.snapshot", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, type=Path, help="the --out folder of a training.train ldm run")
    p.add_argument("--init-from", required=True, type=Path, help="the run's --init-from checkpoint")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads, 1 to the cores this process may use")
    args = p.parse_args(argv)
    use_threads(args.threads)
    print(json.dumps(snapshot(args.run, args.init_from, args.out, args.force), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
