"""The one error type a user sees: bad input, located by file and key path."""
from __future__ import annotations

from pathlib import Path


class SpecError(Exception):
    """Bad input, reported as one line ``error: <file>: <key.path>: <what is wrong>``.

    The CLI prints it on stderr and exits with code 2; nothing else is shown.
    """

    def __init__(self, source: str | Path | None, key: str, message: str) -> None:
        self.source = str(source) if source is not None else "<input>"
        self.key = key
        self.message = message
        super().__init__(self.line())

    def keyed(self) -> str:
        """``<key.path>: <what is wrong>`` (the line without its file)."""
        return f"{self.key or '(top level)'}: {self.message}"

    def line(self) -> str:
        return f"error: {self.source}: {self.keyed()}"


class KeyedError(Exception):
    """A cross-field problem found inside validation, with the key path it belongs to.

    Not a ``ValueError`` on purpose: pydantic lets it through unchanged, and the loader
    turns it into a :class:`SpecError` naming the file.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message
