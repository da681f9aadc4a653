"""Tests of data: the bundled golden set is valid, deterministic and self-consistent."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from evals.predictions import gold_as_predictions, load_predictions
from evals.scoring import ScoreConfig, score_dataset
from evals.validation import validate_dataset
from pipelines.build_bank import build_bank_database
from t2s.datasets import CATEGORIES, DIFFICULTIES, load_dataset
from t2s.fileio import file_md5
from tests.conftest import ROOT

pytestmark = pytest.mark.data
BANK = ROOT / "datasets" / "bank"


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bank dataset with its database built fresh by the generator (as the DVC stage does)."""
    root = tmp_path_factory.mktemp("bank") / "bank"
    root.mkdir()
    for name in ("dataset.yaml", "questions.jsonl"):
        (root / name).write_text((BANK / name).read_text())
    (root / "examples").mkdir()
    (root / "examples" / "predictions.jsonl").write_text((BANK / "examples" / "predictions.jsonl").read_text())
    build_bank_database(root / "bank.sqlite")
    return root


def test_generator_is_deterministic(bank: Path, tmp_path: Path) -> None:
    again = build_bank_database(tmp_path / "again.sqlite")
    assert file_md5(again) == file_md5(bank / "bank.sqlite")


def test_generator_leaves_no_partial_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "sub" / "bank.sqlite"
    target.parent.parent.mkdir()
    (target.parent).write_text("a file where a directory should be")
    with pytest.raises(OSError):
        build_bank_database(target)
    assert [p.name for p in target.parent.parent.iterdir()] == ["sub"]


def test_golden_set_validates_without_errors_or_warnings(bank: Path) -> None:
    report = validate_dataset(bank, timeout_s=10)
    assert report.ok, [i.model_dump() for i in report.issues if i.severity == "error"]
    assert report.warnings == 0, [i.message for i in report.issues]


def test_spread_over_difficulties_and_categories(bank: Path) -> None:
    ds = load_dataset(bank)
    assert len(ds) >= 80
    diff = Counter(ex.difficulty for ex in ds)
    cat = Counter(ex.category for ex in ds)
    assert set(diff) == set(DIFFICULTIES) and min(diff.values()) >= 10
    assert set(cat) == set(CATEGORIES) and min(cat.values()) >= 6
    assert any(ex.dialect == "tsql" for ex in ds)


def test_every_gold_matches_itself(bank: Path) -> None:
    ds = load_dataset(bank)
    verdicts = score_dataset(ds, gold_as_predictions(ds), ScoreConfig(exact_match=True))
    assert all(v.match for v in verdicts), [v for v in verdicts if not v.match][:3]
    assert all(v.exact_match for v in verdicts)


def test_example_predictions_exercise_every_error_class(bank: Path) -> None:
    ds = load_dataset(bank)
    preds = load_predictions(bank / "examples" / "predictions.jsonl", ds)
    verdicts = score_dataset(ds, preds, ScoreConfig(timeout_s=2, exact_match=False))
    classes = Counter(v.error_class for v in verdicts)
    for cls in ("parse_error", "refused", "unknown_column", "timeout", "wrong_result", "empty_result"):
        assert classes[cls] >= 1, cls
    assert 0.5 < classes[None] / len(ds) < 0.8


def test_card_counts_match_the_questions() -> None:
    card = (BANK / "README.md").read_text()
    rows = [json.loads(line) for line in (BANK / "questions.jsonl").read_text().splitlines()]
    assert f"{len(rows)}" in card
