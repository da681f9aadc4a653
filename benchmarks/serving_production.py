"""Added per-request cost of the production layers (µs), measured in one run, in process.

Each layer is timed alone, as the request path calls it, N times after a warm-up:

- auth: an API-key check (SHA-256 + constant-time compare over the key records) and a JWT check (RS256
  signature and claims; the JWKS served on loopback, key set cached as in production);
- rate limit: one ``hit`` in process memory and in a private ``redis-server`` on loopback;
- metrics: what the request thread pays (enqueue) per sink, and what the background thread pays per
  request (an EMF line written to /dev/null; folding into PutMetricData datums and batching);
- the request log line (JSON formatting, written to /dev/null).

Run alone with ``benchmarks/serving.py --only-production``; ``benchmarks/serving.py`` runs it last.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def per_call_us(fn: Callable[[], Any], n: int, repeats: int = 3) -> float:
    """Median over ``repeats`` of the mean time per call, in microseconds."""
    for _ in range(min(n, 200)):
        fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(runs)


def measure(n: int = 2000) -> dict[str, float]:
    from serving.auth import Authenticator
    from serving.logs import JsonFormatter
    from serving.metrics import Event, Metrics, batches, datums_from, emf_document
    from serving.ratelimit import RateLimiter
    from t2s.settings import Settings
    from tests.serving_prod_support import (
        CLIENT_ID,
        ISSUER,
        JwksServer,
        public_jwk,
        redis_server,
        rsa_key,
        token,
        write_api_keys,
    )

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="t2s-bench-prod-") as tmp:
        root = Path(tmp)
        key = rsa_key()
        jwks = JwksServer([public_jwk(key, "k1")])
        keys = {f"svc{i}": (f"t2s_key-{i:04d}-0123456789abcdef", "caller") for i in range(10)}
        settings = Settings(serve_auth="required", serve_user_hash_key="benchmark-user-hash-key",
                            serve_jwks_url=jwks.url, serve_jwt_issuer=ISSUER,
                            serve_jwt_client_ids=[CLIENT_ID], serve_api_keys_file=write_api_keys(root / "k.json", keys),
                            serve_rate_limit="1000000/minute", serve_rate_limit_other="1000000/minute",
                            serve_metrics="both", serve_metrics_buffer=1_000_000, serve_metrics_flush_s=3600,
                            serve_cloudwatch_endpoint="http://127.0.0.1:9")
        auth = Authenticator(settings)
        tok = token(key, groups=["analysts"])
        last_key = keys["svc9"][0]
        out["auth: API key (10 records)"] = per_call_us(lambda: auth.authenticate(None, last_key, "x"), n)
        out["auth: JWT RS256 (JWKS cached)"] = per_call_us(lambda: auth.authenticate(tok, None, "x"), n)
        jwks.close()

        memory = RateLimiter(settings)
        out["rate limit: memory"] = per_call_us(lambda: memory.hit("key:svc1", "generate"), n)
        with redis_server(root) as (url, _proc):
            shared = RateLimiter(settings.model_copy(update={"serve_redis_url": url}))
            out["rate limit: redis (loopback)"] = per_call_us(lambda: shared.hit("key:svc1", "generate"), n)

        devnull = open(os.devnull, "w")  # noqa: SIM115
        try:
            for sinks in ("emf", "cloudwatch"):
                m = Metrics(settings.model_copy(update={"serve_metrics": sinks}), stream=devnull,
                            client=_NullCloudWatch())
                out[f"metrics enqueue (request thread), {sinks}"] = per_call_us(lambda m=m: m.request(
                    variant="champion", prompt_version="p@1", model_version="3", outcome="ok", latency_ms=12.5,
                    request_id="r", query_id="q"), n)
                m.close()
            event = Event({"Variant": "champion", "PromptVersion": "p@1", "ModelVersion": "3"},
                          {"Requests": 1.0, "QueryResponseTime": 12.5, "SQLError": 0.0, "EmptyResult": 0.0,
                           "GuardRefused": 0.0, "Timeout": 0.0, "ModelError": 0.0, "CachedAnswer": 0.0,
                           "CircuitOpen": 0.0}, {"RequestId": "r", "QueryId": "q"})
            out["metrics background: EMF line"] = per_call_us(
                lambda: devnull.write(json.dumps(emf_document("TextToSQL", event), separators=(",", ":")) + "\n"), n)
            events = [Event(event.dims, {**event.values, "QueryResponseTime": float(i % 900)}, ts=event.ts)
                      for i in range(n)]
            start = time.perf_counter()
            batches(datums_from(events))
            out["metrics background: PutMetricData folding"] = (time.perf_counter() - start) / n * 1e6

            record = logging.LogRecord("t2s.serving.requests", logging.INFO, "", 0, "request", None, None)
            record.__dict__.update(request_id="abc", method="POST", path="/v1/sql", status=200, latency_ms=12.3,
                                   principal="key:svc1", query_id="q", variant="champion", outcome="ok")
            fmt = JsonFormatter()
            out["request log line (JSON)"] = per_call_us(lambda: devnull.write(fmt.format(record) + "\n"), n)
        finally:
            devnull.close()
    return out


class _NullCloudWatch:
    def put_metric_data(self, **_kwargs: Any) -> None:
        return None


def report(n: int = 2000) -> None:
    print(f"# added cost per request of the production layers (µs, mean of {n} calls, median of 3; shared box)")
    for name, us in measure(n).items():
        print(f"  {name:<45} {us:8.1f} µs")


if __name__ == "__main__":
    report(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
