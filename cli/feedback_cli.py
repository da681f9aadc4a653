"""``t2s feedback export``: labelled production mistakes with a corrected SQL become candidate golden items.

The export is a dataset folder (``dataset.yaml``, ``questions.jsonl``, a copy of each file database) that
``t2s datasets validate`` checks before anyone merges it into a golden set. Difficulty and category are
derived from the corrected SQL as the importers do.

Only effective labels are exported (a superseded label is history), only from the query's owner or a
reviewer (labels recorded before ownership was checked are left out unless ``--include-unverified``), and
one item per question: labels of the same question on the same database (compared case-, space- and
Unicode-insensitively, :func:`question_key`) are merged into one item whose SQL is the best-sourced
correction (a reviewer's before an owner's, then the latest). When the merged labels disagree on the
correction, the item's notes say ``CONFLICT`` and list every distinct correction for the reviewer.
"""

from __future__ import annotations

import shutil
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.console import cli_errors, console

app = typer.Typer(help="Feedback recorded by the serving layer.", no_args_is_help=True)

_SOURCE_RANK = {"reviewer": 2, "owner": 1, "unverified": 0}


def question_key(question: str, database: str) -> tuple[str, str]:
    """Questions that are the same for a golden set: NFKC, case-folded, runs of spaces collapsed, trailing
    ``?``, ``.``, ``!`` dropped.

    Stricter than the experiment report's :func:`serving.questions.normalized_question`, which drops every
    symbol: pooling "> 5" with "< 5" into one cluster only widens the report's intervals (conservative),
    while merging them here would fold two golden items into one."""
    text = " ".join(unicodedata.normalize("NFKC", question).casefold().split())
    return text.rstrip(" ?.!"), database


def _sql_key(sql: str, dialect: str) -> str:
    """Corrections that differ only in layout or keyword case compare equal."""
    import sqlglot

    try:
        return sqlglot.transpile(sql, read=dialect, write=dialect)[0]
    except Exception:  # unparseable corrections are compared as text; validation reports them
        return " ".join(sql.split())


@dataclass
class Candidate:
    """One exported item: the chosen label and every label merged into it."""

    chosen: dict[str, Any]
    merged: list[dict[str, Any]]
    corrections: list[str]  # distinct corrected SQL (normalized), the chosen one first

    @property
    def conflict(self) -> bool:
        return len(self.corrections) > 1


def merge_duplicates(rows: list[dict[str, Any]], dialect: str) -> list[Candidate]:
    """Group ``rows`` (from ``Store.labelled_corrections``) by :func:`question_key`; one candidate each, in
    the order of each question's first label."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(question_key(r["question"], r["database"]), []).append(r)
    out = []
    for members in groups.values():
        chosen = max(members, key=lambda r: (_SOURCE_RANK.get(r.get("source") or "unverified", 0), r["ts"]))
        keys = [_sql_key(chosen["corrected_sql"].strip().rstrip(";"), dialect)]
        for r in members:
            key = _sql_key(r["corrected_sql"].strip().rstrip(";"), dialect)
            if key not in keys:
                keys.append(key)
        out.append(Candidate(chosen, members, keys))
    return out


def export_feedback(rows: list[dict[str, Any]], databases: dict[str, Any], out: Path, name: str) -> list[Candidate]:
    """Write the dataset folder for ``rows`` (from ``Store.labelled_corrections``), duplicates merged;
    returns the exported candidates.

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
    dialect = ENGINE_DIALECT[engine]
    candidates = merge_duplicates(rows, dialect)
    for c in candidates:
        r = c.chosen
        sql = r["corrected_sql"].strip().rstrip(";")
        try:
            difficulty, category = spider_hardness(sql, dialect), primary_category(sql, dialect)
        except SqlError:
            difficulty, category = "medium", "filter"  # validation reports the SQL itself
        note = f"from serving feedback on query {r['query_id']} ({r['experiment']}/{r['variant']}, " \
               f"{r.get('source') or 'unverified'} label); served SQL: {r['sql'] or '(none)'}" + \
               (f"; comment: {r['comment']}" if r["comment"] else "")
        if len(c.merged) > 1:
            others = [m["query_id"] for m in c.merged if m is not r]
            note += f"; merged {len(c.merged)} labels of this question (also queries {', '.join(others)})"
        if c.conflict:
            note += f"; CONFLICT: {len(c.corrections)} different corrections — " + " | ".join(c.corrections)
        items.append(GoldExample(id=f"fb-{r['query_id'][:8]}", question=r["question"], gold_sql=sql,
                                 dialect=dialect, db_id=r["database"], difficulty=difficulty,  # type: ignore[arg-type]
                                 category=category, notes=note))
    write_dataset(tmp, DatasetManifest(name=name, description="Candidate golden items from production feedback.",
                                       engine=engine, databases=refs, source="t2s feedback export"), items)
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return candidates


@app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="New dataset folder to write.")],
    name: Annotated[str, typer.Option(help="Dataset name in dataset.yaml.")] = "feedback",
    database: Annotated[str | None, typer.Option(help="Only queries on this served database.")] = None,
    include_unverified: Annotated[bool, typer.Option(
        help="Also export labels recorded before labels were tied to their owner (anyone could give them).")] = False,
) -> None:
    """Effective labels with a corrected_sql, from the query's owner or a reviewer → a dataset folder of
    candidate golden items, one per question (check it with `t2s datasets validate OUT`)."""
    from serving.config import parse_database
    from serving.store import Store
    from t2s.errors import ConfigError
    from t2s.settings import get_settings

    with cli_errors():
        settings = get_settings()
        store = Store.open(settings.serve_store_url)
        every = [r for r in store.labelled_corrections() if database is None or r["database"] == database]
        rows = [r for r in every if include_unverified or r["source"] != "unverified"]
        if not rows:
            raise ConfigError("no labelled feedback with corrected_sql to export"
                              + (f" for database {database!r}" if database else "")
                              + (f" ({len(every)} unverified label(s) left out; --include-unverified)"
                                 if len(every) > len(rows) else ""))
        specs = {n: parse_database(n, s) for n, s in settings.serve_databases.items()}
        candidates = export_feedback(rows, specs, out, name)
        conflicts = [c.chosen["query_id"] for c in candidates if c.conflict]
        console.print(f"{len(candidates)} candidate golden item(s) from {len(rows)} label(s)"
                      + (f"; {len(rows) - len(candidates)} duplicate question(s) merged" if len(rows) > len(candidates)
                         else "")
                      + (f"; {len(every) - len(rows)} unverified label(s) left out" if len(every) > len(rows) else ""),
                      highlight=False)
        console.print(f"wrote {out}; check it with `t2s datasets validate {out}`", highlight=False, soft_wrap=True)
        if conflicts:
            console.print(f"[bold yellow]{len(conflicts)} item(s) merge labels with different corrections[/] "
                          "(notes say CONFLICT): review them before merging", highlight=False)
