"""How result values compare: one definition shared by the scorer's `t2s` rules and strategy voting.

Engines return more than numbers and text: JSON objects and arrays (PostgreSQL ``json``, DuckDB structs and
lists, ``regexp_matches``), bytes, Decimal NaN, timestamps. :func:`canonical_value` turns any of them into a
hashable value that compares the way the rules say, so grouping results never raises on an odd value.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Any

SIGNIFICANT_DIGITS = 10
NAN = "\x00NaN"
#: Nesting followed inside JSON/list values; deeper parts compare as one token (engines rarely return
#: deeper values at all: the worker's pickling and the drivers' JSON parsers have limits of their own).
MAX_VALUE_DEPTH = 32


def canonical_value(value: Any, _depth: int = 0) -> Any:
    """Value used for t2s comparisons: numbers to 10 significant digits, NaN as one token, bools as ints,
    lists as tuples, objects as sets of (key, value) pairs, bytes-likes as bytes; always hashable."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        try:
            value = float(value)
        except (ValueError, InvalidOperation):  # signalling NaN
            return NAN
    if isinstance(value, float):
        if math.isnan(value):
            return NAN
        if math.isinf(value) or value == 0.0:
            return value
        rounded = float(f"{value:.{SIGNIFICANT_DIGITS}g}")
        return int(rounded) if rounded.is_integer() and abs(rounded) < 2**53 else rounded
    if isinstance(value, str | int | bytes) or value is None:
        return value
    if _depth >= MAX_VALUE_DEPTH:
        return "\x00deep"
    if isinstance(value, list | tuple):
        return tuple(canonical_value(v, _depth + 1) for v in value)
    if isinstance(value, dict):
        return frozenset((canonical_value(k, _depth + 1), canonical_value(v, _depth + 1)) for k, v in value.items())
    if isinstance(value, set | frozenset):
        return ("\x00set", frozenset(canonical_value(v, _depth + 1) for v in value))
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    try:
        hash(value)
    except TypeError:
        return (type(value).__name__, repr(value))
    return value


def json_safe_text(text: str) -> str:
    """``text`` with lone surrogates (which no UTF-8 encoder accepts) replaced by U+FFFD; unchanged otherwise."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text
