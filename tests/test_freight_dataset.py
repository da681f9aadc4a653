"""Tests of data: the held-out freight set is valid, deterministic, spread out, and its training split never
overlaps the evaluation questions."""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from evals.validation import validate_dataset
from pipelines.build_freight import build_freight_database
from pipelines.eval_config import select_items
from t2s.datasets import CATEGORIES, DIFFICULTIES, GoldExample, iter_examples
from t2s.fileio import file_md5
from t2s.guard import guard_select
from tests.conftest import ROOT
from tests.test_bank_train_split import MAX_JACCARD, _jaccard, _normalize, _same_answer, _tokens, _value

pytestmark = pytest.mark.data

FREIGHT = ROOT / "datasets" / "freight"
EVAL = [ex for _, ex in iter_examples(FREIGHT / "questions.jsonl")]
TRAIN = [ex for _, ex in iter_examples(FREIGHT / "train.jsonl")]

Rows = list[tuple[Any, ...]]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The freight database built fresh by the generator (as the DVC stage does)."""
    return build_freight_database(tmp_path_factory.mktemp("freight") / "freight.sqlite")


def _run(con: sqlite3.Connection, sql: str, reverse: bool) -> tuple[int, Rows]:
    con.execute(f"PRAGMA reverse_unordered_selects = {'ON' if reverse else 'OFF'}")
    cur = con.execute(sql)
    return len(cur.description), cur.fetchall()


@pytest.fixture(scope="module")
def results(db: Path) -> dict[str, tuple[int, Rows, Rows]]:
    """Column count, rows, and rows under ``reverse_unordered_selects`` of every eval and train gold."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {ex.id: (*_run(con, ex.gold_sql, False), _run(con, ex.gold_sql, True)[1]) for ex in [*EVAL, *TRAIN]}
    finally:
        con.close()


def _normalized(rows: Rows) -> Rows:
    return [tuple(_value(v) for v in row) for row in rows]


def _as_dataset(root: Path, db: Path, questions: Path) -> Path:
    root.mkdir()
    shutil.copy(FREIGHT / "dataset.yaml", root / "dataset.yaml")
    shutil.copy(questions, root / "questions.jsonl")
    shutil.copy(db, root / "freight.sqlite")
    return root


def test_files_are_well_formed() -> None:
    for examples, prefix in ((EVAL, "freight-"), (TRAIN, "freight-train-")):
        assert [ex.id for ex in examples] == [f"{prefix}{i:03d}" for i in range(1, len(examples) + 1)]
        assert {ex.dialect for ex in examples} == {"sqlite"}
        assert {ex.db_id for ex in examples} == {"freight"}
        assert {ex.category for ex in examples} == set(CATEGORIES)
        assert {ex.difficulty for ex in examples} == set(DIFFICULTIES)
    assert len(EVAL) == 40 and len(TRAIN) == 24


def test_generator_is_deterministic_and_consistent(db: Path, tmp_path: Path) -> None:
    again = build_freight_database(tmp_path / "again.sqlite")
    assert file_md5(again) == file_md5(db)
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        # the edge cases questions rely on
        assert con.execute("SELECT COUNT(*) FROM Depot WHERE DepotId NOT IN (SELECT OriginDepotId FROM Shipment) "
                           "AND DepotId NOT IN (SELECT DestDepotId FROM Shipment)").fetchone()[0] == 1
        assert con.execute("SELECT COUNT(*) FROM Customer WHERE CustomerId NOT IN "
                           "(SELECT CustomerId FROM Shipment)").fetchone()[0] > 0
        assert con.execute("SELECT COUNT(*) FROM Shipment WHERE StatusCode = 'HLD'").fetchone()[0] == 0
        # the current status is the latest scan; a delivery date exactly when that scan is 'Delivered'
        assert con.execute(
            "SELECT COUNT(*) FROM Shipment AS s WHERE s.StatusCode <> (SELECT e.StatusCode FROM DeliveryEvent AS e "
            "WHERE e.ShipmentId = s.ShipmentId ORDER BY e.EventTime DESC, e.EventId DESC LIMIT 1) "
            "OR (s.DeliveredDate IS NULL) <> (s.StatusCode <> 'DEL')").fetchone()[0] == 0
    finally:
        con.close()


@pytest.mark.parametrize("split", ["questions.jsonl", "train.jsonl"])
def test_golds_validate_without_errors_or_warnings(db: Path, tmp_path: Path, split: str) -> None:
    """Parses, runs, non-empty, no LIMIT without ORDER BY, no tie at an ORDER BY … LIMIT cut."""
    report = validate_dataset(_as_dataset(tmp_path / "freight", db, FREIGHT / split), timeout_s=10)
    assert report.ok, [i.model_dump() for i in report.issues if i.severity == "error"]
    assert report.warnings == 0, [i.message for i in report.issues]


def test_every_gold_passes_the_guard_and_returns_rows(results: dict[str, tuple[int, Rows, Rows]]) -> None:
    for ex in [*EVAL, *TRAIN]:
        guard_select(ex.gold_sql, ex.dialect)
    assert [ex.id for ex in [*EVAL, *TRAIN] if not results[ex.id][1]] == []


def _ordered(ex: GoldExample) -> bool:
    return guard_select(ex.gold_sql, ex.dialect).args.get("order") is not None


def test_results_do_not_depend_on_scan_order(results: dict[str, tuple[int, Rows, Rows]]) -> None:
    """Same rows with ``reverse_unordered_selects``: as a list under an outer ORDER BY, else as a multiset."""
    def differs(ex: GoldExample) -> bool:
        _, rows, reversed_rows = results[ex.id]
        return rows != reversed_rows if _ordered(ex) else Counter(rows) != Counter(reversed_rows)

    assert [ex.id for ex in [*EVAL, *TRAIN] if differs(ex)] == []


def test_float_outputs_are_rounded(results: dict[str, tuple[int, Rows, Rows]]) -> None:
    """No output value has more than 2 decimals (averages and percentages go through ROUND)."""
    def unrounded(ex: GoldExample) -> list[float]:
        return [v for row in results[ex.id][1] for v in row if isinstance(v, float) and round(v, 2) != v]

    assert {ex.id: u[:3] for ex in [*EVAL, *TRAIN] if (u := unrounded(ex))} == {}


def test_spread_subsets_keep_every_difficulty() -> None:
    for n in range(10, len(EVAL)):
        assert {ex.difficulty for ex in select_items(EVAL, n, "spread")} == set(DIFFICULTIES), n
    fifteen = select_items(EVAL, 15, "spread")
    assert {ex.category for ex in fifteen} == set(CATEGORIES)


def test_no_id_or_question_overlap_with_eval() -> None:
    assert not {ex.id for ex in TRAIN} & {ex.id for ex in EVAL}
    eval_norm = {_normalize(ex.question) for ex in EVAL}
    assert [ex.id for ex in TRAIN if _normalize(ex.question) in eval_norm] == []
    close = [(t.id, e.id, round(_jaccard(_tokens(t.question), _tokens(e.question)), 3))
             for t in TRAIN for e in EVAL if _jaccard(_tokens(t.question), _tokens(e.question)) >= MAX_JACCARD]
    assert close == []


def test_train_results_differ_from_every_eval_result(results: dict[str, tuple[int, Rows, Rows]]) -> None:
    def collisions(t: GoldExample) -> list[str]:
        ncols, rows = results[t.id][0], _normalized(results[t.id][1])
        return [e.id for e in EVAL if results[e.id][0] == ncols and _same_answer(rows, _normalized(results[e.id][1]))]

    assert {t.id: c for t in TRAIN if (c := collisions(t))} == {}


def test_card_counts_match_the_files() -> None:
    card = (FREIGHT / "README.md").read_text()
    for examples in (EVAL, TRAIN):
        counts = Counter((ex.category, ex.difficulty) for ex in examples)
        for cat in CATEGORIES:
            cells = [counts[(cat, d)] for d in DIFFICULTIES]
            row = f"| {cat} | " + " | ".join(map(str, cells)) + f" | {sum(cells)} |"
            assert row in card, row
        totals = [sum(counts[(c, d)] for c in CATEGORIES) for d in DIFFICULTIES]
        assert re.search(r"\| \*\*total\*\* \| " + r" \| ".join(rf"\*\*{n}\*\*" for n in totals), card)
