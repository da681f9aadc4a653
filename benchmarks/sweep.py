"""Sweep benchmark: where a `t2s eval` cell spends its time, and how the client fills a slow endpoint.

(1) A simulated model endpoint on loopback answers every chat completion after a fixed delay (default
    200 ms) with the question's gold SQL. Raw client throughput at concurrency 8 is compared with the
    ideal (concurrency / delay = 40 calls/s), then a whole cell (schema context, generation, scoring,
    MLflow logging) is timed on the bundled golden set, split into generation, scoring and logging.
(2) With --local N, the same split with the real local model on the first N questions.

(3) With --logging-items N (default 1000), the same split for an N-question cell: what logging one MLflow
    trace per question costs against generating the answers.

    .venv/bin/python benchmarks/sweep.py [--delay 0.2] [--concurrency 8] [--calls 160] [--local 20]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class SlowModel:
    """An OpenAI-compatible endpoint that answers after ``delay`` seconds with the gold SQL."""

    def __init__(self, delay: float, answers: dict[str, str]) -> None:
        outer = self
        self.calls = 0
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # The headers and the body leave in two writes; with Nagle's algorithm on, the body waits for
            # the client's delayed ACK (~40 ms on Linux loopback), a cost no real model server adds.
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                time.sleep(delay)
                question = body["messages"][-1]["content"].rsplit("Question:", 1)[-1].strip()
                sql = answers.get(question, "SELECT 1")
                payload = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                      "choices": [{"index": 0, "finish_reason": "stop",
                                                   "message": {"role": "assistant", "content": sql}}],
                                      "usage": {"prompt_tokens": 900, "completion_tokens": 30, "total_tokens": 930}})
                with outer._lock:
                    outer.calls += 1
                data = payload.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        ThreadingHTTPServer.request_queue_size = 64
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


def timed_cell(settings: Any, client: Any, dataset: Any, prompt_ref: str, model: Any, workers: int,
               limit: int | None, work: Path) -> dict[str, float]:
    """One cell, with generation, scoring and MLflow logging timed separately.

    Scoring overlaps generation (each question is scored as its answer arrives), so ``scoring`` here is
    only what is left after the last answer: the tail the cell waits for.
    """
    import pipelines.evaluate as ev
    from pipelines.eval_config import EvalConfig
    from pipelines.mlflow_runs import experiment_id, log_variant, sweep_run_id
    from t2s.prompts import PromptLibrary, parse_ref

    name, version = parse_ref(prompt_ref)
    pf = PromptLibrary(ROOT / "prompts").get(name, int(version or 0))
    config = EvalConfig(datasets=[dataset.root], prompts=[prompt_ref], models=[model], workers=workers, limit=limit)
    spans = {"generation": 0.0, "scoring": 0.0}
    real_generate, real_both = ev.generate_all, ev.generate_and_score

    def gen_timed(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return real_generate(*a, **k)
        finally:
            spans["generation"] += time.perf_counter() - t

    def both_timed(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return real_both(*a, **k)
        finally:
            spans["scoring"] += time.perf_counter() - t - spans["generation"]

    ev.generate_all, ev.generate_and_score = gen_timed, both_timed
    try:
        start = time.perf_counter()
        variant = ev.evaluate_cell(dataset, pf, model, client, config,
                                   cache_path=work / "gold.sqlite")
        cell = time.perf_counter() - start
    finally:
        ev.generate_all, ev.generate_and_score = real_generate, real_both
    exp = experiment_id(dataset.name)
    parent = sweep_run_id(exp, f"bench-{time.time_ns()}", {})
    import pipelines.mlflow_traces as traces

    real_traces = traces.log_question_traces
    spans["question_traces"] = 0.0

    def traces_timed(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return real_traces(*a, **k)
        finally:
            spans["question_traces"] += time.perf_counter() - t

    traces.log_question_traces = traces_timed
    t = time.perf_counter()
    try:
        log_variant(variant, exp_id=exp, parent_run_id=parent, dataset_root=dataset.root,
                    folder=work / f"v-{time.time_ns()}", params={"bench": 1})
    finally:
        traces.log_question_traces = real_traces
    spans["mlflow_logging"] = time.perf_counter() - t
    spans["other"] = cell - spans["generation"] - spans["scoring"]
    spans["cell"] = cell
    spans["total"] = cell + spans["mlflow_logging"]
    spans["items"] = len(variant.items)
    spans["accuracy"] = variant.metrics["execution_accuracy"]
    return spans


def replicated(dataset: Any, n: int) -> Any:
    """``dataset`` with its questions repeated (new ids) up to ``n`` items, so a high concurrency has
    enough questions for whole rounds of calls."""
    from t2s.datasets import Dataset

    base = list(dataset.examples)
    examples = [base[i % len(base)].model_copy(update={"id": f"{base[i % len(base)].id}~{i // len(base)}"})
                for i in range(max(n, len(base)))]
    return Dataset(dataset.root, dataset.manifest, examples)


def print_split(title: str, s: dict[str, float]) -> None:
    total = s["total"]
    print(f"  {title}: {int(s['items'])} questions, {total:.2f} s total, accuracy {100 * s['accuracy']:.0f}%")
    for key in ("generation", "scoring", "mlflow_logging", "other"):
        print(f"    {key:<15}{s[key]:8.2f} s  {100 * s[key] / total:5.1f}%")
    print(f"    MLflow logging / generation = {s['mlflow_logging'] / s['generation']:.3f} (of which one trace per "
          f"question: {s['question_traces']:.2f} s = {1000 * s['question_traces'] / s['items']:.1f} ms per question)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--delay", type=float, default=0.2, help="Simulated model latency per call (s).")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32],
                        help="Client concurrencies to measure (default: 8 32; hosted models allow 32).")
    parser.add_argument("--calls", type=int, default=160)
    parser.add_argument("--local", type=int, default=0, help="Also split a cell on the real local model (N questions).")
    parser.add_argument("--logging-items", type=int, default=1000,
                        help="Also split a cell of N questions at the last concurrency: what logging N per-question "
                             "traces costs against generating them (0: skip).")
    args = parser.parse_args()

    from evals.predictions import gold_as_predictions
    from pipelines.eval_config import ModelSpec
    from t2s.datasets import load_dataset
    from t2s.llm import ChatParams, LLMClient
    from t2s.settings import Settings
    from t2s.tracking import configure_mlflow

    dataset = load_dataset(ROOT / "datasets" / "bank")
    gold = gold_as_predictions(dataset)
    answers = {ex.question: gold[ex.id] or "SELECT 1" for ex in dataset.examples}
    server = SlowModel(args.delay, answers)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for concurrency in args.concurrency:
            settings = Settings(cache_dir=work / f"cache-{concurrency}", llm_provider="compatible",
                                llm_base_url=server.url, llm_model="slow-model", llm_api_key="x",
                                llm_concurrency=concurrency, mlflow_tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
            configure_mlflow(settings)
            ideal = concurrency / args.delay
            print(f"(1) simulated endpoint: {args.delay * 1000:.0f} ms per call, client concurrency {concurrency} "
                  f"(ideal {ideal:.0f} calls/s)")
            client = LLMClient.from_settings(settings, cache=None)
            questions = [ex.question for ex in dataset.examples]
            n_calls = max(args.calls, 20 * concurrency)
            calls = [questions[i % len(questions)] for i in range(n_calls)]
            start = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(lambda q, c=client: c.complete([{"role": "user", "content": f"Question: {q}"}],
                                                             ChatParams()), calls))
            wall = time.perf_counter() - start
            print(f"  raw client: {n_calls} calls in {wall:.2f} s = {n_calls / wall:.1f} calls/s "
                  f"= {100 * n_calls / wall / ideal:.0f}% of ideal")
            client.close()
            model = ModelSpec(name="slow-model", provider="compatible")
            # Whole rounds of calls (ten per slot), no completion cache: every question costs one call.
            rounds = max(10, -(-len(dataset.examples) // concurrency))  # whole rounds of calls, at least ten
            cell_ds = replicated(dataset, concurrency * rounds)
            cell_client = LLMClient.from_settings(settings, cache=None)
            split = timed_cell(settings, cell_client, cell_ds, "sql-analyst@2", model, concurrency, None, work)
            cell_client.close()
            cell_rate = split["items"] / split["cell"]
            print(f"  a whole cell with workers={concurrency} (schema context, generation, extraction, scoring "
                  f"overlapped): {int(split['items'])} questions in {split['cell']:.2f} s = {cell_rate:.1f} "
                  f"questions/s = {100 * cell_rate / ideal:.0f}% of ideal")
            print_split("cell split (simulated model)", split)
        if args.logging_items:
            big = replicated(dataset, args.logging_items)
            big_client = LLMClient.from_settings(settings, cache=None)
            split = timed_cell(settings, big_client, big, "sql-analyst@2", model, args.concurrency[-1], None, work)
            big_client.close()
            print(f"  a {int(split['items'])}-question cell, workers={args.concurrency[-1]}:")
            print_split("cell split (simulated model)", split)
        server.close()

        if args.local:
            from t2s.local_llm import client_for

            local = settings.model_copy(update={"llm_provider": "local", "llm_base_url": None,
                                                "llm_model": "qwen2.5-coder-0.5b-instruct",
                                                "cache_dir": work / "local-cache"})
            print(f"\n(2) the real local model, first {args.local} questions, workers=1:")
            with client_for(local, lazy=False) as llm:
                split = timed_cell(local, llm, dataset, "sql-analyst@2",
                                   ModelSpec(name="qwen2.5-coder-0.5b-instruct"), 1, args.local, work)
            print_split("cell split (local model)", split)


if __name__ == "__main__":
    main()
