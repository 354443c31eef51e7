"""A checkpoint that carries its few-step path (issue 20): training.attach_fewstep writes a guidance-distilled
student into its teacher's fewstep/ folder, the runtime loads it by the teacher's name when its record
says the bar held, and --full / path="full" keeps the 20-step path one flag away. `tiny` random weights."""
import json
import shutil

import pytest
import torch

from objaudio_rt import Pipeline
from objaudio_rt.core.config import ModelSource
from objaudio_rt.core.errors import ObjaudioError
from objaudio_rt.core.options import RunOptions
from objaudio_rt.core.selection import Mask
from objaudio_rt.modelio.artifacts import model_fingerprint
from objaudio_rt.modelio.checkpoint import checkpoint_fingerprint, describe, load_checkpoint
from training.attach_fewstep import main as attach_main

from .students import tiny_teacher_and_student

METRICS = {"object_accuracy": 0.74, "leakage": 0.27, "silent_accuracy": 1.0, "union_recall": 0.35,
           "union_recall_mask": 0.28, "text_vs_mask_gap": 0.05, "fad": 565.0}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("fewstep")
    teacher_dir, student_dir = tiny_teacher_and_student(root)
    return root, teacher_dir, student_dir


def _report(path, steps, **changes):
    data = {**METRICS, "scenes": 80, "selections": 554, "sampler": "dpmpp", "steps": steps, "cfg": 2.0,
            "options": None, "silence_gate": False, **changes}
    path.write_text(json.dumps(data))
    return str(path)


def _attach(folders, tmp_path, **student_changes):
    root, teacher_dir, student_dir = folders
    teacher = tmp_path / "teacher"
    shutil.copytree(teacher_dir, teacher)
    pair = f"{_report(tmp_path / 't.json', 20)}:{_report(tmp_path / 's.json', 4, **student_changes)}"
    assert attach_main(["--teacher", str(teacher), "--student", str(student_dir), "--pair", pair]) == 0
    return teacher


def _latents(pipe, scene_image, square_mask, **run):
    rows = pipe.conditions(pipe.encode_image(scene_image), [Mask(square_mask)])
    return pipe.sample(rows, RunOptions(seed=1, **run), progress=False)


def test_a_path_that_held_the_bar_is_what_the_name_loads(folders, tmp_path, scene_image, square_mask):
    _, teacher_dir, student_dir = folders
    teacher = _attach(folders, tmp_path, object_accuracy=0.72, leakage=0.29)        # within 0.03: held
    assert describe(teacher)["fewstep"]["default"] is True
    fewstep = Pipeline.from_pretrained(teacher)
    assert fewstep.config.distilled is not None and fewstep.config.default_steps == 4
    standalone = Pipeline.from_pretrained(student_dir)
    assert model_fingerprint(fewstep.model) == model_fingerprint(standalone.model) == checkpoint_fingerprint(
        teacher / "fewstep")
    assert torch.equal(_latents(fewstep, scene_image, square_mask), _latents(standalone, scene_image, square_mask))
    full = Pipeline.from_pretrained(teacher, path="full")                        # the 20-step path, one flag away
    assert full.config.distilled is None and model_fingerprint(full.model) == checkpoint_fingerprint(teacher_dir)
    assert ModelSource.parse(str(teacher)).path == "fewstep" and ModelSource.parse(str(teacher), "full").path == "full"
    # only the student's own files are carried: the rest is read from the folder above
    carried = set(json.loads((teacher / "fewstep" / "manifest.json").read_text())["files"])
    assert {"unet.safetensors", "guidance_embedding.safetensors"} <= carried
    assert not carried & {"vae.safetensors", "vocoder.safetensors", "image_encoder.safetensors"}


def test_a_path_that_missed_the_bar_is_carried_not_the_default(folders, tmp_path):
    teacher = _attach(folders, tmp_path, object_accuracy=0.70)                   # -0.04: missed
    record = describe(teacher)["fewstep"]
    assert record["default"] is False and "object_accuracy" in record["failed"][0]
    assert Pipeline.from_pretrained(teacher).config.distilled is None
    assert Pipeline.from_pretrained(teacher, path="fewstep").config.distilled is not None


def test_too_few_selections_are_not_a_default(folders, tmp_path):
    teacher = _attach(folders, tmp_path, selections=554)
    assert describe(teacher)["fewstep"]["default"] is True
    root, _, student_dir = folders
    pair = f"{_report(tmp_path / 't2.json', 20, selections=90)}:{_report(tmp_path / 's2.json', 4, selections=90)}"
    assert attach_main(["--teacher", str(teacher), "--student", str(student_dir), "--pair", pair]) == 0
    assert describe(teacher)["fewstep"]["default"] is False                       # replaced, and 90 < 500


def test_a_student_run_at_more_steps_ships_at_the_steps_it_was_measured_at(folders, tmp_path, capsys):
    root, teacher_dir, student_dir = folders
    teacher = tmp_path / "teacher"
    shutil.copytree(teacher_dir, teacher)
    at8 = f"{_report(tmp_path / 't.json', 20)}:{_report(tmp_path / 's8.json', 8)}"
    args = ["--teacher", str(teacher), "--student", str(student_dir), "--pair", at8]
    assert attach_main(args) == 2                                  # measured at 8, made for 4: refused
    assert "ran dpmpp at 8 steps but the attached path runs dpmpp at 4" in capsys.readouterr().err
    assert not (teacher / "fewstep").exists()
    at4 = f"{_report(tmp_path / 't.json', 20)}:{_report(tmp_path / 's4.json', 4)}"
    assert attach_main([*args[:4], "--pair", at4, "--steps", "8"]) == 2       # and the other way round
    assert "--steps 4" in capsys.readouterr().err
    assert attach_main([*args, "--steps", "8"]) == 0
    record = describe(teacher)["fewstep"]
    assert record["default"] is True and record["pairs"][0]["student_path"] == {"sampler": "dpmpp", "steps": 8}
    fewstep = Pipeline.from_pretrained(teacher)
    assert fewstep.config.distilled is not None and fewstep.config.default_steps == 8
    standalone = Pipeline.from_pretrained(student_dir)             # the same networks, only the default moved
    assert standalone.config.default_steps == 4
    ours, theirs = fewstep.model.unet.state_dict(), standalone.model.unet.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert attach_main([*args, "--steps", "0"]) == 2
    assert "--steps must be >= 1" in capsys.readouterr().err
    cfg6 = f"{_report(tmp_path / 't.json', 20)}:{_report(tmp_path / 's6.json', 8, cfg=6.0)}"
    assert attach_main([*args[:4], "--pair", cfg6, "--steps", "8"]) == 2     # another guidance than it ships at
    assert "ran at guidance 6.0 but the attached path runs at 2" in capsys.readouterr().err


def test_damaged_or_mismatched_paths_say_what_to_do(folders, tmp_path, capsys):
    root, teacher_dir, student_dir = folders
    teacher = _attach(folders, tmp_path)
    unet = teacher / "fewstep" / "unet.safetensors"
    unet.write_bytes(unet.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ObjaudioError, match="checksum mismatch"):
        Pipeline.from_pretrained(teacher)
    assert Pipeline.from_pretrained(teacher, path="full").config.distilled is None   # the teacher still loads
    shutil.rmtree(teacher)
    teacher = _attach(folders, tmp_path)
    vae = teacher / "vae.safetensors"                                # a shared file, damaged in the base
    vae.write_bytes(vae.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ObjaudioError, match="checksum mismatch"):
        Pipeline.from_pretrained(teacher)
    with pytest.raises(ObjaudioError, match="carries no few-step path"):
        ModelSource.parse(str(teacher_dir), "fewstep")
    with pytest.raises(ObjaudioError, match="one path only"):
        ModelSource.parse("random:tiny", "full")
    moved = tmp_path / "elsewhere"                                  # a carried path out of its folder
    shutil.copytree(teacher / "fewstep", moved)
    with pytest.raises(ObjaudioError, match="only a checkpoint's fewstep/ folder"):
        load_checkpoint(moved)
    other = tmp_path / "other"                                      # another teacher's student
    Pipeline.from_pretrained("random:tiny", seed=1).save_pretrained(other)
    pair = f"{_report(tmp_path / 't3.json', 20)}:{_report(tmp_path / 's3.json', 4)}"
    assert attach_main(["--teacher", str(other), "--student", str(student_dir), "--pair", pair]) == 2
    assert "distilled from another teacher" in capsys.readouterr().err
    assert not (other / "fewstep").exists()
    mismatched = f"{_report(tmp_path / 't4.json', 20)}:{_report(tmp_path / 's4.json', 4, scenes=16)}"
    assert attach_main(["--teacher", str(teacher), "--student", str(student_dir), "--pair", mismatched]) == 2
    assert "not of the same scenes" in capsys.readouterr().err


def test_the_command_line_and_exporters_take_full_and_fewstep(folders, tmp_path, capsys):
    from export.onnx import main as export_main
    from objaudio_rt.frontends.cli import main as cli_main

    teacher = _attach(folders, tmp_path)
    capsys.readouterr()
    assert cli_main(["info", "--checkpoint", str(teacher), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fewstep"]["default"] is True
    assert cli_main(["info", "--checkpoint", str(teacher)]) == 0
    assert "fewstep      the default path: dpmpp 4 steps, one UNet row a step (--full: " in capsys.readouterr().out
    out = tmp_path / "onnx"
    assert export_main(["--checkpoint", str(teacher), "--full", "--out", str(out), "--quiet", "--only", "unet"]) == 0
    manifest = json.loads((out / "export_manifest.json").read_text())
    assert manifest["checkpoint"]["fingerprint"] == checkpoint_fingerprint(teacher)
    assert export_main(["--checkpoint", str(teacher), "--out", str(tmp_path / "onnx2"), "--quiet",
                        "--only", "unet"]) == 0
    manifest = json.loads((tmp_path / "onnx2" / "export_manifest.json").read_text())
    assert manifest["checkpoint"]["fingerprint"] == checkpoint_fingerprint(teacher / "fewstep")


def test_the_service_names_the_path_it_runs(folders, tmp_path):
    from objaudio_rt.frontends.serve.main import build_service

    teacher = _attach(folders, tmp_path)
    fewstep = build_service(checkpoint=str(teacher)).describe()
    assert fewstep["model"] == "teacher (few-step path)" and fewstep["one_row_per_step"] is True
    assert fewstep["defaults"]["steps"] == 4 and fewstep["defaults"]["sampler"] == "dpmpp"
    full = build_service(checkpoint=str(teacher), path="full").describe()
    assert full["model"] == "teacher" and full["one_row_per_step"] is False


def test_the_benchmark_compares_a_carried_path_with_its_teacher(folders, tmp_path):
    """benchmarks.fewstep on a checkpoint that carries a few-step path: the teacher is its --full path and
    the student its carried one, without --student; a backend option reaches both and the report."""
    import subprocess
    import sys
    from pathlib import Path

    teacher = _attach(folders, tmp_path)
    out = tmp_path / "fewstep.json"
    run = subprocess.run([sys.executable, "-m", "benchmarks.fewstep", "--checkpoint", str(teacher), "--samplers",
                          "dpmpp", "--steps", "3", "--student-steps", "2", "--seed-start", "4", "--scenes", "1",
                          "--threads", "1", "--backend-option", "vocoder_dtype=bf16", "--json", str(out)],
                         cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [r["model"] for r in report["results"]] == ["teacher", "student"]
    assert report["provenance"]["checkpoint_fingerprint"] == checkpoint_fingerprint(teacher)
    assert report["provenance"]["student_fingerprint"] == checkpoint_fingerprint(teacher / "fewstep")
    assert report["config"]["backend_options"] == {"vocoder_dtype": "bf16"}
    assert report["config"]["student"] == str(teacher / "fewstep")


def test_refitting_the_gate_of_a_carrying_checkpoint_writes_its_teacher(folders, tmp_path):
    """training.silence_gate --out on a checkpoint whose default is its few-step path fits the gate of, and
    writes, the folder's own (teacher) networks: never a standalone copy of the student."""
    from training.silence_gate import main as gate_main

    teacher = _attach(folders, tmp_path)
    assert gate_main(["--checkpoint", str(teacher), "--out", str(tmp_path / "gated"), "--scenes", "6", "--val", "4",
                      "--epochs", "20", "--threads", "1"]) == 0
    gated, _ = load_checkpoint(tmp_path / "gated")
    assert gated.config.distilled is None and gated.config.silence_gate is not None
    full = Pipeline.from_pretrained(teacher, path="full").model
    assert torch.equal(gated.unet.conv_in.weight, full.unet.conv_in.weight)
