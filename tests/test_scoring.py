"""Scoring a dataset: predictions files, gold cache, variants, metrics, bad input."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from evals.gold_cache import GoldCache
from evals.metrics import summarize
from evals.predictions import load_predictions
from evals.scoring import ScoreConfig, score_dataset
from t2s.datasets import DatasetManifest, GoldExample, load_dataset, write_dataset
from t2s.errors import DatasetError, PredictionsError

GOLD = [
    ("q1", "How many customers?", "SELECT COUNT(*) FROM customers", "easy", "aggregate"),
    ("q2", "Names in Paris", "SELECT name FROM customers WHERE city = 'Paris'", "easy", "filter"),
    ("q3", "Top spender", "SELECT TOP 1 c.name FROM customers c JOIN orders o ON o.customer_id = c.id "
     "GROUP BY c.name ORDER BY SUM(o.amount) DESC", "hard", "join"),
    ("q4", "Cities", "SELECT DISTINCT city FROM customers", "medium", "filter"),
]


@pytest.fixture
def dataset_dir(tmp_path: Path, shop_db: Path) -> Path:
    root = tmp_path / "shop"
    (root / "db").mkdir(parents=True)
    shutil.copy(shop_db, root / "db" / "shop.sqlite")
    examples = [GoldExample(id=i, question=q, gold_sql=s, dialect="tsql" if "TOP" in s else "sqlite",
                            db_id="shop", difficulty=d, category=c) for i, q, s, d, c in GOLD]
    write_dataset(root, DatasetManifest(name="shop", databases={"shop": "db/shop.sqlite"}), examples)
    return root


def _preds(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_line_format_ignores_text_after_tab_and_scores(dataset_dir: Path, tmp_path: Path) -> None:
    ds = load_dataset(dataset_dir)
    preds = load_predictions(_preds(tmp_path / "p.sql", [
        "SELECT count(1) FROM customers\tshop",
        "SELECT name FROM customers WHERE city = 'Lyon'",
        "SELECT name FROM customers",
        "SELECT city FROM customers GROUP BY city",
    ]), ds)
    verdicts = score_dataset(ds, preds, ScoreConfig(exact_match=True))
    assert [v.match for v in verdicts] == [True, False, False, True]
    assert verdicts[1].error_class == "wrong_result"
    m = summarize(verdicts)
    assert m.execution_accuracy == 0.5
    assert m.by_difficulty["easy"].correct == 1 and m.by_difficulty["medium"].correct == 1
    assert m.valid_sql_rate == 1.0


def test_jsonl_format_with_missing_ids(dataset_dir: Path, tmp_path: Path) -> None:
    ds = load_dataset(dataset_dir)
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "q2", "sql": "SELECT name FROM customers WHERE city = 'Paris'"}) + "\n")
    verdicts = score_dataset(ds, load_predictions(path, ds), ScoreConfig())
    assert [v.error_class for v in verdicts] == ["missing_prediction", None, "missing_prediction",
                                                 "missing_prediction"]
    assert summarize(verdicts).valid_sql_rate == 0.25


@pytest.mark.parametrize(("content", "message"), [
    ("SELECT 1\nSELECT 2\n", "2 lines but dataset"),
    ('{"id": "q1", "sql": "SELECT 1"}\n{"id": "zz", "sql": "SELECT 1"}\n', "id not in dataset"),
    ('{"id": "q1", "sql": "SELECT 1"}\n{"id": "q1", "sql": "SELECT 2"}\n', "duplicate id"),
    ('{"id": "q1", "sql": "SELECT 1"}\n{"id": "q2"\n', "not valid JSON"),
    ('{"id": "q1", "query": "SELECT 1"}\n', '"id" and "sql"'),
    ('{"id": "q1", "sql": 5}\n', "must be a string"),
])
def test_malformed_predictions_name_the_problem(dataset_dir: Path, tmp_path: Path, content: str,
                                                 message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(PredictionsError, match=message) as err:
        load_predictions(path, load_dataset(dataset_dir))
    assert str(path) in str(err.value)


def test_gold_results_are_cached_and_invalidated_by_a_changed_database(dataset_dir: Path, tmp_path: Path) -> None:
    ds = load_dataset(dataset_dir)
    preds = {ex.id: ex.gold_sql if ex.dialect == "sqlite" else None for ex in ds}
    cache = tmp_path / "gold.sqlite"
    config = ScoreConfig(cache_path=cache, exact_match=False)
    score_dataset(ds, preds, config)
    warm = GoldCache(cache)
    with sqlite3.connect(cache) as conn:
        assert conn.execute("SELECT COUNT(*) FROM gold").fetchone()[0] == 3
    # Same database: the cached gold is served, so a cache entry changed behind the scorer's back is used.
    keys = [r[0] for r in sqlite3.connect(cache).execute("SELECT key FROM gold")]
    assert all(warm.get(k) is not None for k in keys)
    # Changing the database changes its fingerprint: gold is recomputed against the new content.
    db = dataset_dir / "db" / "shop.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO customers VALUES (6, 'Fay', 'Paris', 50)")
    verdicts = score_dataset(load_dataset(dataset_dir), {"q1": "SELECT 6", "q2": None, "q3": None, "q4": None},
                             config)
    assert verdicts[0].match


def test_variants_catch_a_false_positive(dataset_dir: Path, tmp_path: Path) -> None:
    """A prediction that hard-codes the answer matches on one database but not on a variant."""
    db = dataset_dir / "db" / "shop.sqlite"
    variant = dataset_dir / "db" / "shop_v1.sqlite"
    shutil.copy(db, variant)
    with sqlite3.connect(variant) as conn:
        conn.execute("DELETE FROM orders WHERE id > 12")
        conn.execute("DELETE FROM customers WHERE id = 4")
    manifest = (dataset_dir / "dataset.yaml").read_text().replace("variants: []", "variants: [db/shop_v1.sqlite]")
    (dataset_dir / "dataset.yaml").write_text(manifest)
    ds = load_dataset(dataset_dir)
    assert len(ds.database_paths("shop")) == 2
    preds = {"q1": "SELECT 5", "q2": None, "q3": None, "q4": None}
    verdict = score_dataset(ds, preds, ScoreConfig())[0]
    assert not verdict.match and "variant" in verdict.detail


def test_parallel_and_serial_scoring_agree(dataset_dir: Path) -> None:
    ds = load_dataset(dataset_dir)
    preds = {"q1": "SELECT COUNT(*) FROM customers", "q2": "SELECT nam FROM customers", "q3": "DELETE FROM orders",
             "q4": "SELECT city FROM customers"}
    serial = score_dataset(ds, preds, ScoreConfig(), workers=1)
    parallel = score_dataset(ds, preds, ScoreConfig(), workers=2)
    assert [v.model_dump() for v in serial] == [v.model_dump() for v in parallel]
    assert [v.error_class for v in serial] == [None, "unknown_column", "refused", "wrong_result"]


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda t: t.replace('"difficulty":"easy"', '"difficulty":"trivial"', 1), "difficulty"),
    (lambda t: t.replace('"id":"q2"', '"id":"q1"', 1), "duplicate id"),
    (lambda t: t.replace('"db_id":"shop"', '"db_id":"nope"', 1), "db_id"),
    (lambda t: t + "{not json\n", "not valid JSON"),
    (lambda t: t.replace('"dialect":"sqlite"', '"dialect":"klingon"', 1), "unknown SQL dialect"),
])
def test_malformed_dataset_rows_name_line_and_field(dataset_dir: Path, mutate, message: str) -> None:
    q = dataset_dir / "questions.jsonl"
    q.write_text(mutate(q.read_text()))
    with pytest.raises(DatasetError, match=message) as err:
        load_dataset(dataset_dir)
    assert "questions.jsonl:" in str(err.value)
