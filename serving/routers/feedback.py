"""``POST /v1/feedback``: the online accuracy label of one served query, from its owner or a reviewer."""

from __future__ import annotations

from anyio import to_thread
from fastapi import APIRouter, Request

from serving.deps import CallerDep, LimiterDep, StoreDep
from serving.schemas import AUTH_RESPONSES, ErrorPublic, FeedbackCreate, FeedbackPublic

router = APIRouter(prefix="/v1", tags=["feedback"])


@router.post("/feedback", response_model=FeedbackPublic, status_code=201, responses={
    **AUTH_RESPONSES,
    404: {"model": ErrorPublic, "description": "Unknown query id — or a query the caller may not label "
                                              "(the answer is the same, so ids are not confirmed)."},
    409: {"model": ErrorPublic, "description": "The owner labelled this query already; the first label stands."},
    422: {"model": ErrorPublic, "description": "Malformed body."}})
async def create_feedback(body: FeedbackCreate, request: Request, store: StoreDep, limiter: LimiterDep,
                          principal: CallerDep) -> FeedbackPublic:
    """Label a served query correct or not, optionally with the corrected SQL (``t2s feedback export``
    turns corrections into candidate golden items). Only the caller that asked the query may label it, once
    (a second label is 409); a **reviewer** (role ``reviewer`` or ``admin``) may label any query, and its
    label supersedes the owner's — the latest review is the one the experiment report uses. Every label is
    kept in the label history."""
    result = await to_thread.run_sync(lambda: store.label(
        body.query_id, body.correct, body.corrected_sql, body.comment, principal=principal.id,
        reviewer=principal.is_reviewer), limiter=limiter)
    rec = await to_thread.run_sync(store.get, body.query_id, limiter=limiter)
    if rec is not None:
        request.state.record = rec
        if result.first:  # the live metric counts each query's first label; the report reads the effective one
            request.app.state.metrics.label(variant=rec.variant, prompt_version=rec.prompt_version,
                                            model_version=rec.model_version, correct=body.correct,
                                            request_id=request.state.request_id, query_id=rec.query_id)
    return FeedbackPublic(query_id=body.query_id, correct=body.correct, recorded_at=result.recorded_at,
                          source=result.source)  # type: ignore[arg-type]
