"""Evaluation runs in MLflow, laid out for reviewers.

- one experiment per dataset (``t2s/<dataset>``);
- one parent run per sweep (tag ``t2s.kind=sweep``), found again by its sweep id so several processes
  (DVC's per-cell stages) share it; RUNNING while a process adds to it, then FINISHED, FAILED (a cell could
  not run, or an error) or KILLED (Ctrl-C, SIGTERM): :func:`sweep_runs`;
- one nested run per variant (prompt version × model): params, metrics overall / per difficulty / per
  category / per error class, latency and tokens, the dataset as a run input, the per-example table
  (``eval_items.json``: question, gold and predicted SQL, verdict, error class, result previews), the prompt
  file, and the variant's files. A run that fails while logging is marked FAILED, never left half-written
  as FINISHED;
- per question, one trace with its verdicts as assessments (:mod:`pipelines.mlflow_traces`), so the
  run's evaluation view lists every question and two variant runs compare question by question; the golden
  set as an MLflow evaluation dataset per dataset version, linked to the runs that used it.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals.records import VariantRun

SWEEP_KIND = "sweep"
VARIANT_KIND = "variant"
# MLflow's experiment kind: GenAI development, so the UI shows the evaluation navigation (Evaluation runs,
# Traces, Datasets, Prompts) rather than asking which kind the experiment is.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "genai_development"


def _mlflow() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlflow
    return mlflow


def experiment_name(dataset: str) -> str:
    return f"t2s/{dataset}"


def experiment_id(dataset: str) -> str:
    mlflow = _mlflow()
    exp = mlflow.get_experiment_by_name(experiment_name(dataset))
    if exp is not None:
        if EXPERIMENT_KIND_TAG not in exp.tags:  # created before the kind was set
            mlflow.MlflowClient().set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    try:
        exp_id = mlflow.create_experiment(experiment_name(dataset), tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    except mlflow.exceptions.MlflowException:
        # Two engineers' first sweeps on a new dataset, at the same moment on a shared server: the other
        # one created it between our lookup and our create. Use theirs.
        exp = mlflow.get_experiment_by_name(experiment_name(dataset))
        if exp is None:
            raise
        return exp.experiment_id
    # The experiment's description, shown above every tab: where a reviewer goes from the overview.
    mlflow.MlflowClient().set_experiment_tag(exp_id, "mlflow.note.content", (
        f"Text2SQL Ops evaluations on dataset {dataset!r}: one parent run per sweep, one nested run per prompt "
        f"version × model. Reviewers: open [Evaluation runs]({evaluation_runs_url('', exp_id)}), click a variant "
        "run to see every question with its verdict, or tick two variant runs → Actions → Compare to see which "
        "questions flipped."))
    return exp_id


def ui_base(tracking_uri: str) -> str:
    """Where the MLflow UI of ``tracking_uri`` is: the tracking server itself, or what ``mlflow ui`` serves
    on a local store (http://127.0.0.1:5000/)."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/") + "/"
    return "http://127.0.0.1:5000/"


def _base(tracking_ui: str) -> str:
    return f"{tracking_ui.rstrip('/')}/" if tracking_ui else ""


def evaluation_runs_url(tracking_ui: str, exp_id: str, run_id: str | None = None,
                        compare_to: str | None = None) -> str:
    """The page a reviewer starts from: the experiment's evaluation runs (MLflow's UI has no per-experiment
    default tab, so commands print this link), ``run_id`` selected and, with ``compare_to``, compared question
    by question; ``tracking_ui`` like ``http://127.0.0.1:5000/``, or empty for a link inside the UI."""
    url = f"{_base(tracking_ui)}#/experiments/{exp_id}/evaluation-runs"
    if run_id:
        url += f"?selectedRunUuid={run_id}" + (f"&compareToRunUuid={compare_to}" if compare_to else "")
    return url


def run_url(tracking_ui: str, exp_id: str, run_id: str) -> str:
    """A run's own page (for a run without traces, e.g. a promotion)."""
    return f"{_base(tracking_ui)}#/experiments/{exp_id}/runs/{run_id}"


def model_version_url(tracking_ui: str, name: str, version: int | str) -> str:
    return f"{_base(tracking_ui)}#/models/{name}/versions/{version}"


def run_label(variant: str, dataset: str | None = None) -> str:
    """A short name: ``v6`` for ``sql-analyst@6`` on the embedded model; another prompt keeps its name and
    another model its name (cut at 20 characters): ``chat v2 · gpt-4o-mini``; `` · <dataset>`` appended when
    given. MLflow's evaluation runs list gives a nested run's name about 20 pixels — ``v6`` whole, ``v6 ·
    bank`` as ``v…`` — so variant runs are named without the dataset (their experiment is the dataset's).
    The full variant is the ``t2s.variant`` tag, the provider ``t2s.provider``."""
    from pipelines.eval_config import DEFAULT_MODEL, DEFAULT_PROMPT

    prompt, _, model = variant.partition("/")
    name, _, version = prompt.partition("@")
    parts = [f"v{version}" if name == DEFAULT_PROMPT else f"{name} v{version}"] if version else [prompt]
    if model and model != DEFAULT_MODEL:
        model = model.partition(":")[2] or model  # the provider is in the tags
        parts.append(model if len(model) <= 20 else model[:19] + "…")
    return " · ".join([*parts, *([dataset] if dataset else [])])


def readable_metric(value: float) -> float:
    """What a reviewer reads in MLflow's tables: 4 significant digits below 1 (accuracy 0.2778, not
    0.2777777777777778), 3 decimals above (12.346 s, 4.833 calls). The exact values are in the variant's files."""
    value = float(value)
    return float(f"{value:.4g}") if abs(value) < 1 else round(value, 3)


def readable_metrics(metrics: dict[str, float]) -> dict[str, float]:
    return {k: readable_metric(v) for k, v in metrics.items()}


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def sweep_run_id(exp_id: str, sweep_id: str, params: dict[str, Any]) -> str:
    """The sweep's parent run, created on first use."""
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    found = client.search_runs([exp_id], filter_string=f"tags.`t2s.kind` = '{SWEEP_KIND}' and "
                                                       f"tags.`t2s.sweep_id` = '{sweep_id}'", max_results=1)
    if found:
        return found[0].info.run_id
    run = client.create_run(exp_id, run_name=f"sweep {sweep_id}", tags={
        "t2s.kind": SWEEP_KIND, "t2s.sweep_id": sweep_id, "t2s.git_commit": git_commit(),
        "mlflow.note.content": "Sweep: compare its nested runs (select them → Compare) or open the "
                               "leaderboard and HTML report in this run's artifacts."})
    for key, value in params.items():
        client.log_param(run.info.run_id, key, str(value)[:6000])
    return run.info.run_id


@dataclass
class SweepRuns:
    """The sweep parent runs one process adds to, and whether one of its cells failed."""

    ids: list[str] = field(default_factory=list)
    failed: bool = False

    def open(self, exp_id: str, sweep_id: str, params: dict[str, Any]) -> str:
        """The sweep's parent run in ``exp_id`` (created on first use), RUNNING again while this process works."""
        run_id = sweep_run_id(exp_id, sweep_id, params)
        _mlflow().MlflowClient().update_run(run_id, status="RUNNING")
        self.ids.append(run_id)
        return run_id


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sweep_runs() -> Iterator[SweepRuns]:
    """End the sweep runs opened inside as FINISHED, FAILED (a cell failed, or an error escaped) or KILLED
    (Ctrl-C; SIGTERM, as from ``kill`` or a CI timeout, is turned into the same interruption while inside)."""
    runs = SweepRuns()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _interrupt)
    status = "FINISHED"
    try:
        yield runs
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if status == "FINISHED" and runs.failed:
            status = "FAILED"
        client = _mlflow().MlflowClient()
        for run_id in dict.fromkeys(runs.ids):
            client.set_terminated(run_id, status=status)


def _items_frame(variant: VariantRun) -> Any:
    import pandas as pd

    return pd.DataFrame([{
        "id": i.id, "difficulty": i.difficulty, "category": i.category, "question": i.question,
        "gold_sql": i.gold_sql, "predicted_sql": i.pred_sql or "", "match": i.match,
        "error_class": i.error_class or "", "exact_match": i.exact_match, "gold_result": i.gold_preview,
        "predicted_result": i.pred_preview, "latency_s": round(i.latency_s, 3),
        "tokens": i.prompt_tokens + i.completion_tokens, "strategy": i.strategy, "model_calls": i.model_calls,
        "extra_tokens": i.extra_tokens, "candidates": i.candidates, "repair_rounds": i.repair_rounds,
        "votes": i.votes} for i in variant.items])


def _dataset_input(variant: VariantRun, dataset_root: Path) -> Any:
    import pandas as pd

    mlflow = _mlflow()
    frame = pd.DataFrame([{"id": i.id, "question": i.question, "gold_sql": i.gold_sql, "db_id": i.db_id,
                           "difficulty": i.difficulty, "category": i.category} for i in variant.items])
    return mlflow.data.from_pandas(frame, source=str(dataset_root.resolve()), name=variant.dataset,
                                   targets="gold_sql", digest=variant.dataset_version[:12])


def log_variant(variant: VariantRun, *, exp_id: str, parent_run_id: str, dataset_root: Path, folder: Path,
                params: dict[str, Any]) -> str:
    """Log one variant as a nested run; returns its run id (also set on ``variant.run_id``)."""
    mlflow = _mlflow()
    tags = {"t2s.kind": VARIANT_KIND, "t2s.sweep_id": variant.sweep_id or "", "t2s.variant": variant.variant,
            "t2s.prompt": variant.prompt, "t2s.prompt_uri": f"prompts:/{variant.prompt_name}/{variant.prompt_version}",
            "t2s.model": variant.model, "t2s.provider": variant.provider, "t2s.dataset": variant.dataset,
            "t2s.dataset_version": variant.dataset_version, "t2s.git_commit": git_commit()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run(experiment_id=exp_id, run_name=run_label(variant.variant), parent_run_id=parent_run_id,
                              nested=True, tags=tags) as run:
            variant.run_id = run.info.run_id
            mlflow.log_params({**{k: str(v)[:6000] for k, v in params.items()}, "git_commit": tags["t2s.git_commit"]})
            mlflow.log_metrics(readable_metrics(variant.metrics))
            mlflow.log_input(_dataset_input(variant, dataset_root), context="evaluation")
            from pipelines.mlflow_traces import log_question_traces, register_golden_set

            mlflow.log_input(register_golden_set(variant, experiment_id=exp_id), context="golden_set")
            log_question_traces(variant, run_id=run.info.run_id, experiment_id=exp_id)
            mlflow.log_table(_items_frame(variant), artifact_file="eval_items.json")
            mlflow.log_text(variant.prompt_text, f"prompt/{variant.prompt_name}-v{variant.prompt_version}.yaml")
            variant.write(folder)
            mlflow.log_artifacts(str(folder), artifact_path="variant")
            from pipelines.comparison_report import difficulty_chart

            with tempfile.TemporaryDirectory() as tmp:
                mlflow.log_artifact(str(difficulty_chart([variant], Path(tmp) / "accuracy_by_difficulty.png")),
                                    artifact_path="charts")
            try:
                mlflow.MlflowClient().link_prompt_version_to_run(
                    run.info.run_id, f"prompts:/{variant.prompt_name}/{variant.prompt_version}")
            except Exception as exc:  # linking is a UI convenience; the prompt URI is also a tag
                mlflow.set_tag("t2s.prompt_link_error", str(exc)[:500])
    return variant.run_id  # type: ignore[return-value]


def log_failed_variant(name: str, error: str, *, exp_id: str, parent_run_id: str, tags: dict[str, str]) -> str:
    """A cell that could not run at all: a FAILED nested run that says why."""
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    run = client.create_run(exp_id, run_name=run_label(name), tags={
        **tags, "t2s.kind": VARIANT_KIND, "t2s.error": error[:5000], "mlflow.parentRunId": parent_run_id})
    client.set_terminated(run.info.run_id, status="FAILED")
    return run.info.run_id


def download_variant(run_id: str) -> VariantRun:
    """A variant's records from its run's artifacts."""
    mlflow = _mlflow()
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="variant", dst_path=tmp)
        variant = VariantRun.read(Path(local))
    variant.run_id = run_id
    return variant
