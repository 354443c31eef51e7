"""A shared Pipeline is safe to call from several threads: masks, text, points (SAM) and unions.

Two threads click on two different scenes through one SAM predictor, many times, with the
interpreter switching threads as often as it can; every result must equal the one-thread result.
"""
import sys
import threading

import numpy as np
import pytest
import torch

from objaudio_rt import Mask, Pipeline, Points, Text
from objaudio_rt.modelio.sam import SamSegmenter

ROUNDS = 16


@pytest.fixture(scope="module")
def sam_pipe(tiny_pipe):
    from segment_anything.build_sam import _build_sam

    torch.manual_seed(0)
    sam = _build_sam(encoder_embed_dim=32, encoder_depth=1, encoder_num_heads=2, encoder_global_attn_indexes=[0])
    pipe = Pipeline(tiny_pipe.model, tiny_pipe.calibration)
    pipe._segmenter = SamSegmenter(sam.eval())
    return pipe


def test_selections_from_two_threads_on_two_scenes(sam_pipe, scene_image, square_mask):
    other = np.ascontiguousarray(255 - scene_image[::-1, ::-1])
    scenes = [sam_pipe.encode_image(scene_image), sam_pipe.encode_image(other)]
    work = [Points(((25, 25),)), Points(((70, 55), (10, 70)), (1, 0)), Mask(square_mask),
            Text("a dog barking"), Mask(square_mask) | Text("a bell ringing") | Points(((25, 25),))]
    expected = [[sam_pipe.select(s, sel) for sel in work] for s in scenes]
    assert not np.array_equal(expected[0][0][1], expected[1][0][1])   # the two scenes' SAM masks differ
    wrong: list[str] = []

    def clicker(i: int) -> None:
        for r in range(ROUNDS):
            for k, sel in enumerate(work):
                weights, pixel = sam_pipe.select(scenes[i], sel)
                w0, p0 = expected[i][k]
                if not torch.equal(weights, w0) or (p0 is not None and not np.array_equal(pixel, p0)):
                    wrong.append(f"thread {i} round {r} selection {k}")

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=clicker, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not wrong, f"{len(wrong)} of {2 * ROUNDS * len(work)} results came from the other thread: {wrong[:3]}"
