"""Golden-set validation: great-expectations on the question table, then SQL checks on every gold query.

Errors (the dataset cannot be evaluated): missing/null required fields, duplicate ids, unknown difficulty,
category, dialect or db_id, malformed JSON lines, gold SQL that does not parse, is refused by the guard,
fails or times out on any database, or references tables/columns that do not exist.
Warnings (flagged for a person to look at): empty gold result, non-deterministic gold (``ORDER BY … LIMIT``
with ties at the cut, ``LIMIT`` without ``ORDER BY``, random/current-time functions).

The report is stored under the cache directory by dataset version; scoring refuses a version whose
stored report failed.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from sqlglot import exp

from t2s.datasets import (
    CATEGORIES,
    DIFFICULTIES,
    MANIFEST,
    QUESTIONS,
    Dataset,
    GoldExample,
    load_manifest,
    open_dbs,
)
from t2s.errors import DatasetError, SqlError
from t2s.execution import Target
from t2s.guard import guard_select, to_dialect

REQUIRED = ("id", "question", "gold_sql", "db_id", "difficulty", "category")
NONDETERMINISTIC_FUNCS = frozenset({"random", "randomblob", "rand", "newid", "now", "getdate", "sysdatetime",
                                    "current_timestamp", "current_date", "current_time", "uuid", "gen_random_uuid"})


class ValidationIssue(BaseModel):
    line: int | None = None
    id: str | None = None
    check: str
    severity: Literal["error", "warning"]
    message: str


class ValidationReport(BaseModel):
    dataset: str
    version: str
    items: int
    ok: bool
    errors: int
    warnings: int
    issues: list[ValidationIssue]
    checked_at: str


def _read_rows(path: Path) -> tuple[list[dict[str, Any]], list[ValidationIssue]]:
    rows, issues = [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            issues.append(ValidationIssue(line=lineno, check="json", severity="error", message=f"not JSON: {exc.msg}"))
            continue
        if not isinstance(obj, dict):
            issues.append(ValidationIssue(line=lineno, check="json", severity="error", message="not a JSON object"))
            continue
        rows.append({"_line": lineno, **obj})
    return rows, issues


def _expectation_issues(rows: list[dict[str, Any]], db_ids: list[str]) -> list[ValidationIssue]:
    """Table-level checks with great-expectations (imported here: it costs seconds)."""
    import warnings

    import pandas as pd

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig
        from sqlglot.dialects.dialect import Dialect

    df = pd.DataFrame(rows)
    for col in (*REQUIRED, "dialect"):
        if col not in df.columns:
            df[col] = None
    df["id"] = df["id"].astype("object")
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (ctx.data_sources.add_pandas("golden").add_dataframe_asset(name="questions")
             .add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": df}))
    E = gx.expectations
    known_dialects = sorted(d for d in Dialect.classes if d)
    checks: list[tuple[str, Any]] = [(f"required:{c}", E.ExpectColumnValuesToNotBeNull(column=c)) for c in REQUIRED]
    checks += [
        ("unique_id", E.ExpectColumnValuesToBeUnique(column="id")),
        ("difficulty", E.ExpectColumnValuesToBeInSet(column="difficulty", value_set=list(DIFFICULTIES))),
        ("category", E.ExpectColumnValuesToBeInSet(column="category", value_set=list(CATEGORIES))),
        ("db_id", E.ExpectColumnValuesToBeInSet(column="db_id", value_set=db_ids)),
        ("dialect", E.ExpectColumnValuesToBeInSet(column="dialect", value_set=known_dialects)),
        ("question_length", E.ExpectColumnValueLengthsToBeBetween(column="question", min_value=5, max_value=2000)),
    ]
    suite = ctx.suites.add(gx.ExpectationSuite(name="golden", expectations=[e for _, e in checks]))
    result = batch.validate(suite, result_format={"result_format": "COMPLETE",
                                                  "unexpected_index_column_names": ["_line", "id"]})
    by_type = {(e.expectation_type, e.column): n for n, e in checks}
    issues: list[ValidationIssue] = []
    for r in result.results:
        if r.success:
            continue
        cfg = r.expectation_config
        name = by_type.get((cfg.type, cfg.kwargs.get("column")), cfg.type)
        col = cfg.kwargs.get("column")
        for hit in r.result.get("unexpected_index_list") or [{}]:
            value = hit.get(col)
            item = hit.get("id")
            issues.append(ValidationIssue(
                line=int(hit["_line"]) if "_line" in hit else None,
                id=None if item is None or item != item else str(item), check=name, severity="error",
                message=f"{col}: unexpected value {value!r}" if "required" not in name
                else f"{col} is missing or null"))
    return issues


def _nondeterminism(tree: exp.Query) -> str | None:
    for fn in tree.find_all(exp.Func):
        name = (fn.name if isinstance(fn, exp.Anonymous) else fn.sql_name()).lower()
        if name in NONDETERMINISTIC_FUNCS or isinstance(fn, exp.Rand | exp.CurrentDate | exp.CurrentTimestamp):
            return f"uses {name}(), whose result changes between runs"
    if tree.args.get("limit") is not None and tree.args.get("order") is None:
        return "LIMIT without ORDER BY returns arbitrary rows"
    return None


def _ties_at_cut(tree: exp.Query, target: Target, dialect: str, timeout_s: float) -> str | None:
    """For ``ORDER BY … LIMIT n``: do rows n and n+1 share their sort keys? Then the gold picks arbitrarily."""
    if not isinstance(tree, exp.Select) or tree.args.get("order") is None or tree.args.get("limit") is None:
        return None
    limit = tree.args["limit"].expression
    offset = tree.args.get("offset")
    if not isinstance(limit, exp.Literal) or (offset is not None and not isinstance(offset.expression, exp.Literal)):
        return None
    n = int(limit.name)
    skip = int(offset.expression.name) if offset is not None else 0
    probe = tree.copy()
    probe.set("limit", None)
    probe.set("offset", None)
    keys = [o.this.copy() for o in probe.args["order"].expressions]
    # Order keys may be output aliases or positions; resolve them against the projections.
    aliases = {p.alias_or_name.lower(): p for p in probe.expressions}
    resolved = []
    for k in keys:
        if isinstance(k, exp.Literal) and k.is_int and 0 < int(k.name) <= len(probe.expressions):
            resolved.append(probe.expressions[int(k.name) - 1].unalias().copy())
        elif isinstance(k, exp.Column) and not k.table and k.name.lower() in aliases:
            resolved.append(aliases[k.name.lower()].unalias().copy())
        else:
            resolved.append(k)
    base = len(probe.expressions)
    for i, k in enumerate(resolved):
        probe = probe.select(exp.alias_(k, f"__t2s_key{i}"), copy=False)
    probe = probe.limit(2, copy=False).offset(skip + n - 1, copy=False)
    try:
        rows = target.execute(probe.sql(dialect=target.dialect), timeout_s=timeout_s, max_rows=2).rows
    except SqlError:
        return None
    if len(rows) == 2 and rows[0][base:] == rows[1][base:]:
        return f"ORDER BY … LIMIT {n} cuts through tied sort keys {rows[0][base:]!r}: which rows come back is arbitrary"
    return None


def _sql_issues(ex: GoldExample, line: int, targets: list[Target], timeout_s: float) -> list[ValidationIssue]:
    def issue(check: str, severity: Literal["error", "warning"], message: str) -> ValidationIssue:
        return ValidationIssue(line=line, id=ex.id, check=check, severity=severity, message=message)

    try:
        tree = guard_select(ex.gold_sql, ex.dialect)
    except SqlError as exc:
        return [issue("gold_parses", "error", f"gold SQL ({ex.dialect}): {exc}")]
    issues = []
    primary = targets[0]
    try:
        sql = to_dialect(tree, ex.gold_sql, ex.dialect, primary.dialect)
    except Exception as exc:  # sqlglot cannot express it in the engine's dialect
        return [issue("gold_transpiles", "error", f"cannot transpile {ex.dialect} → {primary.dialect}: {exc}")]
    empty = False
    for target in targets:
        try:
            result = target.execute(sql, timeout_s=timeout_s, max_rows=100_000)
        except SqlError as exc:
            check = {"unknown_table": "references_schema", "unknown_column": "references_schema",
                     "timeout": "gold_timeout"}.get(exc.error_class, "gold_executes")
            return [issue(check, "error", f"gold SQL fails ({exc.error_class}): {exc}")]
        empty = empty or not result.rows
    if empty:
        issues.append(issue("non_empty", "warning", "gold result is empty: any query returning nothing matches"))
    why = _nondeterminism(tree) or _ties_at_cut(tree, primary, primary.dialect, timeout_s)
    if why is not None:
        issues.append(issue("deterministic", "warning", why))
    return issues


def report_path(cache_dir: Path, dataset: str, version: str) -> Path:
    return cache_dir / "validation" / f"{dataset}-{version}.json"


def validate_dataset(root: str | Path, *, timeout_s: float = 10.0, cache_dir: Path | None = None,
                     postgres_dsn: str | None = None, on_progress: Any = None) -> ValidationReport:
    """Validate every row and gold query; never stops at the first bad row."""
    root = Path(root)
    manifest = load_manifest(root)
    qpath = root / QUESTIONS
    if not qpath.is_file():
        raise DatasetError(f"missing {QUESTIONS}", file=qpath)
    rows, issues = _read_rows(qpath)
    issues += _expectation_issues(rows, sorted(manifest.databases)) if rows else [
        ValidationIssue(check="non_empty_dataset", severity="error", message="dataset has no questions")]
    bad_lines = {i.line for i in issues if i.severity == "error"}
    dataset = Dataset(root, manifest, [])
    targets: dict[str, list[Target]] = {}
    try:
        for row in rows:
            line = row.pop("_line")
            if on_progress:
                on_progress(1)
            if line in bad_lines:
                continue
            try:
                ex = GoldExample.model_validate(row)
            except Exception as exc:
                issues.append(ValidationIssue(line=line, id=str(row.get("id")), check="schema", severity="error",
                                              message=str(exc).splitlines()[-1].strip()))
                continue
            if ex.db_id not in targets:
                try:
                    targets[ex.db_id] = open_dbs(dataset, ex.db_id, postgres_dsn)
                except Exception as exc:
                    raise DatasetError(f"database for db_id {ex.db_id!r} cannot be opened: {exc}",
                                       file=root / MANIFEST) from exc
            issues += _sql_issues(ex, line, targets[ex.db_id], timeout_s)
    finally:
        for ts in targets.values():
            for t in ts:
                t.close()
    errors = sum(i.severity == "error" for i in issues)
    try:
        version = Dataset(root, manifest, []).version()
    except OSError:
        version = "unavailable"
    report = ValidationReport(dataset=manifest.name, version=version, items=len(rows), ok=errors == 0,
                              errors=errors, warnings=len(issues) - errors,
                              issues=sorted(issues, key=lambda i: (i.line or 0, i.check)),
                              checked_at=datetime.now(UTC).isoformat(timespec="seconds"))
    if cache_dir is not None and version != "unavailable":
        store_report(report, cache_dir)
    return report


def store_report(report: ValidationReport, cache_dir: Path) -> Path:
    from t2s.fileio import write_text_atomic

    path = report_path(cache_dir, report.dataset, report.version)
    write_text_atomic(path, report.model_dump_json(indent=2))
    return path


def require_not_failed(dataset: Dataset, cache_dir: Path) -> None:
    """Refuse a dataset version whose stored validation report failed."""
    path = report_path(cache_dir, dataset.name, dataset.version())
    if path.is_file():
        report = ValidationReport.model_validate_json(path.read_text(encoding="utf-8"))
        if not report.ok:
            first = next(i for i in report.issues if i.severity == "error")
            raise DatasetError(
                f"this dataset version failed validation ({report.errors} errors; first: line {first.line}, "
                f"id {first.id!r}: {first.message}). Fix it and run 't2s datasets validate', "
                "or pass --allow-invalid", file=dataset.root)
