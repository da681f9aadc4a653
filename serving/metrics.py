"""Per-variant CloudWatch metrics: Embedded Metric Format lines on stdout and/or batched ``PutMetricData``.

Names, units and the namespace come from the catalogue :mod:`t2s.metric_names` (the infrastructure builds
its dashboard and alarms from the same list), plus the operational metrics in :data:`OPERATIONAL`.
Per request: ``QueryResponseTime`` (ms), ``Requests``, one 0/1 counter per outcome class (``SQLError``,
``EmptyResult``, ``GuardRefused``, ``Timeout``, ``ModelError``) and ``CachedAnswer``/``CircuitOpen``; per
label: ``Labeled`` and ``Correct`` (accuracy = sum(Correct)/sum(Labeled), computed by CloudWatch).
Dimension sets: ``[Variant]`` (what dashboards and alarms read) and ``[Variant, PromptVersion,
ModelVersion]``; request and query ids are EMF properties, never dimensions (cardinality).

**A sink never blocks or fails a request.** Handlers call :meth:`Metrics.request` / :meth:`Metrics.label`,
which only put an event on a bounded queue (``T2S_SERVE_METRICS_BUFFER``); one background thread writes the
EMF lines and aggregates datums for ``PutMetricData`` (every ``T2S_SERVE_METRICS_FLUSH_S``; ≤ 1000 datums
and < 1 MB per call, values folded into ``Values``/``Counts``). When CloudWatch is unreachable the datums
stay buffered up to the same bound; beyond it they are dropped and counted. The count is in
``/health/ready`` and is published as ``MetricsDropped`` once a sink works again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, TextIO

from t2s.metric_names import SERVING_METRICS, VARIANT_DIMENSION
from t2s.settings import Settings

log = logging.getLogger("t2s.serving.metrics")

OPERATIONAL: tuple[tuple[str, str], ...] = (
    ("ModelError", "Count"), ("CircuitOpen", "Count"), ("CachedAnswer", "Count"), ("MetricsDropped", "Count"))
UNITS: dict[str, str] = {m.name: m.unit for m in SERVING_METRICS} | dict(OPERATIONAL)
OUTCOME_COUNTERS = {"sql_error": "SQLError", "empty": "EmptyResult", "guard_refused": "GuardRefused",
                    "timeout": "Timeout", "llm_error": "ModelError"}
FULL_DIMENSIONS = [VARIANT_DIMENSION, "PromptVersion", "ModelVersion"]
DIMENSION_SETS = [[VARIANT_DIMENSION], FULL_DIMENSIONS]
MAX_DATUMS_PER_CALL = 1000
MAX_BYTES_PER_CALL = 900_000  # PutMetricData takes 1 MB; the estimate below is JSON, the wire is smaller
MAX_VALUES_PER_DATUM = 150
MAX_METRICS_PER_EMF = 100


@dataclass
class Event:
    dims: dict[str, str]
    values: dict[str, float]
    properties: dict[str, str] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)


def sinks_for(settings: Settings) -> set[str]:
    choice = settings.serve_metrics
    if choice == "auto":
        on_aws = bool(os.environ.get("AWS_EMF_ENVIRONMENT") or os.environ.get("ECS_CONTAINER_METADATA_URI_V4"))
        return {"emf"} if on_aws else set()
    return {"emf", "cloudwatch"} if choice == "both" else set() if choice == "none" else {choice}


def emf_document(namespace: str, event: Event) -> dict[str, Any]:
    """One EMF document (≤ 100 metrics, the CloudWatch Logs extraction limit)."""
    names = list(event.values)[:MAX_METRICS_PER_EMF]
    doc: dict[str, Any] = {**event.properties, **event.dims}
    doc["_aws"] = {"Timestamp": int(event.ts * 1000), "CloudWatchMetrics": [{
        "Namespace": namespace,
        "Dimensions": [s for s in DIMENSION_SETS if all(d in event.dims for d in s)] or [[]],
        "Metrics": [{"Name": n, "Unit": UNITS.get(n, "None")} for n in names]}]}
    for n in names:
        doc[n] = event.values[n]
    return doc


def datums_from(events: list[Event]) -> list[dict[str, Any]]:
    """Fold events into PutMetricData datums: one per (metric, dimension set, minute), Values/Counts arrays."""
    folded: dict[tuple[str, tuple[tuple[str, str], ...], int], Counter[float]] = {}
    for e in events:
        minute = int(e.ts // 60) * 60
        for dset in DIMENSION_SETS:
            if not all(d in e.dims for d in dset):
                continue
            dims = tuple((d, e.dims[d]) for d in dset)
            for name, value in e.values.items():
                folded.setdefault((name, dims, minute), Counter())[round(value, 1)] += 1
        if not e.dims:
            for name, value in e.values.items():
                folded.setdefault((name, (), minute), Counter())[round(value, 1)] += 1
    datums = []
    for (name, dims, minute), counts in folded.items():
        items = sorted(counts.items())
        for i in range(0, len(items), MAX_VALUES_PER_DATUM):
            chunk = items[i:i + MAX_VALUES_PER_DATUM]
            datums.append({"MetricName": name, "Dimensions": [{"Name": k, "Value": v} for k, v in dims],
                           "Timestamp": minute, "Unit": UNITS.get(name, "None"),
                           "Values": [v for v, _ in chunk], "Counts": [float(c) for _, c in chunk]})
    return datums


def batches(datums: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split into PutMetricData calls: ≤ 1000 datums and under the size bound each."""
    out: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for d in datums:
        n = len(json.dumps(d)) + 16
        if current and (len(current) >= MAX_DATUMS_PER_CALL or size + n > MAX_BYTES_PER_CALL):
            out.append(current)
            current, size = [], 0
        current.append(d)
        size += n
    if current:
        out.append(current)
    return out


class Metrics:
    """The process's metric publisher. ``stream``: where EMF lines go (stdout by default)."""

    def __init__(self, settings: Settings, stream: TextIO | None = None, client: Any = None) -> None:
        self.namespace = settings.metrics_namespace
        self.sinks = sinks_for(settings)
        self.bound = settings.serve_metrics_buffer
        self.flush_s = settings.serve_metrics_flush_s
        self._stream = stream
        self._endpoint = settings.serve_cloudwatch_endpoint
        self._client = client
        self._queue: queue.Queue[Event | None] = queue.Queue(maxsize=self.bound)
        self._pending: deque[Event] = deque()  # waiting for PutMetricData
        self.dropped = 0
        self._dropped_published = 0
        self.sent_calls = 0
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._flush_now = threading.Event()
        self._thread: threading.Thread | None = None
        if self.sinks:
            self._thread = threading.Thread(target=self._run, name="t2s-metrics", daemon=True)
            self._thread.start()

    # -- called by request handlers (never blocks)

    def _put(self, event: Event) -> None:
        if not self.sinks:
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            with self._lock:
                self.dropped += 1

    def request(self, *, variant: str, prompt_version: str | None, model_version: str | None, outcome: str,
                latency_ms: float, request_id: str, query_id: str, cached: bool = False,
                circuit_open: bool = False) -> None:
        values = {"Requests": 1.0, "QueryResponseTime": latency_ms}
        for name in OUTCOME_COUNTERS.values():
            values[name] = 0.0
        if outcome in OUTCOME_COUNTERS:
            values[OUTCOME_COUNTERS[outcome]] = 1.0
        values["CachedAnswer"] = 1.0 if cached else 0.0
        values["CircuitOpen"] = 1.0 if circuit_open else 0.0
        self._put(Event(self._dims(variant, prompt_version, model_version), values,
                        {"RequestId": request_id, "QueryId": query_id, "Outcome": outcome}))

    def label(self, *, variant: str, prompt_version: str | None, model_version: str | None, correct: bool,
              request_id: str, query_id: str) -> None:
        self._put(Event(self._dims(variant, prompt_version, model_version),
                        {"Labeled": 1.0, "Correct": 1.0 if correct else 0.0},
                        {"RequestId": request_id, "QueryId": query_id}))

    @staticmethod
    def _dims(variant: str, prompt_version: str | None, model_version: str | None) -> dict[str, str]:
        return {VARIANT_DIMENSION: variant, "PromptVersion": prompt_version or "none",
                "ModelVersion": model_version or "none"}

    def status(self) -> dict[str, Any]:
        return {"sinks": sorted(self.sinks), "buffered": self._queue.qsize() + len(self._pending),
                "dropped": self.dropped, "put_metric_data_calls": self.sent_calls, "last_error": self.last_error}

    def flush(self, timeout_s: float = 10.0) -> None:
        """Write everything queued so far (tests, shutdown). Returns when the queue is drained or at timeout."""
        if self._thread is None:
            return
        self._flush_now.set()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and (self._queue.unfinished_tasks or self._flush_now.is_set()):
            time.sleep(0.01)

    def close(self) -> None:
        if self._thread is None:
            return
        self.flush(5.0)
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=1.0)
        self._thread.join(timeout=5.0)
        self._thread = None

    # -- the background thread

    def _run(self) -> None:
        next_flush = time.monotonic() + self.flush_s
        while True:
            try:
                event = self._queue.get(timeout=0.05)
            except queue.Empty:
                event = False  # type: ignore[assignment]
            if event is None:
                self._queue.task_done()
                self._send(force=True)
                return
            if event is not False:
                self._handle(event)
                self._queue.task_done()
            flush_requested = self._flush_now.is_set() and self._queue.empty()
            if flush_requested or time.monotonic() >= next_flush or len(self._pending) >= self.bound:
                self._send(force=flush_requested)
                next_flush = time.monotonic() + self.flush_s
                if flush_requested:
                    self._flush_now.clear()

    def _handle(self, event: Event) -> None:
        if "emf" in self.sinks:
            try:
                stream = self._stream or sys.stdout
                stream.write(json.dumps(emf_document(self.namespace, event), separators=(",", ":")) + "\n")
                stream.flush()
            except Exception as exc:  # a closed or broken stdout must not stop the thread
                with self._lock:
                    self.dropped += 1
                    self.last_error = f"emf: {type(exc).__name__}: {exc}"
        if "cloudwatch" in self.sinks:
            self._pending.append(event)
            overflow = len(self._pending) - self.bound
            for _ in range(max(0, overflow)):
                self._pending.popleft()
            if overflow > 0:
                with self._lock:
                    self.dropped += overflow

    def _cloudwatch(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client("cloudwatch", endpoint_url=self._endpoint,
                                        config=Config(connect_timeout=2, read_timeout=5,
                                                      retries={"max_attempts": 2, "mode": "standard"}))
        return self._client

    def _send(self, force: bool = False) -> None:
        new_drops = self.dropped - self._dropped_published
        if "emf" in self.sinks and new_drops > 0 and "cloudwatch" not in self.sinks:
            self._handle_drop_line(new_drops)
        if "cloudwatch" not in self.sinks or (not self._pending and new_drops <= 0):
            return
        events = list(self._pending)
        if new_drops > 0:
            events.append(Event({}, {"MetricsDropped": float(new_drops)}))
        try:
            client = self._cloudwatch()
            for batch in batches(datums_from(events)):
                client.put_metric_data(Namespace=self.namespace, MetricData=batch)
                self.sent_calls += 1
        except Exception as exc:  # unreachable, throttled, credentials: keep the events (bounded) for later
            self.last_error = f"cloudwatch: {type(exc).__name__}: {str(exc)[:200]}"
            log.warning("PutMetricData failed; %d events kept for the next attempt: %s", len(self._pending),
                        self.last_error)
            return
        for _ in range(len(events) - (1 if new_drops > 0 else 0)):
            self._pending.popleft()
        self._dropped_published += max(0, new_drops)
        self.last_error = None

    def _handle_drop_line(self, n: int) -> None:
        self._dropped_published += n
        self._handle(Event({}, {"MetricsDropped": float(n)}))
