"""``GET /v1/review/queries``: served answers to label, for reviewers (role ``reviewer`` or ``admin``).

Labels given by the people who asked are not a random sample: they label the answers they looked at
closely, often the wrong ones. ``sample=random`` draws queries uniformly at random from the filter (one
variant of the running experiment, optionally only those no reviewer has labelled yet), so the reviewers'
labels estimate each variant's accuracy without that selection; ``sample=recent`` lists the newest first.
A reviewer's label (``POST /v1/feedback``) supersedes the owner's.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

import sqlalchemy as sa
from anyio import to_thread
from fastapi import APIRouter, Depends, Query

from serving.auth import Principal, require_role
from serving.deps import CallerDep, LimiterDep, ServiceDep
from serving.schemas import AUTH_RESPONSES, LabelPublic, ReviewItemPublic, ReviewPublic
from serving.service import Service
from serving.store import _utc, feedback, queries

router = APIRouter(prefix="/v1/review", tags=["review"], responses=AUTH_RESPONSES)


def require_reviewer(principal: CallerDep) -> Principal:
    require_role(principal, "reviewer")
    return principal


ReviewerDep = Annotated[Principal, Depends(require_reviewer)]


def review_queue(service: Service, variant: str | None, sample: str, limit: int, unreviewed: bool) -> ReviewPublic:
    experiment = service.experiment.name
    where = [queries.c.experiment == experiment, queries.c.outcome != "llm_error"]
    if variant:
        where.append(queries.c.variant == variant)
    if unreviewed:
        where.append(sa.or_(feedback.c.source.is_(None), feedback.c.source != "reviewer"))
    joined = queries.outerjoin(feedback, feedback.c.query_id == queries.c.query_id)
    order = sa.func.random() if sample == "random" else queries.c.ts.desc()
    stmt = (sa.select(queries.c.query_id, queries.c.ts, queries.c.variant, queries.c.prompt_version,
                      queries.c.model_version, queries.c.database, queries.c.question, queries.c.sql,
                      queries.c.outcome, queries.c.detail, queries.c.rows_returned, queries.c.context,
                      feedback.c.correct, feedback.c.source)
            .select_from(joined).where(*where).order_by(order).limit(limit))
    with service.store.engine.connect() as conn:
        matching = int(conn.execute(sa.select(sa.func.count()).select_from(joined).where(*where)).scalar_one())
        rows = conn.execute(stmt).mappings().all()
    items = [ReviewItemPublic(**{k: v for k, v in r.items() if k not in ("correct", "source", "ts", "context")},
                              ts=_utc(r["ts"]), context=json.loads(r["context"]) if r["context"] else [],
                              label=None if r["correct"] is None else LabelPublic(correct=bool(r["correct"]),
                                                                                 source=r["source"]))
             for r in rows]
    return ReviewPublic(experiment=experiment, variant=variant, sample=sample, matching=matching,  # type: ignore[arg-type]
                        items=items)


@router.get("/queries", response_model=ReviewPublic)
async def list_for_review(service: ServiceDep, limiter: LimiterDep, _principal: ReviewerDep,
                          variant: str | None = Query(None, max_length=64, description="One variant; all when omitted."),
                          sample: Literal["recent", "random"] = Query("random", description="random: uniform "
                                                                      "sample of the matching queries; recent: newest first."),
                          limit: int = Query(20, ge=1, le=200),
                          unreviewed: bool = Query(True, description="Leave out queries a reviewer labelled already.")
                          ) -> ReviewPublic:
    """Answers of the running experiment to label (requests that reached the model; ``llm_error`` ones have
    nothing to judge). The reviewer labels them with ``POST /v1/feedback``."""
    return await to_thread.run_sync(review_queue, service, variant, sample, limit, unreviewed, limiter=limiter)
