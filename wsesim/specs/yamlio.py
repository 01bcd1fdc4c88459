"""Reading YAML/JSON safely and turning pydantic errors into one located line."""
from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from wsesim.errors import KeyedError, SpecError


def read_mapping(path: Path) -> dict[str, Any]:
    """Load a YAML (safe loader only) or JSON file whose top level must be a mapping."""
    if not path.is_file():
        raise SpecError(path, "", "file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(path, "", f"cannot read file: {exc}") from None
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(path, "", f"malformed YAML{where}: {problem}") from None
    except json.JSONDecodeError as exc:
        raise SpecError(path, "", f"malformed JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise SpecError(path, "", f"expected a mapping of keys, found {type(data).__name__}")
    return data


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that owns the key at ``loc`` (for 'did you mean')."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None) or getattr(
            current, "__pydantic_fields__", None
        )
        if not isinstance(part, str) or fields is None or part not in fields:
            return None
        annotation = fields[part].annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        current = next(
            (c for c in candidates if isinstance(c, type) and (
                issubclass(c, BaseModel) or hasattr(c, "__pydantic_fields__"))),
            None,
        )
        if current is None:
            return None
    return current


def _known_keys(owner: Any) -> list[str]:
    fields = getattr(owner, "model_fields", None) or getattr(owner, "__pydantic_fields__", {})
    return list(fields)


def did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


_TYPE_TAGS = {"int", "float", "str", "bool", "none"}
_TAG_PREFIXES = ("function-", "constrained-", "literal[", "list[", "dict[", "tagged-union[",
                 "lax-or-strict[", "nullable[")


def _is_schema_tag(part: Any) -> bool:
    """A step pydantic adds to an error's location that is no key of the input: a
    validator, or which member of a union (``wafers: 0`` is located at
    ``wafers.constrained-int``) or model class was being tried."""
    return isinstance(part, str) and (part in _TYPE_TAGS or part.startswith(_TAG_PREFIXES)
                                      or part[:1].isupper())


def spec_error_from(
    exc: ValidationError, source: str | Path, model: type[BaseModel], prefix: str = ""
) -> SpecError:
    """The first pydantic error as a located one-line SpecError."""
    err = exc.errors(include_url=False)[0]
    loc = tuple(p for p in err["loc"] if not _is_schema_tag(p))
    key = ".".join(str(p) for p in loc)
    if prefix:
        key = f"{prefix}.{key}" if key else prefix
    kind = err["type"]
    if kind == "extra_forbidden":
        owner = _model_at(model, loc[:-1])
        hint = did_you_mean(str(loc[-1]), _known_keys(owner)) if owner else ""
        if owner:
            hint = hint or f" (known keys: {', '.join(_known_keys(owner))})"
        return SpecError(source, key, f"unknown key{hint}")
    if kind == "missing":
        return SpecError(source, key, "required key is missing")
    msg = err["msg"]
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind not in ("value_error", "assertion_error") and "input" in err:
        shown = repr(err["input"])
        if len(shown) > 60:
            shown = shown[:57] + "..."
        msg = f"{msg} (got {shown})"
    return SpecError(source, key, msg)


def validate(model: type[BaseModel], data: Any, source: str | Path, prefix: str = "",
             context: dict[str, Any] | None = None) -> Any:
    """``model.model_validate(data)`` with errors as one located SpecError."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise spec_error_from(exc, source, model, prefix) from None
    except KeyedError as exc:
        key = f"{prefix}.{exc.key}" if prefix else exc.key
        raise SpecError(source, key, exc.message) from None
