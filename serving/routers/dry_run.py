"""``POST /v1/sql/dry-run``: run the caller's own SQL — a suggested correction — and see its first rows.

The SQL goes through the same two layers as a generated query: the guard (one read-only statement of
allowed functions, or ``guard_refused`` and nothing runs) and a sandbox worker of the read-only served
database, with the query timeout and a row cap of ``T2S_SERVE_DRY_RUN_ROWS``, within the request deadline
and the caller's share of SQL workers (``T2S_SERVE_SQL_WORKERS_PER_PRINCIPAL``) like a question, with the
same caps on values and bytes. Nothing is recorded: a dry run is not a served answer and has no variant.
"""

from __future__ import annotations

import time

from anyio import to_thread
from fastapi import APIRouter

from serving.deps import CallerDep, LimiterDep, ServiceDep
from serving.schemas import AUTH_RESPONSES, DryRunCreate, DryRunPublic, ErrorPublic
from serving.service import Service, UnknownDatabase
from t2s.deadline import request_budget
from t2s.errors import SqlError, SqlRefused

router = APIRouter(prefix="/v1", tags=["sql"])


def dry_run(service: Service, database: str, sql: str, principal: str) -> DryRunPublic:
    from t2s.guard import checked_for

    pool = service.databases.get(database)
    if pool is None:
        raise UnknownDatabase(f"unknown database {database!r}; served: {', '.join(service.databases.names)}")
    start = time.perf_counter()

    def done(outcome: str, detail: str | None = None, **result: object) -> DryRunPublic:
        return DryRunPublic(outcome=outcome, detail=detail, latency_ms=round((time.perf_counter() - start) * 1000, 2),  # type: ignore[arg-type]
                            **result)  # type: ignore[arg-type]

    try:
        checked = checked_for(sql, pool.dialect, pool.dialect, engine=pool.schema_target.engine)
    except SqlRefused as exc:
        return done("guard_refused", f"refused: {exc}")
    except SqlError as exc:
        return done("sql_error", f"{exc.error_class}: {exc}")
    settings = service.settings
    with request_budget(settings.serve_request_deadline_s, principal, service.sql_shares):
        ran = service.execute(pool, checked, settings.serve_dry_run_rows)
    if ran.rows is None:
        return done(ran.outcome, f"refused: {ran.detail}" if ran.outcome == "guard_refused" else ran.detail)
    return done(ran.outcome, ran.detail or None, columns=ran.columns, rows=ran.rows, truncated=ran.truncated)


@router.post("/sql/dry-run", response_model=DryRunPublic, responses={
    **AUTH_RESPONSES, 404: {"model": ErrorPublic, "description": "Unknown database."},
    422: {"model": ErrorPublic, "description": "Malformed body."}})
async def create_dry_run(body: DryRunCreate, service: ServiceDep, limiter: LimiterDep,
                         principal: CallerDep) -> DryRunPublic:
    """Guard and run ``sql`` read-only on ``database``; at most ``T2S_SERVE_DRY_RUN_ROWS`` rows come back.
    A refused, failing or timed-out query is a 200 whose ``outcome`` and ``detail`` say so."""
    return await to_thread.run_sync(dry_run, service, body.database, body.sql, principal.id, limiter=limiter)
