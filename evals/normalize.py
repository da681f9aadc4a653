"""sqlglot-normalized exact match: two queries that print the same canonical form.

The canonical form is ``qualify(schema, db="main")`` → ``canonicalize_internal_names`` → ``optimize``:
table and column references are resolved against the real schema, user-chosen aliases are replaced by
internal names, and the optimizer's rewrites (predicate order, simplification) are applied. Other orders
either keep user aliases or rename real tables, which makes different queries look equal.
"""

from __future__ import annotations

import copy
from functools import lru_cache

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer import optimize
from sqlglot.optimizer.canonicalize_internal_names import canonicalize_internal_names
from sqlglot.optimizer.qualify import qualify

from t2s.execution import Target

Schema = dict[str, dict[str, str]]
MAX_PASSES = 4


def target_schema(target: Target) -> Schema:
    """Tables → columns → type names, read from the database itself."""
    return _schema_cached(target.engine, target.fingerprint(), target)


@lru_cache(maxsize=64)
def _schema_cached(engine: str, fingerprint: str, target: Target) -> Schema:
    schema: Schema = {}
    for table, column, typ in target.columns():
        schema.setdefault(table.lower(), {})[column.lower()] = typ or "TEXT"
    return schema


def canonical_sql(tree: exp.Expression, schema: Schema, dialect: str) -> str | None:
    """The canonical text of ``tree``, or None when it cannot be resolved against ``schema``."""
    try:
        text = None
        node = copy.deepcopy(tree)
        # optimize() can introduce fresh internal names (e.g. "_u_0" for an unnested subquery), so the
        # whole pass repeats on its own output until the text stops changing: the canonical form of a
        # canonical form is itself.
        for _ in range(MAX_PASSES):
            node = qualify(node, schema=schema, db="main", dialect=dialect)
            node = canonicalize_internal_names(node)
            node = optimize(node, schema=schema, db="main", dialect=dialect)
            new_text = node.sql(dialect=dialect)
            if new_text == text:
                break
            text = new_text
            node = sqlglot.parse_one(text, read=dialect)
        return text
    except (SqlglotError, KeyError, ValueError, AttributeError, TypeError, RecursionError):
        return None


def normalized_exact_match(gold: exp.Expression, pred: exp.Expression, schema: Schema, dialect: str) -> bool:
    """True when both queries have the same canonical form (and it exists)."""
    g = canonical_sql(gold, schema, dialect)
    return g is not None and g == canonical_sql(pred, schema, dialect)
