"""Serving budgets: what one answer of a variant costs when served, and whether that fits the budget.

A promotion must respect what the product can afford per answer, not only be more accurate: a version that
samples, repairs and votes can win on accuracy and still answer in a minute. :func:`serving_cost` measures,
from a variant's evaluated items (:class:`evals.records.EvalItem`), per answer:

- **p95 latency**: the nearest-rank 95th percentile of the answers' latencies (``sorted[ceil(0.95 n) - 1]``).
  An answer's latency is :attr:`EvalItem.answer_latency_s`: the wall time of its generation in the sweep
  (every model call, repair and candidate execution of the version's strategy), with each model call that
  the completion cache answered counted at the time it took when it was made, so a rerun from the cache
  keeps the real figure. The sweep runs one question per local model server at a time, as serving does
  (README "Serving budgets" has the measured comparison with ``t2s serve``). Each worker's first answer in
  a cell (:attr:`EvalItem.cold_start`) is left out: its server had not yet cached the prompt's shared
  prefix (the database's schema), which a serving process pays once per server and database, not per
  answer; the slowest of them is reported beside the p95. With fewer than 59 answers the sample p95 is not
  an upper confidence bound of the true p95; it is a point estimate, reported as such.
- **model calls** and **tokens** (prompt + completion): means over the answers;
- **cost per 1,000 answers** (USD): the metric ``cost_per_1k_answers_usd`` the evaluation derives from the
  model's prices per 1,000 tokens (``eval.models[].price_per_1k_input/output``); a local model costs
  nothing per token; a hosted model without prices has no cost (None).

:func:`check_budget` compares that with a :class:`Budget` (``params.yaml`` → ``gate.budget``). A limit that
is set but cannot be checked (its measurement is missing) fails the check: the gate does not promote what it
cannot measure. Every outcome is one sentence with the numbers and the budget's name.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from evals.records import EvalItem, VariantRun

__all__ = ["Budget", "BudgetCheck", "ServingCost", "answer_latencies", "check_budget", "p95", "serving_cost"]

_EPS = 1e-9
BUDGET_FIELD = "gate.budget"


@dataclass(frozen=True)
class Budget:
    """Per-answer limits; ``None`` leaves a dimension unlimited."""

    p95_latency_s: float | None = None
    model_calls_per_answer: float | None = None
    tokens_per_answer: float | None = None
    cost_per_1k_answers_usd: float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ValueError(f"{BUDGET_FIELD}.{f.name} must be a positive number, got {value!r}")

    @property
    def limits(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class ServingCost:
    """What an answer of a variant costs; ``None``: not measured."""

    answers: int
    warm_answers: int  # answers that were not their worker's first (the percentiles are over these)
    latency_measured: int  # warm answers whose latency is known
    p50_latency_s: float | None  # None unless every answer's latency is known
    p95_latency_s: float | None
    model_calls_per_answer: float | None
    tokens_per_answer: float | None
    cost_per_1k_answers_usd: float | None
    cold_start_s: float | None = None  # the slowest first answer of a worker (a cold server prefix)


@dataclass
class BudgetCheck:
    within: bool
    reason: str
    cost: ServingCost
    over: list[str] = field(default_factory=list)  # limits exceeded
    missing: list[str] = field(default_factory=list)  # limits whose measurement is missing

    def to_dict(self) -> dict[str, Any]:
        return {"within": self.within, "over": list(self.over), "missing": list(self.missing),
                "reason": self.reason, "measured": asdict(self.cost)}


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile (the smallest value with at least 95% of the values at or below it)."""
    if not values:
        raise ValueError("p95 of no values")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def _answer_latency(item: EvalItem) -> float | None:
    if item.answer_latency_s is not None:
        return item.answer_latency_s
    # Records written before answer latencies were kept: the wall time is a measurement only when no model
    # call came from the cache (``cached`` is true only when every call did, so mixed answers undercount).
    return None if item.cached else item.latency_s


def answer_latencies(items: list[EvalItem]) -> list[float]:
    """The measured per-answer latencies of the warm answers among ``items`` (cold starts and answers
    without a measurement left out)."""
    return [x for i in items if not i.cold_start for x in [_answer_latency(i)] if x is not None]


def serving_cost(run: VariantRun) -> ServingCost:
    items = run.items
    n = len(items)
    warm = [i for i in items if not i.cold_start]
    latencies = answer_latencies(items)
    cold = [x for i in items if i.cold_start for x in [_answer_latency(i)] if x is not None]
    cost = run.metrics.get("cost_per_1k_answers_usd")
    if cost is None and run.provider == "local":
        cost = 0.0
    complete = bool(latencies) and len(latencies) == len(warm)
    return ServingCost(
        answers=n, warm_answers=len(warm), latency_measured=len(latencies), cold_start_s=max(cold, default=None),
        p50_latency_s=statistics.median(latencies) if complete else None,
        p95_latency_s=p95(latencies) if complete else None,
        model_calls_per_answer=sum(i.model_calls for i in items) / n if n else None,
        tokens_per_answer=sum(i.prompt_tokens + i.completion_tokens for i in items) / n if n else None,
        cost_per_1k_answers_usd=None if cost is None else float(cost))


def _fmt(name: str, value: float) -> str:
    if name == "p95_latency_s":
        return f"{value:.2f} s"
    if name == "cost_per_1k_answers_usd":
        return f"${value:,.4g}"
    if name == "tokens_per_answer":
        return f"{value:,.0f}"
    return f"{value:.2f}"


_LABELS = {"p95_latency_s": "p95 latency per answer", "model_calls_per_answer": "model calls per answer",
           "tokens_per_answer": "tokens per answer", "cost_per_1k_answers_usd": "cost per 1,000 answers"}


def _missing_reason(name: str, run: VariantRun, cost: ServingCost) -> str:
    if name == "p95_latency_s":
        if cost.warm_answers == 0:
            return "there are no answers after each server's first to measure"
        return (f"the latency of {cost.warm_answers - cost.latency_measured} of {cost.warm_answers} answers was "
                "not measured (their model calls came from the completion cache before call times were kept: "
                "evaluate again with an empty T2S_CACHE_DIR)")
    if name == "cost_per_1k_answers_usd":
        return (f"model {run.model} ({run.provider}) has no price: set price_per_1k_input and "
                "price_per_1k_output for it in eval.models")
    return "there are no answers to measure"


def check_budget(run: VariantRun, budget: Budget | None) -> BudgetCheck | None:
    """Whether ``run`` fits ``budget``; None when no budget is set."""
    if budget is None or not budget.limits:
        return None
    cost = serving_cost(run)
    measured = asdict(cost)
    over, missing, fits = [], [], []
    for name, limit in budget.limits.items():
        value = measured[name]
        if value is None:
            missing.append(name)
        elif value > limit + _EPS:
            over.append(f"{_LABELS[name]} {_fmt(name, value)} exceeds {BUDGET_FIELD}.{name} = {_fmt(name, limit)}")
        else:
            fits.append(f"{_LABELS[name]} {_fmt(name, value)} ≤ {_fmt(name, limit)}")
    sample = ""
    if "p95_latency_s" in budget.limits and cost.warm_answers:
        sample = f" (p95 over {cost.warm_answers} answers"
        if cost.cold_start_s is not None:
            sample += (f"; the {cost.answers - cost.warm_answers} first answers of a server took up to "
                       f"{cost.cold_start_s:.1f} s")
        sample += ")"
    if missing:
        details = "; ".join(f"{_LABELS[m]}: {_missing_reason(m, run, cost)}" for m in missing)
        reason = f"{run.variant} cannot be checked against the serving budget ({BUDGET_FIELD}): {details}."
    elif over:
        reason = f"{run.variant} is over the serving budget: {'; '.join(over)}{sample}."
    else:
        reason = f"{run.variant} is within the serving budget ({BUDGET_FIELD}): {'; '.join(fits)}{sample}."
    names = [n for n in budget.limits if measured[n] is not None and measured[n] > budget.limits[n] + _EPS]
    return BudgetCheck(within=not over and not missing, reason=reason, cost=cost, over=names, missing=missing)
