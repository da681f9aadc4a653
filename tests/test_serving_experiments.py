"""Stopping and resuming an experiment, reloading aliases, an unreachable registry, no champion, and model
calls that overlap instead of queueing (through the real app and registry)."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from tests.serving_support import FakeOpenAI, make_settings, write_experiment


@pytest.fixture
def client(registry: dict[str, Any], tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(registry, f"sqlite:///{tmp_path / 's.db'}", write_experiment(tmp_path / "ab.yaml"),
                             serve_status_ttl_s=0)
    with TestClient(create_app(settings)) as c:
        yield c


def variants_of(client: TestClient, users: int = 24) -> set[str]:
    return {client.post("/v1/sql", json={"question": "List the customers", "database": "shop",
                                         "user_id": f"u{i}"}).json()["variant"] for i in range(users)}


def test_stop_and_resume_without_restart(client: TestClient) -> None:
    assert variants_of(client) == {"champion", "challenger"}
    r = client.post("/admin/experiments/ab/stop", json={"variant": "champion", "reason": "challenger regressed"})
    assert r.status_code == 200 and r.json()["status"] == "stopped:champion"
    assert variants_of(client) == {"champion"}
    assert client.get("/v1/experiments/ab").json()["status"] == "stopped:champion"
    bad = client.post("/admin/experiments/ab/stop", json={"variant": "nobody"})
    assert bad.status_code == 422 and "champion, challenger" in bad.json()["error"]["message"]
    assert client.post("/admin/experiments/other/stop", json={"variant": None}).status_code == 404
    assert client.post("/admin/experiments/ab/stop", json={"variant": None}).json()["status"] == "running"
    assert variants_of(client) == {"champion", "challenger"}


def test_reload_follows_alias_moves_and_survives_an_unreachable_registry(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    mlflow_client = MlflowClient()
    mlflow_client.set_registered_model_alias("t2s-generator", "challenger", "1")
    try:
        r = client.post("/admin/reload")
        assert r.status_code == 200 and r.json()["errors"] == []
        assert r.json()["variants"] == {"champion": "1", "challenger": "1"}
    finally:
        mlflow_client.set_registered_model_alias("t2s-generator", "challenger", "2")
    assert client.post("/admin/reload").json()["variants"]["challenger"] == "2"

    service = client.app.state.service  # type: ignore[attr-defined]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    service.settings = service.variants.settings = service.settings.model_copy(
        update={"mlflow_tracking_uri": "http://127.0.0.1:9"})
    r = client.post("/admin/reload")
    assert r.status_code == 200 and r.json()["errors"], r.text
    assert r.json()["variants"] == {"champion": "1", "challenger": "2"}  # still serving what it had
    ask = client.post("/v1/sql", json={"question": "How many customers are there?", "database": "shop"})
    assert ask.status_code == 200 and ask.json()["rows"] == [[5]]
    ready = client.get("/health/ready").json()
    assert ready["status"] == "degraded" and ready["registry"]["status"] == "error"
    assert "serving the versions loaded before" in ready["registry"]["detail"]


def test_no_champion_registered_says_what_to_run(registry: dict[str, Any], tmp_path: Path) -> None:
    settings = make_settings(registry, f"sqlite:///{tmp_path / 's.db'}", tmp_path / "none.yaml",
                             mlflow_tracking_uri=f"sqlite:///{tmp_path / 'empty-mlflow.db'}")
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/sql", json={"question": "How many customers are there?", "database": "shop"})
        assert r.status_code == 503 and r.json()["error"]["type"] == "variant_unavailable"
        assert "make demo" in r.json()["error"]["message"]
        ready = c.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["variants"]["champion"] == {"loaded": False}


def test_slow_model_calls_overlap(client: TestClient, fake: FakeOpenAI) -> None:
    fake.max_inflight = 0

    def one(i: int) -> int:
        return client.post("/v1/sql", json={"question": f"slow: {i}", "database": "shop",
                                            "user_id": f"u{i}"}).status_code

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(60) as pool:
        statuses = list(pool.map(one, range(60)))
    elapsed = time.perf_counter() - start
    print(f"60 requests against a 1 s model: {elapsed:.2f} s, {fake.max_inflight} in flight at most")
    assert statuses == [200] * 60
    assert fake.max_inflight >= 40  # a serialized or small-pool design would show 1-4 here


def test_report_endpoints_read_the_store(client: TestClient) -> None:
    empty = client.get("/v1/experiments/ab/report")
    assert empty.status_code == 200, empty.text
    assert empty.json()["has_data"] is False and empty.json()["experiment"] == "ab"
    labels = {"champion": 0, "challenger": 0}
    for i in range(30):
        r = client.post("/v1/sql", json={"question": "How many customers are there?", "database": "shop",
                                         "user_id": f"r{i}"}).json()
        if i % 3:
            client.post("/v1/feedback", json={"query_id": r["query_id"], "correct": r["variant"] == "challenger"})
            labels[r["variant"]] += 1
    client.post("/v1/sql", json={"question": "Which column is bogus?", "database": "shop"})  # anonymous
    report = client.get("/v1/experiments/ab/report").json()
    assert report["has_data"] is True and report["control"] == "champion"
    by_name = {v["name"]: v for v in report["variants"]}
    assert sum(v["accuracy"]["requests"] for v in by_name.values()) == 30
    for name, n in labels.items():
        assert by_name[name]["accuracy"]["labelled"] == n
        assert by_name[name]["offline_accuracy"] == pytest.approx(0.6 if name == "champion" else 0.7)
    assert by_name["challenger"]["accuracy"]["online_accuracy"] in (None, 1.0)
    assert by_name["champion"]["model_version"] == "1" and by_name["challenger"]["prompt_version"] == "demo@2"
    assert sum(report["unassigned"]["requests_by_variant"].values()) == 1
    page = client.get("/experiments/ab")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "challenger" in page.text and "<svg" in page.text
    assert client.get("/v1/experiments/nope/report").status_code == 404
    assert client.get("/experiments/nope").json()["error"]["type"] == "not_found"


def test_weight_changes_and_a_stop_are_epochs_of_the_report(client: TestClient, tmp_path: Path) -> None:
    def ask(users: list[str]) -> dict[str, str]:
        return {u: client.post("/v1/sql", json={"question": "How many customers are there?", "database": "shop",
                                                "user_id": u}).json()["variant"] for u in users}

    early = [f"e{i}" for i in range(40)]
    before = ask(early)
    write_experiment(tmp_path / "ab.yaml", weights=(60, 40))
    assert client.post("/admin/reload").json()["errors"] == []
    after = ask(early + [f"n{i}" for i in range(40)])
    assert client.post("/admin/experiments/ab/stop", json={"variant": "champion"}).status_code == 200
    ask(["late"])
    report = client.get("/v1/experiments/ab/report").json()
    epochs = report["epochs"]
    assert [e["shares"] for e in epochs] == [{"champion": 0.5, "challenger": 0.5}, {"champion": 0.6, "challenger": 0.4},
                                             {"champion": 1.0, "challenger": 0.0}]
    assert [e["requests"] for e in epochs] == [40, 80, 1] and epochs[2]["stopped_variant"] == "champion"
    assert all(e["split_recorded"] and e["recorded_at"] for e in epochs)
    assert len({e["epoch"] for e in epochs}) == 3 and not report["srm"]["flagged"]
    assert sum(v["users"] for v in report["variants"]) == 80          # each person once; "late" came while stopped
    moved = sum(before[u] != after[u] for u in early)
    assert all(before[u] == "challenger" for u in early if before[u] != after[u])
    if moved:
        assert any(n.startswith(f"{moved} user(s) were served by another variant") for n in report["notes"])
    page = client.get("/experiments/ab").text
    assert page.count("<tr data-epoch=") == 3 and "stopped on champion" in page
