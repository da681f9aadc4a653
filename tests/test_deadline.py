"""One deadline per served request, and a fair share of SQL workers per principal.

Real parts throughout: the sandbox's worker processes on the shop database, the scripted OpenAI-compatible
server over HTTP, the generator's self-consistency strategy. Times are asserted with generous slack (the
box is shared); what must hold is "by the deadline, not by the sum of the per-query timeouts".
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pytest

from t2s.deadline import PrincipalShares, request_budget
from t2s.errors import DeadlineExceeded, SqlTimeout
from t2s.execution import SqliteTarget
from t2s.llm import ChatParams
from t2s.sandbox import Sandbox
from tests.fakes import FakeOpenAI, Reply
from tests.test_llm_client import client_for_test

RUNAWAY = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
ONE_LONG_CALL = "SELECT printf('%.*c', 999999999, 'x')"  # no engine timeout fires inside it: a kill does
SLACK_S = 1.5  # a shared 2-core box; the HTTP tests hold responses to deadline + 2 s


@pytest.fixture
def box() -> Sandbox:
    sandbox = Sandbox(max_workers=2, memory_mb=1024, grace_s=0.3)
    yield sandbox
    sandbox.close()


@pytest.fixture
def target(shop_db: Path, box: Sandbox) -> SqliteTarget:
    t = SqliteTarget(shop_db)
    t.sandbox = box
    t.execute("SELECT 1", timeout_s=30, max_rows=1)  # workers started before any clock runs
    return t


def busy_workers(box: Sandbox) -> int:
    return box.in_use


def test_principal_shares_bound_one_principal_and_not_the_others() -> None:
    shares = PrincipalShares(1)
    assert shares.acquire("a", 0.0)
    start = time.perf_counter()
    assert not shares.acquire("a", 0.3)  # a's second query waits, then gives up at its deadline
    assert 0.25 < time.perf_counter() - start < 0.3 + SLACK_S
    assert shares.acquire("b", 0.0)  # b is not affected
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(shares.acquire("a", 5.0)))
    waiter.start()
    time.sleep(0.1)
    shares.release("a")
    waiter.join(2)
    assert got == [True] and shares.held("a") == 1


def test_a_query_ends_at_the_request_deadline_not_at_its_own_timeout(target: SqliteTarget, box: Sandbox) -> None:
    with request_budget(1.0):
        start = time.perf_counter()
        with pytest.raises(SqlTimeout):
            target.execute(RUNAWAY, timeout_s=30, max_rows=1)
        assert time.perf_counter() - start < 1.0 + SLACK_S
        with pytest.raises(DeadlineExceeded, match="deadline"):
            target.execute("SELECT 1", timeout_s=30, max_rows=1)  # nothing left: not even started
    assert busy_workers(box) == 0


def test_a_worker_stuck_in_one_call_is_killed_at_the_deadline(target: SqliteTarget, box: Sandbox) -> None:
    with request_budget(1.0):
        start = time.perf_counter()
        with pytest.raises(SqlTimeout, match="worker was stopped"):
            target.execute(ONE_LONG_CALL, timeout_s=30, max_rows=1)
        assert time.perf_counter() - start < 1.0 + SLACK_S
    assert box.killed == 1 and busy_workers(box) == 0
    assert target.execute("SELECT count(*) FROM customers", timeout_s=30, max_rows=1).rows == [(5,)]


def test_one_principal_holds_at_most_its_share_of_workers(target: SqliteTarget, box: Sandbox) -> None:
    shares = PrincipalShares(1)
    outcomes: dict[str, object] = {}

    def run(name: str, principal: str, seconds: float, sql: str) -> None:
        with request_budget(seconds, principal, shares):
            start = time.perf_counter()
            try:
                target.execute(sql, timeout_s=30, max_rows=1)
                outcomes[name] = ("ok", time.perf_counter() - start)
            except Exception as exc:  # recorded and asserted below
                outcomes[name] = (type(exc).__name__, time.perf_counter() - start)

    hog = threading.Thread(target=run, args=("hog", "a", 2.5, RUNAWAY))
    hog.start()
    time.sleep(0.3)
    second = threading.Thread(target=run, args=("second", "a", 1.0, "SELECT 1"))
    second.start()
    time.sleep(0.1)
    run("other", "b", 5.0, "SELECT count(*) FROM customers")  # a worker is free for b at once
    second.join()
    hog.join()
    assert outcomes["other"][0] == "ok" and outcomes["other"][1] < 0.5 + SLACK_S
    assert outcomes["second"][0] == "DeadlineExceeded" and outcomes["second"][1] < 1.0 + SLACK_S
    assert outcomes["hog"][0] == "SqlTimeout"
    assert shares.held("a") == 0 and busy_workers(box) == 0


def test_waiting_for_a_free_worker_is_bounded_by_the_deadline(target: SqliteTarget, box: Sandbox) -> None:
    hogs = [threading.Thread(target=lambda: _quiet(target, RUNAWAY, 3.0)) for _ in range(2)]
    for t in hogs:
        t.start()
    time.sleep(0.3)
    with request_budget(0.8):
        start = time.perf_counter()
        with pytest.raises(DeadlineExceeded, match="no SQL worker"):
            target.execute("SELECT 1", timeout_s=30, max_rows=1)
        assert time.perf_counter() - start < 0.8 + SLACK_S
    for t in hogs:
        t.join()


def _quiet(target: SqliteTarget, sql: str, timeout_s: float) -> None:
    with contextlib.suppress(SqlTimeout):
        target.execute(sql, timeout_s=timeout_s, max_rows=1)


@pytest.fixture
def fake() -> FakeOpenAI:
    server = FakeOpenAI()
    yield server
    server.close()


def test_a_slow_model_call_ends_at_the_deadline(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.script = [Reply(), Reply(delay=5.0)]
    client = client_for_test(tmp_path, fake.url, llm_timeout_s=60.0)
    client.complete([{"role": "user", "content": "warm"}], ChatParams())  # the first call's set-up is not timed
    with request_budget(1.0):
        start = time.perf_counter()
        with pytest.raises(DeadlineExceeded, match="waiting for the model"):
            client.complete([{"role": "user", "content": "q"}], ChatParams())
        assert time.perf_counter() - start < 1.0 + SLACK_S


def test_no_retry_sleeps_past_the_deadline(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.script = [Reply(status=503, headers={"Retry-After": "10"})]
    sleeps: list[float] = []
    client = client_for_test(tmp_path, fake.url, sleeps)
    with request_budget(2.0), pytest.raises(DeadlineExceeded, match="no time to retry"):
        client.complete([{"role": "user", "content": "q"}], ChatParams())
    assert sleeps == [] and len(fake.requests) == 1


def test_a_strategy_shares_one_deadline_over_all_its_candidates(fake: FakeOpenAI, tmp_path: Path,
                                                                  target: SqliteTarget) -> None:
    from t2s.generator import SqlGenerator
    from t2s.prompts import PromptLibrary
    from tests.conftest import ROOT

    base = PromptLibrary(ROOT / "prompts").get("sql-analyst", 2).spec
    strategy = base.strategy.model_copy(update={"kind": "self_consistency", "samples": 4, "temperature": 0.7,
                                                "timeout_s": 30.0})
    gen = SqlGenerator(base.model_copy(update={"strategy": strategy}), client_for_test(tmp_path, fake.url))
    fake.script = [Reply(content=f"```sql\n{RUNAWAY}\n```")]
    with request_budget(2.0):
        start = time.perf_counter()
        with pytest.raises(DeadlineExceeded):
            gen.generate("How many?", target)
        # four candidates with a 30 s timeout each: without the shared deadline this took two minutes
        assert time.perf_counter() - start < 2.0 + SLACK_S
