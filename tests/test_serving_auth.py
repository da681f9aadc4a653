"""Authentication and roles through the real app: a JWKS of locally generated RSA keys on loopback,
Cognito-style access tokens, hashed API keys; the attack table; no credential in any response or log line."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.auth import check_exposure
from t2s.errors import ConfigError
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

CALLER_KEY = "t2s_caller-secret-key-0123456789abcdef"
ADMIN_KEY = "t2s_admin-secret-key-0123456789abcdef"


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {"k1": rsa_key(), "other": rsa_key(), "k2": rsa_key()}


@pytest.fixture
def jwks(keys: dict[str, Any]) -> Iterator[JwksServer]:
    server = JwksServer([public_jwk(keys["k1"], "k1")])
    yield server
    server.close()


def auth_settings(registry: dict[str, Any], tmp_path: Path, jwks_url: str, **extra: Any) -> Any:
    keys_file = write_api_keys(tmp_path / "keys.json", {"etl": (CALLER_KEY, "caller"), "ops": (ADMIN_KEY, "admin")})
    values = dict(serve_auth="required", serve_jwks_url=jwks_url, serve_jwt_issuer=ISSUER,
                  serve_jwt_client_ids=[CLIENT_ID], serve_api_keys_file=keys_file, serve_rate_limit="1000/minute",
                  serve_rate_limit_other="1000/minute", serve_jwt_leeway_s=0, serve_jwks_cooldown_s=0)
    values.update(extra)
    return make_settings(registry, f"sqlite:///{tmp_path / 'serving.db'}", write_experiment(tmp_path / "ab.yaml"),
                         **values)


@pytest.fixture
def client(registry: dict[str, Any], tmp_path: Path, jwks: JwksServer) -> Iterator[TestClient]:
    with TestClient(create_app(auth_settings(registry, tmp_path, jwks.url))) as c:
        yield c


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def feedback(client: TestClient, headers: dict[str, str]) -> Any:
    """A call that passes auth and then fails cheaply (unknown query: 404)."""
    return client.post("/v1/feedback", json={"query_id": "no-such-query", "correct": True}, headers=headers)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def hs256(claims: dict[str, Any], secret: bytes) -> str:
    """Key confusion: an HMAC "signature" with the server's public key as the secret (PyJWT refuses to make one)."""
    signing_input = _b64({"alg": "HS256", "typ": "JWT", "kid": "k1"}) + "." + _b64(claims)
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def attacks(keys: dict[str, Any]) -> dict[str, dict[str, str]]:
    import jwt
    from cryptography.hazmat.primitives import serialization

    k1 = keys["k1"]
    good = token(k1)
    header, payload, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    pem = k1.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    now = int(time.time())
    return {
        "no credentials": {},
        "garbage": bearer("not-a-jwt"),
        "garbage with dots": bearer("aaa.bbb.ccc"),
        "alg none": bearer(_b64({"alg": "none", "typ": "JWT", "kid": "k1"}) + "." + _b64(claims) + "."),
        "HS256 signed with the public key": bearer(hs256(claims, pem)),
        "expired": bearer(token(k1, exp=now - 60, iat=now - 700)),
        "not yet valid": bearer(token(k1, nbf=now + 600)),
        "wrong issuer": bearer(token(k1, iss="https://evil.example.com/pool")),
        "wrong client": bearer(token(k1, client_id="someone-else")),
        "unknown kid": bearer(token(keys["other"], kid="k-unknown")),
        "another key under a known kid": bearer(token(keys["other"], kid="k1")),
        "tampered payload": bearer(f"{header}.{_b64({**claims, 'cognito:groups': ['admin']})}.{sig}"),
        "id token": bearer(token(k1, token_use="id", aud=CLIENT_ID, client_id=None)),
        "no exp": bearer(token(k1, exp=None)),
        "no kid": bearer(jwt.encode(claims, k1, algorithm="RS256")),
        "unknown API key": {"X-API-Key": "t2s_guessed-key"},
        "API key as bearer": bearer(CALLER_KEY),
    }


def test_attack_table_is_refused_with_401_and_leaks_nothing(client: TestClient, keys: dict[str, Any],
                                                            capfd: pytest.CaptureFixture[str]) -> None:
    table = attacks(keys)
    for name, headers in table.items():
        r = feedback(client, headers)
        assert r.status_code == 401, (name, r.status_code, r.text)
        assert r.json()["error"]["type"] == "unauthorized", name
        assert r.headers["www-authenticate"].startswith("Bearer"), name
        for secret in [v.split(" ", 1)[-1] for v in headers.values()]:
            assert secret not in r.text, name
    # the attacks never reach the handlers: nothing was recorded, and no log line holds a credential
    logs = capfd.readouterr()
    lines = [json.loads(line) for line in logs.err.splitlines() if line.startswith("{")]
    assert sum(1 for line in lines if line.get("status") == 401) == len(table)
    secrets = [v.split(" ", 1)[-1] for h in table.values() for v in h.values()] + [CALLER_KEY, ADMIN_KEY]
    for secret in secrets:
        assert secret not in logs.err and secret not in logs.out


def test_roles_for_tokens_and_api_keys(client: TestClient, keys: dict[str, Any],
                                       capfd: pytest.CaptureFixture[str]) -> None:
    caller, admin = bearer(token(keys["k1"], groups=["analysts"])), bearer(token(keys["k1"], groups=["admin"]))
    for headers in (caller, admin, {"X-API-Key": CALLER_KEY}, {"X-API-Key": ADMIN_KEY}):
        assert feedback(client, headers).status_code == 404  # authenticated; the query id is unknown
    r = client.post("/v1/sql", json={"question": "How many customers are there?", "database": "shop"}, headers=caller)
    assert r.status_code == 200 and r.json()["rows"] == [[5]]
    for headers in (caller, {"X-API-Key": CALLER_KEY}):
        for method, path in (("post", "/admin/reload"), ("get", "/v1/experiments/ab/report"), ("get", "/experiments/ab"),
                             ("post", "/admin/experiments/ab/stop")):
            r = client.request(method.upper(), path, headers=headers, json={"variant": None})
            assert r.status_code == 403 and r.json()["error"]["type"] == "forbidden", (path, r.text)
    assert client.get("/v1/experiments/ab", headers=admin).status_code == 200
    assert client.post("/admin/reload", headers={"X-API-Key": ADMIN_KEY}).status_code == 200
    assert client.get("/v1/experiments/ab/report").status_code == 401
    assert client.get("/health").status_code == 200  # probes need no credentials
    ready = client.get("/health/ready", headers=admin).json()
    assert ready["auth"]["status"] == "ok" and "jwt" in ready["auth"]["detail"]
    assert any("127.0.0.1" in where for where in ready["model_endpoints"])
    for headers in ({}, caller, {"X-API-Key": "forged"}, {"Authorization": "Bearer not-a-token"}):
        probe = client.get("/health/ready", headers=headers)  # a probe without admin rights: statuses only
        assert probe.status_code == 200 and probe.json()["status"] == ready["status"]
        assert "127.0.0.1" not in probe.text and "jwt" not in probe.text and probe.json()["metrics"] == {}
        assert probe.json()["auth"] == {"status": "ok", "detail": None}
        assert list(probe.json()["model_endpoints"]) == ["endpoint-1"]
    logged = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    principals = {line.get("principal") for line in logged}
    assert {"jwt:user-123", "key:etl", "key:ops"} <= principals
    sql_line = next(line for line in logged if line.get("path") == "/v1/sql")
    assert sql_line["outcome"] == "ok" and sql_line["variant"] in ("champion", "challenger")
    assert "question" not in sql_line and "sql" not in sql_line  # content only with T2S_SERVE_LOG_CONTENT


def test_key_rotation_is_picked_up_and_a_jwks_outage_is_503(registry: dict[str, Any], tmp_path: Path,
                                                            keys: dict[str, Any]) -> None:
    server = JwksServer([public_jwk(keys["k1"], "k1")])
    try:
        with TestClient(create_app(auth_settings(registry, tmp_path, server.url, serve_jwks_cooldown_s=0.5))) as c:
            assert feedback(c, bearer(token(keys["k1"]))).status_code == 404
            fetched = server.fetches
            new = bearer(token(keys["k2"], kid="k2"))
            assert feedback(c, new).status_code == 401  # k2 not published yet
            server.keys = [public_jwk(keys["k1"], "k1"), public_jwk(keys["k2"], "k2")]
            for _ in range(5):  # inside the cooldown: refused without hammering the JWKS
                feedback(c, new)
            storm = server.fetches - fetched
            time.sleep(0.6)
            assert feedback(c, new).status_code == 404  # rotated key accepted after one refetch
            assert storm <= 1
            bogus = bearer(token(keys["other"], kid="bogus"))
            before = server.fetches
            for _ in range(10):
                assert feedback(c, bogus).status_code == 401
            assert server.fetches - before <= 1
        server.down = True
        with TestClient(create_app(auth_settings(registry, tmp_path, server.url))) as c:
            r = feedback(c, bearer(token(keys["k1"])))
            assert r.status_code == 503 and r.json()["error"]["type"] == "auth_unavailable", r.text
            assert feedback(c, {"X-API-Key": CALLER_KEY}).status_code == 404  # API keys do not need the JWKS
    finally:
        server.close()


def test_body_limit_cors_and_request_ids(registry: dict[str, Any], tmp_path: Path, jwks: JwksServer) -> None:
    settings = auth_settings(registry, tmp_path, jwks.url, serve_max_body_bytes=2048,
                             serve_cors_origins=["https://analytics.example.com"])
    with TestClient(create_app(settings)) as c:
        big = {"query_id": "q", "correct": True, "comment": "x" * 3000}
        r = c.post("/v1/feedback", json=big, headers={"X-API-Key": CALLER_KEY})
        assert r.status_code == 413 and r.json()["error"]["type"] == "too_large", r.text

        def chunked() -> Iterator[bytes]:
            yield b'{"query_id": "q", "correct": true, "comment": "'
            for _ in range(30):
                yield b"y" * 100
            yield b'"}'

        r = c.post("/v1/feedback", content=chunked(), headers={"X-API-Key": CALLER_KEY, "content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["type"] == "too_large", r.text
        small = c.post("/v1/feedback", content=iter([b'{"query_id": "q", ', b'"correct": true}']),
                       headers={"X-API-Key": CALLER_KEY, "content-type": "application/json"})
        assert small.status_code == 404, small.text  # a chunked body under the limit is replayed intact
        pre = c.options("/v1/sql", headers={"Origin": "https://analytics.example.com",
                                            "Access-Control-Request-Method": "POST",
                                            "Access-Control-Request-Headers": "authorization"})
        assert pre.headers.get("access-control-allow-origin") == "https://analytics.example.com"
        evil = c.options("/v1/sql", headers={"Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in evil.headers
        r = c.get("/health", headers={"X-Request-ID": "abc-123"})
        assert r.headers["x-request-id"] == "abc-123"
        assert len(c.get("/health", headers={"X-Request-ID": "bad id\twith tab"}).headers["x-request-id"]) == 32


def test_no_auth_only_on_loopback_and_misconfiguration_is_refused(registry: dict[str, Any], tmp_path: Path) -> None:
    settings = make_settings(registry, f"sqlite:///{tmp_path / 's.db'}", write_experiment(tmp_path / "ab.yaml"))
    check_exposure(settings, "127.0.0.1")
    with pytest.raises(ConfigError, match="T2S_SERVE_AUTH=required"):
        check_exposure(settings, "0.0.0.0")
    check_exposure(settings.model_copy(update={"serve_allow_no_auth": True}), "0.0.0.0")
    with pytest.raises(ConfigError, match="no credential source"), \
            TestClient(create_app(settings.model_copy(update={"serve_auth": "required"}))):
        pass
    with pytest.raises(ConfigError, match="asymmetric"), TestClient(create_app(settings.model_copy(update={
            "serve_auth": "required", "serve_jwt_algorithms": ["HS256"], "serve_jwks_url": "http://127.0.0.1:9/"}))):
        pass
    with pytest.raises(ConfigError, match=r"0\.0\.0\.0"), TestClient(create_app(settings.model_copy(update={
            "serve_host": "0.0.0.0"}))):
        pass
