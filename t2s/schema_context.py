"""Schema context: a compact, deterministic description of a live database for the prompt.

:func:`introspect` reads tables, columns, types, primary/foreign keys, row counts and the most frequent
distinct values per column. :func:`build_schema_context` renders it (``CREATE TABLE`` or compact style)
under a token budget; when the whole schema does not fit, tables are ranked against the question with a
BM25 retriever (llama-index, offline) and added best-first together with their foreign-key neighbours.
The same database, settings and question always give the same text, so completions can be cached.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from t2s.execution import SqliteTarget, Target
from t2s.prompts import SchemaSettings

SAMPLE_CHARS = 40
# Sample values help with categorical columns; on near-unique ones (ids, e-mails, amounts) they are noise.
SAMPLE_MAX_DISTINCT = 200
SAMPLE_SMALL_TABLE = 20


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    primary_key: bool = False
    not_null: bool = False
    samples: tuple[Any, ...] = ()
    #: Position in the primary key (1-based; 0: not part of it). A composite key has positions 1..n.
    pk_position: int = 0


@dataclass(frozen=True)
class ForeignKey:
    column: str
    ref_table: str
    ref_column: str


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    foreign_keys: tuple[ForeignKey, ...] = ()
    row_count: int | None = None
    #: The database's own CREATE statement (SQLite), when read.
    ddl: str | None = None
    #: The first rows (``SELECT * … LIMIT n``), when asked for.
    example_rows: tuple[tuple[Any, ...], ...] = ()


@dataclass(frozen=True)
class DatabaseSchema:
    #: By name (what every caller and the ``create_table``/``compact`` renderings have always seen).
    tables: tuple[Table, ...]
    #: Table names in the database's own order (creation order on SQLite, the catalog's elsewhere).
    own_order: tuple[str, ...] = ()
    by_name: dict[str, Table] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {t.name.lower(): t for t in self.tables})

    def neighbours(self, name: str) -> set[str]:
        """Tables linked to ``name`` by a foreign key, in either direction."""
        out = {fk.ref_table.lower() for fk in self.by_name[name.lower()].foreign_keys}
        out |= {t.name.lower() for t in self.tables if any(fk.ref_table.lower() == name.lower() for fk in t.foreign_keys)}
        out.discard(name.lower())
        return {n for n in out if n in self.by_name}


def estimate_tokens(text: str) -> int:
    """~3 characters per token: what Qwen's tokenizer gives on schema text (identifiers, types, literals cut
    into short pieces), so budgets err on the safe side; needs no tokenizer download."""
    return math.ceil(len(text) / 3)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _categorical(conn: sqlite3.Connection, table: str, column: str) -> bool:
    """Few distinct values, that repeat or come from a small lookup table: worth showing examples of
    (unlike ids, per-row names, amounts)."""
    distinct, present = conn.execute(
        f"SELECT COUNT(DISTINCT {_q(column)}), COUNT({_q(column)}) FROM {_q(table)}").fetchone()
    return 0 < distinct <= SAMPLE_MAX_DISTINCT and (distinct < present or distinct <= SAMPLE_SMALL_TABLE)


def _sqlite_schema(target: SqliteTarget, samples: int, row_counts: bool, example_rows: int) -> DatabaseSchema:
    conn = sqlite3.connect(f"file:{quote(str(target.path))}?mode=ro", uri=True)
    conn.text_factory = lambda b: b.decode(errors="ignore")
    try:
        tables = []
        found = conn.execute("SELECT name, sql FROM sqlite_master WHERE type IN ('table','view') "
                             "AND name NOT LIKE 'sqlite_%' ORDER BY rowid").fetchall()
        for name, ddl in found:
            info = conn.execute("SELECT name, type, pk, \"notnull\" FROM pragma_table_info(?) ORDER BY cid",
                                (name,)).fetchall()
            fks = tuple(ForeignKey(r[3], r[2], r[4] or "") for r in conn.execute(
                "SELECT id, seq, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?) ORDER BY id, seq", (name,)))
            fk_cols = {fk.column for fk in fks}
            cols = []
            for col, typ, pk, notnull in info:
                vals: tuple[Any, ...] = ()
                if samples and not pk and col not in fk_cols and "BLOB" not in (typ or "").upper() and \
                        _categorical(conn, name, col):
                    vals = tuple(r[0] for r in conn.execute(
                        f"SELECT {_q(col)} FROM {_q(name)} WHERE {_q(col)} IS NOT NULL GROUP BY {_q(col)} "
                        f"ORDER BY COUNT(*) DESC, {_q(col)} LIMIT ?", (samples,)))
                cols.append(Column(col, typ or "", bool(pk), bool(notnull), vals, int(pk or 0)))
            count = conn.execute(f"SELECT COUNT(*) FROM {_q(name)}").fetchone()[0] if row_counts else None
            rows = tuple(conn.execute(f"SELECT * FROM {_q(name)} LIMIT ?", (example_rows,))) if example_rows else ()
            tables.append(Table(name, tuple(cols), fks, count, ddl, rows))
        return DatabaseSchema(tuple(sorted(tables, key=lambda t: t.name)), tuple(t.name for t in tables))
    finally:
        conn.close()


def _generic_schema(target: Target, samples: int, row_counts: bool, example_rows: int) -> DatabaseSchema:
    by_table: dict[str, list[Column]] = {}
    for table, col, typ in target.columns():
        by_table.setdefault(table, []).append(Column(col, typ))
    tables = []
    for name in by_table:
        cols = by_table[name]
        if samples:
            cols = [Column(c.name, c.type, c.primary_key, c.not_null, tuple(r[0] for r in target.execute(
                f"SELECT {_q(c.name)} FROM {_q(name)} WHERE {_q(c.name)} IS NOT NULL GROUP BY {_q(c.name)} "
                f"ORDER BY COUNT(*) DESC, {_q(c.name)} LIMIT {samples}", timeout_s=30, max_rows=samples).rows))
                for c in cols]
        count = target.execute(f"SELECT COUNT(*) FROM {_q(name)}", timeout_s=60, max_rows=1).rows[0][0] \
            if row_counts else None
        rows = tuple(tuple(r) for r in target.execute(f"SELECT * FROM {_q(name)} LIMIT {example_rows}", timeout_s=30,
                                                      max_rows=example_rows).rows) if example_rows else ()
        tables.append(Table(name, tuple(cols), (), count, None, rows))
    return DatabaseSchema(tuple(sorted(tables, key=lambda t: t.name)), tuple(t.name for t in tables))


def introspect(target: Target, samples: int = 0, row_counts: bool = False, example_rows: int = 0) -> DatabaseSchema:
    return _introspect(target.fingerprint(), target, samples, row_counts, example_rows)


@lru_cache(maxsize=32)
def _introspect(_fingerprint: str, target: Target, samples: int, row_counts: bool,
                example_rows: int) -> DatabaseSchema:
    if isinstance(target, SqliteTarget):
        return _sqlite_schema(target, samples, row_counts, example_rows)
    return _generic_schema(target, samples, row_counts, example_rows)


def _clip(text: str) -> str:
    return text if len(text) <= SAMPLE_CHARS else text[: SAMPLE_CHARS - 1] + "…"


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + _clip(value).replace("'", "''") + "'"
    return repr(value)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    text = value if isinstance(value, str) else repr(value) if isinstance(value, bytes) else str(value)
    return _clip(" ".join(text.split()))  # one row per line, whatever the value holds


def render_example_rows(table: Table) -> str:
    """``/* n example rows: … */`` under a table: the header, then one tab-separated line per row."""
    if not table.example_rows:
        return ""
    lines = [f"/*\n{len(table.example_rows)} example rows:", f"SELECT * FROM {table.name} LIMIT {len(table.example_rows)};",
             "\t".join(c.name for c in table.columns)]
    lines += ["\t".join(_cell(v) for v in row) for row in table.example_rows]
    return "\n".join(lines).replace("*/", "* /") + "\n*/"


def render_table(table: Table, settings: SchemaSettings) -> str:
    if settings.style == "ddl" and table.ddl:
        text = table.ddl.strip().rstrip(";") + ";"
    else:
        text = _render_table(table, settings)
    rows = render_example_rows(table) if settings.example_rows else ""
    return text + "\n" + rows if rows else text


def _render_table(table: Table, settings: SchemaSettings) -> str:
    fk_by_col = {fk.column: fk for fk in table.foreign_keys} if settings.include_keys else {}
    composite = sum(1 for c in table.columns if c.pk_position) > 1
    if settings.style == "compact":
        parts = []
        for c in table.columns:
            text = c.name
            if settings.include_keys and c.primary_key:
                text += " PK"
            if c.name in fk_by_col:
                fk = fk_by_col[c.name]
                text += f" → {fk.ref_table}.{fk.ref_column}"
            if c.samples:
                text += " [" + ", ".join(_literal(v) for v in c.samples) + "]"
            parts.append(text)
        tail = f"  -- {table.row_count} rows" if table.row_count is not None else ""
        return f"{table.name}({', '.join(parts)}){tail}"
    lines = []
    for c in table.columns:
        line = f"  {c.name} {c.type}".rstrip()
        if settings.include_keys:
            if c.primary_key and not composite:
                line += " PRIMARY KEY"
            if c.name in fk_by_col:
                fk = fk_by_col[c.name]
                line += f" REFERENCES {fk.ref_table}({fk.ref_column})"
        if c.samples:
            line += ",  -- e.g. " + ", ".join(_literal(v) for v in c.samples)
        else:
            line += ","
        lines.append(line)
    if settings.include_keys and composite:  # a key over several columns is one table constraint
        key = sorted((c for c in table.columns if c.pk_position), key=lambda c: c.pk_position)
        lines.append(f"  PRIMARY KEY ({', '.join(c.name for c in key)})")
    if lines:
        lines[-1] = lines[-1].replace(",  -- e.g.", "  -- e.g.", 1) if "  -- e.g." in lines[-1] else lines[-1].rstrip(",")
    tail = f"  -- {table.row_count} rows" if table.row_count is not None else ""
    return f"CREATE TABLE {table.name} (\n" + "\n".join(lines) + f"\n);{tail}"


def _table_document(table: Table) -> str:
    words = [table.name.replace("_", " ")]
    for c in table.columns:
        words.append(c.name.replace("_", " "))
        words.extend(str(v) for v in c.samples if isinstance(v, str))
    return " ".join(words)


def rank_tables(schema: DatabaseSchema, question: str) -> list[str]:
    """Table names, most relevant to ``question`` first (BM25 over per-table documents)."""
    from t2s.retrieval import bm25_rank

    return bm25_rank([t.name.lower() for t in schema.tables], [_table_document(t) for t in schema.tables], question)


@lru_cache(maxsize=64)
def _rendered(_fingerprint: str, target: Target, settings_json: str
              ) -> tuple[DatabaseSchema, dict[str, str], str, str | None]:
    """(schema in rendering order, each table's text, separator, the whole text if it fits the budget):
    rendered once per database content and settings, not once per question."""
    settings = SchemaSettings.model_validate_json(settings_json)
    schema = introspect(target, settings.sample_values, settings.row_counts, settings.example_rows)
    if settings.style == "ddl" and schema.own_order:  # ddl keeps the database's own table order
        schema = DatabaseSchema(tuple(schema.by_name[n.lower()] for n in schema.own_order), schema.own_order)
    rendered = {t.name.lower(): render_table(t, settings) for t in schema.tables}
    sep = "\n" if settings.style == "compact" else "\n\n"
    full = sep.join(rendered[t.name.lower()] for t in schema.tables)
    fits = estimate_tokens(full) <= settings.max_tokens or len(schema.tables) <= 1
    return schema, rendered, sep, full if fits else None


def build_schema_context(target: Target, settings: SchemaSettings, question: str = "") -> str:
    """The schema text for one question, within ``settings.max_tokens`` where at all possible."""
    schema, rendered, sep, full = _rendered(target.fingerprint(), target, settings.model_dump_json())
    if full is not None:
        return full
    chosen: list[str] = []
    used = 0
    for name in rank_tables(schema, question):
        group = [name, *sorted(schema.neighbours(name))]
        for member in group:
            if member in chosen:
                continue
            cost = estimate_tokens(rendered[member]) + 1
            if used + cost > settings.max_tokens and chosen:
                if member == name:
                    break
                continue
            chosen.append(member)
            used += cost
        if used >= settings.max_tokens:
            break
    order = [t.name.lower() for t in schema.tables if t.name.lower() in chosen]
    return sep.join(rendered[n] for n in order)
