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
    tmp_path.mkdir(parents=True, exist_ok=True)
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
    import time

    import httpx

    from tests.serving_support import free_port, serve_env, start_uvicorn

    keys = write_api_keys(tmp_path / "keys.json", {"etl": (CALLER_KEY, "caller"), "ops": (ADMIN_KEY, "admin")})
    env = serve_env(registry, tmp_path, T2S_SERVE_AUTH="required", T2S_SERVE_API_KEYS_FILE=str(keys),
                    T2S_SERVE_USER_HASH_KEY=HASH_KEY, T2S_SERVE_API_KEYS_CHECK_S="3600", T2S_SERVE_RELOAD_POLL_S="0.3")
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


def test_every_error_has_one_shape_starlettes_own_included(registry: dict[str, Any], tmp_path: Path,
                                                           capfd: pytest.CaptureFixture[str]) -> None:
    settings = http_settings(registry, tmp_path, serve_cors_origins=["https://analytics.example.com"])
    with TestClient(create_app(settings)) as c:
        cases = {
            "unknown path": c.get("/v2/nothing/here?access_token=abc-secret-token"),
            "wrong method": c.get("/v1/sql", headers=CALLER),
            "wrong method, no credentials": c.put("/health"),
            "body not JSON": c.post("/v1/sql", content=b"{not json", headers={**CALLER, "content-type": "application/json"}),
            "wrong content type": c.post("/v1/feedback", content=b"query_id=x", headers={
                **CALLER, "content-type": "application/x-www-form-urlencoded"}),
            "refused CORS preflight": c.options("/v1/sql", headers={"Origin": "https://evil.example.com",
                                                                    "Access-Control-Request-Method": "POST"}),
            "no credentials": c.post("/v1/sql", json={"question": "hi", "database": "shop"}),
        }
        for name, r in cases.items():
            assert r.status_code >= 400, (name, r.status_code)
            assert r.headers["content-type"] == "application/json", (name, r.headers["content-type"], r.text)
            body = r.json()
            assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}, (name, body)
            assert body["error"]["message"] and "detail" not in body, name
        assert cases["unknown path"].status_code == 404 and cases["unknown path"].json()["error"]["type"] == "not_found"
        assert "abc-secret-token" not in cases["unknown path"].text
        assert cases["wrong method"].status_code == 405 and cases["wrong method"].headers["allow"] == "POST"
        assert cases["wrong method, no credentials"].headers["allow"] == "GET"
        assert cases["body not JSON"].status_code == 400
        assert cases["refused CORS preflight"].status_code == 400
        assert cases["refused CORS preflight"].json()["error"]["type"] == "cors_refused"
    logged = capfd.readouterr()
    assert "/v2/nothing/here" in logged.err and "abc-secret-token" not in logged.err + logged.out  # path, no query


def test_t2s_serve_runs_uvicorn_without_its_access_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn's access log prints query strings (``?access_token=…``); the app's own JSON line is the log."""
    import uvicorn
    from typer.testing import CliRunner

    import cli.serve_cli as serve_cli
    from cli.main import app as cli_app
    from t2s.settings import get_settings

    ran: dict[str, Any] = {}
    monkeypatch.setattr(serve_cli, "_check_registry", lambda: [])
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: ran.update(kw))
    monkeypatch.setenv("T2S_SERVE_HOST", "127.0.0.1")
    get_settings.cache_clear()
    result = CliRunner().invoke(cli_app, ["serve", "--port", "1"], terminal_width=200)
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert ran["access_log"] is False and ran["proxy_headers"] is False  # X-Forwarded-* is the app's business


def test_the_openapi_document_states_the_runtime_question_limit(registry: dict[str, Any], tmp_path: Path) -> None:
    with TestClient(create_app(http_settings(registry, tmp_path, serve_max_question_chars=300))) as c:
        schema = c.get("/openapi.json").json()["components"]["schemas"]
        assert schema["SqlCreate"]["properties"]["question"]["maxLength"] == 300

        def ask(question: str) -> Any:
            return c.post("/v1/sql", json={"question": question, "database": "shop", "execute": False}, headers=CALLER)

        assert ask("x" * 300).status_code == 200
        assert ask("x" * 301).status_code == 422
        padded = ask(" " * 10 + "x" * 295)  # the schema counts the raw text, and so does the service
        assert padded.status_code == 422 and "305 characters" in padded.json()["error"]["message"]


def test_503s_and_answers_reveal_no_internal_address(fake: Any, registry: dict[str, Any], tmp_path: Path) -> None:
    import sqlalchemy as sa

    from tests.fakes import Reply
    from tests.serving_support import answer

    port = fake.url.rsplit(":", 1)[-1].split("/")[0]
    answers = []
    with TestClient(create_app(http_settings(registry, tmp_path, llm_timeout_s=0.3))) as c:
        try:
            for reply in (Reply(content="SELECT 1", delay=1.0),  # times out: the endpoint is unavailable (503)
                          Reply(status=500, error="model crashed"),  # fails: outcome llm_error
                          Reply(status=400, error="maximum context length is 4096 tokens")):  # refuses this request
                fake.responder = lambda body, reply=reply: reply
                answers.append(c.post("/v1/sql", json={"question": f"Question {len(answers)}", "database": "shop"},
                                      headers=CALLER))
        finally:
            fake.responder = answer
        with c.app.state.service.store.engine.connect() as conn:  # type: ignore[attr-defined]
            details = [d for (d,) in conn.execute(sa.text("SELECT detail FROM queries WHERE outcome = 'llm_error'"))]
    down, failed, refused = answers
    assert down.status_code == 503 and down.json()["error"]["type"] == "unavailable", down.text
    assert failed.status_code == 200 and failed.json()["outcome"] == "llm_error", failed.text
    assert refused.status_code == 200 and "4096 tokens" in refused.json()["detail"]  # the provider's reason is kept
    for r in answers:
        assert "127.0.0.1" not in r.text and port not in r.text and "http://" not in r.text, r.text
    assert len(details) == 3 and all("127.0.0.1" in d for d in details)  # the store keeps it for the operator

    ghost = tmp_path / "ghost.yaml"  # a variant whose alias does not exist: 503 without the registry's location
    ghost.write_text("name: ab\nsalt: s\nvariants:\n  - {name: champion, alias: ghost, weight: 1}\n")
    with TestClient(create_app(http_settings(registry, tmp_path / "g", serve_experiment_file=ghost))) as c:
        r = c.post("/v1/sql", json={"question": "hi", "database": "shop"}, headers=CALLER)
    assert r.status_code == 503 and r.json()["error"]["type"] == "variant_unavailable", r.text
    assert str(tmp_path) not in r.text and "sqlite:" not in r.text and "mlflow" not in r.text.lower()


def test_malformed_claims_in_a_validly_signed_token_are_401(registry: dict[str, Any], tmp_path: Path) -> None:
    from tests.serving_prod_support import CLIENT_ID, ISSUER, JwksServer, public_jwk, rsa_key, token

    key = rsa_key()
    jwks = JwksServer([public_jwk(key, "k1")])
    try:
        settings = http_settings(registry, tmp_path, serve_jwks_url=jwks.url, serve_jwt_issuer=ISSUER,
                                 serve_jwt_client_ids=[CLIENT_ID])
        with TestClient(create_app(settings)) as c:
            bad = {"groups a number": {"cognito:groups": 5}, "groups of objects": {"cognito:groups": [{"a": 1}]},
                   "groups nested": {"cognito:groups": [["admin"]]}, "client_id a list": {"client_id": [CLIENT_ID]},
                   "sub a number": {"sub": 123}, "sub an object": {"sub": {"id": "x"}}, "sub empty": {"sub": ""},
                   "aud an object": {"aud": {"x": 1}}, "token_use a list": {"token_use": ["access"]}}
            for name, claims in bad.items():
                r = c.get("/v1/experiments/ab", headers={"Authorization": f"Bearer {token(key, **claims)}"})
                assert r.status_code == 401, (name, r.status_code, r.text)
                assert r.json()["error"]["type"] == "unauthorized", name
            good = token(key, groups=["admin"], aud=[CLIENT_ID, "other"])
            assert c.get("/v1/experiments/ab", headers={"Authorization": f"Bearer {good}"}).status_code == 200
    finally:
        jwks.close()


def test_security_headers_on_answers_pages_and_errors(client: TestClient) -> None:
    from serving.security import HSTS

    answer = client.post("/v1/sql", json={"question": "How many customers are there?", "database": "shop",
                                          "execute": False}, headers=CALLER)
    page = client.get("/experiments/ab", headers=ADMIN)
    missing = client.get("/nowhere")
    assert answer.status_code == 200 and page.status_code == 200 and missing.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    for r in (answer, page, missing):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert "strict-transport-security" not in r.headers  # plain HTTP from the test client
    assert answer.headers["content-security-policy"].startswith("default-src 'none'")
    csp = page.headers["content-security-policy"]  # the report: its inline styles, no script at all
    assert "script-src" not in csp and "default-src 'none'" in csp and "style-src 'unsafe-inline'" in csp
    assert "<script" not in page.text
    # HSTS only when the request came over TLS: directly, or as a trusted proxy says
    assert client.get("/health", headers={"X-Forwarded-Proto": "https"}).headers["strict-transport-security"] == HSTS
    untrusted = TestClient(client.app, client=("192.0.2.1", 4000))
    assert "strict-transport-security" not in untrusted.get("/health", headers={"X-Forwarded-Proto": "https"}).headers
    tls = TestClient(client.app, base_url="https://testserver")
    assert tls.get("/health").headers["strict-transport-security"] == HSTS


def test_hsts_setting_and_docs_served_from_this_origin(registry: dict[str, Any], tmp_path: Path) -> None:
    import re

    from serving.docs import assets_dir

    with TestClient(create_app(http_settings(registry, tmp_path, serve_hsts="always"))) as c:
        assert "strict-transport-security" in c.get("/health").headers
        docs = c.get("/docs")
        assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
        csp = docs.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
        sources = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
        assert sources and all(not s.startswith(("http:", "https:", "//")) for s in sources), sources
        assert "<script>" not in docs.text  # no inline script: the policy would block it
        for src in sources:
            asset = c.get("/" + src)
            assert asset.status_code == 200, src
        bundle = c.get("/docs/static/swagger-ui-bundle.js")
        assert bundle.headers["content-type"].startswith("text/javascript")
        assert bundle.content == (assets_dir() / "swagger-ui-bundle.js").read_bytes()
        for probe in ("../../../etc/passwd", "%2e%2e%2fsecurity.py", "init.py"):
            assert c.get(f"/docs/static/{probe}").status_code == 404
    with TestClient(create_app(http_settings(registry, tmp_path / "off", serve_hsts="off", serve_docs=False))) as c:
        r = c.get("/docs", headers={"X-Forwarded-Proto": "https"})
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
        assert "strict-transport-security" not in r.headers
        assert c.get("/openapi.json").status_code == 200


@pytest.mark.slow
def test_swagger_ui_renders_under_its_policy_in_chromium(registry: dict[str, Any], tmp_path: Path) -> None:
    """A real browser loads /docs from a uvicorn server: Swagger UI runs under the page's CSP and lists the
    operations; no request leaves the origin."""
    from tests.browser import Browser, chromium_path
    from tests.serving_support import free_port, serve_env, start_uvicorn

    if chromium_path() is None:
        pytest.skip("chromium is not installed (infra/local/install_system_deps.sh)")
    port = free_port()
    proc = start_uvicorn(serve_env(registry, tmp_path), port, tmp_path / "server.log")
    try:
        with Browser() as browser:
            page = browser.page()
            page.call("Network.enable")
            page.goto(f"http://127.0.0.1:{port}/docs")
            text = page.wait_for_text("/v1/sql", "/v1/feedback", "/health/ready", timeout_s=60)
            assert "Text2SQL Ops serving" in text
            urls = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
            assert urls and all(u.startswith(f"http://127.0.0.1:{port}/") for u in urls), urls
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_auth_required_refuses_the_built_in_user_hash_key(registry: dict[str, Any], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn
    from typer.testing import CliRunner

    import cli.serve_cli as serve_cli
    from cli.main import app as cli_app
    from t2s.errors import ConfigError
    from t2s.settings import get_settings

    for key in ("t2s-user", "short-key"):  # the built-in key, and one too short to resist guessing
        with pytest.raises(ConfigError, match="T2S_SERVE_USER_HASH_KEY"), \
                TestClient(create_app(http_settings(registry, tmp_path, serve_user_hash_key=key))):
            pass
    with TestClient(create_app(http_settings(registry, tmp_path, serve_auth="none", serve_user_hash_key="t2s-user"))):
        pass  # loopback development without auth keeps the default
    ran: dict[str, Any] = {}
    monkeypatch.setattr(serve_cli, "_check_registry", lambda: [])
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: ran.update(kw))
    for name, value in {"T2S_SERVE_AUTH": "required", "T2S_SERVE_USER_HASH_KEY": "t2s-user",
                        "T2S_SERVE_API_KEYS_FILE": str(tmp_path / "keys.json")}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    result = CliRunner().invoke(cli_app, ["serve", "--port", "1"], terminal_width=200)
    get_settings.cache_clear()
    assert result.exit_code == 2 and "T2S_SERVE_USER_HASH_KEY" in result.output, result.output
    assert ran == {}  # refused before any worker starts
