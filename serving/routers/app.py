"""The analyst web app at ``/app``: its page and files, sign-in and sign-out, and who is signed in.

The page (``serving/web/``) is plain HTML, CSS and JavaScript modules, served from this origin with a
strict Content-Security-Policy: scripts, styles and connections only from ``'self'`` — no inline script
or style, no CDN. The chart library is the ``plotly.min.js`` that ships inside the ``plotly`` Python
package, served at ``/app/static/vendor/plotly.min.js``. The page talks to the JSON API (``/v1/...``);
with web sign-in on, the browser's session cookie stands for the bearer token (:mod:`serving.oauth`).

Sign-in (``T2S_SERVE_OAUTH_*``): ``/app/login`` → the Cognito hosted UI → ``/app/callback`` →
``/app``; ``POST /app/logout`` ends the session here and returns the hosted UI's logout URL. Without auth
(``T2S_SERVE_AUTH=none``, loopback only) the app needs no sign-in.
"""

from __future__ import annotations

import ast
import html
import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from anyio import to_thread
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from serving.deps import ServiceDep
from serving.oauth import LOGIN_COOKIE, LOGIN_TTL_S, SESSION_COOKIE, SignInFailed, cookie_value

WEB = Path(__file__).resolve().parents[1] / "web"
STATIC = WEB / "static"
_NAME = re.compile(r"^[a-z0-9_-]+\.(js|css|svg|png)$")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; font-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer", "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), clipboard-write=(self)",
}
_MEDIA = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8", "svg": "image/svg+xml",
          "png": "image/png"}

router = APIRouter(tags=["app"], include_in_schema=False)
log = logging.getLogger("t2s.serving.app")


def _headers(cache: str = "no-store") -> dict[str, str]:
    return {**SECURITY_HEADERS, "Cache-Control": cache}


def plotly_js() -> Path:
    """The plotly.js bundle shipped inside the ``plotly`` package (installed with the platform)."""
    import importlib.resources

    return Path(str(importlib.resources.files("plotly") / "package_data" / "plotly.min.js"))


# plotly.js adds its own stylesheet by inserting a <style> element, which this policy forbids. It skips that
# when the page has an element with id "plotly.js-style-global" and class "no-inline-styles": the page links
# this stylesheet so, made from the rules inside the very bundle it serves ("X" and "Y" stand for the
# selectors below in plotly.js's source).
_RULES_START = '{"X,X div":'
_PAIR = re.compile(r"""\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')\s*:\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')\s*([,}])""")


@lru_cache(maxsize=1)
def plotly_css() -> str:
    """The CSS rules plotly.js would inject, read from its bundle (empty, and logged, if not found)."""
    source = plotly_js().read_text(encoding="utf-8")
    at = source.find(_RULES_START)
    rules: list[str] = []
    while at >= 0:
        m = _PAIR.match(source, at + 1)
        if m is None:
            break
        selector, body = (ast.literal_eval(m.group(i)) for i in (1, 2))
        selector = selector.replace("X", ".js-plotly-plot .plotly").replace("Y", ".plotly-notifier")
        rules.append(f"{selector} {{{body}}}")
        at = m.end() - 1 if m.group(3) == "," else -1
    if not rules:
        log.warning("plotly.js's stylesheet rules were not found in %s: charts will lack its styles", plotly_js())
    return "/* the rules plotly.js injects at run time, served from this origin instead */\n" + "\n".join(rules) + "\n"


_STYLE_GUARD = re.compile(r'getElementById\("([0-9A-Za-z_-]{8,128})"\)\)\{var \w+=document\.createElement\("style"\)')


@lru_cache(maxsize=1)
def index_html() -> str:
    """The page. The bundle also injects a bundled library's stylesheet (maplibre's, for maps this app does not
    draw) unless an element with that stylesheet's id exists: the page carries one such empty element per id."""
    guards = "".join(f'<template id="{html.escape(i)}"></template>'
                     for i in dict.fromkeys(_STYLE_GUARD.findall(plotly_js().read_text(encoding="utf-8"))))
    return (WEB / "index.html").read_text(encoding="utf-8").replace("<!--plotly-style-guards-->", guards)


@router.get("/app")
@router.get("/app/")
@router.get("/app/review")
async def page() -> HTMLResponse:
    return HTMLResponse(index_html(), headers=_headers("no-cache"))


@router.get("/app/static/vendor/plotly.min.js")
async def plotly() -> FileResponse:
    return FileResponse(plotly_js(), media_type=_MEDIA["js"], headers=_headers("public, max-age=86400"))


@router.get("/app/static/vendor/plotly.css")
async def plotly_stylesheet() -> Response:
    return Response(plotly_css(), media_type=_MEDIA["css"], headers=_headers("public, max-age=86400"))


@router.get("/app/static/{name}")
async def static(name: str) -> FileResponse:
    path = STATIC / name
    if not _NAME.match(name) or not path.is_file():
        raise HTTPException(404, f"no file {name[:80]!r} in the app")
    return FileResponse(path, media_type=_MEDIA[name.rsplit(".", 1)[1]], headers=_headers("no-cache"))


def _sessions(request: Request) -> Any:
    return getattr(request.app.state, "web_sessions", None)


@router.get("/app/login")
async def login(request: Request, next: str | None = None) -> Response:
    """Start signing in: to the hosted UI, with PKCE; the attempt is bound to this browser by a cookie."""
    sessions = _sessions(request)
    if sessions is None:
        return RedirectResponse("/app", status_code=303, headers=_headers())
    # each attempt is stored for 10 minutes: count them per address, like any unauthenticated caller
    client = request.client.host if request.client else "unknown"
    await to_thread.run_sync(request.app.state.rate_limiter.hit, f"sign-in:{client}", "other")
    url, binding = await to_thread.run_sync(sessions.begin, next)
    response = RedirectResponse(url, status_code=303, headers=_headers())
    response.set_cookie(LOGIN_COOKIE, binding, max_age=int(LOGIN_TTL_S), path="/", secure=True, httponly=True,
                        samesite="lax")  # lax: it must come back with the hosted UI's redirect
    return response


def _failed_page(message: str, status: int = 400) -> HTMLResponse:
    body = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign-in failed</title>'
            f'<link rel="stylesheet" href="/app/static/app.css"></head><body><main class="narrow">'
            f'<h1>Sign-in failed</h1><p>{html.escape(message)}</p><p><a href="/app/login">Sign in again</a></p>'
            f'</main></body></html>')
    return HTMLResponse(body, status_code=status, headers=_headers())


@router.get("/app/callback")
async def callback(request: Request, code: str | None = None, state: str | None = None,
                   error: str | None = None, error_description: str | None = None) -> Response:
    """Where the hosted UI returns: exchange the code, start the session, go to the page."""
    sessions = _sessions(request)
    if sessions is None:
        return _failed_page("web sign-in is not configured on this server (T2S_SERVE_OAUTH_*)", 404)
    if error:
        return _failed_page(f"the identity provider said: {error[:80]} {(error_description or '')[:200]}".strip())
    if not code or not state or len(code) > 2048 or len(state) > 512:
        return _failed_page("the sign-in response has no code or state")
    binding = cookie_value(request.scope["headers"], LOGIN_COOKIE)
    try:
        cookie, where = await to_thread.run_sync(sessions.finish, code, state, binding)
    except SignInFailed as exc:
        return _failed_page(str(exc))
    # a session this browser had before ends: one browser, one session, a new cookie value at each sign-in
    await to_thread.run_sync(sessions.end, cookie_value(request.scope["headers"], SESSION_COOKIE))
    response = RedirectResponse(where, status_code=303, headers=_headers())
    response.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    response.set_cookie(SESSION_COOKIE, cookie, max_age=int(sessions.ttl_s), path="/", secure=True, httponly=True,
                        samesite="strict")
    return response


@router.post("/app/logout")
async def logout(request: Request) -> JSONResponse:
    """End the session (its refresh token is revoked); the page then opens ``redirect`` (the hosted UI's
    logout, which ends its own session too)."""
    sessions = _sessions(request)
    redirect = "/app"
    if sessions is not None:
        await to_thread.run_sync(sessions.end, cookie_value(request.scope["headers"], SESSION_COOKIE))
        redirect = sessions.config.end_session_url()
    response = JSONResponse({"redirect": redirect}, headers=_headers())
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


@router.get("/app/api/me")
async def me(request: Request, service: ServiceDep) -> JSONResponse:
    """Who the page acts for, the CSRF token its state-changing calls send, and what it can ask about."""
    auth = request.app.state.auth
    client = request.client.host if request.client else "unknown"
    info: dict[str, Any] = {"databases": service.databases.names, "experiment": service.experiment.name,
                            "variants": [v.name for v in service.experiment.variants],
                            "dry_run_rows": service.settings.serve_dry_run_rows}
    if not auth.required:
        info.update(auth="none", signed_in=True, principal=f"anonymous:{client}", role="admin", csrf_token=None)
    elif _sessions(request) is None:
        info.update(auth="api", signed_in=False, sign_in_url=None, message=(
            "This server accepts API credentials only: web sign-in is not configured (T2S_SERVE_OAUTH_*)."))
    else:
        record = getattr(request.state, "web_session", None)
        info.update(auth="oauth", signed_in=record is not None, sign_in_url="/app/login")
        if record is not None:
            info.update(principal=record["principal"], role=record["role"], csrf_token=record["csrf"],
                        session_expires_at=record["expires_at"])
    return JSONResponse(info, headers=_headers())
