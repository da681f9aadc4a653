"""Test support for the analyst web app: a scripted analyst model that reads the conversation, a prompt
that shows it, and a local stand-in for Cognito's hosted UI and OAuth endpoints.

**The stand-in is not Cognito**, which cannot run here. It serves what the app uses of a user pool's
domain — ``/oauth2/authorize`` (approving at once as the user the test chose, where Cognito would show its
sign-in form), ``/oauth2/token`` (authorization code with PKCE S256, refresh token), ``/oauth2/revoke``,
``/logout`` — and the pool's JWKS, with RS256 access tokens shaped like Cognito's
(:func:`tests.serving_prod_support.token`). It checks what Cognito checks on those calls: the client id,
the registered redirect URI, one use per code, the PKCE verifier, and revoked refresh tokens.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.fakes import FakeOpenAI, Reply
from tests.serving_prod_support import CLIENT_ID, public_jwk, rsa_key, token
from tests.serving_support import build_registry, prompt_file, start_fake

# The scripted analyst: question -> SQL on the tests' shop database; a follow-up's SQL depends on the
# conversation the prompt shows, so a test sees whether the earlier turns reached the model.
ANALYST = {
    "Orders per city": "SELECT c.city, COUNT(*) AS orders FROM orders o JOIN customers c ON c.id = o.customer_id "
                       "GROUP BY c.city ORDER BY c.city",
    "Amount per day": "SELECT placed AS day, SUM(amount) AS amount FROM orders GROUP BY placed ORDER BY placed",
    "Total amount": "SELECT SUM(amount) AS total FROM orders",
    "Customers": "SELECT id, name, city, age FROM customers ORDER BY id",
    "All numbers": "SELECT id, a, b, tag FROM nums ORDER BY id",
    "Count forever": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c",
}
FOLLOW_UPS = {  # (follow-up, the earlier question it refines) -> SQL
    ("Only in March", "Orders per city"):
        "SELECT c.city, COUNT(*) AS orders FROM orders o JOIN customers c ON c.id = o.customer_id "
        "WHERE o.placed >= '2024-03-01' AND o.placed < '2024-04-01' GROUP BY c.city ORDER BY c.city",
}
NO_CONTEXT_SQL = "SELECT 'the follow-up came without its conversation' AS problem"


def conversation_prompt(version: int) -> dict[str, Any]:
    spec = prompt_file(version)
    spec["variables"] = ["schema", "question", "conversation"]
    spec["messages"][1]["content"] = "{{schema}}\nEarlier turns:\n{{conversation}}\nQuestion: {{question}}"
    return spec


def analyst(body: dict[str, Any]) -> Reply:
    text = body["messages"][-1]["content"]
    earlier, _, question = text.rpartition("Question: ")
    question = question.strip()
    conversation = earlier.split("Earlier turns:", 1)[-1]
    if "DROP" in question.upper():
        return Reply(content="```sql\nDROP TABLE customers;\n```")
    for (follow_up, refines), sql in FOLLOW_UPS.items():
        if question == follow_up:
            return Reply(content=f"```sql\n{sql if refines in conversation else NO_CONTEXT_SQL}\n```")
    return Reply(content=f"```sql\n{ANALYST.get(question, 'SELECT name FROM customers ORDER BY id')}\n```")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class CognitoStandIn:
    """The user pool's domain on 127.0.0.1 (see the module doc). ``user`` is who signs in next: ``sub`` and
    ``groups``; ``access_ttl_s`` the access tokens' lifetime; ``calls`` counts requests per path."""

    def __init__(self, redirect_uri: str, client_id: str = CLIENT_ID) -> None:
        self.key = rsa_key()
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.user: dict[str, Any] = {"sub": "ann", "groups": []}
        self.access_ttl_s = 600
        self.codes: dict[str, dict[str, Any]] = {}
        self.refresh_tokens: dict[str, dict[str, Any]] = {}
        self.calls: dict[str, int] = {}
        self.issued: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: Any = None, location: str | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                owner.calls[parts.path] = owner.calls.get(parts.path, 0) + 1
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if parts.path == "/.well-known/jwks.json":
                    self._reply(200, {"keys": [public_jwk(owner.key, "k1")]})
                elif parts.path == "/oauth2/authorize":
                    self._reply(*owner.authorize(query))
                elif parts.path == "/logout":
                    ok = query.get("client_id") == owner.client_id and query.get("logout_uri")
                    self._reply(302, location=query["logout_uri"]) if ok else self._reply(400, {"error": "bad"})
                else:
                    self._reply(404, {"error": "not_found"})

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                owner.calls[parts.path] = owner.calls.get(parts.path, 0) + 1
                length = int(self.headers.get("content-length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if parts.path == "/oauth2/token":
                    self._reply(*owner.token(form))
                elif parts.path == "/oauth2/revoke":
                    owner.refresh_tokens.pop(form.get("token", ""), None)
                    self._reply(200, {})
                else:
                    self._reply(404, {"error": "not_found"})

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.jwks_url = f"{self.url}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def authorize(self, q: dict[str, str]) -> tuple[int, Any, str | None]:
        if q.get("client_id") != self.client_id or q.get("redirect_uri") != self.redirect_uri:
            return 400, {"error": "redirect_mismatch"}, None
        if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return 400, {"error": "invalid_request"}, None
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"challenge": q["code_challenge"], "redirect_uri": q["redirect_uri"], **self.user}
        return 302, None, f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q.get('state', '')})}"

    def _access(self, user: dict[str, Any]) -> dict[str, Any]:
        claims = {"exp": int(time.time()) + self.access_ttl_s, **user.get("claims", {})}  # claims: a test's overrides
        access = token(self.key, "k1", groups=user["groups"], sub=user["sub"], **claims)
        self.issued.append(access)
        return {"access_token": access, "id_token": "not-used-by-the-app", "token_type": "Bearer",
                "expires_in": self.access_ttl_s}

    def token(self, form: dict[str, str]) -> tuple[int, Any, None]:
        if form.get("client_id") != self.client_id:
            return 400, {"error": "invalid_client"}, None
        if form.get("grant_type") == "authorization_code":
            grant = self.codes.pop(form.get("code", ""), None)  # one use, whatever happens
            if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
                return 400, {"error": "invalid_grant"}, None
            if _b64url(hashlib.sha256(form.get("code_verifier", "").encode()).digest()) != grant["challenge"]:
                return 400, {"error": "invalid_grant"}, None
            refresh = secrets.token_urlsafe(24)
            self.refresh_tokens[refresh] = {k: grant[k] for k in ("sub", "groups", "claims") if k in grant}
            return 200, {**self._access(grant), "refresh_token": refresh}, None
        if form.get("grant_type") == "refresh_token":
            user = self.refresh_tokens.get(form.get("refresh_token", ""))
            if user is None:
                return 400, {"error": "invalid_grant"}, None
            return 200, self._access(user), None
        return 400, {"error": "unsupported_grant_type"}, None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- fixtures of the web app's tests (registered as a pytest plugin in tests/conftest.py) ----------------

@pytest.fixture(scope="session")
def analyst_model() -> Iterator[FakeOpenAI]:
    """The scripted analyst (:func:`analyst`) on loopback, shared by the web tests."""
    server = start_fake()
    server.responder = analyst
    yield server
    server.close()


@pytest.fixture(scope="session")
def web_registry(tmp_path_factory: pytest.TempPathFactory, shop_db: Path, analyst_model: FakeOpenAI) -> dict[str, Any]:
    """Two registered bundles whose prompt shows the conversation, answering through the scripted analyst."""
    return build_registry(tmp_path_factory.mktemp("web"), shop_db, analyst_model.url, prompt=conversation_prompt)
