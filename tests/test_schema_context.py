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


@pytest.fixture(scope="module")
def keyed_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tables created out of alphabetical order, a composite key written in its own order, a hostile value."""
    import sqlite3

    path = tmp_path_factory.mktemp("keyed") / "keyed.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE singer ("Singer_ID" int, "Name" text, PRIMARY KEY ("Singer_ID"));
        CREATE TABLE concert (concert_id INTEGER PRIMARY KEY, theme TEXT);
        CREATE TABLE appearance (
            singer_id INTEGER REFERENCES singer("Singer_ID"),
            concert_id INTEGER REFERENCES concert(concert_id),
            role TEXT,
            PRIMARY KEY (concert_id, singer_id)
        );
    """)
    conn.executemany("INSERT INTO singer VALUES (?, ?)",
                     [(1, "Joe"), (2, "one\ntwo */ DROP TABLE singer"), (3, None),
                      (4, "never shown")])
    conn.executemany("INSERT INTO concert VALUES (?, ?)", [(1, "Free"), (2, "Love")])
    conn.executemany("INSERT INTO appearance VALUES (?, ?, ?)", [(1, 1, "lead"), (2, 1, "choir")])
    conn.commit()
    conn.close()
    return path


def test_a_composite_key_is_one_table_constraint_in_key_order(keyed_db: Path) -> None:
    text = build_schema_context(SqliteTarget(keyed_db), SchemaSettings())
    block = text[text.index("CREATE TABLE appearance"):].split(";")[0]
    assert "  PRIMARY KEY (concert_id, singer_id)\n)" in block  # the key's order, not the columns'
    assert block.count("PRIMARY KEY") == 1 and "singer_id INTEGER REFERENCES singer(Singer_ID)," in block
    assert "concert_id INTEGER PRIMARY KEY" in text  # a one-column key stays on its column
    # create_table orders tables by name, as every version before the ddl style renders them
    assert text.index("TABLE appearance") < text.index("TABLE concert") < text.index("TABLE singer")


def test_ddl_style_is_the_databases_own_text_in_its_order_with_example_rows(keyed_db: Path) -> None:
    text = build_schema_context(SqliteTarget(keyed_db), SchemaSettings(style="ddl", example_rows=3))
    assert text.startswith('CREATE TABLE singer ("Singer_ID" int, "Name" text, PRIMARY KEY ("Singer_ID"));\n/*\n'
                           "3 example rows:\nSELECT * FROM singer LIMIT 3;\nSinger_ID\tName\n1\tJoe\n")
    assert text.index("TABLE singer") < text.index("TABLE concert") < text.index("TABLE appearance")
    assert "            PRIMARY KEY (concert_id, singer_id)\n        );" in text  # verbatim, as created
    # A value cannot end the comment or break the one-row-per-line layout; NULL is spelled out; 3 rows only.
    assert "2\tone two * / DROP TABLE singer\n3\tNULL\n*/" in text
    assert "never shown" not in text and text.count("*/") == 3
    assert "2 example rows:\nSELECT * FROM appearance LIMIT 2;\nsinger_id\tconcert_id\trole\n1\t1\tlead" in text
    bare = build_schema_context(SqliteTarget(keyed_db), SchemaSettings(style="ddl"))
    assert "example rows" not in bare and bare.count("CREATE TABLE") == 3


def test_ddl_style_is_narrowed_to_the_budget_like_the_others(wide_db: Path) -> None:
    settings = SchemaSettings(style="ddl", example_rows=2, max_tokens=120)
    text = build_schema_context(SqliteTarget(wide_db), settings, "rainfall by day")
    assert estimate_tokens(text) <= settings.max_tokens and "CREATE TABLE weather" in text
    assert "CREATE TABLE sales" not in text


def test_example_rows_on_an_engine_without_its_own_ddl(keyed_db: Path, tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    from t2s.execution import DuckdbTarget

    path = tmp_path / "k.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE zebra (z INTEGER, label TEXT)")
        conn.execute("INSERT INTO zebra VALUES (1, 'a'), (2, NULL)")
        conn.execute("CREATE TABLE apple (a INTEGER)")
    text = build_schema_context(DuckdbTarget(path), SchemaSettings(style="ddl", example_rows=3))
    assert text.startswith("CREATE TABLE ")  # rendered from introspection: there is no stored DDL text
    assert "2 example rows:\nSELECT * FROM zebra LIMIT 2;\nz\tlabel\n1\ta\n2\tNULL\n*/" in text
