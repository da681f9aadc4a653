import pytest

from t2s.errors import SqlParseError, SqlRefused
from t2s.guard import guard_select, to_dialect

ALLOWED = {
    "select": "SELECT name FROM customers",
    "with": "WITH big AS (SELECT * FROM orders WHERE amount > 10) SELECT count(*) FROM big",
    "union": "SELECT city FROM customers UNION SELECT 'x'",
    "parenthesized": "(SELECT 1) UNION ALL (SELECT 2)",
    "trailing-semicolon": "SELECT 1;",
    "keyword-in-string": "SELECT 'DROP TABLE customers; DELETE FROM x' AS s",
    "recursive-cte": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5) SELECT * FROM n",
}

REFUSED = {
    "drop": ("DROP TABLE customers", "DROP"),
    "delete": ("DELETE FROM customers", "DELETE"),
    "update": ("UPDATE customers SET age = 1", "UPDATE"),
    "insert": ("INSERT INTO customers VALUES (9, 'x', 'y', 1)", "INSERT"),
    "create": ("CREATE TABLE t (a INT)", "CREATE"),
    "alter": ("ALTER TABLE customers ADD COLUMN z INT", "ALTER"),
    "pragma": ("PRAGMA writable_schema = 1", "PRAGMA"),
    "attach": ("ATTACH DATABASE '/tmp/x.db' AS x", "ATTACH"),
    "two-statements": ("SELECT 1; SELECT 2", "statements"),
    "select-then-drop": ("SELECT 1; DROP TABLE customers", "statements"),
    "dml-in-cte": ("WITH d AS (DELETE FROM customers RETURNING *) SELECT * FROM d", "DELETE"),
    "select-into": ("SELECT * INTO copy FROM customers", "INTO"),
    "vacuum": ("VACUUM", "VACUUM"),
    "transaction": ("BEGIN", "TRANSACTION"),
    "load-extension": ("SELECT load_extension('evil.so')", "load_extension"),
    "pg-sleep": ("SELECT pg_sleep(100)", "pg_sleep"),
    "for-update": ("SELECT * FROM customers FOR UPDATE", "locking"),
    "bare-values": ("VALUES (1), (2)", "VALUES"),
}


@pytest.mark.parametrize("sql", ALLOWED.values(), ids=ALLOWED.keys())
def test_read_only_queries_pass(sql: str) -> None:
    assert guard_select(sql, "sqlite") is not None


@pytest.mark.parametrize(("sql", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_everything_else_is_refused_with_a_reason(sql: str, reason: str) -> None:
    with pytest.raises(SqlRefused) as err:
        guard_select(sql, "sqlite")
    assert reason.lower() in str(err.value).lower()


@pytest.mark.parametrize("sql", ["", "   ", "SELEC name FROM t", "SELECT (1", "SELECT 'unterminated"])
def test_unparseable_sql_is_a_parse_error(sql: str) -> None:
    with pytest.raises(SqlParseError):
        guard_select(sql, "sqlite")


def test_tsql_is_parsed_in_its_dialect_and_transpiled() -> None:
    sql = "SELECT TOP 3 [name] FROM customers ORDER BY age DESC"
    tree = guard_select(sql, "tsql")
    out = to_dialect(tree, sql, "tsql", "sqlite")
    assert "LIMIT 3" in out and "TOP" not in out


def test_same_dialect_keeps_the_original_text() -> None:
    sql = "select  name from customers -- as written"
    assert to_dialect(guard_select(sql, "sqlite"), sql, "sqlite", "sqlite") == sql


# --- allowlists and limits -------------------------------------------------------------------------------

def test_every_allowlisted_typed_function_is_a_sqlglot_class() -> None:
    from sqlglot import exp

    from t2s.sql_allowlist import TYPED_FUNCTIONS, TYPED_TABLE_FUNCTIONS

    for name in TYPED_FUNCTIONS | TYPED_TABLE_FUNCTIONS:
        cls = getattr(exp, name, None)
        assert isinstance(cls, type) and issubclass(cls, exp.Func), name


def test_a_typed_function_missing_from_the_list_is_refused_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from t2s import guard

    monkeypatch.setattr(guard, "TYPED_FUNCTIONS", guard.TYPED_FUNCTIONS - {"Upper"})
    with pytest.raises(SqlRefused, match="allowlist"):
        guard_select("SELECT upper(name) FROM customers")


@pytest.mark.parametrize(("sql", "engine", "reason"), [
    ("SELECT frobnicate(1)", "sqlite", "allowlist"),
    ("SELECT query_to_xml('select 1', true, false, '')", "postgres", "runs SQL text"),
    ("SELECT pg_read_file('/etc/passwd')", "postgres", "files"),
    ("SELECT * FROM read_csv('/etc/passwd')", "duckdb", "table function"),
    ("SELECT * FROM enable_logging()", "duckdb", "table function enable_logging"),
    ("SELECT pg_catalog.upper('x')", "postgres", "schema-qualified"),
    ('SELECT "julianday"(placed) FROM orders', "sqlite", "quoted function name"),
    ("SELECT * FROM 'data.csv'", "duckdb", "looks like a file"),
    ("SELECT json_each('[1]')", "postgres", "allowlist"),
])
def test_functions_outside_the_allowlist_are_refused_with_a_reason(sql: str, engine: str, reason: str) -> None:
    with pytest.raises(SqlRefused, match=reason):
        guard_select(sql, engine)


@pytest.mark.parametrize(("sql", "reason"), [
    ("SELECT " + "(" * 100 + "1" + ")" * 100, "nested"),
    ("SELECT " + "x" * 30_000, "characters"),
    ("SELECT " + ", ".join(["1"] * 3000), "tokens"),
    ("WITH " + ", ".join(f"c{i} AS (SELECT 1)" for i in range(60)) + " SELECT 1", "common table"),
    (" UNION ALL ".join(["SELECT 1"] * 60), "UNION"),
    ("SELECT count(*) FROM " + ", ".join(f"customers c{i}" for i in range(40)), "table references"),
    ("SELECT " + "NOT " * 20 + "1", "unary"),
    ("SELECT 1 /* a /* b */ */", "nested block comments"),
    ("SELECT '\ud800'", "Unicode"),
])
def test_size_and_depth_limits_refuse_before_the_parser_recurses(sql: str, reason: str) -> None:
    with pytest.raises((SqlRefused, SqlParseError), match=reason):
        guard_select(sql, "sqlite")


@pytest.mark.parametrize("sql", ["SHOW ALL", "DESCRIBE customers", "-- only a comment", ";", "\x00", "SELECT 1 FROM"])
def test_nothing_but_sql_errors_escape(sql: str) -> None:
    from t2s.errors import SqlError

    for dialect in ("sqlite", "duckdb", "postgres", "tsql"):
        with pytest.raises(SqlError):
            guard_select(sql, dialect)


def test_no_false_positives_on_the_shipped_and_benchmark_sql() -> None:
    """Every gold query of the bundled set and its training split, and (when the Spider sample is beside
    the repository) every gold and published prediction there, passes the guard."""
    import csv
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sqls = []
    for name in ("questions.jsonl", "train.jsonl"):
        for line in (root / "datasets" / "bank" / name).read_text().splitlines():
            row = json.loads(line)
            sqls.append((row["gold_sql"], row.get("dialect", "sqlite")))
    spider = root.parent / "shared" / "spider-sample"
    if spider.is_dir():
        sqls += [(d["query"], "sqlite") for d in json.loads((spider / "dev.json").read_text())]
        with open(spider / "predictions.tsv", newline="") as fh:
            sqls += [(row["predicted_sql"], "sqlite") for row in csv.DictReader(fh, delimiter="\t")]
    refused = []
    for sql, dialect in sqls:
        try:
            guard_select(sql, dialect, engine="sqlite")
        except SqlRefused as exc:
            refused.append((sql, str(exc)))
    assert not refused, refused[:5]
    assert len(sqls) >= 160
