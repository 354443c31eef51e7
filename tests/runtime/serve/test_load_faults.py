"""Load and faults on a live loopback server: 50 concurrent requests, each checked against the same
request made alone; bad requests get their clear error and the service keeps serving."""
import base64
import io
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf

from .conftest import FAST, batch_tolerance, start

N_CLIENTS = 50


def wave_of(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    data, sr = sf.read(io.BytesIO(response.content), dtype="float32")
    assert sr == 16000
    return data


KINDS = [("demo", [{"mask_index": 0}], 0), ("demo", [{"mask_index": 2}], 0), ("demo", [{"mask_index": 0}], 1),
         ("demo", [{"mask_index": 0}, {"mask_index": 2}], 0), ("upload", [{"whole": True}], 0)]


def request_for(k: int, upload_id: str) -> dict:
    """Two scenes, single selections, a composed union and two seeds: a batch holds compatible groups
    (one generate_many call each) and odd ones."""
    scene, sels, seed = KINDS[k % len(KINDS)]
    return {"scene_id": "demo" if scene == "demo" else upload_id, "selections": sels, "seed": FAST["seed"] + seed,
            "steps": FAST["steps"], "duration": FAST["duration"]}


def test_fifty_concurrent_requests_match_each_alone(live):
    client = live.client()
    client.get("/v1/demo").raise_for_status()
    from PIL import Image

    img = (np.random.default_rng(0).random((64, 80, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    upload = client.post("/v1/scenes", files={"image": ("u.png", buf.getvalue(), "image/png")}).json()
    bodies = [request_for(k, upload["scene_id"]) for k in range(N_CLIENTS)]

    distinct = {json.dumps(b, sort_keys=True): b for b in bodies}
    alone = {key: wave_of(client.post("/v1/generate", json=b)) for key, b in distinct.items()}
    runs_before = len(live.service.batcher.batch_sizes)

    with ThreadPoolExecutor(N_CLIENTS) as pool:
        responses = list(pool.map(lambda b: live.client().post("/v1/generate", json=b), bodies))
    sizes = live.service.batcher.batch_sizes[runs_before:]
    assert sum(sizes) == N_CLIENTS and max(sizes) > 1, f"requests were not batched: {sizes}"

    tol = batch_tolerance(live.service.pipe, live.service.scenes.get("demo").scene)
    for body, response in zip(bodies, responses):
        got, want = wave_of(response), alone[json.dumps(body, sort_keys=True)]
        assert got.shape == want.shape == (int(FAST["duration"] * 16000),)
        err = float(np.abs(got - want).max())
        assert err <= tol, f"{body}: batched result is {err:.3g} from the same request alone (tolerance {tol:.3g})"


def test_faults_get_clear_errors_and_the_service_keeps_serving(live):
    from PIL import Image

    client = live.client()
    client.get("/v1/demo").raise_for_status()
    ok = {"scene_id": "demo", "selections": [{"mask_index": 1}], **FAST}

    r = client.post("/v1/generate", content=b'{"scene_id": "demo", ', headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = client.post("/v1/generate", json={**ok, "scene_id": "0123abcd"})
    assert r.status_code == 404 and "POST /v1/scenes" in r.json()["error"]

    big = io.BytesIO()
    Image.new("L", (5000, 4000)).save(big, format="PNG")               # tiny file, 20 M pixels
    r = client.post("/v1/scenes", files={"image": ("big.png", big.getvalue(), "image/png")})
    assert r.status_code == 413 and "pixels" in r.json()["error"]
    r = client.post("/v1/scenes", files={"image": ("huge.bin", b"\0" * (9 * 1024 * 1024), "image/png")})
    assert r.status_code == 413 and "bytes" in r.json()["error"]

    small = io.BytesIO()
    Image.new("L", (50, 40), 255).save(small, format="PNG")
    r = client.post("/v1/generate", json={**ok, "selections": [
        {"mask_png": base64.b64encode(small.getvalue()).decode()}]})
    assert r.status_code == 400 and "50x40 but the image is 112x112" in r.json()["error"]

    for body, words in [({**ok, "steps": 0}, "'steps' must be in"), ({**ok, "duration": 99}, "'duration'"),
                        ({**ok, "selections": [{"mask_index": 9}]}, "out of range"),
                        ({**ok, "selections": [{"points": [[5, 5, 1]]}]}, "Segment Anything"),
                        ({**ok, "selections": [{"text": " "}]}, "Text selection is empty"),
                        ({**ok, "cfg": 0.5}, "cfg"), ({**ok, "path": "/etc/passwd"}, "unknown field"),
                        ({**ok, "selections": [{"mask_index": 0}] * 9}, "at most 8")]:
        r = client.post("/v1/generate", json=body)
        assert r.status_code == 400 and words in r.json()["error"], (body, r.text)

    _disconnect_mid_generation(live.port, {**ok, "steps": 8})
    deadline = time.monotonic() + 120
    while live.service.batcher.pending and time.monotonic() < deadline:
        time.sleep(0.1)
    assert live.service.batcher.pending == 0, "the abandoned request is still held"
    wave_of(client.post("/v1/generate", json=ok))                     # still serving
    defaults = wave_of(client.post("/v1/generate", json={"scene_id": "demo", "selections": [{"whole": True}],
                                                         "steps": FAST["steps"]}))
    assert defaults.shape == (int(live.service.pipe.config.clip_seconds * 16000),)   # whole scene, model's clip
    assert client.get("/health").json()["status"] == "ok"


def _disconnect_mid_generation(port: int, body: dict) -> None:
    payload = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
        time.sleep(0.5)                                                # queued or running, then gone


def test_full_queue_gets_503_with_retry_after():
    from objaudio_rt.frontends.serve import ServeLimits

    server = start(ServeLimits(max_queue=1, batch_window_ms=0.0, max_batch=1))
    try:
        client = server.client()
        client.get("/v1/demo").raise_for_status()
        slow = {"scene_id": "demo", "selections": [{"whole": True}], "steps": 6, "duration": FAST["duration"]}
        with ThreadPoolExecutor(3) as pool:
            responses = list(pool.map(lambda _: server.client().post("/v1/generate", json=slow), range(3)))
        codes = sorted(r.status_code for r in responses)
        assert codes[0] == 200 and 503 in codes, codes
        busy = next(r for r in responses if r.status_code == 503)
        assert int(busy.headers["retry-after"]) >= 1 and "busy" in busy.json()["error"]
    finally:
        server.stop()


@pytest.mark.parametrize("timeout_s", [0.01])
def test_request_past_its_time_limit_gets_504(timeout_s):
    from objaudio_rt.frontends.serve import ServeLimits

    server = start(ServeLimits(request_timeout_s=timeout_s))
    try:
        client = server.client()
        client.get("/v1/demo").raise_for_status()
        slow = {**FAST, "steps": 40}            # a few hundred ms here: past the limit whatever the host's speed
        r = client.post("/v1/generate", json={"scene_id": "demo", "selections": [{"whole": True}], **slow})
        assert r.status_code == 504 and "limit per request" in r.json()["error"]
    finally:
        server.stop()
