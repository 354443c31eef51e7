"""The core: what a generation is, independent of how the networks run or who asks.

    config      presets, ModelConfig, ModelSource (what a checkpoint string means)
    options     the names a user picks from, RunOptions (resolved and checked once)
    errors      ObjaudioError and the one-line command wrapper
    threads     CPU thread counts, bounded by the cores
    images      image and mask files (or bytes) read and checked once
    audio       log-mel frontend, WAV writing, resampling (soxr)
    selection   Mask, Points, Box, Text, Whole and their unions
    grounding   mask -> patch weights, the grounding attention module
    samplers    DDIM, DPM-Solver++ 2M/3M, UniPC as coefficient tables
    denoise     the guided loop (composed conditions), written once
    longform    long clips and loops: overlapping windows, block decoding, the seam metric
    pipeline    Pipeline: image -> selection -> conditions -> sample -> audio
"""
