"""Checks on raw SQL text that both layers run before anything parses it.

Size comes first: parsers are recursive (deep nesting raises ``RecursionError``) and slow on huge input
(a 700 KB ``OR`` chain took 11 s to parse), so text beyond :data:`MAX_SQL_CHARS` is refused before any
parser sees it. Text that cannot be sent to an engine as UTF-8 (lone surrogates), NUL characters and text
that holds only comments and semicolons are refused with a clear error instead of an engine's exception.
"""

from __future__ import annotations

from t2s.errors import SqlParseError, SqlRefused

MAX_SQL_CHARS = 20_000


def check_sql_text(sql: object, *, max_chars: int = MAX_SQL_CHARS) -> str:
    """Return ``sql`` if it is sendable text of a sane size; raise a :class:`SqlError` otherwise."""
    if not isinstance(sql, str):
        raise SqlParseError(f"SQL must be text, got {type(sql).__name__}")
    if len(sql) > max_chars:
        raise SqlRefused(f"SQL is {len(sql):,} characters; at most {max_chars:,} are accepted")
    if "\x00" in sql:
        raise SqlParseError("SQL contains a NUL character")
    try:
        sql.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SqlParseError(f"SQL is not valid Unicode text ({exc.reason} at position {exc.start})") from exc
    if not strip_comments(sql).strip(" \t\r\n\f\v;"):
        raise SqlParseError("empty SQL: no statement found (only comments or semicolons)")
    return sql


def strip_comments(sql: str) -> str:
    """``sql`` without ``--`` and ``/* */`` comments (string literals and quoted names kept intact).

    Used only to decide whether any statement is present; nested block comments count as one comment.
    """
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"`[":
            close = "]" if ch == "[" else ch
            j = sql.find(close, i + 1)
            j = n if j < 0 else j + 1
            out.append(sql[i:j])
            i = j
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
        elif sql.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(" ")
            i = j
        else:
            out.append(ch)
            i += 1
    return "".join(out)
