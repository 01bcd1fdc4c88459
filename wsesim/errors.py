"""The one error type a user sees: bad input, located by file and key path."""
from __future__ import annotations

from pathlib import Path


class _Located:
    key: str
    message: str

    def keyed(self) -> str:
        """``<key.path>: <what is wrong>``."""
        return f"{self.key or '(top level)'}: {self.message}"


class SpecError(_Located, Exception):
    """Bad input, reported as one line ``error: <file>: <key.path>: <what is wrong>``.

    The CLI prints it on stderr and exits with code 2; nothing else is shown.
    """

    def __init__(self, source: str | Path | None, key: str, message: str) -> None:
        self.source = str(source) if source is not None else "<input>"
        self.key = key
        self.message = message
        super().__init__(self.line())

    def line(self) -> str:
        return f"error: {self.source}: {self.keyed()}"


class KeyedError(_Located, Exception):
    """A problem with the value of one key path, found before the file it came from is
    known (inside validation or planning).

    Not a ``ValueError`` on purpose: pydantic lets it through unchanged, and the loader
    (or the command) turns it into a :class:`SpecError` naming the file.
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(self.keyed())
