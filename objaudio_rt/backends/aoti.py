"""Ahead-of-time compiled UNet packages (AOTInductor): built once by `python -m export.aoti`, loaded in seconds.

A package `unet-<device>-<dtype>-<C>x<H>x<W>.pt2` holds the whole UNet (`networks.UNetEps`: x, t, cond ->
eps) compiled by inductor for one device kind, one dtype and one latent shape, with the UNet
batch (2 x selections, for guidance) dynamic from 2 (1 for a guidance-distilled model's, which runs one row
per selection: sidecar `min_unet_batch`) to `max_unet_batch`. It is tied to the
checkpoint's weights (baked into the package). Its sidecar `X.pt2.json` records the torch
version, the platform (GPU name and compute capability, or the CPU architecture and vector ISA
inductor compiled for), the checkpoint fingerprint, dtype and shape; `load_package` checks them
with the sidecar check the TensorRT engines use (artifacts.check_sidecar) and refuses a stale
package, naming what changed and the command that rebuilds it.

Packages live in `cache_root()/aoti/<fingerprint[:32]>/` unless a folder is given.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..modelio.artifacts import cache_root, check_sidecar, current_platform, platform_label
from .base import DTYPES
from ..core.errors import ObjaudioError, check

SIDECAR_FORMAT = "objaudio-aoti-package"
CHECKED = {"torch_version": "torch version", "platform": "platform", "checkpoint": "checkpoint weights",
           "dtype": "UNet dtype", "latent_shape": "latent shape"}
DTYPE_NAME = {dtype: name for name, dtype in DTYPES.items()}     # torch dtype -> its options.DTYPE_NAMES name


def package_name(device: torch.device, dtype: torch.dtype, latent_shape: tuple[int, int, int]) -> str:
    return f"unet-{device.type}-{DTYPE_NAME[dtype]}-{'x'.join(map(str, latent_shape))}.pt2"


def package_dir(fingerprint: str, folder: str | os.PathLike | None = None, root: Path | None = None) -> Path:
    """`folder` when given, else the model's folder in the cache (`root`, default cache_root())."""
    if folder is not None:
        return Path(folder)
    return (root if root is not None else cache_root()) / "aoti" / fingerprint[:32]


def expected_sidecar(fingerprint: str, device: torch.device, dtype: torch.dtype,
                     latent_shape: tuple[int, int, int]) -> dict:
    return {"torch_version": torch.__version__, "platform": platform_label(current_platform(device)),
            "checkpoint": fingerprint,
            "dtype": DTYPE_NAME[dtype], "latent_shape": "x".join(map(str, latent_shape))}


def rebuild_command(checkpoint: str, device: torch.device, dtype: torch.dtype, latent_shape) -> str:
    return (f"build it with `python -m export.aoti --checkpoint {checkpoint} --device {device.type} "
            f"--dtype {DTYPE_NAME[dtype]} --frames {latent_shape[1]}`")


class AotiUNet:
    """A loaded package: call it like `networks.UNetEps` for inputs of its dtype, latent shape and batch range."""

    def __init__(self, path: Path, sidecar: dict, runner):
        self.path, self.sidecar, self._runner = path, sidecar, runner
        self.latent_shape = tuple(int(s) for s in sidecar["latent_shape"].split("x"))
        self.max_unet_batch = int(sidecar["max_unet_batch"])
        self.min_unet_batch = int(sidecar.get("min_unet_batch", 2))       # packages before distilled models: 2

    def covers(self, x: torch.Tensor) -> bool:
        """Whether a UNet input (N, C, H, W) is inside this package's shape profile."""
        return tuple(x.shape[1:]) == self.latent_shape and self.min_unet_batch <= x.shape[0] <= self.max_unet_batch

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = x if x.is_contiguous() else x.contiguous()                 # no operator call when it already is
        cond = cond if cond.is_contiguous() else cond.contiguous()
        return self._runner(x, t if t.shape == (1,) else t.reshape(1), cond)


def load_package(fingerprint: str, device: torch.device, dtype: torch.dtype, latent_shape: tuple[int, int, int],
                 folder: str | os.PathLike | None = None, checkpoint: str = "CHECKPOINT") -> AotiUNet:
    """Load and check the package for this model, device, dtype and latent shape (ObjaudioError if stale/absent)."""
    path = package_dir(fingerprint, folder) / package_name(device, dtype, latent_shape)
    sidecar = check_sidecar(path, expected_sidecar(fingerprint, device, dtype, latent_shape), SIDECAR_FORMAT,
                            CHECKED, rebuild_command(checkpoint, device, dtype, latent_shape))
    try:
        from torch._inductor import aoti_load_package

        runner = aoti_load_package(str(path))
    except (RuntimeError, OSError) as exc:
        raise ObjaudioError(f"could not load the compiled package {path} ({str(exc).splitlines()[0][:200]}); "
                            f"{rebuild_command(checkpoint, device, dtype, latent_shape)}") from None
    check(runner is not None, f"{path} holds no model; {rebuild_command(checkpoint, device, dtype, latent_shape)}")
    return AotiUNet(path, sidecar, runner)


class PackageCache:
    """The packages one backend may use, looked up per latent shape on first use.

    `required` False: use a package when the folder holds one for this model, device, dtype and
    shape, else the caller runs its module (a stale package still raises: rebuild or delete it).
    `required` True: a missing package, or an input outside its batch range, raises.
    """

    def __init__(self, fingerprint: str, device: torch.device, dtype: torch.dtype, required: bool,
                 folder: str | os.PathLike | None = None):
        self.fingerprint, self.device, self.dtype = fingerprint, device, dtype
        self.required, self.folder = required, folder
        self._by_shape: dict[tuple, AotiUNet | None] = {}

    def for_input(self, x: torch.Tensor) -> AotiUNet | None:
        """The package that runs the UNet input x (N, C, H, W), or None (run the module)."""
        shape = tuple(x.shape[1:])
        if shape not in self._by_shape:
            path = package_dir(self.fingerprint, self.folder) / package_name(self.device, self.dtype, shape)
            present = path.is_file() or Path(f"{path}.json").is_file()
            self._by_shape[shape] = (load_package(self.fingerprint, self.device, self.dtype, shape, self.folder)
                                     if present or self.required else None)
        engine = self._by_shape[shape]
        if engine is not None and not engine.covers(x):
            check(not self.required, f"UNet batch {x.shape[0]} is outside the package's {engine.min_unet_batch}.."
                                     f"{engine.max_unet_batch}: "
                                     f"rebuild it with a larger --max-batch")
            return None
        return engine
