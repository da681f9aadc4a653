"""In-process engine sessions: the code that really talks to SQLite, DuckDB and PostgreSQL.

Untrusted SQL never reaches these classes in the caller's process: :mod:`t2s.sandbox` runs them inside a
worker process that can be killed (see :mod:`t2s.execution` for the public ``Target`` API). Each session
still defends itself, so that the worker is killed only when an engine cannot stop on its own:

- **SQLite**: ``mode=ro`` + ``PRAGMA query_only`` + an authorizer that allows only reads (and the
  read-only pragma table functions) + size limits (``SQLITE_LIMIT_LENGTH`` and friends, so one
  ``printf('%.*c', 1e9)`` or ``randomblob`` fails instead of allocating gigabytes) + a heap limit + a
  progress handler that stops the VM at the deadline.
- **DuckDB**: read-only, no external access, no extension loading, bounded memory and expression depth,
  configuration locked after setup; exactly one SELECT statement (DuckDB's own parser says so); each query
  runs on a fresh connection to the database instance, so temp tables, ``SET``, open or aborted
  transactions never survive into the next query; an interrupt at the deadline.
- **PostgreSQL**: the statement is sent only through the extended query protocol inside
  ``DECLARE … CURSOR`` (a multi-statement string, ``COMMIT``, ``COPY`` or ``DO`` cannot run), in a
  ``READ ONLY`` transaction with ``statement_timeout``, always rolled back, followed by ``DISCARD ALL``
  (advisory locks, prepared statements, ``LISTEN``, settings and temp tables are dropped). Production
  connects as the least-privilege role of :mod:`t2s.pg_roles`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from t2s.errors import (
    ConfigError,
    SqlError,
    SqlExecutionError,
    SqlParseError,
    SqlRefused,
    SqlTimeout,
    SqlUnknownColumn,
    SqlUnknownTable,
)
from t2s.pg_roles import check_reader
from t2s.sql_text import strip_comments


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    truncated: bool  # rows were left out (the row cap, or the result's size cap)
    elapsed_s: float
    cells_clipped: int = 0  # values cut to EngineLimits.max_cell_chars


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """Per-query resource bounds inside the engines (the worker's address-space limit is the backstop)."""

    max_value_bytes: int = 16 << 20      # largest string/blob one expression may build
    sqlite_heap_bytes: int = 512 << 20
    duckdb_memory: str = "512MB"
    max_expression_depth: int = 250
    max_cell_chars: int = 1_000_000      # a returned value is cut to this many characters (bytes for blobs)
    max_result_bytes: int = 64 << 20      # rows stop once the result's approximate size reaches this


#: Rows fetched per round trip: a result past its size cap stops within one batch (on PostgreSQL the rows
#: after it never leave the server).
FETCH_BATCH = 64
_SCALAR_BYTES = 16  # numbers, dates, NULL: what a value costs in the size count besides text


@dataclass
class _Fetched:
    rows: list[tuple[Any, ...]]
    truncated: bool
    clipped: int


def _fetch(cursor: Any, max_rows: int, limits: EngineLimits) -> _Fetched:
    """At most ``max_rows`` rows, each value cut to ``limits.max_cell_chars``, stopping before the rows'
    approximate size passes ``limits.max_result_bytes``: fetched in batches, so a huge result is never
    held whole (a single value is bounded by the engine and the worker's memory limit)."""
    out: list[tuple[Any, ...]] = []
    budget = limits.max_result_bytes
    clipped = 0
    while True:
        batch = cursor.fetchmany(FETCH_BATCH)
        if not batch:
            return _Fetched(out, False, clipped)
        for raw in batch:
            if len(out) == max_rows:
                return _Fetched(out, True, clipped)
            row = []
            size = 0
            for value in raw:
                value, cut, cost = clip_value(value, limits.max_cell_chars)
                clipped += cut
                size += cost
                row.append(value)
            if size > budget:
                return _Fetched(out, True, clipped)
            budget -= size
            out.append(tuple(row))


def clip_value(value: Any, max_chars: int) -> tuple[Any, bool, int]:
    """(value, whether it was cut, its approximate size): text and bytes cut to ``max_chars``; a list,
    dict or other container larger than that becomes its bounded text form (``reprlib``)."""
    if isinstance(value, str):
        return (value[:max_chars], True, max_chars) if len(value) > max_chars else (value, False, len(value))
    if isinstance(value, bytes | bytearray | memoryview):
        if len(value) > max_chars:
            return bytes(value[:max_chars]), True, max_chars
        return value, False, len(value)
    if isinstance(value, list | tuple | dict | set | frozenset):
        size = _container_size(value, max_chars)
        if size <= max_chars:
            return value, False, size
        import reprlib

        short = reprlib.Repr()
        short.maxlevel, short.maxstring, short.maxother = 4, max(8, max_chars // 64), 80
        return short.repr(value)[:max_chars], True, max_chars
    return value, False, _SCALAR_BYTES


def _container_size(value: Any, limit: int) -> int:
    """Approximate size of a nested value, counted only until it passes ``limit`` (bounded work)."""
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str | bytes | bytearray | memoryview):
            total += len(item) + 2
        elif isinstance(item, dict):
            total += 2
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2
            stack.extend(item)
        else:
            total += _SCALAR_BYTES
    return total


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# --- SQLite -------------------------------------------------------------------------------------------

_SQLITE_ALLOWED_ACTIONS = frozenset({
    sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, getattr(sqlite3, "SQLITE_RECURSIVE", 33),
})
_SQLITE_DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer",
                                      "randomblob", "zeroblob"})
# Read-only pragmas that back table-valued functions such as pragma_table_info(...).
_SQLITE_READ_PRAGMAS = frozenset({"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo",
                                  "foreign_key_list"})
_SQLITE_TABLE_FUNCTIONS = ("json_each('[]')", "json_tree('[]')", *(
    f"pragma_{p}('sqlite_master')" for p in sorted(_SQLITE_READ_PRAGMAS)))
_PROGRESS_EVERY = 4000  # VM instructions between deadline checks (~0.1 ms of work)


def _sqlite_authorizer(action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None) -> int:
    if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() in _SQLITE_READ_PRAGMAS:
        return sqlite3.SQLITE_OK
    if action not in _SQLITE_ALLOWED_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _SQLITE_DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def classify_sqlite(exc: BaseException, timed_out: bool) -> SqlError:
    msg = _first_line(exc)
    low = msg.lower()
    if timed_out or low == "interrupted":
        return SqlTimeout("query exceeded the timeout and was stopped")
    if low.startswith("no such table"):
        return SqlUnknownTable(msg)
    if low.startswith("no such column"):
        return SqlUnknownColumn(msg)
    if "not authorized" in low or "one statement at a time" in low or "readonly" in low or "prohibited" in low:
        return SqlRefused(msg)
    if "syntax error" in low or "incomplete input" in low or "unrecognized token" in low:
        return SqlParseError(msg)
    if "too big" in low or "too large" in low or "out of memory" in low:
        return SqlExecutionError(f"{msg} (the engine's size limit stopped the query)")
    return SqlExecutionError(msg)


def sqlite_readonly_connection(path: Path) -> sqlite3.Connection:
    """A plain read-only connection for the platform's own introspection queries (no authorizer)."""
    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, check_same_thread=False)
    conn.text_factory = lambda b: b.decode(errors="ignore")
    return conn


class SqliteSession:
    def __init__(self, path: Path, limits: EngineLimits) -> None:
        self.path = path
        self.limits = limits
        self._deadline = 0.0
        conn = sqlite_readonly_connection(path)
        conn.execute("PRAGMA query_only = 1")
        conn.execute(f"PRAGMA hard_heap_limit = {int(limits.sqlite_heap_bytes)}")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limits.max_value_bytes)
        conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, 1 << 20)
        conn.setlimit(sqlite3.SQLITE_LIMIT_EXPR_DEPTH, limits.max_expression_depth)
        conn.setlimit(sqlite3.SQLITE_LIMIT_COMPOUND_SELECT, 100)
        conn.setlimit(sqlite3.SQLITE_LIMIT_FUNCTION_ARG, 100)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 10_000)
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        # Table-valued functions register a virtual table on first use, which touches the schema; do it
        # now, before the authorizer that allows only reads.
        for tvf in _SQLITE_TABLE_FUNCTIONS:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(f"SELECT * FROM {tvf} LIMIT 0").fetchall()
        conn.set_authorizer(_sqlite_authorizer)
        conn.set_progress_handler(self._past_deadline, _PROGRESS_EVERY)
        self._conn = conn

    def _past_deadline(self) -> int:
        return 1 if time.perf_counter() > self._deadline else 0

    def run(self, sql: str, timeout_s: float, max_rows: int) -> QueryResult:
        start = time.perf_counter()
        self._deadline = start + timeout_s
        cursor = self._conn.cursor()
        try:
            cursor.execute(sql)
            got = _fetch(cursor, max_rows, self.limits)
            columns = tuple(d[0] for d in cursor.description or ())
        except (sqlite3.Error, sqlite3.Warning) as exc:
            raise classify_sqlite(exc, time.perf_counter() > self._deadline) from exc
        finally:
            cursor.close()
            if self._conn.in_transaction:
                self._conn.rollback()
        return QueryResult(columns, got.rows, got.truncated, time.perf_counter() - start,
                           got.clipped)

    def close(self) -> None:
        self._conn.close()


# --- DuckDB -------------------------------------------------------------------------------------------

class DuckdbSession:
    def __init__(self, path: Path, limits: EngineLimits) -> None:
        import duckdb

        config = {
            "enable_external_access": False, "autoinstall_known_extensions": False,
            "autoload_known_extensions": False, "allow_community_extensions": False,
            "allow_unsigned_extensions": False, "threads": 1, "memory_limit": limits.duckdb_memory,
            "max_expression_depth": limits.max_expression_depth, "temp_directory": "",
            "lock_configuration": True,
        }
        self._db = duckdb.connect(str(path), read_only=True, config=config)
        self.limits = limits

    def run(self, sql: str, timeout_s: float, max_rows: int) -> QueryResult:
        import duckdb

        start = time.perf_counter()
        fired = threading.Event()
        conn = self._db.cursor()  # a fresh connection: no session state survives from the previous query

        def _interrupt() -> None:
            fired.set()
            conn.interrupt()

        timer = threading.Timer(timeout_s, _interrupt)
        timer.daemon = True
        timer.start()
        try:
            statements = conn.extract_statements(sql)
            if not statements:
                raise SqlParseError("empty SQL: no statement found")
            if len(statements) > 1:
                raise SqlRefused(f"{len(statements)} statements found; exactly one SELECT is allowed")
            if statements[0].type != duckdb.StatementType.SELECT:
                raise SqlRefused(f"only SELECT queries are allowed; this is a {statements[0].type.name} statement")
            cursor = conn.execute(sql)
            got = _fetch(cursor, max_rows, self.limits)
            columns = tuple(d[0] for d in cursor.description or ())
        except duckdb.Error as exc:
            raise self.classify(exc, fired.is_set()) from exc
        finally:
            timer.cancel()
            conn.close()
        return QueryResult(columns, got.rows, got.truncated, time.perf_counter() - start,
                           got.clipped)

    @staticmethod
    def classify(exc: Exception, timed_out: bool) -> SqlError:
        import duckdb

        msg = _first_line(exc)
        if timed_out or isinstance(exc, duckdb.InterruptException):
            return SqlTimeout("query exceeded the timeout and was stopped")
        if isinstance(exc, duckdb.CatalogException) and "does not exist" in msg and "Table" in msg:
            return SqlUnknownTable(msg)
        if isinstance(exc, duckdb.BinderException) and ("column" in msg.lower() and "not found" in msg.lower()):
            return SqlUnknownColumn(msg)
        if isinstance(exc, duckdb.ParserException):
            return SqlParseError(msg)
        low = msg.lower()
        if isinstance(exc, duckdb.PermissionException | duckdb.InvalidInputException) and (
                "read-only" in low or "external access" in low or "disabled" in low or "locked" in low):
            return SqlRefused(msg)
        if isinstance(exc, duckdb.OutOfMemoryException):
            return SqlExecutionError(f"{msg} (the engine's memory limit stopped the query)")
        return SqlExecutionError(msg)

    def close(self) -> None:
        self._db.close()


# --- PostgreSQL ---------------------------------------------------------------------------------------

_PG_QUERY_STARTS = frozenset({"SELECT", "WITH", "VALUES", "TABLE"})
_PG_COMMANDS = frozenset(["ABORT", "ALTER", "ANALYZE", "BEGIN", "CALL", "CHECKPOINT", "CLOSE", "CLUSTER", "COMMENT", "COMMIT", "COPY", "CREATE", "DEALLOCATE", "DECLARE", "DELETE", "DISCARD", "DO", "DROP", "END", "EXECUTE", "EXPLAIN", "FETCH", "GRANT", "IMPORT", "INSERT", "LISTEN", "LOAD", "LOCK", "MERGE", "MOVE", "NOTIFY", "PREPARE", "REASSIGN", "REFRESH", "REINDEX", "RELEASE", "RESET", "REVOKE", "ROLLBACK", "SAVEPOINT", "SECURITY", "SET", "SHOW", "START", "TRUNCATE", "UNLISTEN", "UPDATE", "VACUUM"])


class PostgresSession:
    def __init__(self, dsn: str, schema: str | None, limits: EngineLimits | None = None) -> None:
        import psycopg

        self.limits = limits or EngineLimits()
        try:
            self._conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise ConfigError(f"cannot connect to PostgreSQL: {str(exc).strip()}") from exc
        try:
            check_reader(self._conn)
        except BaseException:
            self._conn.close()
            raise
        self._conn.read_only = True
        self.schema = schema

    @property
    def usable(self) -> bool:
        return not self._conn.closed

    def run(self, sql: str, timeout_s: float, max_rows: int) -> QueryResult:
        import psycopg
        from psycopg import errors as pge

        start = time.perf_counter()
        text = sql.rstrip().rstrip(";")
        words = strip_comments(text).lstrip(" \t\r\n\f(").split(None, 1)
        first = words[0].upper() if words else ""
        if first not in _PG_QUERY_STARTS:
            if first.isalpha() and first in _PG_COMMANDS:
                raise SqlRefused(f"only queries run on PostgreSQL; this is a {first} statement")
            raise SqlParseError(f"syntax error at or near {first[:40]!r}: a query starts with SELECT or WITH")
        try:
            got, columns = self._run(text, timeout_s, max_rows)
        except pge.QueryCanceled as exc:
            raise SqlTimeout("query exceeded the timeout and was stopped") from exc
        except pge.UndefinedTable as exc:
            raise SqlUnknownTable(_first_line(exc)) from exc
        except pge.UndefinedColumn as exc:
            raise SqlUnknownColumn(_first_line(exc)) from exc
        except pge.SyntaxError as exc:
            raise SqlParseError(_first_line(exc)) from exc
        except (pge.ReadOnlySqlTransaction, pge.InsufficientPrivilege, pge.FeatureNotSupported) as exc:
            raise SqlRefused(_first_line(exc)) from exc
        except psycopg.Error as exc:
            raise SqlExecutionError(_first_line(exc)) from exc
        finally:
            self._reset()
        return QueryResult(columns, got.rows, got.truncated, time.perf_counter() - start,
                           got.clipped)

    def _run(self, sql: str, timeout_s: float, max_rows: int) -> tuple[_Fetched, tuple[str, ...]]:
        from psycopg import sql as pgsql

        conn = self._conn
        try:
            with conn.transaction():
                conn.execute(pgsql.SQL("SET LOCAL statement_timeout = {}").format(int(timeout_s * 1000)))
                if self.schema:
                    conn.execute(pgsql.SQL("SET LOCAL search_path = {}, public").format(
                        pgsql.Identifier(self.schema)))
                with conn.cursor(name="t2s_query", scrollable=False, withhold=False) as cursor:
                    # An (empty) parameter list makes psycopg use the extended query protocol, which accepts
                    # exactly one statement; DECLARE … CURSOR accepts only a query. '%' is doubled because
                    # psycopg reads placeholders in the text and the statement has none.
                    cursor.execute(sql.replace("%", "%%"), [])
                    got = _fetch(cursor, max_rows, self.limits) if cursor.description else _Fetched([], False, 0)
                    columns = tuple(d.name for d in cursor.description or ())
                raise _Rollback
        except _Rollback:
            return got, columns

    def _reset(self) -> None:
        """Drop every trace a query could leave in the session (locks, settings, prepared plans, temp tables)."""
        import psycopg

        try:
            if self._conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                self._conn.rollback()
            self._conn.execute("DISCARD ALL")
        except psycopg.Error:
            self._conn.close()

    def close(self) -> None:
        self._conn.close()


class _Rollback(Exception):
    """Leaves the read-only transaction by rollback: nothing a query did survives it."""
