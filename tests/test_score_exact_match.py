"""`t2s score` computes the normalized exact match only when asked, and never reports a skipped one as 0%."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from evals.metrics import ItemVerdict, summarize
from t2s.datasets import DatasetManifest, GoldExample, write_dataset

runner = CliRunner()


def _dataset(tmp_path: Path, shop_db: Path) -> tuple[Path, Path]:
    root = tmp_path / "ds"
    root.mkdir()
    shutil.copy(shop_db, root / "shop.sqlite")
    examples = [GoldExample(id="a", question="Names in Lyon?", gold_sql="SELECT name FROM customers WHERE city = 'Lyon'",
                            db_id="shop", difficulty="easy", category="filter"),
                GoldExample(id="b", question="How many orders?", gold_sql="SELECT COUNT(*) FROM orders",
                            db_id="shop", difficulty="easy", category="aggregate")]
    write_dataset(root, DatasetManifest(name="ds", databases={"shop": "shop.sqlite"}), examples)
    preds = tmp_path / "p.jsonl"
    # a: same query with an alias (one canonical form); b: same answer, another query (not exact)
    preds.write_text('{"id": "a", "sql": "SELECT c.name FROM customers AS c WHERE c.city = \'Lyon\'"}\n'
                     '{"id": "b", "sql": "SELECT COUNT(id) FROM orders WHERE id > 0"}\n')
    return root, preds


def _run(tmp_path: Path, root: Path, preds: Path, *extra: str) -> tuple[str, list[dict], dict]:
    out, metrics = tmp_path / f"items{len(extra)}.jsonl", tmp_path / f"metrics{len(extra)}.json"
    result = runner.invoke(app, ["score", "-d", str(root), "-p", str(preds), "-o", str(out),
                                 "--metrics-out", str(metrics), "--no-cache", *extra], terminal_width=200)
    assert result.exit_code == 0, result.output
    items = [json.loads(ln) for ln in out.read_text().splitlines()]
    return result.output, items, json.loads(metrics.read_text())


def test_default_score_skips_exact_match_and_says_so(tmp_path: Path, shop_db: Path) -> None:
    root, preds = _dataset(tmp_path, shop_db)
    output, items, metrics = _run(tmp_path, root, preds)
    assert [i["match"] for i in items] == [True, True]
    assert [i["exact_match"] for i in items] == [None, None]
    assert "exact_match" not in metrics and metrics["execution_accuracy"] == 1.0
    assert "not computed" in output


def test_exact_match_flag_computes_it(tmp_path: Path, shop_db: Path) -> None:
    root, preds = _dataset(tmp_path, shop_db)
    output, items, metrics = _run(tmp_path, root, preds, "--exact-match")
    assert [i["exact_match"] for i in items] == [True, False]
    assert metrics["exact_match"] == 0.5
    assert "50.0%" in output and "not computed" not in output


def test_summary_is_none_when_any_verdict_skipped_it() -> None:
    def verdict(i: str, exact: bool | None) -> ItemVerdict:
        return ItemVerdict(id=i, db_id="d", difficulty="easy", category="c", match=True, error_class=None,
                           exact_match=exact, valid_sql=True)

    assert summarize([verdict("a", True), verdict("b", None)]).exact_match is None
    assert summarize([verdict("a", True), verdict("b", False)]).exact_match == 0.5
