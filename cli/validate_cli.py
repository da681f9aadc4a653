"""``t2s datasets validate``: check a golden set before anything is evaluated on it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.console import cli_errors, console, err_console


def validate(
    path: Annotated[Path, typer.Argument(help="Dataset directory (has dataset.yaml and questions.jsonl).")],
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds per gold query.")] = None,
    show_warnings: Annotated[bool, typer.Option("--warnings/--no-warnings", help="List warnings too.")] = True,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")] = None,
) -> None:
    """Validate a dataset: required fields, unique ids, allowed values (great-expectations), and that every
    gold query parses, executes within the timeout on every database, only references existing tables and
    columns, returns rows and is deterministic. Exits 1 when any error is found."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    from evals.validation import validate_dataset
    from t2s.fileio import write_text_atomic
    from t2s.settings import get_settings

    with cli_errors():
        settings = get_settings()
        with Progress(TextColumn("validating"), BarColumn(), MofNCompleteColumn(), console=err_console,
                      transient=True) as progress:
            task = progress.add_task("validate", total=None)
            report = validate_dataset(path, timeout_s=timeout or settings.query_timeout_s,
                                      cache_dir=settings.cache_dir, postgres_dsn=settings.postgres_dsn,
                                      on_progress=lambda n: progress.advance(task, n))
        shown = [i for i in report.issues if show_warnings or i.severity == "error"]
        if shown:
            table = Table(title=f"Issues in {report.dataset}", title_justify="left")
            for col in ("severity", "line", "id", "check", "message"):
                table.add_column(col, overflow="fold")
            for i in shown:
                style = "red" if i.severity == "error" else "yellow"
                table.add_row(f"[{style}]{i.severity}[/]", str(i.line or ""), i.id or "", i.check, i.message)
            console.print(table)
        verdict = "[green]passed[/]" if report.ok else "[red]FAILED[/]"
        console.print(f"{report.dataset} (version {report.version[:12]}): {report.items} items, "
                      f"{report.errors} errors, {report.warnings} warnings — validation {verdict}")
        if json_out:  # the same on every run of the same dataset version (a DVC output): when it ran is left out
            write_text_atomic(json_out, report.model_dump_json(indent=2, exclude={"checked_at"}))
        if not report.ok:
            raise typer.Exit(code=1)
