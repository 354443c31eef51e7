"""Kernel tests run the Triton kernels on the CPU through Triton's interpreter.

`triton.jit` chooses interpreted mode when a kernel is defined, so the variable must be set
before objaudio_rt.kernels is imported; pytest loads this file before the test modules here.
On a GPU machine, set OBJAUDIO_TEST_COMPILED_TRITON=1 to leave the kernels compiled (the CPU
interpreter cases then skip and the CUDA cases run the real kernels).
"""
import os

if os.environ.get("OBJAUDIO_TEST_COMPILED_TRITON") != "1":
    os.environ.setdefault("TRITON_INTERPRET", "1")
