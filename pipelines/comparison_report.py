"""Comparison report of an evaluation sweep: leaderboard against the champion, chart and HTML page.

- :func:`leaderboard`: one row per variant, ranked by execution accuracy, with what an answer costs when
  served (p95 latency, model calls, tokens, cost; :mod:`evals.budget`) and whether that fits the serving
  budget, and the paired comparison and the gate verdict against the champion; rendered by
  :func:`leaderboard_table` (terminal: the headline columns in 100 characters),
  :func:`write_leaderboard_markdown` (every column) and :func:`write_leaderboard_json`.
- :func:`difficulty_chart`: accuracy by difficulty per variant (PNG).
- :func:`write_html_report`: one self-contained static HTML page (inline CSS, chart as base64 PNG, the
  accuracy-against-cost Pareto fronts as inline SVG: :mod:`pipelines.pareto`) with the leaderboard, the gate
  verdict of the best challenger, the per-question diff and the prompt diff.

matplotlib is imported inside the chart function and drives the Agg canvas directly (no pyplot state).
"""

from __future__ import annotations

import base64
import difflib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table

from evals.budget import check_budget, serving_cost
from evals.gate import GateDecision, GatePolicy, decide, fmt_p
from evals.records import EvalItem, VariantRun
from evals.stats import Comparison, bucket_order
from t2s.datasets import DIFFICULTIES
from t2s.fileio import write_text_atomic

__all__ = ["difficulty_chart", "leaderboard", "leaderboard_table", "write_html_report",
           "write_leaderboard_json", "write_leaderboard_markdown"]


# ---------------------------------------------------------------------------------------------- leaderboard

@dataclass
class _Entry:
    row: dict[str, Any]
    run: VariantRun
    decision: GateDecision | None
    error: str | None = None


def _rate(items: list[EvalItem], attr: str) -> float:
    return sum(bool(getattr(i, attr)) for i in items) / len(items) if items else 0.0


def _by_difficulty(run: VariantRun) -> dict[str, float]:
    groups: dict[str, list[EvalItem]] = {}
    for item in run.items:
        groups.setdefault(item.difficulty, []).append(item)
    if not groups:  # no items kept: fall back to the logged metrics
        prefix = "execution_accuracy/"
        keys = {k[len(prefix):] for k in run.metrics if k.startswith(prefix) and "/" not in k[len(prefix):]}
        return {k: run.metrics[prefix + k] for k in bucket_order(keys, "difficulty")}
    return {k: _rate(groups[k], "match") for k in bucket_order(set(groups), "difficulty")}


def _by_dataset(run: VariantRun) -> dict[str, float]:
    """Accuracy on each dataset of a pooled run (empty for a run on one dataset)."""
    groups: dict[str, list[EvalItem]] = {}
    for item in run.items:
        if item.dataset:
            groups.setdefault(item.dataset, []).append(item)
    return {k: _rate(v, "match") for k, v in groups.items()} if len(groups) > 1 else {}


def _metric(run: VariantRun, attr: str, key: str) -> float | None:
    """The rate of ``attr`` over the items (None when an item did not compute it), else the logged metric."""
    if run.items:
        return None if any(getattr(i, attr) is None for i in run.items) else _rate(run.items, attr)
    if key in run.metrics:
        return float(run.metrics[key])
    return None if key == "exact_match" else 0.0  # exact match is optional: not logged means not computed


def _entries(variants: Sequence[VariantRun], champion: VariantRun | None, policy: GatePolicy) -> list[_Entry]:
    pool = list(variants)
    if champion is not None and all(v.variant != champion.variant for v in pool):
        pool.append(champion)  # the champion always has its row on the board
    if not pool:
        raise ValueError("no variants to rank")
    entries: list[_Entry] = []
    for run in pool:
        is_champion = champion is not None and run.variant == champion.variant
        cost = serving_cost(run) if run.items else None
        budget = check_budget(run, policy.budget) if run.items else None
        row: dict[str, Any] = {
            "rank": 0, "variant": run.variant, "prompt": run.prompt, "model": run.model,
            "provider": run.provider, "dataset": run.dataset, "dataset_version": run.dataset_version,
            "run_id": run.run_id, "n": len(run.items) or int(run.metrics.get("count", 0)),
            "execution_accuracy": _metric(run, "match", "execution_accuracy"),
            "by_difficulty": _by_difficulty(run), "by_dataset": _by_dataset(run),
            "exact_match": _metric(run, "exact_match", "exact_match"),
            "valid_sql_rate": _metric(run, "valid_sql", "valid_sql_rate"),
            "latency_p50_s": cost.p50_latency_s if cost is not None else run.metrics.get("latency_p50_s"),
            "latency_p95_s": cost.p95_latency_s if cost is not None else run.metrics.get("latency_p95_s"),
            "model_calls_per_question": cost.model_calls_per_answer if cost is not None
            else run.metrics.get("model_calls_per_question"),
            "tokens_per_answer": cost.tokens_per_answer if cost is not None else run.metrics.get("tokens_per_question"),
            "cost_per_1k_answers_usd": cost.cost_per_1k_answers_usd if cost is not None
            else run.metrics.get("cost_per_1k_answers_usd"),
            "budget": None if budget is None else "within" if budget.within else "unmeasured" if budget.missing
            else "over",
            "budget_reason": budget.reason if budget is not None else None,
            "is_champion": is_champion, "champion": champion.variant if champion is not None else None,
            "diff": None, "ci_low": None, "ci_high": None, "confidence": policy.confidence, "b": None,
            "c": None, "p_value": None, "gate": None, "gate_reasons": [], "comparison_error": None,
        }
        decision: GateDecision | None = None
        error: str | None = None
        if champion is not None and not is_champion:
            try:
                decision = decide(run, champion, policy)
            except ValueError as exc:  # not evaluated on the same items: no verdict, but keep the row
                error = str(exc)
                row["comparison_error"] = error
            if decision is not None and decision.comparison is not None:
                o = decision.comparison.overall
                row |= {"diff": o.diff, "ci_low": o.ci_low, "ci_high": o.ci_high, "b": o.b, "c": o.c,
                        "p_value": o.p_value, "gate": decision.verdict, "gate_reasons": list(decision.reasons)}
        entries.append(_Entry(row, run, decision, error))
    entries.sort(key=lambda e: (-e.row["execution_accuracy"], -e.row["valid_sql_rate"], e.row["variant"]))
    for rank, e in enumerate(entries, 1):
        e.row["rank"] = rank
    return entries


def leaderboard(variants: list[VariantRun], champion: VariantRun | None,
                policy: GatePolicy | None = None) -> list[dict[str, Any]]:
    """Rows ranked by execution accuracy (desc), then valid-SQL rate (desc), then variant name.

    Each row has rank, variant, prompt, model, execution_accuracy, by_difficulty ({difficulty: accuracy}),
    exact_match, valid_sql_rate, what an answer costs (latency_p50_s, latency_p95_s — the serving budget's
    p95, None when not every answer's latency was measured —, model_calls_per_question, tokens_per_answer,
    cost_per_1k_answers_usd), the serving budget's verdict (budget: ``"within"``/``"over"``/``"unmeasured"``,
    None without a budget; budget_reason) and, against the champion (when given, for every other variant):
    diff, ci_low, ci_high, b, c, p_value and the gate verdict (``"pass"``/``"fail"``) with its reasons under
    ``policy``. The champion gets a row (``is_champion``) even when it is not among ``variants``.
    """
    return [e.row for e in _entries(variants, champion, policy or GatePolicy())]


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _secs(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}s"


def _difficulty_columns(rows: list[dict[str, Any]]) -> list[str]:
    keys: set[str] = set()
    for r in rows:
        keys |= set(r["by_difficulty"])
    return bucket_order(keys, "difficulty")


def _vs_champion(row: dict[str, Any]) -> tuple[str, str, str, str]:
    if row["is_champion"]:
        return "champion", "", "", ""
    if row["comparison_error"]:
        return "not comparable", "", "", ""
    if row["diff"] is None:
        return "", "", "", ""
    ci = f"{100 * row['ci_low']:+.1f} to {100 * row['ci_high']:+.1f}"
    return f"{100 * row['diff']:+.1f} pts", ci, fmt_p(row["p_value"]), row["gate"]


def _ci_header(rows: list[dict[str, Any]]) -> str:
    conf = rows[0]["confidence"] if rows else 0.95
    return f"{round(100 * conf):g}% CI"


def _num(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def _usd(x: float | None) -> str:
    return "–" if x is None else f"${x:,.3g}" if x else "$0"


def _priced(rows: list[dict[str, Any]]) -> bool:
    """Whether any variant has a non-zero cost (a local model's answers cost nothing per token)."""
    return any(r.get("cost_per_1k_answers_usd") for r in rows)


def _has_budget(rows: list[dict[str, Any]]) -> bool:
    return any(r.get("budget") for r in rows)


def _table_cells(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Every column, for the Markdown file and the HTML report."""
    diffs = _difficulty_columns(rows)
    datasets = list(dict.fromkeys(d for r in rows for d in r.get("by_dataset") or {}))
    exact = any(r["exact_match"] is not None for r in rows)
    priced, budgeted = _priced(rows), _has_budget(rows)
    header = ["#", "variant", "model", "exec acc", *datasets, *diffs, *["exact match"] * exact, "valid SQL",
              "p50", "p95", "calls/q", "tokens/q", *["$/1k answers"] * priced, *["budget"] * budgeted,
              "Δ vs champion", _ci_header(rows), "McNemar p", "gate"]
    body = []
    for r in rows:
        body.append([str(r["rank"]), r["variant"] + (" ★" if r["is_champion"] else ""), r["model"],
                     _pct(r["execution_accuracy"]), *(_pct((r.get("by_dataset") or {}).get(d)) for d in datasets),
                     *(_pct(r["by_difficulty"].get(d)) for d in diffs),
                     *[_pct(r["exact_match"])] * exact, _pct(r["valid_sql_rate"]), _secs(r["latency_p50_s"]),
                     _secs(r["latency_p95_s"]), _num(r["model_calls_per_question"], ".2f"),
                     _num(r.get("tokens_per_answer"), ",.0f"), *[_usd(r.get("cost_per_1k_answers_usd"))] * priced,
                     *[r.get("budget") or "–"] * budgeted, *_vs_champion(r)])
    return header, body


def short_names(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Short, unique labels for the variants of ``rows``: ``v6`` when every variant shares its prompt name and
    model, else with the prompt name and/or model kept (``sql-analyst v6 · gpt-4o-mini``)."""
    parts = {r["variant"]: (r["prompt"].partition("@")[0], r["prompt"].partition("@")[2], r["model"]) for r in rows}
    names = {p[0] for p in parts.values()}
    models = {p[2] for p in parts.values()}
    out = {}
    for variant, (name, version, model) in parts.items():
        label = f"v{version}" if len(names) == 1 else f"{name} v{version}"
        if len(models) > 1:
            label += f" · {model if len(model) <= 18 else model[:17] + '…'}"
        out[variant] = label
    if len(set(out.values())) < len(out):  # shortened models collide: the full variant names then
        return {v: v for v in out}
    return out


def _terminal_cells(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]], str]:
    """The headline columns (rank, short id, accuracy overall and per dataset, what an answer costs, budget,
    the comparison with the champion) and a caption naming what the short ids leave out."""
    short = short_names(rows)
    datasets = list(dict.fromkeys(d for r in rows for d in r.get("by_dataset") or {}))
    priced, budgeted = _priced(rows), _has_budget(rows)
    compared = any(r["diff"] is not None or r["comparison_error"] for r in rows)
    header = ["#", "variant", "acc", *datasets, "valid", "p95 s", "calls", "tok/q", *["$/1k"] * priced,
              *["budget"] * budgeted, *["Δ pts", "p", "gate"] * compared]
    body = []
    for r in rows:
        vs = []
        if compared:
            if r["is_champion"]:
                vs = ["", "", "champ"]
            elif r["comparison_error"]:
                vs = ["", "", "n/c"]
            elif r["diff"] is None:
                vs = ["", "", ""]
            else:
                vs = [f"{100 * r['diff']:+.1f}", fmt_p(r["p_value"]), r["gate"]]
        body.append([str(r["rank"]), short[r["variant"]] + (" ★" if r["is_champion"] else ""),
                     _pct(r["execution_accuracy"]), *(_pct((r.get("by_dataset") or {}).get(d)) for d in datasets),
                     "–" if r["valid_sql_rate"] is None else f"{100 * r['valid_sql_rate']:.0f}%",
                     _num(r["latency_p95_s"], ".2f"), _num(r["model_calls_per_question"], ".2f"),
                     _num(r.get("tokens_per_answer"), ".0f"), *[_usd(r.get("cost_per_1k_answers_usd"))] * priced,
                     *[r.get("budget") or "–"] * budgeted, *vs])
    prompts = sorted({r["prompt"].partition("@")[0] for r in rows})
    models = sorted({r["model"] for r in rows})
    caption = (f"prompt {', '.join(prompts)} · model {', '.join(models)}"
               + ("; ★ champion" if any(r["is_champion"] for r in rows) else ""))
    return header, body, caption


def leaderboard_table(rows: list[dict[str, Any]], title: str = "Leaderboard (execution accuracy)") -> Group:
    """The leaderboard for a terminal or a log: the headline columns, no borders, within 100 characters for up
    to two datasets (the Markdown file and the HTML report have every column), and a line naming what the
    short variant ids leave out."""
    from rich import box
    from rich.text import Text

    header, body, caption = _terminal_cells(rows)
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0),
                  show_edge=False)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 1 or name in ("gate", "budget") else "right",
                         overflow="fold" if i == 1 else "ellipsis", no_wrap=i != 1)
    colour = {"pass": "[green]pass[/]", "fail": "[red]fail[/]", "over": "[red]over[/]", "within": "[green]within[/]",
              "unmeasured": "[yellow]unmeasured[/]"}
    for cells in body:
        table.add_row(*(colour.get(c, _rich_escape(c)) if header[i] in ("gate", "budget") else _rich_escape(c)
                        for i, c in enumerate(cells)))
    return Group(table, Text(caption))


def _rich_escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def write_leaderboard_markdown(rows: list[dict[str, Any]], path: Path) -> Path:
    path = Path(path)
    header, body = _table_cells(rows)
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |",
             "|" + "|".join("---" if i in (1, 2) or h == "gate" else "---:" for i, h in enumerate(header)) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in cells) + " |" for cells in body]
    champion = next((r["variant"] for r in rows if r["is_champion"]), None)
    foot = [f"★ champion: {_md_cell(champion)}." if champion else "No champion: no paired comparison."]
    write_text_atomic(path, "\n".join(lines) + "\n\n" + " ".join(foot) + "\n")
    return path


def write_leaderboard_json(rows: list[dict[str, Any]], path: Path) -> Path:
    path = Path(path)
    write_text_atomic(path, json.dumps(rows, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    return path


# ------------------------------------------------------------------------------------------------- chart

def _write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _chart_png(variants: Sequence[VariantRun]) -> bytes:
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    if not variants:
        raise ValueError("no variants to chart")
    per_variant = [_by_difficulty(v) for v in variants]
    diffs = bucket_order(set().union(*per_variant), "difficulty")
    groups = ["overall", *diffs]
    counts = []
    for d in diffs:
        ns = {sum(1 for i in v.items if i.difficulty == d) for v in variants}
        counts.append(f"\n(n={ns.pop()})" if len(ns) == 1 and 0 not in ns else "")
    totals = {len(v.items) for v in variants}
    labels = ["overall" + (f"\n(n={next(iter(totals))})" if len(totals) == 1 and 0 not in totals else "")]
    labels += [d + c for d, c in zip(diffs, counts, strict=True)]

    k = len(variants)
    width = 0.8 / k
    fig = Figure(figsize=(max(7.0, 1.5 + len(groups) * (0.45 * k + 0.5)), 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = [f"C{i % 10}" for i in range(k)]
    for j, (run, accs) in enumerate(zip(variants, per_variant, strict=True)):
        overall = _metric(run, "match", "execution_accuracy")
        values = [overall, *(accs.get(d, 0.0) for d in diffs)]
        xs = [g + (j - (k - 1) / 2) * width for g in range(len(groups))]
        bars = ax.bar(xs, values, width * 0.92, label=run.variant, color=colors[j])
        if k <= 4:
            ax.bar_label(bars, labels=[f"{100 * v:.0f}" for v in values], fontsize=8, padding=2)
    ax.set_xticks(range(len(groups)), labels)
    ax.set_ylim(0, 1.08)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("execution accuracy")
    ax.set_title("Execution accuracy by difficulty")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=min(k, 2), fontsize=8, frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def difficulty_chart(variants: Sequence[VariantRun], path: Path) -> Path:
    """Grouped bar chart (PNG): execution accuracy overall and by difficulty, one bar per variant."""
    path = Path(path)
    _write_bytes_atomic(path, _chart_png(variants))
    return path


# -------------------------------------------------------------------------------------------------- HTML

_CSS = """
:root { --ok: #1a7f37; --bad: #cf222e; --muted: #57606a; --line: #d0d7de; --bg2: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2328;
       margin: 0 auto; padding: 24px; max-width: 1400px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 32px 0 8px;
     border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.meta { color: var(--muted); margin: 0 0 16px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; vertical-align: top; }
th { background: var(--bg2); text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.champion td { background: #fff8c5; }
.verdict { display: inline-block; padding: 2px 10px; border-radius: 12px; color: #fff; font-weight: 600; }
.verdict.pass { background: var(--ok); } .verdict.fail { background: var(--bad); }
.verdict.first { background: #0969da; }
.ok { color: var(--ok); font-weight: 600; } .bad { color: var(--bad); font-weight: 600; }
pre { margin: 0; white-space: pre-wrap; word-break: break-word; font: 12px/1.4 ui-monospace, Menlo, Consolas,
      monospace; }
.item { border: 1px solid var(--line); border-radius: 6px; margin: 10px 0; padding: 8px; }
.item .q { font-weight: 600; margin-bottom: 6px; }
.item table { width: 100%; table-layout: fixed; } .item th:first-child { width: 90px; }
.tag { display: inline-block; background: var(--bg2); border: 1px solid var(--line); border-radius: 10px;
       padding: 0 8px; font-size: 12px; color: var(--muted); margin-right: 4px; font-weight: normal; }
.detail { color: var(--muted); font-size: 12px; }
details > summary { cursor: pointer; font-weight: 600; margin: 8px 0; }
pre.diff { background: var(--bg2); border: 1px solid var(--line); border-radius: 6px; padding: 8px; }
pre.diff .add { background: #dafbe1; color: #116329; display: block; }
pre.diff .del { background: #ffebe9; color: #82071e; display: block; }
pre.diff .hunk { color: #0550ae; display: block; } pre.diff .file { font-weight: 600; display: block; }
pre.diff .ctx { display: block; }
img.chart { max-width: 100%; height: auto; border: 1px solid var(--line); }
.charts { display: flex; flex-wrap: wrap; gap: 16px; } figure { margin: 0; }
figcaption { color: var(--muted); font-size: 12px; } svg.pareto { border: 1px solid var(--line); }
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _prompt_text(run: VariantRun, prompt_texts: dict[str, str] | None) -> str:
    texts = prompt_texts or {}
    for key in (run.variant, run.prompt):
        if key in texts:
            return texts[key]
    return run.prompt_text


def _html_leaderboard(rows: list[dict[str, Any]]) -> str:
    header, body = _table_cells(rows)
    out = ["<table class=\"leaderboard\"><thead><tr>", *(f"<th>{_e(h)}</th>" for h in header), "</tr></thead><tbody>"]
    for row, cells in zip(rows, body, strict=True):
        out.append(f"<tr class=\"{'champion' if row['is_champion'] else ''}\">")
        for i, cell in enumerate(cells):
            if i == len(cells) - 1 and cell in ("pass", "fail"):
                out.append(f"<td><span class=\"{'ok' if cell == 'pass' else 'bad'}\">{_e(cell)}</span></td>")
            elif i in (1, 2):
                title = f" title=\"{_e(row['comparison_error'])}\"" if row["comparison_error"] and i == 1 else ""
                out.append(f"<td{title}>{_e(cell)}</td>")
            else:
                out.append(f"<td class=\"num\">{_e(cell)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _html_gate(best: _Entry | None, champion: VariantRun | None, policy: GatePolicy,
               decision: GateDecision | None, error: str | None) -> str:
    pol = (f"Policy: McNemar alpha {policy.alpha:g}, minimum gain {100 * policy.min_gain:.1f} pts, "
           f"bucket tolerance {100 * policy.bucket_tolerance:.1f} pts, dataset tolerance "
           f"{100 * policy.dataset_tolerance:.1f} pts, "
           + (f"held-out datasets {', '.join(policy.heldout)}, " if policy.heldout else "")
           + (f"serving budget {_budget_text(policy)}, " if policy.budget is not None else "")
           + f"{round(100 * policy.confidence):g}% "
           f"paired bootstrap interval ({policy.n_resamples} resamples, seed {policy.seed}).")
    if best is None:
        return f"<p>No challenger besides the champion {_e(champion.variant if champion else '')}.</p>"
    title = (f"<p>Best challenger <strong>{_e(best.run.variant)}</strong> vs champion "
             f"<strong>{_e(champion.variant)}</strong></p>" if champion is not None
             else f"<p>Best variant <strong>{_e(best.run.variant)}</strong>; no champion yet.</p>")
    if error is not None:
        return (title + "<p><span class=\"verdict fail\">not comparable</span></p>"
                f"<p>{_e(error)}</p><p class=\"meta\">{_e(pol)}</p>")
    assert decision is not None
    if decision.first_promotion:
        badge = "<span class=\"verdict first\">first promotion</span>"
    else:
        badge = f"<span class=\"verdict {decision.verdict}\">{'PASS' if decision.passed else 'FAIL'}</span>"
    reasons = "".join(f"<li>{_e(r)}</li>" for r in decision.reasons)
    parts = [title, f"<p>{badge}</p>", f"<ul class=\"reasons\">{reasons}</ul>", f"<p class=\"meta\">{_e(pol)}</p>"]
    if decision.comparison is not None:
        parts.append(_html_comparison(decision.comparison, "difficulty", policy.bucket_tolerance))
    if decision.by_dataset is not None:
        parts.append(_html_comparison(decision.by_dataset, "dataset", policy.dataset_tolerance, overall=False))
    return "".join(parts)


def _budget_text(policy: GatePolicy) -> str:
    assert policy.budget is not None
    names = {"p95_latency_s": "p95 latency {:g} s", "model_calls_per_answer": "{:g} model calls per answer",
             "tokens_per_answer": "{:,.0f} tokens per answer", "cost_per_1k_answers_usd": "${:g} per 1,000 answers"}
    return ", ".join(names[k].format(v) for k, v in policy.budget.limits.items())


def _html_pareto(rows: list[dict[str, Any]], policy: GatePolicy) -> str:
    """Accuracy against p95 latency and against tokens (or dollars) per answer, the front of each drawn."""
    from pipelines.pareto import Point, pareto_front, pareto_svg

    short = short_names(rows)
    limits = policy.budget.limits if policy.budget is not None else {}
    priced = _priced(rows)
    axes = [("latency_p95_s", "p95 seconds per answer", "p95_latency_s"),
            ("cost_per_1k_answers_usd", "USD per 1,000 answers", "cost_per_1k_answers_usd") if priced else
            ("tokens_per_answer", "tokens per answer", "tokens_per_answer")]
    charts, notes = [], []
    for key, label, limit_key in axes:
        points = [Point(short[r["variant"]], float(r[key]), float(r["execution_accuracy"] or 0.0),
                        r["is_champion"], None if not r.get("budget") else r["budget"] == "within")
                  for r in rows if r.get(key) is not None]
        missing = [short[r["variant"]] for r in rows if r.get(key) is None]
        if missing:
            notes.append(f"Not drawn against {label} (not measured): {', '.join(missing)}.")
        limit = limits.get(limit_key)
        if points:
            front = ", ".join(p.label for p in pareto_front(points))
            charts.append(f"<figure>{pareto_svg(points, x_label=label, limit=limit)}"
                          f"<figcaption>Front: {_e(front)}</figcaption></figure>")
    legend = ("Filled blue: on the Pareto front (nothing else is both as accurate and as cheap); grey: dominated; "
              "hollow: over the serving budget; ringed ★: the champion"
              + ("; dashed red line: the budget" if limits else "") + ".")
    return (f"<div class=\"charts\">{''.join(charts)}</div><p class=\"meta\">{_e(legend)}</p>"
            + "".join(f"<p class=\"meta\">{_e(n)}</p>" for n in notes))


def _html_comparison(cmp: Comparison, by: str, tolerance: float, overall: bool = True) -> str:
    """The paired comparison overall (optionally) and per bucket; regressions beyond ``tolerance`` marked."""
    ci = f"{round(100 * cmp.confidence):g}% CI"
    rows = [f"<table><thead><tr><th>{_e(by)}</th><th>items</th><th>champion</th><th>challenger</th>"
            f"<th>Δ</th><th>{_e(ci)}</th><th>gained (b)</th><th>lost (c)</th><th>McNemar p</th></tr></thead><tbody>"]
    for bc in [cmp.overall] * overall + list(cmp.buckets.values()):
        cls = " class=\"bad\"" if bc.diff < -tolerance - 1e-12 else ""
        rows.append(
            f"<tr><td>{_e(bc.bucket)}</td><td class=\"num\">{bc.n}</td>"
            f"<td class=\"num\">{_pct(bc.champion_acc)}</td><td class=\"num\">{_pct(bc.challenger_acc)}</td>"
            f"<td class=\"num\"><span{cls}>{100 * bc.diff:+.1f}</span></td>"
            f"<td class=\"num\">{100 * bc.ci_low:+.1f} to {100 * bc.ci_high:+.1f}</td>"
            f"<td class=\"num\">{bc.b}</td><td class=\"num\">{bc.c}</td><td class=\"num\">{_e(fmt_p(bc.p_value))}</td></tr>")
    rows.append("</tbody></table>")
    return "".join(rows)


def _verdict(item: EvalItem | None) -> str:
    if item is None:
        return "<span class=\"detail\">not evaluated</span>"
    if item.match:
        return "<span class=\"ok\">✔ correct</span>"
    label = item.error_class or "wrong result"
    detail = f"<div class=\"detail\">{_e(item.detail)}</div>" if item.detail else ""
    return f"<span class=\"bad\">✘ {_e(label)}</span>{detail}"


def _pre(text: str | None, empty: str = "(none)") -> str:
    return f"<pre>{_e(text)}</pre>" if text else f"<pre class=\"detail\">{_e(empty)}</pre>"


def _item_card(item: EvalItem, mine: EvalItem | None, theirs: EvalItem | None,
               labels: tuple[str, str | None]) -> str:
    cols: list[tuple[str, EvalItem | None]] = [(labels[0], mine)]
    if labels[1] is not None:
        cols.append((labels[1], theirs))
    gold_preview = next((x.gold_preview for x in (mine, theirs) if x is not None and x.gold_preview), "")
    head = "<tr><th></th><th>gold</th>" + "".join(f"<th>{_e(name)}</th>" for name, _ in cols) + "</tr>"
    sql = ("<tr><th>SQL</th><td>" + _pre(item.gold_sql) + "</td>"
           + "".join(f"<td>{_pre(x.pred_sql if x else None, '(no SQL)')}</td>" for _, x in cols) + "</tr>")
    verdict = ("<tr><th>verdict</th><td></td>" + "".join(f"<td>{_verdict(x)}</td>" for _, x in cols) + "</tr>")
    preview = ("<tr><th>result</th><td>" + _pre(gold_preview, "(no preview)") + "</td>"
               + "".join(f"<td>{_pre(x.pred_preview if x else None, '(no preview)')}</td>" for _, x in cols)
               + "</tr>")
    if any(x is not None and x.strategy != "single" for _, x in cols):
        preview += ("<tr><th>strategy</th><td></td>"
                    + "".join(f"<td>{_strategy_cell(x)}</td>" for _, x in cols) + "</tr>")
    return (f"<div class=\"item\" id=\"item-{_e(item.id)}\"><div class=\"q\"><span class=\"tag\">{_e(item.id)}</span>"
            f"<span class=\"tag\">{_e(item.difficulty)}</span><span class=\"tag\">{_e(item.db_id)}</span>"
            f"<span class=\"tag\">{_e(item.category)}</span> {_e(item.question)}</div>"
            f"<table>{head}{sql}{verdict}{preview}</table></div>")


def _strategy_cell(item: EvalItem | None) -> str:
    """What the generation strategy did for one item: calls, repairs, the vote and each candidate."""
    if item is None or item.strategy == "single":
        return "<span class=\"detail\">single call</span>"
    summary = (f"{item.strategy}: {item.model_calls} model calls (+{item.extra_tokens} tokens), "
               f"{item.candidates} candidates, {item.repair_rounds} repair rounds"
               + (f", vote {item.votes}" if item.votes else ""))
    lines = []
    trace = item.strategy_trace or {}
    for i, c in enumerate(trace.get("candidates", [])):
        mark = "→ " if i == trace.get("chosen") else "  "
        outcome = c.get("error") or (f"{c.get('rows')} rows" if c.get("rows") is not None else "")
        group = f" [group {c['group']}]" if c.get("group") is not None else ""
        lines.append(f"{mark}sample {c.get('sample')} round {c.get('round')}: {c.get('sql') or '(no SQL)'}"
                     f"  — {outcome}{group}")
    return f"<div class=\"detail\">{_e(summary)}</div>" + _pre("\n".join(lines), "(no candidates)")


def _item_sort_key(item: EvalItem) -> tuple[int, str]:
    order = {d: i for i, d in enumerate(DIFFICULTIES)}
    return order.get(item.difficulty, len(order)), item.id


def _html_items(best: VariantRun, champion: VariantRun | None) -> str:
    mine = {i.id: i for i in best.items}
    if champion is None:
        ordered = sorted(best.items, key=_item_sort_key)
        wrong = [i for i in ordered if not i.match]
        labels: tuple[str, str | None] = (best.variant, None)
        intro = (f"<p>No champion to compare with: the {len(wrong)} items {_e(best.variant)} gets wrong "
                 f"(of {len(ordered)}).</p>")
        cards = "".join(_item_card(i, i, None, labels) for i in wrong)
        every = "".join(_item_card(i, i, None, labels) for i in ordered)
    else:
        theirs = {i.id: i for i in champion.items}
        ids = sorted(mine.keys() | theirs.keys(), key=lambda k: _item_sort_key(mine.get(k) or theirs[k]))
        labels = (f"challenger: {best.variant}", f"champion: {champion.variant}")

        def differs(k: str) -> bool:
            a, b = mine.get(k), theirs.get(k)
            return a is None or b is None or a.match != b.match

        changed = [k for k in ids if differs(k)]
        gained = sum(1 for k in changed if (a := mine.get(k)) is not None and a.match)
        intro = (f"<p>{len(changed)} of {len(ids)} items have different verdicts: {gained} now correct, "
                 f"{len(changed) - gained} no longer correct (or not evaluated by both).</p>")
        cards = "".join(_item_card(mine.get(k) or theirs[k], mine.get(k), theirs.get(k), labels) for k in changed)
        every = "".join(_item_card(mine.get(k) or theirs[k], mine.get(k), theirs.get(k), labels) for k in ids)
    return (f"{intro}<div class=\"changed\">{cards}</div>"
            f"<details><summary>All {len(mine if champion is None else ids)} items</summary>{every}</details>")


def _html_prompt_diff(best: VariantRun, champion: VariantRun | None, prompt_texts: dict[str, str] | None) -> str:
    new = _prompt_text(best, prompt_texts)
    if champion is None:
        if not new:
            return "<p class=\"meta\">The prompt text was not recorded.</p>"
        return (f"<p>No champion to diff against; the prompt of {_e(best.variant)} ({_e(best.prompt)}):</p>"
                f"<pre class=\"diff\">{_e(new)}</pre>")
    old = _prompt_text(champion, prompt_texts)
    if not old and not new:
        return "<p class=\"meta\">The prompt texts were not recorded.</p>"
    if old == new:
        return (f"<p>The prompt texts are identical ({_e(champion.prompt)} vs {_e(best.prompt)}); "
                "the variants differ by model or settings.</p>")
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), fromfile=f"{champion.prompt} (champion)",
                                 tofile=f"{best.prompt} (challenger)", lineterm="")
    out = []
    for line in lines:
        if line.startswith(("+++", "---")):
            cls = "file"
        elif line.startswith("@@"):
            cls = "hunk"
        elif line.startswith("+"):
            cls = "add"
        elif line.startswith("-"):
            cls = "del"
        else:
            cls = "ctx"
        out.append(f"<span class=\"{cls}\">{_e(line) or ' '}</span>")
    return f"<pre class=\"diff\">{''.join(out)}</pre>"


def write_html_report(path: Path, variants: list[VariantRun], champion: VariantRun | None,
                      policy: GatePolicy | None = None, *, prompt_texts: dict[str, str] | None = None) -> Path:
    """One self-contained HTML file: leaderboard, gate verdict of the best challenger vs the champion,
    accuracy-by-difficulty chart (base64 PNG), per-question diff and prompt diff.

    ``prompt_texts`` overrides the recorded prompt texts, keyed by variant name or prompt ref (name@version).
    """
    path = Path(path)
    policy = policy or GatePolicy()
    entries = _entries(variants, champion, policy)
    rows = [e.row for e in entries]
    best = next((e for e in entries if not e.row["is_champion"]), None)

    decision: GateDecision | None = None
    error: str | None = None
    if best is not None:
        if champion is None:
            decision = decide(best.run, None, policy)
        else:
            decision, error = best.decision, best.error

    runs = [e.run for e in entries]
    datasets = sorted({f"{r.dataset} @ {r.dataset_version}" for r in runs})
    title = f"Text2SQL evaluation: {', '.join(datasets)}"
    chart = base64.b64encode(_chart_png(runs)).decode("ascii")
    rules = sorted({r.rules for r in runs})
    meta = (f"{len(runs)} variants, rules {', '.join(rules)}; "
            + (f"champion {champion.variant} ({champion.prompt}, run {champion.run_id or 'n/a'})."
               if champion is not None else "no champion yet (first promotion)."))

    sections = [
        f"<h1>{_e(title)}</h1><p class=\"meta\">{_e(meta)}</p>",
        "<section id=\"gate\"><h2>Promotion gate</h2>"
        f"{_html_gate(best, champion, policy, decision, error)}</section>",
        f"<section id=\"leaderboard\"><h2>Leaderboard</h2>{_html_leaderboard(rows)}"
        "<p class=\"meta\">★ champion. Δ, interval and McNemar p are paired against the champion on the same "
        "items. p50/p95: seconds per answer as if no model call had been cached; calls/q, tokens/q: per "
        "answer.</p></section>",
        f"<section id=\"pareto\"><h2>Accuracy against cost</h2>{_html_pareto(rows, policy)}</section>",
        "<section id=\"chart\"><h2>Accuracy by difficulty</h2>"
        f"<img class=\"chart\" alt=\"execution accuracy by difficulty per variant\" "
        f"src=\"data:image/png;base64,{chart}\"></section>",
    ]
    if best is not None:
        vs = f" vs {champion.variant}" if champion is not None else ""
        sections.append(f"<section id=\"per-question\"><h2>Per-question diff: {_e(best.run.variant)}{_e(vs)}</h2>"
                        f"{_html_items(best.run, champion)}</section>")
        sections.append(f"<section id=\"prompt-diff\"><h2>Prompt diff</h2>"
                        f"{_html_prompt_diff(best.run, champion, prompt_texts)}</section>")
    html = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(sections) + "\n</body></html>\n")
    write_text_atomic(path, html)
    return path
