"""``t2s metrics show``: metrics files side by side, one row per metric."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.console import cli_errors, console

app = typer.Typer(help="Read metrics files written by `t2s score --metrics-out`.", no_args_is_help=True)


@app.command("show")
def show(
    files: Annotated[list[Path], typer.Argument(help="Metrics JSON files (one column each).")],
    all_metrics: Annotated[bool, typer.Option("--all", help="Also list per-category accuracies.")] = False,
) -> None:
    """Print metrics files as one table: a row per metric, a column per file."""
    from rich.table import Table

    from t2s.errors import ConfigError

    with cli_errors():
        columns: list[dict[str, float]] = []
        for path in files:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise ConfigError("metrics file not found (run the pipeline first: `dvc repro`)", file=path) from None
            except json.JSONDecodeError as exc:
                raise ConfigError(f"not a metrics JSON file: {exc.msg}", file=path) from exc
            if not isinstance(data, dict):
                raise ConfigError("not a metrics JSON object", file=path)
            columns.append(data)
        names: list[str] = []
        for data in columns:
            names += [k for k in data if k not in names and (all_metrics or "/category/" not in k)]
        table = Table(title_justify="left")
        table.add_column("metric")
        for path in files:
            table.add_column(path.stem.removesuffix("_metrics"), justify="right")
        for name in names:
            cells = []
            for data in columns:
                value = data.get(name)
                cells.append("—" if value is None else str(value) if name == "items" else f"{100 * value:.1f}%")
            table.add_row(name, *cells)
        console.print(table)
