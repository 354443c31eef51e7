"""One exception type for everything a user can get wrong, and the one wrapper that reports it.

Library code raises `ObjaudioError` with a message that names the problem and says what to
do; only the entry points (`command`) turn it into one line on stderr and exit code 2.
"""
from __future__ import annotations

import functools
import os
import sys
from typing import NoReturn


class ObjaudioError(ValueError):
    """Bad input, a bad checkpoint or an impossible request. The message says what to do."""


def check(condition: bool, message: str) -> None:
    """Raise `ObjaudioError(message)` unless `condition` holds."""
    if not condition:
        raise ObjaudioError(message)


def command(prog: str):
    """The one entry-point wrapper, for `objaudio` and every `python -m export.*`, `training.*` and
    `benchmarks.*`: `main(argv) -> exit code` (None means 0). A user error (ObjaudioError, or a
    NotImplementedError for what is not built here) prints one line `PROG: error: MESSAGE` on stderr
    and returns 2; Ctrl-C returns 130. Entry points run `sys.exit(main())` under `__main__`."""
    def wrap(main):
        @functools.wraps(main)
        def run(argv: list[str] | None = None) -> int:
            try:
                code = main(argv)
            except (ObjaudioError, NotImplementedError) as exc:
                print(f"{prog}: error: {exc}", file=sys.stderr)
                return 2
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return 130
            except BrokenPipeError:              # `objaudio info | head`: the reader left; not an error of ours
                _quiet_stdout()
                return 141                       # 128 + SIGPIPE, what a shell tool killed by it returns
            return 0 if code is None else code
        return run
    return wrap


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush cannot raise into a closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def exit_now(code: int) -> NoReturn:
    """End a finished command-line run with `code`: flush stdout and stderr, then leave without the
    interpreter's teardown, which only frees memory (torch's and onnxruntime's state: measured 0.9 s
    after a generate on a 2-core machine). Every file a command writes is closed and renamed into
    place before its main returns. Only for `__main__` entry points, never in-process callers."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            _quiet_stdout()
        except ValueError:                   # closed by the caller
            pass
    os._exit(code)
