"""The FastAPI application: ``create_app(settings)`` builds it; the lifespan opens and closes what it uses.

At start: the store (migrated to the newest schema), the served databases, the experiment file and its
variants from the MLflow registry. Blocking work (model calls, execution, store writes) runs in a thread
pool of ``T2S_SERVE_THREADS`` threads, so slow model calls overlap instead of queueing behind each other.
Errors leave as ``{"error": {"type", "message"}}`` with a 4xx/5xx status — never a stack trace.

In front of the routes: CORS (only the origins in ``T2S_SERVE_CORS_ORIGINS``), a body-size limit
(``T2S_SERVE_MAX_BODY_BYTES``, 413), and the request log (:mod:`serving.logs`: one JSON line per request,
``X-Request-ID`` echoed or made). Per route: authentication, role and rate limit (:mod:`serving.deps`).
The lifespan refuses to start without authentication on a non-loopback host (:func:`serving.auth.check_exposure`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from serving.logs import REQUEST_LOGGER, request_fields
from serving.schemas import ErrorPublic
from serving.security import SecurityHeaders
from t2s.settings import Settings, get_settings

log = logging.getLogger("t2s.serving")

_STATUS_TYPES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 409: "conflict", 413: "too_large", 422: "invalid_request",
                 429: "rate_limited", 503: "unavailable"}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _error(status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": type_, "message": message}}, status_code=status, headers=headers)


class RequestLog:
    """ASGI middleware: request id in and out, one structured log line per request (status, latency,
    principal, variant, outcome). Pure ASGI, so it adds no per-request task. Body limit: a declared
    ``Content-Length`` over it is refused before anything is read; a chunked body (no length) is read here
    up to the limit, then replayed to the app, or refused once it grows past it."""

    def __init__(self, app: Any, log_content: bool, max_body: int) -> None:
        self.app = app
        self.log_content = log_content
        self.max_body = max_body
        self.log = logging.getLogger(REQUEST_LOGGER)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.datastructures import MutableHeaders

        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        try:
            length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
            too_large = length is not None and (not length.isdigit() or int(length) > self.max_body)
            if length is None and scope["method"] in ("POST", "PUT", "PATCH"):
                receive, too_large = await self._buffered(receive)
            if too_large:
                response = _error(413, "too_large", f"the body is larger than {self.max_body} bytes "
                                                    "(T2S_SERVE_MAX_BODY_BYTES)")
                await response(scope, receive, send_with_id)
                return
            await self.app(scope, receive, send_with_id)
        finally:
            if scope["path"] != "/health":
                fields = request_fields(Request(scope), status, (time.perf_counter() - start) * 1000.0,
                                        self.log_content)
                self.log.info("request", extra=fields)

    async def _buffered(self, receive: Any) -> tuple[Any, bool]:
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return receive, False
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_body:
                return receive, True
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed() -> Any:
            return replay.pop() if replay else await receive()

        return replayed, False


class JsonErrorCORS(CORSMiddleware):
    """CORS whose refused preflight (origin, method or header not allowed) answers in the error shape."""

    def preflight_response(self, request_headers: Any) -> Any:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        headers = {k: v for k, v in response.headers.items() if k not in ("content-length", "content-type")}
        return _error(400, "cors_refused", bytes(response.body).decode(), headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on the request's path (asked of the router, included routers too)."""
    from starlette.routing import Match

    routes = request.app.router.routes
    return [m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
            if any(r.matches({**request.scope, "method": m})[0] is Match.FULL for r in routes)]


def install_error_handlers(app: FastAPI) -> None:
    from serving.auth import AuthUnavailable, Forbidden, Unauthenticated
    from serving.conversations import SessionFull, UnknownSession
    from serving.oauth import SignInFailed
    from serving.ratelimit import LimiterUnavailable, RateLimited
    from serving.service import StoreUnavailable, UnknownDatabase, VariantUnavailable
    from serving.store import LabelExists, UnknownQuery
    from serving.web_state import StateUnavailable
    from t2s.errors import Text2SQLError

    mapping: list[tuple[type[Exception], int, str]] = [
        (UnknownQuery, 404, "unknown_query"), (UnknownDatabase, 404, "unknown_database"),
        (LabelExists, 409, "label_exists"), (VariantUnavailable, 503, "variant_unavailable"),
        (Unauthenticated, 401, "unauthorized"), (Forbidden, 403, "forbidden"),
        (AuthUnavailable, 503, "auth_unavailable"), (RateLimited, 429, "rate_limited"),
        (LimiterUnavailable, 503, "rate_limit_unavailable"), (StoreUnavailable, 503, "store_unavailable"),
        (UnknownSession, 404, "unknown_session"), (SessionFull, 409, "session_full"),
        (StateUnavailable, 503, "session_unavailable"), (SignInFailed, 400, "sign_in_failed"),
    ]

    def _headers(exc: Exception) -> dict[str, str] | None:
        if isinstance(exc, Unauthenticated):
            return {"WWW-Authenticate": 'Bearer realm="t2s"'}
        if isinstance(exc, RateLimited):
            return {"Retry-After": str(exc.retry_after_s)}
        if isinstance(exc, AuthUnavailable | LimiterUnavailable | StoreUnavailable | StateUnavailable):
            return {"Retry-After": "5"}
        return None

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return _error(400, "bad_request", "the body is not valid JSON: " + _validation_message(exc))
        return _error(422, "invalid_request", _validation_message(exc))

    # Starlette's class, not FastAPI's subclass: the router's own 404 (unknown path) and 405 (wrong method)
    # answer in the same shape as the handlers' errors.
    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = exc.headers
        if exc.status_code == 405:  # Starlette's Allow names the first route on the path only; name them all
            headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
        return _error(exc.status_code, _STATUS_TYPES.get(exc.status_code, f"http_{exc.status_code}"), str(exc.detail),
                      headers=headers)

    # 503s whose message carries internal detail (a registry URI, a file path, Redis's address): a caller
    # gets a fixed message, an admin (everyone without auth, on loopback) the detail, the log always.
    public_503 = {VariantUnavailable: "the experiment's variant is not loaded; an admin can see why in "
                                      "/health/ready, and POST /admin/reload after fixing it",
                  LimiterUnavailable: "rate-limit storage is unreachable; retry later"}

    @app.exception_handler(Text2SQLError)
    async def _domain(request: Request, exc: Text2SQLError) -> JSONResponse:
        for cls, status, type_ in mapping:
            if isinstance(exc, cls):
                public = next((m for c, m in public_503.items() if isinstance(exc, c)), None)
                if public is not None:
                    log.error("%s: %s", type_, exc)
                    principal = getattr(request.state, "principal", None)
                    if principal is not None and principal.is_admin:
                        public = None
                return _error(status, type_, public or str(exc), headers=_headers(exc))
        log.error("unhandled platform error: %s", exc)
        return _error(500, "server_error", f"internal error ({type(exc).__name__}); see the service log")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        # sent outside the middleware stack (Starlette's error middleware): it carries its own headers
        return _error(500, "internal_error", f"internal error ({type(exc).__name__}); see the service log",
                      headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for ``settings`` (default: :func:`t2s.settings.get_settings`)."""
    from serving import logs, reload
    from serving.auth import Authenticator, check_exposure
    from serving.docs import install_docs
    from serving.metrics import Metrics
    from serving.oauth import CookieAuth, OAuthConfig
    from serving.ratelimit import RateLimiter
    from serving.routers import admin, dry_run, experiments, feedback, health, review, sessions, sql
    from serving.routers import app as web_app

    s = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        check_exposure(s, s.serve_host)
        logs.configure(s.serve_log_format)
        app.state.auth = Authenticator(s)
        oauth = OAuthConfig.from_settings(s) if s.serve_web else None  # a bad sign-in setting fails the start
        app.state.rate_limiter = RateLimiter(s)
        app.state.ready_cache = health.ReadyCache(s.serve_ready_cache_s)
        app.state.limiter = anyio.CapacityLimiter(s.serve_threads)
        app.state.metrics = Metrics(s)
        try:
            service = await anyio.to_thread.run_sync(start_service, s)
        except BaseException:
            app.state.metrics.close()
            raise
        app.state.service = service
        try:
            start_web(app, s, service, oauth)
        except BaseException:  # e.g. Redis for conversations unreachable: close what is open, then fail the start
            await anyio.to_thread.run_sync(app.state.metrics.close)
            await anyio.to_thread.run_sync(service.close)
            raise
        app.state.reload_seen = await anyio.to_thread.run_sync(service.store.generation, reload.COUNTER)
        follower = asyncio.create_task(reload.follow(app.state, s.serve_reload_poll_s))
        # Everything loaded so far (mlflow, sqlglot, the bundles) lives as long as the process: moved out of
        # the collector's generations, a full collection no longer walks it in the middle of requests.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            await anyio.to_thread.run_sync(app.state.metrics.close)
            if app.state.web_sessions is not None:
                app.state.web_sessions.close()
            await anyio.to_thread.run_sync(service.close)

    app = FastAPI(
        title="Text2SQL Ops serving", version="1",
        summary="Questions to SQL through the promoted bundle, with sticky A/B experiments and feedback.",
        lifespan=lifespan,
        # FastAPI looks the OpenTelemetry providers up on every request unless told not to: 11% of the
        # process's GIL time at 100 concurrent users, for nothing when no provider is configured.
        telemetry={"tracing": s.serve_otel, "metrics": s.serve_otel, "logs": s.serve_otel},
        responses={400: {"model": ErrorPublic, "description": "The body is not valid JSON."},
                   500: {"model": ErrorPublic, "description": "Internal error (details in the log)."}},
        docs_url=None, redoc_url=None,  # /docs comes from serving.docs: Swagger UI from this origin, no CDN
    )
    install_error_handlers(app)
    if s.serve_cors_origins:
        app.add_middleware(JsonErrorCORS, allow_origins=s.serve_cors_origins, allow_credentials=False,
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type", "X-API-Key",
                                                                         "X-Request-ID"],
                           expose_headers=["X-Request-ID", "Retry-After"], max_age=600)
    app.add_middleware(CookieAuth)  # inside the request log: it sees the request as authenticated
    app.add_middleware(RequestLog, log_content=s.serve_log_content, max_body=s.serve_max_body_bytes)
    # outermost: the client address and scheme behind a trusted proxy (uvicorn's own is off in `t2s serve`)
    app.add_middleware(SecurityHeaders, hsts=s.serve_hsts)
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=s.serve_forwarded_allow_ips)
    if s.serve_docs:
        install_docs(app)
    for module in (sql, sessions, dry_run, feedback, review, experiments, health, admin):
        app.include_router(module.router)
    if s.serve_web:
        app.include_router(web_app.router)
    runtime_limits_in_openapi(app, s)
    return app


def start_web(app: FastAPI, settings: Settings, service: Any, oauth: Any) -> None:
    """Conversations' server-side state (Redis or the store) and, with ``oauth`` configured, web sign-in."""
    from serving.conversations import Conversations
    from serving.oauth import WebSessions
    from serving.web_state import open_state

    state = open_state(settings, service.store.engine)
    app.state.conversations = Conversations(state, settings.serve_session_ttl_s)
    app.state.web_sessions = (None if oauth is None else
                              WebSessions(oauth, state, app.state.auth, settings.serve_session_ttl_s))


def runtime_limits_in_openapi(app: FastAPI, settings: Settings) -> None:
    """Make the OpenAPI document state the limits the service enforces: a question's ``maxLength`` is
    ``T2S_SERVE_MAX_QUESTION_CHARS`` (the request models carry only the hard cap, ``QUESTION_HARD_LIMIT``)."""
    from serving.schemas import QUESTION_HARD_LIMIT

    build = app.openapi
    limit = min(settings.serve_max_question_chars, QUESTION_HARD_LIMIT)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            for model in build().get("components", {}).get("schemas", {}).values():
                question = model.get("properties", {}).get("question")
                if question is not None and question.get("maxLength") == QUESTION_HARD_LIMIT:
                    question["maxLength"] = limit
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def start_service(settings: Settings) -> Any:
    """Open store and databases, load the experiment's variants; log (not raise) registry problems."""
    from serving.databases import Databases, serving_limits
    from serving.service import Service
    from serving.store import Store

    store = Store.open(settings.serve_store_url, pool_size=min(64, settings.serve_threads))
    try:
        databases = Databases(settings.serve_databases, settings.serve_db_pool, settings.postgres_dsn,
                              serving_limits(settings))
    except Exception:
        store.close()
        raise
    service = Service(settings, store, databases)
    for problem in service.load():
        log.error("%s", problem)
    return service


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory serving.app:app_from_env`` (what ``t2s serve`` runs)."""
    return create_app()
