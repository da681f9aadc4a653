"""The least-privilege PostgreSQL reader: created by `t2s db reader-role`, enforced at connect time."""

from __future__ import annotations

import psycopg
import pytest
from typer.testing import CliRunner

from cli.main import app
from t2s.errors import ConfigError
from t2s.execution import PostgresTarget

pytestmark = pytest.mark.postgres


def _as(dsn: str, user: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info["user"] = user
    return psycopg.conninfo.make_conninfo(**info)


@pytest.fixture(scope="module")
def sales(postgres_dsn: str) -> str:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS sales CASCADE")
        conn.execute("DROP SCHEMA IF EXISTS secret CASCADE")
        conn.execute("CREATE SCHEMA sales")
        conn.execute("CREATE SCHEMA secret")
        conn.execute("CREATE TABLE sales.deals (id int, amount int)")
        conn.execute("INSERT INTO sales.deals VALUES (1, 10), (2, 20)")
        conn.execute("CREATE TABLE secret.keys (k text)")
        conn.execute("INSERT INTO secret.keys VALUES ('hunter2')")
    return postgres_dsn


def test_cli_prints_reviewable_sql_without_touching_the_server() -> None:
    out = CliRunner().invoke(app, ["db", "reader-role", "-s", "sales", "--role", "analyst_ro"])
    assert out.exit_code == 0, out.output
    assert "NOSUPERUSER" in out.output and 'GRANT SELECT ON ALL TABLES IN SCHEMA "sales" TO "analyst_ro"' in out.output
    assert "default_transaction_read_only" in out.output and "temp_file_limit" in out.output


def test_cli_apply_creates_a_role_that_reads_its_schema_and_nothing_else(sales: str) -> None:
    out = CliRunner().invoke(app, ["db", "reader-role", "-s", "sales", "--role", "sales_ro", "--apply",
                                   "--admin-dsn", sales])
    assert out.exit_code == 0, out.output
    target = PostgresTarget(_as(sales, "sales_ro"), schema="sales")
    try:
        assert target.execute("SELECT sum(amount) FROM deals", timeout_s=5, max_rows=5).rows == [(30,)]
        from t2s.errors import SqlRefused

        with pytest.raises(SqlRefused, match="permission denied"):
            target.execute("SELECT * FROM secret.keys", timeout_s=5, max_rows=5)
    finally:
        target.close()
    with psycopg.connect(_as(sales, "sales_ro")) as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("30s",)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SET TRANSACTION READ WRITE")
            conn.execute("CREATE TABLE sales.x (a int)")


def test_applying_twice_is_idempotent(sales: str) -> None:
    for _ in range(2):
        out = CliRunner().invoke(app, ["db", "reader-role", "-s", "sales", "--role", "sales_ro2", "--apply",
                                       "--admin-dsn", sales])
        assert out.exit_code == 0, out.output


def test_a_role_that_can_create_objects_is_refused(sales: str) -> None:
    with psycopg.connect(sales, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS sloppy")
        conn.execute("CREATE ROLE sloppy LOGIN")
        conn.execute("GRANT USAGE, CREATE ON SCHEMA sales TO sloppy")
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA sales TO sloppy")
    target = PostgresTarget(_as(sales, "sloppy"), schema="sales")
    with pytest.raises(ConfigError, match="can create objects in schema"):
        target.execute("SELECT 1", timeout_s=5, max_rows=1)


def test_apply_without_admin_dsn_is_a_clear_error() -> None:
    out = CliRunner().invoke(app, ["db", "reader-role", "-s", "sales", "--apply"])
    assert out.exit_code != 0 and "--admin-dsn" in out.output


def test_missing_password_variable_and_unreachable_admin_are_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("T2S_TEST_NO_SUCH_PW", raising=False)
    out = CliRunner().invoke(app, ["db", "reader-role", "-s", "sales", "--password-env", "T2S_TEST_NO_SUCH_PW"])
    assert out.exit_code != 0 and "T2S_TEST_NO_SUCH_PW" in out.output
    out = CliRunner().invoke(app, ["db", "reader-role", "-s", "sales", "--apply", "--admin-dsn",
                                   "host=127.0.0.1 port=1 user=x dbname=x connect_timeout=2"])
    assert out.exit_code != 0 and "could not create the reader role" in out.output


def test_a_failed_apply_leaves_no_half_made_role(sales: str) -> None:
    """All statements run in one transaction: a schema that does not exist fails the whole apply."""
    out = CliRunner().invoke(app, ["db", "reader-role", "-s", "sales", "-s", "no_such_schema", "--role",
                                   "half_made", "--apply", "--admin-dsn", sales])
    assert out.exit_code != 0 and "no_such_schema" in out.output
    with psycopg.connect(sales) as conn:
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'half_made'").fetchone() == (0,)
