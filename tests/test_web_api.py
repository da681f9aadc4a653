"""The web app's API through the real app: conversations whose follow-ups reach the model with their
context (stored in Redis or the store, owned, expiring), dry runs of caller SQL through the guard and the
sandbox, the reviewer's queue, and the page's own files and headers."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.routers.app import CSP
from serving.store import queries
from tests.serving_prod_support import redis_server, write_api_keys
from tests.serving_support import make_settings, pg_store_url, write_experiment
from tests.web_support import FOLLOW_UPS, NO_CONTEXT_SQL

KEYS = {"alice": ("t2s_alice-key-0123456789abcdef0123", "caller"), "bob": ("t2s_bob-key-0123456789abcdef01234", "caller"),
        "rita": ("t2s_rita-key-0123456789abcdef01234", "reviewer")}


def as_(name: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[name][0]}


def web_settings(reg: dict[str, Any], tmp_path: Path, *, keys: bool = False, **extra: Any) -> Any:
    values: dict[str, Any] = {"serve_rate_limit": "1000/minute", "serve_rate_limit_other": "1000/minute"}
    if keys:
        values.update(serve_auth="required", serve_api_keys_file=write_api_keys(tmp_path / "keys.json", KEYS))
    values.update(extra)
    store = values.pop("serve_store_url", f"sqlite:///{tmp_path / 'serving.db'}")
    return make_settings(reg, store, write_experiment(tmp_path / "ab.yaml"), **values)


@pytest.fixture
def client(web_registry: dict[str, Any], tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(web_settings(web_registry, tmp_path, keys=True))) as c:
        yield c


def start(client: TestClient, who: str, database: str = "shop") -> str:
    r = client.post("/v1/sessions", json={"database": database}, headers=as_(who))
    assert r.status_code == 201, r.text
    return r.json()["session_id"]


def ask(client: TestClient, who: str, sid: str, question: str) -> Any:
    return client.post(f"/v1/sessions/{sid}/questions", json={"question": question}, headers=as_(who))


# --- conversations ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["store", "redis", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_follow_up_reaches_the_model_with_its_conversation(web_registry: dict[str, Any], tmp_path: Path,
                                                            backend: str, request: pytest.FixtureRequest) -> None:
    follow_up, first = next(iter(FOLLOW_UPS))
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(redis_server(tmp_path))[0] if backend == "redis" else None
        extra: dict[str, Any] = {"serve_redis_url": url} if url else {}
        if backend == "postgres":  # the store on PostgreSQL: its migrations and the state table there
            extra["serve_store_url"] = pg_store_url(request.getfixturevalue("postgres_dsn"))
        with TestClient(create_app(web_settings(web_registry, tmp_path, keys=True, **extra))) as c:
            sid = start(c, "alice")
            one = ask(c, "alice", sid, first).json()
            assert one["turn"] == 1 and one["context_turns"] == 0 and one["rows"]
            two = ask(c, "alice", sid, follow_up).json()
            assert two["turn"] == 2 and two["context_turns"] == 1
            assert two["sql"] == FOLLOW_UPS[(follow_up, first)]
            assert sorted(map(tuple, two["rows"])) == [("Lyon", 2), ("Paris", 1)]  # March orders only
            alone = ask(c, "alice", start(c, "alice"), follow_up).json()  # the same words, no conversation
            assert alone["sql"] == NO_CONTEXT_SQL and alone["context_turns"] == 0
            turns = c.get(f"/v1/sessions/{sid}", headers=as_("alice")).json()["turns"]
            assert [(t["question"], t["query_id"]) for t in turns] == [(first, one["query_id"]),
                                                                       (follow_up, two["query_id"])]
            store = c.app.state.service.store  # type: ignore[attr-defined]
            with store.engine.connect() as conn:
                ctx = conn.execute(sa.select(queries.c.context).where(queries.c.query_id == two["query_id"])).scalar()
            assert json.loads(ctx) == [{"question": first, "sql": one["sql"]}]
            if backend == "redis":
                import redis

                assert redis.Redis.from_url(url).ttl(f"conv:{sid}") > 8 * 3600 - 60
            else:
                with store.engine.connect() as conn:
                    assert conn.execute(sa.text("SELECT count(*) FROM web_state WHERE key = :k"),
                                        {"k": f"conv:{sid}"}).scalar() == 1


def test_a_conversation_belongs_to_its_principal(client: TestClient) -> None:
    sid = start(client, "alice")
    assert ask(client, "alice", sid, "Customers").status_code == 200
    unknown = client.get("/v1/sessions/" + "x" * 24, headers=as_("alice"))
    for call in (lambda: client.get(f"/v1/sessions/{sid}", headers=as_("bob")),
                 lambda: ask(client, "bob", sid, "Customers"),
                 lambda: client.delete(f"/v1/sessions/{sid}", headers=as_("bob")),
                 lambda: client.get(f"/v1/sessions/{sid}", headers=as_("rita"))):  # reviewers label, they do not read
        r = call()
        assert r.status_code == 404 and r.json()["error"]["type"] == "unknown_session"
        assert r.json()["error"]["message"].replace(sid, "ID") == unknown.json()["error"]["message"].replace("x" * 24, "ID")
    assert client.get(f"/v1/sessions/{sid}").status_code == 401
    assert len(client.get(f"/v1/sessions/{sid}", headers=as_("alice")).json()["turns"]) == 1
    assert client.delete(f"/v1/sessions/{sid}", headers=as_("alice")).status_code == 204
    assert client.get(f"/v1/sessions/{sid}", headers=as_("alice")).status_code == 404
    assert client.post("/v1/sessions", json={"database": "nope"}, headers=as_("alice")).status_code == 404
    assert ask(client, "alice", start(client, "alice"), "  ").status_code == 422


def test_conversations_expire(web_registry: dict[str, Any], tmp_path: Path) -> None:
    with TestClient(create_app(web_settings(web_registry, tmp_path, keys=True, serve_session_ttl_s=1.0))) as c:
        sid = start(c, "alice")
        time.sleep(0.6)
        assert ask(c, "alice", sid, "Customers").status_code == 200  # a question restarts the 1 s
        time.sleep(0.6)
        assert c.get(f"/v1/sessions/{sid}", headers=as_("alice")).status_code == 200
        time.sleep(1.2)
        assert c.get(f"/v1/sessions/{sid}", headers=as_("alice")).status_code == 404


# --- dry runs ----------------------------------------------------------------------------------------------

def dry(client: TestClient, sql: str, who: str = "alice") -> Any:
    r = client.post("/v1/sql/dry-run", json={"database": "shop", "sql": sql}, headers=as_(who))
    assert r.status_code == 200, r.text
    return r.json()


def test_dry_run_goes_through_the_guard_and_the_sandbox(client: TestClient, web_registry: dict[str, Any]) -> None:
    ok = dry(client, "SELECT id, tag FROM nums ORDER BY id")
    assert ok["outcome"] == "ok" and len(ok["rows"]) == 20 and ok["truncated"] and ok["rows"][0] == [1, "n1"]
    assert dry(client, "SELECT name FROM customers WHERE city = 'Atlantis'")["outcome"] == "empty"
    attacks = ["DELETE FROM customers", "SELECT 1; DROP TABLE customers", "ATTACH DATABASE '/tmp/x.db' AS x",
               "PRAGMA writable_schema = 1", "SELECT load_extension('/tmp/evil')",
               "WITH x AS (DELETE FROM orders RETURNING *) SELECT * FROM x"]
    for sql in attacks:
        r = dry(client, sql)
        assert r["outcome"] in ("guard_refused", "sql_error") and r["rows"] is None, (sql, r)
    assert dry(client, "DELETE FROM customers")["outcome"] == "guard_refused"
    assert dry(client, "SELECT bogus FROM customers")["outcome"] == "sql_error"
    start_s = time.perf_counter()
    forever = dry(client, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c")
    assert forever["outcome"] == "timeout" and time.perf_counter() - start_s < 5
    assert dry(client, "SELECT COUNT(*) FROM customers")["rows"] == [[5]]  # nothing was deleted
    assert client.post("/v1/sql/dry-run", json={"database": "shop", "sql": "SELECT 1"}).status_code == 401
    assert client.post("/v1/sql/dry-run", json={"database": "nope", "sql": "SELECT 1"},
                       headers=as_("alice")).status_code == 404


def test_a_dry_run_takes_the_callers_share_of_sql_workers(client: TestClient) -> None:
    """A dry run runs the caller's SQL like a question does: within the request deadline and the caller's
    share of SQL workers, so one caller's runaway dry runs cannot hold every worker."""
    service = client.app.state.service  # type: ignore[attr-defined]
    seen: list[str] = []
    acquire = service.sql_shares.acquire

    def recording(principal: str, timeout_s: float) -> bool:
        seen.append(principal)
        return acquire(principal, timeout_s)

    service.sql_shares.acquire = recording
    assert dry(client, "SELECT 1")["outcome"] == "ok" and len(seen) == 1
    alice = seen[0]
    held = [acquire(alice, 0.0) for _ in range(service.sql_shares.limit)]  # alice's other queries
    assert all(held)
    deadline_s = service.settings.serve_request_deadline_s
    service.settings.serve_request_deadline_s = 0.5
    try:
        start_s = time.perf_counter()
        waited = dry(client, "SELECT 1")
        assert waited["outcome"] == "timeout" and "T2S_SERVE_SQL_WORKERS_PER_PRINCIPAL" in waited["detail"]
        assert time.perf_counter() - start_s < 3
        service.settings.serve_request_deadline_s = deadline_s
        other = dry(client, "SELECT 1", who="bob")
        assert other["outcome"] == "ok", (other, seen)  # another caller is not held up
    finally:
        for _ in held:
            service.sql_shares.release(alice)


# --- the review queue ---------------------------------------------------------------------------------------

def test_reviewers_get_a_random_sample_and_their_labels_count(client: TestClient) -> None:
    sid = start(client, "alice")
    asked = [ask(client, "alice", sid, q).json() for q in ("Customers", "Orders per city", "Only in March",
                                                           "Total amount", "Amount per day", "All numbers")]
    assert client.get("/v1/review/queries", headers=as_("alice")).status_code == 403
    full = client.get("/v1/review/queries", params={"sample": "recent", "limit": 50}, headers=as_("rita")).json()
    assert full["matching"] == 6 and [i["query_id"] for i in full["items"]] == [a["query_id"] for a in reversed(asked)]
    follow = next(i for i in full["items"] if i["question"] == "Only in March")
    assert follow["context"] == [{"question": a["question"], "sql": a["sql"]} for a in
                                 ({"question": "Customers", **asked[0]}, {"question": "Orders per city", **asked[1]})]
    seen = {client.get("/v1/review/queries", params={"limit": 1}, headers=as_("rita")).json()["items"][0]["query_id"]
            for _ in range(60)}
    assert seen == {a["query_id"] for a in asked}  # each of 6 drawn in 60 tries: P(miss one) < 2e-4
    variant = asked[0]["variant"]
    only = client.get("/v1/review/queries", params={"variant": variant, "limit": 50}, headers=as_("rita")).json()
    assert {i["variant"] for i in only["items"]} == {variant}
    assert only["matching"] == sum(a["variant"] == variant for a in asked)
    target = asked[0]["query_id"]
    assert client.post("/v1/feedback", json={"query_id": target, "correct": True}, headers=as_("alice")).status_code == 201
    r = client.post("/v1/feedback", json={"query_id": target, "correct": False}, headers=as_("rita"))
    assert r.status_code == 201 and r.json()["source"] == "reviewer"
    left = client.get("/v1/review/queries", params={"sample": "recent", "limit": 50}, headers=as_("rita")).json()
    assert left["matching"] == 5 and target not in {i["query_id"] for i in left["items"]}
    everything = client.get("/v1/review/queries", params={"unreviewed": False, "limit": 50}, headers=as_("rita")).json()
    labelled = next(i for i in everything["items"] if i["query_id"] == target)
    assert labelled["label"] == {"correct": False, "source": "reviewer"}


# --- the page's files ---------------------------------------------------------------------------------------

class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in = tag

    def handle_data(self, data: str) -> None:
        if self._in in ("script", "style") and data.strip():
            self.inline.append(data)


def test_the_page_is_served_with_a_strict_policy_and_no_inline_code(client: TestClient) -> None:
    r = client.get("/app")
    assert r.status_code == 200 and r.headers["content-security-policy"] == CSP
    assert "'unsafe-inline'" not in CSP and "'unsafe-eval'" not in CSP and "http" not in CSP
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    page = _Tags()
    page.feed(r.text)
    assert not page.inline and not any("style" in attrs or any(k.startswith("on") for k in attrs)
                                       for _, attrs in page.tags)
    sources = [a.get("src") or a.get("href") for t, a in page.tags if t in ("script", "link") and (a.get("src") or
                                                                                               a.get("href"))]
    assert sources and all(s.startswith("/app/static/") for s in sources)
    for src in sources:
        asset = client.get(src)
        assert asset.status_code == 200 and asset.headers["x-content-type-options"] == "nosniff"
    plotly = client.get("/app/static/vendor/plotly.min.js")
    assert plotly.status_code == 200 and "window.Plotly" in plotly.text[-5000:]
    for bad in ("../app.py", "..%2F..%2Fapp.py", "app.py", ".hidden.js", "x.js"):
        assert client.get(f"/app/static/{bad}").status_code == 404
    me = client.get("/app/api/me").json()
    assert me["auth"] == "api" and me["signed_in"] is False and re.search("T2S_SERVE_OAUTH", me["message"])


def test_without_auth_the_app_needs_no_sign_in(web_registry: dict[str, Any], tmp_path: Path) -> None:
    with TestClient(create_app(web_settings(web_registry, tmp_path))) as c:
        me = c.get("/app/api/me").json()
        assert me["signed_in"] and me["role"] == "admin" and me["databases"] == ["shop"] and me["dry_run_rows"] == 20
        assert c.get("/app/login", follow_redirects=False).headers["location"] == "/app"
