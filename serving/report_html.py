"""The experiment report as one self-contained HTML page: inline CSS, inline SVG charts, no scripts.

The trust checks come first, before any result; when one is flagged the page says the results are not
trustworthy and no verdict says better or worse. Every piece of text (experiment and variant names,
versions, notes) goes through ``html.escape``, so names chosen by whoever edits the experiment config
cannot inject markup.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

    from serving.experiment_report import ExperimentReport, Guardrails, Interval, VariantReport

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1100px;color:#1d232a;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px} h3{font-size:15px;margin:16px 0 4px}
.meta{color:#5b6570;margin:0 0 16px}
.banner{padding:10px 14px;border-radius:6px;margin:12px 0;border:1px solid}
.srm-ok{background:#eef8f0;border-color:#9fd3aa} .srm-na{background:#f3f4f6;border-color:#cfd4da}
.srm-flagged,.untrusted{background:#fdecec;border-color:#e5a0a0;color:#7a1010}
.headline{font-size:16px;font-weight:600} .empty{font-size:16px;color:#5b6570}
table{border-collapse:collapse;width:100%;margin:6px 0} th,td{padding:5px 8px;border-bottom:1px solid #e3e6ea;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left} th{background:#f6f7f9;font-weight:600}
.ci{color:#5b6570;font-size:12px;display:block} .better{color:#11612a;font-weight:600} .worse{color:#9b1c1c;font-weight:600}
.flag{color:#9b1c1c;font-weight:600;background:#fdecec} .ctl{font-size:11px;background:#e7ecf3;border-radius:3px;padding:0 4px;margin-left:4px}
svg text{font:12px system-ui,sans-serif;fill:#1d232a} .note{color:#5b6570} code{font-size:12px}
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
        f'<p class="meta" id="estimand"><strong>Estimand:</strong> {escape(report.estimand)}.</p>',
        _srm_banner(report),
    ]
    if not report.trustworthy:
        parts.append('<p class="banner untrusted" id="untrusted"><strong>Results are not trustworthy.</strong> '
                     "The traffic does not match the configured split, so the figures below may be biased "
                     "and no verdict is given: fix assignment, request logging or labelling before reading "
                     "them.</p>")
    parts.append(f'<p class="headline" id="headline">{escape(report.headline)}</p>')
    if not report.has_data:
        parts.append('<p class="empty" id="no-data">No data yet: no request has been recorded for this '
                     "experiment. The figures appear once users send requests and label answers.</p>")
    parts += [
        "<h2>Online accuracy by variant</h2>", _chart(report),
        "<h2>Variants</h2>", _variants_table(report),
        "<h2>Lift over time</h2>", _lift_charts(report),
        "<h2>Guardrails</h2>", _guardrails_table(report), _guardrail_checks(report),
        "<h2>Epochs and trust checks</h2>", _epochs_table(report),
        "<h2>Requests without a user id</h2>", _unassigned(report),
    ]
    if report.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{escape(n)}</li>" for n in report.notes) + "</ul>")
    m = report.methods
    parts.append(
        "<h2>How these figures are computed</h2><ul class=\"note\">"
        f"<li>Variance: {escape(m.variance)}. Reference: {escape(m.variance_reference)}.</li>"
        f"<li>Online accuracy: labelled correct / labelled requests; interval: {escape(m.accuracy_interval)}.</li>"
        f"<li>Lift (always-valid): {escape(m.sequential)}; mixture sd τ = {m.mixture_sd:g}; evaluated once "
        f"each variant has {m.min_labelled_users} labelled users and there are {m.min_questions} distinct "
        f"questions. Reference: {escape(m.reference)}.</li>"
        f"<li>Fixed-horizon lift: {escape(m.fixed_horizon)}. Shown for comparison only.</li>"
        f"<li>Trust checks: {escape(m.srm)}. Reference: {escape(m.srm_reference)}.</li>"
        f"<li>Guardrails: {escape(m.guardrails)}.</li></ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _srm_banner(report: ExperimentReport) -> str:
    srm = report.srm
    applicable = any(c.applicable for e in report.epochs for c in e.checks)
    cls = "srm-flagged" if srm.flagged else ("srm-ok" if applicable else "srm-na")
    title = "Trust checks failed" if srm.flagged else "Trust checks"
    return f'<div class="banner {cls}" id="srm"><strong>{title}:</strong> {escape(srm.note)}.</div>'


def _verdict_class(v: VariantReport) -> str:
    decision = v.lift.decision if v.lift is not None else None
    return {"better": "better", "worse": "worse", "untrustworthy": "flag", "guardrail_breached": "flag"}.get(
        decision or "", "")


def _variants_table(report: ExperimentReport) -> str:
    head = ("<tr><th>variant</th><th>weight</th><th>model / prompt</th><th>users</th><th>requests</th>"
            "<th>labelled (coverage)</th><th>questions</th><th>online accuracy</th><th>offline accuracy</th>"
            "<th>lift vs control (always-valid)</th><th>fixed-horizon lift</th><th>verdict</th></tr>")
    rows = []
    for v in report.variants:
        a = v.accuracy
        lift_cell = fixed_cell = verdict = "—"
        if v.lift is not None:
            verdict = escape(v.lift.verdict)
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
        deff = f" · design effect {a.design_effect:.1f}" if a.design_effect is not None else ""
        sources = " · ".join(f"{escape(k)} {n}" for k, n in sorted(a.labels_by_source.items()))
        sources = f'<span class="ci">{sources}</span>' if sources else ""
        rows.append(
            f'<tr data-variant="{escape(v.name)}"><td>{escape(v.name)}{ctl}</td><td>{v.weight:g} ({v.share:.0%})</td>'
            f"<td>{versions}</td><td>{v.users}</td><td>{a.requests}</td>"
            f"<td>{a.labelled} ({_pct(a.label_coverage)}){sources}</td><td>{a.questions}</td>"
            f'<td>{_pct(a.online_accuracy)}<span class="ci">{_ci_pct(a.online_accuracy_ci)}{deff}</span></td>'
            f"<td>{_pct(v.offline_accuracy)}</td><td>{lift_cell}</td><td>{fixed_cell}</td>"
            f'<td class="{_verdict_class(v)}">{verdict}</td></tr>')
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


def _guardrail_checks(report: ExperimentReport) -> str:
    """Each variant against the control: change, always-valid interval, threshold, status."""
    head = ("<tr><th>variant · guardrail</th><th>control</th><th>variant</th><th>change</th>"
            "<th>always-valid interval</th><th>threshold</th><th>status</th></tr>")
    rows = []
    for v in report.variants:
        for c in v.guardrail_checks:
            latency = c.metric == "latency_p95"
            value = _ms if latency else _pct
            change = "—" if c.change is None else (f"{c.change:+.1%}" if latency else _pp(c.change))
            if c.ci is None:
                ci = "—"
            elif latency:
                ci = f"[{c.ci.low:+.1%}, {c.ci.high:+.1%}]"
            else:
                ci = _ci_pp(c.ci)
            threshold = "—" if c.threshold is None else (f"+{c.threshold:.0%}" if latency
                                                          else f"+{c.threshold * 100:.1f} pp")
            cls = ' class="flag"' if c.breached else ""
            rows.append(f'<tr data-variant="{escape(v.name)}" data-metric="{escape(c.metric)}">'
                        f"<td>{escape(v.name)} · {escape(c.metric.replace('_', ' '))}</td>"
                        f"<td>{value(c.control_value)}</td><td>{value(c.value)}</td><td>{change}</td>"
                        f"<td>{ci}</td><td>{threshold}</td><td{cls}>{escape(c.status)}</td></tr>")
    if not rows:
        return ""
    return (f'<h3>Against the control</h3><table id="guardrail-checks">{head}{"".join(rows)}</table>')


def _epochs_table(report: ExperimentReport) -> str:
    if not report.epochs:
        return '<p class="note" id="epochs">No requests with a user id yet.</p>'
    head = ("<tr><th>epoch</th><th>split</th><th>requests from → to</th><th>users</th><th>requests</th>"
            "<th>users per variant</th><th>requests per user</th><th>label coverage</th></tr>")
    rows = []
    for e in report.epochs:
        split = (f"stopped on {escape(e.stopped_variant)}" if e.stopped_variant is not None else
                 " / ".join(f"{escape(n)} {s:.0%}" for n, s in e.shares.items()))
        if not e.split_recorded:
            split += '<span class="ci">configured weights (split not recorded)</span>'
        cells = []
        for c in e.checks:
            if c.check == "users":
                figures = ", ".join(f"{escape(n)} {int(x)}" for n, x in c.observed.items())
            elif c.check == "requests_per_user":
                figures = ", ".join(f"{escape(n)} {x:.2f}" for n, x in c.observed.items())
            else:
                figures = ", ".join(f"{escape(n)} {x:.0%}" for n, x in c.observed.items())
            status = f"p {_p(c.p_value)}" if c.applicable else escape(c.note)
            cls = ' class="flag"' if c.flagged else ""
            cells.append(f'<td{cls} data-check="{c.check}">{figures}<span class="ci">{status}</span></td>')
        rows.append(f'<tr data-epoch="{escape(e.epoch)}"><td><code>{escape(e.epoch or "—")}</code></td>'
                    f"<td>{split}</td><td>{_t(_when(e.first_request))} → {_t(_when(e.last_request))}</td>"
                    f"<td>{e.users}</td><td>{e.requests}</td>{''.join(cells)}</tr>")
    return f'<table id="epochs">{head}{"".join(rows)}</table>'


def _unassigned(report: ExperimentReport) -> str:
    u = report.unassigned
    if u.accuracy.requests == 0:
        return '<p class="note" id="unassigned">None: every request carried a user id.</p>'
    by_variant = ", ".join(f"{escape(k)} {n}" for k, n in u.requests_by_variant.items())
    a = u.accuracy
    return (f'<p id="unassigned">{a.requests} request(s) assigned at random per request ({by_variant}); '
            f"labelled {a.labelled}, online accuracy {_pct(a.online_accuracy)} {_ci_pct(a.online_accuracy_ci)}. "
            "Kept out of the trust checks, the lift and the guardrail comparisons.</p>"
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
               f'<text x="{left + 8}" y="{legend_y}">online accuracy, {1 - report.alpha:.0%} interval '
               "(users × questions)</text>"
               f'<path d="M{left + 330} {legend_y - 9} L{left + 335} {legend_y - 4} L{left + 330} {legend_y + 1} '
               f'L{left + 325} {legend_y - 4} Z" fill="none" stroke="#b5652f" stroke-width="2"/>'
               f'<text x="{left + 342}" y="{legend_y}">offline (golden set)</text>')
    out.append("</svg>")
    return "".join(out)


def _lift_charts(report: ExperimentReport) -> str:
    """Per compared variant: the cumulative lift (line) and its always-valid interval (band) over time."""
    charts = [chart for v in report.variants if (chart := _lift_chart(v, report.alpha))]
    if not charts:
        return '<p class="note" id="lift-over-time">Not yet testable: the chart appears once the lift is.</p>'
    return f'<div id="lift-over-time">{"".join(charts)}</div>'


def _lift_chart(v: VariantReport, alpha: float) -> str:
    seq = v.lift.sequential if v.lift is not None else None
    points = [(p.labelled, p.difference, p.low, p.high) for p in (seq.history if seq is not None else [])
              if p.low is not None and p.high is not None]
    if v.lift is None or seq is None or len(points) < 2:
        return ""
    width, height, left, right, top, bottom = 670, 220, 60, 650, 14, 180
    # scaled to the band after its first tenth, when it has settled; earlier, wider looks run off the edge
    settled = points[len(points) // 10:]
    span = min(1.0, max(0.02, *(max(abs(d), abs(lo), abs(hi)) for _, d, lo, hi in settled)))
    first, last = points[0][0], points[-1][0]

    def x(n: int) -> float:
        return left + (right - left) * (n - first) / max(1, last - first)

    def y(d: float) -> float:
        return top + (bottom - top) * (span - max(-span, min(span, d))) / (2 * span)

    band = " ".join(f"{x(n):.1f},{y(hi):.1f}" for n, _, _, hi in points) + " " + " ".join(
        f"{x(n):.1f},{y(lo):.1f}" for n, _, lo, _ in reversed(points))
    line = " ".join(f"{x(n):.1f},{y(d):.1f}" for n, d, _, _ in points)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" data-variant="{escape(v.name)}" class="lift-chart" '
           f'aria-label="cumulative lift of {escape(v.name)} over time">',
           f'<polygon points="{band}" fill="#2f6db5" fill-opacity="0.18" stroke="none"/>',
           f'<line x1="{left}" y1="{y(0):.1f}" x2="{right}" y2="{y(0):.1f}" stroke="#5b6570" stroke-dasharray="4 3"/>',
           f'<polyline points="{line}" fill="none" stroke="#2f6db5" stroke-width="2"/>']
    for tick in (-span, -span / 2, span / 2, span):
        out.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick * 100:+.0f} pp</text>')
    out.append(f'<text x="{left - 6}" y="{y(0) + 4:.1f}" text-anchor="end">0</text>'
               f'<text x="{left}" y="{bottom + 18}">{first} labelled · {_t(_when(seq.history[0].ts))}</text>'
               f'<text x="{right}" y="{bottom + 18}" text-anchor="end">{last} labelled · '
               f"{_t(_when(seq.history[-1].ts))}</text>"
               f'<text x="{left}" y="{bottom + 36}">{escape(v.name)} − {escape(v.lift.control)}: cumulative '
               f"lift (line) and its always-valid {1 - alpha:.0%} interval (band)</text></svg>")
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
