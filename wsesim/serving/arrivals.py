"""Request streams: when requests arrive (a small registry of arrival processes, or a
file) and how long their prompts and outputs are.

A stream is drawn once at a mean rate of one request per second (its *pattern*) and
scaled to any rate, so runs at different rates (a capacity search) see the same
requests in the same order, arriving proportionally sooner or later. Generated streams
start with a request at time zero (as vLLM's benchmark sends its first request at once).
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from wsesim.errors import SpecError
from wsesim.specs.bounds import MAX_OUTPUT_TOKENS, MAX_PROMPT_TOKENS
from wsesim.specs.serving import DEFAULT_REQUESTS, MAX_REQUESTS, Lognormal, ServingSpec

MAX_ARRIVALS_FILE_BYTES = 64 * 2**20   # an arrivals file of MAX_REQUESTS rows is ~5 MB
FILE_COLUMNS = ("arrival_s", "prompt_tokens", "output_tokens")
MAX_TOKENS = {"prompt_tokens": MAX_PROMPT_TOKENS, "output_tokens": MAX_OUTPUT_TOKENS}


def _poisson(rng: np.random.Generator, n: int, cv: float | None) -> np.ndarray:
    """Exponential gaps: arrivals of a Poisson process."""
    return rng.exponential(1.0, n)


def _gamma(rng: np.random.Generator, n: int, cv: float | None) -> np.ndarray:
    """Gamma gaps with coefficient of variation ``cv`` (shape 1/cv^2; vLLM's
    ``burstiness`` is the shape): bursty above 1, regular below."""
    assert cv is not None
    shape = 1.0 / cv**2
    return rng.gamma(shape, 1.0 / shape, n)


def _constant(rng: np.random.Generator, n: int, cv: float | None) -> np.ndarray:
    """Evenly spaced arrivals."""
    return np.ones(n)


# gaps between arrivals with mean 1, by process name (serving.arrivals)
ARRIVALS: dict[str, Callable[[np.random.Generator, int, float | None], np.ndarray]] = {
    "poisson": _poisson, "gamma": _gamma, "constant": _constant}


@dataclass(frozen=True)
class Requests:
    """Requests of one run: arrival times (seconds, sorted), prompt and output tokens."""

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    rate_per_s: float          # the offered rate (mean requests per second)

    def __len__(self) -> int:
        return len(self.arrival_s)


@dataclass(frozen=True)
class Pattern:
    """A request stream at a mean rate of one request per second, to be scaled."""

    unit_arrival: np.ndarray   # seconds at rate 1
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    rate_per_s: float          # the rate asked for (or the file's own)
    description: str

    def at(self, rate_per_s: float | None = None) -> Requests:
        """The stream at ``rate_per_s`` (default: its own rate)."""
        rate = self.rate_per_s if rate_per_s is None else rate_per_s
        return Requests(self.unit_arrival / rate, self.prompt_tokens, self.output_tokens,
                        rate)


def _lengths(rng: np.random.Generator, n: int, how: int | Lognormal) -> np.ndarray:
    if isinstance(how, Lognormal):
        mu = math.log(how.mean) - how.sigma**2 / 2      # so that the mean is ``mean``
        drawn = np.rint(rng.lognormal(mu, how.sigma, n))
        return np.clip(drawn, how.min, how.max).astype(np.int64)
    return np.full(n, int(how), dtype=np.int64)


def arrivals_path(name: str, base_dir: Path) -> Path:
    """An arrivals file as named in a deployment (relative to the file that names it)."""
    path = Path(name).expanduser()
    return path if path.is_absolute() else base_dir / path


def pattern(spec: ServingSpec, prompt_tokens: int, output_tokens: int,
            base_dir: Path = Path("."), source: str | Path = "<input>") -> Pattern:
    """The request stream ``spec`` asks for: generated (the workload's lengths unless
    ``spec`` draws them) or read from its arrivals file (relative to ``base_dir``)."""
    if spec.arrivals_file is not None:
        path = arrivals_path(spec.arrivals_file, base_dir)
        if not path.is_file():
            raise SpecError(source, "serving.arrivals_file",
                            f"no such file: {spec.arrivals_file!r}"[:300])
        times, prompt, output = read_arrivals(path)
        if spec.requests is not None:
            if spec.requests > len(times):
                raise SpecError(source, "serving.requests",
                                f"{spec.requests} requests asked for, but "
                                f"{spec.arrivals_file} lists {len(times)}"[:300])
            times, prompt, output = (a[:spec.requests] for a in (times, prompt, output))
        times = times - times[0]
        span = float(times[-1])
        own = (len(times) - 1) / span if span > 0 else math.inf
        if not math.isfinite(own):
            if spec.rate_per_s is not None:
                raise SpecError(source, "serving.rate_per_s",
                                "the arrivals file's requests all arrive at once: "
                                "there is no rate to scale")
            return Pattern(times, prompt, output, math.inf, f"file {path.name}")
        return Pattern(times * own, prompt, output, spec.rate_per_s or own,
                       f"file {path.name}" + (f" rescaled from {own:.4g} req/s"
                                               if spec.rate_per_s else ""))
    n = spec.requests or DEFAULT_REQUESTS
    streams = np.random.SeedSequence(spec.seed).spawn(3)
    rng_t, rng_p, rng_o = (np.random.default_rng(s) for s in streams)
    gaps = ARRIVALS[spec.arrivals](rng_t, n - 1, spec.cv)
    unit = np.concatenate([[0.0], np.cumsum(gaps)])
    prompt = _lengths(rng_p, n, spec.prompt_tokens or prompt_tokens)
    output = _lengths(rng_o, n, spec.output_tokens or output_tokens)
    what = spec.arrivals + (f" (cv {spec.cv:g})" if spec.cv is not None else "")
    assert spec.rate_per_s is not None
    return Pattern(unit, prompt, output, spec.rate_per_s, f"{what}, seed {spec.seed}")


# ---- arrivals files ------------------------------------------------------------------

def _cell(path: Path, where: str, column: str, value: Any) -> float:
    """One value of an arrivals file, checked: times finite and not negative, lengths
    whole numbers from 1 to the workload's bound (MAX_TOKENS)."""
    key = f"{where}.{column}"
    shown = repr(value)[:40]
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text) if column != "arrival_s" else float(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise SpecError(path, key, f"expected a number, got {shown}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(path, key, f"expected a number, got {shown}")
    try:
        finite = math.isfinite(value)
    except OverflowError:   # a whole number too large for a float
        finite = False
    if not finite:
        raise SpecError(path, key, f"expected a finite number, got {shown}")
    if column == "arrival_s":
        if value < 0:
            raise SpecError(path, key, f"an arrival time cannot be negative, got {shown}")
        return float(value)
    most = MAX_TOKENS[column]
    if float(value) != int(value) or not 1 <= value <= most:
        raise SpecError(path, key, f"expected a whole number of tokens from 1 to "
                                   f"{most:,}, got {shown}")
    return float(value)


def _rows(path: Path, text: str) -> list[tuple[str, dict[str, Any]]]:
    """(where, row) of every request line of a CSV (with a header) or JSONL file."""
    suffix = path.suffix.lower()
    out: list[tuple[str, dict[str, Any]]] = []
    if suffix == ".csv":
        reader = csv.reader(text.splitlines())
        header = next(reader, None)
        if header is None:
            raise SpecError(path, "", "empty file: expected a header line "
                                      f"{','.join(FILE_COLUMNS)} and one line per request")
        header = [h.strip() for h in header]
        _check_columns(path, "line 1", header)
        for number, cells in enumerate(reader, start=2):
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise SpecError(path, f"line {number}", f"{len(cells)} values for "
                                f"{len(header)} columns ({','.join(header)})")
            out.append((f"line {number}", dict(zip(header, cells))))
            if len(out) > MAX_REQUESTS:
                break
        return out
    if suffix in (".jsonl", ".ndjson"):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"line {number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SpecError(path, where, f"malformed JSON: {exc.msg}") from None
            if not isinstance(row, dict):
                raise SpecError(path, where, "expected a JSON object with "
                                             f"{', '.join(FILE_COLUMNS)}")
            _check_columns(path, where, list(row))
            out.append((where, row))
            if len(out) > MAX_REQUESTS:
                break
        return out
    raise SpecError(path, "", "expected a .csv or .jsonl file of arrivals "
                              f"({', '.join(FILE_COLUMNS)})")


def _check_columns(path: Path, where: str, names: list[Any]) -> None:
    unknown = [str(n) for n in names if n not in FILE_COLUMNS]
    if unknown:
        raise SpecError(path, f"{where}.{unknown[0]}"[:200],
                        f"unknown column (expected {', '.join(FILE_COLUMNS)})")
    missing = [c for c in FILE_COLUMNS if c not in names]
    if missing:
        raise SpecError(path, f"{where}.{missing[0]}", "required column is missing")


def read_arrivals(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrival times (sorted), prompt and output tokens of an arrivals file; any bad
    line is one located error."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise SpecError(path, "", f"cannot read file: {exc.strerror}") from None
    if size > MAX_ARRIVALS_FILE_BYTES:
        raise SpecError(path, "", f"{size:,} bytes is more than the "
                                  f"{MAX_ARRIVALS_FILE_BYTES:,} an arrivals file may hold")
    try:
        text = path.read_text(encoding="utf-8-sig")   # a spreadsheet's BOM is no column
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(path, "", f"cannot read file: {exc}"[:300]) from None
    rows = _rows(path, text)
    if not rows:
        raise SpecError(path, "", "no requests in the file")
    if len(rows) > MAX_REQUESTS:
        raise SpecError(path, "", f"more than {MAX_REQUESTS:,} requests")
    values = np.array([[_cell(path, where, c, row[c]) for c in FILE_COLUMNS]
                       for where, row in rows])
    order = np.argsort(values[:, 0], kind="stable")
    values = values[order]
    return (values[:, 0], values[:, 1].astype(np.int64), values[:, 2].astype(np.int64))
