"""Tests of wsesim.quant: formats, byte counts, real packers, quantization error."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from wsesim.quant import (
    PRESET_DESCRIPTIONS,
    PRESETS,
    PackedBytes,
    PackedTensor,
    QuantFormat,
    QuantizedTensor,
    bf16_round,
    dequantize,
    groups_per_row,
    pack,
    packed_bytes,
    payload_bits_per_weight,
    preset,
    quantize,
    reconstruction_error,
    row_bytes,
    unpack,
)

FAST = settings(max_examples=120, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
INTEGER_PRESETS = [name for name, f in PRESETS.items() if f.is_integer]


# ---------------------------------------------------------------- strategies / helpers
@st.composite
def valid_formats(draw: st.DrawFn) -> QuantFormat:
    """Any valid QuantFormat, drawn by construction from the rules."""
    bits = draw(st.sampled_from([32, 16, 8, 4, 3.5]))
    if bits in (32, 16):
        return QuantFormat(bits=bits, float16=draw(st.sampled_from(["fp16", "bf16"])))
    packing = draw(st.sampled_from(["dense", "byte"])) if bits in (4, 3.5) else "dense"
    scale_bits = draw(st.sampled_from([0, 16, 32]))
    if scale_bits == 0:
        return QuantFormat(bits=bits, packing=packing)
    group_size = draw(st.one_of(st.none(), st.integers(1, 70)))
    if bits == 3.5 and group_size is not None:
        group_size = 2 * ((group_size + 1) // 2)
    zero_bits = draw(st.sampled_from([0, 4, 8, 16]))
    return QuantFormat(bits=bits, group_size=group_size, scale_bits=scale_bits,
                       zero_bits=zero_bits, packing=packing)


any_format = st.one_of(st.sampled_from(list(PRESETS.values())), valid_formats())


def lane_bounds(fmt: QuantFormat, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column qmin, qmax and step multiplier, written out from the spec."""
    cols = np.arange(k)
    if fmt.bits == 8:
        return np.full(k, -128), np.full(k, 127), np.ones(k)
    if fmt.bits == 4:
        return np.full(k, -8), np.full(k, 7), np.ones(k)
    odd = cols % 2 == 1
    return np.where(odd, -4, -8), np.where(odd, 3, 7), np.where(odd, 2.0, 1.0)


def per_element(fmt: QuantFormat, a: np.ndarray, k: int) -> np.ndarray:
    gs = fmt.group_size or k
    return np.repeat(a.astype(np.float64), gs, axis=1)[:, :k]


def random_q(fmt: QuantFormat, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    lo, hi, _ = lane_bounds(fmt, k)
    q = rng.integers(lo, hi + 1, size=(n, k))
    q[0] = lo  # make sure both ends of every lane appear
    if n > 1:
        q[1] = hi
    return q.astype(np.int8)


def ref_pack_row(fmt: QuantFormat, row: list[int]) -> bytes:
    """Pure-Python reference packer for one integer row, straight from the spec."""
    k = len(row)
    if fmt.bits == 8:
        return bytes(v & 0xFF for v in row)
    if fmt.bits == 4:
        if fmt.packing == "byte":
            return bytes(v & 0xF for v in row)
        padded = row + [0] * (k % 2)
        return bytes((padded[i] & 0xF) | ((padded[i + 1] & 0xF) << 4)
                     for i in range(0, len(padded), 2))
    padded = row + [0] * (k % 2)
    pairs = [(padded[i] & 0xF) | ((padded[i + 1] & 0x7) << 4)
             for i in range(0, len(padded), 2)]
    if fmt.packing == "byte":
        return bytes(pairs)
    stream = 0
    for j, p in enumerate(pairs):
        stream |= p << (7 * j)
    nbytes = (7 * len(pairs) + 7) // 8
    return stream.to_bytes(nbytes, "little")


def assert_same_qt(a: QuantizedTensor, b: QuantizedTensor) -> None:
    assert a.q.dtype == b.q.dtype
    assert np.array_equal(a.q.view(np.uint8), b.q.view(np.uint8))
    for x, y in ((a.scales, b.scales), (a.offsets, b.offsets)):
        assert (x is None) == (y is None)
        if x is not None:
            assert np.array_equal(np.asarray(x, np.float32).view(np.uint32),
                                  np.asarray(y, np.float32).view(np.uint32))
    assert a.tensor_scale == b.tensor_scale


def sizes(pb: PackedBytes) -> tuple[int, int, int]:
    return (pb.payload, pb.scales, pb.zeros)


# ---------------------------------------------------------------- hand-computed sizes
F_INT4_Z4 = QuantFormat(bits=4, group_size=128, scale_bits=16, zero_bits=4)
F_INT8_Z8_S32 = QuantFormat(bits=8, group_size=64, scale_bits=32, zero_bits=8)


@pytest.mark.parametrize("fmt, n, k, expected", [
    (preset("w3.5-dense"), 4096, 4096, (4096 * 1792, 0, 0)),
    (preset("w3.5-g128"), 4096, 4096, (4096 * 1792, 4096 * 32 * 2, 4096 * 32 * 2)),
    (preset("w3.5-byte-g128"), 4096, 4096, (4096 * 2048, 4096 * 32 * 2, 4096 * 32 * 2)),
    (preset("w3.5-byte"), 4096, 4096, (4096 * 2048, 0, 0)),
    (preset("w3.5-dense"), 7, 5, (7 * 3, 0, 0)),    # ceil(7*3/8) = 3 bytes/row
    (preset("w3.5-byte"), 7, 5, (7 * 3, 0, 0)),     # 3 pairs, one per byte
    (preset("w3.5-dense"), 3, 1, (3, 0, 0)),        # 1 pair: 7 bits -> 1 byte
    (preset("w3.5-dense"), 2, 9, (2 * 5, 0, 0)),    # 5 pairs: 35 bits -> 5 bytes
    (preset("w3.5-dense"), 2, 16, (2 * 7, 0, 0)),   # 8 pairs: 56 bits -> 7 bytes
    (preset("int4-raw"), 7, 5, (7 * 3, 0, 0)),      # ceil(5/2)
    (QuantFormat(bits=4, packing="byte"), 7, 5, (35, 0, 0)),
    (preset("int4"), 10, 5, (30, 20, 0)),           # per-channel: one fp16 scale per row
    (F_INT4_Z4, 3, 300, (3 * 150, 18, 5)),          # G=3, n*G=9 4-bit zeros: ceil(36/8)
    (F_INT4_Z4, 1, 128, (64, 2, 1)),                # one 4-bit zero rounds up to a byte
    (preset("int4-g128"), 2, 129, (2 * 65, 8, 8)),  # partial last group counts
    (preset("fp16"), 3, 5, (30, 0, 0)),
    (preset("bf16"), 3, 5, (30, 0, 0)),
    (preset("fp32"), 3, 5, (60, 0, 0)),
    (preset("int8"), 10, 1000, (10_000, 20, 0)),
    (preset("int8-g128"), 10, 1000, (10_000, 10 * 8 * 2, 10 * 8 * 2)),
    (F_INT8_Z8_S32, 5, 100, (500, 5 * 2 * 4, 10)),
])
def test_hand_computed_sizes(fmt: QuantFormat, n: int, k: int,
                             expected: tuple[int, int, int]) -> None:
    pb = packed_bytes(fmt, n, k)
    assert sizes(pb) == expected
    assert pb.metadata == expected[1] + expected[2]
    assert pb.total == sum(expected)
    assert isinstance(pb.total, int)


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("n, k", [(0, 100), (100, 0), (0, 0)])
def test_zero_size_blocks_take_no_bytes(name: str, n: int, k: int) -> None:
    fmt = PRESETS[name]
    assert packed_bytes(fmt, n, k).total == 0
    packed = pack(fmt, quantize(fmt, np.zeros((n, k), np.float32)))
    assert sizes(packed.nbytes) == (0, 0, 0)


def test_row_bytes_and_groups() -> None:
    ks = np.array([0, 1, 2, 5, 128, 129, 256])
    assert list(row_bytes(preset("w3.5-dense"), ks)) == [0, 1, 1, 3, 56, 57, 112]
    assert list(row_bytes(preset("w3.5-byte"), ks)) == [0, 1, 1, 3, 64, 65, 128]
    assert list(groups_per_row(preset("int4-g128"), ks)) == [0, 1, 1, 1, 1, 2, 2]
    assert list(groups_per_row(preset("int4"), ks)) == [0, 1, 1, 1, 1, 1, 1]
    assert list(groups_per_row(preset("fp16"), ks)) == [0] * 7


@pytest.mark.parametrize("name, bits", [
    ("fp32", 32), ("fp16", 16), ("bf16", 16), ("int8", 8), ("int8-g128", 8),
    ("int4", 4), ("int4-g128", 4), ("int4-raw", 4), ("w3.5-g128", 3.5),
    ("w3.5-byte-g128", 4.0), ("w3.5-dense", 3.5), ("w3.5-byte", 4.0),
])
def test_payload_bits_per_weight(name: str, bits: float) -> None:
    fmt = PRESETS[name]
    assert payload_bits_per_weight(fmt) == bits
    k = 8 * 1024  # long rows: the packed payload approaches the nominal width
    assert packed_bytes(fmt, 1, k).payload * 8 / k == bits


def test_byte_packed_int4_is_8_bits() -> None:
    assert payload_bits_per_weight(QuantFormat(bits=4, packing="byte")) == 8.0


# ---------------------------------------------------------------- packer == size function
@FAST
@given(fmt=any_format, n=st.integers(1, 40), k=st.integers(1, 300),
       seed=st.integers(0, 2**32 - 1))
def test_packer_sizes_equal_packed_bytes(fmt: QuantFormat, n: int, k: int,
                                         seed: int) -> None:
    w = np.random.default_rng(seed).normal(size=(n, k)).astype(np.float32)
    qt = quantize(fmt, w)
    packed = pack(fmt, qt)
    assert sizes(packed.nbytes) == sizes(packed_bytes(fmt, n, k))
    assert packed.payload.dtype == np.uint8 and packed.payload.shape == (n, row_bytes(fmt, k))
    assert packed.scales.ndim == 1 and packed.zeros.ndim == 1
    # packing is lossless for what quantize produces
    assert_same_qt(unpack(packed), qt)


@FAST
@given(fmt=any_format,
       n=st.lists(st.integers(0, 5000), min_size=1, max_size=6),
       k=st.lists(st.integers(0, 5000), min_size=1, max_size=4))
def test_packed_bytes_vectorized_matches_scalar(fmt: QuantFormat, n: list[int],
                                                k: list[int]) -> None:
    n_arr = np.array(n, dtype=np.int64)[:, None]   # shape (a, 1)
    k_arr = np.array(k, dtype=np.int32)[None, :]   # shape (1, b), a different int dtype
    pb = packed_bytes(fmt, n_arr, k_arr)
    for field in ("payload", "scales", "zeros"):
        arr = getattr(pb, field)
        assert arr.shape == (len(n), len(k)) and arr.dtype == np.int64
        expected = [[getattr(packed_bytes(fmt, ni, ki), field) for ki in k] for ni in n]
        assert arr.tolist() == expected
    assert np.array_equal(pb.total, pb.payload + pb.scales + pb.zeros)


def test_packed_bytes_of_large_arrays_are_exact() -> None:
    rng = np.random.default_rng(1)
    n = rng.integers(0, 300, size=2_000_000)
    k = rng.integers(0, 300, size=2_000_000)
    fmt = preset("w3.5-g128")
    pb = packed_bytes(fmt, n, k)
    for i in rng.integers(0, n.size, size=50):
        assert sizes(packed_bytes(fmt, int(n[i]), int(k[i]))) == (
            pb.payload[i], pb.scales[i], pb.zeros[i])


def test_packed_bytes_rejects_bad_counts() -> None:
    with pytest.raises(ValueError):
        packed_bytes(preset("int4"), -1, 10)
    with pytest.raises(TypeError):
        packed_bytes(preset("int4"), 2.5, 10)


# ---------------------------------------------------------------- bit-level round trips
@FAST
@given(fmt=valid_formats().filter(lambda f: f.is_integer), n=st.integers(1, 12),
       k=st.integers(1, 70), seed=st.integers(0, 2**32 - 1))
def test_integer_round_trip_and_reference_bytes(fmt: QuantFormat, n: int, k: int,
                                                seed: int) -> None:
    rng = np.random.default_rng(seed)
    meta = quantize(fmt, rng.normal(size=(n, k)))  # valid stored scales / offsets
    q = random_q(fmt, n, k, rng)
    qt = QuantizedTensor(q=q, scales=meta.scales, offsets=meta.offsets,
                         tensor_scale=meta.tensor_scale)
    packed = pack(fmt, qt)
    assert_same_qt(unpack(packed), qt)
    for r in range(n):
        assert packed.payload[r].tobytes() == ref_pack_row(fmt, q[r].tolist())


def test_35_dense_hand_bit_pattern() -> None:
    fmt = preset("w3.5-dense")
    # pair (-1, 3): 4-bit 0b1111, 3-bit 0b011 -> 7-bit 0b0111111 = 0x3F
    # pair (2, -4): 4-bit 0b0010, 3-bit 0b100 -> 7-bit 0b1000010 = 0x42
    # stream = 0x3F | 0x42 << 7 = 0x213F -> bytes 0x3F, 0x21
    q = np.array([[-1, 3, 2, -4], [0, 0, 0, 0]], np.int8)
    packed = pack(fmt, QuantizedTensor(q=q, tensor_scale=1.0))
    assert packed.payload.tolist() == [[0x3F, 0x21], [0, 0]]
    # odd k: the missing 3-bit value is padded with 0 -> pair (2, 0) = 0x02
    packed3 = pack(fmt, QuantizedTensor(q=q[:, :3].copy(), tensor_scale=1.0))
    assert packed3.payload.tolist() == [[0x3F, 0x01], [0, 0]]
    assert unpack(packed3).q.tolist() == q[:, :3].tolist()
    byte = preset("w3.5-byte")
    assert pack(byte, QuantizedTensor(q=q, tensor_scale=1.0)).payload.tolist() == [
        [0x3F, 0x42], [0, 0]]


def test_int4_hand_bit_pattern() -> None:
    q = np.array([[-1, 3, 2]], np.int8)
    dense = pack(preset("int4-raw"), QuantizedTensor(q=q, tensor_scale=1.0))
    assert dense.payload.tolist() == [[0x3F, 0x02]]  # -1 low nibble, 3 high nibble
    byte = pack(QuantFormat(bits=4, packing="byte"), QuantizedTensor(q=q, tensor_scale=1.0))
    assert byte.payload.tolist() == [[0x0F, 0x03, 0x02]]


def test_35_dense_crosses_56_bit_blocks() -> None:
    # 9 pairs: the ninth starts at stream bit 56, i.e. in byte 7
    fmt = preset("w3.5-dense")
    q = np.zeros((1, 18), np.int8)
    q[0, 16], q[0, 17] = -8, -4  # pair 8 = 0b100_1000 = 0x48 at bits 56..62
    packed = pack(fmt, QuantizedTensor(q=q, tensor_scale=1.0))
    assert packed.payload.tolist() == [[0, 0, 0, 0, 0, 0, 0, 0x48]]
    assert unpack(packed).q.tolist() == q.tolist()


def test_metadata_byte_layout() -> None:
    # scales: fp16, row-major (n, G); 4-bit zero points: row-major, flattened, two per
    # byte (even index low), padded to a byte
    rng = np.random.default_rng(11)
    w = rng.normal(size=(3, 300)) + rng.normal(size=(3, 1))
    qt = quantize(F_INT4_Z4, w)
    assert qt.scales.shape == (3, 3)
    packed = pack(F_INT4_Z4, qt)
    assert packed.scales.tobytes() == qt.scales.astype("<f2").tobytes()
    z = np.rint(qt.offsets.astype(np.float64) / qt.scales).astype(int).ravel().tolist()
    assert packed.zeros.tobytes() == ref_pack_row(preset("int4-raw"), z)
    assert len(packed.zeros) == 5 and packed.zeros[-1] >> 4 == 0
    f8 = QuantFormat(bits=8, group_size=100, scale_bits=32, zero_bits=8)
    qt8 = quantize(f8, w)
    packed8 = pack(f8, qt8)
    assert packed8.scales.tobytes() == qt8.scales.astype("<f4").tobytes()
    z8 = np.rint(qt8.offsets.astype(np.float64) / qt8.scales).astype(np.int8)
    assert packed8.zeros.tobytes() == z8.tobytes()
    f16 = preset("int8-g128")
    qt16 = quantize(f16, w)
    assert pack(f16, qt16).zeros.tobytes() == qt16.offsets.astype("<f2").tobytes()


@pytest.mark.parametrize("name, bad_col, bad_value", [
    ("w3.5-dense", 1, 4),    # the 3-bit lane stops at 3
    ("w3.5-dense", 1, -5),
    ("w3.5-dense", 0, 8),
    ("int4-raw", 0, -9),
])
def test_pack_rejects_out_of_lane_values(name: str, bad_col: int, bad_value: int) -> None:
    q = np.zeros((2, 4), np.int8)
    q[1, bad_col] = bad_value
    with pytest.raises(ValueError, match="out of range"):
        pack(PRESETS[name], QuantizedTensor(q=q, tensor_scale=1.0))


def test_pack_rejects_inexact_metadata() -> None:
    fmt = preset("int4-g128")
    qt = quantize(fmt, np.ones((2, 4)))
    bad = dataclasses.replace(qt, scales=qt.scales + np.float32(1e-6))
    with pytest.raises(ValueError, match="fp16"):
        pack(fmt, bad)


@pytest.mark.parametrize("fmt, dtype, word", [
    (preset("fp16"), np.float16, np.uint16),
    (preset("fp32"), np.float32, np.uint32),
])
def test_float_round_trip_bit_exact(fmt: QuantFormat, dtype: type, word: type) -> None:
    rng = np.random.default_rng(7)
    bits = rng.integers(0, np.iinfo(word).max, size=(9, 33), endpoint=True).astype(word)
    q = bits.view(dtype)  # includes infinities and NaN payloads
    packed = pack(fmt, QuantizedTensor(q=q))
    assert packed.payload.shape == (9, 33 * np.dtype(dtype).itemsize)
    assert packed.payload.tobytes() == bits.astype(bits.dtype.newbyteorder("<")).tobytes()
    back = unpack(packed).q
    assert back.dtype == dtype and np.array_equal(back.view(word), bits)


def test_bf16_round_trip_bit_exact() -> None:
    rng = np.random.default_rng(8)
    bits16 = rng.integers(0, 0xFFFF, size=(5, 31), endpoint=True).astype(np.uint16)
    q = (bits16.astype(np.uint32) << 16).view(np.float32)
    packed = pack(preset("bf16"), QuantizedTensor(q=q))
    assert packed.payload.tobytes() == bits16.astype("<u2").tobytes()
    back = unpack(packed).q
    assert np.array_equal(back.view(np.uint32) >> 16, bits16)
    # quantize is idempotent on bf16-exact values (non-NaN ones keep their bits)
    finite = np.where(np.isnan(q), 0, q).astype(np.float32)
    assert np.array_equal(quantize(preset("bf16"), finite).q.view(np.uint32),
                          finite.view(np.uint32))


def test_bf16_rounding_is_nearest_even() -> None:
    x = np.array([1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, -(1 + 3 * 2**-8),
                  3.0e38, np.inf, np.nan], np.float32)
    r = bf16_round(x)
    assert r[0] == 1.0                     # tie -> even mantissa (0)
    assert r[1] == 1 + 2**-6               # tie between mantissas 1 and 2 -> 2
    assert r[2] == 1 + 2**-7               # above the tie -> up
    assert r[3] == -(1 + 2**-6)
    # 3.0e38 is 0x7F61B1E6: its low half is above the tie, so it rounds up to 0x7F62
    # and stays finite (bf16's largest is 0x7F7F)
    assert r[4:5].view(np.uint32)[0] == 0x7F620000
    assert np.isposinf(r[5]) and np.isnan(r[6])
    # a NaN whose payload sits in the low 16 bits stays NaN (does not round to inf)
    low_nan = np.array([0x7F800001, 0xFF800001], np.uint32).view(np.float32)
    assert np.all(np.isnan(bf16_round(low_nan)))
    y = np.random.default_rng(2).normal(size=1000).astype(np.float32)
    assert np.all(np.abs(bf16_round(y) - y) <= np.abs(y) * 2**-8)


def test_bf16_pack_rejects_inexact_values() -> None:
    with pytest.raises(ValueError, match="bf16"):
        pack(preset("bf16"), QuantizedTensor(q=np.full((1, 2), 1 + 2**-12, np.float32)))


# ---------------------------------------------------------------- quantization error
def test_rmse_decreases_with_bits() -> None:
    w = np.random.default_rng(0).normal(size=(64, 1024)).astype(np.float32)
    order = ["fp32", "fp16", "bf16", "int8-g128", "int4-g128", "w3.5-g128"]
    rmse = [reconstruction_error(PRESETS[name], w).rmse for name in order]
    assert rmse[0] == 0.0  # float32 input, float32 storage
    for (a, ea), (b, eb) in zip(zip(order, rmse), zip(order[1:], rmse[1:])):
        assert ea * 1.2 < eb, f"{a} ({ea:.3g}) should beat {b} ({eb:.3g}) clearly"
    # 3.5-bit is within a small factor of 4-bit, not catastrophically worse
    assert rmse[-1] < 3 * rmse[-2]
    # relative error scale: int8 well under 1 %, 3.5-bit under 30 % on Gaussian data
    assert reconstruction_error(preset("int8-g128"), w).rel_rmse < 0.01
    assert reconstruction_error(preset("w3.5-g128"), w).rel_rmse < 0.3


HALF_STEP_FORMATS = [
    preset("int8"), preset("int8-g128"), preset("int4"), preset("int4-g128"),
    preset("int4-raw"), preset("w3.5-g128"), preset("w3.5-byte-g128"),
    preset("w3.5-dense"),
    QuantFormat(bits=3.5, group_size=32, scale_bits=32, zero_bits=8),
    QuantFormat(bits=3.5, group_size=16, scale_bits=16, zero_bits=4),
    QuantFormat(bits=8, group_size=50, scale_bits=32, zero_bits=8),
    QuantFormat(bits=4, group_size=20, scale_bits=16, zero_bits=4),
]


@pytest.mark.parametrize("fmt", HALF_STEP_FORMATS, ids=lambda f: f.describe())
def test_error_at_most_half_a_step_in_range(fmt: QuantFormat) -> None:
    rng = np.random.default_rng(3)
    n, k = 24, 200
    w = (rng.normal(size=(n, k)) * rng.uniform(0.1, 3, size=(n, 1)) + 0.2).astype(np.float32)
    qt = unpack(pack(fmt, quantize(fmt, w)))
    xhat = dequantize(fmt, qt).astype(np.float64)
    lo, hi, mult = lane_bounds(fmt, k)
    if qt.scales is None:
        step = np.broadcast_to(qt.tensor_scale * mult, (n, k))
        offset = np.zeros((n, k))
    else:
        step = per_element(fmt, qt.scales, k) * mult
        offset = per_element(fmt, qt.offsets, k) if qt.offsets is not None else 0 * step
    x = w.astype(np.float64)
    t = (x - offset) / step
    in_range = (t >= lo - 0.5) & (t <= hi + 0.5)
    # every format covers every group's range (integer zeros leave half a step of room)
    assert in_range.all()
    err = np.abs(xhat - x)
    bound = step / 2 * (1 + 1e-6) + 4 * np.finfo(np.float32).eps * np.abs(x)
    assert np.all(err[in_range] <= bound[in_range])
    stats = reconstruction_error(fmt, w)
    assert stats.max_abs == pytest.approx(err.max(), rel=1e-12)


@pytest.mark.parametrize("name", list(PRESETS))
def test_all_zero_tensor_is_exact(name: str) -> None:
    stats = reconstruction_error(PRESETS[name], np.zeros((5, 260), np.float32))
    assert (stats.rmse, stats.max_abs, stats.rel_rmse) == (0.0, 0.0, 0.0)


ZERO_POINT_FORMATS = [
    preset("int8-g128"), preset("int4-g128"), preset("w3.5-g128"),
    preset("w3.5-byte-g128"),
    QuantFormat(bits=4, group_size=8, scale_bits=16, zero_bits=4),
    QuantFormat(bits=8, group_size=8, scale_bits=32, zero_bits=8),
    QuantFormat(bits=3.5, group_size=8, scale_bits=16, zero_bits=8),
]


@pytest.mark.parametrize("fmt", ZERO_POINT_FORMATS, ids=lambda f: f.describe())
def test_constant_groups_are_exact(fmt: QuantFormat) -> None:
    gs = fmt.group_size
    values = np.array([0.75, -3.0, 1.5, 0.0, -0.125, 1000.0], np.float32)  # fp16-exact
    w = np.repeat(values, gs)[None, :].repeat(3, axis=0)  # every group constant
    qt = quantize(fmt, w)
    assert np.all(np.isfinite(qt.scales))
    assert reconstruction_error(fmt, w).max_abs == 0.0
    # a constant group inside a random matrix is reconstructed exactly too
    rng = np.random.default_rng(4)
    w2 = rng.normal(size=(4, 3 * gs)).astype(np.float32)
    w2[2, gs:2 * gs] = -0.375
    xhat = dequantize(fmt, unpack(pack(fmt, quantize(fmt, w2))))
    assert np.all(xhat[2, gs:2 * gs] == np.float32(-0.375))


@pytest.mark.parametrize("name", ["int8", "int4", "w3.5-g128", "w3.5-dense"])
def test_zero_rows_inside_random_matrix_are_exact(name: str) -> None:
    fmt = PRESETS[name]
    w = np.random.default_rng(5).normal(size=(6, 256)).astype(np.float32)
    w[3] = 0.0
    xhat = dequantize(fmt, unpack(pack(fmt, quantize(fmt, w))))
    assert np.all(xhat[3] == 0.0)
    assert np.all(np.isfinite(xhat))


def test_scale_and_offset_conventions() -> None:
    rng = np.random.default_rng(9)
    w = rng.normal(size=(5, 256)) * 2 + 0.5
    f16 = np.float16
    # symmetric per-channel: s = absmax / qpos, stored as fp16
    qt = quantize(preset("int8"), w)
    assert np.array_equal(qt.scales[:, 0], (np.abs(w).max(axis=1) / 127).astype(f16))
    assert qt.offsets is None
    # fp16 zero: offset = (max+min)/2, s = (max-min)/2/qpos, both fp16, per group of 128
    g = w.reshape(5, 2, 128)
    qt = quantize(preset("w3.5-g128"), w)
    assert np.array_equal(qt.offsets, ((g.max(2) + g.min(2)) / 2).astype(f16))
    assert np.array_equal(qt.scales, ((g.max(2) - g.min(2)) / 2 / 6).astype(f16))
    # no stored scales: one float32 tensor-wide symmetric scale
    for name, qpos in (("int4-raw", 7), ("w3.5-dense", 6), ("w3.5-byte", 6)):
        qt = quantize(PRESETS[name], w)
        assert qt.scales is None and qt.offsets is None
        assert qt.tensor_scale == np.float32(np.abs(w).max() / qpos)
        assert np.abs(qt.q[:, 0::2]).max() == qpos


def test_35_lanes_use_4_and_3_bit_ranges() -> None:
    fmt = preset("w3.5-g128")
    w = np.random.default_rng(6).normal(size=(16, 256)).astype(np.float32)
    q = quantize(fmt, w).q
    assert q[:, 0::2].min() >= -8 and q[:, 0::2].max() <= 7
    assert q[:, 1::2].min() >= -4 and q[:, 1::2].max() <= 3
    # both lanes use their range: qpos 6 for the 4-bit lane, +-3 for the 3-bit lane
    assert np.abs(q[:, 0::2]).max() == 6 and np.abs(q[:, 1::2]).max() == 3


def test_quantize_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="2-D"):
        quantize(preset("int4"), np.zeros(5))
    with pytest.raises(ValueError, match="finite"):
        quantize(preset("int4"), np.array([[1.0, np.nan]]))


# ---------------------------------------------------------------- validation
def _error_of(**kwargs: object) -> dict:
    with pytest.raises(ValidationError) as exc_info:
        QuantFormat(**kwargs)
    errors = exc_info.value.errors()
    assert len(errors) == 1
    return errors[0]


def test_bits_must_be_allowed() -> None:
    err = _error_of(bits=5)
    assert err["loc"] == ("bits",)
    assert "bits must be one of 32, 16, 8, 4, 3.5" in err["msg"]


def test_odd_group_size_with_35_bits() -> None:
    err = _error_of(bits=3.5, group_size=127, scale_bits=16)
    assert err["loc"] == ("group_size",) and "even" in err["msg"]
    QuantFormat(bits=4, group_size=127, scale_bits=16)  # fine for 4 bits


def test_byte_packing_with_8_bits() -> None:
    err = _error_of(bits=8, packing="byte", scale_bits=16)
    assert err["loc"] == ("packing",)
    assert "packing 'byte' only applies to 3.5- and 4-bit formats" in err["msg"]
    assert _error_of(bits=16, packing="byte")["loc"] == ("packing",)


def test_scale_bits_zero_with_groups() -> None:
    err = _error_of(bits=4, group_size=128)  # scale_bits defaults to 0
    assert err["loc"] == ("scale_bits",)
    assert _error_of(bits=4, zero_bits=16)["loc"] == ("zero_bits",)


def test_group_size_must_be_positive() -> None:
    for gs in (-4, 0):
        err = _error_of(bits=4, group_size=gs, scale_bits=16)
        assert err["loc"] == ("group_size",) and "positive" in err["msg"]


@pytest.mark.parametrize("kwargs, loc", [
    ({"bits": 16, "group_size": 128}, "group_size"),
    ({"bits": 32, "scale_bits": 16}, "scale_bits"),
    ({"bits": 16, "zero_bits": 16}, "zero_bits"),
    ({"bits": 8, "scale_bits": 8}, "scale_bits"),
    ({"bits": 8, "scale_bits": 16, "zero_bits": 2}, "zero_bits"),
    ({"bits": True}, "bits"),
    ({"bits": 4, "scale_bits": 16, "group_size": True}, "group_size"),
    ({"bits": 4, "float16": "fp8"}, "float16"),
    ({"bits": 4, "packing": "nibble"}, "packing"),
    ({"bits": 4, "colour": "red"}, "colour"),
])
def test_other_invalid_formats_are_located(kwargs: dict, loc: str) -> None:
    assert _error_of(**kwargs)["loc"] == (loc,)


@settings(max_examples=300, deadline=None, database=None)
@given(bits=st.sampled_from([32, 16, 8, 4, 3.5, 5, 2]),
       group_size=st.sampled_from([None, -4, 0, 1, 3, 64, 128]),
       scale_bits=st.sampled_from([0, 8, 16, 32]),
       zero_bits=st.sampled_from([0, 2, 4, 8, 16]),
       packing=st.sampled_from(["dense", "byte"]))
def test_validity_matches_the_rules(bits: float, group_size: int | None, scale_bits: int,
                                    zero_bits: int, packing: str) -> None:
    is_float = bits in (32, 16)
    valid = (
        bits in (32, 16, 8, 4, 3.5)
        and (group_size is None or group_size > 0)
        and scale_bits in (0, 16, 32)
        and zero_bits in (0, 4, 8, 16)
        and (packing == "dense" or bits in (4, 3.5))
        and (not is_float or (group_size is None and scale_bits == 0 and zero_bits == 0))
        and (is_float or scale_bits != 0 or (group_size is None and zero_bits == 0))
        and not (bits == 3.5 and group_size is not None and group_size % 2)
    )
    kwargs = dict(bits=bits, group_size=group_size, scale_bits=scale_bits,
                  zero_bits=zero_bits, packing=packing)
    if valid:
        QuantFormat(**kwargs)
    else:
        with pytest.raises(ValidationError):
            QuantFormat(**kwargs)


def test_nested_model_error_location() -> None:
    class Holder(BaseModel):
        weights: QuantFormat

    with pytest.raises(ValidationError) as exc_info:
        Holder(weights={"bits": 3.5, "group_size": 7, "scale_bits": 16})
    assert exc_info.value.errors()[0]["loc"] == ("weights", "group_size")
    assert Holder(weights={"bits": 3.5}).weights == preset("w3.5-dense")


def test_unknown_preset_suggests() -> None:
    with pytest.raises(ValueError, match=r"did you mean 'w3\.5-g128'") as exc_info:
        preset("w35-g128")
    assert "int4-g128" in str(exc_info.value)  # the known presets are listed
    with pytest.raises(ValueError, match="did you mean 'int4-g128'"):
        preset("int4g128")
    with pytest.raises(ValueError, match="known presets"):
        preset("zzzzzz")
    assert preset(" INT8 ") == PRESETS["int8"]


def test_presets_table() -> None:
    assert set(PRESET_DESCRIPTIONS) == set(PRESETS)
    assert all(PRESET_DESCRIPTIONS[name] for name in PRESETS)
    p = PRESETS
    assert p["bf16"].is_bf16 and not p["fp16"].is_bf16 and p["fp32"].is_float
    assert (p["int8"].group_size, p["int8"].scale_bits, p["int8"].zero_bits) == (None, 16, 0)
    assert (p["int4-g128"].group_size, p["int4-g128"].scale_bits,
            p["int4-g128"].zero_bits) == (128, 16, 16)
    assert (p["int4-raw"].scale_bits, p["int4-raw"].zero_bits) == (0, 0)
    assert p["w3.5-byte-g128"].packing == "byte" and p["w3.5-g128"].packing == "dense"
    assert (p["w3.5-dense"].scale_bits, p["w3.5-byte"].packing) == (0, "byte")


def test_format_value_semantics() -> None:
    assert QuantFormat(bits=4) == QuantFormat(bits=4.0) == preset("int4-raw")
    assert len({QuantFormat(bits=4), QuantFormat(bits=4.0)}) == 1
    for fmt in PRESETS.values():  # what wsesim.specs does with preset overrides
        assert QuantFormat(**dataclasses.asdict(fmt)) == fmt
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset("int4").bits = 8  # type: ignore[misc]


def test_describe() -> None:
    assert preset("w3.5-g128").describe() == (
        "3.5-bit (4+3 pairs, dense 7 bits/pair), groups of 128 along input, "
        "fp16 scale + fp16 zero")
    assert "per-channel" in preset("int8").describe()
    assert "symmetric" in preset("int4").describe()
    assert "int4 zero point" in F_INT4_Z4.describe()
    assert "no stored scales" in preset("w3.5-dense").describe()
    assert "3-bit" not in preset("int4").levels and "[-4, 3]" in preset("w3.5-g128").levels
    assert len({f.describe() for f in PRESETS.values()}) == len(PRESETS)


def test_packed_tensor_nbytes_type() -> None:
    packed = pack(preset("w3.5-g128"), quantize(preset("w3.5-g128"), np.ones((3, 10))))
    assert isinstance(packed, PackedTensor)
    assert isinstance(packed.nbytes, PackedBytes)
    assert packed.nbytes.total == packed_bytes(preset("w3.5-g128"), 3, 10).total
