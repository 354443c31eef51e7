import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_pipe():
    from objaudio_rt import Pipeline

    return Pipeline.from_pretrained("tiny", device="cpu", seed=0)


@pytest.fixture(scope="session")
def scene_image() -> np.ndarray:
    """(80, 96, 3) uint8: a red square and a blue disc on grey, deterministic."""
    img = np.full((80, 96, 3), 128, np.uint8)
    img[10:40, 10:40] = (220, 30, 30)
    yy, xx = np.mgrid[:80, :96]
    img[(yy - 55) ** 2 + (xx - 70) ** 2 < 15 ** 2] = (30, 30, 220)
    return img


@pytest.fixture(scope="session")
def square_mask() -> np.ndarray:
    m = np.zeros((80, 96), bool)
    m[10:40, 10:40] = True
    return m


@pytest.fixture(scope="session")
def disc_mask() -> np.ndarray:
    yy, xx = np.mgrid[:80, :96]
    return (yy - 55) ** 2 + (xx - 70) ** 2 < 15 ** 2
