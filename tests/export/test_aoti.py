"""AOTInductor packages of the tiny UNet on the CPU: build once, load, match eager, refuse stale packages.

The build (torch.export + inductor + a C++ compile) is the expensive part, so the session builds
one package (tests/conftest.py `aoti_package`) and every test here reads it.
"""
import copy
import dataclasses
import json
import shutil

import pytest
import torch

from objaudio_rt.backends.aoti import PackageCache, load_package, package_name
from objaudio_rt.modelio.networks import UNetEps
from objaudio_rt.modelio.artifacts import model_fingerprint
from objaudio_rt.core.errors import ObjaudioError
from tests.kernels.kernel_checks import assert_verbose_allclose, reference_tolerance

CPU = torch.device("cpu")


def test_package_and_sidecar(aoti_package):
    info = aoti_package["info"]
    assert info["format"] == "objaudio-aoti-package" and info["dtype"] == "fp32"
    assert info["torch_version"] == torch.__version__ and info["platform"].startswith("cpu ")
    assert info["checkpoint"] == model_fingerprint(aoti_package["model"])
    assert info["check"]["rel_err_vs_module"] < 1e-4                  # the builder's own check, batch 6
    assert (info["min_unet_batch"], info["max_unet_batch"]) == (2, 8)   # a teacher: two rows per selection


def test_a_students_package_takes_one_row_and_an_old_sidecar_two(aoti_package):
    """A guidance-distilled UNet runs one row per selection: its package's range starts at 1 (the export's
    Dim min, recorded in the sidecar); a sidecar written before that key keeps the old range 2..max."""
    from objaudio_rt.backends.aoti import AotiUNet

    shape = aoti_package["latent_shape"]
    side = {"latent_shape": "x".join(map(str, shape)), "max_unet_batch": 8}
    one = torch.empty(1, *shape)
    assert AotiUNet(aoti_package["dir"], {**side, "min_unet_batch": 1}, None).covers(one)
    assert not AotiUNet(aoti_package["dir"], side, None).covers(one)


@pytest.mark.parametrize("unet_batch", [2, 8])
def test_loaded_package_matches_the_eager_unet(aoti_package, unet_batch):
    model, shape = aoti_package["model"], aoti_package["latent_shape"]
    engine = load_package(model_fingerprint(model), CPU, torch.float32, shape, aoti_package["dir"])
    assert engine.covers(torch.empty(unet_batch, *shape)) and not engine.covers(torch.empty(unet_batch, 8, 3, 3))
    g = torch.Generator().manual_seed(3)
    x = torch.randn(unet_batch, *shape, generator=g)
    cond = torch.randn(unet_batch, model.config.unet.cond_dim, generator=g)
    t = torch.tensor([613])
    call = UNetEps(model.unet)
    with torch.no_grad():
        got, low = engine(x, t, cond), call(x, t, cond)
        truth = UNetEps(copy.deepcopy(model.unet).double())(x.double(), t, cond.double())
    assert_verbose_allclose(got, truth, reference_tolerance(truth, low, torch.float32, factor=4), f"AOTI UNet batch {unet_batch}")


def test_stale_or_missing_packages_are_refused(aoti_package, tmp_path):
    model, shape = aoti_package["model"], aoti_package["latent_shape"]
    fingerprint = model_fingerprint(model)
    with pytest.raises(ObjaudioError, match="engine not found.*python -m export.aoti"):
        load_package(fingerprint, CPU, torch.float16, shape, aoti_package["dir"])
    src = aoti_package["dir"] / package_name(CPU, torch.float32, shape)
    shutil.copy(src, tmp_path / src.name)
    sidecar = json.loads(src.with_name(src.name + ".json").read_text())
    (tmp_path / (src.name + ".json")).write_text(json.dumps({**sidecar, "torch_version": "2.0.0"}))
    with pytest.raises(ObjaudioError, match="stale: built for torch version 2.0.0"):
        load_package(fingerprint, CPU, torch.float32, shape, tmp_path)
    with pytest.raises(ObjaudioError, match="stale: built for checkpoint weights"):
        load_package("0" * 64, CPU, torch.float32, shape, aoti_package["dir"])


def test_package_cache_uses_a_package_only_where_one_fits(aoti_package, tmp_path):
    model, shape = aoti_package["model"], aoti_package["latent_shape"]
    fingerprint = model_fingerprint(model)
    x = torch.zeros(2, *shape)
    assert PackageCache(fingerprint, CPU, torch.float32, False, tmp_path).for_input(x) is None    # none built
    with pytest.raises(ObjaudioError, match="python -m export.aoti"):
        PackageCache(fingerprint, CPU, torch.float32, True, tmp_path).for_input(x)
    cache = PackageCache(fingerprint, CPU, torch.float32, False, aoti_package["dir"])
    assert cache.for_input(x) is not None
    assert cache.for_input(torch.zeros(64, *shape)) is None                    # past --max-batch: the module
    with pytest.raises(ObjaudioError, match="larger --max-batch"):
        PackageCache(fingerprint, CPU, torch.float32, True, aoti_package["dir"]).for_input(torch.zeros(64, *shape))


def test_fast_backend_runs_the_package_on_the_cpu_within_the_derived_tolerance(aoti_package):
    """The CPU fast path: the loop through the package, held to a float64 eager loop (tolerance: twice
    the float32 eager loop's own error), and the cache picks the package up without being told."""
    from objaudio_rt.backends.eager import EagerBackend
    from objaudio_rt.backends.fast import FastBackend, FastOptions
    from objaudio_rt.core.denoise import Conditions, denoise
    from objaudio_rt.core.samplers import SamplerPlan

    model, shape = aoti_package["model"], aoti_package["latent_shape"]
    plan = SamplerPlan.build("dpmpp", 3, model.config.schedule)
    g = torch.Generator().manual_seed(5)
    x, cond = torch.randn(2, *shape, generator=g), torch.randn(2, model.config.unet.cond_dim, generator=g)
    truth = denoise(EagerBackend(copy.deepcopy(model), CPU, torch.float64), x.double(),
                    Conditions.single(cond.double()), plan, 2.0, progress=False)
    low = denoise(EagerBackend(copy.deepcopy(model), CPU), x, Conditions.single(cond), plan, 2.0, progress=False)
    options = dataclasses.replace(FastOptions.default_for(CPU), aoti_dir=str(aoti_package["dir"]))
    fast = FastBackend(copy.deepcopy(model), CPU, options)
    got = denoise(fast, x, Conditions.single(cond), plan, 2.0, progress=False)
    assert fast.packages.for_input(torch.cat([x, x])) is not None
    assert_verbose_allclose(got, truth, reference_tolerance(truth, low, torch.float32, factor=4), "fast (AOTI) loop")
    assert not torch.equal(got, low)                          # the package ran, not the module


def test_platform_check_prints_no_cuda_toolkit_note():
    """Reading the CPU's vector ISA (every package load checks it) imports torch.utils.cpp_extension, which
    on a machine with a CUDA toolkit and no GPU (this project's CI machines) warned "No CUDA runtime is
    found" into a user's run. Where no toolkit is installed the note never appears, with or without the fix."""
    import subprocess
    import sys

    code = ("import torch; from objaudio_rt.modelio.artifacts import current_platform, platform_label; "
            "print(platform_label(current_platform(torch.device('cpu'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.startswith("cpu "), proc.stderr
    assert "No CUDA runtime" not in proc.stderr, proc.stderr
