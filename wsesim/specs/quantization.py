"""Bit widths of each class of stored tensor: weights, embeddings, KV cache, activations.

Each entry is a :class:`wsesim.quant.QuantFormat`, given as a preset name
(``w3.5-g128``), a full mapping, or a preset with overrides
(``{preset: int4-g128, zero_bits: 4}``). A bare string for ``quantization`` sets the
weights and leaves the rest at 16 bits.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from wsesim.quant import QuantFormat, preset

FP16 = preset("fp16")


def resolve_format(value: Any) -> Any:
    """A format's short forms made whole: a preset name gives its QuantFormat,
    ``{preset: ..., overrides}`` the preset's fields with the overrides; anything else
    is returned as given (a full mapping, or a value for pydantic to reject)."""
    if isinstance(value, str):
        return preset(value)
    if isinstance(value, dict) and "preset" in value:
        rest = {k: v for k, v in value.items() if k != "preset"}
        base = preset(value["preset"])
        return {**dataclasses.asdict(base), **rest}
    return value


class QuantizationSpec(BaseModel):
    """Formats of the four classes of tensor that occupy SRAM."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: QuantFormat = FP16      # linear layers of every transformer block
    embeddings: QuantFormat = FP16   # token embedding table and LM head
    kv_cache: QuantFormat = FP16     # groups run along each token's K (or V) vector
    activations: QuantFormat = FP16  # buffers between operations (float formats only)

    @model_validator(mode="before")
    @classmethod
    def _bare_preset(cls, value: Any) -> Any:
        return {"weights": value} if isinstance(value, str) else value

    @field_validator("weights", "embeddings", "kv_cache", "activations", mode="before")
    @classmethod
    def _resolve_preset(cls, value: Any) -> Any:
        return resolve_format(value)

    @field_validator("activations")
    @classmethod
    def _float_activations(cls, value: QuantFormat) -> QuantFormat:
        if value.bits not in (16, 32):
            raise ValueError("activations must be a 16- or 32-bit float format")
        return value
