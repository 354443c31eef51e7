"""One exception type for everything a user can get wrong, and the one wrapper that reports it.

Library code raises `ObjaudioError` with a message that names the problem and says what to
do; only the entry points (`command`) turn it into one line on stderr and exit code 2.
"""
from __future__ import annotations

import functools
import sys


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
            return 0 if code is None else code
        return run
    return wrap
