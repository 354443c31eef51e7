"""A checkpoint folder in files no larger than a limit, and back: what a lent GPU machine can return
(files of at most 16 MiB) and this machine rebuilds.

    python -m training.shard split CKPT_DIR OUT_DIR [--max-mib 15]   # OUT_DIR: the files, big ones in parts
    python -m training.shard join OUT_DIR CKPT_DIR                    # checks every sha256, then writes

A file under the limit is copied; a larger one becomes NAME.part000, NAME.part001, ... of at most the
limit each. shards.json lists every file with its size and sha256, so `join` rebuilds the folder byte
for byte, refuses a missing, short or altered part, and writes each file through a temporary, renamed
into place (an existing CKPT_DIR is refused: give a new folder).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

from objaudio_rt.core.errors import check, command
from objaudio_rt.modelio.artifacts import read_json, write_json_atomic

MANIFEST = "shards.json"
FORMAT = "objaudio-shards"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split(src: Path, out: Path, max_bytes: int) -> dict:
    """Writes src's files into out (parts where larger than max_bytes) and shards.json; returns the manifest."""
    check(src.is_dir(), f"{src} is not a folder: give a checkpoint folder")
    check(max_bytes >= 1024, "the part size must be at least 1 KiB")
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        rel = path.relative_to(src).as_posix()
        data = path.read_bytes()
        parts = []
        if len(data) <= max_bytes:
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        else:
            for k, start in enumerate(range(0, len(data), max_bytes)):
                name = f"{rel}.part{k:03d}"
                (out / name).parent.mkdir(parents=True, exist_ok=True)
                (out / name).write_bytes(data[start:start + max_bytes])
                parts.append(name)
        files[rel] = {"bytes": len(data), "sha256": _sha256(data), "parts": parts}
    manifest = {"format": FORMAT, "max_bytes": max_bytes, "files": files}
    write_json_atomic(out / MANIFEST, manifest)
    return manifest


def join(src: Path, out: Path) -> Path:
    """Rebuilds the folder split into src as out, every file checked against shards.json."""
    manifest = read_json(src / MANIFEST, f"split folder {src}", "give the folder `split` wrote, with its shards.json")
    check(manifest.get("format") == FORMAT, f"{src / MANIFEST} is not an {FORMAT} manifest")
    check(not out.exists(), f"{out} exists: give a new folder (nothing is overwritten)")
    files = {}
    for rel, entry in manifest["files"].items():
        check(".." not in Path(rel).parts and not Path(rel).is_absolute(), f"{rel}: a path outside the folder")
        names = entry["parts"] or [rel]
        missing = [n for n in names if not (src / n).is_file()]
        check(not missing, f"{src}: missing {', '.join(missing)}: copy every file the split wrote")
        data = b"".join((src / n).read_bytes() for n in names)
        check(len(data) == entry["bytes"] and _sha256(data) == entry["sha256"],
              f"{rel}: its parts do not give the file that was split (size or sha256 differ): copy them again")
        files[rel] = data
    tmp = out.with_name(f".{out.name}.joining")
    if tmp.exists():
        shutil.rmtree(tmp)
    for rel, data in files.items():                 # into a temporary folder, renamed when whole
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(data)
    tmp.rename(out)
    return out


@command("python -m training.shard")
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.shard", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("split", help="a folder into files of at most --max-mib")
    s.add_argument("src", type=Path)
    s.add_argument("out", type=Path)
    s.add_argument("--max-mib", type=float, default=15.0)
    j = sub.add_parser("join", help="a split folder back, every file checked")
    j.add_argument("src", type=Path)
    j.add_argument("out", type=Path)
    args = p.parse_args(argv)
    if args.what == "split":
        m = split(args.src, args.out, int(args.max_mib * 2**20))
        print(f"{args.out}: {len(m['files'])} files, {sum(len(e['parts']) for e in m['files'].values())} parts")
    else:
        print(f"rebuilt {join(args.src, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
