"""Terminal tables of one scoring's metrics (overall, by difficulty, by category, errors) for `t2s score`."""

from __future__ import annotations

from rich.table import Table

from evals.metrics import Bucket, Metrics


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _bucket_table(title: str, buckets: dict[str, Bucket]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(title.split()[-1])
    table.add_column("items", justify="right")
    table.add_column("correct", justify="right")
    table.add_column("execution accuracy", justify="right")
    for name, b in buckets.items():
        table.add_row(name, str(b.count), str(b.correct), _pct(b.accuracy))
    return table


def metrics_tables(m: Metrics) -> list[Table]:
    overall = Table(title="Overall", title_justify="left")
    for col in ("items", "execution accuracy", "exact match (normalized)", "valid SQL"):
        overall.add_column(col, justify="right")
    exact = "not computed (--exact-match)" if m.exact_match is None else _pct(m.exact_match)
    overall.add_row(str(m.count), _pct(m.execution_accuracy), exact, _pct(m.valid_sql_rate))
    tables = [overall, _bucket_table("By difficulty", m.by_difficulty), _bucket_table("By category", m.by_category)]
    if m.error_rates:
        errors = Table(title="Errors", title_justify="left")
        errors.add_column("error class")
        errors.add_column("items", justify="right")
        errors.add_column("share", justify="right")
        for name, rate in m.error_rates.items():
            errors.add_row(name, str(round(rate * m.count)), _pct(rate))
        tables.append(errors)
    return tables
