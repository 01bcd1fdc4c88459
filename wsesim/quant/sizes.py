"""Byte counts of packed matrices, vectorized over block shapes.

These are the sizes the memory ledger counts. They are, by construction and by test,
exactly the sizes of the arrays :func:`wsesim.quant.pack` produces:

* each output row is packed separately and starts on a byte boundary; row bytes are
  ``4k`` (fp32), ``2k`` (fp16/bf16), ``k`` (int8), ``ceil(k/2)`` (int4 dense),
  ``k`` (int4 byte), ``ceil(7*ceil(k/2)/8)`` (3.5 dense), ``ceil(k/2)`` (3.5 byte);
* integer formats store ``G = ceil(k / group_size)`` groups per row (one per row when
  ``group_size`` is None, none when ``k == 0``); scales take
  ``ceil(n*G*scale_bits/8)`` bytes and zeros ``ceil(n*G*zero_bits/8)`` bytes for the
  whole block (the ceil applies to the block, as in the packer).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import numpy.typing as npt

from wsesim.quant.formats import QuantFormat

IntLike = Union[int, np.integer, npt.NDArray[np.integer]]
Count = Union[int, npt.NDArray[np.int64]]


@dataclass(frozen=True)
class PackedBytes:
    """Bytes of one packed matrix (or of an array of blocks): payload, scales, zeros."""

    payload: Count
    scales: Count
    zeros: Count

    @property
    def metadata(self) -> Count:
        """Scale plus zero bytes."""
        return self.scales + self.zeros

    @property
    def total(self) -> Count:
        """Everything the ledger counts for the block."""
        return self.payload + self.scales + self.zeros


def payload_bits_per_weight(fmt: QuantFormat) -> float:
    """Payload bits per weight on long rows: 32, 16, 8, 4, 3.5; 4.0 for byte-packed 3.5,
    8.0 for byte-packed 4."""
    return fmt.bits_per_weight


def _as_counts(x: Any, name: str) -> npt.NDArray[np.int64]:
    arr = np.asarray(x)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer or an integer array, got {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must be non-negative")
    return arr


def _ceil_div(a: npt.NDArray[np.int64], b: int) -> npt.NDArray[np.int64]:
    return (a + (b - 1)) // b


def _row_bytes(fmt: QuantFormat, k: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    if fmt.bits == 32.0:
        return 4 * k
    if fmt.bits == 16.0:
        return 2 * k
    if fmt.bits == 8.0:
        return k.copy()
    if fmt.bits == 4.0:
        return k.copy() if fmt.packing == "byte" else _ceil_div(k, 2)
    pairs = _ceil_div(k, 2)  # 3.5 bits
    return pairs if fmt.packing == "byte" else _ceil_div(7 * pairs, 8)


def _metadata_bytes(values: npt.NDArray[np.int64], bits: int) -> npt.NDArray[np.int64]:
    """Bytes of ``values`` metadata entries of ``bits`` each, padded to a whole byte."""
    if bits == 0:
        return np.zeros_like(values)
    if bits % 8 == 0:
        return values * (bits // 8)
    return _ceil_div(values * bits, 8)


def _groups(fmt: QuantFormat, k: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    if fmt.is_float:
        return np.zeros_like(k)
    if fmt.group_size is None:
        return (k > 0).astype(np.int64)
    return _ceil_div(k, fmt.group_size)


def _out(x: npt.NDArray[np.int64]) -> Count:
    return int(x) if x.ndim == 0 else x


def row_bytes(fmt: QuantFormat, k_in: IntLike) -> Count:
    """Payload bytes of one packed row of ``k_in`` weights (vectorized)."""
    return _out(_row_bytes(fmt, _as_counts(k_in, "k_in")))


def groups_per_row(fmt: QuantFormat, k_in: IntLike) -> Count:
    """Groups per row: ``ceil(k/group_size)``, 1 per-channel (0 if ``k == 0``), 0 for
    float formats (vectorized)."""
    return _out(_groups(fmt, _as_counts(k_in, "k_in")))


def packed_bytes(fmt: QuantFormat, n_out: IntLike, k_in: IntLike,
                 groups_per_row: IntLike | None = None) -> PackedBytes:
    """Exact packed sizes of ``(n_out, k_in)`` matrices in format ``fmt``.

    ``n_out`` and ``k_in`` are ints or integer arrays of broadcastable shapes; the result
    fields are ints for scalar inputs, int64 arrays of the broadcast shape otherwise.
    Zero-size blocks take 0 bytes. ``groups_per_row`` overrides ``ceil(k/group_size)``
    for a block cut out of a longer row that starts or ends inside a group: it stores
    the scale (and zero) of every group it touches.
    """
    n = _as_counts(n_out, "n_out")
    k = _as_counts(k_in, "k_in")
    g = None if groups_per_row is None else _as_counts(groups_per_row, "groups_per_row")
    n, k, g = np.broadcast_arrays(n, k, _groups(fmt, k) if g is None else g)
    packed = block_bytes(fmt, n, k, g)
    return PackedBytes(*(_out(x) for x in (packed.payload, packed.scales, packed.zeros)))


def block_bytes(fmt: QuantFormat, n: npt.NDArray[np.int64], k: npt.NDArray[np.int64],
                groups: npt.NDArray[np.int64]) -> PackedBytes:
    """:func:`packed_bytes` for callers that already hold int64 arrays of valid counts
    (the ledger's hot path): no checks, fields broadcast from the inputs' shapes."""
    values = n * groups
    return PackedBytes(n * _row_bytes(fmt, k), _metadata_bytes(values, fmt.scale_bits),
                       _metadata_bytes(values, fmt.zero_bits))
