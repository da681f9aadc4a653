"""The FastAPI application: ``create_app(settings)`` builds it; the lifespan opens and closes what it uses.

At start: the store (migrated to the newest schema), the served databases, the experiment file and its
variants from the MLflow registry. Blocking work (model calls, execution, store writes) runs in a thread
pool of ``T2S_SERVE_THREADS`` threads, so slow model calls overlap instead of queueing behind each other.
Errors leave as ``{"error": {"type", "message"}}`` with a 4xx/5xx status — never a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from serving.schemas import ErrorPublic
from t2s.settings import Settings, get_settings

log = logging.getLogger("t2s.serving")

_STATUS_TYPES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 409: "conflict",
                 422: "invalid_request", 503: "unavailable"}


def _error(status: int, type_: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": type_, "message": message}}, status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    from serving.service import UnknownDatabase, VariantUnavailable
    from serving.store import LabelExists, UnknownQuery
    from t2s.errors import Text2SQLError

    mapping: list[tuple[type[Exception], int, str]] = [
        (UnknownQuery, 404, "unknown_query"), (UnknownDatabase, 404, "unknown_database"),
        (LabelExists, 409, "label_exists"), (VariantUnavailable, 503, "variant_unavailable"),
    ]

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return _error(400, "bad_request", "the body is not valid JSON: " + _validation_message(exc))
        return _error(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, _STATUS_TYPES.get(exc.status_code, f"http_{exc.status_code}"), str(exc.detail))

    @app.exception_handler(Text2SQLError)
    async def _domain(_request: Request, exc: Text2SQLError) -> JSONResponse:
        for cls, status, type_ in mapping:
            if isinstance(exc, cls):
                return _error(status, type_, str(exc))
        log.error("unhandled platform error: %s", exc)
        return _error(500, "server_error", str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return _error(500, "internal_error", f"internal error ({type(exc).__name__}); see the service log")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for ``settings`` (default: :func:`t2s.settings.get_settings`)."""
    from serving.routers import admin, experiments, feedback, health, sql

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        s = settings or get_settings()
        app.state.limiter = anyio.CapacityLimiter(s.serve_threads)
        service = await anyio.to_thread.run_sync(start_service, s)
        app.state.service = service
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(service.close)

    app = FastAPI(
        title="Text2SQL Ops serving", version="1",
        summary="Questions to SQL through the promoted bundle, with sticky A/B experiments and feedback.",
        lifespan=lifespan,
        responses={400: {"model": ErrorPublic, "description": "The body is not valid JSON."},
                   500: {"model": ErrorPublic, "description": "Internal error (details in the log)."}},
    )
    install_error_handlers(app)
    for module in (sql, feedback, experiments, health, admin):
        app.include_router(module.router)
    return app


def start_service(settings: Settings) -> Any:
    """Open store and databases, load the experiment's variants; log (not raise) registry problems."""
    from serving.databases import Databases
    from serving.service import Service
    from serving.store import Store

    store = Store.open(settings.serve_store_url, pool_size=min(64, settings.serve_threads))
    try:
        databases = Databases(settings.serve_databases, settings.serve_db_pool, settings.postgres_dsn)
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
