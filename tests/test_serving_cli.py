"""`t2s serve` without a champion, `t2s experiments`, `t2s feedback export` → `t2s datasets validate`, and
two uvicorn replicas on loopback that agree on every user's variant."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cli.main import app as cli_app
from serving.app import create_app
from serving.assignment import assign
from t2s.settings import get_settings
from tests.serving_support import (
    free_port,
    make_settings,
    start_uvicorn,
    write_experiment,
)

runner = CliRunner()


def env_for(reg: dict[str, Any], store_url: str, experiment: Path) -> dict[str, str]:
    return {"T2S_MLFLOW_TRACKING_URI": reg["tracking_uri"], "T2S_PROMPTS_DIR": str(reg["prompts"]),
            "T2S_CACHE_DIR": str(reg["root"] / "cache"), "T2S_SERVE_STORE_URL": store_url,
            "T2S_SERVE_EXPERIMENT_FILE": str(experiment),
            "T2S_SERVE_DATABASES": json.dumps({"shop": str(reg["dataset"])}),
            "T2S_LLM_API_KEY": "test-key", "T2S_LLM_MAX_RETRIES": "0", "T2S_SERVE_STATUS_TTL_S": "0"}


def test_serve_without_a_champion_names_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T2S_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    monkeypatch.setenv("T2S_SERVE_EXPERIMENT_FILE", str(tmp_path / "none.yaml"))
    get_settings.cache_clear()
    result = runner.invoke(cli_app, ["serve", "--port", "1"], terminal_width=200)
    assert result.exit_code == 1, result.output
    assert "no alias @champion" in result.output and "make demo" in result.output


@pytest.mark.parametrize(("workers", "servers", "expected"), [(2, "", "1"), (1, "", None), (2, "3", "3")])
def test_serve_divides_the_cores_among_workers_for_the_local_model(
        workers: int, servers: str, expected: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    import cli.serve_cli as serve_cli
    import t2s.local_llm as local_llm

    ran: dict[str, Any] = {}
    monkeypatch.setattr(serve_cli, "_check_registry", lambda: [])
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: ran.update(kw))
    monkeypatch.setattr(local_llm.os, "sched_getaffinity", lambda _pid: {0, 1})  # a 2-core machine
    monkeypatch.setenv("T2S_LLM_PROVIDER", "local")
    monkeypatch.setenv("T2S_SERVE_HOST", "127.0.0.1")
    monkeypatch.delenv("T2S_LOCAL_LLM_SERVERS", raising=False)
    if servers:
        monkeypatch.setenv("T2S_LOCAL_LLM_SERVERS", servers)
    get_settings.cache_clear()
    try:
        result = runner.invoke(cli_app, ["serve", "--port", "1", "--workers", str(workers)], terminal_width=200)
        assert result.exit_code == 0, result.output
        assert ran["workers"] == workers
        assert os.environ.get("T2S_LOCAL_LLM_SERVERS") == (expected or None)  # the workers read it at start
    finally:
        if not servers:
            os.environ.pop("T2S_LOCAL_LLM_SERVERS", None)  # set by the command itself, not by monkeypatch
        get_settings.cache_clear()


def test_experiments_stop_and_feedback_export_validate(registry: dict[str, Any], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    store_url = f"sqlite:///{tmp_path / 's.db'}"
    experiment = write_experiment(tmp_path / "ab.yaml")
    for k, v in env_for(registry, store_url, experiment).items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    settings = make_settings(registry, store_url, experiment, serve_status_ttl_s=0)
    with TestClient(create_app(settings)) as client:
        r = runner.invoke(cli_app, ["experiments", "stop", "--variant", "challenger", "--reason", "test"])
        assert r.exit_code == 0, r.output
        variants = {client.post("/v1/sql", json={"question": "List the customers", "database": "shop",
                                                 "user_id": f"u{i}"}).json()["variant"] for i in range(12)}
        assert variants == {"challenger"}
        assert "stopped, all traffic to challenger" in runner.invoke(cli_app, ["experiments", "show"]).output
        assert runner.invoke(cli_app, ["experiments", "stop", "--variant", "zzz"]).exit_code == 2
        assert runner.invoke(cli_app, ["experiments", "resume"]).exit_code == 0
        assert client.get("/v1/experiments/ab").json()["status"] == "running"

        assert runner.invoke(cli_app, ["feedback", "export", "-o", str(tmp_path / "none")]).exit_code == 2
        fixes = {"How many customers are there?": ("SELECT COUNT(*) FROM customers", True),
                 "Which column is bogus?": ("SELECT name FROM customers WHERE age IS NULL", False),
                 "Customers in Atlantis": ("SELECT name, city FROM customers WHERE city = 'Paris'", False)}
        for question, (fixed, ok) in fixes.items():
            qid = client.post("/v1/sql", json={"question": question, "database": "shop"}).json()["query_id"]
            client.post("/v1/feedback", json={"query_id": qid, "correct": ok, "corrected_sql": fixed,
                                              "comment": "checked by an analyst"})
        qid = client.post("/v1/sql", json={"question": "List the customers", "database": "shop"}).json()["query_id"]
        client.post("/v1/feedback", json={"query_id": qid, "correct": True})  # no correction: not exported
    out = tmp_path / "export"
    r = runner.invoke(cli_app, ["feedback", "export", "-o", str(out)], terminal_width=200)
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in (out / "questions.jsonl").read_text().splitlines()]
    assert sorted(x["gold_sql"] for x in lines) == sorted(sql for sql, _ in fixes.values())
    assert {x["question"] for x in lines} == set(fixes) and all(x["db_id"] == "shop" for x in lines)
    assert (out / "shop.sqlite").is_file()
    check = runner.invoke(cli_app, ["datasets", "validate", str(out)], terminal_width=200)
    assert check.exit_code == 0, check.output
    again = runner.invoke(cli_app, ["feedback", "export", "-o", str(out)], terminal_width=200)
    assert again.exit_code == 2 and "not empty" in again.output


@pytest.mark.slow
def test_two_replicas_agree_on_every_users_variant(registry: dict[str, Any], tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'shared.db'}"
    experiment = write_experiment(tmp_path / "ab.yaml", weights=(30, 70), salt="replicas")
    env = {**os.environ, **env_for(registry, store_url, experiment)}
    ports = [free_port(), free_port()]
    procs = [start_uvicorn(env, port, tmp_path / f"replica{i}.log") for i, port in enumerate(ports)]
    try:
        with httpx.Client(timeout=30, trust_env=False) as http:
            seen: dict[str, set[str]] = {}
            for i in range(30):
                user = f"user-{i}"
                for port in ports:
                    r = http.post(f"http://127.0.0.1:{port}/v1/sql",
                                  json={"question": "List the customers", "database": "shop", "user_id": user})
                    assert r.status_code == 200, r.text
                    seen.setdefault(user, set()).add(r.json()["variant"])
        assert all(len(v) == 1 for v in seen.values()), seen
        expected = {u: assign("replicas", [("champion", 30), ("challenger", 70)], u).variant for u in seen}
        assert {u: next(iter(v)) for u, v in seen.items()} == expected
        assert {next(iter(v)) for v in seen.values()} == {"champion", "challenger"}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=20)
