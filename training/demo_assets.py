"""Write the demo scene bundled with the runtime (objaudio_rt/assets/demo/).

The scene is the first test-split seed with 2-3 sounding objects and one silent distractor.
Files: scene.png (112 x 112 RGB), mask_<class>.png per object (L mode, 0 or 255, the visible
part), scene.json (seed, classes, sounding flags, caption).

    python -m training.demo_assets --out objaudio_rt/assets/demo
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image

from objaudio_rt.core.errors import command

from .synthscenes import generate_scene, split_seeds


def pick_demo_seed(limit: int = 1000) -> int:
    for seed in split_seeds("test", limit):
        scene = generate_scene(seed)
        n_sounding = sum(scene.sounding)
        if 2 <= n_sounding <= 3 and len(scene.classes) - n_sounding == 1:
            return seed
    raise RuntimeError(f"no demo-worthy scene among the first {limit} test seeds")


def write_demo(folder: str | Path, seed: int) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    scene = generate_scene(seed)
    Image.fromarray(scene.image, "RGB").save(folder / "scene.png")
    for cls, mask in zip(scene.classes, scene.masks):
        Image.fromarray(mask.astype("uint8") * 255, "L").save(folder / f"mask_{cls}.png")
    info = {"seed": seed, "split": "test", "classes": scene.classes, "sounding": scene.sounding,
            "caption": scene.caption, "layout": scene.layout, "sample_rate": scene.sample_rate,
            "seconds": len(scene.mixture) / scene.sample_rate}
    (folder / "scene.json").write_text(json.dumps(info, indent=2) + "\n")


@command("python -m training.demo_assets")
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the bundled SynthScenes demo scene.")
    parser.add_argument("--out", type=Path, default=Path("objaudio_rt/assets/demo"))
    args = parser.parse_args(argv)
    seed = pick_demo_seed()
    write_demo(args.out, seed)
    print(f"wrote demo scene seed {seed} to {args.out}")


if __name__ == "__main__":
    sys.exit(main())
