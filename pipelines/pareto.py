"""Accuracy against what an answer costs: a sweep's Pareto front, drawn as inline SVG for the HTML report.

A variant is on the front when no other variant is at least as accurate and at least as cheap while being
strictly better in one of the two: those are the only variants worth choosing between, and the serving
budget (a vertical line) says which of them the gate may promote. The drawing is plain SVG text (no script,
no external file), so the report stays one self-contained page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["Point", "pareto_front", "pareto_svg"]


@dataclass(frozen=True)
class Point:
    label: str
    cost: float  # lower is better: seconds, tokens or dollars per answer
    accuracy: float  # higher is better, in [0, 1]
    champion: bool = False
    within_budget: bool | None = None  # None: no budget on this axis


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """The non-dominated points, cheapest first."""
    def dominated(p: Point) -> bool:
        return any(q.cost <= p.cost and q.accuracy >= p.accuracy and (q.cost < p.cost or q.accuracy > p.accuracy)
                   for q in points)

    return sorted((p for p in points if not dominated(p)), key=lambda p: (p.cost, -p.accuracy, p.label))


def _nice_ticks(low: float, high: float, log: bool) -> list[float]:
    if log:
        ticks = []
        for exp in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
            ticks += [m * 10.0 ** exp for m in (1, 2, 5) if low <= m * 10.0 ** exp <= high]
        return ticks or [low, high]
    span = high - low or 1.0
    step = 10 ** math.floor(math.log10(span / 4))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if span / (step * m) <= 6)
    start = math.ceil(low / step) * step
    return [round(start + k * step, 10) for k in range(int((high - start) / step + 1e-9) + 1)]


def _fmt_tick(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:g}"


def pareto_svg(points: Sequence[Point], *, x_label: str, limit: float | None = None, limit_label: str = "budget",
               width: int = 560, height: int = 340) -> str:
    """An SVG scatter of accuracy (y) against cost (x, logarithmic when it spans more than 20×), the front
    joined by a line, the champion ringed, variants over the budget hollow, and the budget as a dashed line."""
    if not points:
        return ""
    left, right, top, bottom = 58, 20, 14, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    costs = [p.cost for p in points] + ([limit] if limit is not None else [])
    positive = [c for c in costs if c > 0]
    log = bool(positive) and len(positive) == len(costs) and max(costs) / min(positive) > 20
    if log:
        x_low, x_high = min(positive) / 1.4, max(costs) * 1.4
    else:
        x_low, x_high = 0.0, max(max(costs) * 1.12, 1e-9)
    y_high = min(1.0, math.ceil(max(p.accuracy for p in points) * 10 + 1) / 10)

    def sx(x: float) -> float:
        if log:
            return left + plot_w * (math.log(x) - math.log(x_low)) / (math.log(x_high) - math.log(x_low))
        return left + plot_w * (x - x_low) / (x_high - x_low)

    def sy(y: float) -> float:
        return top + plot_h * (1 - y / y_high)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="pareto" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(f"accuracy against {x_label}")}">',
           f'<title>{escape(f"Execution accuracy against {x_label}")}</title>',
           '<style>text{font:11px sans-serif;fill:#1f2328}.grid{stroke:#eaeef2}.axis{stroke:#57606a}'
           '.front{fill:none;stroke:#0969da;stroke-width:1.5}.limit{stroke:#cf222e;stroke-dasharray:5 4}</style>']
    for t in _nice_ticks(0.0, y_high, False):
        y = sy(t)
        out.append(f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{100 * t:.0f}%</text>')
    for t in _nice_ticks(x_low if log else 0.0, x_high, log):
        x = sx(t)
        out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}"/>'
                   f'<text x="{x:.1f}" y="{top + plot_h + 15}" text-anchor="middle">{_fmt_tick(t)}</text>')
    out.append(f'<line class="axis" x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}"/>'
               f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}"/>'
               f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" text-anchor="middle">'
               f'{escape(x_label)}{" (log scale)" if log else ""}</text>'
               f'<text x="14" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
               f'transform="rotate(-90 14 {top + plot_h / 2:.1f})">execution accuracy</text>')
    if limit is not None:
        x = sx(limit)
        out.append(f'<line class="limit" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}"/>'
                   f'<text x="{x + 4:.1f}" y="{top + 11}" fill="#cf222e">{escape(limit_label)}</text>')
    front = pareto_front(points)
    if len(front) > 1:
        path = " ".join(f"{sx(p.cost):.1f},{sy(p.accuracy):.1f}" for p in front)
        out.append(f'<polyline class="front" points="{path}"/>')
    on_front = {id(p) for p in front}
    for p in sorted(points, key=lambda p: (p.cost, p.label)):
        x, y = sx(p.cost), sy(p.accuracy)
        fill = "#ffffff" if p.within_budget is False else ("#0969da" if id(p) in on_front else "#8c959f")
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{fill}" stroke="#24292f" stroke-width="1">'
                   f'<title>{escape(f"{p.label}: {100 * p.accuracy:.1f}%, {p.cost:g} {x_label}")}</title></circle>')
        if p.champion:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" fill="none" stroke="#bf8700" stroke-width="2"/>')
        out.append(f'<text x="{x + 8:.1f}" y="{y - 7:.1f}">{escape(p.label)}{" ★" if p.champion else ""}</text>')
    out.append("</svg>")
    return "".join(out)
