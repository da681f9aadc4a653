"""The SQL guard: only one read-only SELECT/WITH that calls allowed functions gets through.

The guard is the first of two layers (the engines are the second, see :mod:`t2s.execution`) and is
built for hostile input, in this order:

1. **Text limits before parsing** (:func:`t2s.sql_text.check_sql_text`): size, NUL, encodability, empty.
2. **Token limits** on sqlglot's tokens (an iterative tokenizer, safe on any input): token count, bracket
   nesting, ``CASE`` nesting and runs of unary operators are bounded, so the recursive-descent parser never
   recurses deep enough to raise ``RecursionError`` and parses in bounded time. Constructs where sqlglot and
   an engine read the text differently are refused: PostgreSQL ``U&"…"`` Unicode escapes (sqlglot reads
   ``U & "…"``, PostgreSQL a function name it decodes) and nested block comments.
3. **Statement shape** on the syntax tree: exactly one query (comments and empty statements after it are
   fine), no node that writes, changes state or locks anywhere in the tree.
4. **Allowlists** (:mod:`t2s.sql_allowlist`): every function call is a reviewed sqlglot type or an allowed
   name for the engine that runs it; table functions have their own list; schema-qualified calls, session
   variables and file-like table names are refused. An unknown function is refused by default.
5. **Size of the query**: bounded counts of CTEs, set operations and joined tables, so a planner cannot be
   handed a chain of 2,000 CTEs whose cost grows like depth³ and ignores the engine's timeout.

Every failure is a :class:`~t2s.errors.SqlError` (``SqlParseError`` or ``SqlRefused``) with the reason.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.tokens import TokenType

from t2s.errors import SqlError, SqlParseError, SqlRefused
from t2s.sql_allowlist import (
    NEVER,
    TYPED_FUNCTIONS,
    TYPED_TABLE_FUNCTIONS,
    function_allowed,
    table_function_allowed,
)
from t2s.sql_text import check_sql_text

# sqlglot logs a warning when it falls back to parsing a statement as an opaque Command; the guard
# refuses those statements itself, with a better message.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

MAX_TOKENS = 4_000
MAX_NESTING = 40        # brackets of any kind: ( [ {
MAX_CASE_NESTING = 16
MAX_UNARY_RUN = 12      # NOT NOT NOT …, - - - …
MAX_CTES = 50
MAX_SET_OPERATIONS = 50
MAX_TABLES = 32         # table references (a runaway cartesian product needs only a few; the timeout stops it)

FORBIDDEN_NODES: tuple[type[exp.Expression], ...] = (
    exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter, exp.TruncateTable,
    exp.Into, exp.Command, exp.Pragma, exp.Attach, exp.Detach, exp.Set, exp.Transaction, exp.Commit,
    exp.Rollback, exp.Use, exp.Copy, exp.LoadData, exp.Grant, exp.Revoke, exp.Analyze, exp.Lock,
    exp.SessionParameter, exp.Parameter, exp.Placeholder,
)
_OPEN = {TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE}
_CLOSE = {TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE}
_UNARY = {TokenType.NOT, TokenType.DASH, TokenType.PLUS, TokenType.TILDE}
_FILE_LIKE = ("/", "\\", ".csv", ".parquet", ".json", ".txt", ".tsv", ".gz", ".db", ".sqlite", ".duckdb",
              "://")
ENGINE_OF_DIALECT = {"sqlite": "sqlite", "duckdb": "duckdb", "postgres": "postgres"}


def _describe(node: exp.Expression) -> str:
    if isinstance(node, exp.Command):
        return f"{node.this.upper()} statement" if isinstance(node.this, str) else "command"
    if isinstance(node, exp.Into):
        return "SELECT … INTO (creates a table)"
    if isinstance(node, exp.Lock):
        return "row locking clause (FOR UPDATE/SHARE)"
    if isinstance(node, exp.SessionParameter | exp.Parameter | exp.Placeholder):
        return "bind parameter or session variable (nothing is bound to untrusted SQL)"
    return f"{node.key.upper()} statement"


def check_limits(sql: str, dialect: str) -> None:
    """The guard's text and token limits alone, for the engine layer to run on SQL the guard never saw.

    Text the tokenizer cannot read is left to the engine's own parser (the engine layer must not refuse
    SQL only because sqlglot does not know an engine's syntax).
    """
    check_sql_text(sql)
    try:
        tokens = sqlglot.Dialect.get_or_raise(dialect).tokenize(sql)
    except Exception:
        return
    _check_token_limits(tokens)


def _check_tokens(sql: str, dialect: str) -> list[Any]:
    try:
        tokens = sqlglot.Dialect.get_or_raise(dialect).tokenize(sql)
    except SqlError:
        raise
    except Exception as exc:  # TokenError, and anything a hostile string provokes in the tokenizer
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise SqlParseError(f"cannot parse as {dialect} SQL: {first}") from exc
    _check_token_limits(tokens)
    return tokens


def _check_token_limits(tokens: list[Any]) -> None:
    if len(tokens) > MAX_TOKENS:
        raise SqlRefused(f"SQL has {len(tokens):,} tokens; at most {MAX_TOKENS:,} are accepted")
    depth = case_depth = unary_run = definitions = 0
    prev = None
    for i, tok in enumerate(tokens):
        tt = tok.token_type
        if tt in _OPEN:
            depth += 1
            if depth > MAX_NESTING:
                raise SqlRefused(f"brackets nested more than {MAX_NESTING} deep")
        elif tt in _CLOSE:
            depth -= 1
        elif tt == TokenType.CASE:
            case_depth += 1
            if case_depth > MAX_CASE_NESTING:
                raise SqlRefused(f"CASE expressions nested more than {MAX_CASE_NESTING} deep")
        elif tt == TokenType.END:
            case_depth = max(0, case_depth - 1)
        unary_run = unary_run + 1 if tt in _UNARY else 0
        if unary_run > MAX_UNARY_RUN:
            raise SqlRefused(f"more than {MAX_UNARY_RUN} unary operators in a row")
        if any("/*" in c or "*/" in c for c in tok.comments):
            raise SqlRefused("nested block comments are not allowed (engines disagree on where they end)")
        if (prev is not None and tt == TokenType.AMP and prev.text.upper() == "U" and prev.end + 1 == tok.start
                and i + 1 < len(tokens) and tokens[i + 1].start <= tok.end + 2):
            raise SqlRefused("Unicode-escaped names and strings (U&\"…\", U&'…') are not allowed")
        if tt == TokenType.UNICODE_STRING:
            raise SqlRefused("Unicode-escaped strings (U&'…') are not allowed")
        if tt == TokenType.VAR and tok.text.upper() == "UESCAPE":
            raise SqlRefused("UESCAPE is not allowed")
        if tt == TokenType.L_PAREN and prev is not None and (
                prev.token_type == TokenType.ALIAS or prev.text.upper() == "MATERIALIZED"):
            definitions += 1  # "name AS (": a CTE; planners' cost grows fast with long CTE chains
            if definitions > MAX_CTES:
                raise SqlRefused(f"more than {MAX_CTES} common table expressions")
        prev = tok


def parse_one_statement(sql: str, dialect: str) -> exp.Expression:
    """Parse ``sql`` in ``dialect`` within the guard's limits; raise unless it is exactly one statement."""
    check_sql_text(sql)
    tokens = _check_tokens(sql, dialect)
    try:  # parse the tokens just checked: the text is tokenized once
        parsed = sqlglot.Dialect.get_or_raise(dialect).parser().parse(tokens, sql)
    except RecursionError as exc:
        raise SqlRefused("SQL is nested too deeply to check") from exc
    except Exception as exc:  # ParseError, and the IndexError/ValueError sqlglot raises on some inputs
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise SqlParseError(f"cannot parse as {dialect} SQL: {first}") from exc
    statements = [s for s in parsed if s is not None and not isinstance(s, exp.Semicolon)]
    if not statements:
        raise SqlParseError("empty SQL: no statement found")
    if len(statements) > 1:
        raise SqlRefused(f"{len(statements)} statements found; exactly one SELECT is allowed")
    return statements[0]


def _function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return node.name
    return node.sql_name()


def _check_function(node: exp.Func, engine: str) -> None:
    if isinstance(node, exp.Anonymous | exp.AnonymousAggFunc):
        name = node.name
        if not isinstance(node.this, str) and isinstance(node.this, exp.Identifier) and node.this.quoted:
            raise SqlRefused(f"quoted function name {name!r} is not allowed")
        if not function_allowed(name, engine):
            raise SqlRefused(_function_refusal(name, engine))
    elif type(node).__name__ not in TYPED_FUNCTIONS:
        raise SqlRefused(_function_refusal(_function_name(node), engine))


def _function_refusal(name: str, engine: str) -> str:
    low = name.lower()
    if low in NEVER:
        return f"function {low}() is not allowed: it {NEVER[low]}"
    return (f"function {low}() is not on the {engine} allowlist of functions analytics SQL may call "
            "(t2s/sql_allowlist.py)")


def _check_table(node: exp.Table, engine: str) -> exp.Func | None:
    """Check one table reference; return its table function when that is allowed (checked here, not as a
    scalar function)."""
    target = node.this
    if isinstance(target, exp.Func):
        if isinstance(target, exp.Anonymous):
            if not table_function_allowed(target.name, engine):
                low = target.name.lower()
                why = f": it {NEVER[low]}" if low in NEVER else " on this engine"
                raise SqlRefused(f"table function {low}() is not allowed{why}")
        elif type(target).__name__ not in TYPED_TABLE_FUNCTIONS:
            raise SqlRefused(f"table function {_function_name(target).lower()}() is not allowed")
        return target
    if isinstance(target, exp.Identifier):
        name = target.name.lower()
        if any(mark in name for mark in _FILE_LIKE):
            raise SqlRefused(f"table name {target.name!r} looks like a file or URL; only tables can be read")
    elif target is not None and not isinstance(target, exp.Identifier | exp.Dot):
        raise SqlRefused(f"only named tables can be read, not {target.key}")
    return None


def guard_select(sql: str, dialect: str = "sqlite", *, engine: str | None = None) -> exp.Query:
    """Return the parsed query if ``sql`` is a single read-only SELECT/WITH; raise otherwise.

    ``dialect`` is how the text is written; ``engine`` is where it will run (default: the engine of that
    dialect, else SQLite) and picks the function allowlist. Raises :class:`SqlParseError` for text that
    is not SQL in ``dialect`` and :class:`SqlRefused` (with the reason) for anything else than one
    read-only query within the limits. Nothing else escapes.
    """
    run_on = engine or ENGINE_OF_DIALECT.get(dialect, "sqlite")
    tree = parse_one_statement(sql, dialect)
    if not isinstance(tree, exp.Query):
        raise SqlRefused(f"only SELECT/WITH queries are allowed; this is a {_describe(tree)}")
    try:
        _check_tree(tree, run_on)
    except RecursionError as exc:
        raise SqlRefused("SQL is nested too deeply to check") from exc
    return tree


def _check_tree(tree: exp.Query, engine: str) -> None:
    ctes = set_ops = tables = 0
    table_functions: set[int] = set()
    for node in tree.walk():
        if isinstance(node, FORBIDDEN_NODES):
            raise SqlRefused(f"only read-only queries are allowed: found a {_describe(node)}")
        if isinstance(node, exp.Func):
            if id(node) not in table_functions:
                _check_function(node, engine)
        elif isinstance(node, exp.Dot) and isinstance(node.expression, exp.Func):
            raise SqlRefused("schema-qualified function calls are not allowed; call the function by its name")
        elif isinstance(node, exp.Table):
            tables += 1
            if (tvf := _check_table(node, engine)) is not None:
                table_functions.add(id(tvf))
        elif isinstance(node, exp.CTE):
            ctes += 1
        elif isinstance(node, exp.SetOperation):
            set_ops += 1
    if ctes > MAX_CTES:
        raise SqlRefused(f"{ctes} common table expressions; at most {MAX_CTES} are accepted")
    if set_ops > MAX_SET_OPERATIONS:
        raise SqlRefused(f"{set_ops} UNION/INTERSECT/EXCEPT operations; at most {MAX_SET_OPERATIONS}")
    if tables > MAX_TABLES:
        raise SqlRefused(f"{tables} table references; at most {MAX_TABLES} are accepted")


def checked_for(sql: str, dialect: str, target: str, engine: str | None = None) -> str:
    """``sql`` (written in ``dialect``) through the guard, as text for the ``target`` dialect."""
    return to_dialect(guard_select(sql, dialect, engine=engine), sql, dialect, target)


def to_dialect(tree: exp.Expression, source_sql: str, source: str, target: str) -> str:
    """SQL text for ``target``: the original text when the dialects agree (it runs exactly as written),
    else sqlglot's transpilation of the parsed tree."""
    if same_dialect(source, target):
        return source_sql
    return tree.sql(dialect=target)


@lru_cache(maxsize=64)
def same_dialect(a: str, b: str) -> bool:
    return sqlglot.Dialect.get_or_raise(a) == sqlglot.Dialect.get_or_raise(b)
