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
