"""Import public Text-to-SQL benchmarks (Spider, BIRD) into the platform's dataset format.

Both importers read everything and check it before writing anything, then build the dataset in a
temporary directory beside ``out`` and rename it into place, so a failure never leaves a half-written
dataset behind. Malformed input raises :class:`t2s.errors.DatasetError` naming the file, the item
(``#<position in the JSON array>``) and the field.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from evals.hardness import classify
from t2s.datasets import (
    CATEGORIES,
    DIFFICULTIES,
    DatabaseRef,
    Dataset,
    DatasetManifest,
    GoldExample,
    load_dataset,
    write_dataset,
)
from t2s.errors import ConfigError, DatasetError, SqlParseError

__all__ = ["import_bird", "import_spider"]

SPIDER_SOURCE = "Spider 1.0 (Yu et al., EMNLP 2018), https://yale-lily.github.io/spider"
BIRD_SOURCE = "BIRD (Li et al., NeurIPS 2023), https://bird-bench.github.io"
CC_BY_SA = "CC BY-SA 4.0"
BIRD_DIFFICULTY = {"simple": "easy", "moderate": "medium", "challenging": "hard"}

#: Show progress bars above this many questions, or this many bytes of databases to copy.
PROGRESS_ITEMS = 300
PROGRESS_BYTES = 256 << 20
_COPY_CHUNK = 8 << 20
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_DB_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


# ---------------------------------------------------------------------------------------------------
# reading and checking the source


def _read_json_array(path: Path, what: str) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DatasetError(f"{what} not found", file=path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"not valid JSON ({exc.msg} at column {exc.colno})", file=path,
                           line=exc.lineno) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {what}: {exc}", file=path) from exc
    if not isinstance(raw, list):
        raise DatasetError(f"expected a JSON array of items, got a JSON {type(raw).__name__}", file=path)
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise DatasetError(f"expected a JSON object, got {type(item).__name__}", file=path,
                               item_id=f"#{i}")
    if not raw:
        raise DatasetError("the file holds no items", file=path)
    return raw


def _text(item: dict[str, Any], key: str, path: Path, i: int, *, required: bool = True) -> str | None:
    value = item.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if not required:
            return None
        problem = "missing required field" if key not in item else "empty field"
        raise DatasetError(f"{problem} {key!r}", file=path, item_id=f"#{i}", field=key)
    if not isinstance(value, str):
        raise DatasetError(f"field {key!r} must be a string, got {type(value).__name__}", file=path,
                           item_id=f"#{i}", field=key)
    return value.strip()


def _index(item: dict[str, Any], key: str, path: Path, i: int) -> int | None:
    if key not in item or item[key] is None:
        return None
    value = item[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DatasetError(f"field {key!r} must be a non-negative integer, got {value!r}", file=path,
                           item_id=f"#{i}", field=key)
    return value


def _db_id(item: dict[str, Any], path: Path, i: int) -> str:
    db_id = _text(item, "db_id", path, i)
    assert db_id is not None
    if not _DB_ID_RE.match(db_id) or db_id in {".", ".."}:
        raise DatasetError(f"db_id {db_id!r} is not a plain name (letters, digits, '_', '-', '.')",
                           file=path, item_id=f"#{i}", field="db_id")
    return db_id


def _classify(sql: str, path: Path, i: int, key: str) -> tuple[str, str]:
    try:
        return classify(sql, "sqlite")
    except SqlParseError as exc:
        raise DatasetError(f"gold SQL does not parse: {exc.message}", file=path, item_id=f"#{i}",
                           field=key) from exc


def _example(path: Path, i: int, **fields: Any) -> GoldExample:
    try:
        return GoldExample(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or None
        raise DatasetError(err["msg"], file=path, item_id=f"#{i}", field=loc) from exc


def _dataset_name(name: str | None, default: str) -> str:
    chosen = name if name is not None else re.sub(r"[^A-Za-z0-9_.-]+", "-", default).strip("-")
    if not chosen or not _NAME_RE.match(chosen):
        raise ConfigError(f"dataset name {chosen!r} must use only letters, digits, '_', '-' and '.'",
                          field="name")
    return chosen


@dataclass
class _Database:
    db_id: str
    main: Path
    variants: list[Path]
    tables: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        return [self.main, *self.variants]


class _Databases:
    """Resolves ``<root>/<db_id>/<db_id>.sqlite`` (plus sibling ``*.sqlite`` variants) once per db_id."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.found: dict[str, _Database] = {}

    def resolve(self, db_id: str, path: Path, i: int) -> _Database:
        if db_id in self.found:
            return self.found[db_id]
        folder = self.root / db_id
        main = folder / f"{db_id}.sqlite"
        if not main.is_file():
            raise DatasetError(f"database for db_id {db_id!r} not found: expected {main}", file=path,
                               item_id=f"#{i}", field="db_id")
        variants = sorted(p for p in folder.glob("*.sqlite") if p.is_file() and p.name != main.name)
        db = _Database(db_id, main, variants, tables=_sqlite_tables(main))
        self.found[db_id] = db
        return db


def _sqlite_tables(path: Path) -> list[str]:
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        try:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                "AND name NOT LIKE 'sqlite_%' ORDER BY name").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise DatasetError(f"not a readable SQLite database: {exc}", file=path) from exc
    return [r[0] for r in rows]


def _schema_notes(tables_path: Path, databases: dict[str, _Database]) -> list[str]:
    """Compare each used database's tables with the schema file (Spider ``tables.json`` format)."""
    if not tables_path.is_file():
        return [f"`{tables_path.name}` not present: schemas were not cross-checked."]
    records = _read_json_array(tables_path, "schema file")
    declared: dict[str, set[str]] = {}
    for i, rec in enumerate(records):
        db_id = _text(rec, "db_id", tables_path, i)
        names = rec.get("table_names_original", rec.get("table_names"))
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DatasetError("expected a list of table names", file=tables_path, item_id=f"#{i}",
                               field="table_names_original")
        declared[str(db_id)] = {n.lower() for n in names}
    notes = []
    for db_id, db in sorted(databases.items()):
        actual = {t.lower() for t in db.tables}
        if db_id not in declared:
            notes.append(f"`{db_id}`: not described in `{tables_path.name}`.")
        elif declared[db_id] == actual:
            notes.append(f"`{db_id}`: {len(actual)} tables, matching `{tables_path.name}`.")
        else:
            missing = sorted(declared[db_id] - actual)
            extra = sorted(actual - declared[db_id])
            parts = []
            if missing:
                parts.append(f"listed in `{tables_path.name}` but absent from the database: {', '.join(missing)}")
            if extra:
                parts.append(f"in the database but not in `{tables_path.name}`: {', '.join(extra)}")
            notes.append(f"`{db_id}`: MISMATCH, " + "; ".join(parts) + ".")
    return notes


# ---------------------------------------------------------------------------------------------------
# writing


@dataclass
class _Plan:
    manifest: DatasetManifest
    examples: list[GoldExample]
    databases: dict[str, _Database]
    card: str


def _check_target(out: Path, overwrite: bool, source: Path | None = None) -> None:
    if not out.name or out.name in {".", ".."}:
        raise DatasetError("output path must name a new directory", file=out)
    if source is not None:
        target, src = out.resolve(), source.resolve()
        if target == src or target in src.parents or src in target.parents:
            raise DatasetError(f"output directory must be outside the source folder {source}", file=out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise DatasetError("output path exists and is not a directory", file=out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DatasetError("output directory exists and is not empty; choose another path or pass "
                           "--overwrite (overwrite=True) to replace it", file=out)


@contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    err_console = Console(stderr=True)  # the bar goes to stderr, so piped stdout stays clean

    columns = (TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.completed:,.0f}/{task.total:,.0f} {task.fields[unit]}"),
               TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True,
                  disable=not err_console.is_terminal) as bar:
        yield bar


def _copy(src: Path, dst: Path, advance: Callable[[int], None]) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while block := fin.read(_COPY_CHUNK):
            fout.write(block)
            advance(len(block))


def _materialise(plan: _Plan, out: Path, overwrite: bool, progress: bool | None) -> Dataset:
    _check_target(out, overwrite)
    total_bytes = sum(p.stat().st_size for db in plan.databases.values() for p in db.files)
    show = progress if progress is not None else (
        total_bytes > PROGRESS_BYTES or len(plan.examples) > PROGRESS_ITEMS)
    created = [p for p in (out.parent, *out.parent.parents) if not p.exists()]  # deepest first
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.importing")
    tmp.mkdir()  # default permissions (mkdtemp would make it private)
    try:
        with _progress(show) as bar:
            task = bar.add_task("copying databases", total=total_bytes, unit="bytes") if bar else None

            def advance(n: int) -> None:
                if bar is not None:
                    bar.advance(task, n)

            for db in plan.databases.values():
                for src in db.files:
                    _copy(src, tmp / "database" / db.db_id / src.name, advance)
        write_dataset(tmp, plan.manifest, plan.examples)
        (tmp / "README.md").write_text(plan.card, encoding="utf-8")
        load_dataset(tmp)  # the output must load before it replaces anything
        _swap_into_place(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:  # parents made for ``out``, if still empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return load_dataset(out)


def _swap_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    _check_target(out, overwrite)  # again: something may have appeared while we worked
    if not out.exists():
        tmp.rename(out)
        return
    if not any(out.iterdir()):
        out.rmdir()
        tmp.rename(out)
        return
    old = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.replaced")
    out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _manifest_databases(databases: dict[str, _Database]) -> dict[str, DatabaseRef]:
    return {
        db_id: DatabaseRef(path=f"database/{db_id}/{db.main.name}",
                           variants=tuple(f"database/{db_id}/{v.name}" for v in db.variants))
        for db_id, db in sorted(databases.items())
    }


def _card(*, name: str, title: str, description: str, source: str, license: str, source_file: str,
          command: str, examples: list[GoldExample], databases: dict[str, _Database],
          difficulty_note: str, schema_notes: list[str]) -> str:
    n = len(examples)
    by_diff = Counter(ex.difficulty for ex in examples)
    by_cat = Counter(ex.category for ex in examples)
    by_db = Counter(ex.db_id for ex in examples)

    def pct(k: int) -> str:
        return f"{100 * k / n:.1f}%"

    lines = [
        f"# {name}", "",
        description, "",
        f"- **Source:** {source}",
        f"- **Licence:** {license}. The questions, SQL and databases are third-party data redistributed "
        "under that licence; keep the attribution when sharing this dataset.",
        f"- **Imported from:** `{source_file}` with `{command}`; questions keep the source order.",
        f"- **Engine:** sqlite; **questions:** {n}; **databases:** {len(databases)}.", "",
        f"## {title} difficulty", "",
        difficulty_note, "",
        "| difficulty | questions | share |", "|---|---:|---:|",
        *(f"| {d} | {by_diff[d]} | {pct(by_diff[d])} |" for d in DIFFICULTIES if by_diff[d]),
        "",
        "## Categories", "",
        "One primary category per question, from the gold SQL's structure (first match in the order "
        "set_ops, nested, join, group_by, order_limit, aggregate, null_handling, dates, filter; see "
        "`evals.hardness.primary_category`).", "",
        "| category | questions | share |", "|---|---:|---:|",
        *(f"| {c} | {by_cat[c]} | {pct(by_cat[c])} |" for c in CATEGORIES if by_cat[c]),
        "",
        "## Databases", "",
        "| db_id | questions | tables | variants |", "|---|---:|---:|---:|",
        *(f"| {db_id} | {by_db[db_id]} | {len(db.tables)} | {len(db.variants)} |"
          for db_id, db in sorted(databases.items())),
        "",
        "## Schema check", "",
        *(f"- {note}" for note in schema_notes),
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Spider


@dataclass(frozen=True)
class _Row:
    """The fields every source format shares, read and checked for one item."""

    index: int
    item: dict[str, Any]
    id: str
    db_id: str
    question: str
    sql: str
    hardness: str
    category: str


def _rows(items: list[dict[str, Any]], qfile: Path, dbs: _Databases, *, sql_field: str, index_field: str,
          id_prefix: str, progress: bool | None) -> Iterator[_Row]:
    """Each item's common fields, in source order: ids ``<id_prefix>-<index field or position>`` (duplicates
    refused), the database resolved, the gold SQL bucketed; a progress bar for large imports."""
    seen: dict[str, int] = {}
    with _progress(progress if progress is not None else len(items) > PROGRESS_ITEMS) as bar:
        task = bar.add_task("reading questions", total=len(items), unit="questions") if bar else None
        for i, item in enumerate(items):
            db_id = _db_id(item, qfile, i)
            question = _text(item, "question", qfile, i)
            sql = _text(item, sql_field, qfile, i)
            assert question is not None and sql is not None
            position = _index(item, index_field, qfile, i)
            ex_id = f"{id_prefix}-{position if position is not None else i:04d}"
            if ex_id in seen:
                raise DatasetError(f"duplicate {index_field} (item #{seen[ex_id]} has the same)", file=qfile,
                                   item_id=f"#{i}", field=index_field)
            seen[ex_id] = i
            dbs.resolve(db_id, qfile, i)
            hardness, category = _classify(sql, qfile, i, sql_field)
            yield _Row(i, item, ex_id, db_id, question, sql, hardness, category)
            if bar is not None:
                bar.advance(task)


def import_spider(spider_dir: str | Path, out: str | Path, split: str = "dev", name: str | None = None,
                  *, overwrite: bool = False, progress: bool | None = None) -> Dataset:
    """Import a Spider split (``<spider_dir>/<split>.json``) as a dataset at ``out``.

    Items keep their source order. Ids are ``spider-<split>-NNNN`` from the item's position, or from
    its ``spider_<split>_index`` field when present (sample files cut from the full release), so ids
    line up with the original positions. Difficulty is :func:`evals.hardness.spider_hardness` of the
    gold SQL. Databases are read from ``database/<db_id>/``: ``<db_id>.sqlite`` is the database and
    any other ``*.sqlite`` beside it is a test-suite variant. ``tables.json`` is optional and only
    cross-checked against the databases (noted in the dataset card).

    ``progress``: ``None`` shows progress bars for large imports only.
    """
    spider_dir, out = Path(spider_dir), Path(out)
    if not re.match(r"^[A-Za-z0-9_-]+$", split):
        raise ConfigError(f"split {split!r} must be a plain name such as 'dev' or 'train'", field="split")
    name = _dataset_name(name, f"spider-{split}")
    qfile = spider_dir / f"{split}.json"
    if not qfile.is_file() and split == "train" and (spider_dir / "train_spider.json").is_file():
        qfile = spider_dir / "train_spider.json"
    db_root = spider_dir / "database"
    if split == "test" and (spider_dir / "test_database").is_dir():
        db_root = spider_dir / "test_database"
    _check_target(out, overwrite, spider_dir)
    items = _read_json_array(qfile, f"Spider {split} file")
    if not db_root.is_dir():
        raise DatasetError("Spider databases folder not found (expected database/<db_id>/<db_id>.sqlite)",
                           file=db_root)

    dbs = _Databases(db_root)
    examples = [
        _example(qfile, row.index, id=row.id, question=row.question, gold_sql=row.sql, dialect="sqlite",
                 db_id=row.db_id, difficulty=row.hardness, category=row.category)
        for row in _rows(items, qfile, dbs, sql_field="query", index_field=f"spider_{split}_index",
                         id_prefix=f"spider-{split}", progress=progress)
    ]

    notes = _schema_notes(spider_dir / "tables.json", dbs.found)
    description = (f"Spider 1.0 {split} split: {len(examples)} questions over {len(dbs.found)} SQLite "
                   f"databases, imported from {qfile.name}.")
    manifest = DatasetManifest(name=name, description=description, engine="sqlite",
                               databases=_manifest_databases(dbs.found),
                               source=f"{SPIDER_SOURCE} ({qfile.name})", license=CC_BY_SA)
    card = _card(
        name=name, title="Spider", description=description, source=SPIDER_SOURCE, license=CC_BY_SA,
        source_file=qfile.name, command=f"t2s datasets import-spider --split {split}", examples=examples,
        databases=dbs.found, schema_notes=notes,
        difficulty_note="Spider's `dev.json` stores no difficulty: each question's bucket is computed from "
                        "its gold SQL by `evals.hardness.spider_hardness`, which applies the rules of "
                        "Spider's official scorer (`eval_hardness`). Spider's full dev set is roughly 24% "
                        "easy, 43% medium, 17% hard and 16% extra.",
    )
    return _materialise(_Plan(manifest, examples, dbs.found, card), out, overwrite, progress)


# ---------------------------------------------------------------------------------------------------
# BIRD


def import_bird(bird_dir: str | Path, out: str | Path, questions_file: str = "dev.json",
                name: str | None = None, *, overwrite: bool = False,
                progress: bool | None = None) -> Dataset:
    """Import BIRD questions (``<bird_dir>/<questions_file>``) as a dataset at ``out``.

    Fields: ``question_id`` (optional; the position is used without it), ``db_id``, ``question``,
    ``evidence`` (kept as the example's evidence), ``SQL`` and ``difficulty``. BIRD's
    simple/moderate/challenging map to easy/medium/hard, and the original label is kept in ``notes``;
    an item without a difficulty gets :func:`evals.hardness.spider_hardness` of its SQL. Databases are
    read from ``<stem>_databases/<db_id>/<db_id>.sqlite`` (``dev_databases`` for ``dev.json``).
    ``<stem>_tables.json``, when present, is cross-checked against the databases.
    """
    bird_dir, out = Path(bird_dir), Path(out)
    qfile = bird_dir / questions_file
    stem = Path(questions_file).stem
    name = _dataset_name(name, f"bird-{stem}")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", stem).strip("-").lower() or "dev"
    _check_target(out, overwrite, bird_dir)
    items = _read_json_array(qfile, "BIRD questions file")
    candidates = [bird_dir / f"{stem}_databases", bird_dir / "dev_databases", bird_dir / "databases"]
    db_root = next((c for c in candidates if c.is_dir()), None)
    if db_root is None:
        raise DatasetError("BIRD databases folder not found (expected dev_databases/<db_id>/<db_id>.sqlite)",
                           file=candidates[0])

    dbs = _Databases(db_root)
    examples: list[GoldExample] = []
    for row in _rows(items, qfile, dbs, sql_field="SQL", index_field="question_id", id_prefix=f"bird-{slug}",
                     progress=progress):
        i, item = row.index, row.item
        evidence = _text(item, "evidence", qfile, i, required=False)
        original = _text(item, "difficulty", qfile, i, required=False)
        if original is None:
            difficulty, notes = row.hardness, "no BIRD difficulty; Spider hardness of the gold SQL"
        elif original.lower() in BIRD_DIFFICULTY:
            difficulty, notes = BIRD_DIFFICULTY[original.lower()], f"BIRD difficulty: {original}"
        else:
            raise DatasetError(f"unknown difficulty {original!r} (expected one of "
                               f"{', '.join(BIRD_DIFFICULTY)})", file=qfile, item_id=f"#{i}",
                               field="difficulty")
        examples.append(_example(qfile, i, id=row.id, question=row.question, gold_sql=row.sql, dialect="sqlite",
                                 db_id=row.db_id, difficulty=difficulty, category=row.category,
                                 evidence=evidence, notes=notes))

    notes_schema = _schema_notes(bird_dir / f"{stem}_tables.json", dbs.found)
    description = (f"BIRD {stem}: {len(examples)} questions with evidence over {len(dbs.found)} SQLite "
                   f"databases, imported from {qfile.name}.")
    manifest = DatasetManifest(name=name, description=description, engine="sqlite",
                               databases=_manifest_databases(dbs.found),
                               source=f"{BIRD_SOURCE} ({qfile.name})", license=CC_BY_SA)
    card = _card(
        name=name, title="BIRD", description=description, source=BIRD_SOURCE, license=CC_BY_SA,
        source_file=qfile.name, command=f"t2s datasets import-bird --questions {questions_file}",
        examples=examples, databases=dbs.found, schema_notes=notes_schema,
        difficulty_note="BIRD's own labels, mapped simple → easy, moderate → medium, challenging → hard "
                        "(the original label is kept in each question's `notes`). BIRD has no `extra`.",
    )
    return _materialise(_Plan(manifest, examples, dbs.found, card), out, overwrite, progress)
