"""Prediction files: Spider's one-SQL-per-line format, or JSONL ``{"id", "sql"}``."""

from __future__ import annotations

import json
from pathlib import Path

from t2s.datasets import Dataset
from t2s.errors import PredictionsError


def load_predictions(path: str | Path, dataset: Dataset) -> dict[str, str | None]:
    """Map every dataset id to its predicted SQL (None when the file has none for it).

    JSONL is chosen when the first non-blank line is a JSON object; otherwise each line is one prediction
    in dataset order (text after a TAB is ignored, as Spider's scorer does) and the line count must equal
    the number of questions.
    """
    path = Path(path)
    if not path.is_file():
        raise PredictionsError("predictions file not found", file=path)
    text = path.read_text(encoding="utf-8")
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if first.lstrip().startswith("{"):
        return _load_jsonl(path, text, dataset)
    return _load_lines(path, text, dataset)


def _load_jsonl(path: Path, text: str, dataset: Dataset) -> dict[str, str | None]:
    preds: dict[str, str | None] = dict.fromkeys(dataset.by_id)
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PredictionsError(f"not valid JSON ({exc.msg})", file=path, line=lineno) from exc
        if not isinstance(obj, dict) or "id" not in obj or "sql" not in obj:
            raise PredictionsError('each line must be an object with "id" and "sql"', file=path, line=lineno)
        item_id, sql = str(obj["id"]), obj["sql"]
        if sql is not None and not isinstance(sql, str):
            raise PredictionsError('"sql" must be a string or null', file=path, line=lineno, item_id=item_id)
        if item_id not in preds:
            raise PredictionsError(f"id not in dataset {dataset.name!r}", file=path, line=lineno, item_id=item_id)
        if item_id in seen:
            raise PredictionsError(f"duplicate id (first on line {seen[item_id]})", file=path, line=lineno,
                                   item_id=item_id)
        seen[item_id] = lineno
        preds[item_id] = sql
    return preds


def _load_lines(path: Path, text: str, dataset: Dataset) -> dict[str, str | None]:
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) != len(dataset):
        raise PredictionsError(
            f"{len(lines)} lines but dataset {dataset.name!r} has {len(dataset)} questions; a line-per-query "
            "file must have one line per question in dataset order (or use JSONL with ids)", file=path)
    return {ex.id: (line.split("\t", 1)[0].strip() or None) for ex, line in zip(dataset.examples, lines, strict=True)}


def gold_as_predictions(dataset: Dataset) -> dict[str, str | None]:
    """Each item's own gold SQL, in the engine's dialect: scoring it checks the dataset and the scorer
    (every item should match itself)."""
    from t2s.errors import SqlError
    from t2s.execution import ENGINE_DIALECT
    from t2s.guard import checked_for

    engine = ENGINE_DIALECT[dataset.manifest.engine]
    preds: dict[str, str | None] = {}
    for ex in dataset.examples:
        try:
            preds[ex.id] = checked_for(ex.gold_sql, ex.dialect, engine)
        except SqlError:
            preds[ex.id] = ex.gold_sql
    return preds
