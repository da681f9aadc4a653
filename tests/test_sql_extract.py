"""SQL extraction from model answers: where the query is, where it ends, one statement only, linear time.

Answers are written as a steered model writes them (fenced, bare, with prose, comments and semicolons in
odd places); property tests throw arbitrary text at the extractor, lone surrogates and answers up to the
size cap included: only a ``SqlError`` may come out, and the scanner's Python-level steps stay bounded.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from t2s.errors import SqlError, SqlExtractionError, SqlRefused
from t2s.sql_extract import MAX_ANSWER_CHARS, MAX_FENCES, SeveralStatements, extract, extract_sql
from t2s.sql_text import MAX_SQL_CHARS
from tests.test_hostile_sql import load_corpus

DIALECTS = ("sqlite", "duckdb", "postgres")

# Queries the extractor used to cut or miss (the issue's refused legitimate queries), per dialect.
LEGIT: dict[str, list[str]] = {
    "all": [
        "/* customers per city */ SELECT city, count(*) FROM customers GROUP BY city",
        "SELECT count(*) FROM customers /* ; not the end */ WHERE age > 30",
        "SELECT count(*) -- ; still one query\nFROM customers",
        "SELECT 'a;b' AS s, name FROM customers",
        "SELECT name AS \"x;y\" FROM customers",
        "SELECT 'it''s; fine' AS s",
        "WITH t AS (SELECT 1 AS x) SELECT x FROM t",
        "(SELECT 1) UNION (SELECT 2)",
        "select name from customers where city = 'Paris'",
    ],
    "sqlite": ["SELECT [name;x] FROM customers", "SELECT `a;b` FROM customers"],
    "duckdb": [
        "FROM customers SELECT name",
        "FROM customers",
        "SELECT $$a;b$$ AS s",
        "SELECT name FROM pragma_table_info('customers')",
        "SELECT list_sum([1, 2, 3])",
        "SELECT E'a\\';b' AS s",
    ],
    "postgres": [
        "SELECT $$a;b$$ AS s",
        "SELECT $tag$ ; $$ ; $tag$ AS s",
        "SELECT E'a\\';b' AS s",
        "SELECT '{\"a\": 1}'::json",
    ],
}


def _legit() -> list[object]:
    return [pytest.param(d, q, id=f"{d}-{i}") for key, queries in LEGIT.items()
            for d in (DIALECTS if key == "all" else (key,)) for i, q in enumerate(queries)]


WRAPPINGS = {
    "bare": "{q}",
    "semicolon": "{q};",
    "fenced": "```sql\n{q};\n```",
    "fenced-untagged": "```\n{q}\n```",
    "fenced-prose": "Here is the query:\n\n```{d}\n{q};\n```\n\nIt counts what you asked for.",
    "prose-before": "Sure! The query is:\n{q}",
    "prose-after": "{q};\n\nThis query returns the rows you asked for.",
    "prose-after-blank-line": "{q}\n\nNote: adjust the filter if needed.",
    "trailing-comment": "{q}; -- done",
    "leading-comment-line": "-- the answer\n{q};",
    "many-semicolons": "{q};;\n;",
}


@pytest.mark.parametrize(("dialect", "query"), _legit())
@pytest.mark.parametrize("wrapping", WRAPPINGS)
def test_a_legitimate_query_comes_out_whole(dialect: str, query: str, wrapping: str) -> None:
    text = WRAPPINGS[wrapping].format(q=query, d=dialect)
    expected = query.split("*/ ", 1)[1] if query.startswith("/*") else query
    assert extract_sql(text, dialect) == expected


def test_the_legitimate_queries_pass_the_guard() -> None:
    from t2s.guard import guard_select

    for key, queries in LEGIT.items():
        for dialect in DIALECTS if key == "all" else (key,):
            for q in queries:
                if "[name;x]" in q or "`a;b`" in q:
                    continue  # valid names only on a table that has them
                guard_select(extract_sql(q, dialect), dialect)


def test_the_first_sql_fence_wins_and_other_languages_are_skipped() -> None:
    text = "```python\ncur.execute('SELECT 1')\n```\nSELECT is the keyword.\n```sql\nSELECT 2\n```"
    assert extract_sql(text) == "SELECT 2"
    assert extract_sql("```sql SELECT 3```") == "SELECT 3"
    assert extract_sql("With the schema above, this works:\nSELECT 4") == "SELECT 4"


@pytest.mark.parametrize("text", ["I cannot help with that.", "", "```python\nprint('SELECT')\n```",
                                  "```sql\nDROP TABLE customers;\n```", "FROM customers SELECT name"])
def test_no_query_is_an_extraction_error(text: str) -> None:
    with pytest.raises(SqlExtractionError):
        extract_sql(text, "sqlite")


# --- several statements: refused, never cut to the first -------------------------------------------------

SECOND = [c.sql for c in load_corpus() if c.sql.split(None, 1)[0].upper() in {
    "DELETE", "UPDATE", "INSERT", "DROP", "CREATE", "ALTER", "ATTACH", "PRAGMA", "COPY", "SET", "BEGIN",
    "COMMIT", "SELECT", "WITH", "INSTALL", "LOAD", "GRANT", "VACUUM", "CALL", "DO", "LISTEN", "NOTIFY"}]


@pytest.mark.parametrize("second", SECOND, ids=[s.split("\n")[0][:40] for s in SECOND])
def test_an_answer_with_several_statements_is_refused(second: str) -> None:
    for sep in ("; ", ";\n", ";\n\n"):
        for fence in ("{}", "```sql\n{}\n```", "```\n{}"):
            text = fence.format(f"SELECT name FROM customers{sep}{second}")
            for dialect in DIALECTS:
                with pytest.raises(SeveralStatements, match="several SQL statements"):
                    extract_sql(text, dialect)


@pytest.mark.parametrize("text", ["SELECT 1\nDELETE FROM customers", "SELECT 1\n\ndrop table customers",
                                  "SELECT 1;\nDelete from customers", "```\nSELECT 1;\nselect 2\n```"])
def test_a_second_statement_without_semicolon_or_in_title_case_is_seen(text: str) -> None:
    with pytest.raises(SeveralStatements):
        extract_sql(text)


@pytest.mark.parametrize("text", ["SELECT 1;\nWith this query you get one row.",
                                  "SELECT 1;\nSelect a different column if you need more.",
                                  "SELECT 1; /* unterminated", "SELECT 1;\n-- SELECT 2"])
def test_prose_and_comments_after_the_query_are_not_a_statement(text: str) -> None:
    assert extract_sql(text) == "SELECT 1"


def test_several_statements_become_a_refusal_in_the_generator() -> None:
    assert issubclass(SeveralStatements, SqlRefused) and SeveralStatements("x").error_class == "refused"


# --- hostile text: linear time, bounded steps, nothing but SqlError --------------------------------------

MB = 1_000_000
ADVERSARIAL = {  # each family ~1 MB; the first one hung the old extractor (catastrophic backtracking)
    "select-then-newlines": "SELECT 1;" + "\n" * (MB - 9),
    "bare-then-newlines": "SELECT 1" + "\n" * (MB - 10) + "x",
    "short-lines": "SELECT 1" + "\nx" * (MB // 2 - 5),
    "title-case-lines": "With\n" * (MB // 5),
    "empty-fences": "```\n" * (MB // 4),
    "line-comments": "--\n" * (MB // 3),
    "open-block-comments": "/*\n" * (MB // 3),
    "quotes": "SELECT " + "'a'" * (MB // 3),
    "semicolons": "SELECT 1" + ";" * (MB - 8),
    "comment-semicolons": "SELECT 1;" + "/**/;" * (MB // 5),
    "dollars": "SELECT " + "$" * (MB - 7),
    "escaped-quotes": "SELECT E'" + "\\'" * (MB // 2 - 5),
    "surrogates": "SELECT '\ud800" + "\udfff" * (MB - 10) + "'",
}
ADVERSARIAL = {family: text[:MB] for family, text in ADVERSARIAL.items()}


@pytest.mark.parametrize("family", ADVERSARIAL)
def test_a_1mb_hostile_answer_takes_bounded_python_steps(family: str) -> None:
    text = ADVERSARIAL[family]
    for dialect in DIALECTS:
        try:
            steps = extract(text, dialect).steps
        except SqlError:
            continue  # refused or no query: also fine, and reached through the same bounded paths
        assert steps <= MAX_SQL_CHARS + 2, f"{steps} scanner steps for a {len(text):,}-character answer"


def test_the_issue_answer_extracts_its_one_query() -> None:
    assert extract_sql("SELECT 1;" + "\n" * 50_000) == "SELECT 1"


def test_answers_beyond_the_size_cap_are_refused_unread() -> None:
    with pytest.raises(SqlRefused, match="at most"):
        extract_sql("SELECT 1 " + " " * MAX_ANSWER_CHARS)


def test_fences_past_the_limit_are_not_read() -> None:
    text = "```text\nx\n```\n" * MAX_FENCES + "```sql\nSELECT 1\n```"
    assert extract(text).fenced is False  # the SQL line is still found as an unfenced query start


FRAGMENTS = ["SELECT", "select", "With", "WITH", "FROM", ";", "'", '"', "`", "[", "]", "$$", "$t$", "E'", "\\",
             "```", "```sql\n", "\n", "\n\n", " ", "--", "/*", "*/", "(", "DROP TABLE t", "This", "1",
             "\ud800", "\udfff", "\x00", "é", "\u2028"]
texts = st.lists(st.sampled_from(FRAGMENTS) | st.text(st.characters(exclude_categories=()), max_size=8),
                 max_size=60).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, dialect=st.sampled_from((*DIALECTS, "tsql")))
def test_any_answer_gives_sql_or_a_sql_error(text: str, dialect: str) -> None:
    try:
        result = extract(text, dialect)
    except SqlError:
        return
    assert result.sql and result.sql == result.sql.strip()
    assert result.sql in text


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(fragment=texts.filter(bool), size=st.integers(1, MAX_ANSWER_CHARS), dialect=st.sampled_from(DIALECTS))
def test_any_answer_up_to_the_size_cap_takes_bounded_steps(fragment: str, size: int, dialect: str) -> None:
    text = (fragment * (size // len(fragment) + 1))[:size]
    try:
        steps = extract(text, dialect).steps
    except SqlError:
        return
    assert steps <= MAX_SQL_CHARS + 2
