"""User text shown literally.

Names, notes, sources and paths come from files a user wrote. Before a renderer sees
them (rich, a markdown viewer, matplotlib, a terminal), they are escaped so that they
print as typed: no markup, no emoji codes, no math, and no character that ends a line,
moves the cursor or reorders the text, so one name cannot break a report's layout.
"""
from __future__ import annotations

import unicodedata

# control, format (bidi overrides, zero-width), line and paragraph separators, surrogates
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
# characters a markdown renderer (CommonMark, GitHub) would read as formatting
_MARKDOWN_SPECIAL = frozenset("\\`*_[]<>|~&$#")


def _escape_char(ch: str) -> str:
    if unicodedata.category(ch) in _ESCAPED_CATEGORIES:
        return ch.encode("unicode_escape", "backslashreplace").decode("ascii")
    return ch


def printable(text: object) -> str:
    """``text`` with every control or invisible formatting character (newline, tab, ESC,
    DEL, bidi overrides, zero-width and line separators) written as its Python escape
    (``\\n``, ``\\x1b``, ``\\u202e``); everything else, non-ASCII letters included, is
    kept as it is."""
    s = str(text)
    if s.isprintable():   # the common case: nothing to escape
        return s
    return "".join(_escape_char(ch) for ch in s)


def markdown_literal(text: object) -> str:
    """:func:`printable`, with every character markdown reads as formatting (emphasis,
    links, code, tables, HTML, entities, math) backslash-escaped, so it renders as typed."""
    return "".join(f"\\{ch}" if ch in _MARKDOWN_SPECIAL else ch for ch in printable(text))


def clipped(text: object, max_chars: int, say_how_many: bool = True) -> str:
    """:func:`printable` of ``text`` cut to ``max_chars`` characters: for places with
    room for a name, not a book (figure titles, error lines). The text is cut before it
    is escaped, so an escape is never split and a huge text is never escaped whole.

    With ``say_how_many``, a longer text keeps ``max_chars`` characters and notes how
    many more it had (``abc... (5 more characters)``); without, it keeps
    ``max_chars - 3`` and ends in ``...`` (``max_chars`` characters before escaping)."""
    s = str(text)
    if len(s) <= max_chars:
        return printable(s)
    if say_how_many:
        return f"{printable(s[:max_chars])}... ({len(s) - max_chars:,} more characters)"
    return printable(s[:max(max_chars - 3, 0)]) + "..."
