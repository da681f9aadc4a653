"""The CloudWatch dashboard body (JSON) for the serving metrics, generated from the metric catalogue.

Panels per variant: online accuracy (metric math ``100 * sum(Correct) / sum(Labeled)``, never a published
ratio), latency (p50/p95 of ``QueryResponseTime``), requests, each outcome counter as a rate per 100
requests, and the operational counters (model errors, circuit-open refusals, cached answers, dropped
metrics). ``python -m serving.dashboard champion challenger`` prints it (``aws cloudwatch put-dashboard
--dashboard-body file://…``); the CDK stacks build their own from the same catalogue.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from serving.metrics import OPERATIONAL
from t2s.metric_names import NAMESPACE, OUTCOME_METRICS, SERVING_METRICS, VARIANT_DIMENSION

WIDTH, HEIGHT = 12, 6


def _metric(namespace: str, name: str, variant: str, **options: Any) -> list[Any]:
    return [namespace, name, VARIANT_DIMENSION, variant, options]


def _widget(index: int, title: str, metrics: list[list[Any]], *, stat: str = "Sum", period: int = 300,
            region: str, y_label: str = "") -> dict[str, Any]:
    return {"type": "metric", "x": (index % 2) * WIDTH, "y": (index // 2) * HEIGHT, "width": WIDTH,
            "height": HEIGHT, "properties": {"title": title, "region": region, "view": "timeSeries", "stat": stat,
                                             "period": period, "metrics": metrics,
                                             "yAxis": {"left": {"label": y_label, "min": 0}}}}


def dashboard_body(variants: list[str], *, region: str, namespace: str = NAMESPACE,
                   period: int = 300) -> dict[str, Any]:
    known = {m.name for m in SERVING_METRICS}
    assert {"Correct", "Labeled", "QueryResponseTime", "Requests"} <= known, "catalogue changed: update panels"
    widgets: list[dict[str, Any]] = []

    accuracy: list[list[Any]] = []
    for i, v in enumerate(variants):
        accuracy.append([{"expression": f"100 * c{i} / n{i}", "label": f"{v} accuracy %", "id": f"acc{i}"}])
        accuracy.append(_metric(namespace, "Correct", v, id=f"c{i}", visible=False))
        accuracy.append(_metric(namespace, "Labeled", v, id=f"n{i}", visible=False))
    widgets.append(_widget(0, "Online accuracy per variant (Correct / Labeled)", accuracy, period=3600,
                           region=region, y_label="%"))

    latency = [_metric(namespace, "QueryResponseTime", v, stat=s, label=f"{v} {s}") for v in variants
               for s in ("p50", "p95")]
    widgets.append(_widget(1, "QueryResponseTime per variant (ms)", latency, stat="p95", period=period,
                           region=region, y_label="ms"))
    widgets.append(_widget(2, "Requests per variant", [_metric(namespace, "Requests", v) for v in variants],
                           period=period, region=region))

    errors: list[list[Any]] = []
    for i, v in enumerate(variants):
        errors.append(_metric(namespace, "Requests", v, id=f"r{i}", visible=False))
        for j, name in enumerate(OUTCOME_METRICS):
            errors.append(_metric(namespace, name, v, id=f"o{i}_{j}", visible=False))
            errors.append([{"expression": f"100 * o{i}_{j} / r{i}", "label": f"{v} {name} %", "id": f"e{i}_{j}"}])
    widgets.append(_widget(3, "Errors per 100 requests per variant", errors, period=period, region=region,
                           y_label="%"))

    operational = [_metric(namespace, name, v) for name, _ in OPERATIONAL if name != "MetricsDropped"
                   for v in variants]
    operational.append([namespace, "MetricsDropped", {"label": "metrics dropped"}])
    widgets.append(_widget(4, "Model endpoint and metric pipeline", operational, period=period, region=region))
    return {"widgets": widgets}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m serving.dashboard VARIANT [VARIANT…] [--region R]", file=sys.stderr)
        return 2
    region = "eu-west-1"
    if "--region" in args:
        i = args.index("--region")
        region = args[i + 1]
        args = args[:i] + args[i + 2:]
    print(json.dumps(dashboard_body(args, region=region), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
