"""Per-principal rate limits: 429 with Retry-After, per principal and per scope; one limit shared by
replicas through a real redis-server on loopback; the documented policy when Redis goes down."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from tests.serving_prod_support import redis_server, write_api_keys
from tests.serving_support import (
    free_port,
    make_settings,
    start_uvicorn,
    write_experiment,
)

KEYS = {"ann": ("t2s_ann-key-0123456789", "caller"), "bob": ("t2s_bob-key-0123456789", "caller"),
        "ops": ("t2s_ops-key-0123456789", "admin")}
ADMIN = {"X-API-Key": KEYS["ops"][0]}  # /health/ready shows details to admins only


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    with redis_server(tmp_path) as handle:
        yield handle


def settings_for(registry: dict[str, Any], tmp_path: Path, **extra: Any) -> Any:
    values = dict(serve_auth="required", serve_api_keys_file=write_api_keys(tmp_path / "keys.json", KEYS),
                  serve_rate_limit="3/minute", serve_rate_limit_other="5/minute")
    values.update(extra)
    return make_settings(registry, f"sqlite:///{tmp_path / 'serving.db'}", write_experiment(tmp_path / "ab.yaml"),
                         **values)


def ask(client: Any, who: str, path: str = "/v1/sql") -> Any:
    body = ({"question": "How many customers are there?", "database": "shop", "execute": False}
            if path == "/v1/sql" else {"query_id": "unknown", "correct": True})
    return client.post(path, json=body, headers={"X-API-Key": KEYS[who][0]})


def test_limit_is_per_principal_and_per_scope_with_retry_after(registry: dict[str, Any], tmp_path: Path) -> None:
    with TestClient(create_app(settings_for(registry, tmp_path))) as c:
        assert [ask(c, "ann").status_code for _ in range(3)] == [200, 200, 200]
        r = ask(c, "ann")
        assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limited", r.text
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert ask(c, "bob").status_code == 200  # another principal has its own budget
        assert ask(c, "ann", "/v1/feedback").status_code == 404  # feedback counts against the other limit
        ready = c.get("/health/ready", headers=ADMIN).json()
        assert ready["rate_limits"] == {"status": "ok", "detail": "memory: per process"}


def test_two_replicas_share_one_limit_in_redis(registry: dict[str, Any], tmp_path: Path,
                                               redis_url: tuple[str, Any]) -> None:
    settings = settings_for(registry, tmp_path, serve_redis_url=redis_url[0])
    with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
        codes = [ask(client, "ann").status_code for client in (a, b, a, b)]
        assert codes == [200, 200, 200, 429]  # 3/minute in total, not per replica
        assert ask(a, "ann").status_code == 429 and ask(b, "bob").status_code == 200
        ready = a.get("/health/ready", headers=ADMIN).json()
        assert ready["rate_limits"]["status"] == "ok" and ready["rate_limits"]["detail"].startswith("redis")


def test_redis_down_falls_back_to_local_limits_or_closes(registry: dict[str, Any], tmp_path: Path,
                                                         redis_url: tuple[str, Any]) -> None:
    url, proc = redis_url
    local = settings_for(registry, tmp_path, serve_redis_url=url)
    closed = local.model_copy(update={"serve_rate_limit_on_redis_error": "closed"})
    with TestClient(create_app(local)) as c, TestClient(create_app(closed)) as strict:
        assert ask(c, "ann").status_code == 200
        proc.terminate()
        proc.wait(timeout=5)
        start = time.perf_counter()
        codes = [ask(c, "bob").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]  # still served, still limited (per process)
        assert time.perf_counter() - start < 5
        ready = c.get("/health/ready", headers=ADMIN).json()
        assert ready["status"] == "degraded" and ready["rate_limits"]["status"] == "degraded"
        assert "Redis unreachable" in ready["rate_limits"]["detail"]
        r = ask(strict, "ann")
        assert r.status_code == 503 and r.json()["error"]["type"] == "rate_limit_unavailable", r.text
        assert r.headers["retry-after"] == "5"


@pytest.mark.slow
def test_two_uvicorn_processes_share_one_limit(registry: dict[str, Any], tmp_path: Path,
                                               redis_url: tuple[str, Any]) -> None:
    import json

    env = {**os.environ,
           "T2S_MLFLOW_TRACKING_URI": registry["tracking_uri"], "T2S_PROMPTS_DIR": str(registry["prompts"]),
           "T2S_CACHE_DIR": str(registry["root"] / "cache"), "T2S_SERVE_STORE_URL": f"sqlite:///{tmp_path / 's.db'}",
           "T2S_SERVE_EXPERIMENT_FILE": str(write_experiment(tmp_path / "ab.yaml")),
           "T2S_SERVE_DATABASES": json.dumps({"shop": str(registry["dataset"])}),
           "T2S_LLM_API_KEY": "test-key", "T2S_LLM_MAX_RETRIES": "0", "T2S_SERVE_AUTH": "required",
           "T2S_SERVE_API_KEYS_FILE": str(write_api_keys(tmp_path / "keys.json", KEYS)),
           "T2S_SERVE_RATE_LIMIT": "4/minute", "T2S_REDIS_URL": redis_url[0]}
    ports = [free_port(), free_port()]
    procs = [start_uvicorn(env, port, tmp_path / f"replica{i}.log") for i, port in enumerate(ports)]
    try:
        with httpx.Client(timeout=30, trust_env=False) as http:
            codes = [ask_url(http, port) for _ in range(3) for port in ports]
        assert codes == [200, 200, 200, 200, 429, 429], codes
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=20)


def ask_url(http: httpx.Client, port: int) -> int:
    return http.post(f"http://127.0.0.1:{port}/v1/sql", headers={"X-API-Key": KEYS["ann"][0]},
                     json={"question": "How many customers are there?", "database": "shop", "execute": False}).status_code
