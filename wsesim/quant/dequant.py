"""Dequantization as instructions: what a PE runs to turn stored weights into fp16.

A PE has 16-bit SIMD lanes and no sub-byte arithmetic, and its SRAM is addressed in
16-bit words (Cerebras documentation, "Data formats": memory is 16-bit word addressable,
not byte addressable). Before a weight can be multiplied it must be cut out of its word,
sign-extended to an int16, converted to fp16 and scaled. This module writes down that
instruction sequence for every stored format of :mod:`wsesim.quant.packing` as data
(:class:`Step`: kind, count, per what) and counts the operations of a ``k x n`` weight
block exactly from the bit layout. The cycles come from the hardware profile
(``kernel.dequant``, priced by :meth:`wsesim.perf.compute.PECompute.dequant`).
Everything here is DERIVED from the layout and an assumed instruction set, not measured.

How a kernel runs it
--------------------
WaferLLM's GEMV issues one multiply-accumulate over the block's ``n`` outputs per input
``j``; so the kernel dequantizes, for each input, the ``n`` weights ``w[0:n, j]`` into an
``n``-long fp16 buffer just before that multiply: every step below is one vector
instruction over those ``n`` values (a strided operand reads each output row's word in
place: a DSD instruction reads its operands from SRAM itself, so there is no separate
load instruction). Each packed row (packing.py: one output row, packed along the
inputs) is taken to start on a 16-bit word, so weight ``j``'s field sits at the same bit
position in every row and one shift amount serves the whole instruction. (packing.py
starts rows on bytes; a row of an odd byte count would be padded by one byte, which the
ledger does not count, or run as two instructions over every other row.)

Cutting a field out of its word
-------------------------------
Bit ``i`` of a row's bit stream is bit ``i % 16`` of word ``i // 16`` (packing.py's
little-endian bytes read as words). A signed field of ``w`` bits starting at bit ``b``
of its word is, by where it lies:

* **top** (``b + w == 16``): one arithmetic shift right by ``16 - w`` (it sign-extends).
* **inner** (``b + w < 16``): shift left by ``16 - w - b`` (drops the bits above),
  then arithmetic shift right by ``16 - w`` (drops the bits below and sign-extends):
  two shifts. The shifts do the masking; a mask then xor-and-subtract sign extension
  would take three operations.
* **split** across two words (``b + w > 16``; ``a = 16 - b`` low bits at the top of
  word ``i``, ``c = w - a`` high bits at the bottom of word ``i + 1``): a logical shift
  right of word ``i`` by ``b`` (the low part, zero above), a shift left of word
  ``i + 1`` by ``16 - c`` and an arithmetic shift right by ``16 - w`` (the high part in
  place, sign-extended), an or: three shifts and one logic operation.

Per format (long rows; a block's exact counts are counted over its own ``k``):

* **int8**: fields at bits 0 and 8 of each word: one inner, one top: 3 shifts per 2
  weights, **1.5 shifts per weight**.
* **int4 dense** (two per byte): nibbles at bits 0, 4, 8, 12: three inner, one top:
  **1.75**.
* **int4 byte** (one per byte, low nibble): nibbles at bits 0 and 8, both inner (the
  high nibbles of the bytes are unused): **2**. On a word-addressed PE the byte layout
  saves no work; it only costs memory.
* **3.5 byte** (one pair per byte): 4-bit lanes at bits 0 and 8, 3-bit lanes at bits 4
  and 12 (bits 7 and 15 unused): all inner: **2**.
* **3.5 dense** (7-bit pairs, a little-endian bit stream): pair ``i`` starts at bit
  ``7 i``; over 16 pairs (112 bits = 7 words, the period) its start ``b = 7 i mod 16``
  takes every value 0..15 once (7 and 16 are coprime). Its 4-bit lane (bits ``b..b+3``)
  is top for ``b = 12`` and split for ``b`` in 13, 14, 15: 1 top, 3 split, 12 inner. Its
  3-bit lane (bits ``b+4..b+6``, in the next word when ``b >= 12``) is top for ``b = 9``
  and split for ``b`` in 10, 11: 1 top, 2 split, 13 inner. Per 32 weights:
  ``1 + 3*3 + 12*2 + 1 + 2*3 + 13*2 = 67`` shifts and 5 ors: **2.09375 shifts and
  0.15625 logic operations per weight**. (6 of the 16 pairs straddle a word boundary,
  ``b >= 10``, but only 5 of the 32 lanes do: the pair at ``b = 12`` has its 4-bit lane
  at the top of one word and its 3-bit lane at the bottom of the next.)

Then, per weight: one **convert** int16 -> fp16, and the scale: one **fma** ``q*s + o``
with a zero point, one multiply ``q*s`` (priced as an fma) without. The scale and offset
are the row's group values, read in place (fp16 as stored).

Per group (each output row's group: ``n * ceil(k / group_size)`` of them in a block,
``n`` per-channel):

* fp32 scales: one convert to fp16 (the kernel's arithmetic is fp16).
* 4- or 8-bit zero points: cut out like the payload (they are packed like the int4
  dense / int8 payload, flattened over the block's groups), one convert, one multiply
  by the scale (the offset is ``s * z``, as packing.py dequantizes).
* 3.5 bits: the 3-bit lane's step is ``2 s`` (packing.py): one fp16 op doubles the
  group's scale, and the odd weights' fma uses it.

Without stored scales (``scale_bits == 0``) the tensor-wide scale is folded into the
input instead of into every weight: one **scalar** multiply ``x_j * t`` per input (per
block row; ``2 t`` for the 3-bit lane, doubled once), and no per-weight multiply.

Not modelled: a kernel that multiplies by the scale after accumulating each group's
products would save the per-weight fma (one op per weight) at the price of a second
accumulator; loads into registers (a DSD operand is read in place).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Union

import numpy as np
import numpy.typing as npt

from wsesim.quant.formats import QuantFormat
from wsesim.quant.sizes import groups_per_row

WORD_BITS = 16
KINDS: tuple[str, ...] = ("shift", "logic", "convert", "fma", "scalar")
# Which SIMD lanes each kind runs on (None: a scalar instruction, one value at a time).
LANES: dict[str, str | None] = {"shift": "int16", "logic": "int16", "convert": "fp16",
                                "fma": "fp16", "scalar": None}
FIELD_CLASSES: tuple[str, ...] = ("top", "inner", "split")

Counts = Union[int, npt.NDArray[np.int64]]


@dataclass(frozen=True)
class Step:
    """``count`` operations of ``kind`` for every ``per`` of a block (a unit counted by
    :func:`block_units`), and what they do."""

    kind: str
    count: int
    per: str
    what: str


# ----------------------------------------------------------------- the sequences
EXTRACT: dict[str, tuple[Step, ...]] = {
    "top": (Step("shift", 1, "top field", "arithmetic shift right by 16 - width"),),
    "inner": (Step("shift", 1, "inner field", "shift left: the field to the top"),
              Step("shift", 1, "inner field",
                   "arithmetic shift right by 16 - width: to the bottom, sign-extended")),
    "split": (Step("shift", 1, "split field",
                   "logical shift right of the first word: the low part"),
              Step("shift", 1, "split field",
                   "shift left of the second word: the high part to the top"),
              Step("shift", 1, "split field",
                   "arithmetic shift right: the high part in place, sign-extended"),
              Step("logic", 1, "split field", "or of the two parts")),
}


def _zero_extract() -> tuple[Step, ...]:
    # zero points are 4 or 8 bits, so never split across words
    return tuple(Step(s.kind, s.count, f"{s.per.split()[0]} zero point", s.what)
                 for cls in ("top", "inner") for s in EXTRACT[cls])


def sequence(fmt: QuantFormat) -> tuple[Step, ...]:
    """Every step that turns ``fmt``'s stored weights into fp16 (empty for float
    formats: they are used as stored)."""
    if fmt.is_float:
        return ()
    steps = [s for cls in FIELD_CLASSES for s in EXTRACT[cls]]
    steps.append(Step("convert", 1, "weight", "int16 -> fp16"))
    if fmt.scale_bits:
        steps.append(Step("fma", 1, "weight", "q * s + offset (fma)" if fmt.zero_bits
                          else "q * s (multiply)"))
        if fmt.scale_bits == 32:
            steps.append(Step("convert", 1, "group", "fp32 scale -> fp16"))
        if fmt.zero_bits in (4, 8):
            steps.extend(_zero_extract())
            steps.append(Step("convert", 1, "group", "int16 zero point -> fp16"))
            steps.append(Step("fma", 1, "group", "offset = s * z (multiply)"))
        if fmt.bits == 3.5:
            steps.append(Step("fma", 1, "group", "2 s, the 3-bit lane's step (s + s)"))
    else:
        steps.append(Step("scalar", 1, "input",
                          "x_j * tensor scale (2 x scale for the 3-bit lane): the scale "
                          "folded into the input"))
    return tuple(steps)


# ----------------------------------------------------------------- the layout
def field_layout(fmt: QuantFormat, j: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(first bit in the row's bit stream, width in bits) of weight ``j`` of a packed
    row of an integer format, as :func:`wsesim.quant.pack` lays it out."""
    if fmt.is_float:
        raise ValueError(f"{fmt.describe()} has no packed integer fields")
    j = np.asarray(j, dtype=np.int64)
    if fmt.bits == 8.0:
        return 8 * j, np.full_like(j, 8)
    if fmt.bits == 4.0:
        return (8 * j if fmt.packing == "byte" else 4 * j), np.full_like(j, 4)
    pair_bits = 8 if fmt.packing == "byte" else 7
    odd = j % 2
    return pair_bits * (j // 2) + 4 * odd, np.where(odd == 1, 3, 4)


def field_class(start_bits: npt.ArrayLike, width: npt.ArrayLike) -> np.ndarray:
    """0 (top), 1 (inner) or 2 (split) for fields at these stream positions."""
    end = np.asarray(start_bits) % WORD_BITS + np.asarray(width)
    return np.where(end == WORD_BITS, 0, np.where(end < WORD_BITS, 1, 2))


def period(fmt: QuantFormat) -> int:
    """Weights after which the field positions repeat (their bits fill whole words):
    2 (int8, int4 byte), 4 (int4 dense, 3.5 byte), 32 (3.5 dense)."""
    p = 1
    while (fmt.bits_per_weight * p) % WORD_BITS or (fmt.bits == 3.5 and p % 2):
        p += 1
    return p


@lru_cache(maxsize=64)
def _prefix(fmt: QuantFormat) -> np.ndarray:
    """(3, period + 1): fields of each class among the first r weights of a period."""
    p = period(fmt)
    cls = field_class(*field_layout(fmt, np.arange(p)))
    onehot = (cls[None, :] == np.arange(3)[:, None]).astype(np.int64)
    return np.concatenate([np.zeros((3, 1), np.int64), np.cumsum(onehot, axis=1)], axis=1)


def row_field_counts(fmt: QuantFormat, k: npt.ArrayLike) -> dict[str, Counts]:
    """Top, inner and split fields among a packed row's first ``k`` weights (exact,
    vectorized over ``k``)."""
    k = np.asarray(k, dtype=np.int64)
    pre = _prefix(fmt)
    p = pre.shape[1] - 1
    whole, rest = np.divmod(k, p)
    return {c: _out(whole * pre[i, p] + pre[i, rest]) for i, c in enumerate(FIELD_CLASSES)}


def _out(x: np.ndarray) -> Counts:
    return int(x) if np.ndim(x) == 0 else x


def _zero_format(zero_bits: int) -> QuantFormat:
    """Integer zero points are packed like the int8 / dense int4 payload."""
    return QuantFormat(bits=float(zero_bits))


# ----------------------------------------------------------------- counting
def block_units(fmt: QuantFormat, k: npt.ArrayLike, n: npt.ArrayLike) -> dict[str, Counts]:
    """How many of each unit a step is counted ``per`` a ``k`` (inputs) x ``n``
    (outputs) block holds: fields of each class, weights, (row, group) pairs, zero
    points of each class, inputs. Groups come from the format (``ceil(k/group_size)``
    per row, one per-channel). Vectorized over broadcastable ``k`` and ``n``."""
    k, n = np.broadcast_arrays(np.asarray(k, np.int64), np.asarray(n, np.int64))
    if (k < 0).any() or (n < 0).any():
        raise ValueError("a block has a non-negative number of inputs and outputs")
    out: dict[str, Counts] = {}
    if fmt.is_float:
        return out
    for cls, count in row_field_counts(fmt, k).items():
        out[f"{cls} field"] = _out(n * count)
    out["weight"] = _out(k * n)
    groups = n * np.asarray(groups_per_row(fmt, k), np.int64)
    out["group"] = _out(groups)
    if fmt.zero_bits in (4, 8):
        for cls, count in row_field_counts(_zero_format(fmt.zero_bits), groups).items():
            if cls != "split":
                out[f"{cls} zero point"] = count
    out["input"] = _out(np.where(n > 0, k, 0))
    return out


def block_ops(fmt: QuantFormat, k: npt.ArrayLike, n: npt.ArrayLike) -> dict[str, Counts]:
    """Operations of each kind (:data:`KINDS`) to dequantize a ``k x n`` block once."""
    units = block_units(fmt, k, n)
    ops: dict[str, Counts] = {kind: 0 for kind in KINDS}
    for step in sequence(fmt):
        ops[step.kind] = ops[step.kind] + step.count * units.get(step.per, 0)
    return ops


def ops_per_weight(fmt: QuantFormat, k: int | None = None, n: int | None = None
                   ) -> dict[str, float]:
    """Operations of each kind per weight: of a ``k x n`` block, or (``None``) on long
    rows of a wide block (per-row and per-input work amortized away, per-group work
    over ``group_size`` weights)."""
    if fmt.is_float:
        return {kind: 0.0 for kind in KINDS}
    if k is not None and n is not None:
        weights = k * n
        return {kind: (float(v) / weights if weights else 0.0)
                for kind, v in block_ops(fmt, k, n).items()}
    p = period(fmt)
    units: dict[str, float] = {f"{c} field": v / p
                               for c, v in row_field_counts(fmt, p).items()}
    units["weight"] = 1.0
    per_group = 1.0 / fmt.group_size if fmt.group_size else 0.0
    units["group"] = per_group
    if fmt.zero_bits in (4, 8):
        zf = _zero_format(fmt.zero_bits)
        zp = period(zf)
        for c, v in row_field_counts(zf, zp).items():
            units[f"{c} zero point"] = per_group * v / zp
    units["input"] = 0.0
    ops = {kind: 0.0 for kind in KINDS}
    for step in sequence(fmt):
        ops[step.kind] += step.count * units.get(step.per, 0.0)
    return ops
