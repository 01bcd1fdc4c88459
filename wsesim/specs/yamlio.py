"""Reading YAML/JSON safely and turning pydantic errors into one located line.

What the loader accepts is bounded before anything is built from it (see
``specs/bounds.py``): the file's size, how deep mappings and lists nest, and how many
values the document holds once YAML aliases are expanded (counted from the event
stream, an alias costing what its anchor holds, so a "billion laughs" is refused from
its few hundred bytes). A key given twice in one mapping is an error, not a silent
choice of the last.
"""
from __future__ import annotations

import difflib
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from wsesim.errors import KeyedError, SpecError, escape, shown
from wsesim.specs.bounds import MAX_FILE_BYTES, MAX_NESTING, MAX_NODES

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """The safe loader, reading ``1e9`` and ``1.1e9`` as numbers, as YAML 1.2 and JSON
    do (YAML 1.1 wants a dot and a signed exponent and reads them as strings)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def read_mapping(path: Path) -> dict[str, Any]:
    """Load a YAML (safe loader only) or JSON file whose top level must be a mapping."""
    if not path.is_file():
        raise SpecError(path, "", "file not found")
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SpecError(path, "", f"cannot read file: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError(path, "", f"the file is larger than {MAX_FILE_BYTES:,} B (a bound "
                        "of wsesim for an input file)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(path, "", f"cannot read file: not UTF-8 (byte {exc.start:,})") \
            from None
    data = _parse_json(text, path) if path.suffix == ".json" else _parse_yaml(text, path)
    if not isinstance(data, dict):
        raise SpecError(path, "", f"expected a mapping of keys, found {type(data).__name__}")
    return data


# ---- YAML ---------------------------------------------------------------------------

def _mark(mark: Any) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _parse_yaml(text: str, path: Path) -> Any:
    try:
        _check_yaml_events(text, path)
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (the safe loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(path, "", f"malformed YAML{_mark(mark)}: {problem}") from None
    except (ValueError, OverflowError) as exc:   # a scalar Python cannot hold
        raise SpecError(path, "", f"malformed YAML: {escape(str(exc), 120)}") from None


class _Frame:
    """A mapping or list being read: where it is, its keys so far, its height."""

    __slots__ = ("path", "is_map", "anchor", "start", "keys", "key", "index", "height",
                 "expect_key")

    def __init__(self, path: str, is_map: bool, anchor: str | None, start: int) -> None:
        self.path, self.is_map, self.anchor, self.start = path, is_map, anchor, start
        self.keys: dict[tuple[str, str], str] = {}  # key -> where first given
        self.key = "?"
        self.index = 0
        self.height = 1            # levels of mappings and lists, itself included
        self.expect_key = is_map

    def child_path(self) -> str:
        part = self.key if self.is_map else str(self.index)
        return f"{self.path}.{part}" if self.path else part

    def took(self, height: int) -> None:
        """A child value of ``height`` levels ended."""
        self.height = max(self.height, 1 + height)
        if self.is_map:
            self.expect_key = not self.expect_key
        else:
            self.index += 1


def _check_yaml_events(text: str, path: Path) -> None:
    """Walk the event stream once (no recursion, nothing built): refuse a key given twice
    in one mapping, nesting deeper than MAX_NESTING and more than MAX_NODES values once
    aliases are expanded (an alias counts the values and levels of its anchor)."""
    resolver = yaml.resolver.Resolver()
    anchors: dict[str, tuple[int, int]] = {}   # anchor -> (values, height)
    stack: list[_Frame] = []
    count = 0                                  # values so far, aliases expanded

    def where() -> str:
        return stack[-1].child_path() if stack else ""

    def check(event: Any, height: int) -> None:
        if len(stack) + height > MAX_NESTING:
            raise SpecError(path, _outer(where()), f"nested more than {MAX_NESTING} levels "
                            f"deep{_mark(event.start_mark)} (a bound of wsesim)")
        if count > MAX_NODES:
            raise SpecError(path, where(), f"more than {MAX_NODES:,} values once aliases "
                            f"are expanded{_mark(event.start_mark)} (a bound of wsesim)")

    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        parent = stack[-1] if stack else None
        is_key = parent is not None and parent.is_map and parent.expect_key
        if isinstance(event, yaml.ScalarEvent):
            if is_key:
                _note_key(parent, event, resolver, path)  # type: ignore[arg-type]
            count += 1
            if event.anchor:
                anchors[event.anchor] = (1, 0)
            check(event, 0)
            if parent is not None:
                parent.took(0)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor not in anchors:   # undefined, or inside its own anchor
                recursive = any(f.anchor == event.anchor for f in stack)
                raise SpecError(path, where(), (
                    "an alias inside its own anchor: a value that contains itself"
                    if recursive else f"undefined alias *{shown(event.anchor)}")
                    + _mark(event.start_mark))
            nodes, height = anchors[event.anchor]
            if is_key:
                parent.key = f"*{event.anchor}"  # type: ignore[union-attr]
            count += nodes
            check(event, height)
            if parent is not None:
                parent.took(height)
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if is_key:
                parent.key = "?"  # type: ignore[union-attr]  # a key that is a mapping
            count += 1
            check(event, 1)
            stack.append(_Frame(where(), isinstance(event, yaml.MappingStartEvent),
                                event.anchor, count - 1))
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            frame = stack.pop()
            if frame.anchor:
                anchors[frame.anchor] = (count - frame.start, frame.height)
            if stack:
                stack[-1].took(frame.height)


def _outer(where: str) -> str:
    """The outer keys of a deep path (``extra.0.0.0...`` -> ``extra.0``): the line and
    column say the rest."""
    return ".".join(where.split(".")[:2])


def _note_key(frame: _Frame, event: Any, resolver: Any, path: Path) -> None:
    """Record a mapping's key; the same key twice in one mapping is an error (YAML
    would silently keep the last). Merge keys (``<<``) may repeat what they merge."""
    tag = event.tag if event.tag not in (None, "!") else resolver.resolve(
        yaml.ScalarNode, event.value, event.implicit)
    frame.key = event.value
    if tag == _MERGE_TAG:
        return
    at = f"line {event.start_mark.line + 1}, column {event.start_mark.column + 1}"
    key = (tag, event.value)
    if key in frame.keys:
        raise SpecError(path, frame.child_path(), f"duplicate key at {at} (first given "
                        f"at {frame.keys[key]}); YAML would keep only the last")
    frame.keys[key] = at


# ---- JSON ---------------------------------------------------------------------------

class _DuplicateKey(Exception):
    pass


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse_json(text: str, path: Path) -> Any:
    try:
        data = json.loads(text, object_pairs_hook=_json_object,
                          parse_constant=_json_constant)
    except json.JSONDecodeError as exc:
        raise SpecError(path, "", f"malformed JSON at line {exc.lineno}: {exc.msg}") \
            from None
    except _DuplicateKey as exc:
        raise SpecError(path, str(exc.args[0]), "duplicate key in one object; JSON "
                        "readers would keep only the last") from None
    except RecursionError:
        raise SpecError(path, _outer(_deep_json_path(text)), f"nested more than "
                        f"{MAX_NESTING} levels deep (a bound of wsesim)") from None
    except ValueError as exc:   # NaN, Infinity, a number Python cannot hold
        raise SpecError(path, "", f"malformed JSON: {escape(str(exc), 120)}") from None
    _check_depth(data, path)
    return data


def _deep_json_path(text: str) -> str:
    """The key path of the first array or object nested deeper than MAX_NESTING, found
    by scanning the text (for JSON too deep for Python's recursive parser to read);
    ``""`` if there is none."""
    frames: list[list[Any]] = []   # [is an object, its current key or index]
    last = '""'                    # the last string read, quotes included
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            last, i = text[i:j + 1], j + 1
            continue
        if ch in "[{":
            if len(frames) >= MAX_NESTING:
                return ".".join(str(key) for _, key in frames)
            frames.append([ch == "{", "" if ch == "{" else 0])
        elif ch in "]}" and frames:
            frames.pop()
        elif ch == ":" and frames and frames[-1][0]:
            try:
                frames[-1][1] = json.loads(last)
            except ValueError:   # not a well-formed string: shown as written
                frames[-1][1] = last
        elif ch == "," and frames and not frames[-1][0]:
            frames[-1][1] += 1
        i += 1
    return ""


def _check_depth(data: Any, path: Path) -> None:
    """Refuse JSON nested deeper than MAX_NESTING (iteratively: no recursion)."""
    todo: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while todo:
        value, where = todo.pop()
        if isinstance(value, (dict, list)):
            if len(where) + 1 > MAX_NESTING:
                raise SpecError(path, _outer(".".join(map(str, where))), f"nested more than "
                                f"{MAX_NESTING} levels deep (a bound of wsesim)")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for k, v in items:
                todo.append((v, (*where, k)))


def _fields(cls: Any) -> dict[str, Any] | None:
    """The fields of a pydantic model or pydantic dataclass, or None for anything else."""
    fields = getattr(cls, "__pydantic_fields__", None) if isinstance(cls, type) else None
    return fields if isinstance(fields, dict) else None


def _models_in(annotation: Any) -> list[Any]:
    """The pydantic models (and dataclasses) in a field's annotation, through unions,
    ``Optional`` and ``Annotated``."""
    if _fields(annotation) is not None:
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    """The pydantic model (or dataclass) that owns the key at ``loc`` (for 'did you
    mean'), or None when no single one does."""
    current: Any = model
    for part in loc:
        fields = _fields(current) or {}
        if not isinstance(part, str) or part not in fields:
            return None
        models = _models_in(fields[part].annotation)
        if len(models) != 1:
            return None
        current = models[0]
    return current


def closest(word: str, choices: list[str]) -> str | None:
    """The choice closest to ``word`` (case aside), if one is close."""
    if len(word) > 200:   # no key or name is that long: nothing is close
        return None
    lowered = {c.lower(): c for c in reversed(choices)}   # the first of equal ones
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


def did_you_mean(word: str, choices: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to ``word``, or nothing."""
    close = closest(word, choices)
    return f" (did you mean '{close}'?)" if close else ""


# the names pydantic gives a union member that is no model: a type, a validator
_TYPE_TAGS = {"int", "float", "str", "bool", "none"}
_TAG_PREFIXES = ("function-", "constrained-", "literal[", "list[", "dict[", "tagged-union[",
                 "lax-or-strict[", "nullable[")


@lru_cache(maxsize=None)
def _member_names(model: type[BaseModel]) -> frozenset[str]:
    """The names pydantic gives the members of the unions in ``model``'s schema that are
    models or tagged: the model classes and the tags."""
    names: set[str] = set()
    todo: list[Any] = [model.__pydantic_core_schema__]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            if node.get("type") in ("model", "dataclass"):
                names.add(node["cls"].__name__)
            elif node.get("type") == "tagged-union":
                names.update(str(tag) for tag in node["choices"])
            todo.extend(node.values())
        elif isinstance(node, (list, tuple)):
            todo.extend(node)
    return frozenset(names)


def _input_loc(loc: tuple[Any, ...], model: type[BaseModel],
               extra: bool) -> tuple[Any, ...]:
    """``loc`` without the steps pydantic adds that are no key of the input: which member
    of a union was being tried (``wafers: 0`` is located at ``wafers.constrained-int``),
    a model class or a tag. The last step of an unknown key is the key, whatever it is."""
    names = _member_names(model)
    inner, last = (loc[:-1], loc[-1:]) if extra else (loc, ())
    return tuple(p for p in inner if not (isinstance(p, str) and (
        p in _TYPE_TAGS or p.startswith(_TAG_PREFIXES) or p in names))) + last


def spec_error_from(
    exc: ValidationError, source: str | Path, model: type[BaseModel], prefix: str = ""
) -> SpecError:
    """The first pydantic error as a located one-line SpecError."""
    err = exc.errors(include_url=False)[0]
    kind = err["type"]
    # a key no model (extra_forbidden) or dataclass (unexpected_keyword_argument) has
    unknown = kind in ("extra_forbidden", "unexpected_keyword_argument")
    loc = _input_loc(tuple(err["loc"]), model, unknown)
    key = ".".join(str(p) for p in loc)
    if prefix:
        key = f"{prefix}.{key}" if key else prefix
    if unknown:
        owner = _model_at(model, loc[:-1])
        known = list(_fields(owner) or {})
        hint = did_you_mean(str(loc[-1]), known)
        if known:
            hint = hint or f" (known keys: {', '.join(known)})"
        return SpecError(source, key, f"unknown key{hint}")
    if kind == "missing":
        return SpecError(source, key, "required key is missing")
    msg = err["msg"]
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind not in ("value_error", "assertion_error") and "input" in err:
        msg = f"{msg} (got {shown(err['input'])})"
    return SpecError(source, key, msg)


def validate(model: type[BaseModel], data: Any, source: str | Path, prefix: str = "") -> Any:
    """``model.model_validate(data)`` with errors as one located SpecError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise spec_error_from(exc, source, model, prefix) from None
    except KeyedError as exc:
        key = f"{prefix}.{exc.key}" if prefix else exc.key
        raise SpecError(source, key, exc.message) from None
