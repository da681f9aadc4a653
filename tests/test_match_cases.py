"""Data-driven verdicts: tests/data/match_cases.sql, each pair judged under every rule set."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.compare import RULES
from evals.execution import execution_match
from t2s.execution import SqliteTarget

CASES_FILE = Path(__file__).parent / "data" / "match_cases.sql"


def _cases() -> list[tuple[str, dict[str, str], str, str]]:
    cases = []
    blocks = [b for b in CASES_FILE.read_text().split("\n\n") if b.strip()]
    for block in blocks[1:]:
        lines = [ln.strip() for ln in block.strip().splitlines()]
        title = lines[0].removeprefix("-- ").strip()
        expect = dict(part.split("=") for part in lines[1].removeprefix("-- ").split())
        assert len(lines) == 4, f"case {title!r} must have title, expectations, gold and prediction"
        cases.append((title, expect, lines[2], lines[3]))
    return cases


CASES = _cases()


@pytest.mark.parametrize("rules", sorted(RULES))
@pytest.mark.parametrize(("title", "expect", "gold", "pred"), CASES, ids=[c[0] for c in CASES])
def test_case(shop_db: Path, title: str, expect: dict[str, str], gold: str, pred: str, rules: str) -> None:
    gold_dialect = "tsql" if "T-SQL" in title else "sqlite"
    out = execution_match(gold, pred, SqliteTarget(shop_db), rules=RULES[rules], gold_dialect=gold_dialect,
                          timeout_s=5)
    got = "match" if out.match else out.error_class
    assert got == expect[rules], out.detail


def test_case_file_covers_every_rule_set() -> None:
    assert len(CASES) >= 20
    for title, expect, *_ in CASES:
        assert set(expect) == set(RULES), title
