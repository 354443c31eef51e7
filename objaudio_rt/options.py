"""The names a user picks from, defined once (plain Python: the CLI imports this before torch).

    SAMPLERS     samplers.SamplerPlan.build
    UNION_MODES  how Pipeline.generate_many generates a union `A | B`
    BACKENDS     backends.make_backend
    DTYPE_NAMES  the precisions a backend option may name (backends.base.DTYPES maps them to torch)
"""
SAMPLERS = ("ddim", "dpmpp")
UNION_MODES = ("compose", "mask")
BACKENDS = ("eager", "fast", "onnxruntime", "tensorrt")
DTYPE_NAMES = ("fp32", "fp16", "bf16")
