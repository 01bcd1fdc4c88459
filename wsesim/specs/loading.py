"""Resolve names to files and load validated specs; every failure is a located SpecError."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, get_args

from wsesim.errors import SpecError, escape, shown, warn
from wsesim.paths import models_dir, profiles_dir, where_from
from wsesim.specs.deployment import Deployment
from wsesim.specs.hardware import HardwareProfile
from wsesim.specs.hf_keys import IGNORED_HF_KEYS, unmodelled
from wsesim.specs.model import ModelSpec
from wsesim.specs.yamlio import closest, did_you_mean, read_mapping, validate


def shipped(folder: Path) -> list[str]:
    """Names of the YAML files in a shipped folder (``models/``, ``hardware_profiles/``)."""
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _find_file(value: str, folder: Path, base_dir: Path, what: str,
               source: str | Path, key: str) -> Path:
    """A shipped name (``llama-3.1-8b``) or a path relative to the file that names it."""
    try:
        named = folder / f"{value}.yaml"
        if named.is_file():
            return named
        candidate = Path(value).expanduser()
        for path in ([candidate] if candidate.is_absolute()
                     else [base_dir / candidate, candidate]):
            if path.is_file():
                return path
    except (OSError, ValueError, RuntimeError) as exc:  # too long, a NUL byte, no ~user
        raise SpecError(source, key, f"cannot use {shown(value)} as a {what} name or "
                        f"path: {escape(str(getattr(exc, 'strerror', None) or exc), 80)}"
                        ) from None
    names = shipped(folder)
    known = (", ".join(names) if names else
             f"none in {escape(str(folder))} (chosen by {where_from()})")
    raise SpecError(
        source, key,
        f"no {what} named {shown(value)} and no such file{did_you_mean(value, names)}; "
        f"shipped: {known}",
    )


def load_model(value: str | Path | dict[str, Any], base_dir: Path = Path("."),
               source: str | Path = "<input>", key: str = "model") -> ModelSpec:
    """A model from a shipped name, a model YAML, a Hugging Face config.json or a mapping."""
    if isinstance(value, ModelSpec):
        return value
    if isinstance(value, dict):
        return validate(ModelSpec, value, source, prefix=key)
    if not isinstance(value, (str, Path)):
        raise SpecError(source, key, "expected a model name, a file path or a mapping")
    path = _find_file(str(value), models_dir(), base_dir, "model", source, key)
    return _model_file(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=256)
def _model_file(path: Path, mtime_ns: int) -> ModelSpec:
    """A model file, read once per version of it (sweeps name the same files again and
    again; specs are frozen, so sharing them is safe). Keyed by the path as found, which
    errors name."""
    data = read_mapping(path)
    if path.suffix == ".json":
        return model_from_hf_config(data, path)
    data.setdefault("name", path.stem)
    return validate(ModelSpec, data, path)


def model_from_hf_config(config: dict[str, Any], path: Path) -> ModelSpec:
    """A Hugging Face ``config.json``. Keys wsesim models are read; harmless keys
    (``IGNORED_HF_KEYS``) are dropped; keys that set an architecture wsesim does not
    model (experts, latent or chunked attention...) are a located error; any other key
    is dropped with one warning line (a :class:`wsesim.errors.SpecWarning`) naming them
    all, with a suggestion for a likely misspelling."""
    fields = set(ModelSpec.model_fields)
    if "model_type" in config and config["model_type"] not in _MODEL_TYPES:
        raise SpecError(path, "model_type",
                        f"{shown(config['model_type'])} is not a LLaMA-family model "
                        f"({', '.join(_MODEL_TYPES)})")
    known = [k for k in config if k in fields or k in IGNORED_HF_KEYS or unmodelled(k)]
    unknown = [k for k in config if k not in known]
    if unknown:
        warn(path, _unknown_keys_message(unknown, sorted(fields - _NOT_HF)))
    data = {k: config[k] for k in known}
    data.setdefault("name", config.get("_name_or_path") or path.parent.name or path.stem)
    data.setdefault("source", str(path))
    if not isinstance(data["name"], str):
        data["name"] = path.parent.name or path.stem
    return validate(ModelSpec, data, path)


_MODEL_TYPES: tuple[str, ...] = get_args(ModelSpec.model_fields["model_type"].annotation)
_NOT_HF = {"name", "source"}   # wsesim's own model keys, never in a config.json
_SHOWN_UNKNOWN = 12


def _unknown_keys_message(keys: list[str], fields: list[str]) -> str:
    """``unknown keys ignored: a, b (did you mean 'x' for 'a'?)``, bounded."""
    shown_keys = [escape(k, 60) for k in keys[:_SHOWN_UNKNOWN]]
    more = f" and {len(keys) - _SHOWN_UNKNOWN:,} more" if len(keys) > _SHOWN_UNKNOWN else ""
    hints = []
    for k in keys[:_SHOWN_UNKNOWN]:
        close = closest(k, fields)
        if close:
            hints.append(f"'{close}' for '{escape(k, 60)}'")
    hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
    return f"unknown keys ignored: {', '.join(shown_keys)}{more}{hint}"


def load_hardware(value: str | Path | dict[str, Any], base_dir: Path = Path("."),
                  source: str | Path = "<input>", key: str = "hardware") -> HardwareProfile:
    """A hardware profile from a shipped name, a path, or a mapping."""
    if isinstance(value, HardwareProfile):
        return value
    if isinstance(value, dict):
        return validate(HardwareProfile, value, source, prefix=key)
    if not isinstance(value, (str, Path)):
        raise SpecError(source, key, "expected a profile name, a file path or a mapping")
    path = _find_file(str(value), profiles_dir(), base_dir, "hardware profile", source, key)
    return _hardware_file(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=64)
def _hardware_file(path: Path, mtime_ns: int) -> HardwareProfile:
    """A profile file, read once per version of it."""
    data = read_mapping(path)
    data.setdefault("name", path.stem)
    return validate(HardwareProfile, data, path)


def deployment_from_mapping(data: dict[str, Any], source: str | Path = "<input>",
                            base_dir: Path = Path("."), prefix: str = "") -> Deployment:
    """Validate a deployment mapping (as read from YAML), resolving model and hardware.

    ``prefix`` locates the mapping inside a larger file (a validation case's
    ``deployment``) so error key paths stay true.
    """
    if not isinstance(data, dict):
        raise SpecError(source, prefix, "expected a mapping for the deployment")
    where = f"{prefix}." if prefix else ""
    resolved = dict(data)
    for key, loader in (("model", load_model), ("hardware", load_hardware)):
        if key not in resolved:
            raise SpecError(source, where + key, "required key is missing")
        resolved[key] = loader(resolved[key], base_dir, source, where + key)
    return validate(Deployment, resolved, source, prefix=prefix)


def load_deployment(path: str | Path) -> Deployment:
    """Read and validate a deployment YAML file."""
    path = Path(path)
    data = read_mapping(path)
    data.setdefault("name", path.stem)
    return deployment_from_mapping(data, path, path.parent)
