"""One exception type for bad user input.

Everything the user can get wrong (a file, a line, a field, a CLI value, an unreachable
server) raises `SelfteachError` with a one-line message that names the culprit. The CLI
prints that line and exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations


class SelfteachError(Exception):
    """A user-facing error: the message is one line naming the file/line/field or value."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
