"""objaudio: object-aware image-to-audio generation (runtime, training, export, kernels)."""
from setuptools import find_packages, setup

setup(
    name="objaudio",
    version="0.1.0",
    description="Object-aware image-to-audio generation: an optimized inference engine",
    packages=find_packages(include=["objaudio_rt", "objaudio_rt.*"]),
    package_data={"objaudio_rt": ["assets/**/*"]},
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.11", "diffusers>=0.35", "transformers>=4.45", "open_clip_torch>=2.24",
        "segment-anything>=1.0", "safetensors", "soundfile", "numpy", "scipy", "pillow",
        "matplotlib", "tqdm",
    ],
    entry_points={"console_scripts": ["objaudio=objaudio_rt.cli:main"]},
)
