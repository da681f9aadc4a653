"""The request/feedback store: every served request and every label, in a real database.

SQLAlchemy 2 Core over SQLite (WAL, the default) or PostgreSQL (``postgresql+psycopg://…``); the schema is
owned by the Alembic migrations in ``serving/migrations`` (:func:`migrate`). Tables:

- ``queries``: one row per request that reached generation — query id, time, user hash (the raw id only
  when ``T2S_SERVE_STORE_RAW_USER_ID`` is set), experiment, variant, prompt and model versions, database,
  question, SQL, outcome class, detail, latency, rows returned.
- ``queries.principal``: who asked (``jwt:<sub>``, ``key:<name>``, as in the request log) — the query's
  owner. With a principal allowed to act for users, ``user_hash`` is its end user's and ``principal`` the
  service's: both are recorded.
- ``feedback``: the **effective** label of each query (primary key = query id), with its ``source`` and
  the ``principal`` who gave it. Only the owner or a reviewer may label (anyone else is told the query
  does not exist, :class:`UnknownQuery`). The owner labels once: a second label is refused
  (:class:`LabelExists`, HTTP 409, without saying what the first one was); a reviewer's label supersedes
  the owner's, and a later reviewer's label supersedes an earlier one (see :meth:`Store.label`).
- ``label_history``: every accepted label, in order, so a superseded label is never lost.
- ``service_control``: a counter ``/admin/reload`` bumps so every process reloads (:mod:`serving.reload`).
- ``experiment_status``: an experiment stopped on one variant; every process and replica reads it, so
  stopping needs no restart.
- ``experiment_epochs``: each split an experiment has served under (``queries.epoch`` is its id, see
  :func:`serving.assignment.split_epoch`): the share of users per variant, the weights as configured,
  the stopped variant, and when a server first assigned under it. The report checks each epoch's users
  against that epoch's split.

Concurrent writers lose nothing: on SQLite each write transaction starts with ``BEGIN IMMEDIATE`` under a
30 s busy timeout (a deferred transaction that reads first can deadlock on the lock upgrade); on PostgreSQL
each write is one short transaction from a connection pool sized for the serving thread pool.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from t2s.errors import ConfigError, Text2SQLError

OUTCOMES = ("ok", "guard_refused", "sql_error", "empty", "timeout", "llm_error")
MIGRATIONS = Path(__file__).resolve().parent / "migrations"

metadata = sa.MetaData()

queries = sa.Table(
    "queries", metadata,
    sa.Column("query_id", sa.String(36), primary_key=True),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("user_hash", sa.String(64), nullable=True, index=True),
    sa.Column("user_id", sa.Text, nullable=True),
    sa.Column("random_assignment", sa.Boolean, nullable=False),
    sa.Column("experiment", sa.String(64), nullable=False, index=True),
    sa.Column("variant", sa.String(64), nullable=False),
    sa.Column("prompt_version", sa.String(200), nullable=True),
    sa.Column("model_version", sa.String(32), nullable=True),
    sa.Column("model", sa.String(200), nullable=True),
    sa.Column("database", sa.String(64), nullable=False),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("sql", sa.Text, nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("rows_returned", sa.Integer, nullable=True),
    sa.Column("principal", sa.String(300), nullable=True, index=True),
    sa.Column("epoch", sa.String(16), nullable=True),  # the split the assignment was made under
    sa.Column("context", sa.Text, nullable=True),  # JSON: the conversation before a follow-up question
)

# Where the effective label came from: the query's owner, a reviewer, or a label recorded before labels
# were tied to their owner (any caller could give it).
LABEL_SOURCES = ("owner", "reviewer", "unverified")

feedback = sa.Table(
    "feedback", metadata,
    sa.Column("query_id", sa.String(36), sa.ForeignKey("queries.query_id"), primary_key=True),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("correct", sa.Boolean, nullable=False),
    sa.Column("corrected_sql", sa.Text, nullable=True),
    sa.Column("comment", sa.Text, nullable=True),
    sa.Column("principal", sa.String(300), nullable=True),
    sa.Column("source", sa.String(16), nullable=False, server_default="unverified"),
)

label_history = sa.Table(
    "label_history", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("query_id", sa.String(36), sa.ForeignKey("queries.query_id"), nullable=False, index=True),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("principal", sa.String(300), nullable=True),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("correct", sa.Boolean, nullable=False),
    sa.Column("corrected_sql", sa.Text, nullable=True),
    sa.Column("comment", sa.Text, nullable=True),
)

service_control = sa.Table(
    "service_control", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

experiment_epochs = sa.Table(
    "experiment_epochs", metadata,
    sa.Column("experiment", sa.String(64), primary_key=True),
    sa.Column("epoch", sa.String(16), primary_key=True),
    sa.Column("shares", sa.Text, nullable=False),   # JSON {variant: share of users}
    sa.Column("weights", sa.Text, nullable=False),  # JSON {variant: weight as configured}
    sa.Column("stopped_variant", sa.String(64), nullable=True),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)

experiment_status = sa.Table(
    "experiment_status", metadata,
    sa.Column("experiment", sa.String(64), primary_key=True),
    sa.Column("stopped_variant", sa.String(64), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
)


class UnknownQuery(Text2SQLError):
    """No request with this query id was recorded."""


class LabelExists(Text2SQLError):
    """The owner labelled this query already; the first label stands (a reviewer may supersede it)."""


@dataclass(frozen=True)
class LabelResult:
    recorded_at: datetime
    source: str  # owner | reviewer
    first: bool  # the query had no label before this one
    superseded: str | None = None  # the source of the label this one replaced


@dataclass(frozen=True)
class QueryRecord:
    query_id: str
    ts: datetime
    user_hash: str | None
    user_id: str | None
    random_assignment: bool
    experiment: str
    variant: str
    prompt_version: str | None
    model_version: str | None
    model: str | None
    database: str
    question: str
    sql: str | None
    outcome: str
    detail: str | None
    latency_ms: float
    rows_returned: int | None
    principal: str | None = None
    epoch: str | None = None  # serving.assignment.split_epoch of the split the variant was assigned under
    context: str | None = None  # JSON list of the earlier turns ({question, sql}) given with a follow-up


def user_hash(key: str, user_id: str) -> str:
    """A keyed hash of the user id: stable, not reversible without the key."""
    return hmac.new(key.encode(), user_id.encode(), hashlib.sha256).hexdigest()[:32]


def make_engine(url: str, pool_size: int = 20) -> sa.Engine:
    """An engine for ``url`` with the SQLite recipe (WAL, busy timeout, BEGIN IMMEDIATE) when it is SQLite."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"T2S_SERVE_STORE_URL is not a database URL: {url!r} (e.g. sqlite:///serving.db or "
                          "postgresql+psycopg://user@host/db)", field="serve_store_url") from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "isolation_level": None,
                                                     "timeout": 30}, pool_size=pool_size, max_overflow=pool_size)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _begin_immediate(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return sa.create_engine(parsed, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest Alembic revision (idempotent; safe from several processes)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":  # one migrator at a time across processes and replicas
            conn.exec_driver_sql("SELECT pg_advisory_lock(74321)")
            conn.commit()
        try:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        finally:
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql("SELECT pg_advisory_unlock(74321)")
                conn.commit()


@dataclass(eq=False)
class _Pending:
    record: QueryRecord
    error: BaseException | None = None
    done: bool = False


class Store:
    """Recording and reading requests, labels and experiment status. Thread-safe (one engine, pooled)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._cond = threading.Condition()
        self._pending: list[_Pending] = []
        self._committing = False

    @classmethod
    def open(cls, url: str, *, pool_size: int = 20, run_migrations: bool = True) -> Store:
        engine = make_engine(url, pool_size)
        if run_migrations:
            migrate(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.select(1))

    # -- requests

    def record(self, rec: QueryRecord) -> None:
        """Insert ``rec`` durably before returning; concurrent calls share one transaction (group commit).

        A burst of requests finishing together (100 users waiting on the same slow model) would otherwise
        queue for SQLite's single writer one transaction at a time. The first caller commits everything
        queued so far while later ones wait; each caller returns only once its own row is committed, and
        gets its own error if that row could not be written.
        """
        entry = _Pending(rec)
        with self._cond:
            self._pending.append(entry)
            while not entry.done:
                if self._committing:
                    self._cond.wait()
                    continue
                self._committing = True
                batch, self._pending = self._pending, []
                self._cond.release()
                try:
                    self._commit(batch)
                finally:
                    self._cond.acquire()
                    self._committing = False
                    self._cond.notify_all()
        if entry.error is not None:
            raise entry.error

    def _insert(self, records: list[QueryRecord]) -> None:
        with self.engine.begin() as conn:
            conn.execute(queries.insert(), [r.__dict__ for r in records])

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            self._insert([e.record for e in batch])
        except Exception:
            if len(batch) == 1:
                batch[0].error, batch[0].done = sys.exc_info()[1], True  # type: ignore[assignment]
                return
            for e in batch:  # one bad row must not lose the others: write them one by one
                try:
                    self._insert([e.record])
                except Exception as exc:
                    e.error = exc
                e.done = True
            return
        for e in batch:
            e.done = True

    def get(self, query_id: str) -> QueryRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(queries).where(queries.c.query_id == query_id)).mappings().first()
        return None if row is None else QueryRecord(**{**row, "ts": _utc(row["ts"])})

    # -- labels

    def label(self, query_id: str, correct: bool, corrected_sql: str | None, comment: str | None, *,
              principal: str, reviewer: bool = False) -> LabelResult:
        """Label ``query_id`` as ``principal`` (``reviewer``: it has the reviewer role).

        - Only the query's owner (the principal that asked) or a reviewer may label it; for anyone else the
          query does not exist (:class:`UnknownQuery`, the same message as an unknown id, so ids are not
          confirmed). Queries recorded before owners were stored can be labelled by reviewers only.
        - The owner's label is ``source="owner"``; it is given once — a second one is
          :class:`LabelExists` (HTTP 409), and so is an owner's label after a reviewer's.
        - A reviewer's label on someone else's query is ``source="reviewer"`` and becomes the effective
          label, superseding the owner's or an earlier reviewer's (the latest review wins). A reviewer
          labelling its own query is its owner.
        - Every accepted label is appended to ``label_history``; ``feedback`` keeps the effective one.
        """
        now = datetime.now(UTC)
        try:
            with self.engine.begin() as conn:
                return self._label(conn, now, query_id, correct, corrected_sql, comment, principal, reviewer)
        except sa.exc.IntegrityError:  # a concurrent first label of the same query won the race
            if not reviewer:
                raise LabelExists(f"query {query_id} already has a label; the first label stands") from None
        with self.engine.begin() as conn:  # that label is committed now: the review supersedes it
            return self._label(conn, now, query_id, correct, corrected_sql, comment, principal, reviewer)

    @staticmethod
    def _label(conn: sa.Connection, now: datetime, query_id: str, correct: bool, corrected_sql: str | None,
               comment: str | None, principal: str, reviewer: bool) -> LabelResult:
        # FOR UPDATE: concurrent labels of one query take turns on PostgreSQL (SQLite's BEGIN IMMEDIATE already does)
        row = conn.execute(sa.select(queries.c.principal).where(queries.c.query_id == query_id)
                           .with_for_update()).first()
        owner = row is not None and row[0] is not None and row[0] == principal
        if row is None or not (owner or reviewer):
            raise UnknownQuery(f"no request with query_id {query_id!r} was recorded; use the query_id "
                               "returned by POST /v1/sql")
        source = "owner" if owner else "reviewer"
        previous = conn.execute(sa.select(feedback.c.source).where(feedback.c.query_id == query_id)).first()
        if previous is not None and source == "owner":
            raise LabelExists(f"query {query_id} already has a label; the first label stands")
        values = {"ts": now, "correct": correct, "corrected_sql": corrected_sql, "comment": comment,
                  "principal": principal, "source": source}
        if previous is None:
            conn.execute(feedback.insert(), [{"query_id": query_id, **values}])
        else:
            conn.execute(feedback.update().where(feedback.c.query_id == query_id).values(**values))
        conn.execute(label_history.insert(), [{"query_id": query_id, **values}])
        return LabelResult(now, source, first=previous is None, superseded=None if previous is None else previous[0])

    def labels_of(self, query_id: str) -> list[dict[str, Any]]:
        """Every accepted label of ``query_id``, oldest first (``ts``, ``principal``, ``source``, ``correct``,
        ``corrected_sql``, ``comment``)."""
        stmt = (sa.select(label_history.c.ts, label_history.c.principal, label_history.c.source,
                          label_history.c.correct, label_history.c.corrected_sql, label_history.c.comment)
                .where(label_history.c.query_id == query_id).order_by(label_history.c.id))
        with self.engine.connect() as conn:
            return [{**r, "ts": _utc(r["ts"])} for r in conn.execute(stmt).mappings()]

    # -- experiment status

    def stopped_variant(self, experiment: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(experiment_status.c.stopped_variant)
                               .where(experiment_status.c.experiment == experiment)).first()
        return None if row is None else row[0]

    def set_stopped(self, experiment: str, variant: str | None, reason: str | None = None) -> None:
        """Stop ``experiment`` on ``variant`` (all traffic there), or resume it with ``None``."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            done = conn.execute(experiment_status.update().where(experiment_status.c.experiment == experiment)
                                .values(stopped_variant=variant, updated_at=now, reason=reason)).rowcount
            if not done:
                conn.execute(experiment_status.insert(), [{"experiment": experiment, "stopped_variant": variant,
                                                           "updated_at": now, "reason": reason}])

    # -- broadcasts to every process (serving.reload)

    def generation(self, name: str) -> int:
        """The counter ``name`` (0 before its first :meth:`bump`)."""
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(service_control.c.generation)
                                 .where(service_control.c.name == name)).scalar()
        return int(value or 0)

    def bump(self, name: str) -> int:
        """Advance the counter ``name``; returns its new value (every process polling it sees the change)."""
        now = datetime.now(UTC)
        for _ in range(2):  # the first bump of a name may race another process's first bump
            try:
                with self.engine.begin() as conn:
                    done = conn.execute(service_control.update().where(service_control.c.name == name)
                                        .values(generation=service_control.c.generation + 1, updated_at=now)).rowcount
                    if not done:
                        conn.execute(service_control.insert(), [{"name": name, "generation": 1, "updated_at": now}])
                    return int(conn.execute(sa.select(service_control.c.generation)
                                            .where(service_control.c.name == name)).scalar_one())
            except sa.exc.IntegrityError:
                continue
        raise RuntimeError(f"could not advance {name!r}")

    # -- epochs of an experiment's split

    def record_epoch(self, experiment: str, epoch: str, shares: dict[str, float], weights: dict[str, float],
                     stopped_variant: str | None) -> None:
        """Remember the split behind ``epoch`` (idempotent: the first server to assign under it records it)."""
        row = {"experiment": experiment, "epoch": epoch, "shares": json.dumps(shares), "weights": json.dumps(weights),
               "stopped_variant": stopped_variant, "recorded_at": datetime.now(UTC)}
        try:
            with self.engine.begin() as conn:
                known = conn.execute(sa.select(experiment_epochs.c.epoch).where(
                    (experiment_epochs.c.experiment == experiment) & (experiment_epochs.c.epoch == epoch))).first()
                if known is None:
                    conn.execute(experiment_epochs.insert(), [row])
        except sa.exc.IntegrityError:  # another process recorded it first: the same split, nothing to do
            pass

    def epochs(self, experiment: str) -> list[dict[str, Any]]:
        """The recorded splits of ``experiment``, oldest first: epoch, shares, weights, stopped_variant,
        recorded_at."""
        stmt = (sa.select(experiment_epochs).where(experiment_epochs.c.experiment == experiment)
                .order_by(experiment_epochs.c.recorded_at))
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [{"epoch": r["epoch"], "shares": json.loads(r["shares"]), "weights": json.loads(r["weights"]),
                 "stopped_variant": r["stopped_variant"], "recorded_at": _utc(r["recorded_at"])} for r in rows]

    # -- reading for reports and exports

    def records_frame(self, experiment: str) -> Any:
        """The experiment's requests joined with their labels, as the report contract's DataFrame.

        ``correct`` is each query's **effective** label (nullable boolean): a reviewer's when one labelled
        it (the latest review), else the owner's. ``label_source`` (object: ``"owner"``, ``"reviewer"``,
        ``"unverified"`` — given before labels were tied to their owner — or ``None`` when unlabelled)
        says which, so the report can show what its accuracy rests on. ``epoch`` is the split each request
        was assigned under (``None`` for requests recorded before epochs were kept); ``question`` the text
        asked, which the report normalizes to cluster requests by question.
        """
        import pandas as pd

        stmt = (sa.select(queries.c.query_id, queries.c.ts, queries.c.variant, queries.c.user_hash,
                          queries.c.random_assignment, queries.c.outcome, queries.c.latency_ms,
                          queries.c.rows_returned, feedback.c.correct, feedback.c.source, queries.c.epoch,
                          queries.c.question)
                .select_from(queries.outerjoin(feedback, feedback.c.query_id == queries.c.query_id))
                .where(queries.c.experiment == experiment).order_by(queries.c.ts))
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        cols = ["query_id", "ts", "variant", "user_hash", "random_assignment", "outcome", "latency_ms",
                "rows_returned", "correct", "label_source", "epoch", "question"]
        df = pd.DataFrame([tuple(r) for r in rows], columns=cols)
        df["query_id"] = df["query_id"].astype(object)
        df["ts"] = pd.to_datetime([_utc(t) for t in df["ts"]], utc=True).astype("datetime64[ns, UTC]")
        df["variant"] = df["variant"].astype(object)
        df["user_hash"] = df["user_hash"].astype(object).where(df["user_hash"].notna(), None)
        df["random_assignment"] = df["random_assignment"].astype(bool)
        df["outcome"] = df["outcome"].astype(object)
        df["latency_ms"] = df["latency_ms"].astype(float)
        df["rows_returned"] = pd.array(df["rows_returned"].tolist(), dtype="Int64")
        df["correct"] = pd.array([None if pd.isna(v) else bool(v) for v in df["correct"]], dtype="boolean")
        df["label_source"] = df["label_source"].astype(object).where(df["correct"].notna(), None)
        df["epoch"] = df["epoch"].astype(object).where(df["epoch"].notna(), None)  # None: before epochs were kept
        df["question"] = df["question"].astype(object)
        return df

    def labelled_corrections(self) -> list[dict[str, Any]]:
        """Effective labels that carry a corrected SQL, with their request: candidates for the golden set.

        Only the effective label of each query counts (a superseded label is history, not a candidate),
        and since only a query's owner or a reviewer can label it, ``source`` is ``owner``, ``reviewer``
        or ``unverified`` (recorded before that rule; anyone could have given it)."""
        stmt = (sa.select(queries.c.query_id, queries.c.question, queries.c.database, queries.c.sql,
                          queries.c.experiment, queries.c.variant, feedback.c.correct, feedback.c.corrected_sql,
                          feedback.c.comment, feedback.c.ts, feedback.c.source)
                .select_from(queries.join(feedback, feedback.c.query_id == queries.c.query_id))
                .where(feedback.c.corrected_sql.is_not(None)).order_by(feedback.c.ts))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]

    def counts(self) -> tuple[int, int]:
        """(requests, labels) recorded."""
        with self.engine.connect() as conn:
            return (int(conn.execute(sa.select(sa.func.count()).select_from(queries)).scalar_one()),
                    int(conn.execute(sa.select(sa.func.count()).select_from(feedback)).scalar_one()))


def _utc(ts: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
