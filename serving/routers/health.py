"""``GET /health`` (liveness: the process answers) and ``GET /health/ready`` (can it serve well?).

``/health`` does nothing but answer. ``/health/ready`` checks the registry, the model endpoints, every
database, the store and Redis — so its result is reused for ``T2S_SERVE_READY_CACHE_S`` (concurrent
probes share one check), probes without admin credentials are limited per client address
(``T2S_SERVE_READY_RATE_LIMIT``, 429) and see statuses only; an admin may ask for a fresh check
(``?fresh=true``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio
from anyio import to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from serving.deps import LimiterDep, ServiceDep
from serving.schemas import CheckPublic, ErrorPublic, ReadyPublic
from serving.service import Service

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def _endpoint_check(client: Any) -> CheckPublic:
    import httpx

    if client.provider == "local" and client.base_url == "(not started yet)":
        return CheckPublic(status="ok", detail="local model server starts at the first request")
    if client.provider == "azure":
        return CheckPublic(status="ok", detail="not probed (Azure)")
    codes = []
    with httpx.Client(timeout=2.0, trust_env=False) as http:
        for url in client.base_urls:  # the local model runs one server per core: each must answer
            try:
                codes.append(http.get(url.rstrip("/") + "/models").status_code)
            except httpx.HTTPError as exc:
                return CheckPublic(status="error", detail=f"{url}: {type(exc).__name__}: {exc}")
    return CheckPublic(status="ok", detail=f"reachable (GET /models: HTTP {', '.join(map(str, codes))})")


def readiness(service: Service, app_state: Any = None) -> ReadyPublic:
    from serving.variants import mlflow_client

    try:
        mlflow_client(service.settings).search_registered_models(max_results=1)
        registry = CheckPublic(status="ok")
    except Exception as exc:
        registry = CheckPublic(status="error", detail=f"{service.settings.mlflow_tracking_uri}: {exc}; serving "
                                                      "the versions loaded before")
    if registry.status == "ok" and service.variants.last_error:
        registry = CheckPublic(status="degraded", detail=service.variants.last_error)
    endpoints = {c.where: _endpoint_check(c) for c in service.variants._clients.values()}
    dbs: dict[str, CheckPublic] = {}
    for name, pool in service.databases.pools.items():
        try:
            pool.check()
            dbs[name] = CheckPublic(status="ok", detail=pool.spec.engine)
        except Exception as exc:
            dbs[name] = CheckPublic(status="error", detail=str(exc))
    try:
        service.store.ping()
        store = CheckPublic(status="ok", detail=service.store.engine.dialect.name)
    except Exception as exc:
        store = CheckPublic(status="error", detail=str(exc))
    exp = service.experiment
    variants = {v.name: ({"loaded": True, "model_version": lv.model_version, "prompt_version": lv.prompt_version,
                          "loaded_at": lv.loaded_at.isoformat(timespec="seconds")}
                         if (lv := service.variants.get(v.name)) else {"loaded": False})
                for v in exp.variants}
    all_loaded = all(item["loaded"] for item in variants.values())
    circuits = {where: b.snapshot() for where, b in service.breakers.items()}
    limits = metrics = auth = None
    if app_state is not None:
        ls = app_state.rate_limiter.check()
        limits = CheckPublic(status=ls.status if ls.status != "error" else "error", detail=f"{ls.backend}: {ls.detail}")
        metrics = app_state.metrics.status()
        authn = app_state.auth
        authn.reload_keys(force=False)
        auth = CheckPublic(status="ok", detail="required (" + ", ".join(
            [m for m, on in (("jwt", authn._jwks is not None), ("api keys", bool(authn.api_keys))) if on]) + ")"
            if authn.required else "none: every caller is admin (loopback only)")
        if authn.keys_error:
            auth = CheckPublic(status="degraded", detail=f"API keys refused: {authn.keys_error}")
    if store.status == "error" or not any(item["loaded"] for item in variants.values()):
        status = "not_ready"
    elif (not all_loaded or registry.status != "ok" or any(c.status != "ok" for c in endpoints.values())
          or any(c.status != "ok" for c in dbs.values())
          or (limits is not None and limits.status != "ok") or (auth is not None and auth.status != "ok")
          or any(c["state"] != "closed" for c in circuits.values())
          or (metrics is not None and metrics.get("last_error"))):
        status = "degraded"
    else:
        status = "ready"
    return ReadyPublic(status=status, registry=registry, model_endpoints=endpoints, databases=dbs, store=store,  # type: ignore[arg-type]
                       experiment=exp.name, variants=variants, rate_limits=limits, auth=auth, circuits=circuits,
                       metrics=metrics or {}, checked_at=datetime.now(UTC))


class ReadyCache:
    """The last readiness result, reused for ``ttl_s``; one check runs at a time and callers waiting for
    it take its result instead of starting their own."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._at = float("-inf")
        self._value: ReadyPublic | None = None
        self._lock = anyio.Lock()

    def _current(self) -> ReadyPublic | None:
        return self._value if time.monotonic() - self._at < self.ttl_s else None

    async def get(self, service: Service, app_state: Any, limiter: Any, fresh: bool = False) -> ReadyPublic:
        if not fresh and (value := self._current()) is not None:
            return value
        asked = time.monotonic()
        async with self._lock:
            if self._value is not None and self._at >= asked:  # a check that began after we asked just ended
                return self._value
            if not fresh and (value := self._current()) is not None:
                return value
            started = time.monotonic()
            self._value = await to_thread.run_sync(readiness, service, app_state, limiter=limiter)
            self._at = started
            return self._value


def _sees_details(request: Request) -> bool:
    """Whether this probe may see endpoint addresses, error text and versions: always without auth
    (loopback development), else only with admin credentials. A bad credential gets the anonymous view.
    Blocking (a JWKS fetch): run it in a thread."""
    auth = request.app.state.auth
    if not auth.required:
        return True
    header = request.headers.get("authorization") or ""
    token = header[7:].strip() if header[:7].lower() == "bearer " else None
    key = request.headers.get("x-api-key")
    if not token and not key:
        return False
    try:
        return bool(auth.authenticate(token, key, request.client.host if request.client else "unknown").role
                    == "admin")
    except Exception:  # unauthenticated, or the key set cannot be fetched: a probe still gets its status
        return False


def redacted(result: ReadyPublic) -> ReadyPublic:
    """What an anonymous probe sees: every status, no detail (model URLs, error text, versions, metrics)."""
    def bare(check: CheckPublic | None) -> CheckPublic | None:
        return None if check is None else CheckPublic(status=check.status)

    return ReadyPublic(
        status=result.status, registry=bare(result.registry),  # type: ignore[arg-type]
        model_endpoints={f"endpoint-{i}": bare(c) for i, c in enumerate(result.model_endpoints.values(), 1)},  # type: ignore[misc]
        databases={name: bare(c) for name, c in result.databases.items()},  # type: ignore[misc]
        store=bare(result.store), experiment=result.experiment,  # type: ignore[arg-type]
        variants={name: {"loaded": v["loaded"]} for name, v in result.variants.items()},
        rate_limits=bare(result.rate_limits), auth=bare(result.auth),
        circuits={f"endpoint-{i}": {"state": c.get("state")} for i, c in enumerate(result.circuits.values(), 1)},
        checked_at=result.checked_at)


@router.get("/health/ready", response_model=ReadyPublic, responses={
    503: {"model": ReadyPublic, "description": "Nothing can be served."},
    429: {"model": ErrorPublic, "description": "Too many probes from this address without admin credentials "
                                              "(T2S_SERVE_READY_RATE_LIMIT); `Retry-After` says when to retry."}})
async def ready(request: Request, service: ServiceDep, limiter: LimiterDep,
                fresh: Annotated[bool, Query(description="Admins only: check now instead of reusing the result of "
                                                         "the last T2S_SERVE_READY_CACHE_S seconds.")] = False) -> Any:
    """Registry, model endpoints, databases, store, rate-limit storage, model circuits and metric sinks
    (buffered and dropped datums), each with its status; ``checked_at`` says when the checks ran (results are
    reused for ``T2S_SERVE_READY_CACHE_S``). 503 when nothing can be served. With auth on, details (model
    URLs, error text, versions, metric counters) and ``fresh=true`` only for admin credentials; other probes
    are rate-limited per client address."""
    details = await to_thread.run_sync(_sees_details, request, limiter=limiter)
    if not details:
        client = request.client.host if request.client else "unknown"
        request.app.state.rate_limiter.hit(f"addr:{client}", "ready")
    result = await request.app.state.ready_cache.get(service, request.app.state, limiter, fresh=fresh and details)
    if not details:
        result = redacted(result)
    if result.status == "not_ready":
        return JSONResponse(result.model_dump(mode="json"), status_code=503)
    return result
