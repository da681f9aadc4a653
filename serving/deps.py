"""FastAPI dependencies, as ``Annotated`` aliases: the one place handlers get shared objects from.

Authentication, roles and rate limits are dependencies too: routers declare ``CallerDep`` (may ask and
give feedback) or ``AdminDep`` (reload, stop/resume, reports) and the handlers stay unchanged. The
principal is resolved in a sync dependency (FastAPI runs it in its thread pool) because a JWKS fetch
after key rotation is a blocking HTTP call; it is then on ``request.state.principal`` for the request log
and for the rate limiter, which counts after authentication (per principal, not per address).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import anyio
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from serving.auth import Principal, Unauthenticated, require_role
from serving.service import Service
from serving.store import Store
from serving.variants import VariantSet
from t2s.settings import Settings

bearer_scheme = HTTPBearer(auto_error=False, description="Cognito access token (JWT)")
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="Static API key for service callers")


def get_service(request: Request) -> Service:
    return request.app.state.service


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.service.settings


def get_store(request: Request) -> Store:
    return request.app.state.service.store


def get_registry(request: Request) -> VariantSet:
    return request.app.state.service.variants


def get_limiter(request: Request) -> anyio.CapacityLimiter:
    return request.app.state.limiter


def get_principal(request: Request,
                  bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None,
                  api_key: Annotated[str | None, Security(api_key_scheme)] = None) -> Principal:
    client = request.client.host if request.client else "unknown"
    auth = request.app.state.auth
    if auth.required and bearer is None and request.headers.get("authorization") is not None:
        # a credential we cannot check is refused, not skipped in favour of another one
        raise Unauthenticated("unsupported Authorization header: send `Authorization: Bearer <access token>`")
    principal = auth.authenticate(bearer.credentials if bearer else None, api_key, client)
    request.state.principal = principal
    return principal


def _guard(role: str, scope: str) -> Callable[..., Principal]:
    def dependency(request: Request, principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        require_role(principal, role)  # type: ignore[arg-type]
        if principal.method != "none":  # T2S_SERVE_AUTH=none is loopback development: no limits
            request.app.state.rate_limiter.hit(principal.id, scope)
        return principal

    dependency.__name__ = f"require_{role}_{scope}"
    return dependency


require_caller = _guard("caller", "other")
require_caller_generate = _guard("caller", "generate")
require_admin = _guard("admin", "other")

ServiceDep = Annotated[Service, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
StoreDep = Annotated[Store, Depends(get_store)]
RegistryDep = Annotated[VariantSet, Depends(get_registry)]
LimiterDep = Annotated[anyio.CapacityLimiter, Depends(get_limiter)]
CallerDep = Annotated[Principal, Depends(require_caller)]
GenerateDep = Annotated[Principal, Depends(require_caller_generate)]
AdminDep = Annotated[Principal, Depends(require_admin)]
