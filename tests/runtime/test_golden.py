"""Behaviour held still across restructuring: the exact bytes a fixed set of generations gives on the CPU.

`golden_cpu.json` was written by this file's `outputs()` on the code before the stage seams were
refactored (issue 19), on this project's 2-core CPU (AMD EPYC, AVX2). Every entry is the sha256 of
a waveform's float32 bytes, so any change of arithmetic (not only of meaning) fails here. A CPU of
another instruction set can round a convolution differently: the file records the capability it was
made on, and the test says so when it differs rather than failing for the wrong reason.

To write the file again (only when a change of output is intended, and say why in the commit):
    python -m tests.runtime.test_golden
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

GOLDEN = Path(__file__).with_name("golden_cpu.json")
DEMO = Path(__file__).resolve().parents[2] / "objaudio_rt" / "assets" / "demo"


def cpu_capability() -> str:
    return torch.backends.cpu.get_cpu_capability()


def digest(wave: torch.Tensor) -> str:
    return hashlib.sha256(np.ascontiguousarray(wave.numpy(), np.float32).tobytes()).hexdigest()


def outputs() -> dict[str, str]:
    """name -> sha256 of each generated waveform (one thread: the reduction order is then fixed)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _outputs()
    finally:
        torch.set_num_threads(threads)


def _outputs() -> dict[str, str]:
    """The embedded model on the demo scene, and random weights."""
    from objaudio_rt import Mask, Pipeline, Text, Whole

    result = {}
    pipe = Pipeline.from_pretrained("tiny-synth", device="cpu", backend="eager")
    scene = pipe.encode_image(DEMO / "scene.png")
    bird, fire = Mask(DEMO / "mask_bird.png"), Mask(DEMO / "mask_fire.png")
    runs = {
        "bird-dpmpp6": ([bird], dict(steps=6, sampler="dpmpp", seed=3)),
        "text-ddim5": ([Text("a bird singing")], dict(steps=5, sampler="ddim", seed=1)),
        "bird+fire-compose": ([bird | fire], dict(steps=5, seed=2, union="compose")),
        "bird+fire-mask": ([bird | fire], dict(steps=5, seed=2, union="mask")),
        "batch3-short": ([bird, Whole(), bird | Text("fire crackling")], dict(steps=4, seed=7, duration=1.0)),
        "whole-cfg2.5": ([None], dict(steps=4, cfg=2.5, seed=0)),
    }
    for name, (selections, options) in runs.items():
        for n, g in enumerate(pipe.generate_many(scene, selections, progress=False, **options)):
            result[f"tiny-synth/{name}/{n}"] = digest(g.wave)
    rnd = Pipeline.from_pretrained("random:tiny", device="cpu", seed=0)
    img = np.full((80, 96, 3), 128, np.uint8)
    img[10:40, 10:40] = (220, 30, 30)
    square = np.zeros((80, 96), bool)
    square[10:40, 10:40] = True
    rscene = rnd.encode_image(img)
    for n, g in enumerate(rnd.generate_many(rscene, [Mask(square), Mask(square) | Whole()], steps=3, seed=5,
                                            progress=False)):
        result[f"random-tiny/{n}"] = digest(g.wave)
    return result


def test_outputs_are_bit_identical_to_the_golden_file():
    golden = json.loads(GOLDEN.read_text())
    if golden["cpu_capability"] != cpu_capability():
        pytest.skip(f"golden file made on a {golden['cpu_capability']} CPU; this one is {cpu_capability()}: "
                    "convolutions may round differently (write the file here to compare)")
    got = outputs()
    want = golden["sha256"]
    assert got.keys() == want.keys()
    changed = sorted(k for k in want if got[k] != want[k])
    assert not changed, f"{len(changed)} of {len(want)} waveforms changed: {changed}"


if __name__ == "__main__":
    data = {"cpu_capability": cpu_capability(), "torch": torch.__version__, "sha256": outputs()}
    GOLDEN.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {GOLDEN} ({len(data['sha256'])} waveforms)", file=sys.stderr)
