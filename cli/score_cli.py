"""``t2s score``: execution accuracy of a predictions file against a golden dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.console import cli_errors, console, err_console


def score(
    dataset: Annotated[Path, typer.Option("--dataset", "-d", help="Dataset directory (has dataset.yaml).")],
    predictions: Annotated[Path | None, typer.Option(
        "--predictions", "-p", help="One SQL per line in dataset order, or JSONL {id, sql}.")] = None,
    gold_as_predictions: Annotated[bool, typer.Option(
        "--gold-as-predictions", help="Score the gold SQL against itself (a self-check of data and scorer).")] = False,
    rules: Annotated[str, typer.Option(help="Rule set: t2s (default), spider or bird.")] = "t2s",
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds per query [T2S_QUERY_TIMEOUT_S].")] = None,
    max_rows: Annotated[int | None, typer.Option(help="Row cap per query [T2S_MAX_ROWS].")] = None,
    workers: Annotated[int, typer.Option(help="Processes; 0 picks from item count and cores.")] = 0,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write per-item verdicts (JSONL) here.")] = None,
    metrics_out: Annotated[Path | None, typer.Option(help="Write the metrics (JSON) here.")] = None,
    exact_match: Annotated[bool, typer.Option(
        help="Also compute sqlglot-normalized exact match (8-16 ms per matched item; off by default).")] = False,
    cache: Annotated[bool, typer.Option(help="Reuse gold results across runs (cache dir: T2S_CACHE_DIR).")] = True,
    allow_invalid: Annotated[bool, typer.Option(help="Score even if the dataset failed validation.")] = False,
) -> None:
    """Score predicted SQL against a dataset's gold SQL by executing both and comparing results."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from evals.compare import get_rules
    from evals.metrics import summarize
    from evals.predictions import gold_as_predictions as gold_predictions
    from evals.predictions import load_predictions
    from evals.scoring import ScoreConfig, score_dataset
    from evals.validation import require_not_failed
    from pipelines.score_tables import metrics_tables
    from t2s.datasets import load_dataset
    from t2s.errors import ConfigError
    from t2s.fileio import write_jsonl_atomic, write_text_atomic
    from t2s.settings import get_settings

    with cli_errors():
        if (predictions is None) == (not gold_as_predictions):
            raise ConfigError("give exactly one of --predictions FILE or --gold-as-predictions")
        settings = get_settings()
        get_rules(rules)
        ds = load_dataset(dataset)
        if not allow_invalid:
            require_not_failed(ds, settings.cache_dir)
        preds = gold_predictions(ds) if predictions is None else load_predictions(predictions, ds)
        config = ScoreConfig(rules=rules, timeout_s=timeout or settings.query_timeout_s,
                             max_rows=max_rows or settings.max_rows, exact_match=exact_match,
                             cache_path=settings.cache_dir / "gold_results.sqlite" if cache else None,
                             postgres_dsn=settings.postgres_dsn)
        with Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=err_console, transient=True) as progress:
            task = progress.add_task("score", total=len(ds))
            verdicts = score_dataset(ds, preds, config, workers=workers or settings.workers,
                                     on_progress=lambda n: progress.advance(task, n))
        metrics = summarize(verdicts)
        console.print(f"[bold]{ds.name}[/] ({len(ds)} items, version {ds.version()[:12]}) · rules "
                      f"[cyan]{rules}[/] · predictions {predictions or 'gold (self-check)'}")
        for table in metrics_tables(metrics):
            console.print(table)
        if out:
            write_jsonl_atomic(out, (v.model_dump(exclude_none=False) for v in verdicts))
            console.print(f"per-item verdicts → {out}")
        if metrics_out:
            write_text_atomic(metrics_out, json.dumps({"items": metrics.count, **metrics.flat()}, indent=2))
            console.print(f"metrics → {metrics_out}")
