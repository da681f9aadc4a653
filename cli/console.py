"""Shared console plumbing: one rich console, and the boundary that turns platform errors into exits."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console

from t2s.errors import Text2SQLError

# Logs and CI capture output without a terminal (rich then writes no colour codes): tables are laid out for
# 100 columns there, not rich's 80, and the platform's own tables are designed to fit in 100.
console = Console(width=None if Console().is_terminal else 100)
err_console = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 100)


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Print a :class:`Text2SQLError` as one red line naming where and what, then exit 2."""
    try:
        yield
    except Text2SQLError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
