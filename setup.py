"""objaudio: object-aware image-to-audio generation (runtime, training, export, kernels)."""
import os
import re

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
KERNEL_SOURCES = ["csrc/bindings.cpp", "csrc/sampler_step.cu", "csrc/grounding.cu", "csrc/status.cu"]


def max_patches() -> int:
    """MAX_PATCHES, defined once in objaudio_rt/kernels/grounding.py, passed to the C++ build."""
    with open(os.path.join(ROOT, "objaudio_rt", "kernels", "grounding.py")) as f:
        return int(re.search(r"^MAX_PATCHES = (\d+)", f.read(), re.M).group(1))


def version() -> str:
    """__version__, defined once in objaudio_rt/__init__.py (what `objaudio --version` prints)."""
    with open(os.path.join(ROOT, "objaudio_rt", "__init__.py")) as f:
        return re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)


def cuda_extension() -> dict:
    """objaudio_rt._C from csrc/ where CUDA is available, or when OBJAUDIO_BUILD_CUDA=1 (needs torch
    at build time: pip install --no-build-isolation -e .). Elsewhere the package is pure Python."""
    forced = os.environ.get("OBJAUDIO_BUILD_CUDA") == "1"
    try:
        import torch
        from torch.utils.cpp_extension import BuildExtension, CUDAExtension
    except ImportError:
        if forced:
            raise RuntimeError("OBJAUDIO_BUILD_CUDA=1 needs torch installed first (and --no-build-isolation)")
        return {}
    if not (forced or torch.cuda.is_available()):
        return {}
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    define = f"-DOBJAUDIO_MAX_PATCHES={max_patches()}"
    ext = CUDAExtension("objaudio_rt._C", KERNEL_SOURCES, include_dirs=[os.path.join(ROOT, "csrc")],
                        extra_compile_args={"cxx": ["-O3", define], "nvcc": ["-O3", define]})
    return {"ext_modules": [ext], "cmdclass": {"build_ext": BuildExtension}}


setup(
    name="objaudio",
    version=version(),
    description="Object-aware image-to-audio generation: an optimized inference engine",
    packages=find_packages(include=["objaudio_rt", "objaudio_rt.*", "export", "export.*"]),
    package_data={"objaudio_rt": ["assets/**/*", "frontends/serve/static/*"]},
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.11", "diffusers>=0.35", "transformers>=4.45", "open_clip_torch>=2.24",
        "segment-anything>=1.0", "safetensors", "soundfile", "soxr>=0.3", "numpy", "scipy", "pillow",
        "matplotlib", "tqdm",
    ],
    extras_require={
        "serve": ["fastapi>=0.110", "uvicorn>=0.29", "python-multipart>=0.0.9", "fastapi-offline>=1.7"],
        "ray": ["fastapi>=0.110", "uvicorn>=0.29", "python-multipart>=0.0.9", "fastapi-offline>=1.7",
                "ray[serve]>=2.40"],
    },
    entry_points={"console_scripts": ["objaudio=objaudio_rt.frontends.cli:entry"]},
    **cuda_extension(),
)
