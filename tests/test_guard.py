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
