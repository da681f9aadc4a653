"""FastAPI dependencies, as ``Annotated`` aliases: the one place handlers get shared objects from.

Authentication and rate limiting (a later step) belong here too: add a dependency (e.g. ``AdminDep``
checking a role) and put it on the routers that need it; the handlers stay unchanged.
"""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import Depends, Request

from serving.service import Service
from serving.store import Store
from serving.variants import VariantSet
from t2s.settings import Settings


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


def require_admin() -> None:
    """Placeholder for the admin check (no authentication yet: every caller is admin)."""


ServiceDep = Annotated[Service, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
StoreDep = Annotated[Store, Depends(get_store)]
RegistryDep = Annotated[VariantSet, Depends(get_registry)]
LimiterDep = Annotated[anyio.CapacityLimiter, Depends(get_limiter)]
AdminDep = Annotated[None, Depends(require_admin)]
