"""Text rewrites Spider's test-suite scorer applies before executing gold and predicted SQL.

Used only by the ``spider`` rule set, to reproduce the reference's verdicts, quirks included:

- every ``DISTINCT`` keyword is removed from both queries (also inside ``COUNT(DISTINCT x)``);
- ``> =``, ``< =`` and ``! =`` are closed up;
- in predictions only, every occurrence of the lowercase text ``value`` becomes ``1`` (see
  :func:`plug_placeholder`);
- ``YEAR(CURDATE())`` becomes ``2020``;
- row order matters when the gold text contains ``order by`` anywhere (even in a subquery).
"""

from __future__ import annotations

import re

from sqlglot.tokens import Tokenizer, TokenType

_CUR_YEAR = re.compile(r"YEAR\s*\(\s*CURDATE\s*\(\s*\)\s*\)\s*", re.IGNORECASE)


def close_operators(sql: str) -> str:
    return sql.replace("> =", ">=").replace("< =", "<=").replace("! =", "!=")


def replace_current_year(sql: str) -> str:
    return _CUR_YEAR.sub("2020", sql)


def strip_distinct(sql: str) -> str:
    """Remove each DISTINCT keyword token (not text inside strings or identifiers)."""
    try:
        tokens = Tokenizer().tokenize(sql)
    except Exception:  # text sqlglot cannot tokenize is executed as written
        return sql
    spans = [(t.start, t.end + 1) for t in tokens if t.token_type == TokenType.DISTINCT]
    if not spans:
        return sql
    out, pos = [], 0
    for start, end in spans:
        out.append(sql[pos:start])
        pos = end
    out.append(sql[pos:])
    return "".join(out)


def plug_placeholder(sql: str) -> str:
    """Spider's placeholder rewrite, applied by the reference to predictions (never to golds).

    Older Spider systems predicted the literal word ``value`` where a constant belongs; the reference
    replaces the text ``value`` with ``1`` as a plain, case-sensitive substring substitution before
    anything else. It therefore also rewrites a quoted placeholder (``age > "value"`` → ``age > "1"``,
    ``'value'`` → ``'1'``), the word inside longer string literals (``'good value'`` → ``'good 1'``) and
    identifiers that contain it (``total_value`` → ``total_1``, ``valued`` → ``1d``, which then fails
    to run). ``VALUE`` or ``Value`` are left alone. The quirks are kept on purpose: the ``spider`` rule
    set exists to reproduce the reference's verdicts.
    """
    return sql.replace("value", "1")


def prepare_gold(sql: str) -> str:
    return replace_current_year(strip_distinct(close_operators(sql)))


def prepare_pred(sql: str) -> str:
    return replace_current_year(strip_distinct(close_operators(plug_placeholder(sql))))


def gold_text_orders(gold_sql: str) -> bool:
    """The reference's test, on the gold after its rewrites: a literal ``order by`` anywhere."""
    return "order by" in strip_distinct(close_operators(gold_sql)).lower()
