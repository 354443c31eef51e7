"""Writing a command's output files: never onto an input, never two onto one file, all or none.

`check_outputs` runs before any work (so a bad path costs no model load); `write_together` writes
every file of one run under a temporary name in its folder, then renames them all into place.
If anything fails, every temporary and every file already renamed is removed: a run that fails
leaves no output behind. Temporary names carry the writer's process id
(`.NAME.<pid>.objaudio-part`), so a run killed mid-write (SIGKILL) leaves one that the next write
of the same file removes. New files get the mode the umask gives (as `open()` would); a file
replaced with `force` keeps its mode.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ..core.errors import ObjaudioError, check

PART = ".objaudio-part"


def _same_file(a: Path, b: Path) -> bool:
    """Same path after resolving links, or the same inode (a hard link)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:                         # one of them does not exist yet
        return False


def check_output(path: Path, force: bool) -> None:
    """One output file: not a folder, in a writable folder, new unless `force`."""
    check(not path.is_dir(), f"{path} is a folder: give a file name for the output")
    if path.exists() and not force:
        raise ObjaudioError(f"{path} already exists: choose another path or pass --force to overwrite it")
    parent = path.parent if str(path.parent) else Path(".")
    check(parent.is_dir(), f"cannot write {path}: folder {parent} does not exist")
    check(os.access(parent, os.W_OK), f"cannot write {path}: folder {parent} is not writable")


def check_outputs(outputs: list[Path], inputs: list[Path] = (), force: bool = False) -> None:
    """Every output is writable, none is one of the inputs (even through a link), no two are one file."""
    outputs = [Path(p) for p in outputs]
    for i, out in enumerate(outputs):
        for src in inputs:
            check(not _same_file(out, Path(src)), f"output {out} is the input {src}: choose another output path "
                                                  "(an output never replaces an input, even with --force)")
        for other in outputs[:i]:
            check(not _same_file(out, other), f"two outputs are the same file {out}: give each its own path")
        check_output(out, force)


def _part_name(path: Path, pid: int) -> Path:
    return path.with_name(f".{path.name}.{pid}{PART}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:                 # someone else's process
        return True
    return True


def remove_stale_parts(path: Path) -> None:
    """Remove temporaries of `path` left by a writer that no longer runs (killed mid-write)."""
    for part in path.parent.glob(f".{path.name}.*{PART}"):
        pid = part.name[len(path.name) + 2:-len(PART)]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            part.unlink(missing_ok=True)


def _write_file(tmp: Path, data: bytes, mode: int | None) -> None:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)      # 0o666 & ~umask, as open() gives
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_together(files: list[tuple[os.PathLike, bytes]], force: bool = False) -> list[Path]:
    """Write each (path, bytes) through a temporary, then rename all into place; on any failure none."""
    paths = [Path(p) for p, _ in files]
    check_outputs(paths, force=force)
    temps: list[Path] = []
    placed: list[Path] = []
    current = paths[0]
    try:
        for path, (_, data) in zip(paths, files):
            current = path
            remove_stale_parts(path)
            keep = stat.S_IMODE(path.stat().st_mode) if force and path.exists() else None
            tmp = _part_name(path, os.getpid())
            tmp.unlink(missing_ok=True)
            temps.append(tmp)
            _write_file(tmp, data, keep)
        for path, tmp in zip(paths, temps):
            current = path
            os.replace(tmp, path)
            placed.append(path)
    except BaseException as exc:
        for p in temps + placed:
            Path(p).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
            raise ObjaudioError(f"cannot write {current}: {reason}; nothing was written") from None
        raise
    return paths
