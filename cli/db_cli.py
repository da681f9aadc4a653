"""``t2s db``: database roles and checks for the engines untrusted SQL runs on."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.console import cli_errors, console

app = typer.Typer(help="Prepare the databases untrusted SQL runs on (least-privilege roles).",
                  no_args_is_help=True)


@app.command("reader-role")
def reader_role(
    schemas: Annotated[list[str], typer.Option("--schema", "-s", help="Schema the role may read (repeat).")],
    role: Annotated[str, typer.Option("--role", help="Name of the reader role.")] = "t2s_reader",
    database: Annotated[str, typer.Option("--database", help="Database the role may connect to.")] = "postgres",
    admin_dsn: Annotated[str | None, typer.Option(
        "--admin-dsn", help="DSN of an administrator; with --apply the statements run through it.")] = None,
    apply: Annotated[bool, typer.Option("--apply", help="Run the statements (default: print them).")] = False,
    password_env: Annotated[str | None, typer.Option(
        "--password-env", help="Environment variable holding the role's password (never a flag).")] = None,
    statement_timeout_ms: Annotated[int, typer.Option(help="Role-level statement_timeout.")] = 30_000,
) -> None:
    """Print (or apply) the SQL that creates a PostgreSQL role able only to read SCHEMAS.

    Production execution targets must connect as this role: the engine refuses a superuser session, or
    one that can create objects, before running any query.
    """
    import os

    from t2s.errors import ConfigError
    from t2s.pg_roles import ReaderRole, apply_reader_role, reader_role_sql, render_sql

    with cli_errors():
        password = None
        if password_env:
            password = os.environ.get(password_env)
            if not password:
                raise ConfigError(f"environment variable {password_env} is empty or not set")
        spec = ReaderRole(name=role, database=database, schemas=tuple(schemas), password=password,
                          statement_timeout_ms=statement_timeout_ms)
        if apply:
            if not admin_dsn:
                raise ConfigError("--apply needs --admin-dsn (an administrator's connection string)")
            apply_reader_role(admin_dsn, spec)
            console.print(f"role {role!r} can now read {', '.join(schemas)} in {database!r} and nothing else")
            return
        import psycopg

        if admin_dsn:
            with psycopg.connect(admin_dsn, connect_timeout=10) as conn:
                text = render_sql(reader_role_sql(spec), conn)
        else:
            text = render_sql(reader_role_sql(spec), None)
        typer.echo(text, nl=False)
