"""TensorRT backend: engines built by `export.trt`, one shared device-memory block, a CUDA-graph loop.

Everything above the engine call is `GraphBackend`'s (backends_onnx.py), shared with and tested
through the ONNX Runtime backend: which network runs for which pipeline step, input dtypes and
shapes, the NaN guard inside the VAE graph. Here: the `Engine` class (load, bind I/O to torch
tensors with set_tensor_address, execute_async_v3 on the current torch stream), the engine
sidecar check, and `denoise` captured as one CUDA graph per (shape, sampler, steps, cfg) with the
fused sampler step (objaudio_rt.kernels, when present) between UNet calls.

Each engine `X.plan` has a JSON sidecar `X.plan.json` (`engine_sidecar`) recording the TensorRT
version, the GPU's compute capability, the weights fingerprint and the contract version;
`check_engine_sidecar` refuses an engine whose sidecar differs and names every difference.

NOT EXERCISED on any machine of this project (TensorRT cannot be installed here): `Engine`,
`TensorRTBackend`, the CUDA-graph capture and `current_platform`. They are written against
TensorRT 10's documented Python API. The sidecar format and checks are pure Python and tested.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .backends_onnx import CONTRACT_VERSION, RUNTIME_NETWORKS, GraphBackend, cache_root, model_fingerprint
from .errors import ObjaudioError, check
from .model import ObjaudioModel
from .samplers import SamplerPlan, reference_step

SIDECAR_FORMAT = "objaudio-trt-engine"
# sidecar key -> how an error names it
CHECKED = {"tensorrt_version": "TensorRT version", "compute_capability": "GPU compute capability",
           "checkpoint": "checkpoint weights", "contract_version": "export contract version"}


def engine_sidecar(network: str, checkpoint: str, tensorrt_version: str, compute_capability: str,
                   fp16: bool, profile: dict, gpu_name: str = "") -> dict:
    return {"format": SIDECAR_FORMAT, "network": network, "checkpoint": checkpoint,
            "contract_version": CONTRACT_VERSION, "tensorrt_version": tensorrt_version,
            "compute_capability": compute_capability, "gpu_name": gpu_name, "fp16": fp16,
            "profile": {k: [list(s) for s in v] for k, v in profile.items()}}


def check_engine_sidecar(engine_path: str | os.PathLike, expected: dict, fmt: str = SIDECAR_FORMAT,
                         checked: dict[str, str] = CHECKED, rebuild: str | None = None) -> dict:
    """Read `engine_path`.json and compare it to `expected` (keys of `checked`); returns the sidecar.

    Raises ObjaudioError naming every difference and how to rebuild, for a missing, corrupt or
    stale sidecar (an engine runs only on the TensorRT version and GPU architecture it was built for).
    Other compiled engines (the AOTInductor packages of objaudio_rt.aoti) pass their own sidecar
    format, checked keys and rebuild command.
    """
    engine_path = Path(engine_path)
    sidecar_path = Path(f"{engine_path}.json")
    rebuild = rebuild or "rebuild it with `python -m export.trt --onnx ONNX_DIR --out " + str(engine_path.parent) + "`"
    check(engine_path.is_file(), f"engine not found: {engine_path}; {rebuild}")
    check(sidecar_path.is_file(), f"engine {engine_path.name} has no sidecar {sidecar_path.name}, so what it "
                                  f"was built for is unknown; {rebuild}")
    try:
        sidecar = json.loads(sidecar_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ObjaudioError(f"engine sidecar {sidecar_path} is corrupt ({exc}); {rebuild}") from None
    check(sidecar.get("format") == fmt, f"{sidecar_path} is not an objaudio {fmt} sidecar; {rebuild}")
    diffs = [f"{label} {sidecar.get(key)!s:.16} (now {expected[key]!s:.16})"
             for key, label in checked.items() if key in expected and sidecar.get(key) != expected[key]]
    if diffs:
        raise ObjaudioError(f"engine {engine_path.name} is stale: built for " + ", ".join(diffs) + f"; {rebuild}")
    return sidecar


def current_platform() -> dict:
    """TensorRT version and compute capability of the current CUDA device (sidecar keys)."""
    import tensorrt as trt

    major, minor = torch.cuda.get_device_capability()
    return {"tensorrt_version": trt.__version__, "compute_capability": f"{major}.{minor}",
            "gpu_name": torch.cuda.get_device_name()}


class Engine:
    """One deserialised engine with a context that runs in externally owned device memory."""

    def __init__(self, runtime, path: Path):
        import tensorrt as trt

        self.trt = trt
        self.path = path
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        check(self.engine is not None, f"TensorRT could not deserialise {path}; rebuild it with export.trt")
        self.context = self.engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._out: dict[str, torch.Tensor] = {}

    @property
    def device_memory_size(self) -> int:
        return self.engine.device_memory_size_v2

    def set_device_memory(self, block: torch.Tensor) -> None:
        self.context.set_device_memory(block.data_ptr(), block.numel())

    def bind(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """Set shapes and addresses for `inputs` (kept alive by the caller); returns the output tensors,
        reused while the shapes stay the same, so a CUDA graph can capture the addresses."""
        for name, x in zip(self.inputs, inputs):
            check(x.is_cuda and x.is_contiguous(), f"{self.path.name}: input {name} must be a contiguous CUDA tensor")
            self.context.set_input_shape(name, tuple(x.shape))
            self.context.set_tensor_address(name, x.data_ptr())
        outs = []
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = torch.float16 if self.engine.get_tensor_dtype(name) == self.trt.DataType.HALF else torch.float32
            out = self._out.get(name)
            if out is None or tuple(out.shape) != shape or out.dtype != dtype:
                out = self._out[name] = torch.empty(shape, dtype=dtype, device="cuda")
            self.context.set_tensor_address(name, out.data_ptr())
            outs.append(out)
        return outs

    def execute(self) -> None:
        ok = self.context.execute_async_v3(torch.cuda.current_stream().cuda_stream)
        check(ok, f"TensorRT failed to run {self.path.name}")


class TensorRTBackend(GraphBackend):
    name = "tensorrt"

    def __init__(self, model: ObjaudioModel, device: torch.device, engine_dir: str | os.PathLike | None = None):
        check(device.type == "cuda", "the tensorrt backend needs --device cuda")
        try:
            import tensorrt as trt
        except ImportError:
            raise ObjaudioError("TensorRT is not installed: pip install tensorrt (NVIDIA's index), "
                                "or use --backend onnxruntime") from None
        super().__init__(model, device)
        fingerprint = model_fingerprint(self.model)
        self.engine_dir = Path(engine_dir) if engine_dir is not None else cache_root() / "trt" / fingerprint[:32]
        check(self.engine_dir.is_dir(), f"no TensorRT engines in {self.engine_dir}: build them with "
                                        f"`python -m export.onnx --out ONNX_DIR && python -m export.trt "
                                        f"--onnx ONNX_DIR --out {self.engine_dir}`")
        expected = dict(current_platform(), checkpoint=fingerprint, contract_version=CONTRACT_VERSION)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engines = {}
        for name in RUNTIME_NETWORKS:
            path = self.engine_dir / f"{name}.plan"
            check_engine_sidecar(path, expected)
            self.engines[name] = Engine(runtime, path)
        size = max(e.device_memory_size for e in self.engines.values())
        self.device_memory = torch.empty(size, dtype=torch.uint8, device=device)   # one block, all engines
        for e in self.engines.values():
            e.set_device_memory(self.device_memory)
        self._graphs: dict[tuple, tuple] = {}

    def run(self, network: str, *inputs: torch.Tensor) -> torch.Tensor:
        # engines run one at a time on one stream, so they can share the device-memory block
        inputs = tuple(x.contiguous() for x in inputs)
        engine = self.engines[network]
        out = engine.bind(*inputs)[0]
        engine.execute()
        return out.float().clone()           # the engine reuses its output buffer on the next call

    @torch.no_grad()
    def denoise(self, x: torch.Tensor, cond: torch.Tensor, plan: SamplerPlan, cfg: float,
                progress: bool = True) -> torch.Tensor:
        """The whole loop as one CUDA graph, captured on first use per (shape, sampler, steps, cfg)."""
        key = (tuple(x.shape), plan.sampler, plan.steps, float(cfg))
        if key not in self._graphs:
            self._graphs[key] = self._capture(x, cond, plan, cfg)
        graph, x_in, cond_in, x_out = self._graphs[key]
        x_in.copy_(x)
        cond_in.copy_(cond)
        graph.replay()
        return x_out.clone()

    def _capture(self, x: torch.Tensor, cond: torch.Tensor, plan: SamplerPlan, cfg: float):
        b = x.shape[0]
        unet = self.engines["unet"]
        x_in, cond_in = torch.empty_like(x, dtype=torch.float32), torch.empty_like(cond, dtype=torch.float32)
        x2 = torch.empty((2 * b, *x.shape[1:]), device=self.device)                    # (2B, C, H, W)
        cond2 = torch.empty((2 * b, cond.shape[1]), device=self.device)                 # (2B, cond_dim)
        t = torch.empty(1, dtype=torch.int64, device=self.device)
        timesteps = plan.timesteps.to(self.device)
        eps2 = unet.bind(x2, t, cond2)[0]                                               # fixed addresses
        step = _sampler_step(plan, self.device)

        def loop():
            cond2[:b].copy_(self.model.null_condition.expand_as(cond_in))
            cond2[b:].copy_(cond_in)
            xc, x0 = x_in, None
            for i in range(plan.steps):
                x2[:b].copy_(xc)
                x2[b:].copy_(xc)
                t.copy_(timesteps[i:i + 1])
                unet.execute()
                xc, x0 = step(i, xc, eps2, cfg, x0)
            return xc

        x_in.copy_(x)
        cond_in.copy_(cond)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            loop()                          # warm-up outside capture: TensorRT sets up shapes on first run
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            x_out = loop()
        return graph, x_in, cond_in, x_out


def _sampler_step(plan: SamplerPlan, device: torch.device):
    """step(i, x, eps2, cfg, x0_prev) -> (x_next, x0): the fused Triton step when objaudio_rt.kernels
    is present (coefficients read on the device), else `reference_step` (coefficients as constants)."""
    try:
        from .kernels.sampler_step import guided_step_into, upload_coefs
    except ImportError:
        return lambda i, x, eps2, cfg, x0: reference_step(plan.coefs[i], x, eps2, cfg, x0)
    coefs = upload_coefs(plan, device)
    indices = torch.arange(plan.steps, device=device, dtype=torch.int32)

    def fused(i, x, eps2, cfg, x0_prev):
        x_next, x0 = torch.empty_like(x), torch.empty_like(x)
        guided_step_into(coefs, indices[i:i + 1], x, eps2, cfg, x0_prev, x_next, x0)
        return x_next, x0
    return fused
