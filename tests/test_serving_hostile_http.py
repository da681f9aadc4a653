"""Hostile SQL through the HTTP API: a steered model answers every attack, on SQLite, DuckDB and PostgreSQL.

One real ``uvicorn`` server with API-key auth serves the shop database on the three engines (PostgreSQL
through the least-privilege reader role); its experiment's variants are one prompt written in each engine's
dialect (a request reaches its engine's variant through a user id assigned to it) plus a self-consistency
version. A scripted model answers a question with the attack it names, fenced (```sql … ```) or bare.
Every attack of ``tests/data/hostile.sql`` and the generated deep/huge ones (a sample by default; all of
them in the slow test) goes through ``POST /v1/sql``:

- no 5xx, and the server process never dies;
- every response within the request deadline + 2 s;
- what the guard must refuse is never executed (no rows come back);
- afterwards the database checksums (and PostgreSQL's roles, locks, slots, large objects), a watched
  directory and a canary query are as before.

The legitimate queries the old extractor and guard refused (and the hostile suite's analytics set) come
back with rows: at most one refused per engine. Two more callers show fair share and the shared deadline:
one caller's runaway queries leave the other's answers fast, and each runaway request ends as ``timeout``
by its deadline.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.fakes import FakeOpenAI, Reply
from tests.serving_support import build_registry, free_port, prompt_file, start_fake, start_uvicorn
from tests.shop_copies import shop_to_duckdb
from tests.test_hostile_sql import CASES, LEGIT, Hostile, _listing, _md5, _postgres_engine
from tests.test_sql_extract import LEGIT as EXTRACT_LEGIT

ENGINES = ("sqlite", "duckdb", "postgres")
QUERY_TIMEOUT_S = 1.0
DEADLINE_S = 4.0
ALLOWED_S = DEADLINE_S + 2.0
RUNAWAY = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
#: Attacks sent by the default suite: every 12th of the corpus per engine, plus the ones that stress time.
SAMPLE_EVERY = 12


def legit_queries(engine: str) -> list[str]:
    odd = ("[name;x]", "`a;b`")  # names that exist on no table
    extra = [q for key in ("all", engine) for q in EXTRACT_LEGIT.get(key, []) if not any(o in q for o in odd)]
    return [*LEGIT["all"], *LEGIT[engine], *extra]


def attacks(engine: str) -> list[tuple[int, Hostile]]:
    return [(i, c) for i, c in enumerate(CASES) if engine in c.engines]


def sample(engine: str) -> list[tuple[int, Hostile]]:
    cases = attacks(engine)
    timing = {"generated", "resource"}
    return [(i, c) for n, (i, c) in enumerate(cases) if n % SAMPLE_EVERY == 0 or
            (c.category in timing and n % 3 == 0)]


# --- the scripted model -----------------------------------------------------------------------------------

def responder(watched: Path) -> Any:
    """Answer ``attack ENGINE I fenced|bare`` with case I, ``legit ENGINE I`` with a legitimate query, ``runaway``
    with a query that never ends, ``hang`` after the deadline, anything else with a count."""
    def answer(body: dict[str, Any]) -> Reply:
        question = body["messages"][-1]["content"].rsplit("Question: ", 1)[-1].strip()
        words = question.split()
        if words[0] == "attack":
            sql = CASES[int(words[2])].sql.replace("{tmp}", str(watched))
            return Reply(content=f"```sql\n{sql}\n```" if words[3] == "fenced" else sql)
        if words[0] == "legit":
            return Reply(content=f"Here is the query:\n```sql\n{legit_queries(words[1])[int(words[2])]}\n```")
        if words[0] == "runaway":
            return Reply(content=f"```sql\n{RUNAWAY}\n```")
        if words[0] == "bigvalue":
            return Reply(content="```sql\nSELECT repeat('x', 10000000) AS big\n```")
        if words[0] == "hang":
            return Reply(content="SELECT 1", delay=DEADLINE_S + 3)
        return Reply(content="SELECT count(*) FROM customers")
    return answer


# --- the server ----------------------------------------------------------------------------------------

# One served experiment whose variants are the same prompt written for each engine's dialect (and a
# self-consistency version): a request reaches the variant of its engine through a user id assigned to it.
VARIANTS = {"sqlite": ("champion", None), "duckdb": ("duckdb", 3), "postgres": ("postgres", 4),
            "strategy": ("strategy", 5)}
STRATEGY = {"kind": "self_consistency", "samples": 3, "temperature": 0.7, "timeout_s": 30}
DATABASES = {"sqlite": "shop", "duckdb": "duck", "postgres": "pg"}
SALT = "hostile"


def register_versions(reg: dict[str, Any]) -> None:
    """Add the DuckDB, PostgreSQL and self-consistency versions of the demo prompt to the registry (aliases
    ``duckdb``, ``postgres``, ``strategy``); ``build_registry`` made the SQLite one (``champion``)."""
    import mlflow
    from mlflow import MlflowClient

    from t2s.bundle import REGISTERED_MODEL, bundle_config, log_bundle
    from t2s.prompts import PromptLibrary, push

    for alias, version in VARIANTS.values():
        if version is not None:
            data = {**prompt_file(version), "dialect": "sqlite" if alias == "strategy" else alias}
            if alias == "strategy":
                data["strategy"] = STRATEGY
            (reg["prompts"] / "demo" / f"v{version}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    push(PromptLibrary(reg["prompts"]))
    for alias, version in VARIANTS.values():
        if version is not None:
            with mlflow.start_run():
                info = log_bundle(bundle_config(f"prompts:/demo/{version}", "compatible", "fake-model",
                                                reg["dataset"], base_url=reg["fake_url"]))
            MlflowClient().set_registered_model_alias(REGISTERED_MODEL, alias, info.registered_model_version)


def user_for(variant: str, prefix: str = "u") -> str:
    """A user id (or API key name) the experiment assigns to ``variant``."""
    from serving.assignment import assign

    weights = [(name, 1.0) for name in VARIANTS]
    return next(f"{prefix}{n}" for n in range(10_000)
                if assign(SALT, weights, f"key:{prefix}{n}" if prefix != "u" else f"{prefix}{n}").variant == variant)


@dataclass
class Served:
    port: int
    proc: Any
    snapshots: dict[str, Any]  # engine -> () -> comparable state of its database
    keys: dict[str, str]  # attacker (may name users), runaway, quiet
    users: dict[str, str]  # engine -> a user id on that engine's variant

    def ask(self, http: httpx.Client, engine: str, question: str, key: str = "attacker",
            **extra: Any) -> tuple[int, dict[str, Any], float]:
        start = time.perf_counter()
        r = http.post(f"http://127.0.0.1:{self.port}/v1/sql", headers={"X-API-Key": self.keys[key]},
                      json={"question": question, "database": DATABASES[engine], "user_id": self.users[engine],
                            **extra})
        return r.status_code, r.json(), time.perf_counter() - start


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("watched")
    path.chmod(0o777)
    return path


@pytest.fixture(scope="module")
def steered(watched: Path) -> Iterator[FakeOpenAI]:
    fake = start_fake()
    fake.responder = responder(watched)
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, shop_db: Path, steered: FakeOpenAI,
           request: pytest.FixtureRequest) -> Iterator[Served]:
    import duckdb

    from serving.auth import new_api_key

    base = tmp_path_factory.mktemp("hostile-http")
    folder = base / "dbs"
    folder.mkdir()
    sq = folder / "shop.sqlite"
    shutil.copy(shop_db, sq)
    dk = shop_to_duckdb(sq, folder / "shop.duckdb")
    with duckdb.connect(str(dk)) as conn:
        conn.execute("CREATE SEQUENCE customers_id_seq")
    databases = {"shop": f"sqlite:{sq}", "duck": f"duckdb:{dk}"}
    snapshots = {"sqlite": lambda: (_md5(sq), _listing(folder)), "duckdb": lambda: (_md5(dk), _listing(folder))}
    try:
        admin = request.getfixturevalue("postgres_dsn")
    except pytest.skip.Exception:
        admin = None
    if admin is not None:
        pg = _postgres_engine(admin, sq)
        databases["pg"] = f"postgres:{pg.target.dsn}#shop"  # type: ignore[attr-defined]
        snapshots["postgres"] = pg.snapshot

    reg = build_registry(base / "reg", shop_db, steered.url)
    reg["fake_url"] = steered.url
    register_versions(reg)
    experiment = base / "experiment.yaml"
    experiment.write_text(yaml.safe_dump({"name": "hostile", "salt": SALT, "variants": [
        {"name": name, "alias": alias, "weight": 1} for name, (alias, _) in VARIANTS.items()]}))
    names = {"attacker": "attacker", "runaway": user_for("strategy", "runaway"), "quiet": user_for("strategy", "quiet")}
    keys, records = {}, []
    for role, name in names.items():
        key, record = new_api_key(name, "caller", act_for_users=role == "attacker")
        keys[role] = key
        records.append(record.model_dump())
    (base / "keys.json").write_text(json.dumps(records))
    env = {**os.environ, "T2S_MLFLOW_TRACKING_URI": reg["tracking_uri"], "T2S_PROMPTS_DIR": str(reg["prompts"]),
           "T2S_CACHE_DIR": str(base / "cache"), "T2S_SERVE_STORE_URL": f"sqlite:///{base / 'store.db'}",
           "T2S_SERVE_EXPERIMENT_FILE": str(experiment), "T2S_SERVE_DATABASES": json.dumps(databases),
           "T2S_LLM_API_KEY": "test-key", "T2S_LLM_MAX_RETRIES": "0", "T2S_QUERY_TIMEOUT_S": str(QUERY_TIMEOUT_S),
           "T2S_SERVE_REQUEST_DEADLINE_S": str(DEADLINE_S), "T2S_SANDBOX_WORKERS": "2",
           "T2S_SERVE_SQL_WORKERS_PER_PRINCIPAL": "1", "T2S_SERVE_AUTH": "required",
           "T2S_SERVE_API_KEYS_FILE": str(base / "keys.json"), "T2S_SERVE_USER_HASH_KEY": "test-user-hash-key",
           "T2S_SERVE_RATE_LIMIT": "1000000/minute", "T2S_SERVE_RATE_LIMIT_OTHER": "1000000/minute",
           "T2S_SERVE_METRICS": "none"}
    port = free_port()
    proc = start_uvicorn(env, port, base / "server.log")
    users = {engine: user_for(engine) for engine in DATABASES}
    yield Served(port, proc, snapshots, keys, users)
    proc.terminate()
    proc.wait(timeout=30)


def _engine_param(engine: str, *marks: Any) -> Any:
    return pytest.param(engine, marks=[*marks, *([pytest.mark.postgres] if engine == "postgres" else [])])


def _need(served: Served, engine: str) -> None:
    if engine not in served.snapshots:
        pytest.skip("PostgreSQL not available")


# --- the tests --------------------------------------------------------------------------------------------

def run_attacks(s: Served, engine: str, cases: list[tuple[int, Hostile]], watched: Path) -> None:
    before = s.snapshots[engine]()
    pid = s.proc.pid
    problems: list[str] = []
    with httpx.Client(timeout=ALLOWED_S + 10, trust_env=False) as http:
        for i, case in cases:
            for style in ("fenced", "bare"):
                code, body, elapsed = s.ask(http, engine, f"attack {engine} {i} {style}", max_rows=50)
                where = f"{case.id} ({style})"
                if code >= 500:
                    problems.append(f"{where}: HTTP {code} {body}")
                    continue
                assert code == 200, (where, body)
                if elapsed > ALLOWED_S:
                    problems.append(f"{where}: answered after {elapsed:.1f} s")
                if case.guard_refuses and body.get("rows") is not None:
                    problems.append(f"{where}: executed ({body['outcome']}, {body['rows'][:2]})")
        assert s.proc.poll() is None and s.proc.pid == pid, "the server process died"
        assert http.get(f"http://127.0.0.1:{s.port}/health").status_code == 200
        code, body, _ = s.ask(http, engine, "How many customers?")
        assert code == 200 and body["rows"] == [[5]], body  # the canary
    assert not problems, "\n".join(problems)
    assert s.snapshots[engine]() == before, "the database or server state changed"
    assert not list(watched.iterdir()), "a file was written"


@pytest.mark.parametrize("engine", [_engine_param(e) for e in ENGINES])
def test_a_sample_of_attacks_through_http(served: Served, engine: str, watched: Path) -> None:
    _need(served, engine)
    run_attacks(served, engine, sample(engine), watched)


@pytest.mark.parametrize("engine", [_engine_param(e, pytest.mark.slow) for e in ENGINES])
def test_every_attack_through_http(served: Served, engine: str, watched: Path) -> None:
    _need(served, engine)
    run_attacks(served, engine, attacks(engine), watched)


@pytest.mark.parametrize("engine", [_engine_param(e) for e in ENGINES])
def test_legitimate_queries_come_back_with_rows(served: Served, engine: str) -> None:
    _need(served, engine)
    refused = []
    queries = legit_queries(engine)
    with httpx.Client(timeout=ALLOWED_S + 10, trust_env=False) as http:
        for i, sql in enumerate(queries):
            code, body, _ = served.ask(http, engine, f"legit {engine} {i}")
            assert code == 200, body
            if body["outcome"] not in ("ok", "empty"):
                refused.append(f"{sql!r}: {body['outcome']}: {body['detail']}")
    assert len(refused) <= 1, f"{len(refused)} of {len(queries)} legitimate queries refused:\n" + "\n".join(refused)


@pytest.mark.parametrize("engine", [_engine_param(e) for e in ("duckdb", "postgres")])
def test_a_10_mb_value_comes_back_cut_and_flagged(served: Served, engine: str) -> None:
    _need(served, engine)
    with httpx.Client(timeout=ALLOWED_S + 10, trust_env=False) as http:
        code, body, elapsed = served.ask(http, engine, "bigvalue please")
    assert code == 200 and body["outcome"] == "ok", body
    assert body["rows"] == [["x" * 10_000]] and body["truncated"] is True  # T2S_SERVE_MAX_CELL_CHARS
    assert "1 value(s) cut to 10,000 characters" in body["detail"] and elapsed < ALLOWED_S


def test_a_model_that_hangs_ends_as_timeout_by_the_deadline(served: Served) -> None:
    with httpx.Client(timeout=ALLOWED_S + 10, trust_env=False) as http:
        code, body, elapsed = served.ask(http, "sqlite", "hang please")
    assert code == 200 and body["outcome"] == "timeout" and "deadline" in body["detail"], body
    assert elapsed < ALLOWED_S


# --- fair share and the strategy's shared deadline --------------------------------------------------------

def test_one_callers_runaway_queries_leave_the_other_fast(served: Served) -> None:
    """Both callers are on the self-consistency variant; each holds at most one of the two SQL workers."""
    def ask(key: str, question: str) -> tuple[int, dict[str, Any], float]:
        with httpx.Client(timeout=ALLOWED_S + 10, trust_env=False) as http:
            start = time.perf_counter()
            r = http.post(f"http://127.0.0.1:{served.port}/v1/sql", headers={"X-API-Key": served.keys[key]},
                          json={"question": question, "database": "shop"})
            return r.status_code, r.json(), time.perf_counter() - start

    assert ask("quiet", "warm up")[0] == 200
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        runaways = [pool.submit(ask, "runaway", f"runaway {i}") for i in range(3)]
        time.sleep(0.8)  # the runaway caller's first query holds its one SQL worker; the others wait for it
        quiet = [ask("quiet", f"count {i}") for i in range(3)]
        loud = [f.result() for f in runaways]
    for code, body, elapsed in quiet:
        assert code == 200 and body["outcome"] == "ok" and body["rows"] == [[5]], body
        assert body["variant"] == "strategy"
        # the runaway candidate holds its worker until the deadline (its own timeout is 30 s): without fair
        # share this caller would wait that long for a worker
        assert elapsed < DEADLINE_S - 1.5, f"waited {elapsed:.1f} s behind the other caller's runaway queries"
    for code, body, elapsed in loud:
        assert code == 200 and body["outcome"] == "timeout" and body["variant"] == "strategy", body
        assert elapsed < ALLOWED_S, f"a runaway request took {elapsed:.1f} s"
