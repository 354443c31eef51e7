"""The overview picture: the selection outlined and the rest of the scene dimmed (a red tint alone
turned a yellow bird merely orange), and each spectrogram in dB with its colour bar."""
import numpy as np

from objaudio_rt.core.selection import Mask
from objaudio_rt.frontends.viz import DB_PER_NEPER, DIM_OUTSIDE, OUTLINE, overview_figure, render_overview


def test_selection_is_outlined_and_spectrogram_has_a_db_bar(tiny_pipe, scene_image, square_mask):
    scene = tiny_pipe.encode_image(scene_image)
    sel, whole = tiny_pipe.generate_many(scene, [Mask(square_mask), None], steps=1, duration=0.32, progress=False)
    fig = overview_figure(scene_image, [("square", sel), ("whole scene", whole)])
    axes = fig.axes
    scenes, spectrograms, bars = axes[0::3][:2], axes[2::3][:2], axes[6:]
    assert len(axes) == 8 and [b.get_ylabel() for b in bars] == ["dB", "dB"]

    shown = scenes[0].images[0].get_array()                               # (H, W, 3) as drawn
    outside = ~square_mask
    np.testing.assert_array_equal(shown[outside], (scene_image[outside] * DIM_OUTSIDE + 0.5).astype(np.uint8))
    np.testing.assert_array_equal(shown[square_mask], scene_image[square_mask])
    outlines = [c for c in scenes[0].collections if hasattr(c, "levels")]
    assert [tuple(c.get_linewidths()) for c in outlines] == [(w,) for _, w in OUTLINE]
    edge = np.concatenate([p.vertices for p in outlines[1].get_paths()])     # (N, 2) x, y of the outline
    assert edge[:, 0].min() >= 9 and edge[:, 0].max() <= 40 and edge[:, 1].min() >= 9 and edge[:, 1].max() <= 40
    assert not scenes[1].collections and np.array_equal(scenes[1].images[0].get_array(), scene_image)

    db = spectrograms[0].images[0].get_array()
    np.testing.assert_allclose(db, DB_PER_NEPER * sel.mel.T.numpy(), rtol=1e-6)
    assert render_overview(scene_image, [("square", sel)])[:4] == b"\x89PNG"


def test_a_loop_shows_its_start_again_after_the_loop_point(tiny_pipe, scene_image, square_mask):
    from objaudio_rt.frontends.viz import LOOP_AGAIN

    scene = tiny_pipe.encode_image(scene_image)
    (loop,) = tiny_pipe.generate_many(scene, [Mask(square_mask)], steps=1, duration=0.4, loop=True, progress=False)
    fig = overview_figure(scene_image, [("loop", loop)])
    spec = fig.axes[2]
    seconds = loop.wave.numel() / loop.sample_rate
    (marker,) = [line for line in spec.lines if line.get_label() == "loop point"]
    assert marker.get_xdata()[0] == seconds
    frames = loop.mel.shape[0]
    drawn = spec.images[0].get_array()                                  # (n_mels, frames + again)
    again = max(1, int(frames * LOOP_AGAIN))
    assert drawn.shape[1] == frames + again
    np.testing.assert_allclose(drawn[:, frames:], DB_PER_NEPER * loop.mel[:again].T.numpy(), rtol=1e-6)
