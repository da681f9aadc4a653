"""Any value a model answer can make an engine return is stored, compared and sent back without an error.

The completion cache keeps any text (lone surrogates included) exactly; self-consistency voting compares
JSON objects, arrays, bytes, NaN, Decimal and timestamps; results are capped per value and in total inside
the engines' fetch, with the truncation flagged, on SQLite, DuckDB and PostgreSQL (as the reader role).
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from t2s.engines import EngineLimits
from t2s.execution import DuckdbTarget, PostgresTarget, SqliteTarget, Target
from t2s.llm import ChatParams, CompletionCache
from t2s.strategy import same_result, vote
from t2s.values import canonical_value, json_safe_text
from tests.fakes import FakeOpenAI, Reply
from tests.pg import reader_dsn
from tests.shop_copies import shop_to_duckdb, shop_to_postgres
from tests.test_llm_client import client_for_test

# --- the completion cache and the model client ------------------------------------------------------------

SURROGATES = ["SELECT '\ud800'", "\udfff", "a\ud83d", "\ud83d\ude00 pair written as two code points", "é ✓"]


@pytest.mark.parametrize("text", SURROGATES)
def test_the_cache_keeps_any_text_exactly(tmp_path: Path, text: str) -> None:
    from t2s.llm import Completion

    cache = CompletionCache(tmp_path / "c.sqlite")
    key = CompletionCache.key("m", [{"role": "user", "content": text}], ChatParams())
    cache.put(key, Completion(text, "m", 1, 2, 0.1, False, 1))
    assert cache.get(key) == (text, "m", 1, 2)
    cache.close()


@pytest.fixture
def fake() -> FakeOpenAI:
    server = FakeOpenAI()
    yield server
    server.close()


def test_a_model_answer_with_a_lone_surrogate_is_cached_and_sendable_back(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.script = [Reply(content="SELECT '\ud800'")]  # sent as the JSON escape "\ud800", as a server would
    client = client_for_test(tmp_path, fake.url, cache=CompletionCache(tmp_path / "c.sqlite"))
    first = client.complete([{"role": "user", "content": "q"}], ChatParams())
    again = client.complete([{"role": "user", "content": "q"}], ChatParams())
    assert first.text == again.text == "SELECT '\ud800'" and again.cached
    # a repair turn echoes the answer to the model: the request body must still be valid UTF-8 JSON
    echo = client.complete([{"role": "user", "content": "q"}, {"role": "assistant", "content": first.text},
                            {"role": "user", "content": "fix \udfff it"}], ChatParams())
    assert echo.text and fake.requests[-1]["json"]["messages"][1]["content"] == "SELECT '\ufffd'"


def test_json_safe_text_mends_only_lone_surrogates() -> None:
    assert json_safe_text("abc é") == "abc é"
    assert json_safe_text("a\ud800b") == "a\ufffdb"
    assert json_safe_text("\ud83d\ude00") == "😀"


# --- voting ---------------------------------------------------------------------------------------------

ODD = [
    {"a": 1, "b": [1, 2, {"c": None}]}, [1, "x", [2.5, None]], b"\x00\xff", bytearray(b"ab"), memoryview(b"cd"),
    float("nan"), Decimal("NaN"), Decimal("sNaN"), Decimal("1.50"), float("inf"), dt.datetime(2024, 1, 2, 3, 4),
    dt.date(2024, 1, 2), dt.timedelta(seconds=5), {1, 2}, frozenset({"x"}), ("t", 1), {"k": {"a"}},
]


@pytest.mark.parametrize("value", ODD, ids=[type(v).__name__ + str(i) for i, v in enumerate(ODD)])
def test_voting_compares_any_value(value: Any) -> None:
    rows = [(value, 1), ("z", value)]
    assert same_result(rows, list(reversed(rows)))
    assert same_result(rows, [(1, value), (value, "z")])  # a column permutation
    assert not same_result(rows, [(value, 2), ("z", value)])
    groups, sizes, winner = vote([rows, [("other", 1), ("z", 2)], rows])
    assert groups == [0, 1, 0] and sizes == [2, 1] and winner == 0


def test_equal_json_values_vote_together_whatever_their_key_order_and_number_form() -> None:
    a = [({"x": 1, "y": [1.0, 2]},)]
    b = [({"y": [1, 2.0000000000001], "x": True},)]
    assert same_result(a, b)
    assert not same_result(a, [({"x": 1, "y": [2, 1]},)])  # a list's order matters
    assert canonical_value(float("nan")) == canonical_value(Decimal("NaN"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary() | st.decimals(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(a=st.lists(st.tuples(json_values, json_values), max_size=4),
       b=st.lists(st.tuples(json_values, json_values), max_size=4))
def test_voting_never_raises_and_a_result_matches_itself(a: list[tuple[Any, Any]], b: list[tuple[Any, Any]]) -> None:
    assert same_result(a, list(a))
    same_result(a, b)
    vote([a, b, None, a])


def test_deep_values_compare_without_recursion_errors() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    assert same_result([(deep,)], [(deep,)])


# --- result caps inside every engine --------------------------------------------------------------------

LIMITS = EngineLimits(max_cell_chars=1000, max_result_bytes=20_000)
BIG_TEXT = {"sqlite": "SELECT printf('%.*c', 200000, 'x') AS big",
            "duckdb": "SELECT repeat('x', 200000) AS big",
            "postgres": "SELECT repeat('x', 200000) AS big"}
MANY_ROWS = {"sqlite": "SELECT a.tag || b.tag FROM nums a, nums b",
             "duckdb": "SELECT a.tag || b.tag FROM nums a, nums b",
             "postgres": "SELECT a.tag || b.tag FROM nums a, nums b"}
BIG_LIST = {"duckdb": "SELECT range(100000) AS big", "postgres": "SELECT array_agg(id) AS big FROM nums"}


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory, shop_db: Path, request: pytest.FixtureRequest
           ) -> dict[str, Target]:
    folder = tmp_path_factory.mktemp("caps")
    out: dict[str, Target] = {"sqlite": SqliteTarget(shop_db, limits=LIMITS),
                              "duckdb": DuckdbTarget(shop_to_duckdb(shop_db, folder / "shop.duckdb"), limits=LIMITS)}
    try:
        admin = request.getfixturevalue("postgres_dsn")
    except pytest.skip.Exception:
        return out
    shop_to_postgres(admin, shop_db)
    out["postgres"] = PostgresTarget(reader_dsn(admin, ("shop",)), schema="shop", limits=LIMITS)
    return out


def _engines() -> list[Any]:
    return [pytest.param(e, marks=[pytest.mark.postgres] if e == "postgres" else []) for e in BIG_TEXT]


@pytest.mark.parametrize("engine", _engines())
def test_a_huge_value_is_cut_inside_the_engine_fetch_and_flagged(capped: dict[str, Target], engine: str) -> None:
    if engine not in capped:
        pytest.skip("PostgreSQL not available")
    result = capped[engine].execute(BIG_TEXT[engine], timeout_s=10, max_rows=10)
    assert result.rows == [("x" * 1000,)] and result.cells_clipped == 1 and not result.truncated


@pytest.mark.parametrize("engine", _engines())
def test_rows_stop_at_the_result_size_cap(capped: dict[str, Target], engine: str) -> None:
    if engine not in capped:
        pytest.skip("PostgreSQL not available")
    result = capped[engine].execute(MANY_ROWS[engine], timeout_s=10, max_rows=1_000_000)
    assert result.truncated and 0 < len(result.rows) < 3000 * 3000
    assert sum(len(r[0]) for r in result.rows) <= 20_000


@pytest.mark.parametrize("engine", [pytest.param("duckdb"), pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_huge_list_value_becomes_bounded_text(capped: dict[str, Target], engine: str) -> None:
    if engine not in capped:
        pytest.skip("PostgreSQL not available")
    result = capped[engine].execute(BIG_LIST[engine], timeout_s=10, max_rows=10)
    (value,), = result.rows
    assert result.cells_clipped == 1 and isinstance(value, str) and len(value) <= 1000


def test_nan_and_infinities_become_json_text() -> None:
    from serving.service import jsonable

    assert [jsonable(v) for v in (math.nan, math.inf, -math.inf, 1.5, "a\ud800", b"\x01")] == [
        "nan", "inf", "-inf", 1.5, "a\ufffd", "01"]
