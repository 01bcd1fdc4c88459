"""``QuantFormat``: how one class of tensor is stored in SRAM, and the named presets.

A format is a frozen pydantic dataclass, so other pydantic models can use it as a field
type; every invalid combination is rejected by a field validator attached to the field
at fault, so a validation error carries a location (``quantization.weights.group_size``).
Cross-field rules are checked on the later field of the pair (fields are validated in
declaration order: ``bits``, ``float16``, ``group_size``, ``scale_bits``, ``zero_bits``,
``packing``).
"""
from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import ConfigDict, ValidationInfo, field_validator
from pydantic.dataclasses import dataclass

from wsesim.errors import shown
from wsesim.specs.bounds import MAX_WIDTH, number_only

ALLOWED_BITS: tuple[float, ...] = (32.0, 16.0, 8.0, 4.0, 3.5)
ALLOWED_SCALE_BITS: tuple[int, ...] = (0, 16, 32)
ALLOWED_ZERO_BITS: tuple[int, ...] = (0, 4, 8, 16)

_BITS_MSG = "bits must be one of 32, 16, 8, 4, 3.5"
_BYTE_MSG = "packing 'byte' only applies to 3.5- and 4-bit formats"


def _fmt_bits(bits: float) -> str:
    """32.0 -> '32', 3.5 -> '3.5'."""
    return str(int(bits)) if float(bits).is_integer() else str(bits)


@dataclass(frozen=True, config=ConfigDict(extra="forbid", validate_default=True))
class QuantFormat:
    """Storage format of a tensor: bit width, float flavour, groups, metadata, packing.

    * ``bits``: 32, 16 (floats), 8, 4 or 3.5 (signed integers; 3.5 = pairs of a 4-bit and
      a 3-bit value).
    * ``float16``: ``"fp16"`` (IEEE half) or ``"bf16"``; only meaningful for ``bits=16``
      (ignored otherwise).
    * ``group_size``: integer formats only; that many consecutive elements along the
      input dimension share a scale (and zero). ``None`` = one group per output row.
    * ``scale_bits``: 0, 16 (fp16) or 32 (fp32). 0 = no scales stored (tensor-wide scale
      kept outside SRAM); only with ``group_size=None`` and ``zero_bits=0``.
    * ``zero_bits``: 0 (symmetric), 4 / 8 (signed integer zero point, offset = scale*z)
      or 16 (fp16 offset).
    * ``packing``: ``"dense"`` or ``"byte"`` (3.5 / 4 bits only: one pair / one value
      per byte).
    """

    bits: float
    float16: Literal["fp16", "bf16"] = "fp16"
    group_size: int | None = None
    scale_bits: int = 0
    zero_bits: int = 0
    packing: Literal["dense", "byte"] = "dense"

    # ----------------------------------------------------------------- validators
    @field_validator("bits", "group_size", "scale_bits", "zero_bits", mode="before")
    @classmethod
    def _numbers_only(cls, value: Any) -> Any:
        return number_only(value)

    @field_validator("bits")
    @classmethod
    def _check_bits(cls, value: float) -> float:
        if value not in ALLOWED_BITS:
            raise ValueError(_BITS_MSG)
        return value

    @field_validator("group_size")
    @classmethod
    def _check_group_size(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None:
            return value
        if value <= 0:
            raise ValueError(f"group_size must be positive, got {value}")
        if value > MAX_WIDTH:   # a group is at most a whole row of the widest model
            raise ValueError(f"group_size must be at most {MAX_WIDTH:,} (a bound of "
                             f"wsesim), got {shown(value)}")
        bits = info.data.get("bits")
        if bits in (32.0, 16.0):
            raise ValueError(
                f"float formats ({_fmt_bits(bits)}-bit) take no group_size; "
                "groups apply to integer formats only"
            )
        if bits == 3.5 and value % 2:
            raise ValueError(
                f"group_size must be even for 3.5-bit formats (pairs never straddle "
                f"groups), got {value}"
            )
        return value

    @field_validator("scale_bits")
    @classmethod
    def _check_scale_bits(cls, value: int, info: ValidationInfo) -> int:
        if value not in ALLOWED_SCALE_BITS:
            raise ValueError(f"scale_bits must be one of 0, 16, 32, got {value}")
        bits = info.data.get("bits")
        if bits in (32.0, 16.0):
            if value != 0:
                raise ValueError(
                    f"float formats ({_fmt_bits(bits)}-bit) store no scales; "
                    "scale_bits must be 0"
                )
        elif bits is not None and value == 0 and info.data.get("group_size") is not None:
            raise ValueError(
                "scale_bits 0 (no stored scales) requires group_size None; "
                "set scale_bits to 16 or 32 to store one scale per group"
            )
        return value

    @field_validator("zero_bits")
    @classmethod
    def _check_zero_bits(cls, value: int, info: ValidationInfo) -> int:
        if value not in ALLOWED_ZERO_BITS:
            raise ValueError(f"zero_bits must be one of 0, 4, 8, 16, got {value}")
        bits = info.data.get("bits")
        if bits in (32.0, 16.0):
            if value != 0:
                raise ValueError(
                    f"float formats ({_fmt_bits(bits)}-bit) store no zero points; "
                    "zero_bits must be 0"
                )
        elif bits is not None and value != 0 and info.data.get("scale_bits") == 0:
            raise ValueError(
                "zero_bits requires stored scales: scale_bits 0 (no stored scales) "
                "is only allowed with zero_bits 0"
            )
        return value

    @field_validator("packing")
    @classmethod
    def _check_packing(cls, value: str, info: ValidationInfo) -> str:
        bits = info.data.get("bits")
        if value == "byte" and bits is not None and bits not in (4.0, 3.5):
            raise ValueError(_BYTE_MSG)
        return value

    # ----------------------------------------------------------------- properties
    @property
    def is_float(self) -> bool:
        """True for the 32- and 16-bit float formats."""
        return self.bits in (32.0, 16.0)

    @property
    def is_integer(self) -> bool:
        """True for the 8-, 4- and 3.5-bit integer formats."""
        return not self.is_float

    @property
    def is_bf16(self) -> bool:
        """True for the 16-bit bfloat16 format."""
        return self.bits == 16.0 and self.float16 == "bf16"

    @property
    def per_channel(self) -> bool:
        """Integer format with one group per output row (group_size None)."""
        return self.is_integer and self.group_size is None

    @property
    def stores_scales(self) -> bool:
        """Whether scales are stored next to the payload (counted in SRAM)."""
        return self.scale_bits > 0

    @property
    def symmetric(self) -> bool:
        """Integer format without zero points."""
        return self.zero_bits == 0

    @property
    def bits_per_weight(self) -> float:
        """Payload bits per weight for long rows (see :func:`payload_bits_per_weight`)."""
        if self.bits == 3.5:
            return 4.0 if self.packing == "byte" else 3.5
        if self.bits == 4.0 and self.packing == "byte":
            return 8.0
        return float(self.bits)

    @property
    def levels(self) -> str:
        """The representable values of one element, in words."""
        if self.bits == 32.0:
            return "float32 (IEEE single)"
        if self.bits == 16.0:
            return "bfloat16 (8-bit exponent, 7-bit mantissa)" if self.float16 == "bf16" \
                else "float16 (IEEE half, 5-bit exponent, 10-bit mantissa)"
        if self.bits == 8.0:
            return "int8 in [-128, 127], step = scale"
        if self.bits == 4.0:
            return "int4 in [-8, 7], step = scale"
        return ("pairs: even index int4 in [-8, 7] with step = scale, "
                "odd index int3 in [-4, 3] with step = 2*scale")

    def describe(self) -> str:
        """Short human description, e.g. '3.5-bit (4+3 pairs, dense 7 bits/pair), ...'."""
        if self.bits == 32.0:
            return "fp32 (IEEE single)"
        if self.bits == 16.0:
            return "bf16 (bfloat16)" if self.float16 == "bf16" else "fp16 (IEEE half)"
        if self.bits == 3.5:
            head = ("3.5-bit (4+3 pairs, one pair per byte = 4 bits/weight)"
                    if self.packing == "byte" else "3.5-bit (4+3 pairs, dense 7 bits/pair)")
        elif self.bits == 4.0:
            head = ("4-bit int (one value per byte)" if self.packing == "byte"
                    else "4-bit int (two per byte)")
        else:
            head = "8-bit int"
        if self.scale_bits == 0:
            return f"{head}, no stored scales (tensor-wide scale outside SRAM)"
        groups = ("per-channel" if self.group_size is None
                  else f"groups of {self.group_size} along input")
        scale = f"fp{self.scale_bits} scale"
        if self.zero_bits == 0:
            zero = ", symmetric"
        elif self.zero_bits == 16:
            zero = " + fp16 zero"
        else:
            zero = f" + int{self.zero_bits} zero point"
        return f"{head}, {groups}, {scale}{zero}"


# --------------------------------------------------------------------- presets
PRESETS: dict[str, QuantFormat] = {
    "fp32": QuantFormat(bits=32),
    "fp16": QuantFormat(bits=16),
    "bf16": QuantFormat(bits=16, float16="bf16"),
    "int8": QuantFormat(bits=8, scale_bits=16),
    "int8-g128": QuantFormat(bits=8, group_size=128, scale_bits=16, zero_bits=16),
    "int4": QuantFormat(bits=4, scale_bits=16),
    "int4-g128": QuantFormat(bits=4, group_size=128, scale_bits=16, zero_bits=16),
    "int4-raw": QuantFormat(bits=4),
    "w3.5-g128": QuantFormat(bits=3.5, group_size=128, scale_bits=16, zero_bits=16),
    "w3.5-byte-g128": QuantFormat(bits=3.5, group_size=128, scale_bits=16, zero_bits=16,
                                  packing="byte"),
    "w3.5-dense": QuantFormat(bits=3.5),
    "w3.5-byte": QuantFormat(bits=3.5, packing="byte"),
}

PRESET_DESCRIPTIONS: dict[str, str] = {
    "fp32": "IEEE float32, 4 bytes per weight",
    "fp16": "IEEE float16, 2 bytes per weight",
    "bf16": "bfloat16 (top half of float32, round-to-nearest-even), 2 bytes per weight",
    "int8": "int8, per-channel fp16 scale, symmetric",
    "int8-g128": "int8, groups of 128 along input, fp16 scale + fp16 zero",
    "int4": "int4 two per byte, per-channel fp16 scale, symmetric",
    "int4-g128": "int4 two per byte, groups of 128 along input, fp16 scale + fp16 zero",
    "int4-raw": "int4 two per byte, no metadata counted (tensor-wide scale off-SRAM)",
    "w3.5-g128": "3.5-bit 4+3 pairs, dense 7 bits/pair, groups of 128, fp16 scale + zero",
    "w3.5-byte-g128": "3.5-bit 4+3 pairs, one pair per byte, groups of 128, "
                      "fp16 scale + zero",
    "w3.5-dense": "3.5-bit 4+3 pairs, dense 7 bits/pair, no metadata "
                  "(the proposal's accounting)",
    "w3.5-byte": "3.5-bit 4+3 pairs, one pair per byte (reference layout), no metadata",
}


def preset(name: str) -> QuantFormat:
    """The preset format called ``name``; ``ValueError`` (with a suggestion) if unknown."""
    if not isinstance(name, str):
        raise ValueError(f"preset name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key in PRESETS:
        return PRESETS[key]
    close = difflib.get_close_matches(key, list(PRESETS), n=3, cutoff=0.5) \
        if len(key) < 100 else []
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    raise ValueError(
        f"unknown quantization preset {shown(name)}{hint}; known presets: "
        f"{', '.join(PRESETS)}"
    )


def as_format(spec: QuantFormat | str | dict[str, Any]) -> QuantFormat:
    """A :class:`QuantFormat` from a format, a preset name, or a mapping of fields."""
    if isinstance(spec, QuantFormat):
        return spec
    if isinstance(spec, str):
        return preset(spec)
    if isinstance(spec, dict):
        return QuantFormat(**spec)
    raise TypeError(f"cannot make a QuantFormat from {type(spec).__name__}")
