"""The request store's group commit: concurrent records share transactions, none is lost, errors stay per row."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from serving.store import QueryRecord, Store, queries


def _rec(qid: str) -> QueryRecord:
    return QueryRecord(query_id=qid, ts=datetime.now(UTC), user_hash=None, user_id=None, random_assignment=True,
                       experiment="e", variant="champion", prompt_version="1", model_version="1", model="m",
                       database="bank", question="q", sql="SELECT 1", outcome="ok", detail=None,
                       latency_ms=1.0, rows_returned=1)


def test_concurrent_records_are_all_committed_and_a_bad_row_fails_only_its_caller(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    store.record(_rec("dup"))
    errors: dict[str, BaseException] = {}
    barrier = threading.Barrier(40)

    def one(qid: str) -> None:
        barrier.wait()
        try:
            store.record(_rec(qid))
        except Exception as exc:
            errors[qid] = exc

    ids = [f"q{i}" for i in range(39)] + ["dup"]  # "dup" violates the primary key
    threads = [threading.Thread(target=one, args=(q,)) for q in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(errors) == {"dup"}
    with store.engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(queries)).scalar()
    assert count == 40  # 39 new rows + the first "dup"
    store.close()


def test_an_unwritable_store_raises_for_the_caller(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE feedback")
        conn.exec_driver_sql("DROP TABLE queries")
    with pytest.raises(sa.exc.OperationalError):
        store.record(_rec("x"))
    store.close()
