"""Request and response bodies of the HTTP API: ``Create`` (in, ``extra="forbid"``) / ``Public`` (out)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

Outcome = Literal["ok", "guard_refused", "sql_error", "empty", "timeout", "llm_error"]
# Questions longer than this are refused by the schema; T2S_SERVE_MAX_QUESTION_CHARS may lower it further.
QUESTION_HARD_LIMIT = 20_000


class SqlCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=QUESTION_HARD_LIMIT,
                          description="The question in natural language.", examples=["How many branches are there?"])
    database: str = Field("bank", min_length=1, max_length=64, description="A served database name (GET /health/ready lists them).")
    user_id: str | None = Field(None, min_length=1, max_length=256,
                                description="Stable id of the end user: keeps them on one variant. Without it "
                                            "the variant is chosen at random and reported separately. With "
                                            "authentication on it counts only from a caller allowed to act "
                                            "for users; any other caller is its own user.")
    execute: StrictBool = Field(True, description="Run the SQL (read-only) and return rows.")
    max_rows: int | None = Field(None, ge=1, le=100_000, description="Rows to return (capped by the service).")


class SqlPublic(BaseModel):
    query_id: str = Field(description="Send it back with POST /v1/feedback.")
    outcome: Outcome
    sql: str | None = Field(description="The SQL in the database's dialect; null when none was produced.")
    dialect: str
    detail: str | None = Field(None, description="Why the SQL was refused or failed.")
    columns: list[str] | None = None
    rows: list[list[Any]] | None = None
    truncated: bool | None = None
    experiment: str
    variant: str
    prompt_version: str
    model_version: str
    latency_ms: float
    cached: bool = Field(False, description="Served from the answer cache while the model endpoint's circuit "
                                            "is open (the SQL and rows of an identical earlier question).")


class FeedbackCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query_id: str = Field(min_length=1, max_length=36)
    correct: StrictBool
    corrected_sql: str | None = Field(None, min_length=1, max_length=QUESTION_HARD_LIMIT)
    comment: str | None = Field(None, max_length=4000)


class FeedbackPublic(BaseModel):
    query_id: str
    correct: bool
    recorded_at: datetime
    source: Literal["owner", "reviewer"] = Field(
        description="`owner`: the caller asked this query; `reviewer`: a reviewer's label, which supersedes "
                    "the owner's (the latest review is the effective label).")


class ErrorBody(BaseModel):
    type: str
    message: str


class ErrorPublic(BaseModel):
    error: ErrorBody


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorPublic, "description": "Missing, expired or invalid credentials."},
    403: {"model": ErrorPublic, "description": "Valid credentials without the role this call needs."},
    413: {"model": ErrorPublic, "description": "The body is larger than T2S_SERVE_MAX_BODY_BYTES."},
    429: {"model": ErrorPublic, "description": "Rate limit exceeded; `Retry-After` says when to retry."},
}


class CheckPublic(BaseModel):
    status: Literal["ok", "degraded", "error"]
    detail: str | None = None


class ReadyPublic(BaseModel):
    status: Literal["ready", "degraded", "not_ready"]
    registry: CheckPublic
    model_endpoints: dict[str, CheckPublic]
    databases: dict[str, CheckPublic]
    store: CheckPublic
    experiment: str
    variants: dict[str, dict[str, Any]]
    rate_limits: CheckPublic | None = None
    auth: CheckPublic | None = None
    circuits: dict[str, dict[str, Any]] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    checked_at: datetime | None = Field(None, description="When these checks ran (results are reused for "
                                                          "T2S_SERVE_READY_CACHE_S).")


class StopCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variant: str | None = Field(description="Send all traffic to this variant; null resumes the split.")
    reason: str | None = Field(None, max_length=1000)


class ExperimentPublic(BaseModel):
    name: str
    salt_set: bool
    control: str
    status: str
    variants: list[dict[str, Any]]


class ReloadPublic(BaseModel):
    experiment: str
    variants: dict[str, str]
    errors: list[str]


# --- the analyst web app's API: conversations, dry runs of caller SQL, the review queue -----------------

class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    database: str = Field("bank", min_length=1, max_length=64, description="The served database the conversation asks about.")


class TurnPublic(BaseModel):
    question: str
    sql: str | None
    query_id: str
    outcome: Outcome


class SessionPublic(BaseModel):
    session_id: str = Field(description="Only its owner can use it; anyone else gets 404.")
    database: str
    turns: list[TurnPublic]
    expires_at: datetime = Field(description="T2S_SERVE_SESSION_TTL_S after the last question (8 h by default).")


class SessionQuestionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=QUESTION_HARD_LIMIT,
                          description="A question, or a follow-up of the earlier ones (\"only for 2024\").",
                          examples=["Now only for 2024"])
    execute: StrictBool = Field(True, description="Run the SQL (read-only) and return rows.")
    max_rows: int | None = Field(None, ge=1, le=100_000, description="Rows to return (capped by the service).")


class SessionAnswerPublic(SqlPublic):
    session_id: str
    turn: int = Field(description="1 for the conversation's first question.")
    context_turns: int = Field(description="Earlier turns given to the model with this question.")


class DryRunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    database: str = Field("bank", min_length=1, max_length=64)
    sql: str = Field(min_length=1, max_length=QUESTION_HARD_LIMIT, description="One read-only query in the "
                                                                              "database's dialect.")


class DryRunPublic(BaseModel):
    outcome: Literal["ok", "empty", "guard_refused", "sql_error", "timeout"]
    detail: str | None = Field(None, description="Why the SQL was refused or failed.")
    columns: list[str] | None = None
    rows: list[list[Any]] | None = None
    truncated: bool | None = Field(None, description="More rows exist than the dry run returns (T2S_SERVE_DRY_RUN_ROWS).")
    latency_ms: float


class LabelPublic(BaseModel):
    correct: bool
    source: str = Field(description="owner, reviewer, or unverified (given before labels had owners).")


class ReviewItemPublic(BaseModel):
    query_id: str
    ts: datetime
    variant: str
    prompt_version: str | None
    model_version: str | None
    database: str
    question: str
    context: list[dict[str, str | None]] = Field(
        description="The conversation before a follow-up question: earlier questions with their SQL.")
    sql: str | None
    outcome: str
    detail: str | None
    rows_returned: int | None
    label: LabelPublic | None = Field(description="The effective label, if any.")


class ReviewPublic(BaseModel):
    experiment: str
    variant: str | None
    sample: Literal["recent", "random"]
    matching: int = Field(description="Queries that match the filter; `items` is a sample of them.")
    items: list[ReviewItemPublic]
