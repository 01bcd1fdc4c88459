"""The errors a user sees as one line: bad input located by file and key path
(:class:`SpecError`, from a :class:`KeyedError` once the file is known), and a sweep
whose workers stopped (:class:`SweepInterrupted`); the one-line warning a run goes on
after (:class:`SpecWarning`).

A line is one line whatever the input: control characters (a newline in a name, a key
or a path) are escaped, so no input can forge a second ``error:`` line, and a value is
shown through :func:`shown`, which never formats more than a bounded prefix of it."""
from __future__ import annotations

import reprlib
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wsesim.literal import clipped, printable

# Longest shown value, key path and message (characters): a line stays readable and no
# input, however large, is formatted whole.
SHOWN_CHARS = 60
KEY_CHARS = 200
MESSAGE_CHARS = 2000
# Integers with more bits than this are described, not printed (printing one of 10**5
# digits takes long, and Python refuses past 4,300 digits).
SHOWN_INT_BITS = 256


def escape(text: str, limit: int | None = None) -> str:
    """``text`` on one printable line (:func:`wsesim.literal.printable`: control, format
    and separator characters, lone surrogates from undecodable file names become
    ``\\n``, ``\\x1b``, ``\\u2028``...), cut to ``limit`` characters ending in ``...``
    if given (:func:`wsesim.literal.clipped`: cut before escaping)."""
    if limit is None:
        return printable(text)
    return clipped(text, limit, say_how_many=False)


class _BoundedRepr(reprlib.Repr):
    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxstring = self.maxother = self.maxlong = SHOWN_CHARS
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = 6

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > SHOWN_INT_BITS:
            digits = int(x.bit_length() * 0.30103) + 1
            return f"{'-' if x < 0 else ''}<an integer of about {digits:,} digits>"
        return super().repr_int(x, level)

    def repr_str(self, x: str, level: int) -> str:
        return repr(x if len(x) <= SHOWN_CHARS else x[:SHOWN_CHARS]) + (
            "..." if len(x) > SHOWN_CHARS else "")


_REPR = _BoundedRepr()


def shown(value: Any) -> str:
    """A bounded, one-line repr of a user's value: never formats more than a prefix of a
    long string, a few items of a container, a few levels deep."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return _REPR.repr_int(value, 0)
    return escape(_REPR.repr(value), SHOWN_CHARS + 20)


class _Located:
    key: str
    message: str

    def keyed(self) -> str:
        """``<key.path>: <what is wrong>`` on one line."""
        return (f"{escape(self.key, KEY_CHARS) or '(top level)'}: "
                f"{escape(self.message, MESSAGE_CHARS)}")


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
        return f"error: {escape(self.source)}: {self.keyed()}"


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


class SpecWarning(UserWarning):
    """Input wsesim reads but partly ignores (unknown keys of a Hugging Face
    ``config.json``): the run goes on; the CLI prints :meth:`line` on stderr."""

    def __init__(self, source: str | Path, message: str) -> None:
        self.source = str(source)
        self.message = message
        super().__init__(self.line())

    def line(self) -> str:
        return f"warning: {escape(self.source)}: {escape(self.message, MESSAGE_CHARS)}"


def warn(source: str | Path, message: str) -> None:
    """Issue a :class:`SpecWarning` (Python's ``warnings``: callers may filter or record
    it; the CLI prints it as one line)."""
    warnings.warn(SpecWarning(source, message), stacklevel=2)


def show_warning(message: Warning | str, category: type[Warning], filename: str,
                 lineno: int, file: Any = None, line: str | None = None) -> None:
    """A ``warnings.showwarning`` that prints a :class:`SpecWarning` as its one line
    and leaves every other warning to Python's default."""
    if isinstance(message, SpecWarning):
        import sys
        print(message.line(), file=file or sys.stderr)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


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
