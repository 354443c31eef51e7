"""What a new user ran into: outputs onto inputs, presets that built random weights, crashes and
messages that were not one line, files left behind by a failed run. Each case: one line, exit 2,
no output left behind; or the right output."""
import json
import os
import shutil
import subprocess
import sys
import wave

import numpy as np
import pytest
from PIL import Image

from objaudio_rt.frontends.cli import DEMO, main

FAST = ["--checkpoint", "random:tiny", "--steps", "2", "--duration", "0.64"]


@pytest.fixture
def files(tmp_path, scene_image, square_mask):
    Image.fromarray(scene_image).save(tmp_path / "scene.png")
    Image.fromarray((square_mask * 255).astype(np.uint8)).save(tmp_path / "car.png")
    return tmp_path


def run(*args):
    return main([str(a) for a in args])


def one_line_error(capsys, match):
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if line.strip() and not line.startswith("denoise")]                 # the progress bar
    assert len(err) == 1 and err[0].startswith("objaudio: error:") and match in err[0], err


def test_readme_naming_never_collides_with_the_inputs(files, capsys):
    """`--mask car.png --out car.wav` and `--image scene.png --out scene.wav` (the README's own
    examples) run, and the inputs are untouched; the picture is OUT.overview.png."""
    before = {p: p.read_bytes() for p in (files / "scene.png", files / "car.png")}
    assert run("generate", "--image", files / "scene.png", "--mask", files / "car.png",
               "--out", files / "car.wav", *FAST) == 0
    assert run("generate", "--image", files / "scene.png", "--out", files / "scene.wav", *FAST) == 0
    assert all(p.read_bytes() == b for p, b in before.items())
    assert (files / "car.overview.png").is_file() and (files / "scene.overview.png").is_file()


@pytest.mark.parametrize("extra,match", [
    (["--png", "{d}/scene.png", "--force"], "is the input"),
    (["--png", "{d}/link.png", "--force"], "is the input"),                 # a hard link to the image
    (["--png", "{d}/x.jpg"], "must end in .png"),
    (["--no-png", "--png", "{d}/x.png"], "contradict"),
    (["--out", "{d}/folder.wav", "--force"], "is a folder"),
    (["--image", "{d}"], "is a folder"),
    (["--mask", "{d}"], "is a folder"),
    (["--steps", "1000"], "[1, 999]"),
    (["--seed", str(2 ** 70)], "2**64"),
    (["--cfg", "1e30"], "[1, 100]"),
    (["--duration", "1e-6"], "duration"),
    (["--format", "mp3"], "--format"),
    (["--sam-type", "vit_x", "--point", "5,5", "--sam-checkpoint", "{d}/sam.pth"], "--sam-type"),
    (["--point", "5,5", "--sam-checkpoint", "{d}/garbage.pth", "--sam-type", "vit_b"], "not a plain PyTorch"),
    (["--point", "5,5", "--sam-checkpoint", "{d}/mystery.pth"], "--sam-type"),
    (["--checkpoint", "tiny"], "random:tiny"),
    (["--checkpoint", "{d}/nomodel"], "no \"model\" section"),
    (["--image", "{d}/big.png"], "megapixels"),
])
def test_one_line_exit_2_nothing_written(files, capsys, extra, match):
    os.link(files / "scene.png", files / "link.png")
    (files / "folder.wav").mkdir()
    (files / "garbage.pth").write_bytes(b"\x80\x04not a state dict")
    (files / "sam.pth").write_bytes(b"x")
    (files / "mystery.pth").write_bytes(b"x")
    shutil.copytree(DEMO.parent / "tiny-synth", files / "nomodel")
    cfg = json.loads((files / "nomodel" / "config.json").read_text())
    del cfg["model"]
    (files / "nomodel" / "config.json").write_text(json.dumps(cfg))
    Image.new("1", (20000, 20000)).save(files / "big.png")
    before = sorted(p.name for p in files.iterdir())
    argv = ["generate", "--image", files / "scene.png", "--out", files / "o.wav", *FAST]
    argv += [a.format(d=files) for a in extra]
    assert run(*argv) == 2
    one_line_error(capsys, match)
    assert sorted(p.name for p in files.iterdir()) == before


def test_input_errors_come_before_the_model_loads(files, capsys, monkeypatch):
    from objaudio_rt.core.pipeline import Pipeline

    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(Pipeline, "from_pretrained", no_load)
    for extra in (["--mask", files / "missing.png"], ["--point", "500,5", "--sam-checkpoint", files / "scene.png"],
                  ["--out", files / "nodir" / "x.wav"], ["--steps", "0"], ["--duration", "999"], ["--duration", "0.1", "--loop"]):
        assert run("generate", "--image", files / "scene.png", "--out", files / "o.wav", *FAST, *extra) == 2
        capsys.readouterr()


def test_a_failed_picture_removes_the_wav(files, capsys, monkeypatch):
    from objaudio_rt.frontends import outputs

    real = outputs._write_file

    def fail_png(tmp, data, mode):
        if ".png." in tmp.name:
            raise OSError(28, "No space left on device")
        real(tmp, data, mode)

    monkeypatch.setattr(outputs, "_write_file", fail_png)
    assert run("generate", "--image", files / "scene.png", "--out", files / "o.wav", *FAST) == 2
    one_line_error(capsys, "disk is full")
    assert not (files / "o.wav").exists() and not list(files.glob(".*"))


def test_tiny_synth_by_name_is_the_embedded_model_and_random_is_said(files, capsys):
    from objaudio_rt import Pipeline
    from objaudio_rt.core.config import embedded_checkpoint

    assert Pipeline.from_pretrained("tiny-synth", path="full").source == embedded_checkpoint("tiny-synth")
    rnd = Pipeline.from_pretrained("random:tiny-synth", seed=3)
    assert rnd.source.startswith("random:tiny-synth") and "random weights" in rnd.source
    assert run("generate", "--image", files / "scene.png", "--out", files / "o.wav", "--no-png", *FAST) == 0
    assert "model: random:tiny" in capsys.readouterr().out


def test_same_seed_same_bytes_and_pcm16_reads_with_wave(files):
    outs = [files / f"{n}.wav" for n in "abc"]
    for out, fmt in zip(outs, ("float", "float", "pcm16")):
        assert run("generate", "--image", files / "scene.png", "--out", out, "--no-png", "--format", fmt,
                   "--seed", "7", *FAST) == 0
    assert outs[0].read_bytes() == outs[1].read_bytes()
    with wave.open(str(outs[2])) as w:
        assert w.getsampwidth() == 2 and w.getnframes() == int(0.64 * 16000)


def test_demo_out_naming_a_file_and_info_on_a_corrupt_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert run("demo", "--out", tmp_path / "afile", *FAST) == 2
    one_line_error(capsys, "is a file")
    ck = tmp_path / "ck"
    shutil.copytree(DEMO.parent / "tiny-synth", ck)
    (ck / "vae.safetensors").write_bytes(b"\x00" * 64)
    manifest = json.loads((ck / "manifest.json").read_text())
    from objaudio_rt.modelio.checkpoint import sha256_file

    manifest["files"]["vae.safetensors"] = sha256_file(ck / "vae.safetensors")
    (ck / "manifest.json").write_text(json.dumps(manifest))
    assert run("info", "--checkpoint", ck) == 2
    one_line_error(capsys, "truncated or corrupt")


def test_bad_inputs_are_answered_before_torch_loads(files):
    """Every bad input a file or flag shows is answered before torch is imported (2 s on a 2-core
    machine; the answer now takes about 0.2 s), with one line and exit 2."""
    existing = files / "taken.wav"
    existing.write_bytes(b"keep")
    Image.new("L", (40, 30)).save(files / "small.png")
    os.mkfifo(files / "pipe.png")
    (files / "jobs.jsonl").write_text('{"image": "scene.png"}\n{"image": "scene.png", "seed": -1}\n')
    image = ["generate", "--image", files / "scene.png"]
    cases = [(["generate", "--image", files / "nope.png", "--out", files / "o.wav"], "image file not found"),
             (image + ["--mask", files / "nope.png", "--out", files / "o.wav"], "mask file not found"),
             (image + ["--mask", files / "small.png", "--out", files / "o.wav"], "make the mask the same size"),
             (image + ["--point", "5,5", "--out", files / "o.wav"], "--sam-checkpoint"),
             (image + ["--box", "1,2,3", "--out", files / "o.wav"], "--box must be 4"),
             (image + ["--steps", "0", "--out", files / "o.wav"], "steps must be"),
             (image + ["--cfg", "1000", "--out", files / "o.wav"], "cfg"),
             (image + ["--format", "pcm8", "--out", files / "o.wav"], "--format"),
             (image + ["--threads", "0", "--out", files / "o.wav"], "--threads"),
             (image + ["--threads", "100000", "--out", files / "o.wav"], "--threads must be an integer from 1 to"),
             (image + ["--steps", "abc", "--out", files / "o.wav"], "argument --steps: must be an integer, got 'abc'"),
             (image + ["--sampler", "euler", "--out", files / "o.wav"], "argument --sampler: invalid choice"),
             (image + ["--seed", "1e30", "--out", files / "o.wav"], "argument --seed: must be an integer"),
             (["generate", "--image", files / "pipe.png", "--out", files / "o.wav"], "is not a regular file"),
             (image + ["--text", "x" * 10500, "--out", files / "o.wav"], "10500 characters: at most 200"),
             (image + ["--sample-rate", "1000", "--out", files / "o.wav"], "--sample-rate must be an integer"),
             (["batch", files / "jobs.jsonl", "--out", files / "wavs"], "jobs.jsonl line 2: seed must be"),
             (["serve", "--threads", "100000"], "--threads must be an integer from 1 to"),
             (image + ["--out", existing], "exists")]
    code = ("import json, sys; from objaudio_rt.frontends.cli import main\n"
            "rcs = [main(argv) for argv in json.loads(sys.argv[1])]\n"
            "print(json.dumps({'rcs': rcs, 'loaded': [m for m in ('torch', 'diffusers', 'transformers') "
            "if m in sys.modules]}))")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps([[str(a) for a in argv] for argv, _ in cases])],
                          capture_output=True, text=True, timeout=300)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert result == {"rcs": [2] * len(cases), "loaded": []}, (result, proc.stderr)
    assert len(errors) == len(cases), errors
    for (_, match), line in zip(cases, errors):
        assert line.startswith("objaudio: error:") and match in line, (match, line)
    assert existing.read_bytes() == b"keep" and not (files / "o.wav").exists() and not (files / "wavs").exists()


def test_version_is_one_line(capsys):
    from objaudio_rt import __version__

    with pytest.raises(SystemExit) as exc:                           # argparse's version action exits 0
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"objaudio {__version__}"


def test_no_library_warnings_reach_the_user(tiny_pipe, scene_image, recwarn):
    """matplotlib's missing-glyph warnings (emoji, CJK labels) and diffusers' float32 notice when
    the fast backend casts its networks are not printed."""
    import logging

    from objaudio_rt.backends.fast import FastBackend
    from objaudio_rt.modelio.model import ObjaudioModel
    from objaudio_rt.frontends.viz import render_overview

    gen = tiny_pipe.generate_many(tiny_pipe.encode_image(scene_image), [None], steps=1, duration=0.32,
                                  progress=False)[0]
    png = render_overview(scene_image, [("🔔 鐘の音", gen)])
    assert png[:4] == b"\x89PNG"
    assert not [w for w in recwarn if "Glyph" in str(w.message)]
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("diffusers").addHandler(handler)
    try:
        FastBackend(ObjaudioModel.random(tiny_pipe.config, 0), tiny_pipe.device)
    finally:
        logging.getLogger("diffusers").removeHandler(handler)
    assert not [r for r in records if "float32" in r.getMessage()]


def test_readme_command_line_examples_run_on_the_bundled_scene(tmp_path, monkeypatch, capsys):
    """Every `objaudio generate`/`info` line of the README's command-line block that needs no
    downloaded file runs as written (shortened with --steps 2 --duration 0.5 to keep the suite fast)."""
    import shlex

    readme = (DEMO.parents[2] / "README.md").read_text()
    block = readme.split("## Command line", 1)[1].split("```", 2)[1].replace("\\\n", " ")   # joined continuations
    lines = [ln.split("#")[0].strip() for ln in block.splitlines()]
    runnable = [ln for ln in lines if ln.startswith("objaudio ") and "sam-checkpoint" not in ln
                and "assemble" not in ln and " demo " not in f"{ln} "]
    assert len(runnable) >= 5
    monkeypatch.chdir(tmp_path)
    (tmp_path / "jobs.jsonl").write_text(json.dumps({"image": str(DEMO / "scene.png"), "mask": str(DEMO / "mask_bird.png"),
                                                     "out": "bird.wav", "seed": 3}) + "\n")
    for line in runnable:
        argv = shlex.split(line.replace("$D", str(DEMO)))[1:]
        extra = ["--steps", "2", "--duration", "0.5"] if argv[0] in ("generate", "batch") else []
        try:
            code = main(argv + extra)
        except SystemExit as exc:               # argparse's --version action exits after printing
            code = exc.code
        assert code == 0, (line, capsys.readouterr().err)
    assert (tmp_path / "bird.overview.png").is_file() and (tmp_path / "mix.stem-1.wav").is_file()
    assert (tmp_path / "wavs" / "bird.wav").is_file() and (tmp_path / "scenes" / "scene.wav").is_file()


def test_mask_rescale_changed_on_the_pipeline_keeps_the_checksum(tmp_path):
    from objaudio_rt import Mask, Pipeline

    pipe = Pipeline.from_pretrained()
    scene = pipe.encode_image(DEMO / "scene.png")
    soft = Mask(0.2 + 0.8 * (np.array(Image.open(DEMO / "mask_bird.png")) > 0))    # nowhere zero: moments rescale
    moments, _ = pipe.select(scene, soft)
    pipe.config.grounding.mask_rescale = "sum"
    summed, _ = pipe.select(scene, soft)
    assert not np.allclose(moments.numpy(), summed.numpy())
    again = Pipeline.from_pretrained(pipe.save_pretrained(tmp_path / "ck"))      # passes its manifest check
    assert again.config.grounding.mask_rescale == "sum"
