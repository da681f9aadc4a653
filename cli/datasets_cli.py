"""``t2s datasets …``: build, import and validate golden datasets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from t2s.datasets import Dataset

app = typer.Typer(help="Build, import and validate golden datasets.", no_args_is_help=True)


def _summary(dataset: Dataset, title: str) -> None:
    """Print items per difficulty (and per category) of a freshly imported dataset."""
    from collections import Counter

    from rich.table import Table

    from cli.console import console
    from t2s.datasets import CATEGORIES, DIFFICULTIES

    n = len(dataset)
    by_diff = Counter(ex.difficulty for ex in dataset)
    by_cat = Counter(ex.category for ex in dataset)
    console.print(f"[bold]{title}[/] [cyan]{dataset.name}[/]: {n} questions, "
                  f"{len(dataset.manifest.databases)} databases", highlight=False)
    table = Table()
    table.add_column("difficulty")
    table.add_column("items", justify="right")
    table.add_column("share", justify="right")
    for level in DIFFICULTIES:
        if by_diff[level]:
            table.add_row(level, str(by_diff[level]), f"{100 * by_diff[level] / n:.1f}%")
    table.add_row("[bold]total[/]", f"[bold]{n}[/]", "100.0%")
    console.print(table)
    cats = ", ".join(f"{c} {by_cat[c]}" for c in CATEGORIES if by_cat[c])
    console.print(f"categories: {cats}", highlight=False)
    console.print(f"written to [bold]{dataset.root}[/]", highlight=False)


@app.command("import-spider")
def import_spider_cmd(
    spider_dir: Annotated[Path, typer.Argument(help="Spider release folder: <split>.json, tables.json, "
                                                    "database/<db_id>/<db_id>.sqlite.")],
    out: Annotated[Path, typer.Option("--out", help="Dataset directory to create.")],
    split: Annotated[str, typer.Option("--split", help="Which <split>.json to import.")] = "dev",
    name: Annotated[str | None, typer.Option("--name", help="Dataset name (default spider-<split>).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --out.")] = False,
) -> None:
    """Import a Spider split as a dataset (difficulty from Spider's hardness rules)."""
    from cli.console import cli_errors

    with cli_errors():
        from pipelines.importers import import_spider

        dataset = import_spider(spider_dir, out, split=split, name=name, overwrite=overwrite)
        _summary(dataset, "Imported Spider")


@app.command("import-bird")
def import_bird_cmd(
    bird_dir: Annotated[Path, typer.Argument(help="BIRD folder: dev.json and "
                                                  "dev_databases/<db_id>/<db_id>.sqlite.")],
    out: Annotated[Path, typer.Option("--out", help="Dataset directory to create.")],
    questions: Annotated[str, typer.Option("--questions", help="Questions file inside BIRD_DIR.")] = "dev.json",
    name: Annotated[str | None, typer.Option("--name", help="Dataset name (default bird-<stem>).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --out.")] = False,
) -> None:
    """Import BIRD questions as a dataset (simple/moderate/challenging → easy/medium/hard)."""
    from cli.console import cli_errors

    with cli_errors():
        from pipelines.importers import import_bird

        dataset = import_bird(bird_dir, out, questions_file=questions, name=name, overwrite=overwrite)
        _summary(dataset, "Imported BIRD")
