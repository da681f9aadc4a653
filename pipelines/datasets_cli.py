"""``t2s datasets …``: build, import and validate golden datasets."""

from __future__ import annotations

import typer

app = typer.Typer(help="Build, import and validate golden datasets.", no_args_is_help=True)
