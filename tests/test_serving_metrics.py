"""Per-variant CloudWatch metrics: EMF documents checked against the specification's structure, batched
PutMetricData read back from a moto server through the same boto3 code, bounded buffering and counted drops
when CloudWatch is down, and the dashboard generated from the metric catalogue."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.metrics import MAX_DATUMS_PER_CALL, MAX_VALUES_PER_DATUM, Event, Metrics, batches, datums_from
from t2s.metric_names import NAMESPACE, SERVING_METRICS
from t2s.settings import Settings
from tests.serving_support import (
    free_port,
    make_settings,
    write_experiment,
)

EMF_UNITS = {"Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
             "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
             "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
             "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None"}


def check_emf(doc: dict[str, Any]) -> None:
    """The EMF specification's structural rules (root `_aws` with an integer millisecond Timestamp and
    CloudWatchMetrics directives; every referenced dimension and metric is a root member of the right type;
    ≤ 30 dimensions per set, ≤ 100 metrics per directive; units from the CloudWatch list)."""
    aws = doc["_aws"]
    assert isinstance(aws["Timestamp"], int) and aws["Timestamp"] > 1_600_000_000_000
    assert isinstance(aws["CloudWatchMetrics"], list) and aws["CloudWatchMetrics"]
    for directive in aws["CloudWatchMetrics"]:
        assert set(directive) == {"Namespace", "Dimensions", "Metrics"}
        assert isinstance(directive["Namespace"], str) and 1 <= len(directive["Namespace"]) <= 255
        for dset in directive["Dimensions"]:
            assert isinstance(dset, list) and len(dset) <= 30
            for dim in dset:
                assert isinstance(doc[dim], str) and doc[dim], dim
        assert 1 <= len(directive["Metrics"]) <= 100
        for metric in directive["Metrics"]:
            assert set(metric) <= {"Name", "Unit", "StorageResolution"} and metric["Unit"] in EMF_UNITS
            value = doc[metric["Name"]]
            assert isinstance(value, int | float) and not isinstance(value, bool), metric


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def settings_for(registry: dict[str, Any], tmp_path: Path, **extra: Any) -> Any:
    return make_settings(registry, f"sqlite:///{tmp_path / 'serving.db'}", write_experiment(tmp_path / "ab.yaml"),
                         serve_metrics_flush_s=60, **extra)


def ask(client: TestClient, question: str, user: str) -> Any:
    return client.post("/v1/sql", json={"question": question, "database": "shop", "user_id": user},
                       headers={"X-Request-ID": f"req-{user}-{len(question)}"})


def test_emf_lines_per_request_and_label(registry: dict[str, Any], tmp_path: Path,
                                         capfd: pytest.CaptureFixture[str]) -> None:
    with TestClient(create_app(settings_for(registry, tmp_path, serve_metrics="emf"))) as c:
        r = ask(c, "Which column is bogus?", "ann")
        body = r.json()
        assert c.post("/v1/feedback", json={"query_id": body["query_id"], "correct": False}).status_code == 201
        c.app.state.metrics.flush()  # type: ignore[attr-defined]
    docs = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith('{"')]
    for doc in docs:
        check_emf(doc)
    request_doc = next(d for d in docs if "Requests" in d)
    label_doc = next(d for d in docs if "Labeled" in d)
    assert request_doc["Variant"] == body["variant"] and request_doc["ModelVersion"] == body["model_version"]
    assert request_doc["PromptVersion"] == body["prompt_version"]
    assert request_doc["RequestId"] == r.headers["x-request-id"] == "req-ann-22"
    assert request_doc["QueryId"] == body["query_id"]
    assert request_doc["SQLError"] == 1 and request_doc["Timeout"] == 0 and request_doc["Requests"] == 1
    assert 0 < request_doc["QueryResponseTime"] < 30_000
    directive = request_doc["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == NAMESPACE
    assert directive["Dimensions"] == [["Variant"], ["Variant", "PromptVersion", "ModelVersion"]]
    assert all("RequestId" not in dset for dset in directive["Dimensions"])  # ids are properties only
    assert {m["Name"] for m in directive["Metrics"]} >= {m.name for m in SERVING_METRICS if m.per == "request"}
    assert label_doc["Labeled"] == 1 and label_doc["Correct"] == 0 and label_doc["QueryId"] == body["query_id"]


def test_put_metric_data_reads_back_per_variant_from_moto(registry: dict[str, Any], tmp_path: Path,
                                                          moto_url: str) -> None:
    import boto3

    namespace = f"T2S{int(time.time() * 1000)}"
    settings = settings_for(registry, tmp_path, serve_metrics="cloudwatch", serve_cloudwatch_endpoint=moto_url,
                            metrics_namespace=namespace)
    served: dict[str, int] = {}
    correct: dict[str, int] = {}
    with TestClient(create_app(settings)) as c:
        for i in range(12):
            body = ask(c, "How many customers are there?" if i % 3 else "Customers in Atlantis", f"user-{i}").json()
            served[body["variant"]] = served.get(body["variant"], 0) + 1
            ok = i % 2 == 0
            assert c.post("/v1/feedback", json={"query_id": body["query_id"], "correct": ok}).status_code == 201
            correct[body["variant"]] = correct.get(body["variant"], 0) + ok
        c.app.state.metrics.flush()  # type: ignore[attr-defined]
        status = c.get("/health/ready").json()["metrics"]
    assert status["put_metric_data_calls"] >= 1 and status["dropped"] == 0 and status["buffered"] == 0
    cw = boto3.client("cloudwatch", endpoint_url=moto_url)
    now = datetime.now(UTC)
    queries = []
    for i, variant in enumerate(sorted(served)):
        for name in ("Requests", "Labeled", "Correct", "EmptyResult"):
            queries.append({"Id": f"m{i}{name.lower()}", "ReturnData": True, "MetricStat": {
                "Metric": {"Namespace": namespace, "MetricName": name,
                           "Dimensions": [{"Name": "Variant", "Value": variant}]},
                "Period": 3600, "Stat": "Sum"}})
    result = cw.get_metric_data(MetricDataQueries=queries, StartTime=now - timedelta(hours=1),
                                EndTime=now + timedelta(minutes=5))
    sums = {r["Id"]: sum(r["Values"]) for r in result["MetricDataResults"]}
    for i, variant in enumerate(sorted(served)):
        assert sums[f"m{i}requests"] == served[variant]
        assert sums[f"m{i}labeled"] == served[variant]
        assert sums[f"m{i}correct"] == correct[variant]
    assert sum(sums[f"m{i}emptyresult"] for i in range(len(served))) == 4  # "Customers in Atlantis" x 4


def test_batches_respect_the_put_metric_data_limits() -> None:
    events = [Event({"Variant": f"v{i % 7}", "PromptVersion": "p@1", "ModelVersion": str(i % 50)},
                    {"QueryResponseTime": float(i), "Requests": 1.0}, ts=1_800_000_000 + i) for i in range(4000)]
    datums = datums_from(events)
    assert all(len(d["Values"]) <= MAX_VALUES_PER_DATUM and len(d["Values"]) == len(d["Counts"]) for d in datums)
    assert sum(sum(d["Counts"]) for d in datums if d["MetricName"] == "Requests" and len(d["Dimensions"]) == 1) == 4000
    calls = batches(datums)
    assert len(calls) > 1 and sum(len(c) for c in calls) == len(datums)
    assert all(len(c) <= MAX_DATUMS_PER_CALL and len(json.dumps(c)) < 1_000_000 for c in calls)


def test_cloudwatch_down_buffers_to_a_bound_then_drops_and_counts(registry: dict[str, Any], tmp_path: Path,
                                                                   moto_url: str) -> None:
    import boto3
    from botocore.config import Config

    dead = f"http://127.0.0.1:{free_port()}"
    settings = settings_for(registry, tmp_path, serve_metrics="cloudwatch", serve_cloudwatch_endpoint=dead,
                            serve_metrics_buffer=10, metrics_namespace="T2SDown")
    metrics = Metrics(settings)
    try:
        start = time.perf_counter()
        for i in range(25):
            metrics.request(variant="down-test", prompt_version="demo@1", model_version="1", outcome="ok",
                            latency_ms=5.0, request_id=f"r{i}", query_id=f"q{i}")
        assert time.perf_counter() - start < 0.1  # enqueueing never waits for CloudWatch
        metrics.flush()
        status = metrics.status()
        assert status["buffered"] == 10 and status["dropped"] == 15
        assert status["last_error"].startswith("cloudwatch:")
        metrics._client = boto3.client("cloudwatch", endpoint_url=moto_url, config=Config(retries={"max_attempts": 1}))
        metrics.flush()
        assert metrics.status()["buffered"] == 0 and metrics.status()["last_error"] is None
    finally:
        metrics.close()
    # (a variant name of its own: moto's get_metric_data does not filter by namespace)
    cw = boto3.client("cloudwatch", endpoint_url=moto_url)
    now = datetime.now(UTC)
    queries = [{"Id": f"m{i}", "ReturnData": True, "MetricStat": {
        "Metric": {"Namespace": "T2SDown", "MetricName": name, "Dimensions": dims}, "Period": 3600, "Stat": "Sum"}}
        for i, (name, dims) in enumerate((("Requests", [{"Name": "Variant", "Value": "down-test"}]),
                                          ("MetricsDropped", [])))]
    result = cw.get_metric_data(MetricDataQueries=queries, StartTime=now - timedelta(hours=1),
                                EndTime=now + timedelta(minutes=5))
    sums = {r["Id"]: sum(r["Values"]) for r in result["MetricDataResults"]}
    assert sums["m0"] == 10  # the buffered ones arrived
    assert sums["m1"] == 15  # and the drop count was published


def test_emf_sink_never_blocks_and_the_dashboard_follows_the_catalogue() -> None:
    from serving.dashboard import dashboard_body

    class Stuck(io.StringIO):
        def write(self, s: str) -> int:
            time.sleep(0.05)
            return super().write(s)

    settings = Settings(serve_metrics="emf", serve_metrics_buffer=10)
    metrics = Metrics(settings, stream=Stuck())
    start = time.perf_counter()
    for i in range(50):
        metrics.label(variant="a", prompt_version=None, model_version=None, correct=True, request_id=str(i),
                      query_id=str(i))
    assert time.perf_counter() - start < 0.05
    assert metrics.status()["dropped"] >= 30
    metrics.close()
    body = dashboard_body(["champion", "challenger"], region="eu-west-1")
    text = json.dumps(body)
    for m in SERVING_METRICS:
        assert f'"{m.name}"' in text, m.name
    accuracy = [w for w in body["widgets"] if "accuracy" in w["properties"]["title"].lower()]
    assert accuracy and any("Correct" in json.dumps(w) and "/" in json.dumps(w) for w in accuracy)
