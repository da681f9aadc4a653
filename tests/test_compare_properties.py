"""Invariants of result comparison and normalization, checked with hypothesis."""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evals.compare import BIRD, SPIDER, T2S, find_column_mapping, results_match
from evals.execution import execution_match
from evals.normalize import canonical_sql, target_schema
from t2s.execution import SqliteTarget
from t2s.guard import guard_select

cells = st.one_of(st.none(), st.integers(-5, 5), st.sampled_from(["a", "b", "c", "1"]),
                  st.sampled_from([0.5, 1.25, -2.0]))


@st.composite
def tables(draw: st.DrawFn, min_rows: int = 0) -> list[tuple]:
    ncols = draw(st.integers(1, 5))
    return draw(st.lists(st.tuples(*[cells] * ncols), min_size=min_rows, max_size=12))


@given(tables())
def test_a_result_matches_itself_under_every_rule_set(rows: list[tuple]) -> None:
    for rules in (T2S, SPIDER, BIRD):
        assert results_match(rows, list(rows), rules, order_matters=True)
        assert results_match(rows, list(rows), rules, order_matters=False)


@given(tables(), st.randoms(use_true_random=False))
def test_row_permutation_does_not_change_an_unordered_verdict(rows: list[tuple], rnd: random.Random) -> None:
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    for rules in (T2S, SPIDER, BIRD):
        assert results_match(rows, shuffled, rules, order_matters=False)


@given(tables(min_rows=1), st.randoms(use_true_random=False))
def test_column_permutation_is_found(rows: list[tuple], rnd: random.Random) -> None:
    perm = list(range(len(rows[0])))
    rnd.shuffle(perm)
    permuted = [tuple(r[i] for i in perm) for r in rows]
    mapping = find_column_mapping(rows, permuted, order_matters=True)
    assert mapping is not None
    assert [tuple(r[j] for j in mapping) for r in permuted] == rows


@given(tables(min_rows=1), st.data())
def test_results_differing_in_one_cell_never_match(rows: list[tuple], data: st.DataObject) -> None:
    r = data.draw(st.integers(0, len(rows) - 1))
    c = data.draw(st.integers(0, len(rows[0]) - 1))
    changed = [list(row) for row in rows]
    changed[r][c] = "\x00changed"  # a value that appears nowhere else
    changed_rows = [tuple(row) for row in changed]
    for rules in (T2S, SPIDER, BIRD):
        assert not results_match(rows, changed_rows, rules, order_matters=False)


def test_wide_results_do_not_explode() -> None:
    """12 identical-multiset columns: 12! permutations for a naive search, milliseconds here."""
    rows = [tuple((i + j) % 12 for j in range(12)) for i in range(12)]
    rotated = [r[5:] + r[:5] for r in rows]
    assert find_column_mapping(rows, rotated, order_matters=False) is not None
    broken = [*rotated[:-1], tuple(reversed(rotated[-1]))]
    assert find_column_mapping(rows, broken, order_matters=True) is None


QUERIES = [
    "SELECT name FROM customers WHERE age > 30 AND city = 'Lyon'",
    "SELECT c.city, COUNT(*) AS n FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.city",
    "SELECT name FROM customers WHERE id IN (SELECT customer_id FROM orders) ORDER BY name LIMIT 3",
    "SELECT city FROM customers UNION SELECT tag FROM nums",
    "SELECT MAX(amount) - MIN(amount) FROM orders WHERE placed >= '2024-02-01'",
]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=25)
@given(st.sampled_from(QUERIES))
def test_normalization_is_idempotent(shop_db: Path, sql: str) -> None:
    target = SqliteTarget(shop_db)
    schema = target_schema(target)
    once = canonical_sql(guard_select(sql), schema, "sqlite")
    assert once is not None
    assert canonical_sql(guard_select(once), schema, "sqlite") == once


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=25)
@given(st.sampled_from(QUERIES))
def test_a_query_matches_itself_by_execution(shop_db: Path, sql: str) -> None:
    out = execution_match(sql, sql, SqliteTarget(shop_db), timeout_s=5)
    assert out.match and out.error_class is None
