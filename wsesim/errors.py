"""The errors a user sees as one line: bad input located by file and key path
(:class:`SpecError`, from a :class:`KeyedError` once the file is known), and a sweep
whose workers stopped (:class:`SweepInterrupted`)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def located(source: str | Path | None) -> Iterator[None]:
    """Turn a :class:`KeyedError` raised inside (planning a key that validated alone)
    into a :class:`SpecError` naming ``source``."""
    try:
        yield
    except KeyedError as exc:
        raise SpecError(source, exc.key, exc.message) from None


class SweepInterrupted(RuntimeError):
    """The workers stopped (a process died, a Dask worker was lost): the rows done so far
    are saved; running the sweep again into the same folder resumes it."""
