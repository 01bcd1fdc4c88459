"""JSON that every strict parser reads: no ``NaN`` or ``Infinity``, which Python's
``json`` writes by default and which are not JSON.

The specs' bounds keep every figure finite; should one still not be (a bug), it is
written as ``null`` (no number) rather than as a token other tools reject or, worse,
read as a number. numpy's numbers and arrays are written as the values they hold."""
from __future__ import annotations

import json
import math
from typing import Any


def finite_only(value: Any) -> Any:
    """``value`` with every non-finite float (at any depth) replaced by None, and numpy
    scalars and arrays as the Python numbers and lists they hold (which ``json`` writes;
    numpy is not imported for this)."""
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_only(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_only(v) for v in value]
    return value


def dumps(value: Any, **options: Any) -> str:
    """``json.dumps`` of ``value`` that is always strict JSON (``allow_nan=False``)."""
    return json.dumps(finite_only(value), allow_nan=False, **options)
