"""Behaviour held still across restructuring: the exact bytes a fixed set of generations gives on the CPU.

`golden_cpu.json` was written by this file's `outputs()` on the code before the stage seams were
refactored (issue 19). Every entry is the sha256 of a waveform's float32 bytes, so any change of
arithmetic (not only of meaning) fails here. The bytes depend on the machine as well as the code:
two AVX-512 Xeons, one with AMX and one without, give different convolution roundings (oneDNN picks
other kernels). So the file holds one set of digests per machine identity (`machine()`: the ISA
level, the CPU model, the matrix and half-precision extensions, the torch version), and the test
compares against the set of this machine's identity, or says that there is none rather than failing
for the wrong reason.

Each set also records the embedded model it was written with (`MODEL_KEY`: its fingerprint). When the
embedded model is replaced, the sets of machines nobody could rewrite keep the old model's digests: on
such a machine only the random-weight entries are compared, and the test says the rest is stale rather
than failing for the wrong reason.

To add this machine's set, or write it again (only when a change of output is intended, and say why
in the commit), on a checkout whose output is known good:
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
MODEL_KEY = "tiny-synth/fingerprint"          # the embedded model the tiny-synth digests of a set are of
DEMO = Path(__file__).resolve().parents[2] / "objaudio_rt" / "assets" / "demo"


ISA_FLAGS = ("avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "avx_vnni", "fma")


def machine() -> str:
    """What the float bytes depend on besides the code: ISA level, CPU model, extensions, torch."""
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    ext = "+".join(f for f in ISA_FLAGS if f in flags) or "none"
    return f"{torch.backends.cpu.get_cpu_capability()} | {model} | {ext} | torch {torch.__version__}"


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
    from objaudio_rt.modelio.artifacts import model_fingerprint

    result = {}
    pipe = Pipeline.from_pretrained("tiny-synth", device="cpu", backend="eager", path="full")   # the teacher's path
    result[MODEL_KEY] = model_fingerprint(pipe.model)
    scene = pipe.encode_image(DEMO / "scene.png")
    bird, fire = Mask(DEMO / "mask_bird.png"), Mask(DEMO / "mask_fire.png")
    runs = {
        "bird-dpmpp6": ([bird], dict(steps=6, sampler="dpmpp", seed=3)),
        "text-ddim5": ([Text("a bird singing")], dict(steps=5, sampler="ddim", seed=1)),
        "bird+fire-compose": ([bird | fire], dict(steps=5, seed=2, union="compose")),
        "bird+fire-mask": ([bird | fire], dict(steps=5, seed=2, union="mask")),
        "batch3-short": ([bird, Whole(), bird | Text("fire crackling")], dict(steps=4, seed=7, duration=1.0,
                                                                                union="compose")),
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
                                            union="compose", progress=False)):    # recorded before "mix"
        result[f"random-tiny/{n}"] = digest(g.wave)
    return result


def test_outputs_are_bit_identical_to_the_golden_file():
    sets = json.loads(GOLDEN.read_text())["machines"]
    here = machine()
    if here not in sets:
        pytest.skip(f"no golden digests for this machine ({here}); the file has {len(sets)} other(s): "
                    "convolutions may round differently here (run `python -m tests.runtime.test_golden` on a "
                    "known-good checkout to add them)")
    got = outputs()
    want = sets[here]
    if want.get(MODEL_KEY) != got[MODEL_KEY]:
        mine = sorted(k for k in want if k.startswith("random-tiny/"))
        assert mine and all(got[k] == want[k] for k in mine), "the random-weight waveforms changed"
        pytest.skip(f"this machine's tiny-synth digests are of another embedded model ({want.get(MODEL_KEY)}, "
                    f"now {got[MODEL_KEY]}); the {len(mine)} random-weight ones held: rewrite the set with "
                    "`python -m tests.runtime.test_golden` on a known-good checkout")
    assert got.keys() == want.keys()
    changed = sorted(k for k in want if got[k] != want[k])
    assert not changed, f"{len(changed)} of {len(want)} waveforms changed: {changed}"


if __name__ == "__main__":
    data = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {"machines": {}}
    data["machines"][machine()] = outputs()
    GOLDEN.write_text(json.dumps(data, indent=1) + "\n")
    print(f"{GOLDEN}: digests for {machine()}")
