"""Labels belong to the principal that asked, tried through the HTTP API as other callers would: the owner
labels once, anyone else is told the query does not exist, a reviewer supersedes and the history keeps
every label; the report and the export read the effective label; the body's ``user_id`` counts only from
a principal allowed to act for users. On SQLite and PostgreSQL stores."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from serving.app import create_app
from serving.store import Store, feedback, queries, user_hash
from t2s.settings import get_settings
from tests.serving_prod_support import (
    CLIENT_ID,
    ISSUER,
    JwksServer,
    public_jwk,
    rsa_key,
    token,
    write_api_keys,
)
from tests.serving_support import make_settings, write_experiment

KEYS = {"alice": ("t2s_alice-key-0123456789abcdef0123", "caller"),
        "bob": ("t2s_bob-key-0123456789abcdef012345", "caller"),
        "rita": ("t2s_rita-key-0123456789abcdef01234", "reviewer"),
        "rhea": ("t2s_rhea-key-0123456789abcdef01234", "reviewer"),
        "ops": ("t2s_ops-key-0123456789abcdef0123456", "admin"),
        "webapp": ("t2s_webapp-key-0123456789abcdef0123", "caller")}
HASH_KEY = "labels-test-user-hash-key-0123456789"


def as_(name: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[name][0]}


@pytest.fixture(scope="module")
def rsa() -> Any:
    return rsa_key()


@pytest.fixture
def jwks(rsa: Any) -> Iterator[JwksServer]:
    server = JwksServer([public_jwk(rsa, "k1")])
    yield server
    server.close()


def label_settings(registry: dict[str, Any], tmp_path: Path, store_url: str, jwks_url: str) -> Any:
    return make_settings(
        registry, store_url, write_experiment(tmp_path / "ab.yaml"), serve_auth="required",
        serve_api_keys_file=write_api_keys(tmp_path / "keys.json", KEYS, act_for_users=("webapp",)),
        serve_jwks_url=jwks_url, serve_jwt_issuer=ISSUER, serve_jwt_client_ids=[CLIENT_ID],
        serve_jwt_act_for_users_groups=["backends"], serve_user_hash_key=HASH_KEY,
        serve_rate_limit="1000/minute", serve_rate_limit_other="1000/minute", serve_metrics="none")


@pytest.fixture
def client(registry: dict[str, Any], tmp_path: Path, store_url: str, jwks: JwksServer) -> Iterator[TestClient]:
    with TestClient(create_app(label_settings(registry, tmp_path, store_url, jwks.url))) as c:
        yield c


def ask(client: TestClient, who: dict[str, str], question: str = "How many customers are there?",
        user: str | None = None) -> str:
    body = {"question": question, "database": "shop", **({"user_id": user} if user else {})}
    r = client.post("/v1/sql", json=body, headers=who)
    assert r.status_code == 200, r.text
    return r.json()["query_id"]


def label(client: TestClient, who: dict[str, str], qid: str, correct: bool, fix: str | None = None) -> Any:
    body = {"query_id": qid, "correct": correct, **({"corrected_sql": fix} if fix else {})}
    return client.post("/v1/feedback", json=body, headers=who)


def store(client: TestClient) -> Store:
    return client.app.state.service.store  # type: ignore[attr-defined]


def test_only_the_owner_or_a_reviewer_labels_and_others_cannot_tell_the_query_exists(client: TestClient) -> None:
    qid = ask(client, as_("alice"))
    unknown = label(client, as_("bob"), "00000000-0000-4000-8000-000000000000", True)
    assert unknown.status_code == 404
    for stranger in ("bob", "webapp"):  # another caller, and a service that may act for users
        r = label(client, as_(stranger), qid, False, "SELECT 1")
        assert r.status_code == 404, r.text
        assert r.json()["error"]["type"] == unknown.json()["error"]["type"] == "unknown_query"
        assert r.json()["error"]["message"].replace(qid, "ID") == \
            unknown.json()["error"]["message"].replace("00000000-0000-4000-8000-000000000000", "ID")
    assert store(client).labels_of(qid) == []  # nothing recorded for the strangers

    first = label(client, as_("alice"), qid, True)
    assert first.status_code == 201 and first.json()["source"] == "owner"
    again = label(client, as_("alice"), qid, False)
    assert again.status_code == 409 and again.json()["error"]["type"] == "label_exists"
    message = again.json()["error"]["message"]
    assert "True" not in message and "true" not in message and first.json()["recorded_at"][:16] not in message

    review = label(client, as_("rita"), qid, False, "SELECT COUNT(*) FROM customers WHERE city = 'Paris'")
    assert review.status_code == 201 and review.json()["source"] == "reviewer"
    second_review = label(client, as_("rhea"), qid, False, "SELECT COUNT(DISTINCT name) FROM customers")
    assert second_review.status_code == 201 and second_review.json()["source"] == "reviewer"
    assert label(client, as_("alice"), qid, True).status_code == 409  # the owner cannot undo a review
    admin = label(client, as_("ops"), ask(client, as_("bob")), True)  # admins review too
    assert admin.status_code == 201 and admin.json()["source"] == "reviewer"

    history = store(client).labels_of(qid)
    assert [(h["principal"], h["source"], h["correct"]) for h in history] == [
        ("key:alice", "owner", True), ("key:rita", "reviewer", False), ("key:rhea", "reviewer", False)]
    with store(client).engine.connect() as conn:
        effective = conn.execute(sa.select(feedback).where(feedback.c.query_id == qid)).mappings().one()
    assert (effective["principal"], effective["source"]) == ("key:rhea", "reviewer")  # the latest review wins
    assert effective["corrected_sql"] == "SELECT COUNT(DISTINCT name) FROM customers"


def test_the_report_uses_the_effective_label_and_says_which(client: TestClient) -> None:
    owned = [ask(client, as_("alice"), f"List the customers {i}") for i in range(4)]
    for qid in owned:
        assert label(client, as_("alice"), qid, True).status_code == 201
    for qid in owned[:3]:  # the reviewer disagrees with three of the owner's four labels
        assert label(client, as_("rita"), qid, False).status_code == 201
    unlabelled = ask(client, as_("bob"))
    frame = store(client).records_frame("ab").set_index("query_id")
    assert frame.loc[owned, "correct"].tolist() == [False, False, False, True]
    assert frame.loc[owned, "label_source"].tolist() == ["reviewer", "reviewer", "reviewer", "owner"]
    assert frame.loc[unlabelled, "label_source"] is None and frame["correct"].isna().sum() == 1
    report = client.get("/v1/experiments/ab/report", headers=as_("ops")).json()
    variant = next(v for v in report["variants"] if v["accuracy"]["labelled"])
    assert variant["accuracy"]["labelled"] == 4 and variant["accuracy"]["correct"] == 1


def test_user_id_counts_only_from_a_principal_allowed_to_act_for_users(client: TestClient, rsa: Any) -> None:
    ids = [ask(client, as_("alice"), user=f"victim-{i}") for i in range(6)]  # posing as six other users
    ids.append(ask(client, as_("alice")))
    service_ids = [ask(client, as_("webapp"), user="ana@example.com"), ask(client, as_("webapp"))]
    jwt_user = {"Authorization": f"Bearer {token(rsa, sub='user-77', groups=['analysts'])}"}
    jwt_ids = [ask(client, jwt_user, user="someone-else")]
    backend = {"Authorization": f"Bearer {token(rsa, sub='svc-1', groups=['backends'])}"}
    jwt_ids.append(ask(client, backend, user="end-user-9"))
    with store(client).engine.connect() as conn:
        rows = {r["query_id"]: r for r in conn.execute(sa.select(queries)).mappings()}
    alice = [rows[q] for q in ids]
    assert {r["user_hash"] for r in alice} == {user_hash(HASH_KEY, "key:alice")}  # the body was ignored
    assert {r["variant"] for r in alice} == {alice[0]["variant"]} and not any(r["random_assignment"] for r in alice)
    assert {r["principal"] for r in alice} == {"key:alice"}
    acted, anonymous = rows[service_ids[0]], rows[service_ids[1]]
    assert (acted["principal"], acted["user_hash"]) == ("key:webapp", user_hash(HASH_KEY, "ana@example.com"))
    assert anonymous["principal"] == "key:webapp" and anonymous["random_assignment"] and anonymous["user_hash"] is None
    assert (rows[jwt_ids[0]]["principal"], rows[jwt_ids[0]]["user_hash"]) == ("jwt:user-77", user_hash(HASH_KEY, "user-77"))
    assert (rows[jwt_ids[1]]["principal"], rows[jwt_ids[1]]["user_hash"]) == ("jwt:svc-1", user_hash(HASH_KEY, "end-user-9"))
    # the service that asked owns the query it asked for its user
    assert label(client, as_("webapp"), service_ids[0], True).json()["source"] == "owner"


def test_export_takes_effective_labels_only_and_merges_duplicate_questions(
        client: TestClient, registry: dict[str, Any], tmp_path: Path, store_url: str, jwks: JwksServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.main import app as cli_app

    forged = ask(client, as_("alice"), "Which column is bogus?")
    assert label(client, as_("bob"), forged, False, "SELECT 'forged by bob'").status_code == 404
    assert label(client, as_("alice"), forged, False, "SELECT name FROM customers WHERE age IS NULL").status_code == 201
    assert label(client, as_("rita"), forged, False, "SELECT name FROM customers").status_code == 201
    same = [ask(client, as_(who), q) for who, q in (("alice", "How many customers are there?"),
                                                   ("bob", "how many  customers are there"),
                                                   ("alice", "HOW MANY CUSTOMERS ARE THERE?"))]
    fixes = ["SELECT COUNT(*) FROM customers", "select count(*)\n  from customers;", "SELECT COUNT(id) FROM customers"]
    for qid, fix, who in zip(same, fixes, ("alice", "bob", "alice"), strict=True):
        assert label(client, as_(who), qid, False, fix).status_code == 201
    for k, v in {"T2S_SERVE_STORE_URL": store_url, "T2S_SERVE_DATABASES": json.dumps({"shop": str(registry["dataset"])}),
                 "T2S_MLFLOW_TRACKING_URI": registry["tracking_uri"]}.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    try:
        out = tmp_path / "export"
        r = CliRunner().invoke(cli_app, ["feedback", "export", "-o", str(out)], terminal_width=200)
    finally:
        get_settings.cache_clear()
    assert r.exit_code == 0, r.output
    assert "4 label(s)" in r.output and "2 duplicate question(s) merged" in r.output and "CONFLICT" in r.output
    items = {x["question"]: x for x in map(json.loads, (out / "questions.jsonl").read_text().splitlines())}
    assert items["Which column is bogus?"]["gold_sql"] == "SELECT name FROM customers"  # the review, not the forgery
    assert "forged" not in (out / "questions.jsonl").read_text()
    assert len(items) == 2
    merged = next(x for q, x in items.items() if q != "Which column is bogus?")
    assert merged["gold_sql"] == "SELECT COUNT(id) FROM customers"  # the latest of equally sourced labels
    # layout and keyword case do not make a conflict; a different query does
    assert "merged 3 labels" in merged["notes"] and "CONFLICT: 2 different corrections" in merged["notes"]


def test_labels_recorded_before_owners_were_stored_become_unverified(tmp_path: Path) -> None:
    """The migration: an old store's labels get source ``unverified`` and enter the history; only a
    reviewer may label its unowned queries; the export leaves unverified labels out."""
    from alembic import command
    from alembic.config import Config

    from serving.store import MIGRATIONS, make_engine

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    with engine.begin() as conn:
        for qid in ("old-1", "old-2"):
            conn.exec_driver_sql(
                "INSERT INTO queries (query_id, ts, random_assignment, experiment, variant, database, question, "
                "outcome, latency_ms) VALUES (?, '2026-11-30 10:00:00', 1, 'ab', 'champion', 'shop', 'q', 'ok', 1.0)",
                (qid,))
        conn.exec_driver_sql("INSERT INTO feedback (query_id, ts, correct, corrected_sql) "
                             "VALUES ('old-1', '2026-11-30 10:01:00', 0, 'SELECT 2')")
    engine.dispose()
    s = Store.open(url)
    try:
        assert [(h["source"], h["correct"]) for h in s.labels_of("old-1")] == [("unverified", False)]
        assert [r["source"] for r in s.labelled_corrections()] == ["unverified"]
        assert s.records_frame("ab").set_index("query_id").loc["old-1", "label_source"] == "unverified"
        with pytest.raises(Exception, match="no request with query_id 'old-2'"):
            s.label("old-2", True, None, None, principal="key:alice")
        assert s.label("old-2", True, None, None, principal="key:rita", reviewer=True).source == "reviewer"
    finally:
        s.close()
