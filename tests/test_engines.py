"""Safe execution on real engines: read-only, timeouts that fire, row caps, error classes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from t2s.errors import ConfigError, SqlParseError, SqlRefused, SqlTimeout, SqlUnknownColumn, SqlUnknownTable
from t2s.execution import DuckdbTarget, PostgresTarget, SqliteTarget, Target, open_target
from tests.pg import reader_dsn
from tests.shop_copies import shop_to_duckdb, shop_to_postgres

RUNAWAY = {  # a cartesian product that runs for minutes without a working timeout
    "sqlite": "SELECT count(*) FROM nums a, nums b, nums c",
    # DuckDB proves arithmetic filters empty from column statistics; a hash it cannot see through.
    "duckdb": "SELECT count(*) FROM nums a, nums b, nums c WHERE hash(a.id * 9006001 + b.id * 3001 + c.id) % 1000003 = 17",
    "postgres": "SELECT count(*) FROM nums a, nums b, nums c WHERE md5((a.id * 9006001 + b.id * 3001 + c.id)::text) = 'x'",
}
WRITES = ["DELETE FROM customers", "UPDATE customers SET age = 0", "CREATE TABLE zz (a int)",
          "DROP TABLE customers", "INSERT INTO customers VALUES (99, 'x', 'y', 1)"]


@pytest.fixture(scope="module")
def duck_db(tmp_path_factory: pytest.TempPathFactory, shop_db: Path) -> Path:
    return shop_to_duckdb(shop_db, tmp_path_factory.mktemp("duck") / "shop.duckdb")


@pytest.fixture(scope="module")
def pg_target(postgres_dsn: str, shop_db: Path) -> Target:
    shop_to_postgres(postgres_dsn, shop_db)
    target = PostgresTarget(reader_dsn(postgres_dsn, ("shop",)), schema="shop")
    yield target
    target.close()


@pytest.fixture(params=["sqlite", "duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, shop_db: Path) -> Target:
    if request.param == "sqlite":
        t: Target = SqliteTarget(shop_db)
    elif request.param == "duckdb":
        t = DuckdbTarget(request.getfixturevalue("duck_db"))
    else:
        yield request.getfixturevalue("pg_target")
        return
    yield t
    t.close()


def test_select_returns_rows_and_columns(target: Target) -> None:
    result = target.execute("SELECT name, age FROM customers WHERE city = 'Paris' ORDER BY name",
                            timeout_s=5, max_rows=100)
    assert [c.lower() for c in result.columns] == ["name", "age"]
    assert result.rows == [("Ann", 34), ("Cid", None)]
    assert not result.truncated


def test_row_cap_truncates_and_says_so(target: Target) -> None:
    result = target.execute("SELECT id FROM nums ORDER BY id", timeout_s=5, max_rows=10)
    assert len(result.rows) == 10 and result.truncated


def test_runaway_query_is_stopped_at_the_timeout(target: Target) -> None:
    start = time.perf_counter()
    with pytest.raises(SqlTimeout):
        target.execute(RUNAWAY[target.engine], timeout_s=0.5, max_rows=10)
    # The product has 2.7e10 rows: it only ends this soon because the timeout fired.
    assert time.perf_counter() - start < 15
    # The connection stays usable afterwards.
    assert target.execute("SELECT count(*) FROM customers", timeout_s=5, max_rows=5).rows == [(5,)]


@pytest.mark.parametrize("sql", WRITES)
def test_connection_is_read_only_even_without_the_guard(target: Target, sql: str) -> None:
    with pytest.raises(SqlRefused):
        target.execute(sql, timeout_s=5, max_rows=5)
    assert target.execute("SELECT count(*) FROM customers", timeout_s=5, max_rows=5).rows == [(5,)]


def test_unknown_table_and_column_are_classified(target: Target) -> None:
    with pytest.raises(SqlUnknownTable):
        target.execute("SELECT * FROM clients", timeout_s=5, max_rows=5)
    with pytest.raises(SqlUnknownColumn):
        target.execute("SELECT surname FROM customers", timeout_s=5, max_rows=5)
    with pytest.raises(SqlParseError):
        target.execute("SELEC name FROM customers", timeout_s=5, max_rows=5)


def test_columns_introspection(target: Target) -> None:
    cols = {(t.lower(), c.lower()) for t, c, _ in target.columns()}
    assert {("customers", "name"), ("orders", "amount"), ("nums", "tag")} <= cols


def test_sqlite_refuses_attach_and_pragma(shop_db: Path) -> None:
    t = SqliteTarget(shop_db)
    for sql in ("ATTACH DATABASE ':memory:' AS x", "PRAGMA query_only = 0", "SELECT load_extension('x')"):
        with pytest.raises(SqlRefused):
            t.execute(sql, timeout_s=5, max_rows=5)
    with pytest.raises(SqlRefused):
        t.execute("SELECT 1; SELECT 2", timeout_s=5, max_rows=5)


@pytest.mark.postgres
def test_postgres_statement_timeout_covers_server_side_sleep(pg_target: Target) -> None:
    with pytest.raises(SqlTimeout):
        pg_target.execute("SELECT pg_sleep(30)", timeout_s=0.3, max_rows=1)


def test_missing_database_and_unknown_engine_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        open_target("sqlite", tmp_path / "nope.sqlite")
    with pytest.raises(ConfigError, match="unknown engine"):
        open_target("oracle", "x")


@pytest.mark.postgres
def test_unreachable_postgres_is_a_config_error() -> None:
    t = PostgresTarget("host=127.0.0.1 port=1 user=x dbname=x connect_timeout=2")
    with pytest.raises(ConfigError, match="cannot connect"):
        t.execute("SELECT 1", timeout_s=1, max_rows=1)


@pytest.mark.postgres
def test_postgres_refuses_to_run_as_a_superuser(postgres_dsn: str) -> None:
    t = PostgresTarget(postgres_dsn)
    with pytest.raises(ConfigError, match=r"superuser.*t2s db reader-role"):
        t.execute("SELECT 1", timeout_s=5, max_rows=1)
