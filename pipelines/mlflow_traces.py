"""Per-question results the MLflow 3 way: one trace per evaluated question, with assessments.

MLflow 3's evaluation views (a run's question table, the question-by-question comparison of two runs)
read traces linked to a run and their assessments. The platform has already generated and scored every
question, so nothing is generated or judged again here: each :class:`~evals.records.EvalItem` becomes one
finished trace, built in memory with explicit timestamps and written with a few store calls:

- inputs: ``question``, ``question_id``, ``database``, ``difficulty``, ``category`` — the same bytes for
  every variant, because the comparison view joins two runs' rows on the request preview (so no prompt or
  model in the inputs); the question comes first so the cut-off request column still reads as one;
- outputs: ``predicted_sql``; expectation: ``gold_sql``;
- feedback (source CODE, the platform's scorer): ``execution_match`` (pass/fail; the rationale starts with
  the error class, ``wrong_result: …``), ``exact_match`` (only when it was computed), ``valid_sql`` — booleans
  only, so the comparison view's ↗/↘ arrows mean better/worse. The error class is not a feedback: MLflow
  compares string feedback alphabetically (``none`` → ``wrong_result`` showed ↘ while the answer got right);
  it is the rationale's first word and a trace tag;
- the result previews, latency, tokens and cache flag as span attributes and trace metadata; the trace's
  duration is the question's real generation latency;
- trace tags ``difficulty``, ``category``, ``database``, ``verdict`` (pass/fail), ``error_class`` (``none``
  when it passed) for filtering;
- metadata ``mlflow.sourceRun`` links every trace to the variant run.

Cost: one ``start_trace`` call per question (the trace row, its tags, metadata and assessments in one
transaction) and one ``log_spans`` call per batch of questions — no per-assessment round trips, no worker
threads (concurrent writers lose rows on a sqlite store).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from typing import Any

from evals.records import EvalItem, VariantRun

SCORER_ID = "t2s.scoring"
SPAN_BATCH = 200
FEEDBACK_NAMES = ("execution_match", "exact_match", "valid_sql")


def question_inputs(item: EvalItem) -> dict[str, str]:
    """The trace inputs of a question: identical for every variant evaluated on the same dataset."""
    return {"question": item.question, "question_id": item.id, "database": item.db_id,
            "difficulty": item.difficulty, "category": item.category}


def _ids(run_id: str, item_id: str) -> tuple[str, str]:
    """A deterministic (MLflow trace id, span id) for a question in a run: logging again is idempotent."""
    digest = hashlib.sha256(f"{run_id}\x00{item_id}".encode()).hexdigest()
    return f"tr-{digest[:32]}", digest[32:48]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _assessments(item: EvalItem, trace_id: str, run_id: str, at_ms: int) -> list[Any]:
    from mlflow.entities import AssessmentSource, Expectation, Feedback
    from mlflow.tracing.constant import AssessmentMetadataKey

    code = AssessmentSource(source_type="CODE", source_id=SCORER_ID)
    meta = {AssessmentMetadataKey.SOURCE_RUN_ID: run_id}
    common = {"source": code, "trace_id": trace_id, "metadata": meta, "create_time_ms": at_ms,
              "last_update_time_ms": at_ms}
    verdict = "result sets equal" if item.match else ": ".join(
        x for x in (item.error_class or "wrong_result", item.detail) if x)
    out = [Feedback(name="execution_match", value=item.match, rationale=verdict[:1000], **common)]
    if item.exact_match is not None:
        out.append(Feedback(name="exact_match", value=item.exact_match, **common))
    out.append(Feedback(name="valid_sql", value=item.valid_sql, **common))
    out.append(Expectation(name="gold_sql", value=item.gold_sql,
                           source=AssessmentSource(source_type="HUMAN", source_id="golden set"),
                           trace_id=trace_id, metadata=meta, create_time_ms=at_ms, last_update_time_ms=at_ms))
    return out


def build_trace(item: EvalItem, *, run_id: str, experiment_id: str, start_ms: int, variant: str) -> tuple[Any, Any]:
    """One question as a finished (TraceInfo, root Span), nothing written yet."""
    from mlflow.entities import Span, TraceInfo, TraceLocation, TraceState
    from mlflow.tracing.constant import SpanAttributeKey, TraceMetadataKey, TraceTagKey

    trace_id, span_id = _ids(run_id, item.id)
    duration_ms = max(0, round(item.latency_s * 1000))
    inputs = _json(question_inputs(item))
    outputs = _json({"predicted_sql": item.pred_sql or ""})
    details = {"t2s.gold_result": item.gold_preview, "t2s.predicted_result": item.pred_preview,
               "t2s.latency_s": f"{item.latency_s:.3f}", "t2s.tokens": str(item.prompt_tokens + item.completion_tokens),
               "t2s.cached": str(item.cached).lower(), "t2s.variant": variant}
    span = Span.from_dict({
        "trace_id": trace_id, "span_id": span_id, "parent_span_id": None, "name": item.id,
        "start_time_unix_nano": start_ms * 1_000_000, "end_time_unix_nano": (start_ms + duration_ms) * 1_000_000,
        "status": {"code": "OK" if item.pred_sql is not None else "ERROR", "message": ""},
        "events": [],
        "attributes": {SpanAttributeKey.REQUEST_ID: _json(trace_id), SpanAttributeKey.SPAN_TYPE: _json("LLM"),
                       SpanAttributeKey.INPUTS: inputs, SpanAttributeKey.OUTPUTS: outputs,
                       **{k: _json(v) for k, v in details.items()}},
    })
    info = TraceInfo(
        trace_id=trace_id, trace_location=TraceLocation.from_experiment_id(experiment_id), request_time=start_ms,
        execution_duration=duration_ms, state=TraceState.OK if item.pred_sql is not None else TraceState.ERROR,
        request_preview=inputs[:1000], response_preview=outputs[:1000],
        trace_metadata={TraceMetadataKey.SOURCE_RUN: run_id, TraceMetadataKey.INPUTS: inputs[:1000],
                        TraceMetadataKey.OUTPUTS: outputs[:1000], **{k: v[:1000] for k, v in details.items()}},
        tags={TraceTagKey.TRACE_NAME: item.id, "difficulty": item.difficulty, "category": item.category,
              "database": item.db_id, "verdict": "pass" if item.match else "fail",
              "error_class": item.error_class or "none"},
        assessments=_assessments(item, trace_id, run_id, start_ms + duration_ms))
    return info, span


def _batches(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def log_question_traces(variant: VariantRun, *, run_id: str, experiment_id: str) -> int:
    """Write one trace per question of ``variant``, linked to ``run_id``; returns how many.

    Questions keep the dataset's order (1 ms apart, before now, so the newest-first list starts with the
    first question).
    """
    from mlflow.tracing.client import TracingClient

    client = TracingClient()
    now_ms = int(time.time() * 1000)
    n = len(variant.items)
    built = [build_trace(item, run_id=run_id, experiment_id=experiment_id, start_ms=now_ms - n + i,
                         variant=variant.variant) for i, item in enumerate(reversed(variant.items))]
    for info, _ in built:
        client.start_trace(info)
    for batch in _batches([span for _, span in built], SPAN_BATCH):
        client.log_spans(experiment_id, batch)
    return n


def golden_set_name(variant: VariantRun) -> str:
    """The evaluation dataset's name: the platform's dataset name and content version (12 hex digits)."""
    return f"{variant.dataset}@{variant.dataset_version[:12]}"


def register_golden_set(variant: VariantRun, *, experiment_id: str) -> Any:
    """The golden set ``variant`` was evaluated on, as an MLflow evaluation dataset (created on first use).

    One evaluation dataset per dataset version (``t2s.datasets.Dataset.version``), so a changed golden set
    is a new dataset and runs keep pointing at the questions they used. Records have the same inputs as the
    traces, and the gold SQL as expectation; merging is an upsert, so a ``--limit`` run registers its
    prefix and a later full run adds the rest.
    """
    from mlflow.genai import datasets

    name = golden_set_name(variant)
    found = datasets.search_datasets(experiment_ids=[experiment_id], filter_string=f"name = '{name}'",
                                     max_results=1)
    if found:
        dataset = found[0]
    else:
        dataset = datasets.create_dataset(name=name, experiment_id=experiment_id, tags={
            "t2s.dataset": variant.dataset, "t2s.dataset_version": variant.dataset_version,
            "t2s.dataset_path": variant.dataset_path[:1000]})
    known = int(dataset.tags.get("t2s.records", "0")) if dataset.tags else 0
    if known < len(variant.items):
        dataset.merge_records([{"inputs": question_inputs(i), "expectations": {"gold_sql": i.gold_sql}}
                               for i in variant.items])
        datasets.set_dataset_tags(dataset.dataset_id, {"t2s.records": str(len(variant.items))})
    return dataset
