"""Pull the SQL query out of a model's answer.

Models wrap SQL in code fences, put prose before or after it, end it with semicolons, or answer with
prose only. :func:`extract_sql` returns the first query's text or raises :class:`SqlExtractionError`.
"""

from __future__ import annotations

import re

from t2s.errors import SqlExtractionError

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.S)
_START = re.compile(r"^\s*(WITH|SELECT)\b", re.I | re.M)
_PROSE_AFTER = re.compile(r"\n\s*\n(?=\s*(?:This|The|Here|Note|Explanation|It|In|We|I)\b)", re.S)


def _first_statement(sql: str) -> str:
    """Text up to the first top-level semicolon (outside quotes), stripped."""
    quote: str | None = None
    for i, ch in enumerate(sql):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"`[":
            quote = "]" if ch == "[" else ch
        elif ch == ";":
            return sql[:i].strip()
    return sql.strip()


def extract_sql(text: str) -> str:
    """The first SELECT/WITH query in ``text`` (code fence first, else the first line that starts one)."""
    for lang, body in _FENCE.findall(text or ""):
        if lang.lower() in ("", "sql", "sqlite", "tsql", "postgresql", "postgres", "duckdb") and _START.search(body):
            return _first_statement(body[_START.search(body).start():])  # type: ignore[union-attr]
    match = _START.search(text or "")
    if match is None:
        snippet = " ".join((text or "").split())[:120]
        raise SqlExtractionError(f"no SELECT/WITH query in the model's answer: {snippet!r}")
    body = text[match.start():]
    body = _PROSE_AFTER.split(body, maxsplit=1)[0]
    return _first_statement(body)
