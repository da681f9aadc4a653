"""Shared set-up of the serving tests: a dataset, two prompt versions registered as two ``t2s-generator``
bundles (``@champion`` and ``@challenger``) on a real MLflow sqlite store, and a scripted model on loopback.

The scripted model answers from the question (see :data:`ANSWERS`) and marks nothing per variant, so both
variants produce the same SQL; the variant shows in the response and the store.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from t2s.datasets import DatasetManifest, GoldExample, write_dataset
from t2s.local_llm import free_port
from t2s.settings import Settings
from tests.fakes import FakeOpenAI, Reply

ROOT = Path(__file__).resolve().parents[1]

ANSWERS = {
    "How many customers are there?": "SELECT COUNT(*) FROM customers",
    "Customers in Atlantis": "SELECT name FROM customers WHERE city = 'Atlantis'",
    "Which column is bogus?": "SELECT bogus FROM customers",
    "Count forever": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c",
}


def answer(body: dict[str, Any]) -> Reply:
    question = body["messages"][-1]["content"].rsplit("Question: ", 1)[-1].strip()
    if "DROP TABLE" in question.upper():
        return Reply(content="```sql\nDROP TABLE customers;\n```")
    if "DELETE" in question.upper():
        return Reply(content="SELECT 1; DELETE FROM customers")
    if question.startswith("slow:"):
        return Reply(content="SELECT COUNT(*) FROM customers", delay=1.0)
    return Reply(content=f"```sql\n{ANSWERS.get(question, 'SELECT name FROM customers ORDER BY id')}\n```")


def start_fake() -> FakeOpenAI:
    """The scripted model with a listen backlog that takes a burst of concurrent connections (the standard
    library's default of 5 refuses some of them, which the client would see as an unreachable endpoint)."""
    from http.server import ThreadingHTTPServer

    default = ThreadingHTTPServer.request_queue_size
    ThreadingHTTPServer.request_queue_size = 256
    try:
        fake = FakeOpenAI()
    finally:
        ThreadingHTTPServer.request_queue_size = default
    fake.responder = answer
    return fake


def prompt_file(version: int) -> dict[str, Any]:
    return {"name": "demo", "version": version, "description": f"version {version}", "dialect": "sqlite",
            "variables": ["schema", "question"],
            "messages": [{"role": "system", "content": f"Version {version}. Write one SQLite query."},
                         {"role": "user", "content": "{{schema}}\nQuestion: {{question}}"}]}


def build_registry(root: Path, shop_db: Path, fake_url: str, tracking_uri: str | None = None,
                   prompt: Callable[[int], dict[str, Any]] = prompt_file) -> dict[str, Any]:
    """Dataset + prompts + two registered bundles with aliases; returns the paths and URIs.

    ``tracking_uri``: register on that store (e.g. a tracking server's URL) instead of a sqlite file;
    ``prompt``: the prompt file of each version (default :func:`prompt_file`).
    """
    import mlflow
    from mlflow import MlflowClient

    from t2s.bundle import REGISTERED_MODEL, bundle_config, log_bundle
    from t2s.prompts import PromptLibrary, push
    from t2s.tracking import configure_mlflow

    ds = root / "datasets" / "mini"
    ds.mkdir(parents=True)
    shutil.copy(shop_db, ds / "shop.sqlite")
    write_dataset(ds, DatasetManifest(name="mini", databases={"shop": "shop.sqlite"}),
                  [GoldExample(id="q1", question="How many customers are there?",
                               gold_sql="SELECT COUNT(*) FROM customers", db_id="shop", difficulty="easy",
                               category="aggregate")])
    prompts = root / "prompts" / "demo"
    prompts.mkdir(parents=True)
    for v in (1, 2):
        (prompts / f"v{v}.yaml").write_text(yaml.safe_dump(prompt(v), sort_keys=False))
    uri = tracking_uri or f"sqlite:///{root / 'mlflow.db'}"
    settings = Settings(mlflow_tracking_uri=uri, prompts_dir=root / "prompts", cache_dir=root / "cache")
    configure_mlflow(settings)
    push(PromptLibrary(root / "prompts"))
    client = MlflowClient()
    for v, alias in ((1, "champion"), (2, "challenger")):
        with mlflow.start_run():
            mlflow.log_metric("execution_accuracy", 0.5 + 0.1 * v)
            info = log_bundle(bundle_config(f"prompts:/demo/{v}", "compatible", "fake-model", ds, base_url=fake_url))
        client.set_registered_model_alias(REGISTERED_MODEL, alias, info.registered_model_version)
    return {"root": root, "dataset": ds, "tracking_uri": uri, "prompts": root / "prompts"}


def write_experiment(path: Path, weights: tuple[float, float] = (50, 50), name: str = "ab",
                     salt: str = "salt-1") -> Path:
    path.write_text(yaml.safe_dump({
        "name": name, "salt": salt, "control": "champion",
        "variants": [{"name": "champion", "alias": "champion", "weight": weights[0]},
                     {"name": "challenger", "alias": "challenger", "weight": weights[1]}]}, sort_keys=False))
    return path


def make_settings(reg: dict[str, Any], store_url: str, experiment: Path, **extra: Any) -> Settings:
    values: dict[str, Any] = dict(
        mlflow_tracking_uri=reg["tracking_uri"], prompts_dir=reg["prompts"], cache_dir=reg["root"] / "cache",
        serve_store_url=store_url, serve_experiment_file=experiment,
        serve_databases={"shop": str(reg["dataset"])}, llm_max_retries=0, llm_api_key="test-key",
        query_timeout_s=1.0, serve_threads=64)
    values.update(extra)
    return Settings(**values)


def pg_store_url(dsn: str) -> str:
    """A fresh database on the test PostgreSQL server, as a store URL."""
    import uuid

    import psycopg

    name = f"serving_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    return f"postgresql+psycopg://{info['user']}@{info['host']}:{info['port']}/{name}"


def serve_env(reg: dict[str, Any], tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``uvicorn`` serving process on ``reg``'s bundles, its own store under ``tmp_path``
    and the ``ab`` experiment; ``extra`` adds or overrides ``T2S_*`` variables."""
    import json
    import os

    return {**os.environ, "T2S_MLFLOW_TRACKING_URI": reg["tracking_uri"], "T2S_PROMPTS_DIR": str(reg["prompts"]),
            "T2S_SERVE_STORE_URL": f"sqlite:///{tmp_path / 'serving.db'}", "T2S_LLM_API_KEY": "test-key",
            "T2S_SERVE_EXPERIMENT_FILE": str(write_experiment(tmp_path / "ab.yaml")), "T2S_SERVE_METRICS": "none",
            "T2S_SERVE_DATABASES": json.dumps({"shop": str(reg["dataset"])}), **extra}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def start_uvicorn(env: dict[str, str], port: int, log: Path, workers: int = 1) -> subprocess.Popen[bytes]:
    """``uvicorn serving.app:app_from_env`` on loopback (``workers`` processes); waits until /health answers."""
    import httpx

    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "serving.app:app_from_env",
                                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                                 "--workers", str(workers)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1, trust_env=False).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"uvicorn did not start: {log.read_text()[-2000:]}")


__all__ = ["ANSWERS", "FakeOpenAI", "answer", "build_registry", "free_port", "make_settings", "md5",
           "pg_store_url", "serve_env", "start_fake", "start_uvicorn", "write_experiment"]


# --- fixtures shared by the serving tests (registered as a pytest plugin in tests/conftest.py) ---------

@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    """A scripted OpenAI-compatible model on loopback, one per test module."""
    server = start_fake()
    yield server
    server.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh request store: a SQLite file, then (marked ``postgres``) a database on the test server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'serving.db'}"
    return pg_store_url(request.getfixturevalue("postgres_dsn"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, shop_db: Path, fake: FakeOpenAI) -> dict[str, Any]:
    """A tmp MLflow registry with the served bundles, per test module."""
    return build_registry(tmp_path_factory.mktemp("serving"), shop_db, fake.url)
