"""Real quantizers and bit packers for :class:`QuantFormat` (numpy, vectorized).

Layout of a packed ``(n_out, k_in)`` matrix (PyTorch convention, groups and pairs run
along the input dimension). Every output row is packed separately and starts on a byte
boundary:

* 32 / 16 bits: little-endian float32 / float16 / bfloat16 (bf16 = top 16 bits of the
  float32 value, round-to-nearest-even; NaNs stay quiet NaNs).
* 8 bits: one signed int8 per byte.
* 4 bits: ``dense`` = two two's-complement nibbles per byte, element ``2j`` in the low
  nibble and ``2j+1`` in the high nibble, odd ``k`` padded with 0; ``byte`` = one value
  per byte in the low nibble.
* 3.5 bits: elements in pairs ``(2j, 2j+1)``; the even one is a signed 4-bit value in
  [-8, 7], the odd one a signed 3-bit value in [-4, 3]; odd ``k`` is padded with a 0.
  A pair is 7 bits: the 4-bit value in bits 0-3, the 3-bit value in bits 4-6.
  ``dense``: pairs form a little-endian bitstream (pair ``j`` = stream bits
  ``7j .. 7j+6``; stream bit ``i`` = bit ``i % 8`` of byte ``i // 8``), row padded to a
  whole byte. ``byte``: one pair per byte, top bit 0.
* Metadata (integer formats, ``G`` groups per row): scales as fp16 / fp32, row-major
  ``(n, G)``; zeros as fp16 offsets (16), or signed integer zero points packed like the
  int8 / dense int4 payload (8 / 4), row-major, flattened over all ``n*G`` values and
  padded to a byte.

Quantization convention (ours, stated here because the 3.5-bit format needs one):

* Per group, symmetric (``zero_bits == 0``): offset 0, scale ``s = absmax / qpos``.
  With zero points: offset ``(max + min) / 2`` and ``s = (max - min) / 2 / qpos``; a
  16-bit zero stores the offset as fp16. A 4/8-bit zero first widens the range to
  include 0 (as GPTQ does) and takes ``s = (max - min) / 2 / (qpos - 1/2)``; it stores
  ``z = round(offset/s)`` and the offset becomes ``s * z`` (half a step of room keeps
  every weight in range).
* ``qpos`` = 127 (8-bit), 7 (4-bit), 6 (3.5-bit).
* ``q = clip(round((x - offset) / step), qmin, qmax)`` with ``step = s``, except the
  3.5-bit format's 3-bit lane (odd indices), whose step is ``2*s`` (derived, not
  stored). Both lanes then cover the group's range: the 4-bit lane spans [-8s, 7s], the
  3-bit lane [-8s, 6s], and ``qpos = 6`` makes ``±6s`` fit both.
* Scales and offsets are rounded to their stored precision (fp16 / fp32) *before* the
  weights are rounded, and dequantization ``x̂ = q * step + offset`` uses the stored
  values, so a measured error contains every rounding of the stored format.
* Zero-range groups never divide by zero. Symmetric: an all-zero group gets ``s = 0`` and
  ``q = 0``. With a zero point, a constant group ``c`` gets ``s = 0`` and the fp16 offset
  ``c`` (16-bit zero), or ``s = |c|`` and ``z = sign(c)`` (4/8-bit zero) so that it
  reconstructs to ``c`` rounded to the scale precision.
* ``scale_bits == 0``: one symmetric float32 scale for the whole tensor, kept outside
  SRAM (``tensor_scale`` below) and not counted by the ledger.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from wsesim.quant.formats import QuantFormat, as_format
from wsesim.quant.sizes import PackedBytes, groups_per_row, row_bytes

_QPOS = {8.0: 127, 4.0: 7, 3.5: 6}
_ZERO_RANGE = {4: (-8, 7), 8: (-128, 127)}
_F16_MAX = float(np.finfo(np.float16).max)


# ------------------------------------------------------------------ data classes
@dataclass(frozen=True, eq=False)
class QuantizedTensor:
    """Quantized values of an ``(n, k)`` matrix, before packing.

    ``q``: int8 ``(n, k)`` for integer formats; float32 (fp32, bf16-exact values for bf16)
    or float16 for float formats. ``scales`` / ``offsets``: float32 ``(n, G)`` holding the
    stored-precision values, or None (no scales / symmetric). ``tensor_scale``: the
    off-SRAM tensor-wide scale of ``scale_bits == 0`` formats, else None.
    """

    q: np.ndarray
    scales: np.ndarray | None = None
    offsets: np.ndarray | None = None
    tensor_scale: float | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_out, k_in)``."""
        return (int(self.q.shape[0]), int(self.q.shape[1]))


@dataclass(frozen=True, eq=False)
class PackedTensor:
    """Packed bytes of a matrix: ``payload`` uint8 ``(n, row_bytes)``, ``scales`` and
    ``zeros`` uint8 1-D. ``tensor_scale`` is the off-SRAM scale of formats without stored
    scales (not counted in :attr:`nbytes`)."""

    fmt: QuantFormat
    shape: tuple[int, int]
    payload: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray
    tensor_scale: float | None = None

    @property
    def nbytes(self) -> PackedBytes:
        """Sizes of the stored arrays, as the ledger counts them."""
        return PackedBytes(payload=int(self.payload.size), scales=int(self.scales.size),
                           zeros=int(self.zeros.size))


@dataclass(frozen=True)
class ErrorStats:
    """Reconstruction error of a matrix: RMSE, max |error|, RMSE / RMS(w)."""

    rmse: float
    max_abs: float
    rel_rmse: float


# ------------------------------------------------------------------ helpers
def _as_matrix(w: npt.ArrayLike, what: str = "w") -> np.ndarray:
    arr = np.asarray(w)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (n_out, k_in) matrix, got shape {arr.shape}")
    return arr


def _group_size(fmt: QuantFormat, k: int) -> int:
    return fmt.group_size if fmt.group_size is not None else max(k, 1)


def _expand(a: np.ndarray, gs: int, k: int) -> np.ndarray:
    """(n, G) per-group values -> (n, k) per-element values."""
    return np.repeat(a, gs, axis=1)[:, :k]


def _lane_bounds(fmt: QuantFormat, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column qmin, qmax and step multiplier."""
    if fmt.bits == 8.0:
        lo, hi, mult = np.full(k, -128), np.full(k, 127), np.ones(k)
    elif fmt.bits == 4.0:
        lo, hi, mult = np.full(k, -8), np.full(k, 7), np.ones(k)
    else:  # 3.5: even columns 4-bit lane, odd columns 3-bit lane with a doubled step
        odd = (np.arange(k) % 2).astype(bool)
        lo = np.where(odd, -4, -8)
        hi = np.where(odd, 3, 7)
        mult = np.where(odd, 2.0, 1.0)
    return lo.astype(np.int64), hi.astype(np.int64), mult.astype(np.float64)


def _store(x: np.ndarray, bits: int, what: str) -> np.ndarray:
    """Round to the stored precision (16 = fp16, 32 = fp32); returned as float32."""
    if bits == 16:
        if np.any(np.abs(x) > _F16_MAX):
            raise ValueError(f"a group {what} exceeds the fp16 range (|x| > {_F16_MAX:g})")
        return x.astype(np.float16).astype(np.float32)
    out = x.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"a group {what} exceeds the fp32 range")
    return out


def _int_offsets(scales: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Offsets of integer zero points: ``s * z`` rounded once to float32."""
    return (scales.astype(np.float64) * z.astype(np.float64)).astype(np.float32)


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    b = np.broadcast_to(b, a.shape)
    return np.divide(a, b, out=np.zeros(a.shape, dtype=np.float64), where=b != 0)


def _sext(v: np.ndarray, bits: int) -> np.ndarray:
    """Sign-extend ``bits``-wide two's-complement fields to int8."""
    sign = 1 << (bits - 1)
    return ((v.astype(np.int16) ^ sign) - sign).astype(np.int8)


def _nibbles(values: np.ndarray) -> np.ndarray:
    """Signed 4-bit values along the last axis -> two per byte (even index low)."""
    u = (values.astype(np.int16) & 0xF).astype(np.uint8)
    if u.shape[-1] % 2:
        u = np.concatenate([u, np.zeros(u.shape[:-1] + (1,), np.uint8)], axis=-1)
    return (u[..., 0::2] | (u[..., 1::2] << 4)).astype(np.uint8)


def _unnibbles(b: np.ndarray, count: int) -> np.ndarray:
    """Inverse of :func:`_nibbles`: the first ``count`` signed values along the last axis."""
    out = np.empty(b.shape[:-1] + (2 * b.shape[-1],), np.uint8)
    out[..., 0::2] = b & 0xF
    out[..., 1::2] = b >> 4
    return _sext(out[..., :count], 4)


def _pack7(p: np.ndarray, nbytes: int) -> np.ndarray:
    """7-bit values (n, P) -> little-endian bitstream rows of ``nbytes`` bytes."""
    n, npairs = p.shape
    m = -(-npairs // 8)  # blocks of 8 pairs = 56 bits = 7 bytes
    wide = np.zeros((n, m * 8), np.uint64)
    wide[:, :npairs] = p
    shifts = (7 * np.arange(8)).astype(np.uint64)
    blocks = np.bitwise_or.reduce(wide.reshape(n, m, 8) << shifts, axis=2)  # (n, m)
    raw = blocks.astype("<u8").view(np.uint8).reshape(n, m, 8)[:, :, :7]
    return np.ascontiguousarray(raw.reshape(n, m * 7)[:, :nbytes])


def _unpack7(b: np.ndarray, npairs: int) -> np.ndarray:
    """Inverse of :func:`_pack7`: (n, nbytes) -> 7-bit values (n, npairs) as uint8."""
    n, nbytes = b.shape
    m = -(-npairs // 8)
    flat = np.zeros((n, m * 7), np.uint8)
    flat[:, :nbytes] = b
    buf = np.zeros((n, m, 8), np.uint8)
    buf[:, :, :7] = flat.reshape(n, m, 7)
    blocks = buf.view("<u8")  # (n, m, 1)
    shifts = (7 * np.arange(8)).astype(np.uint64)
    p = (blocks >> shifts) & np.uint64(0x7F)  # (n, m, 8)
    return p.reshape(n, m * 8)[:, :npairs].astype(np.uint8)


def _f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), round-to-nearest-even, NaN kept quiet."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = np.isnan(x)
    rounded = np.where(nan, (u >> 16) | 0x40, rounded)
    return rounded.astype(np.uint16)


def _bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def bf16_round(x: npt.ArrayLike) -> np.ndarray:
    """Round to bfloat16 (via float32, round-to-nearest-even); returned as float32."""
    return _bf16_bits_to_f32(_f32_to_bf16_bits(np.asarray(x, dtype=np.float32)))


# ------------------------------------------------------------------ quantize
def quantize(fmt: QuantFormat, w: npt.ArrayLike) -> QuantizedTensor:
    """Quantize an ``(n_out, k_in)`` matrix to ``fmt`` (see the module docstring)."""
    w = _as_matrix(w)
    if fmt.is_float:
        if fmt.bits == 32.0:
            return QuantizedTensor(q=w.astype(np.float32))
        if fmt.float16 == "bf16":
            return QuantizedTensor(q=bf16_round(w))
        return QuantizedTensor(q=w.astype(np.float16))

    x = w.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("cannot quantize non-finite weights to an integer format")
    n, k = x.shape
    qpos = _QPOS[fmt.bits]
    lo, hi, mult = _lane_bounds(fmt, k)

    if fmt.scale_bits == 0:
        absmax = float(np.abs(x).max()) if x.size else 0.0
        ts = np.float32(absmax / qpos)
        if not np.isfinite(ts):
            raise ValueError("the tensor scale exceeds the fp32 range")
        step = float(ts) * mult
        q = np.clip(np.rint(_safe_div(x, step)), lo, hi).astype(np.int8)
        return QuantizedTensor(q=q, tensor_scale=float(ts))

    gs = _group_size(fmt, k)
    g = int(groups_per_row(fmt, k))
    if k == 0:
        empty = np.zeros((n, 0), np.float32)
        return QuantizedTensor(q=np.zeros((n, 0), np.int8), scales=empty,
                               offsets=None if fmt.zero_bits == 0 else empty.copy())
    padded = np.pad(x, ((0, 0), (0, g * gs - k)), mode="edge").reshape(n, g, gs)
    gmax = padded.max(axis=2)
    gmin = padded.min(axis=2)

    offsets: np.ndarray | None
    if fmt.zero_bits == 0:
        scales = _store(np.maximum(np.abs(gmax), np.abs(gmin)) / qpos, fmt.scale_bits,
                        "scale")
        offsets = None
        off_full = np.zeros_like(x)
    else:
        if fmt.zero_bits == 16:
            half = (gmax - gmin) / 2
            mid = (gmax + gmin) / 2
            scales = _store(half / qpos, fmt.scale_bits, "scale")
            offsets = _store(mid, 16, "offset")
        else:
            # Integer zero points (as GPTQ does): the range is widened to include 0, and
            # the step leaves half a step of room, so rounding the offset to s*z never
            # pushes a weight out of range.
            zmin, zmax = _ZERO_RANGE[fmt.zero_bits]
            gmax0, gmin0 = np.maximum(gmax, 0), np.minimum(gmin, 0)
            flat = gmax == gmin
            half = (gmax0 - gmin0) / 2
            mid = np.where(flat, gmax, (gmax0 + gmin0) / 2)
            scales = _store(np.where(flat, np.abs(gmax), half / (qpos - 0.5)),
                            fmt.scale_bits, "scale")
            # a constant group c has s = |c|, so z = round(c / |c|) = sign(c)
            z = np.clip(np.rint(_safe_div(mid, scales.astype(np.float64))), zmin, zmax)
            z = z.astype(np.int64)  # integers: no -0.0 offsets
            offsets = _int_offsets(scales, z)
        off_full = _expand(offsets.astype(np.float64), gs, k)

    step = _expand(scales.astype(np.float64), gs, k) * mult
    q = np.clip(np.rint(_safe_div(x - off_full, step)), lo, hi).astype(np.int8)
    return QuantizedTensor(q=q, scales=scales, offsets=offsets)


def dequantize(fmt: QuantFormat, qt: QuantizedTensor) -> np.ndarray:
    """Reconstruct float32 weights ``q * step + offset`` from a quantized tensor."""
    q = _as_matrix(qt.q, "q")
    if fmt.is_float:
        return q.astype(np.float32)
    n, k = q.shape
    _, _, mult = _lane_bounds(fmt, k)
    qf = q.astype(np.float64)
    if fmt.scale_bits == 0:
        if qt.tensor_scale is None:
            raise ValueError("a format without stored scales needs qt.tensor_scale")
        return (qf * (float(np.float32(qt.tensor_scale)) * mult)).astype(np.float32)
    gs = _group_size(fmt, k)
    g = int(groups_per_row(fmt, k))
    _check_meta(fmt, qt, n, g)
    step = _expand(qt.scales.astype(np.float64), gs, k) * mult
    out = qf * step
    if qt.offsets is not None:
        out = out + _expand(qt.offsets.astype(np.float64), gs, k)
    return out.astype(np.float32)


def _check_meta(fmt: QuantFormat, qt: QuantizedTensor, n: int, g: int) -> None:
    if qt.scales is None or np.shape(qt.scales) != (n, g):
        raise ValueError(f"scales must have shape ({n}, {g}) for {fmt.describe()}")
    if fmt.zero_bits and (qt.offsets is None or np.shape(qt.offsets) != (n, g)):
        raise ValueError(f"offsets must have shape ({n}, {g}) for {fmt.describe()}")


# ------------------------------------------------------------------ pack / unpack
def _exact_in(values: np.ndarray, bits: int, what: str) -> np.ndarray:
    """Values as little-endian fp16/fp32 bytes; they must be exactly representable."""
    v = np.asarray(values, dtype=np.float32)
    stored = v.astype("<f2" if bits == 16 else "<f4")
    if not np.array_equal(stored.astype(np.float32), v):
        raise ValueError(f"{what} are not exactly representable as fp{bits}")
    return np.ascontiguousarray(stored).view(np.uint8).ravel()


def pack(fmt: QuantFormat, qt: QuantizedTensor) -> PackedTensor:
    """Pack a quantized tensor into bytes laid out as the module docstring describes."""
    q = _as_matrix(qt.q, "q")
    n, k = q.shape
    rb = int(row_bytes(fmt, k))
    empty = np.zeros(0, np.uint8)

    if fmt.is_float:
        if fmt.bits == 32.0:
            if q.dtype != np.float32:
                raise ValueError(f"fp32 values must be float32, got {q.dtype}")
            raw = q.astype("<f4")
        elif fmt.float16 == "bf16":
            if q.dtype != np.float32:
                raise ValueError(f"bf16 values must be float32, got {q.dtype}")
            if np.any(q.view(np.uint32) & 0xFFFF):
                raise ValueError("bf16 values must be exactly representable (low 16 bits 0)")
            raw = (q.view(np.uint32) >> 16).astype("<u2")
        else:
            if q.dtype != np.float16:
                raise ValueError(f"fp16 values must be float16, got {q.dtype}")
            raw = q.astype("<f2")
        payload = np.ascontiguousarray(raw).view(np.uint8).reshape(n, rb)
        return PackedTensor(fmt, (n, k), payload, empty, empty.copy())

    if q.dtype.kind not in "iu":
        raise ValueError(f"integer-format values must have an integer dtype, got {q.dtype}")
    lo, hi, _ = _lane_bounds(fmt, k)
    qi = q.astype(np.int64)
    if np.any(qi < lo) or np.any(qi > hi):
        raise ValueError(f"values out of range for {fmt.describe()}")

    if fmt.bits == 8.0:
        payload = qi.astype(np.int8).view(np.uint8)
    elif fmt.bits == 4.0:
        payload = (qi & 0xF).astype(np.uint8) if fmt.packing == "byte" else _nibbles(qi)
    else:
        npairs = -(-k // 2)
        even = (qi[:, 0::2] & 0xF).astype(np.uint8)
        odd = np.zeros((n, npairs), np.uint8)
        odd[:, : k // 2] = qi[:, 1::2] & 0x7
        pairs = even | (odd << 4)
        payload = pairs if fmt.packing == "byte" else _pack7(pairs, rb)
    payload = np.ascontiguousarray(payload, dtype=np.uint8).reshape(n, rb)

    if fmt.scale_bits == 0:
        if qt.tensor_scale is None:
            raise ValueError("a format without stored scales needs qt.tensor_scale")
        return PackedTensor(fmt, (n, k), payload, empty, empty.copy(),
                            tensor_scale=float(qt.tensor_scale))

    g = int(groups_per_row(fmt, k))
    _check_meta(fmt, qt, n, g)
    scales = _exact_in(qt.scales, fmt.scale_bits, "scales")
    if fmt.zero_bits == 0:
        zeros = empty.copy()
    elif fmt.zero_bits == 16:
        zeros = _exact_in(qt.offsets, 16, "offsets")
    else:
        s = np.asarray(qt.scales, np.float32)
        off = np.asarray(qt.offsets, np.float32)
        zmin, zmax = _ZERO_RANGE[fmt.zero_bits]
        z = np.rint(_safe_div(off.astype(np.float64), s.astype(np.float64)))
        if (np.any(z < zmin) or np.any(z > zmax)
                or not np.array_equal(_int_offsets(s, z), off)):
            raise ValueError(
                f"offsets are not scale * an int{fmt.zero_bits} zero point"
            )
        z = z.astype(np.int64).ravel()
        zeros = z.astype(np.int8).view(np.uint8) if fmt.zero_bits == 8 else _nibbles(z)
        zeros = np.ascontiguousarray(zeros, dtype=np.uint8)
    return PackedTensor(fmt, (n, k), payload, scales, zeros)


def unpack(packed: PackedTensor) -> QuantizedTensor:
    """Inverse of :func:`pack`: the quantized values and metadata read back from bytes."""
    fmt = packed.fmt
    n, k = packed.shape
    rb = int(row_bytes(fmt, k))
    b = np.ascontiguousarray(packed.payload, dtype=np.uint8)
    if b.shape != (n, rb):
        raise ValueError(f"payload must have shape ({n}, {rb}), got {b.shape}")

    if fmt.is_float:
        if fmt.bits == 32.0:
            return QuantizedTensor(q=b.view("<f4").astype(np.float32).reshape(n, k))
        if fmt.float16 == "bf16":
            return QuantizedTensor(q=_bf16_bits_to_f32(b.view("<u2").reshape(n, k)))
        return QuantizedTensor(q=b.view("<f2").astype(np.float16).reshape(n, k))

    if fmt.bits == 8.0:
        q = b.view(np.int8).copy()
    elif fmt.bits == 4.0:
        q = _sext(b & 0xF, 4) if fmt.packing == "byte" else _unnibbles(b, k)
    else:
        npairs = -(-k // 2)
        pairs = b if fmt.packing == "byte" else _unpack7(b, npairs)
        q2 = np.empty((n, 2 * npairs), np.int8)
        q2[:, 0::2] = _sext(pairs & 0xF, 4)
        q2[:, 1::2] = _sext((pairs >> 4) & 0x7, 3)
        q = q2[:, :k].copy()

    if fmt.scale_bits == 0:
        return QuantizedTensor(q=q, tensor_scale=packed.tensor_scale)

    g = int(groups_per_row(fmt, k))
    sdt = "<f2" if fmt.scale_bits == 16 else "<f4"
    scales = np.ascontiguousarray(packed.scales, np.uint8).view(sdt)
    scales = scales.astype(np.float32).reshape(n, g)
    offsets: np.ndarray | None = None
    zb = np.ascontiguousarray(packed.zeros, np.uint8)
    if fmt.zero_bits == 16:
        offsets = zb.view("<f2").astype(np.float32).reshape(n, g)
    elif fmt.zero_bits == 8:
        offsets = _int_offsets(scales, zb.view(np.int8).reshape(n, g))
    elif fmt.zero_bits == 4:
        offsets = _int_offsets(scales, _unnibbles(zb, n * g).reshape(n, g))
    return QuantizedTensor(q=q, scales=scales, offsets=offsets)


# ------------------------------------------------------------------ error
def reconstruction_error(fmt: QuantFormat | str, w: npt.ArrayLike) -> ErrorStats:
    """Quantize, pack, unpack and dequantize ``w``; the error against ``w``.

    ``fmt`` is a format or a preset name (``"w3.5-g128"``); an unknown name raises
    ``ValueError`` naming the known presets (and the closest one)."""
    fmt = as_format(fmt)
    w = _as_matrix(w)
    x = w.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("reconstruction_error needs finite weights")
    if x.size == 0:
        return ErrorStats(0.0, 0.0, 0.0)
    recon = dequantize(fmt, unpack(pack(fmt, quantize(fmt, w))))
    diff = recon.astype(np.float64) - x
    rmse = math.sqrt(float(np.mean(diff * diff)))
    rms = math.sqrt(float(np.mean(x * x)))
    if rms > 0:
        rel = rmse / rms
    else:
        rel = 0.0 if rmse == 0 else math.inf
    return ErrorStats(rmse=rmse, max_abs=float(np.abs(diff).max()), rel_rmse=rel)
