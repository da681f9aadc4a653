"""The least-privilege PostgreSQL role that untrusted SQL runs as.

A read-only transaction is no layer against a superuser: ``dblink`` opens a second connection that
commits, ``pg_read_file`` returns server files, ``COPY … TO PROGRAM`` runs commands. So execution targets
connect as a role that can only read the dataset's schemas:

- ``LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT``, a connection limit;
- not a member of ``pg_read_server_files``, ``pg_write_server_files``, ``pg_execute_server_program``,
  ``pg_signal_backend`` (revoked explicitly);
- ``CONNECT`` on the database, ``USAGE`` and ``SELECT`` on the listed schemas only (and on tables created
  there later), ``CREATE`` on none;
- role settings that hold even if the application forgot them: ``default_transaction_read_only``,
  ``statement_timeout``, ``idle_in_transaction_session_timeout``, ``lock_timeout``, ``temp_file_limit``,
  ``work_mem``, ``standard_conforming_strings`` and a ``search_path`` of the dataset schemas.

:func:`reader_role_sql` returns the statements (``t2s db reader-role`` prints them for a DBA to review or
applies them with ``--apply``); :func:`check_reader` is what the engine runs at connect time: a session
that is a superuser or can create objects is refused before any query runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from t2s.errors import ConfigError

DANGEROUS_ROLES = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program",
                   "pg_signal_backend")


@dataclass(frozen=True)
class ReaderRole:
    name: str = "t2s_reader"
    database: str = "postgres"
    schemas: tuple[str, ...] = ("public",)
    password: str | None = None
    statement_timeout_ms: int = 30_000
    lock_timeout_ms: int = 2_000
    idle_in_transaction_timeout_ms: int = 10_000
    temp_file_limit_kb: int = 256 * 1024
    work_mem_kb: int = 16 * 1024
    connection_limit: int = 20


def reader_role_sql(role: ReaderRole) -> list[Any]:
    """Statements (psycopg ``Composed``) that create or tighten ``role``; run them as an administrator.

    Idempotent: an existing role is altered to the same attributes and settings.
    """
    from psycopg import sql

    r = sql.Identifier(role.name)
    attrs = sql.SQL("LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT "
                    "CONNECTION LIMIT {}").format(sql.Literal(role.connection_limit))
    password = (sql.SQL(" PASSWORD {}").format(sql.Literal(role.password)) if role.password
                else sql.SQL(""))
    out: list[Any] = [
        sql.SQL("DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {name}) THEN "
                "CREATE ROLE {role}; END IF; END$$").format(name=sql.Literal(role.name), role=r),
        sql.SQL("ALTER ROLE {} WITH {}{}").format(r, attrs, password),
        sql.SQL("REVOKE {} FROM {}").format(sql.SQL(", ").join(map(sql.Identifier, DANGEROUS_ROLES)), r),
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(role.database), r),
    ]
    settings = {
        "default_transaction_read_only": "on",
        "standard_conforming_strings": "on",  # backslashes in '…' are literal, as the guard's tokenizer reads them
        "statement_timeout": str(role.statement_timeout_ms),
        "lock_timeout": str(role.lock_timeout_ms),
        "idle_in_transaction_session_timeout": str(role.idle_in_transaction_timeout_ms),
        "temp_file_limit": str(role.temp_file_limit_kb),
        "work_mem": str(role.work_mem_kb),
    }
    for key, value in settings.items():
        out.append(sql.SQL("ALTER ROLE {} SET {} = {}").format(r, sql.Identifier(key), sql.Literal(value)))
    out.append(sql.SQL("ALTER ROLE {} SET search_path = {}").format(
        r, sql.SQL(", ").join(map(sql.Identifier, role.schemas))))
    for schema in role.schemas:
        s = sql.Identifier(schema)
        out += [
            sql.SQL("REVOKE CREATE ON SCHEMA {} FROM {}").format(s, r),
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, r),
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(s, r),
            sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(s, r),
        ]
    return out


def apply_reader_role(admin_dsn: str, role: ReaderRole) -> None:
    """Create or tighten ``role`` through an administrator connection (one transaction)."""
    import psycopg

    try:
        with psycopg.connect(admin_dsn, connect_timeout=10) as conn, conn.transaction():
            for stmt in reader_role_sql(role):
                conn.execute(stmt)
    except psycopg.Error as exc:
        raise ConfigError(f"could not create the reader role {role.name!r}: {str(exc).strip()}") from exc


def render_sql(statements: list[Any], dsn_or_conn: Any = None) -> str:
    """The statements as SQL text (for review by a DBA); quoting needs a connection's encoding only."""
    lines = []
    for stmt in statements:
        lines.append(stmt.as_string(dsn_or_conn) + ";")
    return "\n".join(lines) + "\n"


def check_reader(conn: Any) -> None:
    """Refuse a session that could do more than read: raises :class:`ConfigError` naming the fix."""
    row = conn.execute(
        "SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls, "
        "       current_setting('default_transaction_read_only'), current_user, "
        "       (SELECT array_agg(n.nspname::text) FROM pg_namespace n "
        "         WHERE has_schema_privilege(n.oid, 'CREATE') AND n.nspname NOT LIKE 'pg_temp%%' "
        "           AND n.nspname NOT LIKE 'pg_toast_temp%%'), "
        "       (SELECT array_agg(d) FROM unnest(%s::text[]) d WHERE pg_has_role(current_user, d, 'MEMBER')) "
        "FROM pg_roles r WHERE r.rolname = current_user", [list(DANGEROUS_ROLES)]).fetchone()
    if conn.info.transaction_status != 0:  # leave no transaction open behind the check
        conn.rollback()
    sup, createrole, createdb, repl, bypass, read_only, user, creatable, dangerous = row
    problems = []
    if sup:
        problems.append("is a superuser")
    if createrole or createdb or repl or bypass:
        problems.append("can create roles or databases, replicate or bypass row security")
    if creatable:
        problems.append(f"can create objects in schema(s) {', '.join(sorted(creatable))}")
    if dangerous:
        problems.append(f"is a member of {', '.join(sorted(dangerous))}")
    if read_only != "on":
        problems.append("does not default to read-only transactions")
    if problems:
        raise ConfigError(
            f"PostgreSQL role {user!r} {'; '.join(problems)}: untrusted SQL must run as a least-privilege "
            "reader. Create one with `t2s db reader-role --admin-dsn … --role t2s_reader --schema … --apply` "
            "and connect as it.")
