"""Guidance distillation (training/distill.py) and the runtime's one-row loop for its students
(denoise.guided_loop with a guidance embedding), on the `tiny` preset with random weights."""
import copy
import json

import pytest
import torch

from objaudio_rt import Pipeline
from objaudio_rt.core.errors import ObjaudioError
from objaudio_rt.core.guidance import GuidanceEmbedding
from objaudio_rt.core.options import RunOptions
from objaudio_rt.core.samplers import SamplerPlan, reference_step
from objaudio_rt.core.selection import Mask, Union, Whole
from objaudio_rt.modelio.artifacts import model_fingerprint
from objaudio_rt.modelio.checkpoint import load_checkpoint
from training.distill import DistillConfig, Student, main, student_checkpoint


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teacher") / "tiny"
    Pipeline.from_pretrained("random:tiny", seed=0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory, teacher_dir):
    out = tmp_path_factory.mktemp("distill")
    assert main(["--teacher", str(teacher_dir), "--out", str(out), "--scenes", "8", "--max-steps", "2",
                 "--batch-size", "4", "--threads", "2", "--steps", "3"]) == 0
    return out


def test_the_run_writes_a_distilled_checkpoint_made_for_its_sampler(run, teacher_dir):
    model, _ = load_checkpoint(run / "model")
    teacher, _ = load_checkpoint(teacher_dir)
    d = model.config.distilled
    assert d is not None and (d.cfg_min, d.cfg_max) == (1.0, 8.0)
    assert d.teacher == model_fingerprint(teacher)
    assert (model.config.default_steps, model.config.default_sampler) == (3, "dpmpp")
    assert isinstance(model.guidance_embedding, GuidanceEmbedding)
    assert teacher.config.distilled is None and "distilled" not in teacher.config.to_dict()   # old fingerprints hold
    for name in ("vae", "vocoder", "grounding"):                                               # only the UNet is new
        for (k, a), b in zip(getattr(model, name).state_dict().items(), getattr(teacher, name).state_dict().values()):
            assert torch.equal(a, b), k


def test_a_rerun_continues_from_the_saved_state(run, teacher_dir):
    assert main(["--teacher", str(teacher_dir), "--out", str(run), "--max-steps", "2", "--batch-size", "4",
                 "--threads", "2", "--steps", "3"]) == 0
    records = [json.loads(line) for line in (run / "logs" / "runs.jsonl").read_text().splitlines()]
    assert [r["metrics"]["steps_total"] for r in records] == [2, 4]


def test_snapshot_writes_the_saved_ema(run, teacher_dir, tmp_path):
    assert main(["--teacher", str(teacher_dir), "--out", str(run), "--snapshot", str(tmp_path / "snap")]) == 0
    snap, _ = load_checkpoint(tmp_path / "snap")
    final, _ = load_checkpoint(run / "model")
    for a, b in zip(snap.unet.state_dict().values(), final.unet.state_dict().values()):
        assert torch.equal(a, b)


def test_the_student_learns_the_guided_prediction(teacher_dir, tmp_path):
    """60 steps: the student's error against the teacher's guided eps falls well below that of the
    teacher's conditional row alone (what the student starts from), and the UNet itself trains."""
    assert main(["--teacher", str(teacher_dir), "--out", str(tmp_path), "--scenes", "8", "--max-steps", "60",
                 "--batch-size", "8", "--threads", "2", "--lr", "1e-4"]) == 0
    rows = (tmp_path / "logs" / "distill.csv").read_text().splitlines()
    head = rows[0].split(",")
    last = dict(zip(head, map(float, rows[-1].split(","))))
    assert last["loss"] < 0.75 * last["cond_only"], last          # 0.58 when written
    student, _ = load_checkpoint(tmp_path / "model")
    teacher, _ = load_checkpoint(teacher_dir)
    moved = [k for (k, a), b in zip(student.unet.state_dict().items(), teacher.unet.state_dict().values())
             if not torch.equal(a, b)]
    assert len(moved) > 0.9 * len(teacher.unet.state_dict()), "the UNet itself must train, not only the embedding"


def test_bad_options_say_what_to_do(teacher_dir, tmp_path, capsys):
    assert main(["--teacher", str(teacher_dir), "--out", str(tmp_path), "--cfg-range", "5"]) == 2
    assert "MIN:MAX" in capsys.readouterr().err
    assert main(["--teacher", str(teacher_dir), "--out", str(tmp_path), "--cfg-range", "5:8"]) == 2
    assert "default" in capsys.readouterr().err                         # tiny's default cfg is outside
    assert main(["--teacher", str(teacher_dir), "--out", str(tmp_path), "--snapshot", str(tmp_path / "s")]) == 2
    assert "no saved state" in capsys.readouterr().err
    assert main(["--teacher", str(teacher_dir), "--out", str(tmp_path), "--ema-decay", "1"]) == 2
    assert "--ema-decay" in capsys.readouterr().err


# ---- the runtime's one-row loop ---------------------------------------------------------------------
def _student_dir(teacher_dir, folder, embedding_seed=None):
    teacher, cal = load_checkpoint(teacher_dir)
    embedding = GuidanceEmbedding(teacher.config.unet.cond_dim)
    if embedding_seed is not None:                                   # a non-zero embedding
        gen = torch.Generator().manual_seed(embedding_seed)
        with torch.no_grad():
            for p in embedding.parameters():
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    plan = SamplerPlan.build("dpmpp", 4, teacher.config.schedule)
    return student_checkpoint(teacher, cal, Student(copy.deepcopy(teacher.unet), embedding), DistillConfig(),
                              plan, folder)


def test_a_fresh_student_at_scale_one_is_its_teacher(teacher_dir, tmp_path, scene_image, square_mask, disc_mask):
    """The embedding starts at zero, so one row of the student at cfg 1 is the teacher's two rows at cfg 1
    (eps_u + 1 (eps_c - eps_u) = eps_c), for single selections and a composed union alike."""
    student = Pipeline.from_pretrained(_student_dir(teacher_dir, tmp_path / "s"))
    teacher = Pipeline.from_pretrained(teacher_dir)
    sels = [Mask(square_mask), Union([Mask(square_mask), Mask(disc_mask)]), Whole()]

    def latents(pipe, cfg):
        rows = pipe.conditions(pipe.encode_image(scene_image), sels, union="compose")
        return pipe.sample(rows, RunOptions(steps=4, sampler="dpmpp", cfg=cfg, seed=1), progress=False)
    ours, theirs = latents(student, 1.0), latents(teacher, 1.0)
    assert (ours - theirs).abs().max() <= 1e-5 * float(theirs.abs().max())
    assert (latents(teacher, 4.0) - theirs).abs().max() > 1e-2 * float(theirs.abs().max())   # the scale matters


def test_the_one_row_loop_matches_a_plain_reference(teacher_dir, tmp_path, scene_image, square_mask):
    """The pipeline's loop against the student run by hand: eps = unet(x, t, c + g(cfg)), the sampler's
    reference step on (eps, eps) at scale 1."""
    folder = _student_dir(teacher_dir, tmp_path / "s", embedding_seed=3)
    pipe = Pipeline.from_pretrained(folder)
    model, _ = load_checkpoint(folder)
    scene = pipe.encode_image(scene_image)
    rows = pipe.conditions(scene, [Mask(square_mask)])
    run = dict(steps=4, sampler="dpmpp", cfg=3.0, seed=5)
    z = pipe.sample(rows, RunOptions(**run), progress=False)
    plan = SamplerPlan.build("dpmpp", 4, model.config.schedule)
    x = pipe.noise(RunOptions(**run).resolve(model.config), 1).double()
    c = rows.conditions.rows + model.guidance_embedding(torch.tensor([3.0]))
    history = ()
    with torch.no_grad():
        for i in range(plan.steps):
            t = plan.timesteps[i:i + 1]
            eps = model.unet(x.float(), t, encoder_hidden_states=None, class_labels=c).sample.double()
            x, history = reference_step(plan.coef_rows[i], x, torch.cat([eps, eps]), 1.0, history)
    assert (z.double() - x).abs().max() <= 1e-4 * max(1.0, float(x.abs().max()))


def test_a_distilled_checkpoint_refuses_what_it_cannot_run(teacher_dir, tmp_path, scene_image):
    folder = _student_dir(teacher_dir, tmp_path / "s")
    pipe = Pipeline.from_pretrained(folder)
    scene = pipe.encode_image(scene_image)
    with pytest.raises(ObjaudioError, match="guidance-distilled"):
        pipe.generate_many(scene, [Whole()], guidance="apg", progress=False)
    with pytest.raises(ObjaudioError, match=r"trained for cfg in \[1, 8\]"):
        pipe.generate_many(scene, [Whole()], cfg=9.0, progress=False)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["files"]["guidance_embedding.safetensors"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ObjaudioError, match="guidance_embedding.safetensors"):
        load_checkpoint(folder)


# ---- step distillation ---------------------------------------------------------------------------------
def jump_inputs(teacher_dir, steps: int, n: int, seed: int):
    """(teacher, a DDIM plan of `steps`, alphas_cumprod, x (n, ...), c (n, cond_dim)): random jump inputs."""
    from objaudio_rt.core.samplers import alphas_cumprod

    teacher, _ = load_checkpoint(teacher_dir)
    plan = SamplerPlan.build("ddim", steps, teacher.config.schedule)
    acp = torch.from_numpy(alphas_cumprod(teacher.config.schedule)).float()
    gen = torch.Generator().manual_seed(seed)
    (_, h, m), _ = teacher.config.latent_shape(teacher.config.clip_seconds)
    x = torch.randn(n, teacher.config.vae.latent_channels, h, m, generator=gen)
    c = torch.randn(n, teacher.config.unet.cond_dim, generator=gen)
    return teacher, plan, acp, x, c


def test_one_substep_is_the_students_own_ddim_step(teacher_dir):
    """With one teacher substep per student step the jump's target is the teacher's guided eps itself: the
    teacher's DDIM step over the interval is the student's (the plan's row), so eps* solves back to it."""
    from training.distill import guided_eps, jump_targets

    teacher, plan, acp, x, c = jump_inputs(teacher_dir, steps=3, n=6, seed=0)
    w = torch.tensor([1.0, 2.0, 4.0, 4.0, 6.0, 8.0])
    k = torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.no_grad():
        got = jump_targets(teacher, teacher.null_condition, acp, plan, k, x, c, w, substeps=1)
        want = guided_eps(teacher, x, plan.timesteps[k].long(), c, w, teacher.null_condition)
        two = jump_targets(teacher, teacher.null_condition, acp, plan, k, x, c, w, substeps=2)
    assert (got - want).abs().max() <= 1e-3 * float(want.abs().max())
    assert (two - want).abs().max() > 1e-3 * float(want.abs().max())            # more substeps: another target


def test_step_distillation_runs_from_a_stage_one_student(run, teacher_dir, tmp_path, capsys):
    out = tmp_path / "steps"
    base = ["--teacher", str(teacher_dir), "--out", str(out), "--scenes", "8", "--max-steps", "2", "--batch-size", "4",
            "--threads", "2", "--substeps", "2"]
    assert main(base + ["--steps", "3"]) == 2                  # DPM-Solver++ 3 steps: its middle step is second order
    assert "--sampler ddim" in capsys.readouterr().err
    args = base + ["--steps", "2"]
    assert main(args + ["--sampler", "ddim", "--student-from", str(run / "model")]) == 0
    model, _ = load_checkpoint(out / "model")
    assert (model.config.default_sampler, model.config.default_steps) == ("ddim", 2)
    record = json.loads((out / "logs" / "runs.jsonl").read_text().splitlines()[-1])
    assert record["config"]["substeps"] == 2 and record["student_from"] == str(run / "model")
    assert main(args + ["--sampler", "ddim", "--student-from", str(teacher_dir)]) == 2
    assert "not guidance-distilled" in capsys.readouterr().err


def test_two_dpmpp_steps_are_ddim_rows_on_trailing_timesteps(teacher_dir, run, tmp_path):
    """DPM-Solver++ at 2 steps is first order at both (t = T-1, then the final step to x0): one substep per step
    is the teacher's own guided eps, as for DDIM, and a run made for it defaults to it."""
    from training.distill import guided_eps, jump_targets

    teacher, _, acp, x, c = jump_inputs(teacher_dir, steps=2, n=4, seed=2)
    plan = SamplerPlan.build("dpmpp", 2, teacher.config.schedule)
    assert plan.timesteps[0] == teacher.config.schedule.num_train_timesteps - 1 and not any(plan.history_reads)
    w, k = torch.tensor([1.0, 4.0, 4.0, 8.0]), torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        got = jump_targets(teacher, teacher.null_condition, acp, plan, k, x, c, w, substeps=1)
        want = guided_eps(teacher, x, plan.timesteps[k].long(), c, w, teacher.null_condition)
    assert (got - want).abs().max() <= 1e-3 * float(want.abs().max())
    out = tmp_path / "dpmpp2"
    assert main(["--teacher", str(teacher_dir), "--out", str(out), "--scenes", "8", "--max-steps", "1", "--batch-size",
                 "2", "--threads", "2", "--steps", "2", "--substeps", "2", "--student-from", str(run / "model")]) == 0
    model, _ = load_checkpoint(out / "model")
    assert (model.config.default_sampler, model.config.default_steps) == ("dpmpp", 2)


def test_the_onnxruntime_backend_runs_a_student_as_eager_does(teacher_dir, tmp_path, scene_image, square_mask,
                                                              disc_mask):
    """The exported UNet of a student, run one row a step (1 row for a single selection, 2 for a composed
    union) by the ONNX Runtime backend, with the guidance embedding from the checkpoint."""
    from export.onnx import main as export_main
    from objaudio_rt.backends.eager import EagerBackend
    from objaudio_rt.backends.onnxruntime import OnnxRuntimeBackend
    from objaudio_rt.core.denoise import denoise

    folder = _student_dir(teacher_dir, tmp_path / "s", embedding_seed=4)
    assert export_main(["--checkpoint", str(folder), "--out", str(tmp_path / "onnx"), "--quiet", "--only",
                        "unet,vae_decoder,vocoder,image_encoder,text_encoder"]) == 0
    model, _ = load_checkpoint(folder)
    ort = OnnxRuntimeBackend(copy.deepcopy(model), torch.device("cpu"), onnx_dir=tmp_path / "onnx")
    eager = EagerBackend(copy.deepcopy(model), torch.device("cpu"))
    assert ort.guidance_embedding is not None
    pipe = Pipeline.from_pretrained(folder)
    scene = pipe.encode_image(scene_image)
    plan = SamplerPlan.build("dpmpp", 3, model.config.schedule)
    for sel in (Mask(square_mask), Union([Mask(square_mask), Mask(disc_mask)])):
        rows = pipe.conditions(scene, [sel], union="compose").conditions
        noise = pipe.noise(RunOptions(seed=2).resolve(model.config), 1)
        want = denoise(eager, noise, rows, plan, 5.0, progress=False)
        got = denoise(ort, noise, rows, plan, 5.0, progress=False)
        assert (got - want).abs().max() <= 1e-4 * float(want.abs().max())


def test_a_bf16_teacher_gives_the_fp32_targets_within_its_own_rounding(teacher_dir, run, tmp_path):
    """--teacher-dtype bf16: a jump's target over several substeps stays within a small multiple of what bf16 does to
    one guided row (no drift, no dtype leak: the targets are float32), and the run records the choice."""
    from training.distill import guided_eps, jump_targets, teacher_precision

    teacher, plan, acp, x, c = jump_inputs(teacher_dir, steps=2, n=4, seed=1)
    w, k = torch.tensor([1.0, 4.0, 4.0, 8.0]), torch.tensor([0, 1, 0, 1])
    t = plan.timesteps[k].long()

    def rel(a, b):
        return float((a - b).norm() / b.norm())

    with torch.no_grad():
        row32 = guided_eps(teacher, x, t, c, w, teacher.null_condition)
        jump32 = jump_targets(teacher, teacher.null_condition, acp, plan, k, x, c, w, substeps=4)
        with teacher_precision("bf16"):
            row16 = guided_eps(teacher, x, t, c, w, teacher.null_condition)
            jump16 = jump_targets(teacher, teacher.null_condition, acp, plan, k, x, c, w, substeps=4)
    assert row16.dtype == jump16.dtype == torch.float32
    one_row = rel(row16, row32)
    assert 0 < one_row < 0.05                                   # bf16 did run, and rounds as bf16 rounds
    assert rel(jump16, jump32) <= 4 * one_row                   # 4 substeps: at most their rounding, no drift
    out = tmp_path / "bf16"
    assert main(["--teacher", str(teacher_dir), "--out", str(out), "--scenes", "8", "--max-steps", "1",
                 "--batch-size", "2", "--threads", "2", "--sampler", "ddim", "--steps", "2", "--substeps", "2",
                 "--teacher-dtype", "bf16", "--ema-decay", "0.99", "--student-from", str(run / "model")]) == 0
    record = json.loads((out / "logs" / "runs.jsonl").read_text().splitlines()[-1])
    assert record["config"]["teacher_dtype"] == "bf16" and record["config"]["ema_decay"] == 0.99
    with pytest.raises(ObjaudioError, match="teacher dtype"):
        teacher_precision("fp16")
