"""How result values compare: one definition shared by the scorer's `t2s` rules and strategy voting."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

SIGNIFICANT_DIGITS = 10


def canonical_value(value: Any) -> Any:
    """Value used for t2s comparisons: numbers to 10 significant digits, NaN as one token, bools as ints."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "\x00NaN"
        if math.isinf(value) or value == 0.0:
            return value
        rounded = float(f"{value:.{SIGNIFICANT_DIGITS}g}")
        return int(rounded) if rounded.is_integer() and abs(rounded) < 2**53 else rounded
    return value
