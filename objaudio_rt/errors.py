"""One exception type for everything a user can get wrong.

Library code raises `ObjaudioError` with a message that names the problem and says what to
do; only the CLI turns it into one line on stderr and a non-zero exit code.
"""


class ObjaudioError(ValueError):
    """Bad input, a bad checkpoint or an impossible request. The message says what to do."""


def check(condition: bool, message: str) -> None:
    """Raise `ObjaudioError(message)` unless `condition` holds."""
    if not condition:
        raise ObjaudioError(message)
