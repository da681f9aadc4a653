"""The HTTP surface under abusive callers: readiness probes cached and rate-limited, one error shape for
everything the app answers (Starlette's own 404/405/400 included), malformed token claims, security
headers, and API keys revoked on every process."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from tests.serving_prod_support import write_api_keys
from tests.serving_support import make_settings, write_experiment

CALLER_KEY = "t2s_http-caller-key-0123456789abcdef"
ADMIN_KEY = "t2s_http-admin-key-0123456789abcdefg"
CALLER, ADMIN = {"X-API-Key": CALLER_KEY}, {"X-API-Key": ADMIN_KEY}
HASH_KEY = "http-test-user-hash-key-0123456789ab"


def http_settings(registry: dict[str, Any], tmp_path: Path, **extra: Any) -> Any:
    values: dict[str, Any] = dict(
        serve_auth="required", serve_user_hash_key=HASH_KEY, serve_metrics="none",
        serve_api_keys_file=write_api_keys(tmp_path / "keys.json", {"etl": (CALLER_KEY, "caller"),
                                                                     "ops": (ADMIN_KEY, "admin")}),
        serve_rate_limit="1000/minute", serve_rate_limit_other="1000/minute", serve_ready_rate_limit="5/minute",
        serve_ready_cache_s=30.0, serve_forwarded_allow_ips=["testclient"])
    values.update(extra)
    return make_settings(registry, f"sqlite:///{tmp_path / 'serving.db'}", write_experiment(tmp_path / "ab.yaml"),
                         **values)


@pytest.fixture
def client(registry: dict[str, Any], tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(http_settings(registry, tmp_path))) as c:
        yield c


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Counts the real readiness checks (the wrapped function still runs every check)."""
    import time

    from serving.routers import health

    calls: list[float] = []
    real = health.readiness

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(time.monotonic())
        return real(*args, **kwargs)

    monkeypatch.setattr(health, "readiness", counted)
    return calls


def from_addr(ip: str, **headers: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip, **headers}


def test_readiness_is_cached_shared_by_concurrent_probes_and_fresh_only_for_admins(
        client: TestClient, checks: list[float]) -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:  # a cold cache hit by eight probes at once
        answers = list(pool.map(lambda i: client.get("/health/ready", headers=from_addr(f"203.0.113.{i}")), range(8)))
    assert [r.status_code for r in answers] == [200] * 8
    assert len(checks) == 1 and len({r.json()["checked_at"] for r in answers}) == 1
    assert client.get("/health/ready", headers=ADMIN).json()["checked_at"] == answers[0].json()["checked_at"]
    assert len(checks) == 1
    for _ in range(2):  # an anonymous caller cannot force work
        assert client.get("/health/ready?fresh=true", headers=from_addr("203.0.113.50")).status_code == 200
    assert len(checks) == 1
    fresh = client.get("/health/ready?fresh=true", headers=ADMIN)
    assert fresh.status_code == 200 and len(checks) == 2 and fresh.json()["checked_at"] > answers[0].json()["checked_at"]
    assert "127.0.0.1" in fresh.text  # the admin view has the endpoint address; the anonymous one does not
    assert "127.0.0.1" not in client.get("/health/ready", headers=from_addr("203.0.113.51")).text
    assert client.get("/health").json() == {"status": "ok"} and len(checks) == 2  # liveness checks nothing


def test_readiness_expires(registry: dict[str, Any], tmp_path: Path, checks: list[float]) -> None:
    import time

    with TestClient(create_app(http_settings(registry, tmp_path, serve_ready_cache_s=0.3))) as c:
        c.get("/health/ready")
        c.get("/health/ready")
        time.sleep(0.4)
        c.get("/health/ready")
    assert len(checks) == 2


def test_anonymous_probes_are_rate_limited_per_client_address(client: TestClient) -> None:
    for _ in range(5):
        assert client.get("/health/ready", headers=from_addr("198.51.100.7")).status_code == 200
    limited = client.get("/health/ready", headers=from_addr("198.51.100.7"))
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["type"] == "rate_limited"
    assert client.get("/health/ready", headers=from_addr("198.51.100.7", **CALLER)).status_code == 429  # not admin
    assert client.get("/health/ready", headers=from_addr("198.51.100.8")).status_code == 200  # another client
    for _ in range(8):  # admins (the on-call, a deploy script) are not limited by the probe limit
        assert client.get("/health/ready", headers=from_addr("198.51.100.7", **ADMIN)).status_code == 200
    assert client.get("/health").status_code == 200  # liveness never is
    # X-Forwarded-For from a proxy that is not trusted is ignored: all these share the proxy's own address
    untrusted = TestClient(client.app, client=("192.0.2.1", 4000))  # no `with`: the app is already started
    codes = [untrusted.get("/health/ready", headers=from_addr(f"203.0.113.{i}")).status_code for i in range(6)]
    assert codes == [200] * 5 + [429]


def test_a_key_removed_from_the_file_stops_working_within_the_check_interval(registry: dict[str, Any],
                                                                              tmp_path: Path) -> None:
    import time

    settings = http_settings(registry, tmp_path, serve_api_keys_check_s=0.2)
    keys = settings.serve_api_keys_file
    with TestClient(create_app(settings)) as c:
        assert c.post("/admin/experiments/ab/stop", json={"variant": None}, headers=ADMIN).status_code == 200
        assert c.get("/v1/experiments/ab", headers=CALLER).status_code == 403  # known, not an admin
        write_api_keys(keys, {"ops": (ADMIN_KEY, "admin")})  # etl revoked (atomic replace: a new inode)
        time.sleep(0.3)
        revoked = c.get("/v1/experiments/ab", headers=CALLER)
        assert revoked.status_code == 401 and revoked.json()["error"]["message"] == "unknown API key"
        keys.write_text('[{"name": "ops", "sha256": "truncated')  # a broken edit refuses every key, 503
        time.sleep(0.3)
        broken = c.get("/v1/experiments/ab", headers=ADMIN)
        assert broken.status_code == 503 and broken.json()["error"]["type"] == "auth_unavailable", broken.text
        assert ADMIN_KEY not in broken.text and "truncated" not in broken.text
        assert c.get("/health/ready").json()["auth"]["status"] == "degraded"
        write_api_keys(keys, {"ops": (ADMIN_KEY, "admin"), "etl": (CALLER_KEY, "caller")})
        time.sleep(0.3)
        assert c.get("/v1/experiments/ab", headers=CALLER).status_code == 403  # back, as a caller


@pytest.mark.slow
def test_admin_reload_revokes_a_key_on_every_process(registry: dict[str, Any], tmp_path: Path) -> None:
    """Two uvicorn processes on one store and keys file. Neither checks the file on its own (interval one
    hour): POST /admin/reload on the first must make the second re-read it too."""
    import json
    import os
    import time

    import httpx

    from tests.serving_support import free_port, start_uvicorn

    keys = write_api_keys(tmp_path / "keys.json", {"etl": (CALLER_KEY, "caller"), "ops": (ADMIN_KEY, "admin")})
    env = {**os.environ, "T2S_MLFLOW_TRACKING_URI": registry["tracking_uri"], "T2S_PROMPTS_DIR": str(registry["prompts"]),
           "T2S_SERVE_STORE_URL": f"sqlite:///{tmp_path / 'shared.db'}",
           "T2S_SERVE_EXPERIMENT_FILE": str(write_experiment(tmp_path / "ab.yaml")),
           "T2S_SERVE_DATABASES": json.dumps({"shop": str(registry["dataset"])}), "T2S_LLM_API_KEY": "test-key",
           "T2S_SERVE_AUTH": "required", "T2S_SERVE_API_KEYS_FILE": str(keys), "T2S_SERVE_USER_HASH_KEY": HASH_KEY,
           "T2S_SERVE_API_KEYS_CHECK_S": "3600", "T2S_SERVE_RELOAD_POLL_S": "0.3", "T2S_SERVE_METRICS": "none"}
    ports = [free_port(), free_port()]
    procs = []
    try:
        for i, port in enumerate(ports):
            procs.append(start_uvicorn(env, port, tmp_path / f"server{i}.log"))
        urls = [f"http://127.0.0.1:{p}/v1/experiments/ab" for p in ports]
        with httpx.Client(timeout=30, trust_env=False) as http:
            assert [http.get(u, headers=CALLER).status_code for u in urls] == [403, 403]
            write_api_keys(keys, {"ops": (ADMIN_KEY, "admin")})
            assert [http.get(u, headers=CALLER).status_code for u in urls] == [403, 403]  # not re-read yet
            r = http.post(f"http://127.0.0.1:{ports[0]}/admin/reload", headers=ADMIN)
            assert r.status_code == 200 and r.json()["errors"] == [], r.text
            assert http.get(urls[0], headers=CALLER).status_code == 401  # the process that got the call
            deadline = time.monotonic() + 10
            while http.get(urls[1], headers=CALLER).status_code != 401:
                assert time.monotonic() < deadline, "the second process never re-read the keys file"
                time.sleep(0.1)
            followed = time.monotonic() - (deadline - 10)
            assert http.get(urls[1], headers=ADMIN).status_code == 200
        assert followed < 3.0, followed
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=20)
