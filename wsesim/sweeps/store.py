"""The results folder of a sweep: ``results.jsonl`` (the record, one JSON object a
line) and ``results.csv`` (the same rows as a table), appended and flushed row by row,
read back to resume, and locked while a sweep writes into it.

The JSONL is the source of truth: the CSV is rewritten from it whenever the two
disagree. A last line cut short by an interrupted write is dropped; any other line that
is not UTF-8, not JSON, not an object or has no ``point`` is a located error (never
skipped: a row silently dropped would be recomputed under the user's feet).
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from wsesim import strict_json
from wsesim.errors import SpecError
from wsesim.sweeps.rows import PROVENANCE_COLUMNS, RESULT_COLUMNS, TAIL_COLUMNS
from wsesim.sweeps.spec import MAX_SWEEP_POINTS

LOCK_NAME = ".wsesim-sweep.lock"
MAX_ROW_BYTES = 16 * 2**20   # one row is ~2 KB; a longer line is not a row we wrote


def column_order(columns: Iterable[str], param_keys: Sequence[str]) -> list[str]:
    """Parameters, the fixed result columns, other columns (performance) in the order
    first seen, the provenance columns, then error and point."""
    cols = list(dict.fromkeys(columns))
    head = [*param_keys, *(c for c in RESULT_COLUMNS if c not in param_keys)]
    tail = [*PROVENANCE_COLUMNS, *TAIL_COLUMNS]
    rest = [c for c in cols if c not in head and c not in tail]
    return [*head, *rest, *tail]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def json_line(row: Mapping[str, Any]) -> str:
    """A row as one line of strict JSON."""
    return strict_json.dumps(row, default=str) + "\n"


def _ends_whole(path: Path) -> bool:
    """Whether ``path`` is empty or ends with a newline (no line cut short)."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return True
        f.seek(size - 1)
        return f.read(1) == b"\n"


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "true or false", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


class ResultStore:
    """``results.jsonl`` and ``results.csv`` in one folder. Use as a context manager
    (or :meth:`open` and :meth:`close`): opening takes the folder's lock, so a second
    sweep into the same folder is refused instead of writing every row twice. The
    CSV's header is written once (the canonical column order); a later row with
    columns the header lacks fills the known ones, and at :meth:`close` the CSV is
    rewritten from the JSONL with every column."""

    def __init__(self, out: str | Path, param_keys: Sequence[str]) -> None:
        self.out = Path(out)
        self.jsonl = self.out / "results.jsonl"
        self.csv = self.out / "results.csv"
        self.lock_path = self.out / LOCK_NAME
        self.param_keys = list(param_keys)
        self.columns: list[str] | None = None
        self.stale = False
        self._cut_tail = False   # what load() found: the JSONL's last line cut short,
        self._tidy = False       # both files already holding exactly its rows,
        self._loaded = 0         # and how many
        self._jf = self._cf = self._writer = None
        self._lock: Any = None

    # ------------------------------------------------------------------ the lock
    def open(self) -> "ResultStore":
        """Create the folder and take its lock (one line naming the folder and the lock
        when another sweep holds it)."""
        from filelock import FileLock, Timeout

        self.out.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.lock_path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise SpecError(self.out, "", "another sweep is writing into this folder "
                            f"(lock {self.lock_path})") from None
        self._lock = lock
        return self

    def __enter__(self) -> "ResultStore":
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --------------------------------------------------------------- reading back
    def load(self) -> dict[str, dict[str, Any]]:
        """Rows already present, by point key: a point found twice keeps its last row,
        and a last line cut short by an interrupted write is left out. Reads only;
        :meth:`keep` puts the files in order once the caller has accepted the rows."""
        rows: dict[str, dict[str, Any]] = {}
        count = 0
        for row in self._read_jsonl():
            rows[row["point"]] = row
            count += 1
            if len(rows) > MAX_SWEEP_POINTS:
                raise SpecError(self.out, "", f"holds more than {MAX_SWEEP_POINTS:,} rows, "
                                "more than a sweep may have; use another --out")
        header, csv_rows = self._read_csv_shape()
        shown = set(header or ())
        self._tidy = (count == len(rows) and not self._cut_tail and header is not None
                      and csv_rows == len(rows)
                      and all(c in shown for r in rows.values() for c in r))
        self._loaded = len(rows)
        if self._tidy:
            self.columns = header
        return rows

    def keep(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Make both files hold exactly ``rows`` (some of those :meth:`load` read, in
        order), unless they already do: rows dropped, a point found twice, a cut-off
        last line or a CSV that disagrees with the JSONL rewrite them."""
        rows = list(rows)
        if self._tidy and len(rows) == self._loaded:
            return
        if rows:
            self.rewrite(rows)
            return
        for path in (self.jsonl, self.csv):
            path.unlink(missing_ok=True)
        self.columns = None      # the first row appended writes the header

    def _read_jsonl(self) -> Iterator[dict[str, Any]]:
        if not self.jsonl.is_file():
            return
        where = str(self.jsonl)
        with open(self.jsonl, "rb") as f:
            number = 0
            while True:
                raw = f.readline(MAX_ROW_BYTES + 1)
                if not raw:
                    return
                number += 1
                line = f"line {number}"
                if len(raw) > MAX_ROW_BYTES:
                    raise SpecError(where, line, f"longer than {MAX_ROW_BYTES:,} bytes: "
                                    "not a row of a sweep; fix or delete the line, or use "
                                    "another --out")
                if not raw.endswith(b"\n"):   # the last line, cut short
                    self._cut_tail = True
                    return
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise SpecError(where, line, f"not UTF-8 (byte 0x{raw[exc.start]:02x} "
                                    f"at column {exc.start + 1}); fix or delete the line, "
                                    "or use another --out") from None
                if not text.strip():
                    continue
                try:
                    value = json.loads(text)
                except (ValueError, RecursionError) as exc:
                    what = getattr(exc, "msg", None) or type(exc).__name__
                    col = getattr(exc, "colno", None)
                    at = f" at column {col}" if col else ""
                    raise SpecError(where, line, f"not JSON ({what}{at}); fix or delete "
                                    "the line, or use another --out") from None
                if not isinstance(value, dict):
                    raise SpecError(where, line, f"expected a JSON object (one row), got "
                                    f"{_kind(value)}; fix or delete the line, or use "
                                    "another --out")
                if not isinstance(value.get("point"), str):
                    raise SpecError(where, line, "a row without its 'point' (the point's "
                                    "parameters as JSON text); fix or delete the line, or "
                                    "use another --out")
                yield value

    def _read_csv_shape(self) -> tuple[list[str] | None, int]:
        """The CSV's header and row count; (None, 0) when it is missing or unreadable
        (it is rewritten from the JSONL then)."""
        if not self.csv.is_file() or not _ends_whole(self.csv):
            return None, 0
        try:
            with open(self.csv, newline="", encoding="utf-8") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                return header, sum(1 for _ in reader)
        except (UnicodeDecodeError, csv.Error):
            return None, 0

    # -------------------------------------------------------------------- writing
    def rewrite(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Replace both files with ``rows`` (each written to a temporary file first)."""
        rows = list(rows)
        tmp = self.jsonl.with_suffix(".jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json_line(r))
        os.replace(tmp, self.jsonl)
        self._rewrite_csv(rows)

    def _rewrite_csv(self, rows: Iterable[Mapping[str, Any]]) -> None:
        rows = list(rows)
        cols = column_order((c for r in rows for c in r), self.param_keys)
        tmp = self.csv.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for r in rows:
                w.writerow([_cell(r.get(c)) for c in cols])
        os.replace(tmp, self.csv)
        self.columns = cols

    def append(self, row: Mapping[str, Any]) -> None:
        """Add one row to both files, flushed (an interrupted sweep loses nothing)."""
        if self._jf is None:
            self._jf = open(self.jsonl, "a", encoding="utf-8")
            self._cf = open(self.csv, "a", newline="", encoding="utf-8")
            self._writer = csv.writer(self._cf)
        self._jf.write(json_line(row))
        self._jf.flush()
        if self.columns is None:
            self.columns = column_order(row, self.param_keys)
            self._writer.writerow(self.columns)
        if any(c not in self.columns for c in row):
            self.stale = True
        self._writer.writerow([_cell(row.get(c)) for c in self.columns])
        self._cf.flush()

    def close(self) -> None:
        """Close the files, complete the CSV's columns, release the lock."""
        try:
            for f in (self._jf, self._cf):
                if f is not None:
                    f.close()
            self._jf = self._cf = self._writer = None
            if self.stale:
                self._rewrite_csv(self._read_jsonl())
                self.stale = False
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None
