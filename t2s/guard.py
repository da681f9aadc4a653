"""The SQL guard: only one read-only SELECT/WITH statement gets through.

The check runs on sqlglot's syntax tree, never on regexes over the text, so ``SELECT 'drop table'``
passes and ``WITH d AS (DELETE … RETURNING *) SELECT …`` does not. The guard is the first layer;
every engine also opens its connection read-only (see :mod:`t2s.execution`).
"""

from __future__ import annotations

import logging
from functools import lru_cache

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from t2s.errors import SqlParseError, SqlRefused

# sqlglot logs a warning when it falls back to parsing a statement as an opaque Command; the guard
# refuses those statements itself, with a better message.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

FORBIDDEN_NODES: tuple[type[exp.Expression], ...] = (
    exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter, exp.TruncateTable,
    exp.Into, exp.Command, exp.Pragma, exp.Attach, exp.Detach, exp.Set, exp.Transaction, exp.Commit,
    exp.Rollback, exp.Use, exp.Copy, exp.LoadData, exp.Grant, exp.Revoke, exp.Analyze, exp.Lock,
)

# Functions that touch files, the network, server state or sleep; refused whatever the engine.
FORBIDDEN_FUNCTIONS = frozenset({
    "load_extension", "readfile", "writefile", "edit", "fts3_tokenizer",
    "pg_sleep", "pg_sleep_for", "pg_sleep_until", "pg_read_file", "pg_read_binary_file", "pg_ls_dir",
    "pg_stat_file", "lo_import", "lo_export", "dblink", "dblink_exec", "set_config",
    "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_advisory_lock",
    "read_csv", "read_csv_auto", "read_parquet", "read_json", "read_json_auto", "read_text", "read_blob",
    "read_ndjson", "glob", "query", "query_table", "sniff_csv",
})


def _describe(node: exp.Expression) -> str:
    if isinstance(node, exp.Command):
        return f"{node.this.upper()} statement" if isinstance(node.this, str) else "command"
    if isinstance(node, exp.Into):
        return "SELECT … INTO (creates a table)"
    if isinstance(node, exp.Lock):
        return "row locking clause (FOR UPDATE/SHARE)"
    return f"{node.key.upper()} statement"


def parse_one_statement(sql: str, dialect: str) -> exp.Expression:
    """Parse ``sql`` in ``dialect``; raise unless it is exactly one statement."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except (ParseError, TokenError) as exc:
        first = str(exc).splitlines()[0]
        raise SqlParseError(f"cannot parse as {dialect} SQL: {first}") from exc
    if not statements:
        raise SqlParseError("empty SQL: no statement found")
    if len(statements) > 1:
        raise SqlRefused(f"{len(statements)} statements found; exactly one SELECT is allowed")
    return statements[0]


def guard_select(sql: str, dialect: str = "sqlite") -> exp.Query:
    """Return the parsed query if ``sql`` is a single read-only SELECT/WITH; raise otherwise.

    Raises :class:`SqlParseError` for text that is not SQL in ``dialect`` and :class:`SqlRefused`
    (with the reason) for anything else than one read-only query.
    """
    tree = parse_one_statement(sql, dialect)
    if not isinstance(tree, exp.Query):
        raise SqlRefused(f"only SELECT/WITH queries are allowed; this is a {_describe(tree)}")
    for node in tree.walk():
        if isinstance(node, FORBIDDEN_NODES):
            raise SqlRefused(f"only read-only queries are allowed: found a {_describe(node)}")
        if isinstance(node, exp.Func):
            name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
            if name in FORBIDDEN_FUNCTIONS:
                raise SqlRefused(f"function {name}() is not allowed in evaluated or served SQL")
    return tree


def to_dialect(tree: exp.Expression, source_sql: str, source: str, target: str) -> str:
    """SQL text for ``target``: the original text when the dialects agree (it runs exactly as written),
    else sqlglot's transpilation of the parsed tree."""
    if same_dialect(source, target):
        return source_sql
    return tree.sql(dialect=target)


@lru_cache(maxsize=64)
def same_dialect(a: str, b: str) -> bool:
    return sqlglot.Dialect.get_or_raise(a) == sqlglot.Dialect.get_or_raise(b)
