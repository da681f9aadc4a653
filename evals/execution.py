"""Execution accuracy: does the predicted SQL return what the gold SQL returns?

:func:`execution_match` judges one pair on one database (and its test-suite variants) under a rule set
from :mod:`evals.compare`. Every failure is recorded with an error class, never raised:

``parse_error`` · ``refused`` (guard) · ``unknown_table`` · ``unknown_column`` · ``timeout`` ·
``execution_error`` · ``too_many_rows`` · ``empty_result`` · ``wrong_result`` · ``gold_error`` (the gold
itself failed: a dataset problem, not the prediction's) · ``missing_prediction``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlglot import exp

from evals import spider_text
from evals.compare import T2S, MatchRules, results_match
from evals.gold_cache import GoldCache, GoldRun, cache_key
from t2s.errors import SqlError, SqlTimeout
from t2s.execution import QueryResult, Target
from t2s.guard import guard_select, to_dialect

ERROR_CLASSES: tuple[str, ...] = (
    "missing_prediction", "parse_error", "refused", "unknown_table", "unknown_column", "timeout",
    "execution_error", "too_many_rows", "empty_result", "wrong_result", "gold_error",
)
# Errors that mean the predicted SQL did not run at all (it is not "valid SQL" for the valid-SQL rate).
INVALID_SQL_CLASSES = frozenset({"missing_prediction", "parse_error", "refused", "unknown_table",
                                 "unknown_column", "timeout", "execution_error"})


@dataclass
class MatchOutcome:
    match: bool
    error_class: str | None = None
    detail: str = ""
    gold: QueryResult | None = None
    pred: QueryResult | None = None
    pred_tree: exp.Query | None = field(default=None, repr=False)

    @property
    def valid_sql(self) -> bool:
        return self.error_class not in INVALID_SQL_CLASSES


def outermost_orders(tree: exp.Expression) -> bool:
    """True when the outermost query has an ORDER BY (an ORDER BY inside a subquery does not count)."""
    node = tree
    while isinstance(node, exp.Subquery):
        node = node.this
    return node.args.get("order") is not None


def _prepare(sql: str, dialect: str, target: Target, role: str, rules: MatchRules) -> tuple[str, exp.Query]:
    if rules.spider_text_fixes:
        sql = spider_text.prepare_gold(sql) if role == "gold" else spider_text.prepare_pred(sql)
    elif rules.strip_distinct:
        sql = spider_text.strip_distinct(sql)
    tree = guard_select(sql, dialect, engine=target.engine)
    return to_dialect(tree, sql, dialect, target.dialect), tree


def run_gold(target: Target, gold_sql: str, gold_dialect: str, rules: MatchRules, timeout_s: float,
             max_rows: int, cache: GoldCache | None) -> GoldRun:
    """Prepare, guard and execute the gold on ``target``, or take all three from the cache."""
    key = cache_key(target.fingerprint(), gold_sql, max_rows, f"{rules.name}|{gold_dialect}>{target.dialect}")
    hit = cache.get(key) if cache is not None else None
    if isinstance(hit, SqlError):
        raise hit
    if hit is not None:
        return hit
    try:
        text, tree = _prepare(gold_sql, gold_dialect, target, "gold", rules)
        if rules.order == "gold_text_has_order_by":
            order_matters = spider_text.gold_text_orders(gold_sql)
        else:
            order_matters = outermost_orders(tree)
        run = GoldRun(text, order_matters, target.execute(text, timeout_s=timeout_s, max_rows=max_rows))
    except SqlError as exc:
        if cache is not None and not isinstance(exc, SqlTimeout):
            cache.put(key, type(exc)(exc.message))
        raise
    if cache is not None:
        cache.put(key, run)
    return run


def execution_match(gold_sql: str, pred_sql: str | None, targets: Target | Sequence[Target], *,
                    rules: MatchRules = T2S, gold_dialect: str = "sqlite", pred_dialect: str | None = None,
                    timeout_s: float = 10.0, max_rows: int = 100_000,
                    gold_cache: GoldCache | None = None) -> MatchOutcome:
    """Judge ``pred_sql`` against ``gold_sql`` on every target (a database and its variants).

    The prediction matches only if it matches on every target. ``pred_dialect`` defaults to the
    engine's own dialect.
    """
    targets = [targets] if isinstance(targets, Target) else list(targets)
    primary = targets[0]
    if pred_sql is None or not pred_sql.strip():
        return MatchOutcome(False, "missing_prediction", "no prediction for this item")
    pred_text: str | None = None
    pred_tree: exp.Query | None = None
    outcome = MatchOutcome(True)
    for target in targets:
        try:
            gold_run = run_gold(target, gold_sql, gold_dialect, rules, timeout_s, max_rows, gold_cache)
        except SqlError as exc:
            return MatchOutcome(False, "gold_error", f"gold SQL fails ({exc.error_class}): {exc}",
                                pred_tree=pred_tree)
        gold = gold_run.result
        if gold.truncated:
            return MatchOutcome(False, "gold_error", f"gold result exceeds max_rows={max_rows}", gold=gold,
                                pred_tree=pred_tree)
        if pred_text is None:
            try:
                pred_text, pred_tree = _prepare(pred_sql, pred_dialect or primary.dialect, primary, "pred", rules)
            except SqlError as exc:
                return MatchOutcome(False, exc.error_class, str(exc), gold=gold)
            outcome.pred_tree = pred_tree
        try:
            pred = target.execute(pred_text, timeout_s=timeout_s, max_rows=max_rows)
        except SqlError as exc:
            return MatchOutcome(False, exc.error_class, str(exc), gold=gold, pred_tree=pred_tree)
        if outcome.gold is None:
            outcome.gold, outcome.pred = gold, pred
        if pred.truncated:
            return MatchOutcome(False, "too_many_rows", f"prediction returns more than {max_rows} rows",
                                gold=gold, pred=pred, pred_tree=pred_tree)
        order_matters = gold_run.order_matters
        if not results_match(gold.rows, pred.rows, rules, order_matters):
            cls = "empty_result" if not pred.rows and gold.rows else "wrong_result"
            where = "" if target is primary else f" on variant {target.fingerprint()}"
            detail = (f"prediction returns no rows, gold returns {len(gold.rows)}{where}" if cls == "empty_result"
                      else f"results differ{where}: gold {len(gold.rows)}×{len(gold.columns)}, "
                           f"predicted {len(pred.rows)}×{len(pred.columns)}"
                           + (" (row order matters: gold orders)" if order_matters else ""))
            return MatchOutcome(False, cls, detail, gold=gold, pred=pred, pred_tree=pred_tree)
    return outcome
