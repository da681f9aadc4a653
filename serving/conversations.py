"""Conversations: a principal's questions about one database, so a follow-up is read against the earlier ones.

A conversation lives server-side in :mod:`serving.web_state` (Redis when configured, else the store) as
``conv:<id>`` and expires ``T2S_SERVE_SESSION_TTL_S`` (8 h) after its last question. It belongs to the
principal that created it: for anyone else it does not exist (:class:`UnknownSession`, HTTP 404, the same
answer as an unknown id). Each turn keeps the question, the SQL served and the query id; the model is given
the last :data:`CONTEXT_TURNS` turns that produced SQL (:meth:`Conversation.context`).

Two questions sent at once to one conversation are both answered, and the later write keeps its turn
list: the page sends one at a time.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from t2s.datasets import Turn
from t2s.errors import Text2SQLError

CONTEXT_TURNS = 4
MAX_TURNS = 50


class UnknownSession(Text2SQLError):
    """No conversation with this id belongs to the caller (HTTP 404)."""


class SessionFull(Text2SQLError):
    """The conversation reached :data:`MAX_TURNS` (HTTP 409): start a new one."""


@dataclass
class Conversation:
    session_id: str
    principal: str
    database: str
    turns: list[dict[str, Any]] = field(default_factory=list)
    expires_at: float = 0.0

    def context(self) -> list[Turn]:
        """The earlier turns the model is given: the last few that produced SQL, oldest first."""
        with_sql = [Turn(question=t["question"], sql=t["sql"]) for t in self.turns if t.get("sql")]
        return with_sql[-CONTEXT_TURNS:]


class Conversations:
    def __init__(self, state: Any, ttl_s: float) -> None:
        self.state = state
        self.ttl_s = ttl_s

    def create(self, principal: str, database: str) -> Conversation:
        conv = Conversation(secrets.token_urlsafe(18), principal, database, [], time.time() + self.ttl_s)
        self._save(conv)
        return conv

    def get(self, session_id: str, principal: str) -> Conversation:
        raw = self.state.get(f"conv:{session_id}") if len(session_id) <= 64 else None
        if raw is None or raw.get("principal") != principal:
            raise UnknownSession(f"no conversation {session_id[:64]!r}: it expired, was deleted, or is not "
                                 "yours; start a new one with POST /v1/sessions")
        return Conversation(session_id, raw["principal"], raw["database"], raw["turns"], raw["expires_at"])

    def add_turn(self, conv: Conversation, question: str, sql: str | None, query_id: str, outcome: str) -> int:
        """Append a turn (its number, from 1) and restart the conversation's time to live."""
        conv.turns.append({"question": question, "sql": sql, "query_id": query_id, "outcome": outcome})
        conv.expires_at = time.time() + self.ttl_s
        self._save(conv)
        return len(conv.turns)

    def check_room(self, conv: Conversation) -> None:
        if len(conv.turns) >= MAX_TURNS:
            raise SessionFull(f"this conversation has {MAX_TURNS} questions, the most one can hold; start a new one")

    def delete(self, session_id: str, principal: str) -> None:
        self.get(session_id, principal)
        self.state.delete(f"conv:{session_id}")

    def _save(self, conv: Conversation) -> None:
        self.state.put(f"conv:{conv.session_id}", {"principal": conv.principal, "database": conv.database,
                                                    "turns": conv.turns, "expires_at": conv.expires_at}, self.ttl_s)
