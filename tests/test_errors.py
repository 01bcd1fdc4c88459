"""An error or warning is one line whatever the text in it, and never formats more
than a bounded prefix of a value."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsesim.errors import KeyedError, SpecError, SpecWarning, escape, shown
from wsesim.literal import clipped, printable
from wsesim.quant import preset, reconstruction_error

TEXT = st.text(alphabet=st.characters(exclude_categories=()), max_size=200)  # surrogates too


@given(TEXT, TEXT, TEXT)
def test_an_error_is_one_printable_line(source, key, message):
    line = SpecError(source, key, message).line()
    assert line.startswith("error: ")
    assert len(line.splitlines()) == 1 and "\n" not in line
    line.encode("utf-8")   # lone surrogates (undecodable file names) are escaped too


@given(TEXT, TEXT)
def test_a_keyed_error_and_a_warning_are_one_line(key, message):
    assert len(KeyedError(key, message).keyed().splitlines()) == 1
    warning = SpecWarning(key, message).line()
    assert warning.startswith("warning: ") and len(warning.splitlines()) == 1


@given(TEXT)
def test_escaping_keeps_printable_text_as_is(text):
    line = SpecError("f.yaml", "k", text).line()
    if text.isprintable():
        assert line == f"error: f.yaml: k: {text}"


@pytest.mark.parametrize("make", [
    lambda: 10**100_000, lambda: -(10**5000), lambda: "x" * 10**6,
    lambda: [[1] * 10**4] * 10**3, lambda: {"k" * 10**5: 1}, lambda: b"\xff" * 10**5,
    lambda: 1.5, lambda: None, lambda: True, lambda: "line\nbreak",
])
def test_shown_is_bounded_and_one_line(make):
    text = shown(make())
    assert len(text) < 120 and len(text.splitlines()) == 1


def test_reconstruction_error_takes_a_preset_name():
    w = np.random.default_rng(0).normal(size=(8, 256))
    assert reconstruction_error("w3.5-g128", w) == reconstruction_error(preset("w3.5-g128"), w)
    with pytest.raises(ValueError, match="unknown quantization preset 'w3.5-g12' "
                                         r"\(did you mean 'w3.5-g128'"):
        reconstruction_error("w3.5-g12", w)


# ---- the one place that cuts text: literal.clipped (errors.escape calls it) ----------


@given(TEXT, st.integers(0, 250))
def test_escape_cuts_the_text_then_escapes_it(text, limit):
    out = escape(text, limit)
    if len(text) <= limit:
        assert out == printable(text)
    else:   # the text with its "..." is `limit` characters long, before escaping
        assert out == printable(text[:max(limit - 3, 0)]) + "..."
    assert printable(out) == out and escape(text) == printable(text)


@given(TEXT, st.integers(0, 250))
def test_clipped_cuts_the_text_then_escapes_it(text, max_chars):
    out = clipped(text, max_chars)
    if len(text) <= max_chars:
        assert out == printable(text)
    else:   # never half an escape: the kept characters are escaped whole
        assert out == (f"{printable(text[:max_chars])}... "
                       f"({len(text) - max_chars:,} more characters)")
    assert printable(out) == out


def test_cutting_by_hand():
    assert escape("abcdefgh", 5) == "ab..." and escape("abcde", 5) == "abcde"
    assert escape("\n\t\x1b\u202e" * 3, 5) == "\\n\\t..."
    assert clipped("abcdefgh", 5) == "abcde... (3 more characters)"
    assert clipped("\x1b" * 100, 3) == "\\x1b\\x1b\\x1b... (97 more characters)"
    assert clipped("a\nb", 5) == "a\\nb"
