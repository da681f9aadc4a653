"""Sign-in for the web app: the Cognito hosted UI, authorization code + PKCE, done by the server.

A backend-for-frontend: the browser never holds a token. ``GET /app/login`` starts an attempt (a random
``state``, a PKCE verifier kept server-side, a short-lived ``__Host-t2s-login`` cookie binding the attempt
to this browser) and redirects to ``{T2S_SERVE_OAUTH_DOMAIN}/oauth2/authorize``. ``GET /app/callback``
takes the attempt once (a replayed or foreign ``state`` is refused), exchanges the code at
``/oauth2/token`` with the verifier, checks the access token with the same :class:`serving.auth.
Authenticator` every API call uses, and keeps the tokens in a server-side session (:mod:`serving.
web_state`: Redis or the store). The browser gets one opaque cookie, ``__Host-t2s-session``: HttpOnly,
Secure, SameSite=Strict, Path=/, for at most ``T2S_SERVE_SESSION_TTL_S`` (8 h).

:class:`CookieAuth` (ASGI middleware) turns that cookie into the session's access token on the way in
(``Authorization: Bearer …`` added to the request), so ``/v1/*`` authorizes browser calls exactly as it
authorizes API callers — roles, rate limits and ownership included. It refreshes an access token about to
expire with the refresh token, and refuses a state-changing call (POST, PUT, PATCH, DELETE) that carries
the cookie without the session's CSRF token in ``X-CSRF-Token`` or that comes from another origin (403).
Requests that bring their own ``Authorization`` or ``X-API-Key`` are left alone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from t2s.errors import ConfigError, Text2SQLError
from t2s.settings import Settings

log = logging.getLogger("t2s.serving.oauth")

LOGIN_COOKIE = "__Host-t2s-login"
SESSION_COOKIE = "__Host-t2s-session"
CSRF_HEADER = "x-csrf-token"
LOGIN_TTL_S = 600.0
REFRESH_MARGIN_S = 60.0
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class SignInFailed(Text2SQLError):
    """The sign-in could not be completed (HTTP 400): unknown or reused attempt, refused code, bad token."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge) as RFC 7636 defines them."""
    verifier = _b64url(secrets.token_bytes(48))  # 64 characters from the unreserved set
    return verifier, _b64url(hashlib.sha256(verifier.encode()).digest())


def digest(secret: str) -> str:
    """What the state store is keyed by instead of a secret the browser holds."""
    return hashlib.sha256(secret.encode()).hexdigest()


def safe_next(path: str | None) -> str:
    """Where to go after sign-in: a path of the app, never another site (no open redirect)."""
    if not path or not path.startswith("/app") or path.startswith("//") or "\\" in path:
        return "/app"
    parts = urlsplit(path)
    return "/app" if parts.scheme or parts.netloc else path


@dataclass(frozen=True)
class OAuthConfig:
    """The user pool's hosted UI and the web app's client (``T2S_SERVE_OAUTH_*``)."""

    domain: str
    client_id: str
    client_secret: str | None
    redirect_url: str
    logout_url: str
    scopes: tuple[str, ...]

    @classmethod
    def from_settings(cls, s: Settings) -> OAuthConfig | None:
        given = {"T2S_SERVE_OAUTH_DOMAIN": s.serve_oauth_domain, "T2S_SERVE_OAUTH_CLIENT_ID": s.serve_oauth_client_id,
                 "T2S_SERVE_OAUTH_REDIRECT_URL": s.serve_oauth_redirect_url}
        if not any(given.values()):
            return None
        missing = [name for name, value in given.items() if not value]
        if missing:
            raise ConfigError(f"web sign-in is half configured: set {', '.join(missing)} too (or none of "
                              "T2S_SERVE_OAUTH_*)", field="serve_oauth_domain")
        if s.serve_auth != "required" or not s.serve_jwks_url:
            raise ConfigError("web sign-in (T2S_SERVE_OAUTH_*) needs T2S_SERVE_AUTH=required and the user pool's "
                              "T2S_SERVE_JWKS_URL, T2S_SERVE_JWT_ISSUER: the tokens it gets are checked like "
                              "every bearer token", field="serve_oauth_domain")
        if s.serve_oauth_client_id not in s.serve_jwt_client_ids:
            raise ConfigError(f"T2S_SERVE_OAUTH_CLIENT_ID {s.serve_oauth_client_id!r} is not in "
                              "T2S_SERVE_JWT_CLIENT_IDS: the app's own tokens would be refused",
                              field="serve_oauth_client_id")
        redirect = urlsplit(s.serve_oauth_redirect_url or "")
        if redirect.scheme not in ("https", "http") or not redirect.netloc:
            raise ConfigError("T2S_SERVE_OAUTH_REDIRECT_URL must be an absolute URL such as "
                              "https://HOST/app/callback", field="serve_oauth_redirect_url")
        if redirect.scheme == "http" and redirect.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError("T2S_SERVE_OAUTH_REDIRECT_URL must be https (plain http only on loopback)",
                              field="serve_oauth_redirect_url")
        origin = f"{redirect.scheme}://{redirect.netloc}"
        return cls(domain=(s.serve_oauth_domain or "").rstrip("/"), client_id=s.serve_oauth_client_id or "",
                   client_secret=s.serve_oauth_client_secret.get_secret_value() if s.serve_oauth_client_secret
                   else None, redirect_url=s.serve_oauth_redirect_url or "",
                   logout_url=s.serve_oauth_logout_url or f"{origin}/app", scopes=tuple(s.serve_oauth_scopes))

    @property
    def origin(self) -> str:
        parts = urlsplit(self.redirect_url)
        return f"{parts.scheme}://{parts.netloc}"

    def authorize_url(self, state: str, challenge: str) -> str:
        return f"{self.domain}/oauth2/authorize?" + urlencode({
            "response_type": "code", "client_id": self.client_id, "redirect_uri": self.redirect_url,
            "scope": " ".join(self.scopes), "state": state, "code_challenge": challenge,
            "code_challenge_method": "S256"})

    def end_session_url(self) -> str:
        """Cognito's ``/logout``: ends the hosted UI's own session too, then returns to the app."""
        return f"{self.domain}/logout?" + urlencode({"client_id": self.client_id, "logout_uri": self.logout_url})


class WebSessions:
    """Sign-in attempts and signed-in sessions, kept in :mod:`serving.web_state`."""

    def __init__(self, config: OAuthConfig, state: Any, authenticator: Any, ttl_s: float) -> None:
        import httpx

        self.config = config
        self.state = state
        self.auth = authenticator
        self.ttl_s = ttl_s
        self.http = httpx.Client(timeout=10.0, trust_env=False)

    def close(self) -> None:
        self.http.close()

    # -- signing in

    def begin(self, next_path: str | None) -> tuple[str, str]:
        """(the hosted UI's URL, the value of the login cookie binding this attempt to the browser)."""
        state, binding = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier, challenge = pkce_pair()
        self.state.put(f"login:{digest(state)}", {"verifier": verifier, "binding": digest(binding),
                                                  "next": safe_next(next_path)}, LOGIN_TTL_S)
        return self.config.authorize_url(state, challenge), binding

    def finish(self, code: str, state: str, binding: str | None) -> tuple[str, str]:
        """Exchange the code; returns (the new session cookie's value, where to go)."""
        attempt = self.state.pop(f"login:{digest(state)}")  # used once, whatever happens next
        if attempt is None:
            raise SignInFailed("this sign-in link has expired or was already used; sign in again")
        if not binding or not hmac.compare_digest(attempt["binding"], digest(binding)):
            raise SignInFailed("this sign-in was started in another browser; sign in again")
        tokens = self._token_call({"grant_type": "authorization_code", "code": code,
                                   "redirect_uri": self.config.redirect_url, "code_verifier": attempt["verifier"]})
        principal = self._check(tokens.get("access_token"))
        if not tokens.get("refresh_token"):
            log.warning("the token endpoint returned no refresh token: the session ends with the access token")
        cookie = secrets.token_urlsafe(32)
        now = time.time()
        self.state.put(f"web:{digest(cookie)}", {
            "access_token": tokens["access_token"], "refresh_token": tokens.get("refresh_token"),
            "access_expires_at": now + float(tokens.get("expires_in") or 3600), "csrf": secrets.token_urlsafe(32),
            "principal": principal.id, "role": principal.role, "created_at": now, "expires_at": now + self.ttl_s,
        }, self.ttl_s)
        return cookie, attempt["next"]

    def _check(self, access_token: Any) -> Any:
        from serving.auth import Unauthenticated

        if not isinstance(access_token, str) or not access_token:
            raise SignInFailed("the identity provider returned no access token")
        try:
            return self.auth.authenticate(access_token, None, "oauth")
        except Unauthenticated as exc:
            raise SignInFailed(f"the identity provider's access token was refused: {exc}") from None

    def _token_call(self, form: dict[str, str]) -> dict[str, Any]:
        import httpx

        headers = {"Accept": "application/json"}
        if self.config.client_secret:
            basic = base64.b64encode(f"{self.config.client_id}:{self.config.client_secret}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        else:
            form = {**form, "client_id": self.config.client_id}
        try:
            response = self.http.post(f"{self.config.domain}/oauth2/token", data=form, headers=headers)
        except httpx.HTTPError as exc:
            raise SignInFailed(f"the identity provider cannot be reached ({type(exc).__name__})") from None
        if response.status_code != 200:
            try:
                reason = str(response.json().get("error", ""))[:80]
            except ValueError:
                reason = ""
            raise SignInFailed(f"the identity provider refused the {form['grant_type']} grant "
                               f"(HTTP {response.status_code} {reason})".rstrip())
        try:
            body = response.json()
        except ValueError:
            raise SignInFailed("the identity provider's token response is not JSON") from None
        if not isinstance(body, dict):
            raise SignInFailed("the identity provider's token response is not an object")
        return body

    # -- signed in

    def session(self, cookie: str | None) -> dict[str, Any] | None:
        """The live session behind a cookie, its access token refreshed when about to expire; ``None``
        when there is none (unknown, expired, or the refresh was refused — then it is deleted)."""
        if not cookie:
            return None
        key = f"web:{digest(cookie)}"
        record = self.state.get(key)
        now = time.time()
        if record is None or record["expires_at"] <= now:
            return None
        if record["access_expires_at"] - REFRESH_MARGIN_S > now:
            return record
        if not record.get("refresh_token"):
            self.state.delete(key)
            return None
        try:
            tokens = self._token_call({"grant_type": "refresh_token", "refresh_token": record["refresh_token"]})
            self._check(tokens.get("access_token"))
        except SignInFailed as exc:
            log.info("session refresh refused (%s): signed out", exc)
            self.state.delete(key)
            return None
        record.update(access_token=tokens["access_token"],
                      refresh_token=tokens.get("refresh_token") or record["refresh_token"],
                      access_expires_at=now + float(tokens.get("expires_in") or 3600))
        self.state.put(key, record, record["expires_at"] - now)
        return record

    def end(self, cookie: str | None) -> None:
        """Sign out: forget the session and revoke its refresh token (best effort)."""
        if not cookie:
            return
        record = self.state.pop(f"web:{digest(cookie)}")
        if record and record.get("refresh_token"):
            try:
                form = {"token": record["refresh_token"]}
                if not self.config.client_secret:
                    form["client_id"] = self.config.client_id
                auth = (self.config.client_id, self.config.client_secret) if self.config.client_secret else None
                self.http.post(f"{self.config.domain}/oauth2/revoke", data=form, auth=auth)
            except Exception as exc:  # the session is gone here either way
                log.info("refresh token revocation failed: %s", exc)


def cookie_value(headers: list[tuple[bytes, bytes]], name: str) -> str | None:
    from http.cookies import CookieError, SimpleCookie

    for key, value in headers:
        if key == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except CookieError:
                continue
            if name in jar:
                return jar[name].value
    return None


class CookieAuth:
    """ASGI middleware: the session cookie becomes the session's bearer token (see the module doc)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        sessions: WebSessions | None = getattr(scope.get("app").state, "web_sessions", None) if scope.get("app") \
            else None
        if scope["type"] != "http" or sessions is None:
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        if any(k in (b"authorization", b"x-api-key") for k, _ in headers):
            await self.app(scope, receive, send)
            return
        cookie = cookie_value(headers, SESSION_COOKIE)
        if cookie is None:
            await self.app(scope, receive, send)
            return
        import anyio

        from serving.web_state import StateUnavailable

        try:
            record = await anyio.to_thread.run_sync(sessions.session, cookie)
        except StateUnavailable as exc:
            await _refuse(scope, receive, send, 503, "session_unavailable", str(exc))
            return
        if record is None:  # expired or signed out: the call goes on unauthenticated (401 where it matters)
            await self.app(scope, receive, send)
            return
        if scope["method"] not in _SAFE_METHODS:
            given = next((v.decode("latin-1") for k, v in headers if k == CSRF_HEADER.encode()), "")
            origin = next((v.decode("latin-1") for k, v in headers if k == b"origin"), None)
            if origin is not None and origin != sessions.config.origin:
                await _refuse(scope, receive, send, 403, "csrf_failed",
                              f"cross-origin call refused (Origin {origin[:80]!r})")
                return
            if not hmac.compare_digest(given.encode(), record["csrf"].encode()):
                await _refuse(scope, receive, send, 403, "csrf_failed",
                              "missing or wrong X-CSRF-Token: reload the page (GET /app/api/me gives the token)")
                return
        scope = dict(scope)
        scope["headers"] = [*headers, (b"authorization", f"Bearer {record['access_token']}".encode())]
        scope.setdefault("state", {})["web_session"] = record
        await self.app(scope, receive, send)


async def _refuse(scope: Any, receive: Any, send: Any, status: int, type_: str, message: str) -> None:
    from fastapi.responses import JSONResponse

    await JSONResponse({"error": {"type": type_, "message": message}}, status_code=status,
                       headers={"Cache-Control": "no-store"})(scope, receive, send)
