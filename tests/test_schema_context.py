"""Schema context: deterministic, keys and sample values, token budget with retrieval."""

from __future__ import annotations

from pathlib import Path

import pytest

from t2s.execution import SqliteTarget
from t2s.prompts import SchemaSettings
from t2s.schema_context import build_schema_context, estimate_tokens, introspect, rank_tables


@pytest.fixture(scope="module")
def wide_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A schema of several tables linked by foreign keys, with categorical and unique columns."""
    path = tmp_path_factory.mktemp("wide") / "wide.sqlite"
    import sqlite3

    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE regions (region_id INTEGER PRIMARY KEY, region_name TEXT);
        CREATE TABLE stores (store_id INTEGER PRIMARY KEY, region_id INTEGER REFERENCES regions(region_id),
                             store_name TEXT, format TEXT);
        CREATE TABLE sales (sale_id INTEGER PRIMARY KEY, store_id INTEGER REFERENCES stores(store_id),
                            sold_on TEXT, revenue REAL);
        CREATE TABLE weather (day TEXT PRIMARY KEY, rainfall_mm REAL, temperature REAL);
        CREATE TABLE suppliers (supplier_id INTEGER PRIMARY KEY, supplier_name TEXT, country TEXT);
    """)
    conn.executemany("INSERT INTO regions VALUES (?, ?)", [(1, "North"), (2, "South")])
    conn.executemany("INSERT INTO stores VALUES (?, ?, ?, ?)",
                     [(i, 1 + i % 2, f"Store {i}", ["mall", "street", "outlet"][i % 3]) for i in range(1, 40)])
    conn.executemany("INSERT INTO sales VALUES (?, ?, ?, ?)",
                     [(i, 1 + i % 39, f"2024-01-{1 + i % 28:02d}", i * 1.5) for i in range(1, 400)])
    conn.executemany("INSERT INTO weather VALUES (?, ?, ?)", [(f"2024-01-{d:02d}", d * 0.5, 10 + d) for d in range(1, 29)])
    conn.executemany("INSERT INTO suppliers VALUES (?, ?, ?)", [(i, f"Supplier {i}", "FR") for i in range(1, 5)])
    conn.commit()
    conn.close()
    return path


def test_keys_types_samples_and_row_counts(wide_db: Path) -> None:
    text = build_schema_context(SqliteTarget(wide_db), SchemaSettings(sample_values=3, row_counts=True))
    assert "store_id INTEGER PRIMARY KEY" in text
    assert "region_id INTEGER REFERENCES regions(region_id)" in text
    assert "format TEXT  -- e.g. 'mall', 'outlet', 'street'" in text  # most frequent first, ties by value
    assert "region_name TEXT  -- e.g. 'North', 'South'" in text  # a small lookup table's names are shown
    assert "store_name TEXT," in text and "'Store 1'" not in text  # 39 unique names are not
    assert "-- 399 rows" in text


def test_bare_settings_omit_keys_and_samples(wide_db: Path) -> None:
    text = build_schema_context(SqliteTarget(wide_db), SchemaSettings(include_keys=False))
    assert "PRIMARY KEY" not in text and "REFERENCES" not in text and "e.g." not in text
    assert text.count("CREATE TABLE") == 5


def test_compact_style(wide_db: Path) -> None:
    text = build_schema_context(SqliteTarget(wide_db), SchemaSettings(style="compact"))
    assert "stores(store_id PK, region_id → regions.region_id, store_name, format)" in text


def test_deterministic_across_fresh_introspection(wide_db: Path) -> None:
    settings = SchemaSettings(sample_values=2, max_tokens=150)
    first = build_schema_context(SqliteTarget(wide_db), settings, "revenue of mall stores")
    introspect.__globals__["_introspect"].cache_clear()
    assert build_schema_context(SqliteTarget(wide_db), settings, "revenue of mall stores") == first


def test_budget_keeps_relevant_tables_and_their_key_neighbours(wide_db: Path) -> None:
    target = SqliteTarget(wide_db)
    full = build_schema_context(target, SchemaSettings())
    settings = SchemaSettings(max_tokens=100)  # sales (45) + stores (47) fit, a third table does not
    assert estimate_tokens(full) > 100
    text = build_schema_context(target, settings, "Total revenue per store in January")
    assert estimate_tokens(text) <= settings.max_tokens
    assert "CREATE TABLE sales" in text and "CREATE TABLE stores" in text  # the store FK neighbour came along
    assert "CREATE TABLE weather" not in text
    assert rank_tables(introspect(target), "rainfall by day")[0] == "weather"
