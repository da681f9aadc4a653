"""Aggregate per-item verdicts into the metrics every report shows."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict

from evals.execution import ERROR_CLASSES
from evals.records import EvalItem
from t2s.datasets import DIFFICULTIES


class ItemVerdict(BaseModel):
    """One scored item: a row of ``per_item.jsonl``."""

    model_config = ConfigDict(extra="forbid")

    id: str
    db_id: str
    difficulty: str
    category: str
    match: bool
    error_class: str | None
    exact_match: bool | None  # None: not computed (``t2s score`` computes it only with --exact-match)
    valid_sql: bool
    detail: str = ""
    gold_rows: int | None = None
    pred_rows: int | None = None
    gold_preview: str | None = None
    pred_preview: str | None = None


class Bucket(BaseModel):
    count: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.count if self.count else 0.0


class Metrics(BaseModel):
    count: int
    execution_accuracy: float
    exact_match: float | None  # None when any verdict did not compute it
    valid_sql_rate: float
    by_difficulty: dict[str, Bucket]
    by_category: dict[str, Bucket]
    error_rates: dict[str, float]

    def flat(self) -> dict[str, float]:
        """Flat metric names, as logged to MLflow (``execution_accuracy/hard`` …)."""
        out = {"execution_accuracy": self.execution_accuracy, "valid_sql_rate": self.valid_sql_rate}
        if self.exact_match is not None:
            out["exact_match"] = self.exact_match
        out |= {f"execution_accuracy/{k}": b.accuracy for k, b in self.by_difficulty.items()}
        out |= {f"execution_accuracy/category/{k}": b.accuracy for k, b in self.by_category.items()}
        out |= {f"error_rate/{k}": v for k, v in self.error_rates.items()}
        return out


def summarize(verdicts: Iterable[ItemVerdict]) -> Metrics:
    items = list(verdicts)
    n = len(items)
    diff: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    cat: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for v in items:
        for table, key in ((diff, v.difficulty), (cat, v.category)):
            table[key][0] += 1
            table[key][1] += int(v.match)
    errors = Counter(v.error_class for v in items if v.error_class)
    ordered_diff = [d for d in DIFFICULTIES if d in diff] + sorted(set(diff) - set(DIFFICULTIES))
    return Metrics(
        count=n,
        execution_accuracy=sum(v.match for v in items) / n if n else 0.0,
        exact_match=(None if any(v.exact_match is None for v in items)
                     else sum(bool(v.exact_match) for v in items) / n if n else 0.0),
        valid_sql_rate=sum(v.valid_sql for v in items) / n if n else 0.0,
        by_difficulty={k: Bucket(count=diff[k][0], correct=diff[k][1]) for k in ordered_diff},
        by_category={k: Bucket(count=c, correct=m) for k, (c, m) in sorted(cat.items())},
        error_rates={k: errors[k] / n for k in ERROR_CLASSES if errors[k]} if n else {},
    )


def item_metrics(items: Sequence[EvalItem]) -> dict[str, float]:
    """What a cell's items cost: latency per answer as if nothing were cached (:mod:`evals.budget`: the
    percentiles over the answers after each worker's first whose latency is known, ``latency_unmeasured``
    counting the others, ``latency_cold_start_s`` the slowest first answer), tokens, model calls, cache
    hits, and the rate of each generation failure."""
    from evals.budget import answer_latencies, p95

    latencies = answer_latencies(list(items))
    n = max(1, len(items))
    timing = {"latency_p50_s": statistics.median(latencies), "latency_p95_s": p95(latencies)} if latencies else {}
    warm = sum(not i.cold_start for i in items)
    if len(latencies) < warm:
        timing["latency_unmeasured"] = float(warm - len(latencies))
    cold = [i.answer_latency_s for i in items if i.cold_start and i.answer_latency_s is not None]
    if cold:
        timing["latency_cold_start_s"] = max(cold)
    prompt_tokens = sum(i.prompt_tokens for i in items)
    completion_tokens = sum(i.completion_tokens for i in items)
    gen_errors = Counter(i.error_class for i in items if i.pred_sql is None and i.error_class)
    return {f"error_rate/{k}": v / n for k, v in gen_errors.items()} | timing | {
        "prompt_tokens_total": float(prompt_tokens), "completion_tokens_total": float(completion_tokens),
        "tokens_per_question": (prompt_tokens + completion_tokens) / n,
        "cache_hit_rate": sum(i.cached for i in items) / n,
        "model_calls_per_question": sum(i.model_calls for i in items) / n,
        "extra_tokens_per_question": sum(i.extra_tokens for i in items) / n,
    }
