"""The running experiment: its configuration and status, and its report (JSON and an HTML page).

The statistics live in :mod:`serving.experiment_report`; this router only builds its inputs from the
store (one row per served request, with its label) and the loaded variants. Reading reports needs the
admin role.
"""

from __future__ import annotations

from anyio import to_thread
from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import HTMLResponse

from serving.deps import LimiterDep, ServiceDep, require_admin
from serving.experiment_report import ExperimentReport
from serving.schemas import AUTH_RESPONSES, ErrorPublic, ExperimentPublic
from serving.service import Service

router = APIRouter(tags=["experiments"], dependencies=[Depends(require_admin)], responses=AUTH_RESPONSES)


def _experiment_or_404(service: Service, name: str) -> None:
    if name != service.experiment.name:
        raise HTTPException(404, f"no experiment {name!r} is served; the running experiment is "
                                 f"{service.experiment.name!r}")


def build(service: Service, name: str) -> ExperimentReport:
    """The report object for the running experiment ``name``: its records, the splits of its epochs and the
    guardrail thresholds of its experiment file."""
    from serving import experiment_report as er

    exp = service.experiment
    variants = []
    offline: dict[str, float | None] = {}
    for v in exp.variants:
        loaded = service.variants.get(v.name)
        variants.append(er.VariantWeight(name=v.name, weight=v.weight,
                                         model_version=loaded.model_version if loaded else None,
                                         prompt_version=loaded.prompt_version if loaded else None))
        offline[v.name] = loaded.offline_accuracy if loaded else None
    records = service.store.records_frame(name)
    epochs = [er.EpochSplit(epoch=e["epoch"], shares=e["shares"], stopped_variant=e["stopped_variant"],
                            recorded_at=e["recorded_at"]) for e in service.store.epochs(name)]
    return er.build_report(name, variants, exp.control or exp.variants[0].name, records, offline,
                           status=service.status_label(), epochs=epochs, guardrails=exp.guardrails)


@router.get("/v1/experiments/{name}", response_model=ExperimentPublic, responses={404: {"model": ErrorPublic}})
async def get_experiment(name: str, service: ServiceDep) -> ExperimentPublic:
    """The running experiment's variants (with the registry versions loaded) and status."""
    _experiment_or_404(service, name)
    exp = service.experiment
    status = await to_thread.run_sync(service.status_label)
    variants = []
    for v in exp.variants:
        loaded = service.variants.get(v.name)
        variants.append({"name": v.name, "ref": f"t2s-generator{v.model_ref}", "weight": v.weight,
                         "model_version": loaded.model_version if loaded else None,
                         "prompt_version": loaded.prompt_version if loaded else None,
                         "loaded": loaded is not None})
    return ExperimentPublic(name=exp.name, salt_set=bool(exp.salt), control=exp.control or "", status=status,
                            variants=variants)


@router.get("/v1/experiments/{name}/report", response_model=ExperimentReport,
            responses={404: {"model": ErrorPublic}})
async def get_report(name: str, service: ServiceDep, limiter: LimiterDep) -> ExperimentReport:
    """Per-variant users, requests, label coverage, distinct questions, online accuracy, lift vs control,
    trust checks per epoch and guardrails (see the README's "Reading the experiment report")."""
    _experiment_or_404(service, name)
    return await to_thread.run_sync(build, service, name, limiter=limiter)


@router.get("/experiments/{name}", response_model=None, responses={
    200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "The report page."},
    404: {"model": ErrorPublic}})
async def get_report_page(name: str, service: ServiceDep, limiter: LimiterDep) -> HTMLResponse:
    """The same report as one self-contained HTML page with a chart."""
    from serving.experiment_report import render_html

    _experiment_or_404(service, name)
    report = await to_thread.run_sync(build, service, name, limiter=limiter)
    return HTMLResponse(render_html(report))
