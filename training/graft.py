"""A new teacher's few-step student without distilling again: graft what an earlier distillation taught.

    python -m training.graft --teacher NEW --from-student OLD_STUDENT --old-teacher OLD --out STUDENT [--scale 1]

When a teacher is fine-tuned (NEW = OLD + dT) after a student was distilled from OLD (OLD_STUDENT =
OLD + dS), the student of NEW is taken as NEW + scale * dS, with OLD_STUDENT's guidance embedding: the
weight-space difference a distillation made ("task arithmetic", Ilharco et al., ICLR 2023) carried onto
the new weights. It is a guess that costs seconds instead of an hour of distillation, and it is only as
good as its paired evaluation says (`training.evaluate` on the same scenes as the teacher, then
`training.attach_fewstep`). `training.distill --student-from STUDENT` trains on from it when it misses.

The two differences were nearly orthogonal where this was first used (cosine 0.10; |dT| 5.7, |dS| 3.0
against |W| 122), which is when adding them is expected to keep both. The result is a complete student
checkpoint of NEW (config.distilled names NEW's fingerprint; the sampler and steps OLD_STUDENT was made
for; NEW's grounding, encoders, VAE, vocoder and silence gate).
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path


from objaudio_rt.core.errors import check, command
from objaudio_rt.core.samplers import SamplerPlan
from objaudio_rt.modelio.artifacts import model_fingerprint
from objaudio_rt.modelio.checkpoint import load_checkpoint
from objaudio_rt.modelio.model import ObjaudioModel

from .distill import DistillConfig, Student, student_checkpoint


def graft(teacher: ObjaudioModel, old_teacher: ObjaudioModel, old_student: ObjaudioModel,
          scale: float = 1.0) -> Student:
    """teacher's UNet + scale * (old_student's UNet - old_teacher's), and old_student's guidance embedding."""
    new, old, taught = (m.unet.state_dict() for m in (teacher, old_teacher, old_student))
    for other, name in ((old, "the old teacher"), (taught, "the old student")):
        check(other.keys() == new.keys() and all(other[k].shape == new[k].shape for k in new),
              f"{name}'s UNet is not shaped like the new teacher's: graft only between fine-tunes of one model")
    unet = copy.deepcopy(teacher.unet)
    unet.load_state_dict({k: v + scale * (taught[k] - old[k]) if v.is_floating_point() else v
                          for k, v in new.items()})
    return Student(unet, copy.deepcopy(old_student.guidance_embedding))


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m training.graft", description=__doc__.splitlines()[0])
    p.add_argument("--teacher", required=True, type=Path, help="the new teacher checkpoint (NEW)")
    p.add_argument("--from-student", required=True, type=Path, help="a student distilled from --old-teacher")
    p.add_argument("--old-teacher", required=True, type=Path, help="the teacher --from-student was distilled from")
    p.add_argument("--out", required=True, type=Path, help="the student checkpoint folder to write")
    p.add_argument("--scale", type=float, default=1.0, help="how much of the old distillation's difference to add")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    return p.parse_args(argv)


@command("python -m training.graft")
def main(argv=None) -> int:
    args = parse_args(argv)
    check(args.out.resolve() not in {args.teacher.resolve(), args.old_teacher.resolve(), args.from_student.resolve()},
          f"--out {args.out} is one of the inputs: write the student to a new folder")
    check(args.force or not args.out.exists(), f"{args.out} exists: give --force to replace it, or another --out")
    check(0.0 <= args.scale <= 2.0, f"--scale must be in [0, 2], got {args.scale}")
    teacher, calibration = load_checkpoint(args.teacher)
    old_teacher, _ = load_checkpoint(args.old_teacher)
    old_student, _ = load_checkpoint(args.from_student)
    check(teacher.config.distilled is None, f"--teacher {args.teacher} is a student: give the teacher it came from")
    d = old_student.config.distilled
    check(d is not None and old_student.guidance_embedding is not None,
          f"--from-student {args.from_student} is not guidance-distilled: give a training.distill student")
    check(d.teacher == model_fingerprint(old_teacher),
          f"--from-student {args.from_student} was not distilled from --old-teacher {args.old_teacher} "
          f"(fingerprints {d.teacher[:12]} and {model_fingerprint(old_teacher)[:12]}): give the teacher it records")
    student = graft(teacher, old_teacher, old_student, args.scale)
    cfg = DistillConfig(cfg_min=d.cfg_min, cfg_max=d.cfg_max)
    plan = SamplerPlan.build(old_student.config.default_sampler, old_student.config.default_steps,
                             teacher.config.schedule)
    folder = student_checkpoint(teacher, calibration, student, cfg, plan, args.out)
    print(f"wrote {folder}: {args.teacher} + {args.scale:g} x ({args.from_student} - {args.old_teacher}), "
          f"made for {plan.sampler} at {plan.steps} steps; evaluate it paired with its teacher")
    return 0


if __name__ == "__main__":
    sys.exit(main())
