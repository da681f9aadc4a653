"""The experiment report as one self-contained HTML page: inline CSS, an inline SVG chart, no scripts.

The sample-ratio check comes first, before any result; when it is flagged the page says the results are
not trustworthy. Every piece of text (experiment and variant names, versions, notes) goes through
``html.escape``, so names chosen by whoever edits the experiment config cannot inject markup.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

    from serving.experiment_report import ExperimentReport, Guardrails, Interval

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1100px;color:#1d232a;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
.meta{color:#5b6570;margin:0 0 16px}
.banner{padding:10px 14px;border-radius:6px;margin:12px 0;border:1px solid}
.srm-ok{background:#eef8f0;border-color:#9fd3aa} .srm-na{background:#f3f4f6;border-color:#cfd4da}
.srm-flagged,.untrusted{background:#fdecec;border-color:#e5a0a0;color:#7a1010}
.headline{font-size:16px;font-weight:600} .empty{font-size:16px;color:#5b6570}
table{border-collapse:collapse;width:100%;margin:6px 0} th,td{padding:5px 8px;border-bottom:1px solid #e3e6ea;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left} th{background:#f6f7f9;font-weight:600}
.ci{color:#5b6570;font-size:12px;display:block} .better{color:#11612a;font-weight:600} .worse{color:#9b1c1c;font-weight:600}
.ctl{font-size:11px;background:#e7ecf3;border-radius:3px;padding:0 4px;margin-left:4px}
svg text{font:12px system-ui,sans-serif;fill:#1d232a} .note{color:#5b6570}
"""


def render(report: ExperimentReport) -> str:
    """The page for one report."""
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Experiment {escape(report.experiment)} — Text2SQL Ops</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Experiment {escape(report.experiment)}</h1>",
        f'<p class="meta">status {_t(report.status)} · control {_t(report.control)} · alpha {report.alpha:g}'
        f" · data {_t(_when(report.data_from))} → {_t(_when(report.data_to))}"
        f" · generated {_t(_when(report.generated_at))}</p>",
        _srm_banner(report),
    ]
    if not report.trustworthy:
        parts.append('<p class="banner untrusted" id="untrusted"><strong>Results are not trustworthy.</strong> '
                     "The users per variant do not match the configured weights, so the figures below may be "
                     "biased: fix assignment or request logging before reading them.</p>")
    parts.append(f'<p class="headline" id="headline">{escape(report.headline)}</p>')
    if not report.has_data:
        parts.append('<p class="empty" id="no-data">No data yet: no request has been recorded for this '
                     "experiment. The figures appear once users send requests and label answers.</p>")
    parts += [
        "<h2>Online accuracy by variant</h2>", _chart(report),
        "<h2>Variants</h2>", _variants_table(report),
        "<h2>Guardrails</h2>", _guardrails_table(report),
        "<h2>Requests without a user id</h2>", _unassigned(report),
    ]
    if report.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{escape(n)}</li>" for n in report.notes) + "</ul>")
    m = report.methods
    parts.append(
        "<h2>How these figures are computed</h2><ul class=\"note\">"
        f"<li>Online accuracy: labelled correct / labelled requests; interval: {escape(m.accuracy_interval)}.</li>"
        f"<li>Lift (always-valid): {escape(m.sequential)}; mixture sd τ = {m.mixture_sd:g}; evaluated once "
        f"each variant has {m.min_labelled_users} labelled users. Reference: {escape(m.reference)}.</li>"
        f"<li>Fixed-horizon lift: {escape(m.fixed_horizon)}. Shown for comparison only.</li>"
        f"<li>Sample ratio check: {escape(m.srm)}.</li></ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _srm_banner(report: ExperimentReport) -> str:
    srm = report.srm
    cls = "srm-flagged" if srm.flagged else ("srm-ok" if srm.applicable else "srm-na")
    title = "Sample ratio mismatch" if srm.flagged else "Sample ratio check"
    counts = ", ".join(f"{escape(n)} {srm.observed_users[n]} (expected {srm.expected_users[n]:.1f})"
                       for n in srm.observed_users)
    detail = f" Users: {counts}." if counts and srm.applicable else ""
    return (f'<div class="banner {cls}" id="srm"><strong>{title}:</strong> {escape(srm.note)}.{detail}</div>')


def _variants_table(report: ExperimentReport) -> str:
    head = ("<tr><th>variant</th><th>weight</th><th>model / prompt</th><th>users</th><th>requests</th>"
            "<th>labelled (coverage)</th><th>online accuracy</th><th>offline accuracy</th>"
            "<th>lift vs control (always-valid)</th><th>fixed-horizon lift</th><th>verdict</th></tr>")
    rows = []
    for v in report.variants:
        a = v.accuracy
        lift_cell = fixed_cell = verdict = "—"
        cls = ""
        if v.lift is not None:
            verdict = escape(v.lift.verdict)
            cls = "better" if v.lift.verdict.startswith("better") else (
                "worse" if v.lift.verdict.startswith("worse") else "")
            if not report.trustworthy:
                verdict += " (not trustworthy: sample ratio mismatch)"
            if v.lift.difference is not None:
                seq = v.lift.sequential
                lift_cell = _pp(v.lift.difference) + (
                    f'<span class="ci">{_ci_pp(seq.ci)} · p {_p(seq.p_value)}</span>' if seq else
                    '<span class="ci">not yet testable</span>')
                fh = v.lift.fixed_horizon
                if fh is not None:
                    fixed_cell = _pp(v.lift.difference) + f'<span class="ci">{_ci_pp(fh.ci)} · p {_p(fh.p_value)}</span>'
        versions = " / ".join(escape(x) if x else "—" for x in (v.model_version, v.prompt_version))
        ctl = '<span class="ctl">control</span>' if v.is_control else ""
        rows.append(
            f'<tr data-variant="{escape(v.name)}"><td>{escape(v.name)}{ctl}</td><td>{v.weight:g} ({v.share:.0%})</td>'
            f"<td>{versions}</td><td>{v.users}</td><td>{a.requests}</td>"
            f"<td>{a.labelled} ({_pct(a.label_coverage)})</td>"
            f'<td>{_pct(a.online_accuracy)}<span class="ci">{_ci_pct(a.online_accuracy_ci)}</span></td>'
            f"<td>{_pct(v.offline_accuracy)}</td><td>{lift_cell}</td><td>{fixed_cell}</td>"
            f'<td class="{cls}">{verdict}</td></tr>')
    return f'<table id="variants">{head}{"".join(rows)}</table>'


def _guardrails_table(report: ExperimentReport) -> str:
    head = ("<tr><th>variant</th><th>requests</th><th>SQL error</th><th>empty result</th><th>guard refused</th>"
            "<th>timeout</th><th>model error</th><th>latency p50</th><th>latency p95</th></tr>")
    rows = [_guardrail_row(v.name, v.guardrails) for v in report.variants]
    return f'<table id="guardrails">{head}{"".join(rows)}</table>'


def _guardrail_row(name: str, g: Guardrails) -> str:
    return (f'<tr data-variant="{escape(name)}"><td>{escape(name)}</td><td>{g.requests}</td>'
            f"<td>{_pct(g.sql_error_rate)}</td><td>{_pct(g.empty_rate)}</td><td>{_pct(g.guard_refused_rate)}</td>"
            f"<td>{_pct(g.timeout_rate)}</td><td>{_pct(g.llm_error_rate)}</td>"
            f"<td>{_ms(g.latency_p50_ms)}</td><td>{_ms(g.latency_p95_ms)}</td></tr>")


def _unassigned(report: ExperimentReport) -> str:
    u = report.unassigned
    if u.accuracy.requests == 0:
        return '<p class="note" id="unassigned">None: every request carried a user id.</p>'
    by_variant = ", ".join(f"{escape(k)} {n}" for k, n in u.requests_by_variant.items())
    a = u.accuracy
    return (f'<p id="unassigned">{a.requests} request(s) assigned at random per request ({by_variant}); '
            f"labelled {a.labelled}, online accuracy {_pct(a.online_accuracy)} {_ci_pct(a.online_accuracy_ci)}. "
            "Kept out of the sample ratio check and the lift.</p>"
            f'<table id="unassigned-guardrails">{_guardrail_row("without user id", u.guardrails)}</table>')


def _chart(report: ExperimentReport) -> str:
    """Per-variant online accuracy (dot) with its interval (bar) and offline accuracy (diamond), 0–100%."""
    left, right, top, row_h = 170, 640, 28, 34
    width = right + 30
    height = top + row_h * max(1, len(report.variants)) + 40
    x = lambda p: left + (right - left) * p  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="online accuracy by variant">']
    axis_y = top + row_h * max(1, len(report.variants))
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        out.append(f'<line x1="{x(tick):.1f}" y1="{top - 8}" x2="{x(tick):.1f}" y2="{axis_y}" stroke="#e3e6ea"/>'
                   f'<text x="{x(tick):.1f}" y="{axis_y + 16}" text-anchor="middle">{tick:.0%}</text>')
    for i, v in enumerate(report.variants):
        y = top + row_h * i + row_h / 2
        label = v.name if len(v.name) <= 22 else v.name[:21] + "…"
        out.append(f'<text x="{left - 10}" y="{y + 4:.1f}" text-anchor="end"><title>{escape(v.name)}</title>'
                   f"{escape(label)}</text>")
        a = v.accuracy
        if a.online_accuracy_ci is not None:
            lo, hi = x(a.online_accuracy_ci.low), x(a.online_accuracy_ci.high)
            out.append(f'<line x1="{lo:.1f}" y1="{y:.1f}" x2="{hi:.1f}" y2="{y:.1f}" stroke="#2f6db5" stroke-width="3"/>'
                       f'<line x1="{lo:.1f}" y1="{y - 6:.1f}" x2="{lo:.1f}" y2="{y + 6:.1f}" stroke="#2f6db5"/>'
                       f'<line x1="{hi:.1f}" y1="{y - 6:.1f}" x2="{hi:.1f}" y2="{y + 6:.1f}" stroke="#2f6db5"/>')
        if a.online_accuracy is not None:
            out.append(f'<circle cx="{x(a.online_accuracy):.1f}" cy="{y:.1f}" r="5" fill="#2f6db5">'
                       f"<title>{escape(v.name)}: online {_pct(a.online_accuracy)} {_ci_pct(a.online_accuracy_ci)}"
                       "</title></circle>")
        else:
            out.append(f'<text x="{left + 6}" y="{y + 4:.1f}" fill="#5b6570">no labels yet</text>')
        if v.offline_accuracy is not None:
            ox = x(v.offline_accuracy)
            out.append(f'<path d="M{ox:.1f} {y - 6:.1f} L{ox + 6:.1f} {y:.1f} L{ox:.1f} {y + 6:.1f} '
                       f'L{ox - 6:.1f} {y:.1f} Z" fill="none" stroke="#b5652f" stroke-width="2">'
                       f"<title>{escape(v.name)}: offline {_pct(v.offline_accuracy)}</title></path>")
    legend_y = 14
    out.append(f'<circle cx="{left}" cy="{legend_y - 4}" r="4" fill="#2f6db5"/>'
               f'<text x="{left + 8}" y="{legend_y}">online accuracy, {1 - report.alpha:.0%} Wilson interval</text>'
               f'<path d="M{left + 290} {legend_y - 9} L{left + 295} {legend_y - 4} L{left + 290} {legend_y + 1} '
               f'L{left + 285} {legend_y - 4} Z" fill="none" stroke="#b5652f" stroke-width="2"/>'
               f'<text x="{left + 302}" y="{legend_y}">offline (golden set)</text>')
    out.append("</svg>")
    return "".join(out)


def _t(x: str) -> str:
    return escape(x)


def _when(d: datetime | None) -> str:
    return d.strftime("%Y-%m-%d %H:%M UTC") if d is not None else "—"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.1f}%"


def _pp(x: float) -> str:
    return f"{x * 100:+.1f} pp"


def _p(p: float | None) -> str:
    if p is None:
        return "—"
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def _ci_pct(ci: Interval | None) -> str:
    return "" if ci is None else f"[{ci.low * 100:.1f}%, {ci.high * 100:.1f}%]"


def _ci_pp(ci: Interval | None) -> str:
    return "interval —" if ci is None else f"[{ci.low * 100:+.1f}, {ci.high * 100:+.1f}] pp"


def _ms(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f} ms"
