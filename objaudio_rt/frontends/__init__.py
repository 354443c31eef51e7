"""The front ends: who asks for a generation.

    cli         the `objaudio` command (generate, batch, info, demo, serve, assemble)
    jobs        `objaudio batch` job lists (JSONL or a folder), checked before the model loads
    outputs     WAV and picture files written together, atomically
    viz         the overview picture: scene, selection, patch weights, spectrogram
    serve/      the HTTP service and its click-to-hear page (FastAPI; Ray Serve)
"""
