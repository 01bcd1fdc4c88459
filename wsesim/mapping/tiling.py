"""Cutting tensors into one block per PE of a region, and what each block costs.

A linear weight (``rows`` outputs x ``cols`` inputs) on an R x C region is cut in 2D
(as WaferLLM's MeshGEMV does): its inputs along one axis of the region, its outputs
along the other. A vector (a norm or a bias) is cut along one axis and copied along the
other, so every PE that needs its slice holds it. A layer's KV cache puts tokens along
the region's rows and each token's K/V vector along its columns.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import numpy.typing as npt

from wsesim.quant import PackedBytes, QuantFormat, packed_bytes, row_bytes
from wsesim.quant.sizes import block_bytes
from wsesim.specs import TensorShape

Axis = Literal["rows", "cols"]
Array = npt.NDArray[np.int64]


def split_units(total: int, parts: int, unit: int = 1) -> Array:
    """Elements of a ``total``-long dimension held by each of ``parts`` PEs.

    The dimension is cut in whole ``unit``s (a quantization group, a 3.5-bit pair) so
    that no group or pair straddles two PEs; the last ``n_units % parts`` PEs get one
    unit more, so that a partial last unit (when ``unit`` does not divide ``total``)
    lands on a PE with the extra unit and no two PEs differ by more than one unit.
    Sums to ``total``. The result is read-only (cached).
    """
    return _split_units(int(total), int(parts), int(unit))


@lru_cache(maxsize=4096)
def _split_units(total: int, parts: int, unit: int) -> Array:
    if parts <= 0 or unit <= 0 or total < 0:
        raise ValueError(f"split_units({total}, {parts}, {unit}): sizes must be positive")
    n_units = -(-total // unit)
    base, rem = divmod(n_units, parts)
    counts = np.full(parts, base, dtype=np.int64)
    counts[parts - rem:] += 1
    elements = counts * unit
    elements[-1] -= n_units * unit - total  # the partial unit, if any, ends the row
    elements.setflags(write=False)
    return elements


def groups_touched(k: Array, group_size: int | None) -> Array:
    """Quantization groups each consecutive piece of a row touches (pieces in order).

    A piece that starts or ends inside a group needs that group's scale and zero too,
    so a group cut in two is stored twice. ``group_size`` None: one per non-empty piece.
    """
    if group_size is None:
        return (k > 0).astype(np.int64)
    end = np.cumsum(k)
    start = end - k
    touched = -(-end // group_size) - start // group_size
    return np.where(k > 0, touched, 0)


@lru_cache(maxsize=4096)
def cut_row(total: int, parts: int, fmt: QuantFormat) -> tuple[Array, Array]:
    """Cut a row of ``total`` weights in format ``fmt`` over ``parts`` PEs.

    Returns (weights, groups touched) per PE. Two cuts are tried: along group
    boundaries (no group is stored twice, but a row of few groups leaves PEs idle or
    uneven) and in the finest legal pieces (a 3.5-bit pair, else one weight: even, but
    a group cut in two stores its scale and zero twice). The one whose fullest PE holds
    fewer bytes per row wins; ties go to the group-aligned cut. Read-only (cached).
    """
    fine = 2 if fmt.bits == 3.5 else 1
    if fmt.is_float:
        k = split_units(total, parts, fine)
        return k, np.zeros_like(k)
    meta_bytes = (fmt.scale_bits + fmt.zero_bits) / 8
    best = None
    for unit in dict.fromkeys([fmt.group_size or fine, fine]):
        k = split_units(total, parts, unit)
        g = groups_touched(k, fmt.group_size)
        worst = float(np.max(row_bytes(fmt, k) + g * meta_bytes))
        if best is None or worst < best[0]:
            best = (worst, k, g)
    assert best is not None
    best[2].setflags(write=False)
    return best[1], best[2]


@dataclass(frozen=True)
class TensorBlock:
    """A tensor cut into one block per PE of its stage's region.

    The tensor's columns (a linear's inputs, a vector's elements) are cut along
    ``k_axis`` of the region, its rows (a linear's outputs) along the other axis; a
    vector (one row) is copied along the other axis.
    """

    tensor: TensorShape
    fmt: QuantFormat
    k_axis: Axis

    @property
    def is_vector(self) -> bool:
        return self.tensor.rows == 1

    def whole(self) -> PackedBytes:
        """The tensor packed whole (one copy, no cuts)."""
        return packed_bytes(self.fmt, self.tensor.rows, self.tensor.cols)

    def whole_bytes(self) -> int:
        return int(self.whole().total)

    def cuts(self, rows: int, cols: int) -> tuple[Array, Array, Array]:
        """(inputs, groups touched, outputs) per PE, shaped to broadcast to (rows, cols)."""
        t = self.tensor
        k_parts, n_parts = (rows, cols) if self.k_axis == "rows" else (cols, rows)
        k, groups = cut_row(t.cols, k_parts, self.fmt)
        n = np.ones(1, np.int64) if self.is_vector else split_units(t.rows, n_parts)
        if self.k_axis == "rows":
            return k[:, None], groups[:, None], n[None, :]
        return k[None, :], groups[None, :], n[:, None]

    def blocks(self, rows: int, cols: int) -> PackedBytes:
        """Packed bytes of every PE's block, broadcastable to (rows, cols)."""
        k, groups, n = self.cuts(rows, cols)
        return block_bytes(self.fmt, n, k, groups)

    def peak_bytes(self, rows: int, cols: int) -> int:
        """Bytes of the largest block on a rows x cols region (fast: 1-D cuts only)."""
        return _tensor_peak(self, rows, cols)

    def stored_bytes_low(self, rows: int, cols: int) -> float:
        """A lower bound (exact when scales and zeros are whole bytes) on the bytes all
        the region's blocks store together, groups cut in two and copies included:
        a block's bytes are its outputs times its row's, so the sum over the region
        is a product of two 1-D sums (fast)."""
        k, groups, n = (a.ravel() for a in self.cuts(rows, cols))
        copies = (cols if self.k_axis == "rows" else rows) if self.is_vector else 1
        outputs = float(n.sum()) * copies
        meta_bits = self.fmt.scale_bits + self.fmt.zero_bits if not self.fmt.is_float else 0
        return outputs * (float(row_bytes(self.fmt, k).sum())
                          + float(groups.sum()) * meta_bits / 8)


@dataclass(frozen=True)
class KVCache:
    """One layer's K and V caches for ``sequences`` sequences of ``tokens_per_sequence``
    tokens: each sequence's tokens cut along the region's rows, each token's K (and V)
    vector of ``kv_dim`` elements cut along its columns."""

    sequences: int
    tokens_per_sequence: int
    kv_dim: int
    fmt: QuantFormat

    def whole(self) -> PackedBytes:
        """K and V packed whole: two (sequences x tokens) x kv_dim matrices."""
        one = packed_bytes(self.fmt, self.sequences * self.tokens_per_sequence, self.kv_dim)
        return PackedBytes(2 * one.payload, 2 * one.scales, 2 * one.zeros)

    def whole_bytes(self) -> int:
        return int(self.whole().total)

    def tokens_per_pe(self, rows: int) -> Array:
        """Tokens of one sequence held by each region row (column vector)."""
        return split_units(self.tokens_per_sequence, rows)[:, None]

    def blocks(self, rows: int, cols: int) -> PackedBytes:
        """K plus V bytes per PE, broadcastable to (rows, cols)."""
        dims, groups = cut_row(self.kv_dim, cols, self.fmt)
        one = block_bytes(self.fmt, self.tokens_per_pe(rows) * self.sequences,
                           dims[None, :], groups[None, :])
        return PackedBytes(2 * one.payload, 2 * one.scales, 2 * one.zeros)

    def peak_bytes(self, rows: int, cols: int) -> int:
        return _kv_peak(self, rows, cols)

    def stored_bytes_low(self, rows: int, cols: int) -> float:
        """Like :meth:`TensorBlock.stored_bytes_low`, for K and V over the region."""
        dims, groups = cut_row(self.kv_dim, cols, self.fmt)
        tokens = float(self.tokens_per_pe(rows).sum()) * self.sequences
        meta_bits = self.fmt.scale_bits + self.fmt.zero_bits if not self.fmt.is_float else 0
        return 2 * tokens * (float(row_bytes(self.fmt, dims).sum())
                             + float(groups.sum()) * meta_bits / 8)


@lru_cache(maxsize=1 << 16)
def _tensor_peak(tb: TensorBlock, rows: int, cols: int) -> int:
    k, groups, n = tb.cuts(rows, cols)
    # a block grows with its rows, so the largest sits in a row of most outputs
    return int(np.max(block_bytes(tb.fmt, n.max(), k.ravel(), groups.ravel()).total))


@lru_cache(maxsize=1 << 16)
def _kv_peak(kv: KVCache, rows: int, cols: int) -> int:
    # layouts try many region shapes, and plans of other wafer counts try them again
    return int(np.max(kv.blocks(rows, cols).total))
