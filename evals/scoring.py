"""Score a whole dataset: items grouped by database, executed in parallel processes, gold results cached."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals.compare import MatchRules, get_rules
from evals.execution import execution_match
from evals.gold_cache import GoldCache
from evals.metrics import ItemVerdict
from t2s.datasets import Dataset, GoldExample, db_locations, open_location
from t2s.execution import QueryResult, Target

SERIAL_BELOW = 300  # below this many items, process start-up costs more than it saves
CHUNK = 64


@dataclass(frozen=True)
class ScoreConfig:
    rules: str = "t2s"
    timeout_s: float = 10.0
    max_rows: int = 100_000
    exact_match: bool = True
    cache_path: Path | None = None
    postgres_dsn: str | None = None
    previews: int = 0  # rows of each result kept as text in the verdict (for reports); 0 keeps none


@dataclass(frozen=True)
class _Job:
    root: Path
    engine: str
    databases: dict[str, tuple[str, ...]]  # db_id -> absolute locations (primary first)
    items: list[tuple[GoldExample, str | None]]


class _Scorer:
    """Per-process state: open targets and the gold cache, reused across items."""

    def __init__(self, config: ScoreConfig) -> None:
        self.config = config
        self.rules: MatchRules = get_rules(config.rules)
        self.cache = GoldCache(config.cache_path)
        self.targets: dict[tuple[str, ...], list[Target]] = {}
        self._gold_canonical: dict[tuple[str, str, str], str | None] = {}

    def _targets(self, engine: str, locations: tuple[str, ...]) -> list[Target]:
        if locations not in self.targets:
            self.targets[locations] = [open_location(engine, loc, self.config.postgres_dsn) for loc in locations]
        return self.targets[locations]

    def score(self, engine: str, locations: tuple[str, ...], ex: GoldExample, pred: str | None) -> ItemVerdict:
        targets = self._targets(engine, locations)
        out = execution_match(ex.gold_sql, pred, targets, rules=self.rules, gold_dialect=ex.dialect,
                              timeout_s=self.config.timeout_s, max_rows=self.config.max_rows,
                              gold_cache=self.cache)
        # Queries with one canonical form return the same rows, so only execution matches can be exact.
        exact = (bool(out.match and out.pred_tree is not None and self._exact(ex, out.pred_tree, targets[0]))
                 if self.config.exact_match else None)
        return ItemVerdict(id=ex.id, db_id=ex.db_id, difficulty=ex.difficulty, category=ex.category,
                           match=out.match, error_class=out.error_class, exact_match=exact,
                           valid_sql=out.valid_sql, detail=out.detail,
                           gold_rows=len(out.gold.rows) if out.gold else None,
                           pred_rows=len(out.pred.rows) if out.pred else None,
                           gold_preview=preview(out.gold, self.config.previews) if out.gold and self.config.previews else None,
                           pred_preview=preview(out.pred, self.config.previews) if out.pred and self.config.previews else None)

    def _exact(self, ex: GoldExample, pred_tree: Any, target: Target) -> bool:
        from evals.normalize import canonical_sql, target_schema
        from t2s.guard import guard_select

        schema = target_schema(target)
        key = (target.fingerprint(), ex.dialect, ex.gold_sql)
        if key not in self._gold_canonical:
            self._gold_canonical[key] = canonical_sql(guard_select(ex.gold_sql, ex.dialect), schema, target.dialect)
        gold = self._gold_canonical[key]
        return gold is not None and gold == canonical_sql(pred_tree, schema, target.dialect)

    def run(self, job: _Job) -> list[ItemVerdict]:
        return [self.score(job.engine, job.databases[ex.db_id], ex, pred) for ex, pred in job.items]

    def close(self) -> None:
        for targets in self.targets.values():
            for t in targets:
                t.close()
        self.cache.close()


class StreamScorer:
    """Scores items one at a time as they arrive, with the same verdicts as :func:`score_dataset`.

    For callers that produce predictions over time (an evaluation cell scores each question as soon as its
    generation returns, so scoring overlaps the model calls instead of following them). Not thread-safe:
    the open database handles belong to the thread that uses the scorer, so call :meth:`score` and
    :meth:`close` from one thread (e.g. a single-worker executor).
    """

    def __init__(self, dataset: Dataset, config: ScoreConfig) -> None:
        get_rules(config.rules)  # fail fast on an unknown rule set
        self._dataset = dataset
        self._engine = dataset.manifest.engine
        self._scorer = _Scorer(config)
        self._locations: dict[str, tuple[str, ...]] = {}

    def score(self, ex: GoldExample, pred: str | None) -> ItemVerdict:
        if ex.db_id not in self._locations:
            self._locations[ex.db_id] = db_locations(self._dataset, ex.db_id)
        return self._scorer.score(self._engine, self._locations[ex.db_id], ex, pred)

    def close(self) -> None:
        self._scorer.close()


_WORKER: _Scorer | None = None


def _init_worker(config: ScoreConfig) -> None:
    global _WORKER
    _WORKER = _Scorer(config)


def _run_job(job: _Job) -> list[ItemVerdict]:
    assert _WORKER is not None
    return _WORKER.run(job)


def _jobs(dataset: Dataset, predictions: dict[str, str | None]) -> list[_Job]:
    by_db: dict[str, list[tuple[GoldExample, str | None]]] = {}
    for ex in dataset.examples:
        by_db.setdefault(ex.db_id, []).append((ex, predictions.get(ex.id)))
    engine = dataset.manifest.engine
    jobs = []
    for db_id, items in by_db.items():
        locations = db_locations(dataset, db_id)
        for i in range(0, len(items), CHUNK):
            jobs.append(_Job(dataset.root, engine, {db_id: locations}, items[i:i + CHUNK]))
    return jobs


def preview(result: QueryResult, rows: int, width: int = 40) -> str:
    """The header and first ``rows`` rows of a result as text, cells cut to ``width`` characters."""
    def cell(v: Any) -> str:
        text = "NULL" if v is None else str(v)
        return text if len(text) <= width else text[: width - 1] + "…"

    lines = [" | ".join(result.columns)]
    lines += [" | ".join(cell(v) for v in row) for row in result.rows[:rows]]
    if len(result.rows) > rows:
        lines.append(f"… {len(result.rows) - rows} more rows")
    return "\n".join(lines)


def choose_workers(n_items: int, requested: int = 0) -> int:
    if requested > 0:
        return requested
    if n_items < SERIAL_BELOW:
        return 1
    return max(1, min(os.cpu_count() or 1, 4))


def score_dataset(dataset: Dataset, predictions: dict[str, str | None], config: ScoreConfig, *,
                  workers: int = 0, on_progress: Callable[[int], None] | None = None) -> list[ItemVerdict]:
    """Score every item; verdicts come back in dataset order."""
    get_rules(config.rules)  # fail fast on an unknown rule set
    jobs = _jobs(dataset, predictions)
    n_workers = choose_workers(len(dataset), workers)
    results: dict[str, ItemVerdict] = {}
    if n_workers == 1:
        scorer = _Scorer(config)
        try:
            for job in jobs:
                for ex, pred in job.items:
                    results[ex.id] = scorer.score(job.engine, job.databases[ex.db_id], ex, pred)
                    if on_progress:
                        on_progress(1)
        finally:
            scorer.close()
    else:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["evals.scoring"])
        with ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(config,)) as pool:
            futures = [pool.submit(_run_job, job) for job in jobs]
            for fut in as_completed(futures):
                batch = fut.result()
                for v in batch:
                    results[v.id] = v
                if on_progress:
                    on_progress(len(batch))
    return [results[ex.id] for ex in dataset.examples]
