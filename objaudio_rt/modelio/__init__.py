"""Model I/O: the networks, and reading and writing them.

    model       ObjaudioModel (the networks) and GraphModel (a checkpoint without them), Calibration
    networks    the network wrappers: the exact computation the runtime calls and `export/` exports
    encoders    CLIP image and CLAP text encoders, preprocessing, tokenizers
    upstream    loaders of upstream weights (diffusers AudioLDM, open_clip, SAM .pth)
    checkpoint  the checkpoint folder: safetensors, config.json, manifest with hashes
    artifacts   fingerprints, JSON artifact reading, atomic writes, platform identity, cache folders
    sam         Segment Anything: loading and the per-scene segmenter
"""
