"""Spider-style difficulty buckets and a coarse SQL category, computed from a sqlglot parse.

``spider_hardness`` reproduces the easy/medium/hard/extra buckets of Spider's official scorer
(``eval_hardness`` in taoyds/spider and taoyds/test-suite-sql-eval). The scorer counts three things on
the *top-level* query only:

component1
    one each for WHERE, GROUP BY, ORDER BY and LIMIT being present; one per FROM source beyond the
    first (each JOIN); one per ``OR`` connective and one per ``LIKE`` predicate in the ON, WHERE and
    HAVING conditions.
component2
    one per subquery used as a value in an ON/WHERE/HAVING predicate, plus one if the query has a
    set operation (UNION/INTERSECT/EXCEPT).
others
    one each for: more than one "aggregation", more than one SELECT column, more than one WHERE
    predicate, more than one GROUP BY column.

Quirks of the reference that are reproduced on purpose (they decide the bucket of real Spider items):

* The "aggregation" count reads the first field of every entry of the WHERE and HAVING condition
  lists. For a WHERE predicate that field is its NOT flag, so ``x NOT IN (…)``, ``NOT LIKE`` and
  ``NOT BETWEEN`` each count as one aggregation while ``count(*) > 1`` in HAVING counts as none; the
  HAVING list also holds its ``AND``/``OR`` words, each of which counts as one aggregation.
* A subquery in FROM is just another FROM source: it adds to the join count only if there are other
  sources, and neither it nor anything inside it is counted as nesting.
* Set operations chain into their right operand (``A UNION B EXCEPT C`` is ``A`` with ``UNION (B
  EXCEPT C)``), and an ORDER BY/LIMIT written after the last operand belongs to that operand. So only
  the first operand's clauses are counted, and the whole chain adds exactly one to component2.
* Nothing inside a nested query (its own WHERE, joins, aggregations…) is counted at the top level.
* Predicates are a flat list joined by AND/OR; parentheses do not change the counts.

Where the reference parser gives up (it rejects ``IS NULL``, parenthesised conditions, scalar
subqueries in SELECT, CTEs, comma joins, CASE…), the same rules are extended in the natural way:
``IS NOT NULL`` and a prefix ``NOT`` set the NOT flag like ``NOT IN``; comma and ``CROSS`` joins are
FROM sources; a CTE is treated like a FROM subquery; a subquery anywhere else in the top-level query
(SELECT list, ORDER BY, GROUP BY) counts as nesting; aggregations in SELECT/GROUP BY/ORDER BY are the
aggregate calls not inside another aggregate or a subquery.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from t2s.errors import SqlParseError

__all__ = ["HardnessCounts", "classify", "hardness_counts", "primary_category", "spider_hardness"]


@dataclass(frozen=True)
class HardnessCounts:
    """The three counts Spider's ``eval_hardness`` buckets on."""

    component1: int
    component2: int
    others: int

    @property
    def bucket(self) -> str:
        c1, c2, oth = self.component1, self.component2, self.others
        if c2 == 0:
            if c1 <= 1 and oth == 0:
                return "easy"
            if (c1 <= 1 and oth <= 2) or (c1 <= 2 and oth <= 1):
                return "medium"
            if (c1 <= 2 and oth >= 3) or (c1 == 3 and oth <= 2):
                return "hard"
            return "extra"
        # With nesting or a set operation only the simplest outer query stays below "extra".
        if c2 == 1 and c1 <= 1 and oth == 0:
            return "hard"
        return "extra"


# ---------------------------------------------------------------------------------------------------
# parsing


def _parse_query(sql: str, dialect: str) -> exp.Expression:
    if not isinstance(sql, str) or not sql.strip():
        raise SqlParseError("empty SQL: expected one SELECT query")
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except SqlglotError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SqlParseError(f"cannot parse SQL as {dialect}: {first}") from exc
    except ValueError as exc:  # unknown dialect name
        raise SqlParseError(f"cannot parse SQL: {exc}") from exc
    if len(statements) != 1:
        raise SqlParseError(f"expected exactly one SQL statement, found {len(statements)}")
    root = _unwrap(statements[0])
    if not isinstance(root, exp.Query):
        raise SqlParseError(f"expected a SELECT query, got {type(root).__name__.upper()} "
                            f"({root.sql(dialect=dialect)[:60]!r})")
    return root


def _unwrap(node: exp.Expression) -> exp.Expression:
    while isinstance(node, (exp.Subquery, exp.Paren)) and isinstance(node.this, exp.Expression):
        node = node.this
    return node


# ---------------------------------------------------------------------------------------------------
# tree helpers


def _is_subquery(node: exp.Expression) -> bool:
    return isinstance(node, (exp.Subquery, exp.Query))


def _subqueries(node: exp.Expression | None) -> int:
    """Subqueries directly under ``node`` (a subquery's own subqueries are not counted)."""
    if node is None:
        return 0
    if _is_subquery(node):
        return 1
    return sum(_subqueries(child) for child in node.iter_expressions())


def _aggregates(node: exp.Expression | None) -> int:
    """Aggregate calls under ``node``, not descending into an aggregate's arguments or a subquery."""
    if node is None or _is_subquery(node):
        return 0
    if isinstance(node, exp.AggFunc):
        return 1
    return sum(_aggregates(child) for child in node.iter_expressions())


@dataclass
class _Predicate:
    negated: bool
    like: bool
    nested: int


def _flatten(cond: exp.Expression | None) -> tuple[list[_Predicate], list[str]]:
    """A condition as the reference sees it: predicates and the AND/OR words between them."""
    preds: list[_Predicate] = []
    words: list[str] = []

    def visit(node: exp.Expression) -> None:
        if isinstance(node, exp.Paren) and isinstance(node.this, exp.Connector):
            visit(node.this)
        elif isinstance(node, (exp.And, exp.Or)):
            visit(node.this)
            words.append("or" if isinstance(node, exp.Or) else "and")
            visit(node.expression)
        else:
            preds.append(_predicate(node))

    if cond is not None and not (isinstance(cond, exp.Boolean) and cond.this is True):
        visit(cond)
    return preds, words


def _predicate(node: exp.Expression) -> _Predicate:
    negated = False
    core = node
    while isinstance(core, (exp.Not, exp.Paren)):
        negated = negated or isinstance(core, exp.Not)
        core = core.this
    return _Predicate(negated=negated, like=isinstance(core, (exp.Like, exp.ILike)),
                      nested=_subqueries(node))


def _leftmost_select(query: exp.Expression) -> tuple[exp.Expression, bool]:
    node, has_setop = _unwrap(query), False
    while isinstance(node, exp.SetOperation):
        has_setop = True
        node = _unwrap(node.this)
    return node, has_setop


# ---------------------------------------------------------------------------------------------------
# hardness


def _counts(query: exp.Expression) -> HardnessCounts:
    select, has_setop = _leftmost_select(query)
    if not isinstance(select, exp.Select):
        # e.g. VALUES: no clauses to count.
        return HardnessCounts(0, int(has_setop), 0)

    from_ = select.args.get("from_") or select.args.get("from")
    joins = select.args.get("joins") or []
    sources = (1 if from_ is not None else 0) + len(joins)

    on_preds: list[_Predicate] = []
    on_words: list[str] = []
    for join in joins:
        p, w = _flatten(join.args.get("on"))
        if p and on_preds:
            on_words.append("and")  # the reference joins successive ON clauses with AND
        on_preds += p
        on_words += w
    where = select.args.get("where")
    where_preds, where_words = _flatten(where.this if where is not None else None)
    having = select.args.get("having")
    having_preds, having_words = _flatten(having.this if having is not None else None)
    group = select.args.get("group")
    group_items = list(group.expressions) if group is not None else []
    order = select.args.get("order")
    order_items = [o.this if isinstance(o, exp.Ordered) else o for o in order.expressions] if order else []

    all_preds = on_preds + where_preds + having_preds
    all_words = on_words + where_words + having_words

    component1 = (
        int(bool(where_preds))
        + int(bool(group_items))
        + int(bool(order_items))
        + int(select.args.get("limit") is not None)
        + max(sources - 1, 0)
        + all_words.count("or")
        + sum(p.like for p in all_preds)
    )

    component2 = sum(p.nested for p in all_preds) + int(has_setop)
    # Extension: the reference cannot parse subqueries in these places; count them as nesting.
    component2 += sum(_subqueries(e) for e in (*select.expressions, *group_items, *order_items))

    aggregations = (
        sum(_aggregates(e) for e in select.expressions)
        + sum(p.negated for p in where_preds)
        + sum(_aggregates(e) for e in group_items)
        + sum(_aggregates(e) for e in order_items)
        + sum(p.negated for p in having_preds) + len(having_words)
    )
    others = (
        int(aggregations > 1)
        + int(len(select.expressions) > 1)
        + int(len(where_preds) > 1)
        + int(len(group_items) > 1)
    )
    return HardnessCounts(component1, component2, others)


def hardness_counts(sql: str, dialect: str = "sqlite") -> HardnessCounts:
    """The component1/component2/others counts of ``sql`` (see the module docstring)."""
    return _counts(_parse_query(sql, dialect))


def spider_hardness(sql: str, dialect: str = "sqlite") -> str:
    """Spider's difficulty bucket of ``sql``: ``"easy"``, ``"medium"``, ``"hard"`` or ``"extra"``.

    Raises :class:`t2s.errors.SqlParseError` if ``sql`` is not exactly one parseable SELECT query.
    """
    return hardness_counts(sql, dialect).bucket


# ---------------------------------------------------------------------------------------------------
# category

_DATE_FUNCTIONS = frozenset({
    "date", "datetime", "time", "julianday", "strftime", "unixepoch", "timediff", "now", "year",
    "month", "day", "extract", "date_part", "datediff", "dateadd", "to_date", "to_timestamp",
})
_DATE_NODE_WORDS = ("Date", "Time", "Year", "Month", "Week", "Quarter", "DayOf", "Epoch")
_DATE_LITERAL = re.compile(r"^\d{4}-\d{2}(-\d{2})?([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$")
_NULL_FUNCTIONS = frozenset({"ifnull", "isnull", "nvl", "nullif", "coalesce"})


def _is_date_node(node: exp.Expression) -> bool:
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower() in _DATE_FUNCTIONS
    if isinstance(node, exp.Func):
        name = type(node).__name__
        return any(word in name for word in _DATE_NODE_WORDS)
    if isinstance(node, exp.DataType):
        return node.is_type(*exp.DataType.TEMPORAL_TYPES)
    return isinstance(node, exp.Literal) and node.is_string and bool(_DATE_LITERAL.match(node.this))


def _is_null_node(node: exp.Expression) -> bool:
    if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
        return True
    if isinstance(node, (exp.Coalesce, exp.Nullif)):
        return True
    return isinstance(node, exp.Anonymous) and str(node.this).lower() in _NULL_FUNCTIONS


def primary_category(sql: str, dialect: str = "sqlite") -> str:
    """One coarse category from ``t2s.datasets.CATEGORIES`` for ``sql``: the first that applies, in order

    1. ``set_ops``: a UNION, INTERSECT or EXCEPT anywhere;
    2. ``nested``: any subquery (in WHERE/HAVING/SELECT/FROM, EXISTS, or a CTE);
    3. ``join``: more than one FROM source (any JOIN, comma or CROSS join);
    4. ``group_by``: GROUP BY or HAVING;
    5. ``order_limit``: ORDER BY or LIMIT on the query;
    6. ``aggregate``: an aggregate call (COUNT, SUM, AVG, MIN, MAX, …);
    7. ``null_handling``: ``IS [NOT] NULL``, COALESCE/IFNULL/NVL or NULLIF;
    8. ``dates``: a date/time function or type (date(), strftime(), julianday(), CAST AS DATE, …) or
       a date-shaped string literal such as ``'2014-05-01'``;
    9. ``filter``: anything else (plain projections, with or without WHERE).

    Raises :class:`t2s.errors.SqlParseError` if ``sql`` is not exactly one parseable SELECT query.
    """
    return _category(_parse_query(sql, dialect))


def classify(sql: str, dialect: str = "sqlite") -> tuple[str, str]:
    """``(spider_hardness(sql), primary_category(sql))`` from a single parse."""
    root = _parse_query(sql, dialect)
    return _counts(root).bucket, _category(root)


def _category(root: exp.Expression) -> str:
    nodes = list(root.walk())
    if any(isinstance(n, exp.SetOperation) for n in nodes):
        return "set_ops"
    if any(isinstance(n, (exp.Subquery, exp.CTE)) for n in nodes) or \
            sum(isinstance(n, exp.Select) for n in nodes) > 1:
        return "nested"
    if any(isinstance(n, exp.Join) for n in nodes):
        return "join"
    if any(isinstance(n, (exp.Group, exp.Having)) for n in nodes):
        return "group_by"
    if root.args.get("order") is not None or root.args.get("limit") is not None:
        return "order_limit"
    if any(isinstance(n, exp.AggFunc) for n in nodes):
        return "aggregate"
    if any(_is_null_node(n) for n in nodes):
        return "null_handling"
    if any(_is_date_node(n) for n in nodes):
        return "dates"
    return "filter"
