"""An error names the full key path of what is wrong, whatever the key's spelling."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import tiny_hardware, tiny_model
from hypothesis import given, settings
from hypothesis import strategies as st

from wsesim.errors import SpecError
from wsesim.specs import Deployment, HardwareProfile, ModelSpec, deployment_from_mapping
from wsesim.specs.bounds import MAX_NESTING
from wsesim.specs.hf_keys import IGNORED_HF_KEYS, unmodelled
from wsesim.specs.yamlio import _check_depth, _deep_json_path, _fields, _model_at, _outer


def data() -> dict:
    """A valid deployment with every mapping a key can be put in written out."""
    return {"name": "t", "model": tiny_model(), "hardware": tiny_hardware(), "wafers": 1,
            "quantization": {"weights": {"preset": "int4"}},
            "workload": {"batch_size": 1, "prompt_tokens": 16, "output_tokens": 16},
            "mapping": {"strategy": "sequential"}, "simulation": {"fidelity": "tile"},
            "serving": {"rate_per_s": 1, "prompt_tokens": {"mean": 10, "sigma": 1}}}


# every mapping of a deployment (the model and hardware inline), and the class reading it
PLACES = ["", "model", "hardware", "hardware.kernel", "hardware.kernel.dequant",
          "hardware.kernel.calibrated", "quantization", "quantization.weights",
          "workload", "mapping", "simulation", "serving", "serving.prompt_tokens"]
ROOTS = {"model": ModelSpec, "hardware": HardwareProfile}   # read apart from the rest
# names pydantic gives union members and validators: never a key of the input, but a
# user may still type them
TAGS = ["Lognormal", "Fixed", "ServingSpec", "QuantFormat", "Deployment", "int", "str",
        "none", "function-after[x]", "constrained-int", "literal['auto']", "Name", "WAFERS"]


def known_keys(place: str) -> set[str]:
    parts = tuple(place.split(".")) if place else ()
    if parts and parts[0] in ROOTS:
        owner = _model_at(ROOTS[parts[0]], parts[1:])
    else:
        owner = _model_at(Deployment, parts)
    keys = set(_fields(owner))
    if place == "model":   # Hugging Face keys the model drops
        return keys | set(IGNORED_HF_KEYS)
    return keys | {"preset"} if place == "quantization.weights" else keys


def unknown_key_error(place: str, word: str) -> SpecError:
    d = data()
    node = d
    for part in place.split(".") if place else []:
        node = node.setdefault(part, {})
    node[word] = 1
    with pytest.raises(SpecError) as info:
        deployment_from_mapping(d, "dep.yaml")
    return info.value


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("word", TAGS)
def test_an_unknown_key_named_like_a_tag_is_located(place, word):
    if word in known_keys(place) or unmodelled(word):
        pytest.skip("a key of that place")
    err = unknown_key_error(place, word)
    assert err.key == (f"{place}.{word}" if place else word), err.line()
    assert err.message.startswith("unknown key"), err.line()
    assert len(err.line().splitlines()) == 1


@settings(max_examples=60, deadline=None)
@given(place=st.sampled_from(PLACES),
       word=st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,15}", fullmatch=True))
def test_an_unknown_key_of_any_case_is_located(place, word):
    if word in known_keys(place) or unmodelled(word):
        return
    err = unknown_key_error(place, word)
    assert err.key == (f"{place}.{word}" if place else word), err.line()
    assert err.message.startswith("unknown key"), err.line()


@pytest.mark.parametrize("place,word,hint", [
    ("", "Name", "did you mean 'name'?"),
    ("model", "Vocab", "did you mean 'vocab_size'?"),
    ("workload", "Batch_size", "did you mean 'batch_size'?"),
    ("serving.prompt_tokens", "Max", "did you mean 'max'?"),
    ("quantization.weights", "Bits", "did you mean 'bits'?"),
])
def test_the_hint_names_a_key_of_that_mapping(place, word, hint):
    err = unknown_key_error(place, word)
    assert err.key == (f"{place}.{word}" if place else word)
    assert err.message == f"unknown key ({hint})", err.line()


# ---- JSON too deep to parse: located by scanning its text ---------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES, st.integers(MAX_NESTING - 4, MAX_NESTING + 4), st.text(max_size=6),
       st.booleans())
def test_the_deep_json_scan_locates_as_the_parsed_check(data, depth, key, ascii_only):
    """The text scan (for JSON too deep to parse) names the path the check of the parsed
    value names, keys with quotes, brackets and escapes included."""
    deep = json.loads("[" * depth + "]" * depth)
    doc = {"a": data, key: [data, {"k[": "]{\"", "d": deep}]}
    text = json.dumps(doc, ensure_ascii=ascii_only)   # \u escapes, or the characters
    try:
        _check_depth(json.loads(text), Path("f.json"))
        expected = None
    except SpecError as exc:
        expected = exc.key
    found = _deep_json_path(text)
    assert (_outer(found) if found else None) == expected
