"""Result comparison: when do two query results count as the same answer?

Three named rule sets (see README "Scoring rules"):

- ``spider``: Spider test-suite ``result_eq``: bag of rows, list order only when the gold text contains
  ``order by`` anywhere, any column permutation, exact values (``1 == 1.0``, ``'1' != 1``).
- ``bird``: BIRD's ``set(pred) == set(gold)``: row order and duplicates ignored, column order significant.
- ``t2s`` (default): bag of rows; list order only when the gold's *outermost* query orders; any column
  permutation, found without factorial search; numbers equal when they agree to 10 significant digits.

The comparison functions take plain row lists so they are cheap to test with hypothesis.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from t2s.values import canonical_value

Row = tuple[Any, ...]


@dataclass(frozen=True)
class MatchRules:
    """How gold and predicted results are compared (and how their SQL is prepared)."""

    name: str
    rows: Literal["multiset", "set"]
    order: Literal["gold_text_has_order_by", "outermost_order_by"]
    columns: Literal["any_permutation", "positional"]
    numbers: Literal["exact", "significant_digits"]
    strip_distinct: bool
    spider_text_fixes: bool


SPIDER = MatchRules("spider", rows="multiset", order="gold_text_has_order_by", columns="any_permutation",
                    numbers="exact", strip_distinct=True, spider_text_fixes=True)
BIRD = MatchRules("bird", rows="set", order="outermost_order_by", columns="positional", numbers="exact",
                  strip_distinct=False, spider_text_fixes=False)
T2S = MatchRules("t2s", rows="multiset", order="outermost_order_by", columns="any_permutation",
                 numbers="significant_digits", strip_distinct=False, spider_text_fixes=False)
RULES: dict[str, MatchRules] = {r.name: r for r in (T2S, SPIDER, BIRD)}


def get_rules(name: str) -> MatchRules:
    from t2s.errors import ConfigError

    try:
        return RULES[name]
    except KeyError:
        raise ConfigError(f"unknown rule set {name!r}; choose one of {', '.join(RULES)}") from None


def _canonical_rows(rows: Sequence[Row]) -> list[Row]:
    return [tuple(canonical_value(v) for v in row) for row in rows]


def results_match(gold: Sequence[Row], pred: Sequence[Row], rules: MatchRules, order_matters: bool) -> bool:
    """True when ``pred`` answers like ``gold`` under ``rules``.

    ``order_matters`` is decided by the caller from the gold SQL (see :func:`gold_orders`).
    """
    if rules.rows == "set":
        return set(gold) == set(pred)
    if not gold and not pred:
        return True
    if len(gold) != len(pred) or len(gold[0]) != len(pred[0]):
        return False
    if rules.numbers == "significant_digits":
        gold, pred = _canonical_rows(gold), _canonical_rows(pred)
    if rules.columns == "positional":
        return list(gold) == list(pred) if order_matters else Counter(gold) == Counter(pred)
    return find_column_mapping(gold, pred, order_matters) is not None


def _row_key(value: Any) -> str:
    return str(value) + str(type(value))


def find_column_mapping(gold: Sequence[Row], pred: Sequence[Row], order_matters: bool) -> tuple[int, ...] | None:
    """A permutation ``m`` with ``[row[m[i]] for i]`` of each pred row equal to gold, or None.

    Candidates for gold column ``i`` are the pred columns whose value multiset equals gold column ``i``'s
    (necessary for any valid mapping). Columns are then assigned one at a time, and a partial assignment is
    kept only while the projected rows of gold and pred still agree (as lists, or as bags), so the search
    prunes after each column instead of enumerating n! permutations.
    """
    ncols = len(gold[0])
    # The common case first: columns already in gold's order.
    if (list(gold) == list(pred)) if order_matters else (Counter(gold) == Counter(pred)):
        return tuple(range(ncols))
    # Quick rejection: each row's values as a bag must agree (as Spider does, order-insensitive per row).
    g_rowbags = [tuple(sorted(r, key=_row_key)) for r in gold]
    p_rowbags = [tuple(sorted(r, key=_row_key)) for r in pred]
    if order_matters:
        if g_rowbags != p_rowbags:
            return None
    elif Counter(g_rowbags) != Counter(p_rowbags):
        return None
    g_cols = [[r[i] for r in gold] for i in range(ncols)]
    p_cols = [[r[j] for r in pred] for j in range(ncols)]
    if order_matters:
        g_sig = [tuple(c) for c in g_cols]
        p_sig = [tuple(c) for c in p_cols]
    else:
        g_sig = [Counter(c) for c in g_cols]  # type: ignore[misc]
        p_sig = [Counter(c) for c in p_cols]  # type: ignore[misc]
    candidates = [[j for j in range(ncols) if p_sig[j] == g_sig[i]] for i in range(ncols)]
    if any(not c for c in candidates):
        return None
    # Most constrained gold columns first.
    order = sorted(range(ncols), key=lambda i: len(candidates[i]))
    assignment: dict[int, int] = {}
    used: set[int] = set()

    def consistent(prefix: list[int]) -> bool:
        g_proj = [tuple(r[i] for i in prefix) for r in gold]
        p_proj = [tuple(r[assignment[i]] for i in prefix) for r in pred]
        return g_proj == p_proj if order_matters else Counter(g_proj) == Counter(p_proj)

    def search(k: int) -> bool:
        if k == ncols:
            return True
        gi = order[k]
        tried_equal: list[list[Any]] = []
        for pj in candidates[gi]:
            if pj in used:
                continue
            # Identical pred columns are interchangeable: trying one of them is enough.
            if any(p_cols[pj] == t for t in tried_equal):
                continue
            tried_equal.append(p_cols[pj])
            assignment[gi] = pj
            used.add(pj)
            if consistent(order[: k + 1]) and search(k + 1):
                return True
            used.discard(pj)
            del assignment[gi]
        return False

    if not search(0):
        return None
    return tuple(assignment[i] for i in range(ncols))
