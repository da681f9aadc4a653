"""The serving core: one question → variant → SQL → guard → rows, recorded.

:class:`Service` holds what the app needs while it runs (settings, store, databases, the experiment and
its loaded variants) and does the blocking work of one request in :meth:`Service.answer`, which the HTTP
layer runs in its thread pool. Outcome classes (the report's guardrails):

- ``ok``: SQL generated (and, when executed, rows returned);
- ``empty``: executed, no rows;
- ``guard_refused``: the SQL is not one read-only query — never executed; ``detail`` says why;
- ``sql_error``: no usable SQL (none in the answer, unparseable) or the engine rejected it;
- ``timeout``: stopped at the query timeout;
- ``llm_error``: the model failed (or its circuit is open: see :mod:`serving.breaker`).

While a model endpoint's circuit is open, an identical question (same variant, database, execute flag)
answered before is served from :class:`serving.breaker.AnswerCache` and marked ``cached``; any other
question fails fast (HTTP 503, ``Retry-After``). Both are recorded in the store like every request.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from serving.assignment import assign, split_shares
from serving.breaker import AnswerCache, CircuitBreaker
from serving.config import ExperimentConfig, load_experiment
from serving.databases import Databases
from serving.store import QueryRecord, Store, user_hash
from serving.variants import LoadedVariant, VariantSet
from t2s import deadline
from t2s.datasets import Turn
from t2s.deadline import PrincipalShares, request_budget
from t2s.engines import QueryResult
from t2s.errors import (
    ConfigError,
    DeadlineExceeded,
    LLMError,
    SqlError,
    SqlRefused,
    SqlTimeout,
    Text2SQLError,
)
from t2s.settings import Settings
from t2s.values import json_safe_text

log = logging.getLogger("t2s.serving")


class UnknownDatabase(Text2SQLError):
    pass


class StoreUnavailable(Text2SQLError):
    """The request store cannot be written (HTTP 503); the record went to the log."""


def record_fields(record: QueryRecord) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in record.__dict__.items()}


class VariantUnavailable(Text2SQLError):
    pass


@dataclass
class Answer:
    record: QueryRecord
    dialect: str
    columns: list[str] | None = None
    rows: list[list[Any]] | None = None
    truncated: bool | None = None
    llm_down: bool = False
    cached: bool = False
    circuit_open: bool = False
    retry_after_s: int = 0


@dataclass(frozen=True)
class Executed:
    """A guarded statement run on a served database (:meth:`Service.execute`): ``outcome`` ok, empty,
    timeout, guard_refused or sql_error; ``detail`` what was cut from the result, or why it failed."""

    outcome: str
    detail: str
    columns: list[str] | None = None
    rows: list[list[Any]] | None = None
    truncated: bool | None = None


#: The most of a refused model answer kept in the record (it is never executed).
MAX_RECORDED_ANSWER_CHARS = 20_000


def jsonable(value: Any) -> Any:
    """A result value as JSON: NaN and infinities as strings (JSON has no such numbers), text with lone
    surrogates mended, bytes as hex, anything else as its text."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return json_safe_text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return json_safe_text(str(value))


def _truncation(result: QueryResult, cap: int, settings: Settings) -> str:
    """What the response left out, for ``detail`` (empty when nothing)."""
    parts = []
    if result.cells_clipped:
        parts.append(f"{result.cells_clipped} value(s) cut to {settings.serve_max_cell_chars:,} characters")
    if result.truncated:
        parts.append(f"rows stopped at {cap:,}" if len(result.rows) >= cap
                     else f"rows stopped at {settings.serve_max_response_bytes:,} bytes")
    return "result truncated: " + "; ".join(parts) if parts else ""


def _guard_refusal(text: str, dialect: str) -> str | None:
    """The guard's reason for refusing the statement in a model answer that holds no SELECT, if any."""
    from t2s.guard import guard_select
    from t2s.sql_extract import answer_statement

    candidate = answer_statement(text)
    if not candidate:
        return None
    try:
        guard_select(candidate, dialect)
    except SqlRefused as exc:
        return str(exc)
    except SqlError:
        return None
    return None


class Service:
    def __init__(self, settings: Settings, store: Store, databases: Databases) -> None:
        self.settings = settings
        self.store = store
        self.databases = databases
        self.experiment: ExperimentConfig = load_experiment(settings.serve_experiment_file)
        self.variants = VariantSet(settings)
        self._status: tuple[float, str | None] = (0.0, None)
        self._status_lock = threading.Lock()
        self.breakers: dict[str, CircuitBreaker] = {}
        self._breakers_lock = threading.Lock()
        self.answers = AnswerCache(settings.serve_answer_cache)
        self._epochs_seen: set[str] = set()
        per_principal = settings.serve_sql_workers_per_principal or max(1, settings.sandbox_workers // 2)
        self.sql_shares = PrincipalShares(per_principal)

    def breaker(self, variant: LoadedVariant) -> CircuitBreaker:
        """The circuit of the variant's model endpoint (variants on one endpoint share it)."""
        where = getattr(variant.generator.llm, "where", variant.name)
        with self._breakers_lock:
            if where not in self.breakers:
                self.breakers[where] = CircuitBreaker(self.settings.serve_breaker_failures,
                                                      self.settings.serve_breaker_reset_s)
            return self.breakers[where]

    # -- lifecycle

    def load(self) -> list[str]:
        """Load (or reload) the experiment file and its variants; returns the errors (kept serving)."""
        errors: list[str] = []
        try:
            self.experiment = load_experiment(self.settings.serve_experiment_file)
        except ConfigError as exc:
            errors.append(f"experiment file: {exc}")
        errors += self.variants.load(self.experiment)
        for v in self.variants.variants.values():  # warm schema introspection outside request threads
            for pool in self.databases.pools.values():
                try:
                    v.generator.messages("warm-up", pool.schema_target)
                except Exception as exc:
                    errors.append(f"database {pool.spec.name!r} for variant {v.name!r}: {exc}")
        self._status = (0.0, None)
        return errors

    def close(self) -> None:
        self.variants.close()
        self.databases.close()
        self.store.close()

    # -- experiment status

    def stopped_variant(self) -> str | None:
        """The variant a stopped experiment serves (read from the store, cached for a second)."""
        now = time.monotonic()
        fetched, value = self._status
        if now - fetched < self.settings.serve_status_ttl_s:
            return value
        with self._status_lock:
            value = self.store.stopped_variant(self.experiment.name)
            self._status = (time.monotonic(), value)
        return value

    def status_label(self) -> str:
        stopped = self.stopped_variant()
        return f"stopped:{stopped}" if stopped else "running"

    def _remember_epoch(self, exp: ExperimentConfig, epoch: str, stopped: str | None) -> None:
        """Record the split behind ``epoch`` the first time this process assigns under it (the report
        checks each epoch's users against its own split)."""
        if epoch in self._epochs_seen:
            return
        try:
            self.store.record_epoch(exp.name, epoch, split_shares(exp.weights, stopped), dict(exp.weights), stopped)
        except Exception as exc:  # serve anyway: the report then checks this epoch against the configured weights
            log.warning("could not record split epoch %s of experiment %s: %s", epoch, exp.name, exc)
            return
        self._epochs_seen.add(epoch)

    # -- one request

    def answer(self, question: str, database: str, user_id: str | None, execute: bool,
               max_rows: int | None, principal: str | None = None, context: Sequence[Turn] = ()) -> Answer:
        """``user_id``: the experiment user (see :func:`serving.auth.experiment_user`); ``principal``: who
        asked (the query's owner, recorded); ``context``: the earlier turns of the question's conversation
        (:mod:`serving.routers.sessions`), which the generator is given."""
        start = time.perf_counter()
        pool = self.databases.get(database)
        if pool is None:
            raise UnknownDatabase(f"unknown database {database!r}; served: {', '.join(self.databases.names)}")
        exp = self.experiment
        stopped = self.stopped_variant()
        if stopped is not None and stopped not in {v.name for v in exp.variants}:
            stopped = None
        choice = assign(exp.salt, exp.weights, user_id, stopped_variant=stopped)
        self._remember_epoch(exp, choice.epoch, stopped)
        variant = self.variants.get(choice.variant)
        if variant is None:
            raise VariantUnavailable(f"variant {choice.variant!r} is not loaded ({self.variants.last_error}); "
                                     "fix the registry or the experiment file, then POST /admin/reload")
        cap = min(max_rows or self.settings.serve_max_rows, self.settings.serve_max_rows)
        breaker = self.breaker(variant)
        cache_key = (variant.name, database, question, execute, tuple((t.question, t.sql) for t in context))
        cached = circuit_open = False
        if breaker.allow():
            with request_budget(self.settings.serve_request_deadline_s, principal or "", self.sql_shares):
                outcome, sql, detail, columns, rows, truncated, llm_down, refused = self._run(
                    variant, pool, question, execute, cap, context)
            if outcome in ("llm_error", "timeout") and not refused:  # unreachable, too slow, or still failing
                breaker.failure()
            else:
                breaker.success()
                if outcome in ("ok", "empty"):
                    self.answers.put(cache_key, (outcome, sql, columns, rows, truncated))
        else:
            circuit_open = True
            hit = self.answers.get(cache_key)
            if hit is not None:
                outcome, sql, columns, rows, truncated = hit
                if rows is not None and len(rows) > cap:
                    rows, truncated = rows[:cap], True
                detail, llm_down, cached = "cached answer: the model endpoint's circuit is open", False, True
            else:
                outcome, sql, columns, rows, truncated, llm_down = "llm_error", None, None, None, None, True
                detail = (f"circuit open: the model endpoint failed {breaker.threshold} times in a row; "
                          f"retry in {breaker.retry_after_s()} s")
        key = self.settings.serve_user_hash_key.get_secret_value()
        record = QueryRecord(
            query_id=str(uuid.uuid4()), ts=datetime.now(UTC),
            user_hash=user_hash(key, user_id) if user_id else None,
            user_id=user_id if (user_id and self.settings.serve_store_raw_user_id) else None,
            random_assignment=choice.random_assignment, epoch=choice.epoch, experiment=exp.name, variant=variant.name,
            prompt_version=variant.prompt_version, model_version=variant.model_version, model=variant.model,
            database=database, question=json_safe_text(question), sql=None if sql is None else json_safe_text(sql),
            outcome=outcome, detail=json_safe_text(detail) if detail else None,
            latency_ms=(time.perf_counter() - start) * 1000.0, rows_returned=None if rows is None else len(rows),
            principal=principal,
            context=json.dumps([t.model_dump() for t in context]) if context else None)
        try:
            self.store.record(record)
        except Exception as exc:  # the store is down: the record goes to the log instead of being lost
            log.error("store write failed; request record follows", extra={"record": record_fields(record)})
            raise StoreUnavailable(f"the request store cannot be written ({type(exc).__name__}); query "
                                   f"{record.query_id} was logged instead; retry later") from None
        return Answer(record, pool.dialect, columns, rows, truncated, llm_down, cached, circuit_open,
                      breaker.retry_after_s() if llm_down else 0)

    def _run(self, variant: LoadedVariant, pool: Any, question: str, execute: bool, cap: int,
             context: Sequence[Turn] = ()
             ) -> tuple[str, str | None, str, list[str] | None, list[list[Any]] | None, bool | None, bool, bool]:
        """(outcome, sql, detail, columns, rows, truncated, the endpoint is down, the breaker does not count this
        llm_error or timeout: the provider refused this request on its own merits, or the time went to SQL)."""
        from t2s.guard import guard_select, same_dialect

        try:
            gen = variant.generator.generate(question, pool.schema_target, context=context)
        except DeadlineExceeded as exc:
            return "timeout", None, str(exc), None, None, None, False, not exc.model_slow
        except LLMError as exc:  # unreachable endpoint or rejected credentials
            return "llm_error", None, str(exc), None, None, None, True, False
        except (SqlError, OSError) as exc:  # the schema could not be read: the database is down or gone
            return ("sql_error", None, f"database unavailable: {type(exc).__name__}: {exc}", None, None, None, False,
                    False)
        if gen.error is not None:
            outcome = {"refused": "guard_refused", "llm_error": "llm_error"}.get(gen.error, "sql_error")
            detail = f"{gen.error}: {gen.detail}"
            if gen.error == "no_sql":  # e.g. an answer that is only `DROP TABLE …`: say the guard refuses it
                refusal = _guard_refusal(gen.raw_text, variant.generator.spec.dialect)
                if refusal:
                    outcome, detail = "guard_refused", f"refused: {refusal}"
            # the answer is kept for the record (its start); it is never executed
            answer = gen.raw_text.strip()[:MAX_RECORDED_ANSWER_CHARS] or None
            return outcome, answer, detail, None, None, None, False, gen.llm_refused
        sql = gen.sql
        assert sql is not None
        if not same_dialect(variant.generator.spec.dialect, pool.dialect):
            # The generator guarded the model's text (against this engine's allowlist); transpiled text is a
            # new statement, so it is checked again. Untranspiled text is the very text already checked.
            try:
                guard_select(sql, pool.dialect, engine=pool.schema_target.engine)
            except SqlError as exc:
                return ("guard_refused" if isinstance(exc, SqlRefused) else "sql_error"), sql, str(exc), \
                    None, None, None, False, False
        if not execute:
            return "ok", sql, "", None, None, None, False, False
        ran = self.execute(pool, sql, cap)
        # time spent in SQL is not the model's: a timeout here does not count for the breaker
        return ran.outcome, sql, ran.detail, ran.columns, ran.rows, ran.truncated, False, ran.outcome == "timeout"

    def execute(self, pool: Any, sql: str, cap: int) -> Executed:
        """Run guarded ``sql`` on a target of the served database ``pool`` within the current request's
        budget (:func:`t2s.deadline.request_budget`; one of the caller's SQL worker slots), at most ``cap``
        rows, the values made JSON-safe and the cuts named. Shared by answers and dry runs."""
        budget = deadline.current()
        try:  # the caller's worker slot first, so that its waiting queries hold no pooled target
            with budget.sql_slot() if budget else contextlib.nullcontext(), pool.target() as target:
                result = target.execute(sql, timeout_s=self.settings.query_timeout_s, max_rows=cap)
        except (SqlTimeout, DeadlineExceeded) as exc:
            return Executed("timeout", str(exc))
        except SqlRefused as exc:
            return Executed("guard_refused", str(exc))
        except SqlError as exc:
            return Executed("sql_error", f"{exc.error_class}: {exc}")
        rows = [[jsonable(v) for v in row] for row in result.rows]
        return Executed("ok" if rows else "empty", _truncation(result, cap, self.settings),
                        [json_safe_text(c) for c in result.columns], rows,
                        result.truncated or bool(result.cells_clipped))
