"""Kernel tests run the Triton kernels through Triton's CPU interpreter where there is no GPU.

`triton.jit` chooses interpreted mode when a kernel is defined, so the variable must be set
before objaudio_rt.kernels is imported; pytest loads this file before the test modules here.
On a GPU machine the kernels stay compiled: the CPU interpreter cases skip and the CUDA cases
run the real kernels.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
