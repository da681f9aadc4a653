"""``t2s generate``: SQL from a prompt version on the configured model, for one question or a dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.console import cli_errors, console, err_console


def generate(
    prompt: Annotated[str, typer.Option("--prompt", "-P", help="NAME@VERSION (or NAME@ALIAS) of the prompt.")],
    dataset: Annotated[Path, typer.Option("--dataset", "-d", help="Dataset (databases + training split).")] = Path(
        "datasets/bank"),
    question: Annotated[str | None, typer.Option("--question", "-q", help="One question; else every dataset item.")] = None,
    db_id: Annotated[str | None, typer.Option(help="Database for --question (default: the dataset's only one).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Predictions JSONL (id, sql, error, …) for `t2s score`.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N dataset items.")] = None,
    workers: Annotated[int, typer.Option(help="Questions in flight (the local server answers one at a time).")] = 1,
) -> None:
    """Generate SQL with a prompt version on the configured model (T2S_LLM_PROVIDER; the default, local,
    starts the bundled llama.cpp server and stops it afterwards). Completions are cached: a rerun is free."""
    from concurrent.futures import ThreadPoolExecutor

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from cli.prompts_cli import resolve_prompt
    from t2s.datasets import load_dataset, load_split, open_db
    from t2s.errors import ConfigError
    from t2s.fileio import write_jsonl_atomic
    from t2s.generator import SqlGenerator
    from t2s.local_llm import client_for
    from t2s.settings import get_settings

    with cli_errors():
        if question is None and out is None:
            raise ConfigError("give --question for one question, or --out FILE to generate for the whole dataset")
        settings = get_settings()
        spec = resolve_prompt(prompt).spec
        ds = load_dataset(dataset)
        pool = load_split(dataset, spec.few_shot.split) if spec.few_shot.k else None
        items = [(None, question, db_id)] if question else [(ex.id, ex.question, ex.db_id) for ex in ds][:limit]
        targets: dict[str | None, object] = {}
        for _, _, d in items:
            if d not in targets:
                targets[d] = open_db(ds, d, settings.postgres_dsn)
        with client_for(settings) as client:
            gen = SqlGenerator(spec, client, few_shot_pool=pool)
            with Progress(TextColumn(f"generating with {spec.ref}"), BarColumn(), MofNCompleteColumn(),
                          TimeRemainingColumn(), console=err_console, transient=True) as progress:
                task = progress.add_task("gen", total=len(items))

                def one(item):  # type: ignore[no-untyped-def]
                    qid, q, d = item
                    result = gen.generate(q, targets[d], question_id=qid)  # type: ignore[arg-type]
                    progress.advance(task)
                    return result

                with ThreadPoolExecutor(max(1, workers)) as pool_exec:
                    results = list(pool_exec.map(one, items))
        for t in targets.values():
            t.close()  # type: ignore[attr-defined]
        if question is not None:
            r = results[0]
            console.print(r.sql if r.sql else f"[red]{r.error}[/]: {r.detail}\n{r.raw_text}", markup=r.sql is None)
            console.print(f"[dim]{r.prompt} on {r.model}: {r.latency_s:.2f} s, {r.prompt_tokens}+{r.completion_tokens} "
                          f"tokens{', cached' if r.cached else ''}[/]")
        if out is not None:
            write_jsonl_atomic(out, (json.loads(json.dumps(r.as_dict(), default=str)) | {"id": r.question_id}
                                     for r in results))
            failed = sum(r.error is not None for r in results)
            cached = sum(r.cached for r in results)
            console.print(f"{len(results)} predictions → {out} ({failed} without usable SQL, {cached} from cache)")
