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
from serving.service import Service, UnknownDatabase, jsonable, truncation_detail
from t2s.deadline import request_budget
from t2s.errors import DeadlineExceeded, SqlError, SqlRefused, SqlTimeout

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

    settings = service.settings
    cap = settings.serve_dry_run_rows
    try:
        checked = checked_for(sql, pool.dialect, pool.dialect, engine=pool.schema_target.engine)
        with request_budget(settings.serve_request_deadline_s, principal, service.sql_shares) as budget, \
                budget.sql_slot(), pool.target() as target:
            result = target.execute(checked, timeout_s=settings.query_timeout_s, max_rows=cap)
    except SqlRefused as exc:
        return done("guard_refused", f"refused: {exc}")
    except (SqlTimeout, DeadlineExceeded) as exc:
        return done("timeout", str(exc))
    except SqlError as exc:
        return done("sql_error", f"{exc.error_class}: {exc}")
    rows = [[jsonable(v) for v in row] for row in result.rows]
    return done("ok" if rows else "empty", truncation_detail(result, cap, settings) or None,
                columns=[jsonable(c) for c in result.columns], rows=rows,
                truncated=result.truncated or bool(result.cells_clipped))


@router.post("/sql/dry-run", response_model=DryRunPublic, responses={
    **AUTH_RESPONSES, 404: {"model": ErrorPublic, "description": "Unknown database."},
    422: {"model": ErrorPublic, "description": "Malformed body."}})
async def create_dry_run(body: DryRunCreate, service: ServiceDep, limiter: LimiterDep,
                         principal: CallerDep) -> DryRunPublic:
    """Guard and run ``sql`` read-only on ``database``; at most ``T2S_SERVE_DRY_RUN_ROWS`` rows come back.
    A refused, failing or timed-out query is a 200 whose ``outcome`` and ``detail`` say so."""
    return await to_thread.run_sync(dry_run, service, body.database, body.sql, principal.id, limiter=limiter)
