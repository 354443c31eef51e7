"""training/graft.py: a new teacher's student as the new UNet plus an earlier distillation's difference,
on the `tiny` preset with random weights."""
import torch

from objaudio_rt import Pipeline
from objaudio_rt.modelio.artifacts import model_fingerprint
from objaudio_rt.modelio.checkpoint import load_checkpoint, save_checkpoint
from training import distill
from training.graft import main


def _perturbed(model, seed, size):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.unet.parameters():
            p.add_(size * torch.randn(p.shape, generator=gen))


def test_the_graft_adds_the_old_distillation_to_the_new_teacher(tmp_path, capsys):
    old = tmp_path / "old"
    Pipeline.from_pretrained("random:tiny", seed=0).save_pretrained(old)
    assert distill.main(["--teacher", str(old), "--out", str(tmp_path / "run"), "--scenes", "8", "--max-steps", "3",
                         "--batch-size", "4", "--threads", "2", "--lr", "1e-3"]) == 0
    new_model, cal = load_checkpoint(old)
    _perturbed(new_model, seed=1, size=0.01)                          # the teacher, fine-tuned on
    save_checkpoint(new_model, cal, tmp_path / "new")
    args = ["--teacher", tmp_path / "new", "--from-student", tmp_path / "run" / "model", "--old-teacher", old,
            "--out", tmp_path / "graft"]
    assert main([str(a) for a in args]) == 0

    out, _ = load_checkpoint(tmp_path / "graft")
    t_old, _ = load_checkpoint(old)
    t_new, _ = load_checkpoint(tmp_path / "new")
    s_old, _ = load_checkpoint(tmp_path / "run" / "model")
    assert out.config.distilled.teacher == model_fingerprint(t_new) != s_old.config.distilled.teacher
    assert (out.config.default_sampler, out.config.default_steps) == (s_old.config.default_sampler,
                                                                       s_old.config.default_steps)
    moved = 0
    for k, w in out.unet.state_dict().items():
        dt = t_new.unet.state_dict()[k] - t_old.unet.state_dict()[k]
        ds = s_old.unet.state_dict()[k] - t_old.unet.state_dict()[k]
        torch.testing.assert_close(w, t_old.unet.state_dict()[k] + dt + ds, rtol=0, atol=1e-6)
        moved += int(ds.abs().max() > 0)
    assert moved > 0                                                   # the distillation did change the UNet
    for a, b in zip(out.guidance_embedding.state_dict().values(), s_old.guidance_embedding.state_dict().values()):
        assert torch.equal(a, b)
    for name in ("grounding", "vae", "vocoder"):                      # the new teacher's, unchanged
        for a, b in zip(getattr(out, name).state_dict().values(), getattr(t_new, name).state_dict().values()):
            assert torch.equal(a, b)

    # a graft continues to train as any student of the new teacher does
    assert distill.main(["--teacher", str(tmp_path / "new"), "--out", str(tmp_path / "more"), "--scenes", "8",
                         "--max-steps", "1", "--batch-size", "4", "--threads", "2",
                         "--student-from", str(tmp_path / "graft")]) == 0

    # mismatched inputs say what to do
    wrong = [str(a) for a in args[:4]] + ["--old-teacher", str(tmp_path / "new"), "--out", str(tmp_path / "g2")]
    assert main(wrong) == 2
    assert "not distilled from --old-teacher" in capsys.readouterr().err
    assert main([str(a) for a in args]) == 2
    assert "--force" in capsys.readouterr().err
    assert main([str(a) for a in args[:2]] + ["--from-student", str(old), "--old-teacher", str(old),
                                              "--out", str(tmp_path / "g3")]) == 2
    assert "not guidance-distilled" in capsys.readouterr().err
