"""``POST /v1/feedback``: the online accuracy label of one served query (one label per query)."""

from __future__ import annotations

from anyio import to_thread
from fastapi import APIRouter

from serving.deps import LimiterDep, StoreDep
from serving.schemas import ErrorPublic, FeedbackCreate, FeedbackPublic

router = APIRouter(prefix="/v1", tags=["feedback"])


@router.post("/feedback", response_model=FeedbackPublic, status_code=201, responses={
    404: {"model": ErrorPublic, "description": "Unknown query id."},
    409: {"model": ErrorPublic, "description": "The query already has a label; the first one stands."},
    422: {"model": ErrorPublic, "description": "Malformed body."}})
async def create_feedback(body: FeedbackCreate, store: StoreDep, limiter: LimiterDep) -> FeedbackPublic:
    """Label a served query correct or not, optionally with the corrected SQL (``t2s feedback export``
    turns corrections into candidate golden items). A second label for the same query is refused (409)."""
    at = await to_thread.run_sync(store.label, body.query_id, body.correct, body.corrected_sql, body.comment,
                                  limiter=limiter)
    return FeedbackPublic(query_id=body.query_id, correct=body.correct, recorded_at=at)
