"""CUDA-graph capture of a whole loop, and the bounded LRU cache of captured loops.

The one recipe every backend that graphs its loop uses (torch.cuda.graphs' documented one):
copy the inputs into static buffers, warm up on a side stream (cuBLAS/cuDNN handles, Triton JIT,
engine set-up), capture the body once, then per call copy fresh inputs in and replay. A loop is
keyed by the caller's key (sampler, steps, schedule) and the shapes and dtypes of its inputs;
input VALUES (noise, conditions, the guidance scale as a device tensor) are not in the key, so one
capture serves them all. Each captured loop holds its own memory pool; evicting one frees it.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import torch

from ..core.errors import check

# capture_body() -> body(static_inputs, warmup) -> output; called once per capture, so that what the
# body allocates up front (e.g. the sampler's device tables) belongs to that one graph.
Body = Callable[[dict[str, torch.Tensor], bool], torch.Tensor]


@dataclass
class CapturedLoop:
    graph: "torch.cuda.CUDAGraph"
    inputs: dict[str, torch.Tensor]      # static input buffers: copy fresh values in before a replay
    out: torch.Tensor                    # static output, in the graph's pool: overwritten by the next replay


class CudaGraphCache:
    def __init__(self, device: torch.device, size: int):
        check(device.type == "cuda", f"CUDA graphs need a CUDA device, got {device}")
        check(size >= 1, f"graph cache size must be >= 1, got {size}")
        self.device, self.size = device, size
        self._loops: OrderedDict[tuple, CapturedLoop] = OrderedDict()

    def __len__(self) -> int:
        return len(self._loops)

    def run(self, key: tuple, inputs: dict[str, torch.Tensor], capture_body: Callable[[], Body]) -> torch.Tensor:
        """Replay the loop for `key` and these input shapes (capturing it on first use); returns a copy
        of its output."""
        full_key = (key, tuple((name, tuple(t.shape), t.dtype) for name, t in inputs.items()))
        loop = self._loops.get(full_key)
        if loop is None:
            while len(self._loops) >= self.size:
                self._loops.popitem(last=False)                    # least recently used; frees its pool
            loop = self._loops[full_key] = capture(self.device, inputs, capture_body())
        else:
            self._loops.move_to_end(full_key)
            for name, t in inputs.items():
                loop.inputs[name].copy_(t)
        loop.graph.replay()
        return loop.out.clone()


def capture(device: torch.device, inputs: dict[str, torch.Tensor], body: Body) -> CapturedLoop:
    """Warm up on a side stream, then capture `body` on static copies of `inputs` (real data, not zeros)."""
    static = {name: t.clone() for name, t in inputs.items()}
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        body(static, True)
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = body(static, False)
    return CapturedLoop(graph, static, out)
