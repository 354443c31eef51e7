"""Training: every tiny-synth stage for a few steps on the `tiny` preset, resume, the JSONL
real-data recipe on upstream-format weights (tiny sizes standing in for AudioLDM-S), and DDP
with the gloo backend in 2 processes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from objaudio_rt.core.audio import MelConfig, mel_spectrogram
from objaudio_rt.modelio.checkpoint import load_checkpoint
from objaudio_rt.core.config import ModelConfig
from objaudio_rt.modelio.encoders import build_tokenizer
from objaudio_rt.core.pipeline import Pipeline
from training.data import SynthCache, read_manifest
from training.train import STAGES, main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    rc = main(["--preset", "tiny", "--out", str(out), "--scenes", "6", "--max-steps", "2", "--workers", "1",
               "--batch-size", "4", "--threads", "2"])
    assert rc == 0
    return out


def test_all_stages_write_logs_stages_and_a_loadable_checkpoint(synth_run):
    for stage in STAGES:
        info = json.loads((synth_run / "stages" / f"{stage}.json").read_text())
        assert info["steps"] == 2
        rows = (synth_run / "logs" / f"{stage}.csv").read_text().splitlines()
        assert rows[0].startswith("step,seconds") and len(rows) == 2
    cal = json.loads((synth_run / "stages" / "ldm.json").read_text())["calibration"]
    assert cal["num_samples"] > 0 and cal["attn_mean"] == pytest.approx(1 / 16)
    model, calibration = load_checkpoint(synth_run / "model")
    assert calibration.attn_std == pytest.approx(cal["attn_std"])
    assert model.vae.config.scaling_factor == pytest.approx(model.config.vae.scaling_factor)
    pipe = Pipeline.from_pretrained(synth_run / "model")
    scene = pipe.encode_image(np.full((64, 64, 3), 100, np.uint8))
    assert torch.isfinite(pipe.generate(scene, steps=2, progress=False)).all()


def test_cache_examples_are_consistent(synth_run):
    cache = SynthCache(synth_run / "cache")
    e = cache.num_examples
    assert cache.mels.shape == (e, 128, 64) and len(cache.captions) == e
    assert cache.target_coverage().shape == (e, 16)
    silent = cache.ex_kind == 2
    assert (cache.target_classes()[silent] == 0).all()
    assert all(cache.captions[i] == "silence" for i in torch.nonzero(silent).flatten().tolist())


def test_resume_skips_finished_stages_and_reruns_a_named_one(synth_run):
    before = {s: (synth_run / "stages" / f"{s}.json").stat().st_mtime_ns for s in STAGES}
    assert main(["--preset", "tiny", "--out", str(synth_run), "--max-steps", "2", "--workers", "1",
                 "--batch-size", "4"]) == 0
    assert {s: (synth_run / "stages" / f"{s}.json").stat().st_mtime_ns for s in STAGES} == before
    assert main(["--preset", "tiny", "--out", str(synth_run), "--stage", "vocoder", "--max-steps", "1",
                 "--workers", "1", "--batch-size", "2"]) == 0
    assert json.loads((synth_run / "stages" / "vocoder.json").read_text())["steps"] == 1
    assert (synth_run / "stages" / "clap.json").stat().st_mtime_ns == before["clap"]


def test_init_from_keeps_other_components(synth_run, tmp_path, capsys):
    args = ["--preset", "tiny", "--stage", "vocoder", "--scenes", "2", "--max-steps", "1", "--workers", "1",
            "--batch-size", "2", "--init-from", str(synth_run / "model")]
    assert main(args + ["--out", str(tmp_path / "v"), "--vocoder-examples", "2"]) == 0
    old, _ = load_checkpoint(synth_run / "model")
    new, _ = load_checkpoint(tmp_path / "v" / "model")
    assert torch.equal(old.unet.conv_in.weight, new.unet.conv_in.weight)
    assert not torch.equal(old.vocoder.conv_pre.weight, new.vocoder.conv_pre.weight)
    cache = SynthCache(tmp_path / "v" / "cache")                   # the first 2 examples' waveforms
    assert len(cache.voc_waves) == 2 < cache.num_examples
    second = mel_spectrogram(cache.voc_waves[1:2].float(), MelConfig(), normalize=False)[0, :cache.mels.shape[1]]
    assert (second - cache.mels[1].float()).abs().mean() < 0.05     # the second mel is its (fp16 in quiet bins)
    assert main(args + ["--out", str(tmp_path / "v"), "--vocoder-examples", "0"]) == 2   # the cache holds 2: say so
    err = capsys.readouterr().err
    assert "--vocoder-examples 0" in err and "new --out" in err
    assert main(args + ["--out", str(tmp_path / "neg"), "--vocoder-examples", "-1"]) == 2
    assert "0 for all of them" in capsys.readouterr().err
    assert main(args + ["--out", str(tmp_path / "all"), "--vocoder-examples", "0"]) == 0   # 0: every example's
    cache = SynthCache(tmp_path / "all" / "cache")
    assert len(cache.voc_waves) == cache.num_examples


# ---- the audioldm-s recipe on upstream-format weights ----------------------------------------

@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """An AudioLDM diffusers folder + open_clip state dict with `tiny` sizes, and a JSONL dataset."""
    import soundfile as sf

    root = tmp_path_factory.mktemp("upstream")
    cfg = ModelConfig.from_name("tiny")
    torch.manual_seed(0)
    ald = root / "audioldm"
    cfg.unet.build().save_pretrained(ald / "unet")
    cfg.vae.build().save_pretrained(ald / "vae")
    cfg.vocoder.build().save_pretrained(ald / "vocoder")
    cfg.text.build().save_pretrained(ald / "text_encoder")
    build_tokenizer(["a dog barking", "a bell ringing", "water flowing"], cfg.text.vocab_size).save_pretrained(
        ald / "tokenizer")
    visual = cfg.image.build()
    torch.save({f"visual.{k}": v for k, v in visual.state_dict().items()}, root / "clip.bin")
    data = root / "data"
    data.mkdir()
    rows = []
    rng = np.random.default_rng(0)
    for i, (sr, seconds, channels) in enumerate([(16000, 1.0, 1), (22050, 2.0, 2), (16000, 1.5, 1)]):
        Image.fromarray(rng.integers(0, 255, (48 + 8 * i, 64, 3), dtype=np.uint8)).save(data / f"img{i}.png")
        wave = 0.3 * rng.standard_normal((int(sr * seconds), channels)).astype(np.float32)
        sf.write(data / f"clip{i}.wav", wave, sr)
        rows.append({"image": f"img{i}.png", "audio": f"clip{i}.wav", "caption": ["a dog", "a bell", "water"][i]})
    (data / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    return {"audioldm": ald, "clip": root / "clip.bin", "manifest": data / "train.jsonl"}


def _real_args(upstream, out):
    return ["--preset", "audioldm-s", "--out", str(out), "--manifest", str(upstream["manifest"]),
            "--audioldm", str(upstream["audioldm"]), "--clip", str(upstream["clip"]), "--clip-seconds", "1.28",
            "--max-steps", "2", "--batch-size", "2", "--threads", "1"]


def test_manifest_paths_are_relative_to_the_manifest(upstream):
    items = read_manifest(upstream["manifest"])
    assert len(items) == 3 and items[1].audio.is_file() and items[2].caption == "water"


def test_real_recipe_preprocesses_and_trains(upstream, tmp_path):
    assert main(_real_args(upstream, tmp_path / "run")) == 0
    from safetensors.torch import load_file

    cache = load_file(str(tmp_path / "run" / "cache" / "latents.safetensors"))
    assert cache["latents"].shape == (3, 8, 32, 16) and cache["tokens"].shape == (3, 16, 32)
    model, calibration = load_checkpoint(tmp_path / "run" / "model")
    assert calibration.num_samples == 3 and model.config.clip_seconds == 1.28
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 1 and summary["ldm"]["steps"] == 2


def test_real_recipe_ddp_gloo_two_processes(upstream, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "training.train", *_real_args(upstream, tmp_path / "ddp")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ldm"]["steps"] == 2
    assert (tmp_path / "ddp" / "model" / "unet.safetensors").is_file()


def test_vocoder_width_widens_an_init_from_vocoder_and_trains_on_from_it(tmp_path, capsys):
    """--vocoder-width: the init-from vocoder keeps its weights in the wider one (training/widen.py), so one
    step of lr 1e-4 leaves every old weight within about that of where it was and the new channels' way
    into the old ones about that far from zero; a vocoder rebuilt from scratch would be 0.01 away."""
    from objaudio_rt.modelio.checkpoint import save_checkpoint
    from objaudio_rt.modelio.model import Calibration, ObjaudioModel

    config = ModelConfig.from_name("tiny")
    old = ObjaudioModel.random(config, 0)
    save_checkpoint(old, Calibration.uncalibrated(16), tmp_path / "old")
    args = ["--preset", "tiny", "--stage", "vocoder", "--scenes", "2", "--max-steps", "1", "--workers", "1",
            "--batch-size", "2", "--lr", "1e-4", "--init-from", str(tmp_path / "old")]
    assert main(args + ["--out", str(tmp_path / "v"), "--vocoder-width", "64"]) == 0
    assert "widened from 32 to 64 channels" in capsys.readouterr().err
    new, _ = load_checkpoint(tmp_path / "v" / "model")
    assert new.config.vocoder.upsample_initial_channel == 64 and new.config.unet == config.unet
    w_old, w_new = old.vocoder.conv_pre.weight, new.vocoder.conv_pre.weight
    assert w_new.shape[0] == 64
    assert (w_new[:32] - w_old).abs().max() < 3e-4
    up_old, up_new = old.vocoder.upsampler[0].weight, new.vocoder.upsampler[0].weight   # (in, out, k)
    assert up_new[32:, :up_old.shape[1]].abs().max() < 3e-4
    assert up_new[32:, up_old.shape[1]:].abs().max() > 3e-3                             # new into new: random
    assert main(args + ["--out", str(tmp_path / "w"), "--vocoder-width", "16"]) == 2    # the last stage empty
    assert "at least 32" in capsys.readouterr().err


def test_vocoder_kind_vocos_trains_a_vocos_from_scratch_beside_the_init_froms_networks(tmp_path, capsys):
    """--vocoder-kind vocos: the init-from HiFi-GAN is set aside for a Vocos of the default sizes, trained
    one step; the saved checkpoint loads it, the other networks as they were."""
    from objaudio_rt.core.config import VocosConfig
    from objaudio_rt.modelio.checkpoint import save_checkpoint
    from objaudio_rt.modelio.model import Calibration, ObjaudioModel
    from objaudio_rt.modelio.vocos import VocosVocoder

    old = ObjaudioModel.random(ModelConfig.from_name("tiny"), 0)
    save_checkpoint(old, Calibration.uncalibrated(16), tmp_path / "old")
    args = ["--preset", "tiny", "--stage", "vocoder", "--scenes", "2", "--max-steps", "1", "--workers", "1",
            "--batch-size", "2", "--init-from", str(tmp_path / "old"), "--seed", "3"]
    assert main(args + ["--out", str(tmp_path / "v"), "--vocoder-kind", "vocos"]) == 0
    assert "starting it from scratch" in capsys.readouterr().err
    new, _ = load_checkpoint(tmp_path / "v" / "model")
    assert isinstance(new.vocoder, VocosVocoder) and new.config.vocoder.vocos == VocosConfig()
    assert all(torch.equal(a, b) for a, b in zip(old.unet.state_dict().values(), new.unet.state_dict().values()))
    assert json.loads((tmp_path / "v" / "stages" / "vocoder.json").read_text())["steps"] == 1
    assert main(args + ["--out", str(tmp_path / "w"), "--vocoder-kind", "vocos", "--vocoder-width", "64"]) == 2
    assert "leave it out with --vocoder-kind vocos" in capsys.readouterr().err


def test_init_from_rebuilds_a_component_whose_preset_sizes_changed(tmp_path):
    from objaudio_rt.modelio.checkpoint import save_checkpoint
    from objaudio_rt.modelio.model import Calibration, ObjaudioModel

    config = ModelConfig.from_name("tiny")
    config.vocoder.upsample_initial_channel = 64           # wider than the preset's: not widened, rebuilt
    save_checkpoint(ObjaudioModel.random(config, 0), Calibration.uncalibrated(16), tmp_path / "old")
    assert main(["--preset", "tiny", "--out", str(tmp_path / "v"), "--stage", "vocoder", "--scenes", "2",
                 "--max-steps", "1", "--workers", "1", "--batch-size", "2",
                 "--init-from", str(tmp_path / "old")]) == 0
    new, _ = load_checkpoint(tmp_path / "v" / "model")
    assert new.config.vocoder == ModelConfig.from_name("tiny").vocoder
    assert new.config.unet == config.unet
    assert new.config.default_cfg == ModelConfig.from_name("tiny").default_cfg


def test_ablation_variants_train_a_fresh_grounding_and_report_a_table(synth_run, tmp_path):
    from training.ablate import VARIANTS
    from training.ablate import main as ablate

    out = tmp_path / "ablate"
    rc = ablate(["--init-from", str(synth_run / "model"), "--out", str(out), "--cache", str(synth_run / "cache"),
                 "--max-steps", "2", "--batch", "4", "--eval-scenes", "1", "--steps", "2", "--threads", "2"])
    assert rc == 0
    rows = json.loads((out / "ablation.json").read_text())
    assert list(rows) == list(VARIANTS)
    init, _ = load_checkpoint(synth_run / "model")
    for name, spec in VARIANTS.items():
        model, _ = load_checkpoint(out / name / "model")
        assert (model.config.grounding.attention, model.config.grounding.num_heads) == (spec["attention"],
                                                                                        spec["num_heads"])
        unet_same = all(torch.equal(a, b) for a, b in zip(model.unet.state_dict().values(),
                                                          init.unet.state_dict().values()))
        assert unet_same == spec["freeze_unet"], name                    # frozen: the UNet is untouched
        assert json.loads((out / name / "train.json").read_text())["steps"] == 2
        assert 0.0 <= rows[name]["acc"] <= 1.0 and rows[name]["scenes"] == 1
    assert (out / "ablation.md").read_text().count("\n") == 2 + len(VARIANTS)
    # a rerun on more test scenes evaluates again without training again
    trained = (out / "frozen" / "model" / "grounding.safetensors").read_bytes()
    assert ablate(["--init-from", str(synth_run / "model"), "--out", str(out), "--cache", str(synth_run / "cache"),
                   "--variants", "frozen", "--eval-scenes", "2", "--steps", "2"]) == 0
    assert (out / "frozen" / "model" / "grounding.safetensors").read_bytes() == trained
    assert json.loads((out / "frozen" / "eval_100_2.json").read_text())["scenes"] == 2
    assert ablate(["--init-from", str(synth_run / "model"), "--out", str(out), "--variants", "paper,sparse"]) == 2


# ---- the targeted fine-tune: example kinds and their shares of a batch -----------------------

def test_pair_examples_target_two_of_three_sounding_objects():
    from training.data import KINDS, SynthCacheConfig, _scene_examples
    from training.synthscenes import generate_scene

    seed = next(s for s in range(200) if sum(generate_scene(s, seconds=1.28).sounding) >= 3)
    scene = generate_scene(seed, seconds=1.28)
    ex = _scene_examples((seed, SynthCacheConfig(seconds=1.28, pairs=True)))
    pairs = [n for n, k in enumerate(ex["kinds"]) if k == KINDS.index("pair")]
    assert len(pairs) == 1
    assert KINDS.index("pair") not in _scene_examples((seed, SynthCacheConfig(seconds=1.28)))["kinds"]
    targets = np.flatnonzero(ex["targets"][pairs[0]])
    assert len(targets) == 2 and all(scene.sounding[i] for i in targets)
    caption = ex["captions"][pairs[0]]
    assert " while " in caption or " and " in caption                # names two objects


def _latent_set(kinds):
    from training.train_ldm import LatentSet

    e = len(kinds)
    return LatentSet(latents=torch.zeros(e, 1, 2, 2), text=torch.zeros(e, 2), tokens=torch.zeros(1, 4, 2),
                     ex_scene=torch.zeros(e, dtype=torch.int64), kind=torch.tensor(kinds))


def test_kind_weights_give_each_kind_its_share_of_a_batch():
    from training.train_ldm import example_weights

    data = _latent_set([0] * 6 + [1] * 3 + [2])                     # no pair examples
    w = example_weights(data, (0.25, 0.25, 0.5, 0.2))
    share = torch.stack([w[data.kind == k].sum() for k in range(3)])
    assert torch.allclose(share, torch.tensor([0.25, 0.25, 0.5]), atol=1e-6)        # the absent kind's share is dropped
    assert torch.allclose(w[:6], w[0].expand(6))                                       # uniform within a kind
    drawn = torch.multinomial(w, 20000, replacement=True, generator=torch.Generator().manual_seed(0))
    assert (data.kind[drawn] == 2).float().mean().item() == pytest.approx(0.5, abs=0.02)
    assert example_weights(data, None) is None


def test_busy_single_weighs_singles_of_busy_scenes_up_inside_their_kind():
    from training.train_ldm import example_weights

    # scene 0: two sounding objects (2 singles), scene 1: three (3 singles); one mixture and one silent each
    kinds = [0, 1, 1, 2, 0, 1, 1, 1, 2]
    data = _latent_set(kinds)
    data.ex_scene = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1])
    w = example_weights(data, (0.2, 0.5, 0.3, 0.0), busy_single=2.0)
    kind = data.kind
    share = torch.stack([w[kind == k].sum() for k in range(3)])
    assert torch.allclose(share, torch.tensor([0.2, 0.5, 0.3]), atol=1e-6)           # kind shares unchanged
    assert w[5].item() == pytest.approx(2 * w[1].item(), rel=1e-5)                  # busy single: twice as often
    assert torch.allclose(w[5:8], w[5].expand(3)) and torch.allclose(w[1:3], w[1].expand(2))
    assert w[0].item() == pytest.approx(w[4].item()) and w[3].item() == pytest.approx(w[8].item())
    assert torch.allclose(example_weights(data, (0.2, 0.5, 0.3, 0.0), busy_single=1.0),
                          example_weights(data, (0.2, 0.5, 0.3, 0.0)))
    from objaudio_rt.core.errors import ObjaudioError
    with pytest.raises(ObjaudioError, match="busy_single must be > 0"):
        example_weights(data, (0.2, 0.5, 0.3, 0.0), busy_single=0.0)


def test_hard_classes_weigh_their_singles_up_inside_the_kind():
    from objaudio_rt.core.errors import ObjaudioError
    from training.synthscenes import ALL_CLASSES
    from training.train_ldm import example_weights

    kinds = [0, 1, 1, 2, 0, 1, 1, 1, 2]
    data = _latent_set(kinds)
    data.ex_scene = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1])
    data.classes = torch.zeros(9, len(ALL_CLASSES))
    for e, c in ((1, "bell"), (2, "dog"), (5, "bird"), (6, "car"), (7, "bell"), (0, "bell")):
        data.classes[e, ALL_CLASSES.index(c)] = 1
    w = example_weights(data, (0.2, 0.5, 0.3, 0.0), busy_single=2.0, hard_classes=("bell", "bird"), hard_weight=3.0)
    assert torch.stack([w[data.kind == k].sum() for k in range(3)]).tolist() == pytest.approx([0.2, 0.5, 0.3])
    assert w[1].item() == pytest.approx(3 * w[2].item(), rel=1e-5)          # a hard single of a 2-object scene
    assert w[5].item() == pytest.approx(6 * w[2].item(), rel=1e-5)          # hard and busy: the product
    assert w[6].item() == pytest.approx(2 * w[2].item(), rel=1e-5)          # busy only
    assert w[0].item() == pytest.approx(w[4].item())                        # mixtures are not singles
    with pytest.raises(ObjaudioError, match="not SynthScenes classes"):
        example_weights(data, (0.2, 0.5, 0.3, 0.0), hard_classes=("bel",), hard_weight=2.0)
    data.classes = None
    with pytest.raises(ObjaudioError, match="target_classes"):
        example_weights(data, (0.2, 0.5, 0.3, 0.0), hard_classes=("bell",), hard_weight=2.0)


def test_kind_weights_errors_say_what_to_do():
    from objaudio_rt.core.errors import ObjaudioError
    from training.train_ldm import example_weights

    data = _latent_set([0, 1, 2])
    with pytest.raises(ObjaudioError, match="one share per example kind"):
        example_weights(data, (1.0, 1.0))
    with pytest.raises(ObjaudioError, match="share of 0"):
        example_weights(data, (0.0, 0.0, 0.0))
    data.kind = None
    with pytest.raises(ObjaudioError, match="latents.safetensors"):
        example_weights(data, (1.0, 1.0, 1.0))


def test_targeted_ldm_preset_fine_tunes_from_a_checkpoint(synth_run, tmp_path):
    from training.train import LDM_PRESETS

    assert LDM_PRESETS["targeted"].kind_weights is not None and LDM_PRESETS["tiny-synth"].kind_weights is None
    out = tmp_path / "ft"
    assert main(["--preset", "tiny", "--out", str(out), "--stage", "ldm", "--ldm-preset", "targeted", "--scenes", "4",
                 "--max-steps", "2", "--workers", "1", "--batch-size", "4", "--threads", "2",
                 "--init-from", str(synth_run / "model")]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recipe"]["ldm"]["kind_weights"] == list(LDM_PRESETS["targeted"].kind_weights)
    old, _ = load_checkpoint(synth_run / "model")
    new, _ = load_checkpoint(out / "model")
    assert torch.equal(old.vocoder.conv_pre.weight, new.vocoder.conv_pre.weight)
    assert not torch.equal(old.unet.conv_in.weight, new.unet.conv_in.weight)


def test_snapshot_turns_a_partial_save_into_a_checkpoint_with_the_ema_weights(synth_run, tmp_path):
    import copy
    import shutil

    from objaudio_rt.core.samplers import alphas_cumprod
    from training.snapshot import snapshot
    from training.train_components import save_partial
    from training.train_ldm import Denoiser, LdmConfig

    model, _ = load_checkpoint(synth_run / "model")
    run = tmp_path / "run"
    (run / "stages").mkdir(parents=True)
    (run / "cache").mkdir()
    shutil.copy(synth_run / "cache" / "latents.safetensors", run / "cache")
    acp = torch.from_numpy(alphas_cumprod(model.config.schedule))
    den = Denoiser(model.unet, model.grounding, model.config.unet.cond_dim, acp, LdmConfig())
    ema = copy.deepcopy(den)
    with torch.no_grad():
        ema.unet.conv_in.weight.add_(1.0)
        ema.grounding.pe.add_(0.5)
    save_partial(run / "stages" / "ldm.partial.safetensors", den, ema, torch.optim.AdamW(den.parameters()), 7)
    info = snapshot(run, synth_run / "model", tmp_path / "snap")
    assert info["step"] == 7 and info["weights"] == "ema"
    snap, calibration = load_checkpoint(tmp_path / "snap")
    assert torch.equal(snap.unet.conv_in.weight, ema.unet.conv_in.weight)
    assert not torch.equal(snap.unet.conv_in.weight, den.unet.conv_in.weight)
    assert torch.equal(snap.grounding.pe, ema.grounding.pe)
    assert torch.equal(snap.vocoder.conv_pre.weight, model.vocoder.conv_pre.weight)
    assert calibration.num_samples > 0
    assert json.loads((tmp_path / "snap.snapshot.json").read_text())["step"] == 7
    with pytest.raises(Exception, match="already exists"):
        snapshot(run, synth_run / "model", tmp_path / "snap")


def test_evaluate_ranges_concatenate_test_ranges_and_refuse_overlaps():
    from objaudio_rt.core.errors import ObjaudioError
    from training.evaluate import test_seeds
    from training.synthscenes import split_seeds

    assert test_seeds("3:2,10:1") == split_seeds("test", 2, start=3) + split_seeds("test", 1, start=10)
    with pytest.raises(ObjaudioError, match="overlap"):
        test_seeds("0:5,3:2")
    with pytest.raises(ObjaudioError, match="START:COUNT"):
        test_seeds("7")


def test_whole_prob_gives_masked_mixtures_the_whole_image(synth_run, tmp_path, monkeypatch):
    """With whole_prob 1, every masked mixture example is conditioned on all patches (what Whole() selects);
    other kinds keep their targets' coverage."""
    import dataclasses

    import training.train_ldm as tl
    from training.data import KINDS
    from training.train import LDM_PRESETS

    seen = []
    real = tl.substitute_masks

    def spy(a, cover, use_mask, attn_std, rescale):
        seen.append((cover.clone(), use_mask.clone()))
        return real(a, cover, use_mask, attn_std, rescale)

    monkeypatch.setattr(tl, "substitute_masks", spy)
    cfg = dataclasses.replace(LDM_PRESETS["targeted-v4"], mask_prob=1.0, whole_prob=1.0,
                              kind_weights=(0.5, 0.5, 0.0, 0.0))
    monkeypatch.setitem(LDM_PRESETS, "targeted-v4", cfg)
    out = tmp_path / "whole"
    assert main(["--preset", "tiny", "--out", str(out), "--stage", "ldm", "--ldm-preset", "targeted-v4", "--scenes",
                 "4", "--max-steps", "3", "--workers", "1", "--batch-size", "8", "--threads", "2",
                 "--init-from", str(synth_run / "model")]) == 0
    covers = torch.cat([c for c, _ in seen])
    full = (covers == 1).all(dim=1)
    assert full.any() and not full.all()          # the mixtures got every patch, the singles their object's
    data = tl.LatentSet.load(out / "cache" / "latents.safetensors")
    single = data.cover[data.kind == KINDS.index("single")]
    assert not (single == 1).all(dim=1).any()     # no single example covers the whole image by itself


def test_a_cache_built_in_this_process_leaves_its_thread_count_as_it_was(tmp_path):
    """Each scene pins the one thread a pool worker gets; built in-process (--workers 1) that pin used to
    outlive the cache, and every stage after it trained on one of the two cores."""
    import torch

    from training.data import SynthCacheConfig, build_synth_cache

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        build_synth_cache(SynthCacheConfig(scenes=2, seconds=1.28, workers=1), tmp_path / "cache", progress=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
