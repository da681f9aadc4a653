"""Records of an evaluation: one :class:`EvalItem` per question per variant, and the :class:`VariantRun`
that holds them. These are the rows of ``per_item.jsonl`` (an MLflow artifact and a DVC output) and the
input of comparison, the promotion gate and the reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

RUN_FILE = "run.json"  # a variant folder's run-specific part (see VariantRun.write)
RUN_ITEM_FIELDS = ("latency_s", "answer_latency_s", "cold_start", "cached")
RUN_METRICS = frozenset({"latency_p50_s", "latency_p95_s", "latency_unmeasured", "latency_cold_start_s",
                         "cache_hit_rate"})


class EvalItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    question: str
    db_id: str
    difficulty: str
    category: str
    gold_sql: str
    pred_sql: str | None
    match: bool
    error_class: str | None  # scorer error class, or the generation failure (no_sql, llm_error, …)
    exact_match: bool | None = None  # None: not computed (EvalConfig.exact_match off)
    valid_sql: bool
    detail: str = ""
    gold_preview: str = ""  # a few result rows, as text, for reviewers
    pred_preview: str = ""
    latency_s: float = 0.0  # wall time of the generation (a cached model call counts its lookup)
    # Seconds the answer takes without the completion cache: latency_s with every cached model call counted at
    # the time it took when it was made (None: a cached call's time is unknown). The serving budget's latency.
    answer_latency_s: float | None = None
    # The first answer of its worker in the cell: its model server had not seen the prompt's shared prefix yet
    # (a served database's schema stays in the server's cache); kept out of the budget's percentiles.
    cold_start: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    # What the generation strategy did (t2s.strategy); defaults describe a single model call.
    strategy: str = "single"
    model_calls: int = 1
    extra_tokens: int = 0  # tokens beyond the first model call (samples and repairs)
    candidates: int = 1  # queries considered (samples × repair rounds)
    repair_rounds: int = 0
    votes: str = ""  # "3/5": the chosen result's group over the candidates that executed
    strategy_trace: dict[str, Any] | None = None  # t2s.strategy.StrategyTrace.as_dict()
    dataset: str = ""  # set on the items of a run pooled over several datasets (evals.pooling)


class VariantRun(BaseModel):
    """One (prompt version, model) evaluated on one dataset version."""

    model_config = ConfigDict(extra="forbid")

    variant: str  # "<prompt name>@<version>/<model>"
    prompt: str  # name@version
    prompt_name: str
    prompt_version: int
    model: str
    provider: str
    dataset: str
    dataset_version: str
    dataset_path: str = ""  # the dataset directory the variant was evaluated on (bundled when promoted)
    rules: str
    run_id: str | None = None
    sweep_id: str | None = None
    prompt_text: str = ""  # the prompt file, for prompt diffs in reports
    metrics: dict[str, float]
    items: list[EvalItem]

    def write(self, folder: Path) -> None:
        """Three files, written atomically. ``variant.json`` (everything but the items) and ``per_item.jsonl``
        hold what was evaluated and its results: the same whenever the same inputs are evaluated again, so DVC
        tracks them. ``run.json`` holds what belongs to this run only — the MLflow run id, per-answer times,
        cache hits, the strategies' execution counts — and is left out of DVC's hashes (``.dvcignore``): a
        fresh ``make demo`` reproduces ``dvc.lock``."""
        from t2s.fileio import write_jsonl_atomic, write_text_atomic

        tracked, per_run = [], {}
        for item in self.items:
            row = item.model_dump()
            mine = {k: row.pop(k) for k in RUN_ITEM_FIELDS}
            if row["strategy_trace"] is not None:
                row["strategy_trace"] = dict(row["strategy_trace"])
                mine["executions"] = row["strategy_trace"].pop("executions", None)
            tracked.append(row)
            per_run[item.id] = mine
        metrics = {k: v for k, v in self.metrics.items() if k not in RUN_METRICS}
        write_jsonl_atomic(folder / "per_item.jsonl", tracked)
        write_text_atomic(folder / "variant.json", self.model_copy(update={"metrics": metrics}).model_dump_json(
            exclude={"items", "run_id"}, indent=2))
        write_text_atomic(folder / RUN_FILE, json.dumps({
            "run_id": self.run_id, "metrics": {k: v for k, v in self.metrics.items() if k in RUN_METRICS},
            "items": per_run}, indent=1))

    @classmethod
    def read(cls, folder: Path) -> VariantRun:
        meta = json.loads((folder / "variant.json").read_text(encoding="utf-8"))
        items = [json.loads(line) for line in (folder / "per_item.jsonl").read_text(encoding="utf-8").splitlines()
                 if line.strip()]
        run_file = folder / RUN_FILE
        if run_file.is_file():  # absent from folders written before the split: those hold everything
            run = json.loads(run_file.read_text(encoding="utf-8"))
            meta = {**meta, "run_id": run.get("run_id"), "metrics": {**meta.get("metrics", {}), **run["metrics"]}}
            for row in items:
                mine = dict(run["items"].get(row["id"], {}))
                executions = mine.pop("executions", None)
                if executions is not None and row.get("strategy_trace") is not None:
                    row["strategy_trace"]["executions"] = executions
                row.update(mine)
        return cls.model_validate({**meta, "items": items})
