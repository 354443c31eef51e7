"""The API's contract: health, scenes (upload, demo, LRU), generate's WAV and JSON bodies, stems, and
the runtime staying importable without the web stack."""
import base64
import io
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from .conftest import FAST, MODEL, batch_tolerance


def png(array) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_health_names_model_device_backend(live):
    h = live.client().get("/health").json()
    assert h["status"] == "ok" and h["device"] == "cpu" and h["backend"] == "eager"
    assert MODEL in h["model"] and h["sam"] is False


def test_scenes_upload_demo_and_image(live, scene_image):
    client = live.client()
    up = client.post("/v1/scenes", files={"image": ("s.png", png(scene_image), "image/png")}).json()
    assert (up["width"], up["height"], up["masks"]) == (96, 80, [])
    again = client.post("/v1/scenes", files={"image": ("t.png", png(scene_image), "image/png")}).json()
    assert again["scene_id"] == up["scene_id"]                      # content-addressed: one cache entry
    demo = client.get("/v1/demo").json()
    assert demo["scene_id"] == "demo" and [m["name"] for m in demo["masks"]] == ["bird", "crowd", "fire", "rock"]
    r = client.get(f"/v1/scenes/{up['scene_id']}/image")
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(io.BytesIO(r.content))), scene_image)
    r = client.post("/v1/scenes", data={"x": "1"}, files={"other": ("s.png", b"x", "image/png")})
    assert r.status_code == 400 and "'image'" in r.json()["error"]


def test_generate_wav_equals_the_pipeline_and_stems_json(live, square_mask, disc_mask, scene_image):
    from objaudio_rt import Mask

    client = live.client()
    sid = client.post("/v1/scenes", files={"image": ("s.png", png(scene_image), "image/png")}).json()["scene_id"]
    as_png = lambda m: base64.b64encode(png(m.astype(np.uint8) * 255)).decode()      # noqa: E731
    sels = [{"mask_png": as_png(square_mask)}, {"mask_png": as_png(disc_mask)}]
    r = client.post("/v1/generate", json={"scene_id": sid, "selections": sels[:1], **FAST})
    wave, sr = sf.read(io.BytesIO(r.content), dtype="float32")
    pipe = live.service.pipe
    scene = live.service.scenes.get(sid).scene
    want = pipe.generate(scene, Mask(square_mask), steps=FAST["steps"], duration=FAST["duration"],
                         seed=FAST["seed"], progress=False).numpy()
    assert sr == 16000 and np.array_equal(wave, want)               # float WAV: the waveform's own bits

    body = client.post("/v1/generate", json={"scene_id": sid, "selections": sels, "stems": True, **FAST}).json()
    assert [s["selection"] for s in body["stems"]] == [0, 1] and body["union"] == "compose"
    stem0, _ = sf.read(io.BytesIO(base64.b64decode(body["stems"][0]["wav"])), dtype="float32")
    mix, _ = sf.read(io.BytesIO(base64.b64decode(body["mix"]["wav"])), dtype="float32")
    union = pipe.generate(scene, Mask(square_mask) | Mask(disc_mask), steps=FAST["steps"],
                          duration=FAST["duration"], seed=FAST["seed"], progress=False).numpy()
    tol = batch_tolerance(pipe, scene)
    assert np.abs(stem0 - want).max() <= tol and np.abs(mix - union).max() <= tol
    assert body["mix"]["spectrogram_png"] and body["mix"]["mask_png"] and body["mix"]["seconds"] == FAST["duration"]


def test_scene_cache_drops_least_recently_used():
    from objaudio_rt.serve.scenes import SceneCache, SceneEntry, SceneNotFound

    cache = SceneCache(2)
    for key in ("pinned", "a", "b"):
        cache.put(key, SceneEntry(scene=None, pinned=key == "pinned"))
    cache.get("a")
    cache.put("c", SceneEntry(scene=None))
    assert "b" not in cache and all(k in cache for k in ("a", "c", "pinned"))
    with pytest.raises(SceneNotFound, match="POST /v1/scenes"):
        cache.get("b")


def test_runtime_imports_without_the_web_stack():
    """objaudio_rt and its CLI import with fastapi/uvicorn/ray unavailable; `objaudio serve` then says what to install."""
    code = ("import sys\n"
            "for m in ('fastapi', 'uvicorn', 'starlette', 'ray'): sys.modules[m] = None\n"
            "import objaudio_rt, objaudio_rt.cli\n"
            "assert not any(m.startswith(('fastapi', 'uvicorn', 'ray')) and sys.modules[m] for m in sys.modules)\n"
            "sys.exit(objaudio_rt.cli.main(['serve', '--port', '8123']))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "pip install 'objaudio[serve]'" in r.stderr, r.stderr
