"""The `shop_db` fixture's tables copied into DuckDB and PostgreSQL, for tests that run on every engine."""

from __future__ import annotations

import sqlite3
from pathlib import Path

SHOP_TABLES = ("customers", "orders", "nums")


def shop_to_duckdb(src: Path, out: Path, tables: tuple[str, ...] | None = SHOP_TABLES) -> Path:
    """Copy ``tables`` (all of them when None) of the SQLite file ``src`` into a new DuckDB file ``out``."""
    import duckdb
    import pandas as pd

    with sqlite3.connect(src) as s:
        if tables is None:
            tables = tuple(r[0] for r in s.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        conn = duckdb.connect(str(out))
        for t in tables:
            frame = pd.read_sql_query(f"SELECT * FROM {t}", s)
            conn.register("frame", frame)
            conn.execute(f'CREATE TABLE "{t}" AS SELECT * FROM frame')
            conn.unregister("frame")
        conn.close()
    return out


def shop_to_postgres(admin_dsn: str, src: Path, schema: str = "shop") -> None:
    """(Re)create ``schema`` with the shop tables; ``customers.id`` is a serial, so a sequence exists."""
    import psycopg

    with sqlite3.connect(src) as s, psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.customers (id serial PRIMARY KEY, name text, city text, age int)")
        conn.execute(f"CREATE TABLE {schema}.orders (id int PRIMARY KEY, customer_id int, "
                     "amount double precision, placed text)")
        conn.execute(f"CREATE TABLE {schema}.nums (id int PRIMARY KEY, a int, b int, tag text)")
        for t in SHOP_TABLES:
            rows = s.execute(f"SELECT * FROM {t}").fetchall()
            with conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {schema}.{t} VALUES ({', '.join(['%s'] * len(rows[0]))})", rows)
