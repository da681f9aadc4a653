"""``POST /v1/sql``: a question in, SQL (and rows) out, through the experiment's variant for this user."""

from __future__ import annotations

import logging
import re

from anyio import to_thread
from fastapi import APIRouter, HTTPException, Request

from serving.auth import experiment_user
from serving.deps import GenerateDep, LimiterDep, ServiceDep
from serving.schemas import AUTH_RESPONSES, ErrorPublic, SqlCreate, SqlPublic
from serving.service import Answer
from t2s.settings import Settings

router = APIRouter(prefix="/v1", tags=["sql"])
log = logging.getLogger("t2s.serving")
# What a response's detail must not show: URLs (a model endpoint), IP addresses, a database server's name.
_ADDRESS = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s)\"']+|\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b|(?<=server at \")[^\"]+")


def _down_reason(answer: Answer) -> str:
    """Why the model endpoint counts as down, in words that name no address: its circuit is open, it timed
    out, or it could not be reached or refused the credentials."""
    if answer.circuit_open:
        return f"circuit open after repeated failures; retry in {max(1, answer.retry_after_s)} s"
    if "timed out" in (answer.record.detail or ""):
        return "it timed out"
    return "it could not be reached or refused the request"


def public_detail(detail: str | None) -> str | None:
    """``detail`` as a caller may see it: internal addresses replaced (the store keeps the full text)."""
    return None if detail is None else _ADDRESS.sub("<internal>", detail)


@router.post("/sql", response_model=SqlPublic, responses={
    **AUTH_RESPONSES,
    404: {"model": ErrorPublic, "description": "Unknown database."},
    422: {"model": ErrorPublic, "description": "Malformed body, empty or too long question."},
    503: {"model": ErrorPublic, "description": "The model endpoint (or its circuit), the variant or the store is "
                                              "unavailable; `Retry-After` says when to retry."}})
async def create_sql(body: SqlCreate, request: Request, service: ServiceDep, limiter: LimiterDep,
                     principal: GenerateDep) -> SqlPublic:
    """Generate SQL for the question with the user's variant; execute it read-only unless ``execute`` is
    false. Refused SQL is never executed: ``outcome`` is ``guard_refused`` and ``detail`` says why. Every
    request is recorded under the returned ``query_id``, owned by the caller: only it (or a reviewer) can
    label it. With authentication on, the experiment user is the caller itself and ``user_id`` is ignored,
    unless the caller may act for end users (API key ``act_for_users``, or a group in
    ``T2S_SERVE_JWT_ACT_FOR_USERS_GROUPS``). While the model endpoint's circuit is open, an identical
    question answered before comes back with ``cached: true``."""
    question = checked_question(body.question, service.settings)
    answer = await to_thread.run_sync(service.answer, question, body.database,
                                      experiment_user(principal, body.user_id), body.execute, body.max_rows,
                                      principal.id, limiter=limiter)
    return served(answer, request)


def checked_question(text: str, settings: Settings) -> str:
    """The question without surrounding blanks; 422 when blank or over ``T2S_SERVE_MAX_QUESTION_CHARS``."""
    question = text.strip()
    if not question:
        raise HTTPException(422, "question is blank")
    if len(text) > settings.serve_max_question_chars:  # the length the OpenAPI document's maxLength counts
        raise HTTPException(422, f"question is {len(text)} characters; the limit is "
                                 f"{settings.serve_max_question_chars} (T2S_SERVE_MAX_QUESTION_CHARS)")
    return question


def served(answer: Answer, request: Request) -> SqlPublic:
    """The response for a served answer, after its metrics; 503 (``Retry-After``) when the model was down.
    Shared by ``POST /v1/sql`` and the conversations' questions (:mod:`serving.routers.sessions`)."""
    rec = answer.record
    request.state.record = rec
    request.app.state.metrics.request(
        variant=rec.variant, prompt_version=rec.prompt_version, model_version=rec.model_version,
        outcome=rec.outcome, latency_ms=rec.latency_ms, request_id=request.state.request_id,
        query_id=rec.query_id, cached=answer.cached, circuit_open=answer.circuit_open)
    if answer.llm_down:  # the detail (the endpoint's address, the error) is in the store and the log only
        log.warning("model endpoint down for query %s: %s", rec.query_id, rec.detail)
        raise HTTPException(503, f"the model endpoint is unavailable: {_down_reason(answer)} "
                                 f"(query {rec.query_id} recorded as llm_error)",
                            headers={"Retry-After": str(max(1, answer.retry_after_s))})
    return SqlPublic(query_id=rec.query_id, outcome=rec.outcome, sql=rec.sql, dialect=answer.dialect,  # type: ignore[arg-type]
                     detail=public_detail(rec.detail), columns=answer.columns, rows=answer.rows, truncated=answer.truncated,
                     experiment=rec.experiment, variant=rec.variant, prompt_version=rec.prompt_version or "",
                     model_version=rec.model_version or "", latency_ms=round(rec.latency_ms, 2),
                     cached=answer.cached)
