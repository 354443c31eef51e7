"""TensorRT backend: engines built by `export.trt`, one shared device-memory block, a CUDA-graph loop.

Everything above the engine call is `GraphBackend`'s (graph.py), shared with and tested
through the ONNX Runtime backend: which network runs for which pipeline step, input dtypes and
shapes, the NaN guard inside the VAE graph. Here: the `Engine` class (load, bind I/O to torch
tensors with set_tensor_address, execute_async_v3 on the current torch stream), the engine
sidecar check, the fused sampler step between UNet calls, and the loop (denoise.guided_loop)
captured as one CUDA graph by the shared cache (cuda_graph.py), as the fast backend does.

Each engine `X.plan` has a JSON sidecar `X.plan.json` (artifacts.engine_sidecar, which export.trt
writes) recording the TensorRT version, the GPU's compute capability, the weights fingerprint and
the contract version; artifacts.check_engine_sidecar refuses an engine whose sidecar differs from
this machine (artifacts.current_platform) and names every difference.

NOT EXERCISED on any machine of this project (TensorRT cannot be installed here): `Engine` and
`TensorRTBackend`. They are written against TensorRT 10's documented Python API. The sidecar format
and checks are pure Python and tested.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..modelio.artifacts import CONTRACT_VERSION, RUNTIME_NETWORKS, check_engine_sidecar, current_platform, trt_cache_dir
from ..core.errors import ObjaudioError, check
from ..modelio.model import GraphModel, ObjaudioModel
from .cuda_graph import CudaGraphCache
from .fused import fused_step
from .graph import GraphBackend

GRAPH_CACHE_SIZE = 4      # captured loops kept (LRU), as FastOptions.graph_cache_size


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

    def __init__(self, model: ObjaudioModel | GraphModel, device: torch.device, engine_dir: str | os.PathLike | None = None,
                 graph_cache_size: int = GRAPH_CACHE_SIZE):
        check(device.type == "cuda", "the tensorrt backend needs --device cuda")
        try:
            import tensorrt as trt
        except ImportError:
            raise ObjaudioError("TensorRT is not installed: pip install tensorrt (NVIDIA's index), "
                                "or use --backend onnxruntime") from None
        super().__init__(model, device)
        fingerprint = self.fingerprint
        self.engine_dir = Path(engine_dir) if engine_dir is not None else trt_cache_dir(fingerprint)
        check(self.engine_dir.is_dir(), f"no TensorRT engines in {self.engine_dir}: build them with "
                                        f"`python -m export.onnx --out ONNX_DIR && python -m export.trt "
                                        f"--onnx ONNX_DIR --out {self.engine_dir}`")
        expected = dict(current_platform(device), tensorrt_version=trt.__version__, checkpoint=fingerprint,
                        contract_version=CONTRACT_VERSION)
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
        self.graphs = CudaGraphCache(device, graph_cache_size)

    def run(self, network: str, *inputs: torch.Tensor) -> torch.Tensor:
        # engines run one at a time on one stream, so they can share the device-memory block
        inputs = tuple(x.contiguous() for x in inputs)
        engine = self.engines[network]
        out = engine.bind(*inputs)[0]
        engine.execute()
        return out.float().clone()           # the engine reuses its output buffer on the next call

    def step(self, tables, i, x, eps_pair, cfg, x0_prev):
        return fused_step(tables, i, x, eps_pair, cfg, x0_prev)
