"""``POST /v1/feedback``: the online accuracy label of one served query (one label per query)."""

from __future__ import annotations

from anyio import to_thread
from fastapi import APIRouter, Request

from serving.deps import CallerDep, LimiterDep, StoreDep
from serving.schemas import AUTH_RESPONSES, ErrorPublic, FeedbackCreate, FeedbackPublic

router = APIRouter(prefix="/v1", tags=["feedback"])


@router.post("/feedback", response_model=FeedbackPublic, status_code=201, responses={
    **AUTH_RESPONSES,
    404: {"model": ErrorPublic, "description": "Unknown query id."},
    409: {"model": ErrorPublic, "description": "The query already has a label; the first one stands."},
    422: {"model": ErrorPublic, "description": "Malformed body."}})
async def create_feedback(body: FeedbackCreate, request: Request, store: StoreDep, limiter: LimiterDep,
                          _principal: CallerDep) -> FeedbackPublic:
    """Label a served query correct or not, optionally with the corrected SQL (``t2s feedback export``
    turns corrections into candidate golden items). A second label for the same query is refused (409)."""
    at = await to_thread.run_sync(store.label, body.query_id, body.correct, body.corrected_sql, body.comment,
                                  limiter=limiter)
    rec = await to_thread.run_sync(store.get, body.query_id, limiter=limiter)
    if rec is not None:
        request.state.record = rec
        request.app.state.metrics.label(variant=rec.variant, prompt_version=rec.prompt_version,
                                        model_version=rec.model_version, correct=body.correct,
                                        request_id=request.state.request_id, query_id=rec.query_id)
    return FeedbackPublic(query_id=body.query_id, correct=body.correct, recorded_at=at)
