"""Tests of data: the bank training split (few-shot examples) never overlaps the evaluation questions."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from pipelines.build_bank import build_bank_database
from t2s.datasets import CATEGORIES, GoldExample, iter_examples
from t2s.execution import SqliteTarget
from t2s.guard import guard_select, to_dialect
from tests.conftest import ROOT

pytestmark = pytest.mark.data

BANK = ROOT / "datasets" / "bank"
TRAIN = [ex for _, ex in iter_examples(BANK / "train.jsonl")]
EVAL = [ex for _, ex in iter_examples(BANK / "questions.jsonl")]
MAX_JACCARD = 0.6

Rows = list[tuple[Any, ...]]


def _normalize(question: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", "", question.lower()).split())


def _tokens(question: str) -> set[str]:
    return set(_normalize(question).split())


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b)


def _value(v: Any) -> Any:
    """Numbers compare by value (SQLite returns 19 or 19.0 for the same NUMERIC amount)."""
    return round(float(v), 6) if isinstance(v, int | float) and not isinstance(v, bool) else v


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, Rows]]:
    """Column count and normalized rows of every train and eval gold, on a freshly built database."""
    db = build_bank_database(tmp_path_factory.mktemp("bank-train") / "bank.sqlite")
    target = SqliteTarget(db)
    out: dict[str, tuple[int, Rows]] = {}
    try:
        for ex in [*TRAIN, *EVAL]:
            tree = guard_select(ex.gold_sql, ex.dialect)
            sql = to_dialect(tree, ex.gold_sql, ex.dialect, "sqlite")
            res = target.execute(sql, timeout_s=10, max_rows=100_000)
            assert not res.truncated, ex.id
            out[ex.id] = (len(res.columns), [tuple(_value(v) for v in row) for row in res.rows])
    finally:
        target.close()
    return out


def test_train_split_is_well_formed() -> None:
    assert len(TRAIN) >= 50
    ids = [ex.id for ex in TRAIN]
    assert len(set(ids)) == len(ids)
    assert all(ex.id.startswith("bank-train-") for ex in TRAIN)
    assert {ex.dialect for ex in TRAIN} == {"sqlite"}
    assert {ex.db_id for ex in TRAIN} == {"bank"}
    assert {ex.category for ex in TRAIN} == set(CATEGORIES)


def test_no_id_collisions_with_eval() -> None:
    assert not {ex.id for ex in TRAIN} & {ex.id for ex in EVAL}


def test_no_duplicate_or_near_duplicate_questions() -> None:
    eval_norm = {_normalize(ex.question): ex.id for ex in EVAL}
    assert [ex.id for ex in TRAIN if _normalize(ex.question) in eval_norm] == []
    train_norm = Counter(_normalize(ex.question) for ex in TRAIN)
    assert [q for q, n in train_norm.items() if n > 1] == []
    eval_tokens = [(ex.id, _tokens(ex.question)) for ex in EVAL]
    close = [(t.id, eid, round(_jaccard(_tokens(t.question), toks), 3))
             for t in TRAIN for eid, toks in eval_tokens if _jaccard(_tokens(t.question), toks) >= MAX_JACCARD]
    assert close == []


def test_every_train_gold_runs_with_rows(results: dict[str, tuple[int, Rows]]) -> None:
    assert [ex.id for ex in TRAIN if not results[ex.id][1]] == []


def _same_answer(a: Rows, b: Rows) -> bool:
    return Counter(a) == Counter(b) or set(a) == set(b)


def test_train_results_differ_from_every_eval_result(results: dict[str, tuple[int, Rows]]) -> None:
    def collisions(t: GoldExample) -> list[str]:
        ncols, rows = results[t.id]
        return [e.id for e in EVAL if results[e.id][0] == ncols and _same_answer(rows, results[e.id][1])]

    assert {t.id: c for t in TRAIN if (c := collisions(t))} == {}

