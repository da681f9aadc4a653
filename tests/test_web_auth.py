"""Web sign-in over HTTP, against the local stand-in for Cognito's hosted UI and token endpoint
(:class:`tests.web_support.CognitoStandIn` — it is not Cognito, which cannot run here).

The happy path (code + PKCE → an HttpOnly, Secure, SameSite=Strict cookie and nothing else), then what an
attacker tries: a callback from another browser, a replayed or forged ``state``, an open redirect, a
state-changing call without the CSRF token or from another origin, an old cookie after sign-out, a
token the identity provider issued to another client; and refresh, expiry and misconfiguration.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.oauth import LOGIN_COOKIE, SESSION_COOKIE
from t2s.errors import ConfigError
from tests.serving_prod_support import CLIENT_ID, ISSUER
from tests.serving_support import make_settings, write_experiment
from tests.web_support import CognitoStandIn

APP = "https://testserver"


@pytest.fixture
def cognito() -> Iterator[CognitoStandIn]:
    server = CognitoStandIn(redirect_uri=f"{APP}/app/callback")
    yield server
    server.close()


def oauth_settings(reg: dict[str, Any], tmp_path: Path, cognito: CognitoStandIn, **extra: Any) -> Any:
    values: dict[str, Any] = dict(
        serve_auth="required", serve_jwks_url=cognito.jwks_url, serve_jwt_issuer=ISSUER,
        serve_jwt_client_ids=[CLIENT_ID], serve_jwks_cooldown_s=0, serve_oauth_domain=cognito.url,
        serve_oauth_client_id=CLIENT_ID, serve_oauth_redirect_url=f"{APP}/app/callback",
        serve_rate_limit="1000/minute", serve_rate_limit_other="1000/minute")
    values.update(extra)
    return make_settings(reg, f"sqlite:///{tmp_path / 'serving.db'}", write_experiment(tmp_path / "ab.yaml"), **values)


@pytest.fixture
def client(web_registry: dict[str, Any], tmp_path: Path, cognito: CognitoStandIn) -> Iterator[TestClient]:
    with TestClient(create_app(oauth_settings(web_registry, tmp_path, cognito)), base_url=APP) as c:
        yield c


def to_hosted_ui(c: TestClient, next_path: str = "/app") -> str:
    """Start signing in (the login cookie lands in ``c``); returns the hosted UI's redirect back to the app."""
    r = c.get("/app/login", params={"next": next_path}, follow_redirects=False)
    assert r.status_code == 303
    back = httpx.get(r.headers["location"], follow_redirects=False, trust_env=False)
    assert back.status_code == 302, back.text
    return back.headers["location"]


def sign_in(c: TestClient, next_path: str = "/app") -> httpx.Response:
    return c.get(to_hosted_ui(c, next_path), follow_redirects=False)


def set_cookie(r: httpx.Response, name: str) -> str:
    return next(h for h in r.headers.get_list("set-cookie") if h.startswith(f"{name}="))


def csrf(c: TestClient) -> str:
    me = c.get("/app/api/me").json()
    assert me["signed_in"], me
    return str(me["csrf_token"])


def test_sign_in_keeps_the_tokens_on_the_server(client: TestClient, cognito: CognitoStandIn) -> None:
    r = client.get("/app/login", follow_redirects=False)
    location = urlsplit(r.headers["location"])
    query = parse_qs(location.query)
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{cognito.url}/oauth2/authorize"
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["redirect_uri"] == [f"{APP}/app/callback"] and query["client_id"] == [CLIENT_ID]
    login = set_cookie(r, LOGIN_COOKIE).lower()
    assert all(flag in login for flag in ("httponly", "secure", "samesite=lax", "path=/", "max-age=600"))

    done = sign_in(client, "/app/review")
    assert done.status_code == 303 and done.headers["location"] == "/app/review"
    cookie = set_cookie(done, SESSION_COOKIE)
    assert all(flag in cookie.lower() for flag in ("httponly", "secure", "samesite=strict", "path=/", "max-age=28800"))
    everything = done.text + str(done.headers) + client.get("/app/api/me").text + client.get("/app").text
    assert cognito.issued and all(tok not in everything for tok in cognito.issued)
    me = client.get("/app/api/me").json()
    assert me["principal"] == "jwt:ann" and me["role"] == "caller" and len(me["csrf_token"]) > 30
    assert client.post("/v1/sessions", json={"database": "shop"}, headers={"X-CSRF-Token": me["csrf_token"]}
                       ).status_code == 201


def test_state_changing_calls_need_the_csrf_token_from_this_origin(client: TestClient) -> None:
    sign_in(client)
    token = csrf(client)
    body = {"database": "shop"}
    refused = [client.post("/v1/sessions", json=body),
               client.post("/v1/sessions", json=body, headers={"X-CSRF-Token": "x" * len(token)}),
               client.post("/v1/sessions", json=body, headers={"X-CSRF-Token": token, "Origin": "https://evil.example"}),
               client.post("/app/logout"),
               client.post("/v1/feedback", json={"query_id": "q", "correct": True})]
    for r in refused:
        assert r.status_code == 403 and r.json()["error"]["type"] == "csrf_failed", r.text
    made = client.post("/v1/sessions", json=body, headers={"X-CSRF-Token": token, "Origin": APP})
    assert made.status_code == 201
    assert client.get(f"/v1/sessions/{made.json()['session_id']}").status_code == 200  # reads need no token
    client.cookies.clear()
    assert client.get(f"/v1/sessions/{made.json()['session_id']}").status_code == 401


def test_a_callback_from_another_browser_or_replayed_is_refused(client: TestClient) -> None:
    attacker = client
    back = to_hosted_ui(attacker)  # the attacker's own code and state, sent to a victim (login CSRF)
    own = dict(attacker.cookies)
    attacker.cookies.clear()  # the victim's browser: no login cookie of that attempt
    r = attacker.get(back, follow_redirects=False)
    assert r.status_code == 400 and "another browser" in r.text and SESSION_COOKIE not in str(r.headers)
    attacker.cookies.update(own)
    again = attacker.get(back, follow_redirects=False)  # the attempt was spent by that try
    assert again.status_code == 400 and "already used" in again.text
    forged = attacker.get("/app/callback", params={"code": "x", "state": "forged"}, follow_redirects=False)
    assert forged.status_code == 400 and "already used" in forged.text
    denied = attacker.get("/app/callback", params={"error": "access_denied", "error_description": "<script>"})
    assert denied.status_code == 400 and "<script>" not in denied.text and "&lt;script&gt;" in denied.text
    assert "content-security-policy" in denied.headers
    for evil in ("https://evil.example/", "//evil.example", "/app\\@evil.example", "javascript:alert(1)"):
        assert sign_in(attacker, evil).headers["location"] == "/app"


def test_refresh_then_sign_out_forgets_the_session(client: TestClient, cognito: CognitoStandIn) -> None:
    cognito.access_ttl_s = 61  # refreshed once less than 60 s remain
    sign_in(client)
    token = csrf(client)
    time.sleep(1.2)
    before = cognito.calls.get("/oauth2/token", 0)
    assert client.post("/v1/sessions", json={"database": "shop"}, headers={"X-CSRF-Token": token}).status_code == 201
    assert cognito.calls["/oauth2/token"] == before + 1 and len(cognito.issued) == 2
    old = client.cookies.get(SESSION_COOKIE)
    out = client.post("/app/logout", headers={"X-CSRF-Token": token})
    assert out.status_code == 200 and out.json()["redirect"].startswith(f"{cognito.url}/logout?client_id=")
    assert cognito.calls.get("/oauth2/revoke") == 1 and not cognito.refresh_tokens
    assert f"{SESSION_COOKIE}=\"\"" in set_cookie(out, SESSION_COOKIE) or "max-age=0" in set_cookie(out, SESSION_COOKIE).lower()
    client.cookies.set(SESSION_COOKIE, old or "")
    assert client.get("/app/api/me").json()["signed_in"] is False
    assert client.post("/v1/sessions", json={"database": "shop"}, headers={"X-CSRF-Token": token}).status_code == 401


def test_a_refused_refresh_or_an_old_session_signs_out(web_registry: dict[str, Any], tmp_path: Path,
                                                       cognito: CognitoStandIn) -> None:
    with TestClient(create_app(oauth_settings(web_registry, tmp_path, cognito, serve_session_ttl_s=2.0)), base_url=APP) as c:
        cognito.access_ttl_s = 61
        sign_in(c)
        cognito.refresh_tokens.clear()  # revoked at the identity provider
        time.sleep(1.2)
        assert c.get("/app/api/me").json()["signed_in"] is False
        cognito.access_ttl_s = 600
        sign_in(c)
        assert c.get("/app/api/me").json()["signed_in"] is True
        time.sleep(2.2)
        assert c.get("/app/api/me").json()["signed_in"] is False


def test_tokens_for_another_client_or_an_unreachable_provider_fail_the_sign_in(
        web_registry: dict[str, Any], tmp_path: Path, cognito: CognitoStandIn) -> None:
    with TestClient(create_app(oauth_settings(web_registry, tmp_path, cognito)), base_url=APP) as c:
        cognito.user = {"sub": "mallory", "groups": ["admin"], "claims": {"client_id": "someone-else"}}
        r = sign_in(c)
        assert r.status_code == 400 and "refused" in r.text and SESSION_COOKIE not in str(r.headers)
        cognito.user = {"sub": "ann", "groups": []}
        back = to_hosted_ui(c)
        cognito.close()
        down = c.get(back, follow_redirects=False)
        assert down.status_code == 400 and "cannot be reached" in down.text


@pytest.mark.parametrize(("change", "message"), [
    ({"serve_oauth_redirect_url": None}, "T2S_SERVE_OAUTH_REDIRECT_URL"),
    ({"serve_auth": "none"}, "T2S_SERVE_AUTH=required"),
    ({"serve_oauth_client_id": "other-client"}, "not in T2S_SERVE_JWT_CLIENT_IDS"),
    ({"serve_oauth_redirect_url": "http://app.example/app/callback"}, "must be https"),
])
def test_half_or_unsafe_sign_in_settings_refuse_to_start(web_registry: dict[str, Any], tmp_path: Path, cognito: CognitoStandIn,
                                                         change: dict[str, Any], message: str) -> None:
    settings = oauth_settings(web_registry, tmp_path, cognito, **change)
    with pytest.raises(ConfigError, match=message), TestClient(create_app(settings), base_url=APP):
        pass


def test_sign_in_attempts_are_limited_per_address_and_a_new_sign_in_ends_the_old_session(
        web_registry: dict[str, Any], tmp_path: Path, cognito: CognitoStandIn) -> None:
    settings = oauth_settings(web_registry, tmp_path, cognito, serve_rate_limit_other="4/minute")
    with TestClient(create_app(settings), base_url=APP) as c:
        sign_in(c)
        first = c.cookies.get(SESSION_COOKIE)
        sign_in(c)
        second = c.cookies.get(SESSION_COOKIE)
        assert first and second and first != second
        c.cookies.set(SESSION_COOKIE, first)
        assert c.get("/app/api/me").json()["signed_in"] is False  # the earlier session is gone
        statuses = [c.get("/app/login", follow_redirects=False).status_code for _ in range(3)]
        assert statuses == [303, 303, 429]  # 4 per minute from this address, two spent above
