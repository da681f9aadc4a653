"""The CloudWatch metric contract between the serving app and the infrastructure: one list of names.

The serving app publishes these (Embedded Metric Format or ``PutMetricData``) and ``infra/cdk`` builds the
dashboard and the alarms from the same tuples, so a renamed metric cannot silently leave a panel empty.
Per-variant panels and alarms read the ``Variant`` dimension set: the app must publish every datum with
(at least) the dimension set ``["Variant"]``; finer sets (prompt or model version) may be added beside it.
Online accuracy is never published as a ratio: it is ``sum(Correct) / sum(Labeled)`` computed by
CloudWatch metric math, so that periods and variants aggregate correctly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

NAMESPACE = "TextToSQL"
VARIANT_DIMENSION = "Variant"

Unit = Literal["Milliseconds", "Count"]


@dataclass(frozen=True)
class MetricName:
    """One published metric: its name, unit, and when the app emits it."""

    name: str
    unit: Unit
    per: Literal["request", "label"]
    description: str


SERVING_METRICS: tuple[MetricName, ...] = (
    MetricName("QueryResponseTime", "Milliseconds", "request", "End-to-end latency of one /query request."),
    MetricName("Requests", "Count", "request", "1 per answered request."),
    MetricName("SQLError", "Count", "request", "1 when the generated SQL failed to execute."),
    MetricName("EmptyResult", "Count", "request", "1 when the SQL ran but returned no rows."),
    MetricName("GuardRefused", "Count", "request", "1 when the SQL guard refused the statement."),
    MetricName("Timeout", "Count", "request", "1 when execution hit the time limit."),
    MetricName("Labeled", "Count", "label", "1 per feedback label received."),
    MetricName("Correct", "Count", "label", "1 per feedback label saying the answer was correct."),
)

#: Outcome counters shown as rates (per 100 requests) on the dashboard.
OUTCOME_METRICS: tuple[str, ...] = tuple(
    m.name for m in SERVING_METRICS if m.per == "request" and m.unit == "Count" and m.name != "Requests")


def metric(name: str) -> MetricName:
    """The catalogue entry for ``name``; a ``KeyError`` names the known metrics."""
    for m in SERVING_METRICS:
        if m.name == name:
            return m
    raise KeyError(f"unknown metric {name!r}; known: {', '.join(m.name for m in SERVING_METRICS)}")
