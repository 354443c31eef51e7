"""The page in a real browser: Debian's chromium, headless, driven by Playwright.

Loads the page, opens the demo scene, clicks an object, waits for the audio element to hold a WAV
of the requested length, shift-clicks a second object, checks the stems, asks for a 12 s loop (past the
model's own maximum) and checks its length and that it plays on repeat. It saves a screenshot of the two-object
state (OBJAUDIO_SCREENSHOT=path also keeps it there, e.g. for the README's docs/serve-page.png).
"""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from .conftest import FAST

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DEMO = Path(__file__).resolve().parents[3] / "objaudio_rt" / "assets" / "demo"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="needs Debian's chromium (the Makefile installs it: apt-get install chromium)")


def inside(name: str) -> tuple[int, int]:
    """A pixel (x, y) of the named demo mask that no other demo mask covers."""
    from PIL import Image

    masks = {p.stem.removeprefix("mask_"): np.asarray(Image.open(p).convert("L")) > 127
             for p in DEMO.glob("mask_*.png")}
    own = masks[name] & ~np.any([m for n, m in masks.items() if n != name], axis=0)
    ys, xs = np.nonzero(own)
    k = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)      # the pixel nearest the centroid
    return int(xs[k]), int(ys[k])


def test_click_to_hear_in_chromium(live, tmp_path):
    duration = FAST["duration"]
    ready = ("([sel, want]) => { const a = document.querySelector(sel); "
             "return a && a.readyState >= 1 && Math.abs(a.duration - want) < 0.002; }")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1180, "height": 760})
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(live.url + "/")
            page.wait_for_function("() => document.getElementById('health').textContent.includes(' · ')")
            page.fill("#steps", str(FAST["steps"]))
            page.fill("#duration", str(duration))
            page.fill("#seed", str(FAST["seed"]))
            page.click("#demo")
            page.wait_for_selector("#canvas[data-scene-id='demo']")
            canvas = page.locator("#canvas")
            scale = canvas.bounding_box()["width"] / 112

            x, y = inside("bird")
            canvas.click(position={"x": (x + 0.5) * scale, "y": (y + 0.5) * scale})
            page.wait_for_function(ready, arg=["#mix audio", duration], timeout=240_000)
            src = page.eval_on_selector("#mix audio", "a => a.src")
            head = page.evaluate("async (u) => Array.from(new Uint8Array(await (await fetch(u)).arrayBuffer()))"
                                 ".slice(0, 12)", src)
            assert bytes(head[:4]) == b"RIFF" and bytes(head[8:12]) == b"WAVE"
            assert page.inner_text("#selections") == "bird"

            x, y = inside("fire")
            canvas.click(position={"x": (x + 0.5) * scale, "y": (y + 0.5) * scale}, modifiers=["Shift"])
            page.wait_for_selector("#result[data-stems='2']", timeout=240_000)
            for sel in ("#mix audio", "#stem-0 audio", "#stem-1 audio"):
                page.wait_for_function(ready, arg=[sel, duration], timeout=30_000)
            assert page.inner_text("#selections").split() == ["bird", "fire"]
            assert "mix: bird + fire" in page.inner_text("#mix h3")
            assert page.eval_on_selector("#mix img.spec", "i => i.naturalWidth") > 0
            shot = tmp_path / "page.png"
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 10_000
            if os.environ.get("OBJAUDIO_SCREENSHOT"):
                shutil.copy(shot, os.environ["OBJAUDIO_SCREENSHOT"])

            long = 12.0                        # past the model's max_seconds (10.24 s): made over windows
            page.check("#loop")
            page.fill("#duration", str(long))
            x, y = inside("bird")
            canvas.click(position={"x": (x + 0.5) * scale, "y": (y + 0.5) * scale})
            page.wait_for_selector("#result[data-loop='true']", timeout=240_000)
            page.wait_for_function(ready, arg=["#mix audio", long], timeout=240_000)
            assert page.eval_on_selector("#mix audio", "a => a.loop") and "seamless loop" in page.inner_text("#message")
            assert not errors, errors
        finally:
            browser.close()
