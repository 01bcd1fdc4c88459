"""Applying a point to the base deployment: dotted keys set in a copy of the mapping,
with the bits rule for quantization formats (see :mod:`wsesim.sweeps`)."""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, Mapping

FORMAT_TENSORS = ("weights", "embeddings", "kv_cache", "activations")
# groups given to an integer format swept from a float base: those of the *-g128 presets
DEFAULT_INT_PRESET = "int4-g128"


def format_with_bits(current: Any, bits: Any) -> dict[str, Any]:
    """A full format mapping with ``bits`` set, from the base's format (a preset name, a
    mapping, ``{preset: ..., overrides}`` or None = fp16), by the bits rule in the
    docstring of :mod:`wsesim.sweeps`."""
    from wsesim.quant import QuantFormat, preset
    from wsesim.specs.quantization import resolve_format

    whole = {"bits": 16} if current is None else resolve_format(current)
    if isinstance(whole, QuantFormat):
        whole = dataclasses.asdict(whole)
    if not isinstance(whole, dict):
        raise ValueError(f"cannot set bits on a format given as {current!r}")
    base: dict[str, Any] = whole
    out: dict[str, Any] = {"bits": bits}
    if "float16" in base:
        out["float16"] = base["float16"]
    if bits in (16, 32):
        return out
    if base.get("bits") in (16, 32, None):
        groups = dataclasses.asdict(preset(DEFAULT_INT_PRESET))
        out.update({k: groups[k] for k in ("group_size", "scale_bits", "zero_bits")})
    else:
        out.update({k: base[k] for k in ("group_size", "scale_bits", "zero_bits")
                    if k in base})
    if bits in (4, 3.5) and base.get("packing") in ("dense", "byte"):
        out["packing"] = base["packing"]
    return out


def _as_mapping(path: list[str], value: Any, base_dir: Path) -> dict[str, Any]:
    """An intermediate value given in short form, as a mapping so a key under it can be
    set: a bare quantization preset, a format preset, a shipped model/profile name."""
    where = ".".join(path)
    if path == ["quantization"]:
        return {"weights": value}
    if len(path) == 2 and path[0] == "quantization":
        return {"preset": value}
    if path in (["model"], ["hardware"]):
        from wsesim.specs import load_hardware, load_model
        loader = load_model if path == ["model"] else load_hardware
        return loader(value, base_dir, key=where).model_dump(exclude_none=True)
    raise ValueError(f"{where} is {value!r}, not a mapping: cannot set keys inside it")


def _order(key: str) -> tuple[int, int]:
    parts = key.split(".")
    return (len(parts), 0 if parts[-1] == "bits" else 1)


def apply_point(base: Mapping[str, Any], params: Mapping[str, Any],
                base_dir: str | Path = ".") -> dict[str, Any]:
    """The base deployment mapping with a point's dotted keys set (shallower keys first,
    so ``quantization: int4-g128`` applies before ``quantization.weights.bits``)."""
    data = copy.deepcopy(dict(base))
    here = Path(base_dir)
    for key in sorted(params, key=_order):
        value = copy.deepcopy(params[key])
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "quantization" and parts[2] == "bits" \
                and parts[1] in FORMAT_TENSORS:
            node = _walk(data, parts[:1], here)
            node[parts[1]] = format_with_bits(node.get(parts[1]), value)
            continue
        node = _walk(data, parts[:-1], here)
        node[parts[-1]] = value
    return data


def _walk(data: dict[str, Any], parts: list[str], here: Path) -> dict[str, Any]:
    node = data
    for i, part in enumerate(parts):
        child = node.get(part)
        if child is None:
            child = {}
        elif not isinstance(child, dict):
            child = _as_mapping(parts[:i + 1], child, here)
        node[part] = child   # apply_point's deep copy: safe to change in place
        node = child
    return node
