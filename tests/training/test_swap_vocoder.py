"""training.swap_vocoder: another vocoder under the same networks, the few-step path carried over and
still its default, from a checkpoint or from a vocoder run's saved state. `tiny` random weights."""
import copy
import json

import pytest
import torch
from safetensors.torch import save_file

from objaudio_rt import Pipeline
from objaudio_rt.core.config import ModelSource
from objaudio_rt.modelio.checkpoint import checkpoint_fingerprint, load_checkpoint, read_config
from training.swap_vocoder import main

from .students import tiny_teacher_and_student


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny teacher carrying a few-step student as its default path, and another tiny model's vocoder."""
    root = tmp_path_factory.mktemp("swap")
    folder, student = tiny_teacher_and_student(root)
    from objaudio_rt.modelio.checkpoint import attach_fewstep

    attach_fewstep(folder, student, {"pairs": []}, default=True)
    other = root / "other"
    Pipeline.from_pretrained("random:tiny", seed=1).save_pretrained(other)
    return folder, other


def _vocoder(folder):
    return load_checkpoint(folder)[0].vocoder.state_dict()


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_new_vocoder_replaces_the_old_and_nothing_else(teacher, tmp_path):
    folder, other = teacher
    out = tmp_path / "swapped"
    before = copy.deepcopy(_vocoder(folder))
    assert main(["--checkpoint", str(folder), "--vocoder-from", str(other), "--out", str(out)]) == 0
    assert _same(_vocoder(out), _vocoder(other)) and not _same(_vocoder(out), _vocoder(folder))
    old, new = load_checkpoint(folder)[0], load_checkpoint(out)[0]
    for name in ("unet", "vae", "grounding", "image_encoder"):
        assert _same(getattr(old, name).state_dict(), getattr(new, name).state_dict())
    # the few-step path comes along, still the default, its teacher now the new folder, the swap recorded
    config, _, _ = read_config(out / "fewstep")
    assert config.distilled.teacher == checkpoint_fingerprint(out) != checkpoint_fingerprint(folder)
    record = json.loads((out / "fewstep" / "config.json").read_text())["fewstep"]
    assert record["default"] is True and record["vocoder"]["source"] == str(other)
    assert record["vocoder"]["replaced"] != record["vocoder"]["by"]
    assert ModelSource.parse(str(out)).folder == out / "fewstep"                 # the name still loads the student
    fewstep_model, _ = load_checkpoint(out / "fewstep")
    assert _same(fewstep_model.vocoder.state_dict(), _vocoder(other))
    assert not _same(fewstep_model.unet.state_dict(), new.unet.state_dict())   # the student's own UNet
    assert _same(_vocoder(folder), before)                                        # the source untouched


def test_a_running_vocoder_stage_gives_its_partial_state(teacher, tmp_path):
    folder, other = teacher
    run = tmp_path / "run"
    (run / "stages").mkdir(parents=True)
    state = {f"live.{k}": v + 1.0 for k, v in _vocoder(other).items()}
    save_file(state, str(run / "stages" / "vocoder.partial.safetensors"), metadata={"step": "17"})
    out = tmp_path / "swapped"
    assert main(["--checkpoint", str(folder), "--vocoder-from", str(run), "--out", str(out), "--note", "adv"]) == 0
    assert _same(_vocoder(out), {k[5:]: v for k, v in state.items()})
    record = json.loads((out / "fewstep" / "config.json").read_text())["fewstep"]["vocoder"]
    assert record["step"] == 17 and record["note"] == "adv"


def test_a_widened_vocoder_is_swapped_in_with_its_width_recorded(teacher, tmp_path, capsys):
    """A vocoder widened (training/widen.py) and trained on: the new checkpoint's config.json, and its
    carried path's, say the new width; both load, and the default (few-step) path speaks through it."""
    import dataclasses

    from training.widen import widen_vocoder

    folder, _ = teacher
    model, _ = load_checkpoint(folder)
    wide_config = dataclasses.replace(model.config.vocoder,
                                      upsample_initial_channel=2 * model.config.vocoder.upsample_initial_channel)
    wide = widen_vocoder(model.vocoder, model.config.vocoder, wide_config)
    with torch.no_grad():
        wide.conv_post.weight.add_(0.01)                                 # trained on: the new channels speak
    out = tmp_path / "wide"
    assert main(["--checkpoint", str(folder), "--vocoder-from", str(_saved_run(tmp_path, wide)), "--out", str(out)]) == 0
    for path in (out, out / "fewstep"):
        config, _, _ = read_config(path)
        assert config.vocoder == wide_config
    assert _same(_vocoder(out), wide.state_dict())
    assert read_config(out / "fewstep")[0].distilled.teacher == checkpoint_fingerprint(out)
    pipe = Pipeline.from_pretrained(str(out))
    assert pipe.model.config.vocoder == wide_config and pipe.model.config.distilled is not None
    narrow = tmp_path / "narrow"                                           # and back is refused, saying why
    assert main(["--checkpoint", str(out), "--vocoder-from", str(folder), "--out", str(narrow)]) != 0
    assert "widened, not narrowed" in capsys.readouterr().err and not narrow.exists()


def _saved_run(tmp_path, vocoder):
    run = tmp_path / "run"
    (run / "stages").mkdir(parents=True)
    save_file({f"live.{k}": v.contiguous() for k, v in vocoder.state_dict().items()},
              str(run / "stages" / "vocoder.partial.safetensors"), metadata={"step": "3"})
    return run


def test_bad_sources_and_targets_are_refused_with_what_to_do(teacher, tmp_path, capsys):
    folder, other = teacher
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--checkpoint", str(folder), "--vocoder-from", str(empty), "--out", str(tmp_path / "o")]) != 0
    assert "wait for the run's first save" in capsys.readouterr().err
    assert main(["--checkpoint", str(folder), "--vocoder-from", str(other), "--out", str(folder), "--force"]) != 0
    assert "is the checkpoint itself" in capsys.readouterr().err
    big = tmp_path / "big"
    Pipeline.from_pretrained("random:tiny-synth", seed=0).save_pretrained(big)
    assert main(["--checkpoint", str(folder), "--vocoder-from", str(big), "--out", str(tmp_path / "o")]) != 0
    assert "do not fit" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.*"))    # nothing half-written
    assert main(["--checkpoint", str(folder / "fewstep"), "--vocoder-from", str(other), "--out", str(tmp_path / "o")]) != 0
    assert "carried few-step path" in capsys.readouterr().err
