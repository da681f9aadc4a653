"""A service's own PostgreSQL user and databases, created with the master credentials by an init container.

Each ECS task (API, tracking server) starts this container first; the main container starts only after it
exits 0 and never receives the master password. It is idempotent and serialised by an advisory lock, so
two tasks starting together (or a rolling deploy) cannot race.

What it makes sure of, for a service with login user ``L``, owner role ``O`` and databases ``D…``
(``infra.layout.DB_USERS``):

- ``O`` exists, NOLOGIN: it owns the databases and every object in them. Login users reach it through
  ``PGOPTIONS=-c role=O`` (set in the task), so tables created by ``L`` or by the rotation's ``L_clone``
  are owned by ``O`` and stay usable by both.
- ``L`` exists with the password from its secret, LOGIN, member of ``O``, and nothing else (no superuser,
  CREATEDB or CREATEROLE). An existing ``L`` keeps its password: Secrets Manager's multi-user rotation
  owns it from then on (it creates ``L_clone`` with ``L``'s memberships and alternates the two).
- Each database exists, is owned by ``O``, and ``PUBLIC`` may not connect to it: one service's user cannot
  open another service's database.

Usage (environment as libpq reads it): ``PGHOST``, ``PGPORT``, ``PGUSER``/``PGPASSWORD`` (the master),
``PGSSLMODE``; ``T2S_DB_LOGIN_USER``/``T2S_DB_LOGIN_PASSWORD`` (the service's secret)::

    python -m infra.db_init --service api
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Any

from t2s.errors import ConfigError

# pg_advisory_lock key shared by every init container and the tracking server's start (one number: both
# take it on the same instance).
LOCK_KEY = 720_020


@dataclass(frozen=True)
class ServiceDb:
    login: str
    owner: str
    databases: tuple[str, ...]


def service_db(service: str) -> ServiceDb:
    from infra.layout import DB_USERS

    if service not in DB_USERS:
        raise ConfigError(f"unknown service {service!r}: one of {', '.join(DB_USERS)}")
    user = DB_USERS[service]
    return ServiceDb(user["login"], user["owner"], tuple(user["databases"]))


def _role_exists(conn: Any, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is not None


def ensure_service_db(conninfo: str, spec: ServiceDb, login: str, password: str) -> list[str]:
    """Create or repair ``spec``'s roles and databases (see the module docstring); return what was done.

    ``login`` is the secret's current username: ``spec.login`` or, after a rotation, ``spec.login_clone``.
    """
    import psycopg
    from psycopg import sql

    if login not in (spec.login, f"{spec.login}_clone"):
        raise ConfigError(f"the database secret names user {login!r}, expected {spec.login!r} (or its rotation "
                          f"clone): is the task wired to the right secret?")
    done: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            owner = sql.Identifier(spec.owner)
            if not _role_exists(conn, spec.owner):
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(owner))
                done.append(f"created role {spec.owner}")
            # The master must be a member of the owner role to hand databases to it (PostgreSQL 16 and later
            # also need the SET option, which a CREATEROLE user's automatic grant lacks).
            with_set = sql.SQL(" WITH SET TRUE") if conn.info.server_version >= 160000 else sql.SQL("")
            conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(owner) + with_set)
            if not (_role_exists(conn, spec.login) or _role_exists(conn, f"{spec.login}_clone")):
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(login), sql.Literal(password)))
                done.append(f"created login {login}")
            for user in (spec.login, f"{spec.login}_clone"):
                if _role_exists(conn, user):
                    conn.execute(sql.SQL("ALTER ROLE {} NOCREATEDB NOCREATEROLE LOGIN").format(
                        sql.Identifier(user)))
                    conn.execute(sql.SQL("GRANT {} TO {}").format(owner, sql.Identifier(user)))
            for db in spec.databases:
                name = sql.Identifier(db)
                if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone() is None:
                    conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(name, owner))
                    done.append(f"created database {db}")
                else:
                    conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(name, owner))
                conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(name))
                conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(name, owner))
                with psycopg.connect(conninfo, dbname=db, autocommit=True) as inner:
                    inner.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(owner))
                    inner.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.db_init", description=__doc__.split("\n\n")[0])
    parser.add_argument("--service", required=True, help="api or tracking (infra.layout.DB_USERS)")
    parser.add_argument("--maintenance-db", default="postgres", help="database to connect to first")
    args = parser.parse_args(argv)
    try:
        spec = service_db(args.service)
        login = os.environ.get("T2S_DB_LOGIN_USER") or ""
        password = os.environ.get("T2S_DB_LOGIN_PASSWORD") or ""
        if not login or not password:
            raise ConfigError("T2S_DB_LOGIN_USER and T2S_DB_LOGIN_PASSWORD (the service's database secret) are unset")
        for line in ensure_service_db(f"dbname={args.maintenance_db}", spec, login, password) or ["nothing to do"]:
            print(f"db_init {args.service}: {line}", flush=True)
    except Exception as exc:  # the init container's log line is all an operator sees
        print(f"db_init {args.service} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
