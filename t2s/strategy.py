"""Generation strategies: what the generator does around the model call, declared in the prompt version.

A strategy lives in the prompt version file (``strategy:`` block), not in a separate file: a version is
then one reviewed unit whose content hash, immutability lock, registry entry, ``t2s prompts show/diff``
and served bundle all cover the strategy without a second reference to resolve or keep in step.

- ``single``: one greedy completion (what every version without a ``strategy:`` block does).
- ``repair``: execute the answer on the target (read-only, through :meth:`t2s.execution.Target.execute`);
  when the engine raises, or returns no rows for a question that asks for rows, send the error and the
  columns of the tables the query used back to the model in the same conversation (its prefix is reused by
  the server) and ask for a fix; up to ``repair_rounds`` times.
- ``self_consistency``: the greedy answer plus ``samples - 1`` answers at ``temperature`` with seeds
  ``seed + i`` (deterministic, hence cacheable); each is executed (and repaired when ``repair_rounds`` > 0:
  the combination "sample, repair each, vote"); executed candidates are grouped by result set and a query
  of the largest group wins. Ties go to the group holding the earliest candidate (the greedy one first).

Grouping compares results as the ``t2s`` scoring rules do with row order ignored: a bag of rows, any
column permutation, numbers equal to 10 significant digits (:func:`same_result`).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from t2s.values import canonical_value

#: Column-permutation search is exhaustive only up to this width; wider results must agree positionally.
MAX_PERMUTED_COLUMNS = 6


class StrategySettings(BaseModel):
    """The ``strategy:`` block of a prompt version."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["single", "repair", "self_consistency"] = "single"
    samples: int = Field(1, ge=1, le=16, description="self_consistency: candidates per question, greedy included.")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="self_consistency: temperature of samples 2..k.")
    repair_rounds: int = Field(0, ge=0, le=5, description="Repair rounds per candidate (repair, or sample+repair).")
    repair_on_empty: bool = Field(True, description="Treat an empty result as a failure when the question "
                                                    "asks for rows.")
    timeout_s: float = Field(5.0, gt=0, le=120, description="Execution limit per candidate.")
    max_rows: int = Field(10_000, ge=1, le=1_000_000, description="Row cap per candidate execution.")

    @model_validator(mode="after")
    def _consistent(self) -> StrategySettings:
        if self.kind == "single" and (self.samples != 1 or self.repair_rounds != 0):
            raise ValueError("kind 'single' takes samples: 1 and repair_rounds: 0 (use 'repair' or "
                             "'self_consistency')")
        if self.kind == "repair" and (self.repair_rounds < 1 or self.samples != 1):
            raise ValueError("kind 'repair' needs repair_rounds >= 1 and samples: 1 (sampling and repairing "
                             "each sample is kind 'self_consistency' with repair_rounds)")
        if self.kind == "self_consistency" and (self.samples < 2 or self.temperature <= 0):
            raise ValueError("kind 'self_consistency' needs samples >= 2 and a temperature > 0")
        return self

    @property
    def executes(self) -> bool:
        return self.kind != "single"

    def summary(self) -> str:
        """One line for tables and run params, e.g. ``self_consistency k=5 T=0.7 repair=1``."""
        if self.kind == "single":
            return "single"
        parts = [self.kind]
        if self.samples > 1:
            parts.append(f"k={self.samples} T={self.temperature:g}")
        if self.repair_rounds:
            parts.append(f"repair={self.repair_rounds}")
        return " ".join(parts)


@dataclass
class Candidate:
    """One query the strategy considered: sample ``sample``, after ``round`` repair rounds."""

    sample: int
    round: int
    sql: str | None
    error: str | None  # generation failure class, or the execution error class
    detail: str = ""
    rows: int | None = None  # rows returned when executed
    group: int | None = None  # result group (self_consistency), by first appearance
    tokens: int = 0  # prompt + completion tokens of the model call that wrote it


@dataclass
class StrategyTrace:
    """What a strategy did for one question: every candidate, the vote and the choice."""

    kind: str
    candidates: list[Candidate] = field(default_factory=list)
    votes: list[int] = field(default_factory=list)  # size of each result group, by group number
    chosen: int | None = None  # index into candidates
    model_calls: int = 0
    repair_rounds: int = 0  # repair requests made, over all samples
    executions: int = 0  # queries run on the target (cache hits excluded)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------------------- grouping


def same_result(a: Sequence[Sequence[Any]], b: Sequence[Sequence[Any]]) -> bool:
    """Whether two results are the same answer: bag of rows, any column permutation, 10 significant digits."""
    if not a and not b:
        return True
    if len(a) != len(b) or len(a[0]) != len(b[0]):
        return False
    ca = Counter(tuple(canonical_value(v) for v in row) for row in a)
    rows_b = [tuple(canonical_value(v) for v in row) for row in b]
    if ca == Counter(rows_b):
        return True
    ncols = len(a[0])
    if ncols > MAX_PERMUTED_COLUMNS:
        return False
    for perm in itertools.permutations(range(ncols)):
        if ca == Counter(tuple(row[j] for j in perm) for row in rows_b):
            return True
    return False


def vote(results: Sequence[Sequence[Sequence[Any]] | None]) -> tuple[list[int | None], list[int], int | None]:
    """Group results (None: did not execute) → (group per result, size per group, index of the winner).

    The winner is the first member of the largest group; among equal groups, the one whose first member
    comes earliest. Deterministic: it depends only on the order of ``results``.
    """
    groups: list[int | None] = []
    reps: list[int] = []
    sizes: list[int] = []
    for i, rows in enumerate(results):
        if rows is None:
            groups.append(None)
            continue
        for g, rep in enumerate(reps):
            if same_result(results[rep], rows):  # type: ignore[arg-type]
                groups.append(g)
                sizes[g] += 1
                break
        else:
            groups.append(len(reps))
            reps.append(i)
            sizes.append(1)
    if not reps:
        return groups, sizes, None
    best = max(range(len(reps)), key=lambda g: (sizes[g], -reps[g]))
    return groups, sizes, reps[best]


# ------------------------------------------------------------------------------------------- repair

_NO_ROWS_EXPECTED = re.compile(r"^\s*(is|are|was|were|does|do|did|has|have|had|can|could)\b|\bif any\b",
                               re.IGNORECASE)


def question_implies_rows(question: str) -> bool:
    """Whether an empty result is a sign of a wrong query: yes/no questions and "if any" may be empty."""
    return not _NO_ROWS_EXPECTED.search(question)


# Possessive (++): a name never gives characters back, so an error message holding many near-matches
# costs linear time.
_MISSING_COLUMN = (re.compile(r"no such column: ([\w.$]++)", re.IGNORECASE),  # SQLite
                   re.compile(r'column "?([\w.$]++)"? does not exist', re.IGNORECASE),  # PostgreSQL
                   re.compile(r'Referenced column "([\w.$]++)" not found', re.IGNORECASE))  # DuckDB


def missing_column(detail: str) -> str | None:
    """The column an engine error says does not exist (without its table qualifier), or None."""
    for pattern in _MISSING_COLUMN:
        m = pattern.search(detail)
        if m:
            return m.group(1).rsplit(".", 1)[-1]
    return None


def column_hint(column: str, columns_by_table: dict[str, list[str]]) -> str:
    """Where a column the model invented really lives: the strongest repair hint for a small model."""
    owners = [t for t, cols in columns_by_table.items() if column.lower() in (c.lower() for c in cols)]
    if owners:
        return (f"`{column}` is a column of {', '.join(owners)} only: join that table, or take the value from "
                "a column that exists.")
    return f"No table has a column named `{column}`: use only columns listed in the schema."


def repair_message(error_class: str, detail: str, table_columns: dict[str, list[str]], empty: bool,
                   hints: Sequence[str] = ()) -> str:
    """The user turn asking for a fix: the engine's error (or the empty result), hints and the relevant columns."""
    if empty:
        problem = ("The query ran but returned no rows, and the question expects some. Check the filter values "
                   "against the example values in the schema and the join conditions.")
    else:
        problem = f"The query failed on the database: {error_class}: {detail.strip()[:400]}"
    lines = [problem, *hints]
    if table_columns:
        lines.append("Columns of the tables involved (use only these, spelled exactly):")
        lines += [f"- {table}({', '.join(cols)})" for table, cols in table_columns.items()]
    lines.append("Write a corrected query. Answer with one SQL query in a ```sql code block and nothing else.")
    return "\n".join(lines)


def tables_in(sql: str | None, table_names: Sequence[str]) -> list[str]:
    """Schema tables named in ``sql`` (word match, case-insensitive), in schema order."""
    if not sql:
        return []
    return [t for t in table_names if re.search(rf"(?<![\w.]){re.escape(t)}(?!\w)", sql, re.IGNORECASE)]
