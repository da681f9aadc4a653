"""``t2s eval``: run the prompt × model × dataset matrix and log it to MLflow."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Annotated

import typer

from cli.console import cli_errors, console, err_console


def _sweep_id(requested: str | None, config_blob: str) -> str:
    if requested == "params":  # deterministic: all stages of one `dvc repro` share the sweep
        return "p-" + hashlib.sha1(config_blob.encode()).hexdigest()[:10]
    return requested or time.strftime("%Y%m%d-%H%M%S")


def eval_cmd(
    params: Annotated[Path | None, typer.Option(help="params.yaml with an 'eval' section (default: ./params.yaml if present).")] = None,
    dataset: Annotated[list[Path] | None, typer.Option("--dataset", "-d", help="Dataset(s); overrides params.")] = None,
    prompt: Annotated[list[str] | None, typer.Option("--prompt", "-P", help="NAME@VERSION (repeatable); overrides params.")] = None,
    only_prompt: Annotated[list[str] | None, typer.Option(help="Run only these prompts of the params matrix (same sweep).")] = None,
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="NAME or PROVIDER:NAME (repeatable).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only N questions of each dataset (which ones: params' limit_mode).")] = None,
    workers: Annotated[int | None, typer.Option(help="Questions in flight per cell.")] = None,
    sweep_id: Annotated[str | None, typer.Option(help="Sweep id; 'params' derives it from the matrix (for DVC).")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Where variant folders are written (default reports/eval).")] = None,
    champion: Annotated[bool, typer.Option(help="Also evaluate the current champion if it is not in the matrix.")] = True,
) -> None:
    """Evaluate prompt versions × models × datasets: generate, score, and log one MLflow run per variant
    under a parent sweep run. Completions are cached, so an interrupted sweep resumes where it stopped."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from evals.validation import ValidationReport, report_path, validate_dataset
    from pipelines.eval_config import build_config, check_config, params_or_default
    from pipelines.evaluate import evaluate_cell, slug, variant_name
    from pipelines.mlflow_runs import (
        evaluation_runs_url,
        experiment_id,
        log_failed_variant,
        log_variant,
        run_label,
        sweep_runs,
        ui_base,
    )
    from pipelines.promotion import current_champion
    from t2s.datasets import load_dataset
    from t2s.errors import ConfigError, DatasetError, LLMError, Text2SQLError
    from t2s.local_llm import client_for
    from t2s.prompts import PromptLibrary, parse_ref, push
    from t2s.settings import get_settings
    from t2s.tracking import configure_mlflow

    with cli_errors():
        settings = get_settings()
        params = params_or_default(params)
        config = build_config(params, {"datasets": dataset, "prompts": prompt, "models": model, "limit": limit,
                                       "workers": workers, "out_dir": out_dir})
        check_config(config, settings.prompts_dir)
        if only_prompt:
            unknown = [p for p in only_prompt if p not in config.prompts]
            if unknown:
                raise ConfigError(f"--only-prompt {unknown} not in the matrix {config.prompts}")
        datasets = [load_dataset(p) for p in config.datasets]
        blob = json.dumps({"config": config.model_dump(mode="json"), "datasets": [d.version() for d in datasets]},
                          sort_keys=True)
        sweep = _sweep_id(sweep_id, blob)

        # Refuse datasets that failed validation; validate versions never checked before.
        for ds in datasets:
            path = report_path(settings.cache_dir, ds.name, ds.version())
            if path.is_file():
                report = ValidationReport.model_validate_json(path.read_text(encoding="utf-8"))
            else:
                console.print(f"validating {ds.name} (version {ds.version()[:12]}) before evaluating it…")
                report = validate_dataset(ds.root, timeout_s=config.timeout_s, cache_dir=settings.cache_dir,
                                          postgres_dsn=settings.postgres_dsn)
            if not report.ok:
                raise DatasetError(f"dataset {ds.name!r} failed validation ({report.errors} errors); run "
                                   f"`t2s datasets validate {ds.root}` to see them", file=ds.root)

        uri = configure_mlflow(settings)
        library = PromptLibrary(settings.prompts_dir)
        names = sorted({parse_ref(p)[0] for p in config.prompts})
        for name, version, action in push(library, names):
            if action == "registered":
                console.print(f"[yellow]prompt {name}@{version} was not in the registry: registered it now[/]")

        cells = [(p, m) for m in config.models for p in (only_prompt or config.prompts)]
        champ = current_champion() if champion else None
        if champ is not None and (champ.prompt, champ.model) not in cells and not only_prompt:
            console.print(f"adding the current champion {champ.prompt}/{champ.model.label} to the sweep for a paired comparison")
            cells.append((champ.prompt, champ.model))

        console.print(f"sweep [bold]{sweep}[/] · {len(cells)} variants × {len(datasets)} dataset(s) · tracking {uri}")
        failures = 0
        results = []
        reviewed: dict[str, str] = {}
        # Each dataset's sweep run is RUNNING while this process adds to it, then FINISHED, FAILED or KILLED.
        with sweep_runs() as parents:
            for ds in datasets:
                exp = reviewed[ds.name] = experiment_id(ds.name)
                parent = parents.open(exp, sweep, {"matrix": blob[:5000], "rules": config.rules})
                n_items = min(len(ds), config.limit_for(ds.name) or len(ds))
                for m in dict.fromkeys(mm for _, mm in cells):
                    model_cells = [p for p, mm in cells if mm == m]
                    cell_settings = settings.model_copy(update={"llm_provider": m.provider, "llm_model": m.name,
                                                                **({"llm_base_url": m.base_url} if m.base_url else {})})
                    try:
                        with client_for(cell_settings) as client, Progress(
                                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                TimeRemainingColumn(), console=err_console) as progress:
                            for ref in model_cells:
                                name, version = parse_ref(ref)
                                pf = library.get(name, int(version or 0))
                                vname = variant_name(ref, m)
                                task = progress.add_task(run_label(vname, ds.name), total=n_items)
                                folder = config.out_dir / ds.name / ref / slug(m.label)
                                try:
                                    variant = evaluate_cell(ds, pf, m, client, config, postgres_dsn=settings.postgres_dsn,
                                                            cache_path=settings.cache_dir / "gold_results.sqlite",
                                                            on_done=lambda _g, t=task: progress.advance(t))
                                    variant.sweep_id = sweep
                                    log_variant(variant, exp_id=exp, parent_run_id=parent, dataset_root=ds.root,
                                                folder=folder, params=_run_params(variant, pf, m, config))
                                    results.append(variant)
                                except (LLMError, Text2SQLError) as exc:
                                    failures += 1
                                    progress.update(task, description=f"[red]{run_label(vname, ds.name)}: failed[/]")
                                    log_failed_variant(vname, str(exc), exp_id=exp, parent_run_id=parent,
                                                       tags={"t2s.sweep_id": sweep, "t2s.variant": vname})
                                    err_console.print(f"[red]variant {vname} could not run:[/] {exc}")
                    except LLMError as exc:  # the model's server could not even start
                        failures += len(model_cells)
                        err_console.print(f"[red]model {m.label} could not run:[/] {exc}")
                        for ref in model_cells:
                            log_failed_variant(variant_name(ref, m), str(exc), exp_id=exp, parent_run_id=parent,
                                               tags={"t2s.sweep_id": sweep, "t2s.variant": variant_name(ref, m)})
            parents.failed = failures > 0
        _print_summary(results)
        console.print(f"MLflow: `mlflow ui --backend-store-uri {uri}` → experiment t2s/<dataset> → sweep {sweep}; "
                      f"next: `t2s compare --sweep {sweep}`")
        for name, exp in reviewed.items():  # the UI opens on an overview: link the per-question views
            console.print(f"reviewers ({name}): {evaluation_runs_url(ui_base(uri), exp)}", soft_wrap=True)
        if failures:
            raise typer.Exit(code=1)


def _run_params(variant, pf, model, config) -> dict:  # type: ignore[no-untyped-def]
    spec = pf.spec
    return {
        "prompt_name": spec.name, "prompt_version": spec.version, "prompt_hash": spec.content_hash()[:16],
        "model": model.name, "provider": model.provider, "temperature": spec.model.temperature,
        "max_tokens": spec.model.max_tokens, "few_shot_k": spec.few_shot.k,
        "few_shot_selector": spec.few_shot.selector, "strategy": spec.strategy.summary(),
        "strategy_kind": spec.strategy.kind, "strategy_samples": spec.strategy.samples,
        "strategy_temperature": spec.strategy.temperature, "strategy_repair_rounds": spec.strategy.repair_rounds,
        "schema_sample_values": spec.schema_context.sample_values, "rules": config.rules,
        "timeout_s": config.timeout_s, "dataset": variant.dataset, "dataset_version": variant.dataset_version,
        "items": len(variant.items),
    }


def _print_summary(results) -> None:  # type: ignore[no-untyped-def]
    """One line per evaluated variant, within 100 columns (every column: `t2s compare`'s reports)."""
    from rich import box
    from rich.table import Table

    from evals.budget import serving_cost
    from pipelines.comparison_report import short_names

    if not results:
        return
    short = short_names([{"variant": v.variant, "prompt": v.prompt, "model": v.model} for v in results])
    table = Table(title="Evaluated variants", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  padding=(0, 1, 0, 0), show_edge=False)
    for col in ("dataset", "variant", "acc", "easy", "medium", "hard", "extra", "valid", "p95 s", "calls", "cached"):
        table.add_column(col, justify="left" if col in ("dataset", "variant") else "right")
    for v in sorted(results, key=lambda r: (r.dataset, -r.metrics["execution_accuracy"])):
        m = v.metrics
        cost = serving_cost(v)
        cells = [f"{100 * m[f'execution_accuracy/{d}']:.1f}%" if f"execution_accuracy/{d}" in m else "—"
                 for d in ("easy", "medium", "hard", "extra")]
        table.add_row(v.dataset, short[v.variant], f"{100 * m['execution_accuracy']:.1f}%", *cells,
                      f"{100 * m['valid_sql_rate']:.0f}%",
                      "—" if cost.p95_latency_s is None else f"{cost.p95_latency_s:.2f}",
                      f"{cost.model_calls_per_answer or 0:.2f}", f"{100 * m.get('cache_hit_rate', 0):.0f}%")
    console.print(table)
