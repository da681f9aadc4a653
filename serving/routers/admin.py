"""Admin: reload aliases and the experiment file; stop or resume the experiment (no restart needed).

Every route needs the admin role (``require_admin`` on the router: a JWT in an admin group or an admin
API key; every caller when ``T2S_SERVE_AUTH=none``).
"""

from __future__ import annotations

from anyio import to_thread
from fastapi import APIRouter, Depends, HTTPException, Request

from serving.deps import LimiterDep, ServiceDep, require_admin
from serving.schemas import AUTH_RESPONSES, ErrorPublic, ExperimentPublic, ReloadPublic, StopCreate

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)],
                   responses=AUTH_RESPONSES)


@router.post("/reload", response_model=ReloadPublic)
async def reload(request: Request, service: ServiceDep) -> ReloadPublic:
    """Re-read the API keys file and the experiment file and re-resolve every variant's alias in the
    registry. Failures keep the versions already loaded and are listed in ``errors`` (and in
    ``/health/ready``). This process reloads now; every other worker process and replica on the same store
    follows within ``T2S_SERVE_RELOAD_POLL_S`` (:mod:`serving.reload`)."""
    from serving.reload import reload_everywhere

    errors = await reload_everywhere(request.app.state)
    return ReloadPublic(experiment=service.experiment.name,
                        variants={n: v.model_version for n, v in service.variants.variants.items()}, errors=errors)


@router.post("/experiments/{name}/stop", response_model=ExperimentPublic, responses={
    404: {"model": ErrorPublic}, 422: {"model": ErrorPublic}})
async def stop(name: str, body: StopCreate, service: ServiceDep, limiter: LimiterDep) -> ExperimentPublic:
    """Send all traffic to one variant (``variant: null`` resumes the split). Stored in the request
    store, so every worker and replica follows within ``T2S_SERVE_STATUS_TTL_S``."""
    from serving.routers.experiments import get_experiment

    exp = service.experiment
    if name != exp.name:
        raise HTTPException(404, f"no experiment {name!r} is served; the running experiment is {exp.name!r}")
    if body.variant is not None and body.variant not in {v.name for v in exp.variants}:
        raise HTTPException(422, f"experiment {name!r} has no variant {body.variant!r}; variants: "
                                 f"{', '.join(v.name for v in exp.variants)}")
    await to_thread.run_sync(service.store.set_stopped, name, body.variant, body.reason, limiter=limiter)
    service._status = (0.0, None)
    return await get_experiment(name, service)
