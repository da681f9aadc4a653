"""``t2s prompts …``: list, show, diff, render and push versioned prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.console import cli_errors, console

app = typer.Typer(help="Versioned prompts: files under prompts/, mirrored in the MLflow Prompt Registry.",
                  no_args_is_help=True)


def _library():  # type: ignore[no-untyped-def]
    from t2s.prompts import PromptLibrary
    from t2s.settings import get_settings

    return PromptLibrary(get_settings().prompts_dir)


def _registry_state(name: str) -> tuple[dict[int, str], dict[str, int]] | None:
    """(version → content hash, alias → version) from the registry, or None when it has no such prompt."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from t2s.prompts import HASH_TAG
    from t2s.settings import get_settings
    from t2s.tracking import configure_mlflow

    configure_mlflow(get_settings())
    client = MlflowClient()
    try:
        prompt = client.get_prompt(name)
    except MlflowException:
        return None
    if prompt is None:
        return None
    versions: dict[int, str] = {}
    aliases: dict[str, int] = {}
    v = 1
    while True:
        try:
            pv = client.get_prompt_version(name, v)
        except MlflowException:
            break
        if pv is None:
            break
        versions[v] = (pv.tags or {}).get(HASH_TAG, "")
        aliases.update(dict.fromkeys(pv.aliases or [], v))
        v += 1
    return versions, aliases


@app.command("list")
def list_prompts(
    registry: Annotated[bool, typer.Option(help="Also show registry state and aliases (imports MLflow).")] = True,
) -> None:
    """Every prompt with its versions, the latest version's description and registry aliases."""
    from rich.table import Table

    with cli_errors():
        lib = _library()
        table = Table(title=f"Prompts in {lib.root}", title_justify="left")
        for col in ("prompt", "versions", "latest: what changed", "registered", "aliases"):
            table.add_column(col, overflow="fold")
        for name in lib.names():
            files = lib.versions(name)
            state = _registry_state(name) if registry else None
            registered = "—" if state is None else f"{len(state[0])}/{len(files)}"
            aliases = "" if state is None else ", ".join(f"{a}→v{v}" for a, v in sorted(state[1].items()))
            table.add_row(name, ", ".join(f"v{pf.spec.version}" for pf in files), files[-1].spec.description,
                          registered, aliases)
        console.print(table)


def resolve_prompt(ref: str):  # type: ignore[no-untyped-def]
    """The prompt file for NAME, NAME@VERSION or NAME@ALIAS (aliases are read from the registry)."""
    from t2s.prompts import parse_ref, resolve_version
    from t2s.settings import get_settings
    from t2s.tracking import configure_mlflow

    lib = _library()
    name, selector = parse_ref(ref)
    if selector is not None and not selector.isdigit():
        configure_mlflow(get_settings())
    return lib.get(name, resolve_version(name, selector, lib))


@app.command("show")
def show(ref: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@ALIAS (e.g. sql-analyst@champion).")]) -> None:
    """Print one prompt version's file, with its content hash."""
    from rich.syntax import Syntax

    with cli_errors():
        pf = resolve_prompt(ref)
        console.print(f"[bold]{pf.spec.ref}[/]  {pf.path}  content hash {pf.spec.content_hash()[:16]}")
        console.print(f"strategy {pf.spec.strategy.summary()}; few-shot k={pf.spec.few_shot.k} "
                      f"selector {pf.spec.few_shot.selector}", markup=False)
        console.print(Syntax(pf.text, "yaml", word_wrap=True))


@app.command("diff")
def diff(
    name: Annotated[str, typer.Argument(help="Prompt name.")],
    a: Annotated[str, typer.Argument(help="Version or alias (old).")],
    b: Annotated[str, typer.Argument(help="Version or alias (new).")],
) -> None:
    """Unified diff between two versions of a prompt."""
    from rich.syntax import Syntax

    from t2s.prompts import unified_diff

    with cli_errors():
        text = unified_diff(resolve_prompt(f"{name}@{a}"), resolve_prompt(f"{name}@{b}"))
        console.print(Syntax(text or "(no differences)\n", "diff", word_wrap=True))


@app.command("render")
def render(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION or NAME@ALIAS.")],
    question: Annotated[str, typer.Option("--question", "-q", help="The question to render the prompt for.")],
    dataset: Annotated[Path, typer.Option("--dataset", "-d", help="Dataset whose database gives the schema.")] = Path(
        "datasets/bank"),
    db_id: Annotated[str | None, typer.Option(help="Database of the dataset (default: its only one).")] = None,
) -> None:
    """Show the exact messages a model would receive for a question (schema context and examples included)."""
    from rich.panel import Panel

    from t2s.datasets import load_dataset, load_split, open_db
    from t2s.generator import SqlGenerator
    from t2s.schema_context import estimate_tokens
    from t2s.settings import get_settings

    with cli_errors():
        pf = resolve_prompt(ref)
        ds = load_dataset(dataset)
        pool = load_split(dataset, pf.spec.few_shot.split) if pf.spec.few_shot.k else None
        target = open_db(ds, db_id, get_settings().postgres_dsn)
        messages = SqlGenerator(pf.spec, llm=None, few_shot_pool=pool).messages(question, target)
        total = 0
        for m in messages:
            total += estimate_tokens(m["content"])
            console.print(Panel(m["content"], title=m["role"], title_align="left"), markup=False)
        console.print(f"{pf.spec.ref}: {len(messages)} messages, ~{total} tokens")


@app.command("push")
def push_cmd(
    names: Annotated[list[str] | None, typer.Argument(help="Prompts to push (default: all).")] = None,
) -> None:
    """Register new prompt versions in the MLflow Prompt Registry (idempotent; edits of registered
    versions are refused). Updates each prompt's versions.lock.json: commit it with the files."""
    from rich.table import Table

    from t2s.prompts import push
    from t2s.settings import get_settings
    from t2s.tracking import configure_mlflow

    with cli_errors():
        uri = configure_mlflow(get_settings())
        results = push(_library(), names)
        table = Table(title=f"Registry {uri}", title_justify="left")
        for col in ("prompt", "version", "action"):
            table.add_column(col)
        for name, version, action in results:
            table.add_row(name, str(version), f"[green]{action}[/]" if action == "registered" else action)
        console.print(table)
