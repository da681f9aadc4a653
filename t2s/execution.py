"""Safe execution of one read-only query on SQLite, DuckDB or PostgreSQL: the public ``Target`` API.

Two layers stand between untrusted SQL and a database: the guard (:mod:`t2s.guard`) and the engine
layer here, which holds on its own (the tests send every hostile statement to both):

- every query runs in a killable worker process (:mod:`t2s.sandbox`): it is stopped within its timeout
  plus a grace period even inside one long function call, memory is bounded by the worker's limits, and
  an engine crash costs a worker, never the caller's process;
- inside the worker each engine session is read-only, size-limited and reset between queries
  (:mod:`t2s.engines`); PostgreSQL runs only single statements through the extended protocol, as the
  least-privilege role of :mod:`t2s.pg_roles` in production;
- text is checked before any engine sees it (:func:`t2s.sql_text.check_sql_text`), and every failure is a
  :class:`~t2s.errors.SqlError` with the scorer's error class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from t2s import deadline
from t2s.engines import EngineLimits, QueryResult, sqlite_readonly_connection
from t2s.errors import ConfigError
from t2s.fileio import file_digest
from t2s.guard import check_limits
from t2s.sandbox import EngineSpec, Sandbox, default_sandbox

__all__ = ["ENGINE_DIALECT", "DuckdbTarget", "PostgresTarget", "QueryResult", "SqliteTarget", "Target",
           "open_target"]

ENGINE_DIALECT = {"sqlite": "sqlite", "duckdb": "duckdb", "postgres": "postgres"}


class Target(ABC):
    """One database a query can run on."""

    engine: str

    @property
    def dialect(self) -> str:
        return ENGINE_DIALECT[self.engine]

    @abstractmethod
    def fingerprint(self) -> str:
        """A content identity: results cached under it stay valid while it is unchanged."""

    sandbox: Sandbox | None = None  # None: the process's shared pool

    @abstractmethod
    def spec(self) -> EngineSpec:
        """How a worker opens this database."""

    def execute(self, sql: str, *, timeout_s: float, max_rows: int) -> QueryResult:
        """Run one read-only query in a sandbox worker; raise a :class:`SqlError` subclass on failure.

        Returns within ``timeout_s`` plus the sandbox's grace period whatever the SQL does. Inside a served
        request (:mod:`t2s.deadline`) the query also holds one of the principal's SQL worker slots and
        ends by the request's deadline (raising :class:`~t2s.errors.DeadlineExceeded` when none is left).
        """
        check_limits(sql, self.dialect)
        sandbox = self.sandbox or default_sandbox()
        budget = deadline.current()
        if budget is None:
            return sandbox.execute(self.spec(), sql, timeout_s=timeout_s, max_rows=max_rows)
        with budget.sql_slot():
            left = budget.left_for("the query could run", reserve_s=sandbox.grace_s)
            return sandbox.execute(self.spec(), sql, timeout_s=min(timeout_s, left), max_rows=max_rows, wait_s=left)

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
    return f"md5:{file_digest(path)}"


class SqliteTarget(Target):
    engine = "sqlite"

    def __init__(self, path: str | Path, *, limits: EngineLimits | None = None) -> None:
        self.path = Path(path).resolve()
        if not self.path.is_file():
            raise ConfigError(f"SQLite database not found: {self.path}")
        self.limits = limits or EngineLimits()

    def fingerprint(self) -> str:
        return file_fingerprint(self.path)

    def spec(self) -> EngineSpec:
        return EngineSpec("sqlite", str(self.path), None, self.limits)

    def columns(self) -> list[tuple[str, str, str]]:
        conn = sqlite_readonly_connection(self.path)
        try:
            tables = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' "
                "ORDER BY name")]
            return [(t, col[1], col[2] or "") for t in tables
                    for col in conn.execute("SELECT * FROM pragma_table_info(?)", (t,))]
        finally:
            conn.close()


class DuckdbTarget(Target):
    engine = "duckdb"

    def __init__(self, path: str | Path, *, limits: EngineLimits | None = None) -> None:
        self.path = Path(path).resolve()
        if not self.path.is_file():
            raise ConfigError(f"DuckDB database not found: {self.path}")
        self.limits = limits or EngineLimits()

    def fingerprint(self) -> str:
        return file_fingerprint(self.path)

    def spec(self) -> EngineSpec:
        return EngineSpec("duckdb", str(self.path), None, self.limits)


class PostgresTarget(Target):
    """A PostgreSQL database; ``schema`` (optional) is put first on the search path.

    The fingerprint names the server, database and schema: PostgreSQL content is not hashed, so gold
    results cached under it assume the database is not modified while they are reused. Connect as a
    least-privilege reader (:mod:`t2s.pg_roles`); the engine layer refuses writes anyway.
    """

    engine = "postgres"

    def __init__(self, dsn: str, schema: str | None = None, *, limits: EngineLimits | None = None) -> None:
        self.dsn = dsn
        self.schema = schema
        self.limits = limits or EngineLimits()

    def fingerprint(self) -> str:
        import psycopg

        info = psycopg.conninfo.conninfo_to_dict(self.dsn)
        return "pg:{}:{}/{}/{}".format(info.get("host", ""), info.get("port", ""), info.get("dbname", ""),
                                       self.schema or "public")

    def spec(self) -> EngineSpec:
        return EngineSpec("postgres", self.dsn, self.schema, self.limits)


def open_target(engine: str, location: str | Path, *, schema: str | None = None,
                limits: EngineLimits | None = None) -> Target:
    """A target for ``engine`` at ``location`` (a file path, or a DSN for PostgreSQL)."""
    if engine == "sqlite":
        return SqliteTarget(location, limits=limits)
    if engine == "duckdb":
        return DuckdbTarget(location, limits=limits)
    if engine == "postgres":
        return PostgresTarget(str(location), schema=schema, limits=limits)
    raise ConfigError(f"unknown engine {engine!r}; choose sqlite, duckdb or postgres")
