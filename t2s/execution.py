"""Safe execution of one read-only query on SQLite, DuckDB or PostgreSQL.

Every engine is opened read-only, every query has a wall-clock timeout that really fires and a row
cap, and engine errors are mapped to the scorer's error classes (:mod:`t2s.errors`):

- SQLite: ``mode=ro`` URI + ``PRAGMA query_only`` + an authorizer that allows only reads; the timeout
  is a progress handler that aborts the VM, so a runaway cartesian product stops at the deadline.
- DuckDB: ``read_only=True`` with external access disabled; the timeout interrupts the connection.
- PostgreSQL: a ``READ ONLY`` transaction with ``statement_timeout``; rows are read through a
  server-side cursor so the row cap also bounds client memory.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from abc import ABC, abstractmethod
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

ENGINE_DIALECT = {"sqlite": "sqlite", "duckdb": "duckdb", "postgres": "postgres"}


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    truncated: bool
    elapsed_s: float


class Target(ABC):
    """One database a query can run on."""

    engine: str

    @property
    def dialect(self) -> str:
        return ENGINE_DIALECT[self.engine]

    @abstractmethod
    def fingerprint(self) -> str:
        """A content identity: results cached under it stay valid while it is unchanged."""

    @abstractmethod
    def execute(self, sql: str, *, timeout_s: float, max_rows: int) -> QueryResult:
        """Run one read-only query; raise a :class:`SqlError` subclass on failure."""

    def columns(self) -> list[tuple[str, str, str]]:
        """``(table, column, declared type)`` for every user table and view, in declaration order.

        Introspection runs the platform's own SQL, so engines may use a path that user SQL cannot
        (SQLite's pragmas are denied to user queries by the authorizer).
        """
        q = ("SELECT table_name, column_name, data_type FROM information_schema.columns "
             "WHERE table_schema NOT IN ('information_schema', 'pg_catalog') "
             "ORDER BY table_name, ordinal_position")
        return [(str(t), str(c), str(ty or "")) for t, c, ty in
                self.execute(q, timeout_s=60, max_rows=1_000_000).rows]

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


def file_fingerprint(path: Path) -> str:
    from t2s.datasets import file_digest

    return f"md5:{file_digest(path)}"


def _fetch(cursor: Any, max_rows: int) -> tuple[list[tuple[Any, ...]], bool]:
    rows = cursor.fetchmany(max_rows + 1)
    truncated = len(rows) > max_rows
    return [tuple(r) for r in rows[:max_rows]], truncated


# --- SQLite -------------------------------------------------------------------------------------------

_SQLITE_ALLOWED_ACTIONS = frozenset({
    sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, getattr(sqlite3, "SQLITE_RECURSIVE", 33),
})
_SQLITE_DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})
_PROGRESS_EVERY = 4000  # VM instructions between deadline checks (~0.1 ms of work)


def _sqlite_authorizer(action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None) -> int:
    if action not in _SQLITE_ALLOWED_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _SQLITE_DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _classify_sqlite(exc: sqlite3.Error, timed_out: bool) -> SqlError:
    msg = str(exc)
    low = msg.lower()
    if timed_out or low == "interrupted":
        return SqlTimeout("query exceeded the timeout and was stopped")
    if low.startswith("no such table"):
        return SqlUnknownTable(msg)
    if low.startswith("no such column"):
        return SqlUnknownColumn(msg)
    if "not authorized" in low or "one statement at a time" in low or "readonly" in low:
        return SqlRefused(msg)
    if "syntax error" in low or "incomplete input" in low or "unrecognized token" in low:
        return SqlParseError(msg)
    return SqlExecutionError(msg)


class SqliteTarget(Target):
    engine = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()
        if not self.path.is_file():
            raise ConfigError(f"SQLite database not found: {self.path}")
        self._conn: sqlite3.Connection | None = None
        self._deadline = 0.0

    def fingerprint(self) -> str:
        return file_fingerprint(self.path)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(f"file:{quote(str(self.path))}?mode=ro", uri=True, check_same_thread=False)
            # Invalid UTF-8 in TEXT columns is dropped rather than failing the query (as Spider's scorer does).
            conn.text_factory = lambda b: b.decode(errors="ignore")
            conn.execute("PRAGMA query_only = 1")
            conn.set_authorizer(_sqlite_authorizer)
            conn.set_progress_handler(self._past_deadline, _PROGRESS_EVERY)
            self._conn = conn
        return self._conn

    def _past_deadline(self) -> int:
        return 1 if time.perf_counter() > self._deadline else 0

    def execute(self, sql: str, *, timeout_s: float, max_rows: int) -> QueryResult:
        conn = self._connection()
        start = time.perf_counter()
        self._deadline = start + timeout_s
        cursor = conn.cursor()
        try:
            cursor.execute(sql)
            rows, truncated = _fetch(cursor, max_rows)
            columns = tuple(d[0] for d in cursor.description or ())
        except (sqlite3.Error, sqlite3.Warning) as exc:
            err = exc if isinstance(exc, sqlite3.Error) else sqlite3.Error(str(exc))
            raise _classify_sqlite(err, time.perf_counter() > self._deadline) from exc
        except (OverflowError, ValueError, MemoryError) as exc:
            raise SqlExecutionError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            cursor.close()
        return QueryResult(columns, rows, truncated, time.perf_counter() - start)

    def columns(self) -> list[tuple[str, str, str]]:
        conn = sqlite3.connect(f"file:{quote(str(self.path))}?mode=ro", uri=True)
        try:
            conn.text_factory = lambda b: b.decode(errors="ignore")
            tables = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' "
                "ORDER BY name")]
            return [(t, col[1], col[2] or "") for t in tables
                    for col in conn.execute("SELECT * FROM pragma_table_info(?)", (t,))]
        finally:
            conn.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# --- DuckDB -------------------------------------------------------------------------------------------

class DuckdbTarget(Target):
    engine = "duckdb"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()
        if not self.path.is_file():
            raise ConfigError(f"DuckDB database not found: {self.path}")
        self._conn: Any = None

    def fingerprint(self) -> str:
        return file_fingerprint(self.path)

    def _connection(self) -> Any:
        if self._conn is None:
            import duckdb

            self._conn = duckdb.connect(str(self.path), read_only=True,
                                        config={"enable_external_access": False, "threads": 1})
        return self._conn

    def execute(self, sql: str, *, timeout_s: float, max_rows: int) -> QueryResult:
        import duckdb

        conn = self._connection()
        start = time.perf_counter()
        fired = threading.Event()

        def _interrupt() -> None:
            fired.set()
            conn.interrupt()

        timer = threading.Timer(timeout_s, _interrupt)
        timer.daemon = True
        timer.start()
        try:
            cursor = conn.execute(sql)
            rows, truncated = _fetch(cursor, max_rows)
            columns = tuple(d[0] for d in cursor.description or ())
        except duckdb.Error as exc:
            raise self._classify(exc, fired.is_set()) from exc
        finally:
            timer.cancel()
        return QueryResult(columns, rows, truncated, time.perf_counter() - start)

    @staticmethod
    def _classify(exc: Exception, timed_out: bool) -> SqlError:
        import duckdb

        msg = str(exc).splitlines()[0]
        if timed_out or isinstance(exc, duckdb.InterruptException):
            return SqlTimeout("query exceeded the timeout and was stopped")
        if isinstance(exc, duckdb.CatalogException) and "does not exist" in msg and "Table" in msg:
            return SqlUnknownTable(msg)
        if isinstance(exc, duckdb.BinderException) and ("column" in msg.lower() and "not found" in msg.lower()):
            return SqlUnknownColumn(msg)
        if isinstance(exc, duckdb.ParserException):
            return SqlParseError(msg)
        if isinstance(exc, duckdb.PermissionException | duckdb.InvalidInputException) and (
                "read-only" in msg or "external access" in msg.lower()):
            return SqlRefused(msg)
        return SqlExecutionError(msg)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# --- PostgreSQL ---------------------------------------------------------------------------------------

class PostgresTarget(Target):
    """A PostgreSQL database; ``schema`` (optional) is put first on the search path.

    The fingerprint names the server, database and schema: PostgreSQL content is not hashed, so gold
    results cached under it assume the database is not modified while they are reused.
    """

    engine = "postgres"

    def __init__(self, dsn: str, schema: str | None = None) -> None:
        self.dsn = dsn
        self.schema = schema
        self._conn: Any = None

    def fingerprint(self) -> str:
        import psycopg

        info = psycopg.conninfo.conninfo_to_dict(self.dsn)
        return "pg:{}:{}/{}/{}".format(info.get("host", ""), info.get("port", ""), info.get("dbname", ""),
                                       self.schema or "public")

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            import psycopg

            try:
                conn = psycopg.connect(self.dsn, autocommit=False, connect_timeout=10)
            except psycopg.OperationalError as exc:
                raise ConfigError(f"cannot connect to PostgreSQL: {str(exc).strip()}") from exc
            conn.read_only = True
            self._conn = conn
        return self._conn

    def execute(self, sql: str, *, timeout_s: float, max_rows: int) -> QueryResult:
        import psycopg
        from psycopg import errors as pge

        conn = self._connection()
        start = time.perf_counter()
        text = sql.rstrip().rstrip(";")
        try:
            try:
                rows, truncated, columns = self._run(conn, text, timeout_s, max_rows, server_side=True)
            except pge.SyntaxError:
                # DECLARE … CURSOR accepts only queries, so a statement that is not one fails as a syntax
                # error. Running it plainly inside the read-only transaction tells a write (refused) from
                # real bad syntax; the transaction is rolled back either way.
                rows, truncated, columns = self._run(conn, text, timeout_s, max_rows, server_side=False)
        except pge.QueryCanceled as exc:
            raise SqlTimeout("query exceeded the timeout and was stopped") from exc
        except pge.UndefinedTable as exc:
            raise SqlUnknownTable(str(exc).splitlines()[0]) from exc
        except pge.UndefinedColumn as exc:
            raise SqlUnknownColumn(str(exc).splitlines()[0]) from exc
        except pge.SyntaxError as exc:
            raise SqlParseError(str(exc).splitlines()[0]) from exc
        except (pge.ReadOnlySqlTransaction, pge.InsufficientPrivilege) as exc:
            raise SqlRefused(str(exc).splitlines()[0]) from exc
        except psycopg.Error as exc:
            raise SqlExecutionError(str(exc).splitlines()[0]) from exc
        return QueryResult(columns, rows, truncated, time.perf_counter() - start)

    def _run(self, conn: Any, sql: str, timeout_s: float, max_rows: int,
             server_side: bool) -> tuple[list[tuple[Any, ...]], bool, tuple[str, ...]]:
        from psycopg import sql as pgsql

        try:
            with conn.transaction():
                conn.execute(pgsql.SQL("SET LOCAL statement_timeout = {}").format(int(timeout_s * 1000)))
                if self.schema:
                    conn.execute(pgsql.SQL("SET LOCAL search_path = {}, public").format(
                        pgsql.Identifier(self.schema)))
                with conn.cursor(name="t2s_query") if server_side else conn.cursor() as cursor:
                    cursor.execute(sql)
                    rows, truncated = _fetch(cursor, max_rows) if cursor.description else ([], False)
                    columns = tuple(d.name for d in cursor.description or ())
                raise _Rollback
        except _Rollback:
            return rows, truncated, columns

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _Rollback(Exception):
    """Leaves the read-only transaction by rollback: nothing a query did survives it."""


def open_target(engine: str, location: str | Path, *, schema: str | None = None) -> Target:
    """A target for ``engine`` at ``location`` (a file path, or a DSN for PostgreSQL)."""
    if engine == "sqlite":
        return SqliteTarget(location)
    if engine == "duckdb":
        return DuckdbTarget(location)
    if engine == "postgres":
        return PostgresTarget(str(location), schema=schema)
    raise ConfigError(f"unknown engine {engine!r}; choose sqlite, duckdb or postgres")
