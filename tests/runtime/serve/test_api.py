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
    assert [s["selection"] for s in body["stems"]] == [0, 1] and body["union"] == "mix"
    stem0, _ = sf.read(io.BytesIO(base64.b64decode(body["stems"][0]["wav"])), dtype="float32")
    mix, _ = sf.read(io.BytesIO(base64.b64decode(body["mix"]["wav"])), dtype="float32")
    union = pipe.generate(scene, Mask(square_mask) | Mask(disc_mask), steps=FAST["steps"],
                          duration=FAST["duration"], seed=FAST["seed"], progress=False).numpy()
    tol = batch_tolerance(pipe, scene)
    assert np.abs(stem0 - want).max() <= tol and np.abs(mix - union).max() <= tol
    stem1, _ = sf.read(io.BytesIO(base64.b64decode(body["stems"][1]["wav"])), dtype="float32")
    assert np.abs(mix - (stem0 + stem1)).max() <= 2 * tol              # the default union "mix": the stems' sum
    assert body["mix"]["spectrogram_png"] and body["mix"]["mask_png"] and body["mix"]["seconds"] == FAST["duration"]


def test_scene_cache_drops_least_recently_used():
    from objaudio_rt.frontends.serve.scenes import SceneCache, SceneEntry, SceneNotFound

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
            "import objaudio_rt, objaudio_rt.frontends.cli\n"
            "assert not any(m.startswith(('fastapi', 'uvicorn', 'ray')) and sys.modules[m] for m in sys.modules)\n"
            "sys.exit(objaudio_rt.frontends.cli.main(['serve', '--port', '8123']))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "pip install 'objaudio[serve]'" in r.stderr, r.stderr


def tiff(array) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="TIFF")
    return buf.getvalue()


def test_an_upload_is_read_as_the_command_line_reads_the_file(live):
    """A float32 TIFF was an all-black scene, a NaN pixel was accepted (and got the clean image's
    scene_id), a LAB TIFF was accepted: the upload now goes through images.load_image."""
    from PIL import Image

    from objaudio_rt.core.images import load_image

    client = live.client()
    grey = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (48, 1))
    up = client.post("/v1/scenes", files={"image": ("f.tif", tiff(grey), "image/tiff")})
    assert up.status_code == 200, up.text
    shown = np.asarray(Image.open(io.BytesIO(client.get(f"/v1/scenes/{up.json()['scene_id']}/image").content)))
    assert np.array_equal(shown, load_image(tiff(grey))) and shown.max() == 255
    grey[5, 5] = np.nan
    buf = io.BytesIO()
    Image.new("LAB", (48, 48)).save(buf, format="TIFF")
    for data, words in ((tiff(grey), "contains NaN"), (buf.getvalue(), "LAB mode")):
        r = client.post("/v1/scenes", files={"image": ("x.tif", data, "image/tiff")})
        assert r.status_code == 400 and words in r.json()["error"], r.text


def _exchange(sock, request: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 request on an open socket -> (status, body); the connection stays open."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        body += chunk
    return int(head.split()[1]), body


def test_malformed_json_of_any_shape_is_400_and_the_connection_stays_usable(live):
    """A 4 KB nested body was a 500 (RecursionError) and reset the keep-alive connection."""
    import json
    import socket

    nested = b"[" * 4096
    with socket.create_connection(("127.0.0.1", live.port), timeout=60) as sock:
        for body in (nested, b'{"scene_id": ' + b"[" * 2000 + b"]" * 2000 + b"}"):
            status, answer = _exchange(sock, b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                                             b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            assert status == 400 and "JSON" in json.loads(answer)["error"], answer[:200]
        status, answer = _exchange(sock, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 200 and json.loads(answer)["status"] == "ok"
    client = live.client()
    ok = {"scene_id": "demo", "selections": [{"mask_index": 0}]}
    for body in [b"", b"\xff\xfe", b"[1, 2]", b'"text"', b"1" * 5000, b'{"scene_id": "demo", "steps": ' + b"9" * 4000 + b"}",
                 json.dumps({**ok, "steps": 1e308}).encode(), json.dumps({**ok, "cfg": 10 ** 400}).encode(),
                 b'{"scene_id": "demo", "selections": [{"mask_index": 0}], "cfg": NaN}',
                 json.dumps({**ok, "selections": {"mask_index": 0}}).encode(),
                 json.dumps({**ok, "selections": [{"points": [["a", 1]]}]}).encode(),
                 json.dumps({**ok, "selections": [{"points": [[1, 2, 7]]}]}).encode(),
                 json.dumps({**ok, "selections": [{"box": [[0, 0], 1, 2, 3]}]}).encode(),
                 json.dumps({**ok, "selections": [{"box": [0, 0, 10 ** 400, 5]}]}).encode(),
                 json.dumps({**ok, "selections": [{"mask_index": 1.5}]}).encode(),
                 json.dumps({**ok, "selections": [{"mask_png": ["x"]}]}).encode(),
                 json.dumps({**ok, "selections": [{"whole": "yes"}]}).encode(),
                 json.dumps({**ok, "selections": [[{"mask_index": 0}]]}).encode(),
                 json.dumps({**ok, "stems": "true"}).encode(), json.dumps({**ok, "union": ["mask"]}).encode()]:
        r = client.post("/v1/generate", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, (body[:80], r.status_code, r.text[:200])
        assert len(r.json()["error"]) < 400, r.json()["error"]
        r = client.post("/v1/segment", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, (body[:80], r.status_code, r.text[:200])


def test_fields_get_messages_that_say_what_is_wrong(live):
    """scene_id 123 said "missing"; text 123 said "at most 200 characters"; a missing selections list
    silently generated the whole scene; the seed range was [0, 2**63) against the CLI's 2**64 - 1."""
    from objaudio_rt.core.errors import ObjaudioError
    from objaudio_rt.core.options import RunOptions
    from objaudio_rt.core.selection import Text

    client = live.client()
    ok = {"scene_id": "demo", "selections": [{"mask_index": 0}], **FAST}

    def error(body) -> str:
        r = client.post("/v1/generate", json=body)
        assert r.status_code == 400, r.text
        return r.json()["error"]

    def runtime_message(fn) -> str:
        with pytest.raises(ObjaudioError) as exc:
            fn()
        return str(exc.value)

    assert "'scene_id' must be the string POST /v1/scenes returned" in error({**ok, "scene_id": 123})
    assert "'scene_id' is missing" in error({k: v for k, v in ok.items() if k != "scene_id"})
    assert "'text' must be a string" in error({**ok, "selections": [{"text": 123}]})
    long = "a" * 250
    assert error({**ok, "selections": [{"text": long}]}) == runtime_message(lambda: Text(long))
    assert "'selections' is missing" in error({"scene_id": "demo", **FAST})
    too_big = 2 ** 64
    cli = runtime_message(lambda: RunOptions(seed=too_big).resolve(live.service.pipe.config))
    assert error({**ok, "seed": too_big}) == cli and "[0, 2**64 - 1]" in cli
    r = client.post("/v1/generate", json={**ok, "seed": 2 ** 64 - 1})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav", r.text


def test_sample_rate_resamples_the_wavs(live):
    from objaudio_rt.core.audio import resample

    client = live.client()
    body = {"scene_id": "demo", "selections": [{"mask_index": 0}], **FAST}
    native, sr = sf.read(io.BytesIO(client.post("/v1/generate", json=body).content), dtype="float32")
    r = client.post("/v1/generate", json={**body, "sample_rate": 48000})
    wave48, sr48 = sf.read(io.BytesIO(r.content), dtype="float32")
    assert sr == 16000 and sr48 == 48000 and np.array_equal(wave48, resample(native, 16000, 48000))
    js = client.post("/v1/generate", json={**body, "sample_rate": 44100, "stems": True}).json()
    assert js["sample_rate"] == 44100
    assert sf.info(io.BytesIO(base64.b64decode(js["mix"]["wav"]))).samplerate == 44100
    r = client.post("/v1/generate", json={**body, "sample_rate": 1000})
    assert r.status_code == 400 and "'sample_rate' must be an integer from 8000 to 192000" in r.json()["error"]


def test_docs_load_nothing_from_another_host(live):
    """/docs loaded Swagger UI from a CDN (blank offline): its assets now come from this server."""
    import re

    client = live.client()
    html = client.get("/docs").text
    urls = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)
    assert len(urls) >= 3 and not [u for u in urls if "//" in u], urls
    for url in urls:
        r = client.get(url)
        assert r.status_code == 200 and len(r.content) > 100, url
    assert "SwaggerUIBundle" in client.get(next(u for u in urls if u.endswith(".js"))).text


def test_long_clips_and_loops_over_http(live):
    client = live.client()
    info = client.get("/health").json()["defaults"]
    assert info["max_duration"] == 60.0 and info["max_seconds_one_pass"] == live.service.pipe.config.max_seconds
    long = info["max_seconds_one_pass"] + 0.4
    body = {"scene_id": "demo", "selections": [{"mask_index": 0}], "steps": FAST["steps"], "seed": 3}
    wave, sr = sf.read(io.BytesIO(client.post("/v1/generate", json={**body, "duration": long}).content),
                       dtype="float32")
    assert wave.shape == (int(long * sr),)
    js = client.post("/v1/generate", json={**body, "duration": 1.01, "loop": True, "format": "json"}).json()
    assert js["loop"] is True and js["seconds"] == pytest.approx(1.0)    # snapped to whole latent frames
    looped, _ = sf.read(io.BytesIO(base64.b64decode(js["mix"]["wav"])), dtype="float32")
    assert looped.shape == (16000,) and np.isfinite(looped).all()
    wav = client.post("/v1/generate", json={**body, "duration": 1.0, "loop": True, "sample_rate": 48000}).content
    assert b"smpl" in wav and sf.info(io.BytesIO(wav)).frames == 48000          # loop points for a game engine
    for bad, message in [({"loop": "yes"}, "'loop' must be true or false"),
                         ({"duration": 61}, "'duration' must be in (0, 60]"),
                         ({"duration": 0.1, "loop": True}, "a loop must be at least")]:
        r = client.post("/v1/generate", json={**body, **bad})
        assert r.status_code == 400 and message in r.json()["error"], (bad, r.text)
