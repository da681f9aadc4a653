"""The team topology run for real: `t2s tracking serve`'s server (MLflow on PostgreSQL, artifacts proxied
into a local moto S3), and two engineers' sweeps logged to it concurrently from two processes: nothing lost."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.tracking_server import TrackingServer

RUNS, STEPS = 4, 10

SWEEP = textwrap.dedent("""
    import sys, mlflow
    from pipelines.mlflow_runs import experiment_id
    who = sys.argv[1]
    mlflow.set_experiment(experiment_id=experiment_id("shared-sweep"))  # both may create it: the race is handled
    for i in range(%(runs)d):
        with mlflow.start_run(run_name=f"{who}-{i}"):
            mlflow.log_params({"engineer": who, "prompt_version": i})
            for step in range(%(steps)d):
                mlflow.log_metric("execution_accuracy", (i + step) / 100, step=step)
            mlflow.log_text(f"report of {who} run {i}", "report.md")
""") % {"runs": RUNS, "steps": STEPS}


@pytest.fixture(scope="module")
def server(postgres_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    from psycopg.conninfo import conninfo_to_dict

    pg = conninfo_to_dict(postgres_dsn)
    backend = f"postgresql+psycopg://{pg['user']}@{pg['host']}:{pg['port']}/mlflow_shared"
    log = tmp_path_factory.mktemp("tracking") / "mlflow-server.log"
    with TrackingServer(backend, workers=2, log_path=log) as srv:
        yield srv


@pytest.mark.slow
@pytest.mark.postgres
def test_two_engineers_sweeps_logged_concurrently_lose_nothing(server: TrackingServer, tmp_path: Path) -> None:
    import boto3
    from mlflow.tracking import MlflowClient

    script = tmp_path / "sweep.py"
    script.write_text(SWEEP)
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.url}
    for key in ("MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):  # clients never touch S3: the server proxies
        env.pop(key, None)
    procs = [subprocess.Popen([sys.executable, str(script), who], env=env, stderr=subprocess.PIPE)
             for who in ("ana", "ben")]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-3000:]

    client = MlflowClient(tracking_uri=server.url)
    exp = client.get_experiment_by_name("t2s/shared-sweep")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    assert sorted(r.info.run_name for r in runs) == sorted(f"{w}-{i}" for w in ("ana", "ben") for i in range(RUNS))
    for run in runs:
        history = client.get_metric_history(run.info.run_id, "execution_accuracy")
        assert sorted(m.step for m in history) == list(range(STEPS))
        assert run.data.params["engineer"] == run.info.run_name.split("-")[0]
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    some = runs[0]
    local = client.download_artifacts(some.info.run_id, "report.md", str(tmp_path))
    who, i = some.info.run_name.split("-")
    assert Path(local).read_text() == f"report of {who} run {i}"

    s3 = boto3.client("s3", endpoint_url=server.s3_endpoint_url, aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=server.bucket)
            for o in page.get("Contents", [])]
    reports = [k for k in keys if k.startswith(f"{server.prefix}/") and k.endswith("/report.md")]
    assert len(reports) == 2 * RUNS


@pytest.mark.slow
@pytest.mark.postgres
def test_serving_loads_the_champion_from_the_shared_server(server: TrackingServer, shop_db: Path,
                                                           tmp_path: Path) -> None:
    """Champion and challenger bundles registered on the shared server (artifacts into S3); the serving
    app, pointed only at the server's URL, loads them and answers."""
    import json

    import boto3
    import httpx

    from tests.serving_support import build_registry, free_port, start_fake, start_uvicorn, write_experiment

    fake = start_fake()
    try:
        reg = build_registry(tmp_path, shop_db, fake.url, tracking_uri=server.url)
        env = {**os.environ, "T2S_MLFLOW_TRACKING_URI": server.url, "MLFLOW_TRACKING_URI": server.url,
               "T2S_PROMPTS_DIR": str(reg["prompts"]), "T2S_CACHE_DIR": str(tmp_path / "cache"),
               "T2S_SERVE_STORE_URL": f"sqlite:///{tmp_path / 'store.db'}",
               "T2S_SERVE_EXPERIMENT_FILE": str(write_experiment(tmp_path / "ab.yaml")),
               "T2S_SERVE_DATABASES": json.dumps({"shop": str(reg["dataset"])}), "T2S_LLM_API_KEY": "test-key"}
        port = free_port()
        proc = start_uvicorn(env, port, tmp_path / "serve.log")
        try:
            variants = set()
            with httpx.Client(timeout=30, trust_env=False) as http:
                for user in ("u1", "u2", "u3", "u4", "u5", "u6"):
                    r = http.post(f"http://127.0.0.1:{port}/v1/sql", json={
                        "question": "How many customers are there?", "database": "shop", "user_id": user})
                    assert r.status_code == 200, r.text
                    body = r.json()
                    assert body["rows"] == [[5]]
                    variants.add(body["variant"])
            assert variants == {"champion", "challenger"}
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        fake.close()
    s3 = boto3.client("s3", endpoint_url=server.s3_endpoint_url, aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=server.bucket)
            for o in page.get("Contents", [])]
    assert sum(k.endswith("/MLmodel") for k in keys) >= 2  # both bundles' artifacts live in S3


@pytest.mark.slow
@pytest.mark.postgres
def test_the_whole_loop_runs_against_the_shared_server(server: TrackingServer, shop_db: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An engineer evaluates two prompt versions and promotes the winner on the shared server; the serving
    app, given only the server's URL, loads that champion and answers with it."""

    import yaml
    from fastapi.testclient import TestClient
    from mlflow import MlflowClient
    from typer.testing import CliRunner

    from cli.main import app
    from serving.app import create_app
    from t2s.settings import Settings, get_settings
    from tests.fakes import FakeOpenAI
    from tests.test_eval_pipeline import answer, write_project

    # its own prompt name: other tests register "demo" on this server
    ds = write_project(tmp_path, shop_db, "loop", "loop")
    fake = FakeOpenAI()
    fake.responder = answer
    env = {"T2S_LLM_PROVIDER": "compatible", "T2S_LLM_BASE_URL": fake.url, "T2S_LLM_MODEL": "fake-model",
           "T2S_LLM_API_KEY": "test-key", "T2S_PROMPTS_DIR": str(tmp_path / "prompts"),
           "T2S_AUDIT_LOG": str(tmp_path / "audit.jsonl"), "T2S_LLM_MAX_RETRIES": "0",
           "T2S_MLFLOW_TRACKING_URI": server.url, "MLFLOW_TRACKING_URI": server.url}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        evaluated = runner.invoke(app, ["eval", "-d", str(ds), "-P", "loop@1", "-P", "loop@2", "-m",
                                        "compatible:fake-model", "--sweep-id", "shared-loop",
                                        "--out-dir", str(tmp_path / "reports")], terminal_width=200)
        assert evaluated.exit_code == 0, evaluated.output
        promoted = runner.invoke(app, ["promote", "--best", "--sweep", "shared-loop"], terminal_width=200)
        assert promoted.exit_code == 0, promoted.output
        champion = MlflowClient(server.url, server.url).get_model_version_by_alias("t2s-generator", "champion")
        assert champion.tags["t2s.prompt"] == "loop@2"

        experiment = tmp_path / "champion.yaml"
        experiment.write_text(yaml.safe_dump({"name": "loop", "salt": "s", "control": "champion", "variants": [
            {"name": "champion", "alias": "champion", "weight": 100}]}, sort_keys=False))
        settings = Settings(mlflow_tracking_uri=server.url, prompts_dir=tmp_path / "prompts",
                            cache_dir=tmp_path / "serve-cache", serve_store_url=f"sqlite:///{tmp_path / 's.db'}",
                            serve_experiment_file=experiment, serve_databases={"shop": str(ds)},
                            llm_provider="compatible", llm_base_url=fake.url, llm_model="fake-model",
                            llm_api_key="test-key", llm_max_retries=0)
        with TestClient(create_app(settings)) as http:
            r = http.post("/v1/sql", json={"question": "Customers without an age", "database": "shop",
                                           "user_id": "reviewer-1"})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["rows"] == [["Cid"]] and body["prompt_version"] == "loop@2"
            assert body["model_version"] == str(champion.version)
    finally:
        fake.close()
