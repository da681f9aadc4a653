"""The multi-turn golden set (``datasets/bank-followups``) and how a follow-up reaches the prompt.

Data: every gold and every earlier turn's SQL runs on a freshly built bank database, returns rows, gives the
same rows under ``PRAGMA reverse_unordered_selects``, and each follow-up's answer differs from the answer
before it (so ignoring the conversation cannot pass). Prompt: a version with ``{{conversation}}`` shows the
earlier turns; one without it renders exactly as before.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from pipelines.build_bank import build_bank_database
from t2s.datasets import load_dataset
from t2s.execution import SqliteTarget
from t2s.generator import SqlGenerator
from t2s.prompts import PromptLibrary
from tests.web_support import FOLLOW_UPS, NO_CONTEXT_SQL

ROOT = Path(__file__).resolve().parents[1]
FOLLOWUPS = ROOT / "datasets" / "bank-followups"


@pytest.fixture(scope="module")
def bank_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bank_database(tmp_path_factory.mktemp("bank-followups") / "bank.sqlite")


def _rows(conn: sqlite3.Connection, sql: str) -> list[tuple[object, ...]]:
    rows = conn.execute(sql).fetchall()
    return rows if "ORDER BY" in sql.upper() else sorted(rows, key=repr)


@pytest.mark.data
def test_every_turn_runs_is_deterministic_and_each_follow_up_changes_the_answer(bank_db: Path) -> None:
    ds = load_dataset(FOLLOWUPS)
    assert len(ds) >= 15 and all(ex.context for ex in ds) and len({ex.id for ex in ds}) == len(ds)
    assert ds.manifest.databases["bank"].path == "../bank/bank.sqlite"
    conn = sqlite3.connect(bank_db)
    for ex in ds:
        gold = _rows(conn, ex.gold_sql)
        assert gold, ex.id
        conn.execute("PRAGMA reverse_unordered_selects = ON")
        assert _rows(conn, ex.gold_sql) == gold, f"{ex.id}: depends on scan order"
        conn.execute("PRAGMA reverse_unordered_selects = OFF")
        for turn in ex.context:
            assert turn.sql and _rows(conn, turn.sql), f"{ex.id}: an earlier turn returns nothing"
        assert gold != _rows(conn, ex.context[-1].sql or ""), f"{ex.id}: same answer as the turn before"
    follow_ups = {ex.id.rsplit("-", 1)[0]: ex for ex in ds}  # the last turn of each conversation
    for ex in follow_ups.values():  # a later turn's context is the earlier turn's context plus that turn
        earlier = ds.by_id.get(f"{ex.id.rsplit('-', 1)[0]}-{len(ex.context)}")
        if earlier is not None:
            assert ex.context[:-1] == earlier.context and ex.context[-1].question == earlier.question


def test_the_conversation_reaches_versions_that_declare_it_and_no_other(bank_db: Path) -> None:
    library = PromptLibrary(ROOT / "prompts")
    v8, v11 = (library.get("sql-analyst", v).spec for v in (8, 11))
    ex = load_dataset(FOLLOWUPS).examples[0]
    target = SqliteTarget(bank_db)
    try:
        with_context = SqlGenerator(v11, llm=None).messages(ex.question, target, context=ex.context)
        text = with_context[-1]["content"]
        assert f"Question: {ex.context[0].question}" in text and (ex.context[0].sql or "") in text
        assert text.rstrip().endswith(f"Question: {ex.question}")
        first = SqlGenerator(v11, llm=None).messages(ex.context[0].question, target)[-1]["content"]
        assert "(none)" in first
        plain = SqlGenerator(v8, llm=None)
        assert plain.messages(ex.question, target, context=ex.context) == plain.messages(ex.question, target)
    finally:
        target.close()


def test_the_promoted_bundle_takes_the_conversation_too(web_registry: dict[str, Any], monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    """``models:/t2s-generator@champion`` answers a follow-up from the ``context`` column, like serving."""
    import mlflow
    import pandas as pd

    from t2s.bundle import load_bundle
    from t2s.settings import get_settings

    monkeypatch.setenv("T2S_LLM_API_KEY", "test-key")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", web_registry["tracking_uri"])
    get_settings.cache_clear()
    mlflow.set_tracking_uri(web_registry["tracking_uri"])
    (follow_up, first), sql = next(iter(FOLLOW_UPS.items()))
    conversation = json.dumps([{"question": first, "sql": "SELECT 1"}])
    out = load_bundle("models:/t2s-generator@champion").predict(pd.DataFrame([
        {"question": follow_up, "db_id": "shop", "context": conversation},
        {"question": follow_up, "db_id": "shop", "context": None}]))
    assert list(out["sql"]) == [sql, NO_CONTEXT_SQL]
    with pytest.raises(Exception, match="context"):
        load_bundle("models:/t2s-generator@champion").predict(pd.DataFrame([
            {"question": follow_up, "db_id": "shop", "context": '[{"sql": "no question"}]'}]))
