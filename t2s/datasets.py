"""Golden datasets: typed loading of ``datasets/<name>/``.

A dataset directory holds:

- ``dataset.yaml``: the manifest (name, engine, databases by ``db_id``, source and licence);
- ``questions.jsonl``: one :class:`GoldExample` per line, in a fixed order (Spider-format prediction
  files line up with this order);
- the databases the manifest names (SQLite/DuckDB files, usually produced by a DVC stage);
- ``README.md``: the dataset card for people.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
)

from t2s.errors import DatasetError
from t2s.execution import Target, open_target
from t2s.fileio import file_digest, first_validation_error, read_yaml_mapping

DIFFICULTIES: tuple[str, ...] = ("easy", "medium", "hard", "extra")
CATEGORIES: tuple[str, ...] = (
    "filter", "aggregate", "group_by", "join", "nested", "set_ops", "order_limit", "dates", "null_handling",
)
Engine = Literal["sqlite", "duckdb", "postgres"]
MANIFEST = "dataset.yaml"
QUESTIONS = "questions.jsonl"


class Turn(BaseModel):
    """One earlier turn of a conversation: what was asked and the SQL that answered it (``None`` when that
    turn produced no SQL). A follow-up question ("only savings accounts") is read against these."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    question: str = Field(min_length=1)
    sql: str | None = None


class GoldExample(BaseModel):
    """One golden question with its reference SQL; a follow-up question carries the conversation before it
    as ``context`` (earlier questions with their reference SQL), which the generator is given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    gold_sql: str = Field(min_length=1)
    dialect: str = "sqlite"
    db_id: str = Field(min_length=1)
    difficulty: Literal["easy", "medium", "hard", "extra"]
    category: str = Field(min_length=1)
    evidence: str | None = None
    context: tuple[Turn, ...] = ()
    notes: str | None = None

    @field_validator("dialect")
    @classmethod
    def _known_dialect(cls, value: str) -> str:
        from sqlglot.dialects.dialect import Dialect

        try:
            Dialect.get_or_raise(value)
        except ValueError as exc:
            raise ValueError(f"unknown SQL dialect {value!r} (use a sqlglot dialect name such as "
                             "'sqlite', 'tsql', 'postgres', 'duckdb')") from exc
        return value

    @model_serializer(mode="wrap")
    def _without_empty_context(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A single question is written as before: no ``context: []`` on every line of a questions file."""
        data = handler(self)
        if not self.context:
            data.pop("context", None)
        return data  # type: ignore[no-any-return]


class DatabaseRef(BaseModel):
    """Where one ``db_id`` lives. ``variants`` are extra databases with the same schema whose results
    must also agree (test-suite style), which removes false positives on sparse data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    variants: tuple[str, ...] = ()


class DatasetManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    engine: Engine = "sqlite"
    databases: dict[str, DatabaseRef]
    source: str | None = None
    license: str | None = None

    @field_validator("databases", mode="before")
    @classmethod
    def _short_form(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: {"path": v} if isinstance(v, str) else v for k, v in value.items()}
        return value


class Dataset:
    """A loaded dataset: manifest, examples in file order, and resolved database paths."""

    def __init__(self, root: Path, manifest: DatasetManifest, examples: list[GoldExample]) -> None:
        self.root = root
        self.manifest = manifest
        self.examples = examples

    @property
    def name(self) -> str:
        return self.manifest.name

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[GoldExample]:
        return iter(self.examples)

    @cached_property
    def by_id(self) -> dict[str, GoldExample]:
        return {ex.id: ex for ex in self.examples}

    def database_paths(self, db_id: str) -> list[Path]:
        """The database file and its variants for ``db_id`` (absolute paths)."""
        ref = self.manifest.databases.get(db_id)
        if ref is None:
            raise DatasetError(f"db_id {db_id!r} is not declared in {MANIFEST}; declared: "
                               f"{sorted(self.manifest.databases)}", file=self.root / MANIFEST)
        return [(self.root / p).resolve() for p in (ref.path, *ref.variants)]

    def version(self) -> str:
        """Content version: md5 over the manifest, the questions and every database file.

        File digests are plain md5 of the bytes, the same digest DVC records for a file, so the value
        can be traced back to ``dvc.lock`` / ``.dvc`` entries.
        """
        listing = []
        files = [self.root / MANIFEST, self.root / QUESTIONS]
        for db_id in sorted(self.manifest.databases):
            if self.manifest.engine != "postgres":
                files.extend(self.database_paths(db_id))
        for path in files:
            # relpath, not relative_to: a database may live beside the dataset (``../bank/bank.sqlite``)
            listing.append({"relpath": os.path.relpath(path, self.root.resolve() if path.is_absolute() else self.root),
                            "md5": file_digest(path)})
        blob = json.dumps(sorted(listing, key=lambda d: d["relpath"]), sort_keys=True).encode()
        return hashlib.md5(blob).hexdigest()


def load_manifest(root: Path) -> DatasetManifest:
    path = root / MANIFEST
    if not path.is_file():
        raise DatasetError(f"no {MANIFEST} here; is {root} a dataset directory?", file=path)
    raw = read_yaml_mapping(path, DatasetError, "name, engine and databases")
    try:
        return DatasetManifest.model_validate(raw)
    except ValidationError as exc:
        field, msg = first_validation_error(exc)
        raise DatasetError(msg, file=path, field=field) from exc


def iter_examples(path: Path) -> Iterator[tuple[int, GoldExample]]:
    """Yield ``(line_number, example)``; a malformed line raises :class:`DatasetError` naming it."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"not valid JSON ({exc.msg} at column {exc.colno})", file=path,
                                   line=lineno) from exc
            if not isinstance(raw, dict):
                raise DatasetError("each line must be a JSON object", file=path, line=lineno)
            try:
                yield lineno, GoldExample.model_validate(raw)
            except ValidationError as exc:
                field, msg = first_validation_error(exc)
                raise DatasetError(msg, file=path, line=lineno, item_id=raw.get("id"), field=field) from exc


def load_dataset(root: str | Path) -> Dataset:
    """Load and type-check a dataset directory. Does not execute SQL: see ``evals.validation``."""
    root = Path(root)
    manifest = load_manifest(root)
    qpath = root / QUESTIONS
    if not qpath.is_file():
        raise DatasetError(f"missing {QUESTIONS}", file=qpath)
    examples: list[GoldExample] = []
    seen: dict[str, int] = {}
    for lineno, ex in iter_examples(qpath):
        if ex.id in seen:
            raise DatasetError(f"duplicate id (first seen on line {seen[ex.id]})", file=qpath, line=lineno,
                               item_id=ex.id, field="id")
        if ex.db_id not in manifest.databases:
            raise DatasetError(f"db_id {ex.db_id!r} is not declared in {MANIFEST}", file=qpath, line=lineno,
                               item_id=ex.id, field="db_id")
        seen[ex.id] = lineno
        examples.append(ex)
    if not examples:
        raise DatasetError("dataset has no questions", file=qpath)
    return Dataset(root, manifest, examples)


def write_dataset(root: Path, manifest: DatasetManifest, examples: list[GoldExample]) -> None:
    """Write manifest and questions atomically (temp files renamed into place)."""
    from t2s.fileio import write_text_atomic

    write_text_atomic(root / MANIFEST,
                      yaml.safe_dump(manifest.model_dump(mode="json", exclude_defaults=False), sort_keys=False))
    write_text_atomic(root / QUESTIONS, "".join(ex.model_dump_json(exclude_none=True) + "\n" for ex in examples))


def load_split(root: str | Path, split: str) -> list[GoldExample]:
    """Examples of ``<root>/<split>.jsonl`` (e.g. the training split few-shot examples come from)."""
    path = Path(root) / f"{split}.jsonl"
    if not path.is_file():
        raise DatasetError(f"no {split!r} split here (expected {path.name})", file=path)
    return [ex for _, ex in iter_examples(path)]


def db_locations(dataset: Dataset, db_id: str) -> tuple[str, ...]:
    """Where ``db_id`` and its variants live: absolute file paths, or PostgreSQL schema names."""
    paths = dataset.database_paths(db_id)  # also raises the standard "not declared" error
    if dataset.manifest.engine == "postgres":
        ref = dataset.manifest.databases[db_id]
        return (ref.path, *ref.variants)
    return tuple(str(p) for p in paths)


def open_location(engine: str, location: str, postgres_dsn: str | None = None) -> Target:
    """The execution target for one location from :func:`db_locations`."""
    if engine == "postgres":
        return open_target("postgres", postgres_dsn or "", schema=location)
    return open_target(engine, location)


def open_dbs(dataset: Dataset, db_id: str, postgres_dsn: str | None = None) -> list[Target]:
    """Targets for ``db_id`` and its variants (the primary first)."""
    return [open_location(dataset.manifest.engine, loc, postgres_dsn) for loc in db_locations(dataset, db_id)]


def open_db(dataset: Dataset, db_id: str | None = None, postgres_dsn: str | None = None) -> Target:
    """The execution target for ``db_id`` (default: the dataset's only database)."""
    if db_id is None:
        if len(dataset.manifest.databases) != 1:
            raise DatasetError(f"dataset {dataset.name!r} has several databases: pass a db_id "
                               f"({', '.join(sorted(dataset.manifest.databases))})", file=dataset.root / MANIFEST)
        db_id = next(iter(dataset.manifest.databases))
    return open_location(dataset.manifest.engine, db_locations(dataset, db_id)[0], postgres_dsn)
