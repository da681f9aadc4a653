"""Conversations over HTTP: ``/v1/sessions`` — ask, follow up ("now only for 2024"), read, delete.

Each question goes through the same serving path as ``POST /v1/sql`` (variant, generation, guard,
execution, the request record), with the conversation's earlier turns given to the generator
(:mod:`serving.conversations`). A conversation belongs to the principal that started it: for anyone else
every route answers 404.
"""

from __future__ import annotations

from datetime import UTC, datetime

from anyio import to_thread
from fastapi import APIRouter, HTTPException, Request, Response

from serving.auth import experiment_user
from serving.conversations import Conversation, Conversations
from serving.deps import CallerDep, GenerateDep, LimiterDep, ServiceDep
from serving.routers.sql import checked_question, served
from serving.schemas import (
    AUTH_RESPONSES,
    ErrorPublic,
    SessionAnswerPublic,
    SessionCreate,
    SessionPublic,
    SessionQuestionCreate,
    TurnPublic,
)

router = APIRouter(prefix="/v1/sessions", tags=["sessions"], responses={
    **AUTH_RESPONSES, 404: {"model": ErrorPublic, "description": "No such conversation for this caller (or, on "
                                                                "create, no such database)."}})


def conversations(request: Request) -> Conversations:
    return request.app.state.conversations  # type: ignore[no-any-return]


def _public(conv: Conversation) -> SessionPublic:
    return SessionPublic(session_id=conv.session_id, database=conv.database,
                         turns=[TurnPublic(**t) for t in conv.turns],
                         expires_at=datetime.fromtimestamp(conv.expires_at, UTC))


@router.post("", response_model=SessionPublic, status_code=201)
async def create_session(body: SessionCreate, request: Request, service: ServiceDep, limiter: LimiterDep,
                         principal: CallerDep) -> SessionPublic:
    """Start a conversation about ``database``."""
    if service.databases.get(body.database) is None:
        raise HTTPException(404, f"unknown database {body.database!r}; served: {', '.join(service.databases.names)}")
    conv = await to_thread.run_sync(conversations(request).create, principal.id, body.database, limiter=limiter)
    return _public(conv)


@router.get("/{session_id}", response_model=SessionPublic)
async def get_session(session_id: str, request: Request, limiter: LimiterDep, principal: CallerDep) -> SessionPublic:
    """The conversation's turns (question, SQL served, query id, outcome) and when it expires."""
    conv = await to_thread.run_sync(conversations(request).get, session_id, principal.id, limiter=limiter)
    return _public(conv)


@router.delete("/{session_id}", status_code=204, response_class=Response)
async def delete_session(session_id: str, request: Request, limiter: LimiterDep, principal: CallerDep) -> Response:
    await to_thread.run_sync(conversations(request).delete, session_id, principal.id, limiter=limiter)
    return Response(status_code=204)


@router.post("/{session_id}/questions", response_model=SessionAnswerPublic, responses={
    409: {"model": ErrorPublic, "description": "The conversation is full; start a new one."},
    422: {"model": ErrorPublic, "description": "Malformed body, empty or too long question."},
    503: {"model": ErrorPublic, "description": "The model endpoint, the variant, the store or the session "
                                              "storage is unavailable; `Retry-After` says when to retry."}})
async def ask(session_id: str, body: SessionQuestionCreate, request: Request, service: ServiceDep,
              limiter: LimiterDep, principal: GenerateDep) -> SessionAnswerPublic:
    """Ask in the conversation: the earlier turns that produced SQL (the last few) go to the generator with
    the question, so "split it by branch" changes the previous query. Counted against the generation rate
    limit like ``POST /v1/sql``; the answer is recorded the same way and labelled with ``POST /v1/feedback``.
    A question the model could not answer (503) is not added to the conversation."""
    store = conversations(request)
    question = checked_question(body.question, service.settings)
    conv = await to_thread.run_sync(store.get, session_id, principal.id, limiter=limiter)
    store.check_room(conv)
    context = conv.context()
    # without auth (loopback development) the principal itself is the experiment user, so a conversation
    # keeps one variant; with auth experiment_user makes it so
    user = experiment_user(principal, principal.id if principal.method == "none" else None)
    answer = await to_thread.run_sync(
        lambda: service.answer(question, conv.database, user, body.execute, body.max_rows, principal.id,
                               context=context), limiter=limiter)
    public = served(answer, request)  # raises the 503 of a model that is down
    rec = answer.record
    turn = await to_thread.run_sync(store.add_turn, conv, question, rec.sql, rec.query_id, rec.outcome,
                                    limiter=limiter)
    return SessionAnswerPublic(**public.model_dump(), session_id=conv.session_id, turn=turn,
                               context_turns=len(context))
