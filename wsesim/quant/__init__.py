"""Quantized weight formats, real numpy packers, and the byte counts the ledger uses.

The memory ledger counts exactly the bytes these packers produce:
:func:`packed_bytes` is a vectorized closed form of the sizes of :func:`pack`'s arrays
(tested to agree on every preset and on random formats and shapes).

Stated convention for the 3.5-bit format: elements go in pairs along the input
dimension; the even one is a signed 4-bit value with step ``s``, the odd one a signed
3-bit value with step ``2*s`` (derived, not stored), and ``qpos = 6``, so both lanes
cover the group's range ``±6s`` (4-bit lane [-8s, 7s], 3-bit lane [-8s, 6s]). See
:mod:`wsesim.quant.packing` for the full layout and quantization rules.
"""
from wsesim.quant.formats import (
    PRESET_DESCRIPTIONS,
    PRESETS,
    QuantFormat,
    as_format,
    preset,
)
from wsesim.quant.packing import (
    ErrorStats,
    PackedTensor,
    QuantizedTensor,
    bf16_round,
    dequantize,
    pack,
    quantize,
    reconstruction_error,
    unpack,
)
from wsesim.quant.sizes import (
    PackedBytes,
    groups_per_row,
    packed_bytes,
    payload_bits_per_weight,
    row_bytes,
)

__all__ = [
    "ErrorStats",
    "PRESETS",
    "PRESET_DESCRIPTIONS",
    "PackedBytes",
    "PackedTensor",
    "QuantFormat",
    "QuantizedTensor",
    "as_format",
    "bf16_round",
    "dequantize",
    "groups_per_row",
    "pack",
    "packed_bytes",
    "payload_bits_per_weight",
    "preset",
    "quantize",
    "reconstruction_error",
    "row_bytes",
    "unpack",
]
