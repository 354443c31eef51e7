"""A tiny teacher folder and a few-step student of it that differs from it: what the tests of the
checkpoint tools that carry a student (attach_fewstep, swap_vocoder) start from."""
import copy
from pathlib import Path

import torch

from objaudio_rt import Pipeline
from objaudio_rt.core.guidance import GuidanceEmbedding
from objaudio_rt.core.samplers import SamplerPlan
from objaudio_rt.modelio.checkpoint import load_checkpoint
from training.distill import DistillConfig, Student, student_checkpoint


def tiny_teacher_and_student(root: Path, steps: int = 4) -> tuple[Path, Path]:
    """`root/teacher` (random `tiny` weights, seed 0) and `root/student`: its UNet and a guidance
    embedding, each weight moved by 0.01 * N(0, 1), made for DPM-Solver++ at `steps`."""
    teacher_dir = root / "teacher"
    Pipeline.from_pretrained("random:tiny", seed=0).save_pretrained(teacher_dir)
    teacher, cal = load_checkpoint(teacher_dir)
    embedding = GuidanceEmbedding(teacher.config.unet.cond_dim)
    unet = copy.deepcopy(teacher.unet)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in [*embedding.parameters(), *unet.parameters()]:
            p.add_(0.01 * torch.randn(p.shape, generator=gen))
    plan = SamplerPlan.build("dpmpp", steps, teacher.config.schedule)
    return teacher_dir, student_checkpoint(teacher, cal, Student(unet, embedding), DistillConfig(), plan,
                                           root / "student")
