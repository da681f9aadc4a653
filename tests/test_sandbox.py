"""The killable SQL workers: timeouts that fire inside one long call, crashes that cost only a worker."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from t2s.errors import SqlExecutionError, SqlTimeout
from t2s.execution import SqliteTarget
from t2s.sandbox import Sandbox


@pytest.fixture
def sandbox() -> Sandbox:
    box = Sandbox(max_workers=2, memory_mb=1024, grace_s=0.5)
    yield box
    box.close()


def _target(shop_db: Path, box: Sandbox) -> SqliteTarget:
    t = SqliteTarget(shop_db)
    t.sandbox = box
    return t


def test_one_long_function_call_is_stopped_by_killing_its_worker(shop_db: Path, sandbox: Sandbox) -> None:
    t = _target(shop_db, sandbox)
    t.execute("SELECT 1", timeout_s=30, max_rows=1)  # a worker is up: the bound below times the kill, not a start
    start = time.perf_counter()
    with pytest.raises(SqlTimeout, match="worker was stopped"):
        # SQLite's progress handler never runs inside printf: only the worker's death stops it.
        t.execute("SELECT printf('%.*c', 999999999, 'x')", timeout_s=0.5, max_rows=1)
    assert time.perf_counter() - start < 0.5 + 1.0
    assert sandbox.killed == 1
    assert t.execute("SELECT count(*) FROM customers", timeout_s=5, max_rows=1).rows == [(5,)]


def test_a_worker_that_dies_mid_query_is_an_error_not_a_crash(shop_db: Path, sandbox: Sandbox) -> None:
    t = _target(shop_db, sandbox)
    t.execute("SELECT 1", timeout_s=5, max_rows=1)  # starts a worker
    worker = sandbox._idle[-1]

    def kill_soon() -> None:
        time.sleep(0.3)
        os.kill(worker.proc.pid, signal.SIGABRT)

    threading.Thread(target=kill_soon).start()
    with pytest.raises(SqlExecutionError, match="SIGABRT"):
        t.execute("SELECT count(*) FROM nums a, nums b, nums c", timeout_s=5, max_rows=1)
    assert t.execute("SELECT count(*) FROM orders", timeout_s=5, max_rows=1).rows == [(6,)]


def test_threads_share_the_pool_and_all_get_answers(shop_db: Path, sandbox: Sandbox) -> None:
    t = _target(shop_db, sandbox)
    results: list[object] = []

    def ask(i: int) -> None:
        results.append(t.execute(f"SELECT {i} + count(*) FROM customers", timeout_s=5, max_rows=1).rows[0][0])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(12)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(results) == [i + 5 for i in range(12)]
    assert sandbox._count <= 2


def test_memory_is_bounded_by_the_worker_limit(tmp_path: Path) -> None:
    import duckdb

    from t2s.execution import DuckdbTarget

    path = tmp_path / "big.duckdb"
    duckdb.connect(str(path)).execute("CREATE TABLE t AS SELECT range AS i FROM range(10)").close()
    box = Sandbox(max_workers=1, memory_mb=1200, grace_s=0.5)
    try:
        t = DuckdbTarget(path)
        t.sandbox = box
        with pytest.raises((SqlExecutionError, SqlTimeout)):
            t.execute("SELECT list(repeat('x', 1000)) FROM range(6000000)", timeout_s=10, max_rows=1)
        assert t.execute("SELECT count(*) FROM t", timeout_s=5, max_rows=1).rows == [(10,)]
    finally:
        box.close()


def test_a_worker_exits_when_its_parent_goes_away(shop_db: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys, time\n"
        "from t2s.execution import SqliteTarget\n"
        f"t = SqliteTarget({str(shop_db)!r})\n"
        "t.execute('SELECT 1', timeout_s=5, max_rows=1)\n"
        "from t2s.sandbox import default_sandbox\n"
        "print(default_sandbox()._idle[0].proc.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    worker_pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    for _ in range(50):
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(worker_pid, signal.SIGKILL)
    pytest.fail("the worker outlived its parent")


def test_a_worker_that_queried_many_duckdb_databases_still_answers(tmp_path: Path) -> None:
    """Each DuckDB instance a worker keeps open reserves address space under the worker's limit; a worker
    that has seen a dozen databases must still answer (it used to fail every later DuckDB query with
    "Out of Memory" or "can't start new thread")."""
    duckdb = pytest.importorskip("duckdb")
    from t2s.execution import DuckdbTarget

    box = Sandbox(max_workers=1, memory_mb=1024)
    try:
        answers = []
        for i in range(12):
            path = tmp_path / f"d{i}.duckdb"
            with duckdb.connect(str(path)) as conn:
                conn.execute(f"CREATE TABLE t AS SELECT range AS x FROM range({100 + i})")
            target = DuckdbTarget(path)
            target.sandbox = box
            answers.append(target.execute("SELECT COUNT(*) FROM t", timeout_s=10, max_rows=5).rows[0][0])
        assert answers == [100 + i for i in range(12)]
    finally:
        box.close()
