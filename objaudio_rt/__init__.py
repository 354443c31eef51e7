"""objaudio runtime: object-aware image-to-audio generation ("Sounding that Object", ICML 2025).

    from objaudio_rt import Pipeline, Mask, Points, Box, Text
    pipe = Pipeline.from_pretrained()                 # the embedded default model
    scene = pipe.encode_image("scene.png")
    wave = pipe.generate(scene, Mask("dog.png") | Text("a bird chirping"), seed=0)

The names below are imported when first used, so `objaudio --help` and the CLI's input checks
run before torch and the model libraries load.
"""
import importlib

__version__ = "0.1.0"

_EXPORTS = {"Pipeline": ".core.pipeline", "Scene": ".core.pipeline", "Generation": ".core.pipeline",
            "Mask": ".core.selection", "Points": ".core.selection", "Box": ".core.selection", "Text": ".core.selection",
            "Whole": ".core.selection", "ModelConfig": ".core.config", "ObjaudioError": ".core.errors",
            "RunOptions": ".core.options"}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'objaudio_rt' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
