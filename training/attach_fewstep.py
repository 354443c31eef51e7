"""Attach a guidance-distilled student to its teacher checkpoint as the teacher's few-step path (issue 20).

    python -m training.attach_fewstep --teacher CKPT --student SNAP \
        --pair teacher-C.json:student-C.json --pair teacher-B.json:student-B.json

Writes CKPT/fewstep/ (modelio.checkpoint.attach_fewstep): the student's UNet and guidance embedding,
its config (the sampler and steps it was made for) and a record of the paired evaluations given. Each
--pair is two `training.evaluate --json` reports of the same scenes and seeds: the teacher on its
default path (20 steps, two rows) and the student on its own. The record says "default": true, so
that the checkpoint's name loads the few-step path (`--full` the 20-step one), only when on every pair
object accuracy, leakage and silent accuracy each stay within `--tolerance` (0.03) of the teacher's
and the pairs hold at least `--min-selections` (500) selections together: the issue's bar. Otherwise
the path is carried but not the default (`--fewstep` runs it), and the record says which bar failed.
The path runs the steps the student was made for unless `--steps N` says otherwise (a 4-step student
run at 8 steps, fifteenth session); every student report must have run the path's sampler, steps and
guidance scale.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from objaudio_rt.core.errors import check, command
from objaudio_rt.modelio.artifacts import read_json
from objaudio_rt.modelio.checkpoint import attach_fewstep, read_config

HELD = ("object_accuracy", "leakage", "silent_accuracy")         # the metrics the bar holds to the teacher's
REPORTED = HELD + ("union_recall", "union_recall_mask", "text_vs_mask_gap", "fad")


def compare(teacher: dict, student: dict, names: tuple[str, str], tolerance: float,
            path: tuple[str, int, float] | None = None) -> dict:
    """One pair of evaluate reports: the student's metrics against the teacher's, and whether each held.
    `path`, (sampler, steps, cfg): what the attached path will run, which the student's report must have run."""
    if path is not None:
        ran = (student.get("sampler"), student.get("steps"))
        check(ran == path[:2], f"{names[1]} ran {ran[0]} at {ran[1]} steps but the attached path runs {path[0]} "
                               f"at {path[1]}: evaluate the student as it will ship (training.evaluate --steps "
                               f"{path[1]}), or give --steps {ran[1]}")
        check(student.get("cfg") == path[2], f"{names[1]} ran at guidance {student.get('cfg')} but the attached "
                                             f"path runs at {path[2]:g}: evaluate the student without --cfg")
    for key in ("scenes", "selections"):
        check(teacher.get(key) == student.get(key), f"{names[0]} and {names[1]} are not of the same scenes "
                                                     f"({key}: {teacher.get(key)} vs {student.get(key)}): "
                                                     "evaluate both with the same --ranges")
    check(student.get("options") is None and teacher.get("options") is None,
          f"{names[0]} or {names[1]} ran with a lever: evaluate both paths as they ship")
    check(not student.get("backend_options") and not teacher.get("backend_options"),
          f"{names[0]} or {names[1]} ran with backend options: evaluate both paths as they ship")
    diff = {k: round(student[k] - teacher[k], 4) for k in REPORTED if k in student and k in teacher}
    held = {k: abs(diff[k]) <= tolerance for k in HELD}
    return {"teacher": names[0], "student": names[1], "selections": student["selections"],
            "teacher_path": {"sampler": teacher["sampler"], "steps": teacher["steps"]},
            "student_path": {"sampler": student["sampler"], "steps": student["steps"]},
            "difference": diff, "held": held}


def decide(pairs: list[dict], tolerance: float, min_selections: int) -> tuple[bool, list[str]]:
    """Whether the bar holds on every pair (and enough selections were seen), and what failed."""
    failed = [f"{p['student']}: {k} {p['difference'][k]:+.3f}" for p in pairs for k, ok in p["held"].items() if not ok]
    total = sum(p["selections"] for p in pairs)
    if total < min_selections:
        failed.append(f"{total} selections < {min_selections}")
    return not failed, failed


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m training.attach_fewstep", description=__doc__.splitlines()[0])
    p.add_argument("--teacher", required=True, type=Path, help="the teacher checkpoint folder (written into)")
    p.add_argument("--student", required=True, type=Path, help="its guidance-distilled student (distill --snapshot)")
    p.add_argument("--pair", action="append", default=[], metavar="TEACHER.json:STUDENT.json",
                   help="paired training.evaluate reports (repeat for several scene sets)")
    p.add_argument("--tolerance", type=float, default=0.03)
    p.add_argument("--min-selections", type=int, default=500)
    p.add_argument("--steps", type=int, default=None,
                   help="the steps the attached path runs (default: the steps the student was made for)")
    return p.parse_args(argv)


@command("python -m training.attach_fewstep")
def main(argv=None) -> int:
    args = parse_args(argv)
    check(args.pair, "give at least one --pair TEACHER.json:STUDENT.json (training.evaluate reports of the "
                     "same scenes): the record says what the few-step path was measured to keep")
    check(args.steps is None or args.steps >= 1, f"--steps must be >= 1, got {args.steps}")
    made_for = read_config(args.student)[0]
    path = (made_for.default_sampler, args.steps if args.steps is not None else made_for.default_steps,
            made_for.default_cfg)
    pairs = []
    for text in args.pair:
        names = tuple(text.split(":"))
        check(len(names) == 2, f"--pair {text!r}: give TEACHER.json:STUDENT.json")
        reports = [read_json(n, f"evaluation report {n}", "run training.evaluate --json again") for n in names]
        check(reports[0].get("silence_gate") == reports[1].get("silence_gate"),
              f"--pair {text}: one report ran with the silence gate and the other without")
        pairs.append(compare(*reports, names, args.tolerance, path))
    default, failed = decide(pairs, args.tolerance, args.min_selections)
    record = {"bar": {"held": list(HELD), "tolerance": args.tolerance, "min_selections": args.min_selections},
              "pairs": pairs, "failed": failed}
    out = attach_fewstep(args.teacher, args.student, record, default=default, steps=args.steps)
    for pr in pairs:
        print(f"{pr['student']} vs {pr['teacher']} ({pr['selections']} selections): "
              + ", ".join(f"{k} {v:+.3f}" for k, v in pr["difference"].items()))
    print(f"wrote {out}: " + ("the default path (the bar held; --full runs the 20-step one)" if default else
                              "carried, not the default (--fewstep runs it): " + "; ".join(failed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
