"""``t2s feedback export``: labelled production mistakes with a corrected SQL become candidate golden items.

The export is a dataset folder (``dataset.yaml``, ``questions.jsonl``, a copy of each file database) that
``t2s datasets validate`` checks before anyone merges it into a golden set. Difficulty and category are
derived from the corrected SQL as the importers do.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.console import cli_errors, console

app = typer.Typer(help="Feedback recorded by the serving layer.", no_args_is_help=True)


def export_feedback(rows: list[dict[str, Any]], databases: dict[str, Any], out: Path, name: str) -> int:
    """Write the dataset folder for ``rows`` (from ``Store.labelled_corrections``); returns the item count.

    ``databases`` maps served names to :class:`serving.config.DatabaseSpec`.
    """
    from evals.hardness import primary_category, spider_hardness
    from t2s.datasets import DatasetManifest, GoldExample, write_dataset
    from t2s.errors import ConfigError, SqlError
    from t2s.execution import ENGINE_DIALECT

    used = sorted({r["database"] for r in rows})
    unknown = [d for d in used if d not in databases]
    if unknown:
        raise ConfigError(f"feedback names databases no longer served: {', '.join(unknown)} (T2S_SERVE_DATABASES)")
    engines = {databases[d].engine for d in used}
    if len(engines) > 1:
        raise ConfigError(f"labelled queries span engines {sorted(engines)}; export one at a time with --database")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not empty; choose a new folder", file=out)
    engine = engines.pop() if engines else "sqlite"
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    refs: dict[str, str] = {}
    for d in used:
        spec = databases[d]
        if engine == "postgres":
            refs[d] = spec.schema or "public"
        else:
            target = f"{d}{Path(spec.location).suffix or '.db'}"
            shutil.copy(spec.location, tmp / target)
            refs[d] = target
    items = []
    for r in rows:
        sql, dialect = r["corrected_sql"].strip().rstrip(";"), ENGINE_DIALECT[engine]
        try:
            difficulty, category = spider_hardness(sql, dialect), primary_category(sql, dialect)
        except SqlError:
            difficulty, category = "medium", "filter"  # validation reports the SQL itself
        note = f"from serving feedback on query {r['query_id']} ({r['experiment']}/{r['variant']}); " \
               f"served SQL: {r['sql'] or '(none)'}" + (f"; comment: {r['comment']}" if r["comment"] else "")
        items.append(GoldExample(id=f"fb-{r['query_id'][:8]}", question=r["question"], gold_sql=sql,
                                 dialect=dialect, db_id=r["database"], difficulty=difficulty,  # type: ignore[arg-type]
                                 category=category, notes=note))
    write_dataset(tmp, DatasetManifest(name=name, description="Candidate golden items from production feedback.",
                                       engine=engine, databases=refs, source="t2s feedback export"), items)
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return len(items)


@app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="New dataset folder to write.")],
    name: Annotated[str, typer.Option(help="Dataset name in dataset.yaml.")] = "feedback",
    database: Annotated[str | None, typer.Option(help="Only queries on this served database.")] = None,
) -> None:
    """Labels with a corrected_sql → a dataset folder of candidate golden items (check it with
    `t2s datasets validate OUT`)."""
    from serving.config import parse_database
    from serving.store import Store
    from t2s.errors import ConfigError
    from t2s.settings import get_settings

    with cli_errors():
        settings = get_settings()
        store = Store.open(settings.serve_store_url)
        rows = [r for r in store.labelled_corrections() if database is None or r["database"] == database]
        if not rows:
            raise ConfigError("no labelled feedback with corrected_sql to export"
                              + (f" for database {database!r}" if database else ""))
        specs = {n: parse_database(n, s) for n, s in settings.serve_databases.items()}
        n = export_feedback(rows, specs, out, name)
        console.print(f"wrote {n} candidate golden item(s) to {out}; check them with `t2s datasets validate {out}`")
