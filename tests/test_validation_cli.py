"""Dataset validation (great-expectations + SQL checks) and the score/validate commands end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from evals.validation import validate_dataset
from t2s.datasets import DatasetManifest, GoldExample, write_dataset

runner = CliRunner()

ROWS = [
    ("ok-1", "SELECT COUNT(*) FROM customers", "sqlite", "easy", "aggregate"),
    ("bad-parse", "SELEKT name FROM customers", "sqlite", "easy", "filter"),
    ("bad-column", "SELECT surname FROM customers", "sqlite", "easy", "filter"),
    ("bad-table", "SELECT name FROM clients", "sqlite", "easy", "filter"),
    ("empty", "SELECT name FROM customers WHERE city = 'Rome'", "sqlite", "easy", "filter"),
    ("ties", "SELECT name FROM customers ORDER BY age DESC LIMIT 1", "sqlite", "medium", "order_limit"),
    ("no-order", "SELECT name FROM customers LIMIT 2", "sqlite", "easy", "order_limit"),
    ("random", "SELECT name FROM customers ORDER BY RANDOM() LIMIT 1", "sqlite", "easy", "order_limit"),
    ("slow", "SELECT COUNT(*) FROM nums a, nums b, nums c", "sqlite", "extra", "join"),
    ("tsql-ok", "SELECT TOP 2 name FROM customers ORDER BY id", "tsql", "easy", "order_limit"),
    ("writes", "DELETE FROM customers", "sqlite", "easy", "filter"),
]


@pytest.fixture
def messy_dataset(tmp_path: Path, shop_db: Path) -> Path:
    root = tmp_path / "messy"
    root.mkdir()
    shutil.copy(shop_db, root / "shop.sqlite")
    examples = [GoldExample(id=i, question=f"question {i}", gold_sql=s, dialect=d, db_id="shop", difficulty=df,
                            category=c) for i, s, d, df, c in ROWS]
    write_dataset(root, DatasetManifest(name="messy", databases={"shop": "shop.sqlite"}), examples)
    with open(root / "questions.jsonl", "a") as fh:  # rows only the table checks can catch
        fh.write(json.dumps({"id": "ok-1", "question": "dup id", "gold_sql": "SELECT 1", "db_id": "shop",
                             "difficulty": "easy", "category": "filter"}) + "\n")
        fh.write(json.dumps({"id": "odd", "question": "bad values", "gold_sql": "SELECT 1", "db_id": "shop",
                             "difficulty": "impossible", "category": "vibes"}) + "\n")
        fh.write(json.dumps({"id": "no-sql", "question": "missing gold", "db_id": "shop", "difficulty": "easy",
                             "category": "filter"}) + "\n")
        fh.write("{broken json\n")
    return root


def test_every_bad_row_is_reported_with_id_and_reason(messy_dataset: Path) -> None:
    report = validate_dataset(messy_dataset, timeout_s=0.5)
    found = {(i.id, i.check, i.severity) for i in report.issues}
    expected = {
        ("bad-parse", "gold_parses", "error"),
        ("bad-column", "references_schema", "error"),
        ("bad-table", "references_schema", "error"),
        ("slow", "gold_timeout", "error"),
        ("writes", "gold_parses", "error"),
        ("ok-1", "unique_id", "error"),
        ("odd", "difficulty", "error"),
        ("odd", "category", "error"),
        ("no-sql", "required:gold_sql", "error"),
        ("empty", "non_empty", "warning"),
        ("ties", "deterministic", "warning"),
        ("no-order", "deterministic", "warning"),
        ("random", "deterministic", "warning"),
    }
    assert expected <= found, expected - found
    assert not any(i.id == "tsql-ok" for i in report.issues)
    assert any(i.check == "json" and i.line == len(ROWS) + 4 for i in report.issues)
    assert not report.ok


def test_score_refuses_a_dataset_version_that_failed_validation(messy_dataset: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["datasets", "validate", str(messy_dataset), "--timeout", "0.5"])
    assert result.exit_code == 1
    assert "FAILED" in result.output
    # Repair the JSON so the dataset loads; the stored report is for the old version, so fix everything:
    questions = messy_dataset / "questions.jsonl"
    good = [ln for ln in questions.read_text().splitlines() if '"ok-1"' in ln and "dup id" not in ln]
    questions.write_text(good[0] + "\n" + json.dumps({"id": "x", "question": "bad row kept", "gold_sql":
                         "SELECT nope FROM customers", "db_id": "shop", "difficulty": "easy",
                         "category": "filter"}) + "\n")
    assert runner.invoke(app, ["datasets", "validate", str(messy_dataset)]).exit_code == 1
    preds = tmp_path / "p.sql"
    preds.write_text("SELECT 1\nSELECT 2\n")
    refused = runner.invoke(app, ["score", "-d", str(messy_dataset), "-p", str(preds)])
    assert refused.exit_code == 2
    assert "failed validation" in refused.output
    allowed = runner.invoke(app, ["score", "-d", str(messy_dataset), "-p", str(preds), "--allow-invalid"])
    assert allowed.exit_code == 0, allowed.output
    assert "gold_error" in allowed.output


def test_score_command_prints_metrics_and_writes_verdicts(tmp_path: Path, shop_db: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    shutil.copy(shop_db, root / "shop.sqlite")
    examples = [GoldExample(id="a", question="How many customers?", gold_sql="SELECT COUNT(*) FROM customers",
                            db_id="shop", difficulty="easy", category="aggregate"),
                GoldExample(id="b", question="Who lives in Nice?", gold_sql="SELECT name FROM customers WHERE "
                            "city = 'Nice'", db_id="shop", difficulty="medium", category="filter")]
    write_dataset(root, DatasetManifest(name="ds", databases={"shop": "shop.sqlite"}), examples)
    preds = tmp_path / "p.jsonl"
    preds.write_text('{"id": "a", "sql": "SELECT COUNT(id) FROM customers"}\n{"id": "b", "sql": "DROP TABLE x"}\n')
    out, metrics = tmp_path / "out" / "items.jsonl", tmp_path / "out" / "metrics.json"
    result = runner.invoke(app, ["score", "-d", str(root), "-p", str(preds), "-o", str(out),
                                 "--metrics-out", str(metrics), "--rules", "spider"])
    assert result.exit_code == 0, result.output
    assert "50.0%" in result.output and "refused" in result.output
    items = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert [(i["id"], i["match"], i["error_class"]) for i in items] == [("a", True, None), ("b", False, "refused")]
    assert json.loads(metrics.read_text())["execution_accuracy"] == 0.5
    assert not list(out.parent.glob(".*.tmp"))


@pytest.mark.parametrize(("args", "message"), [
    (["--rules", "fuzzy"], "unknown rule set"),
    (["-d", "/nonexistent"], "dataset.yaml"),
    (["--gold-as-predictions"], "exactly one of"),
])
def test_score_bad_flags_are_clear_errors(tmp_path: Path, args: list[str], message: str) -> None:
    preds = tmp_path / "p.sql"
    preds.write_text("SELECT 1\n")
    base = ["score", "-d", str(tmp_path), "-p", str(preds)]
    result = runner.invoke(app, [*base, *args])
    assert result.exit_code == 2
    assert message in result.output
