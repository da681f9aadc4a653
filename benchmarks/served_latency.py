"""How long the champion takes per answer when `t2s serve` serves it, against what the sweep measured.

The promotion gate checks a serving budget (``gate.budget.p95_latency_s``) against the per-answer latency the
evaluation recorded (:mod:`evals.budget`): the wall time of each question's generation in the sweep, one
question in flight per local llama.cpp server (each 1 thread), every server busy. A served request is one
request on one server while the other may be idle. This script measures the served side for the same
questions: it starts ``t2s serve`` (the real HTTP stack, the registered ``t2s-generator@champion``, the local
model servers it starts itself) with an EMPTY completion cache, sends one other question per server first
(each server then holds the schema prefix, as in steady serving), asks each question once, one request at a
time (or ``--concurrency`` at a time), and prints p50/p95 of the client-side wall time beside the sweep's
figures for the same question ids, and their ratio.

    python benchmarks/served_latency.py [--dataset datasets/bank] [--questions 18] [--concurrency 1]
        [--eval-dir reports/eval/bank]   # after `make demo`

Run it on a quiet machine and report the load (`uptime`) with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project's `serving` package, not benchmarks/serving.py beside this file


def _sweep_latencies(eval_dir: Path, prompt: str, model: str) -> dict[str, float]:
    """The sweep's per-answer latency of ``prompt`` on ``model``, by question id (empty if not evaluated)."""
    from evals.budget import answer_latencies
    from evals.records import VariantRun

    for folder in sorted(p.parent for p in eval_dir.rglob("variant.json")):
        run = VariantRun.read(folder)
        if run.prompt == prompt and run.model == model:
            return {i.id: lat for i in run.items for lat in answer_latencies([i])}
    return {}


def _timed_post(http, body: dict) -> float:  # type: ignore[no-untyped-def,type-arg]
    start = time.perf_counter()
    http.post("/v1/sql", json=body)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    import httpx

    from evals.budget import p95
    from pipelines.eval_config import select_items
    from serving.demo import wait_healthy
    from t2s.datasets import load_dataset
    from t2s.local_llm import free_port, server_count
    from t2s.settings import get_settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=Path("datasets/bank"))
    parser.add_argument("--questions", type=int, default=18, help="spread over the set, as the demo's eval.limit")
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight")
    parser.add_argument("--eval-dir", type=Path, default=Path("reports/eval/bank"))
    parser.add_argument("--warm-up", type=int, default=2, help="rounds of one unmeasured question per server")
    args = parser.parse_args(argv)

    from mlflow import MlflowClient

    from t2s.tracking import configure_mlflow

    settings = get_settings()
    configure_mlflow(settings)
    champion = MlflowClient().get_model_version_by_alias("t2s-generator", "champion")
    prompt, model = champion.tags["t2s.prompt"], champion.tags["t2s.model"]
    dataset = load_dataset(args.dataset)
    items = select_items(dataset.examples, args.questions, "spread")
    work = Path(tempfile.mkdtemp(prefix="t2s-served-latency-"))
    port = free_port()
    env = {**os.environ, "T2S_CACHE_DIR": str(work / "cache"),  # no completion answered from a cache
           "T2S_SERVE_STORE_URL": f"sqlite:///{work / 'store.db'}",
           "T2S_SERVE_DATABASES": json.dumps({dataset.name: str(args.dataset)}),
           "T2S_MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri}
    log = work / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port", str(port)], cwd=ROOT,
                                  env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=300, trust_env=False) as http:
            wait_healthy(http, server, log, 180)
            # One request per local model server first: it starts them and each reads the database's schema
            # prefix once (the sweep leaves each worker's first answer out of its percentiles for the same
            # reason). Questions not measured, so the service's answer cache does not serve the measured ones.
            servers = server_count(settings)
            spare = [ex for ex in dataset.examples if ex not in items][:args.warm_up * servers]
            with ThreadPoolExecutor(servers) as pool:
                warm = list(pool.map(lambda ex: _timed_post(http, {
                    "question": ex.question, "database": dataset.name, "user_id": "warm-up"}), spare))
            print(f"warm-up: {len(spare)} other questions, {servers} at a time: "
                  + ", ".join(f"{w:.1f}" for w in warm) + " s")

            def ask(item):  # type: ignore[no-untyped-def]
                start = time.perf_counter()
                r = http.post("/v1/sql", json={"question": item.question, "database": dataset.name,
                                               "user_id": f"bench-{item.id}"})
                wall = time.perf_counter() - start
                body = r.json()
                return item.id, wall, r.status_code, body.get("outcome"), body.get("latency_ms")

            started = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                results = list(pool.map(ask, items))
            elapsed = time.perf_counter() - started
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait()

    served = {qid: wall for qid, wall, *_ in results}
    sweep = _sweep_latencies(args.eval_dir, prompt, model)
    print(f"champion t2s-generator v{champion.version}: {prompt} on {model}; {len(items)} {dataset.name} questions, "
          f"{args.concurrency} in flight, {elapsed:.1f} s in all; load {os.getloadavg()[0]:.2f} (1 min)")
    print(f"{'question':<12}{'served s':>10}{'sweep s':>10}{'outcome':>12}")
    for qid, wall, status, outcome, _ in results:
        print(f"{qid:<12}{wall:>10.2f}{sweep.get(qid, float('nan')):>10.2f}{outcome or status!s:>12}")
    walls = list(served.values())
    print(f"served: p50 {statistics.median(walls):.2f} s, p95 {p95(walls):.2f} s, max {max(walls):.2f} s")
    common = [q for q in served if q in sweep]
    if common:
        sw = [sweep[q] for q in common]
        ratio = statistics.median(served[q] / sweep[q] for q in common if sweep[q] > 0)
        print(f"sweep (same {len(common)} questions): p50 {statistics.median(sw):.2f} s, p95 {p95(sw):.2f} s; "
              f"served/sweep per question: median ratio {ratio:.2f}")
    else:
        print(f"no sweep figures for {prompt} on {model} under {args.eval_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
