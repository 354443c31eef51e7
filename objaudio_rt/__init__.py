"""objaudio runtime: object-aware image-to-audio generation ("Sounding that Object", ICML 2025).

    from objaudio_rt import Pipeline, Mask, Points, Box, Text
    pipe = Pipeline.from_pretrained()                 # the embedded default model
    scene = pipe.encode_image("scene.png")
    wave = pipe.generate(scene, Mask("dog.png") | Text("a bird chirping"), seed=0)
"""
from .config import ModelConfig
from .errors import ObjaudioError
from .pipeline import Generation, Pipeline, Scene
from .selection import Box, Mask, Points, Text, Whole

__all__ = ["Pipeline", "Scene", "Generation", "Mask", "Points", "Box", "Text", "Whole", "ModelConfig",
           "ObjaudioError"]
