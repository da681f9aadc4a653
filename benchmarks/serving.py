"""Serving measurements (figures, not tests): overhead, concurrency against a slow model, a bounded soak.

Everything runs on loopback: a real MLflow registry in a temp dir with a ``t2s-generator@champion`` bundle
on the ``bank`` database (built into the temp dir with ``pipelines.build_bank``), a scripted
OpenAI-compatible model (asyncio, its own process), and the app under ``uvicorn`` in its own process, driven
by N concurrent asyncio HTTP/1.1 keep-alive clients.

1. **overhead**: completions answered from the completion cache (warmed first), ``execute=true`` on
   ``bank``; requests/s and p50/p99, and the same for a bare FastAPI echo endpoint served the same way,
   as a ratio.
2. **slow model**: the model answers in a fixed 1 s; 100 concurrent users, after one unmeasured round that
   opens the model client's connections: p95 (target ≤ 1.3 s), errors;
   and the same burst sent straight to the model through the ``openai`` client (no app): the box's floor.
3. **soak**: ``--soak-s`` seconds at 100 clients, each request followed by a feedback label; 5xx count,
   and the rows persisted in the store compared with the requests and labels the clients saw succeed.
4. **production layers**: the added cost per request (µs) of auth (API key, JWT), the rate limit (memory,
   Redis), each metrics sink and the request log, timed in process in the same run
   (:mod:`benchmarks.serving_production`; ``--only-production`` runs just this part).

    .venv/bin/python benchmarks/serving.py [--clients 100] [--requests 1000] [--soak-s 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.serving_support import free_port, start_uvicorn  # noqa: E402

BANK_QUESTIONS = ["How many branches are there?", "How many customers are there?",
                  "List the names of all branches.", "How many accounts are closed?"]
ECHO_APP = """
from fastapi import FastAPI
from pydantic import BaseModel

class Body(BaseModel):
    question: str
    database: str = "bank"
    user_id: str | None = None

app = FastAPI()

@app.post("/v1/sql")
async def echo(body: Body) -> dict:
    return {"question": body.question, "database": body.database}
"""


def setup_registry(root: Path, model_url: str) -> dict[str, str]:
    import shutil

    import mlflow
    import yaml
    from mlflow import MlflowClient

    from t2s.bundle import REGISTERED_MODEL, bundle_config, log_bundle
    from t2s.prompts import PromptLibrary, push
    from t2s.settings import Settings
    from t2s.tracking import configure_mlflow

    ds = root / "bank"
    shutil.copytree(ROOT / "datasets" / "bank", ds, ignore=shutil.ignore_patterns("*.sqlite", "examples"))
    subprocess.run([sys.executable, "-m", "pipelines.build_bank", "--out", str(ds / "bank.sqlite")], cwd=ROOT,
                   check=True, capture_output=True)
    prompts = root / "prompts" / "bench"
    prompts.mkdir(parents=True)
    (prompts / "v1.yaml").write_text(yaml.safe_dump({
        "name": "bench", "version": 1, "description": "benchmark prompt", "dialect": "sqlite",
        "variables": ["schema", "question"],
        "messages": [{"role": "system", "content": "Write one SQLite query."},
                     {"role": "user", "content": "{{schema}}\nQuestion: {{question}}"}]}))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    configure_mlflow(Settings(mlflow_tracking_uri=uri, prompts_dir=root / "prompts"))
    push(PromptLibrary(root / "prompts"))
    with mlflow.start_run():
        info = log_bundle(bundle_config("prompts:/bench/1", "compatible", "bench-model", ds, base_url=model_url))
    MlflowClient().set_registered_model_alias(REGISTERED_MODEL, "champion", info.registered_model_version)
    return {"T2S_MLFLOW_TRACKING_URI": uri, "T2S_PROMPTS_DIR": str(root / "prompts"),
            "T2S_CACHE_DIR": str(root / "cache"), "T2S_SERVE_STORE_URL": f"sqlite:///{root / 'store.db'}",
            "T2S_SERVE_EXPERIMENT_FILE": str(root / "none.yaml"),
            "T2S_SERVE_DATABASES": json.dumps({"bank": str(ds)}), "T2S_LLM_API_KEY": "bench",
            "T2S_LLM_MAX_RETRIES": "0"}


class Conn:
    """A minimal HTTP/1.1 keep-alive client connection (asyncio streams): cheap enough that the client does
    not become what is measured on a 2-core machine (httpx's async pool did)."""

    headers = ""  # extra header lines ("Name: value\r\n"), e.g. the API key of the production-layers run

    def __init__(self, port: int, headers: str | None = None) -> None:
        self.port = port
        if headers is not None:
            self.headers = headers
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, payload: dict) -> tuple[int, dict]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        body = json.dumps(payload).encode()
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          f"{self.headers}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(int(v) for k, _, v in (ln.partition(":") for ln in lines[1:]) if k.lower() == "content-length")
        data = await self.reader.readexactly(length)
        return status, json.loads(data)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def drive(port: int, clients: int, total: int | None, seconds: float | None, questions: list[str],
                label: bool = False, user_prefix: str = "u", headers: str | None = None) -> dict[str, Any]:
    """``clients`` keep-alive connections posting ``questions`` in turn; ``headers``: extra header lines."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    labels_ok = 0
    counter = 0
    deadline = time.perf_counter() + seconds if seconds else None

    async def worker(w: int) -> None:
        nonlocal counter, labels_ok
        conn = Conn(port, headers)
        try:
            while True:
                if total is not None and counter >= total:
                    return
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                i = counter
                counter += 1
                start = time.perf_counter()
                try:
                    code, body = await conn.post("/v1/sql", {"question": questions[i % len(questions)],
                                                            "database": "bank", "user_id": f"{user_prefix}{w}"})
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    code, body = 0, {}
                    conn.close()
                    conn = Conn(port, headers)
                latencies.append(time.perf_counter() - start)
                statuses[code] = statuses.get(code, 0) + 1
                if label and code == 200:
                    f, _ = await conn.post("/v1/feedback", {"query_id": body["query_id"], "correct": i % 2 == 0})
                    labels_ok += f == 201
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(clients)))
    wall = time.perf_counter() - start
    return {**latency_summary(latencies, wall), "errors": sum(v for k, v in statuses.items() if k != 200),
            "5xx": sum(v for k, v in statuses.items() if k >= 500 or k == 0), "labels": labels_ok,
            "statuses": statuses}


def latency_summary(latencies: list[float], wall: float) -> dict[str, Any]:
    """Requests, requests/s and p50/p95/p99 of one run."""
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99
    return {"requests": len(latencies), "rps": len(latencies) / wall, "p50": q[49], "p95": q[94], "p99": q[98]}


def fmt(r: dict[str, Any]) -> str:
    return (f"{r['requests']:.0f} requests, {r['rps']:.0f} req/s, p50 {r['p50'] * 1000:.1f} ms, "
            f"p95 {r['p95'] * 1000:.1f} ms, p99 {r['p99'] * 1000:.1f} ms, errors {r['errors']:.0f}"
            + (f" (statuses {r['statuses']})" if r["errors"] else ""))


SQL = {"How many branches are there?": "SELECT COUNT(*) FROM branches",
       "How many customers are there?": "SELECT COUNT(*) FROM customers",
       "List the names of all branches.": "SELECT name FROM branches",
       "How many accounts are closed?": "SELECT COUNT(*) FROM accounts WHERE status = 'closed'"}


def bank_answer(question: str) -> tuple[float, str]:
    """(delay, SQL) of the scripted model: questions marked ``#slow`` after 1 s, the others at once."""
    return (1.0 if "#slow" in question else 0.0), SQL.get(question.split(" #")[0], "SELECT COUNT(*) FROM branches")


def model_server(respond: Callable[[str], tuple[float, str]] = bank_answer) -> int:
    """The scripted model in its own process (so it does not share a GIL with the load generator), on
    asyncio: no thread per request, so 100 requests waiting out their second cost the shared cores
    nothing. ``respond`` maps the question to (delay, answer)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # HTTP/1.1 keep-alive: one request after another on the connection
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                length = next((int(v) for k, _, v in (ln.partition(":") for ln in head[1:])
                               if k.lower() == "content-length"), 0)
                raw = await reader.readexactly(length) if length else b""
                if head[0].startswith("GET"):
                    payload: dict[str, Any] = {"object": "list", "data": [{"id": "scripted", "object": "model"}]}
                else:
                    body = json.loads(raw)
                    question = body["messages"][-1]["content"].rsplit("Question: ", 1)[-1].strip()
                    delay, content = respond(question)
                    if delay:
                        await asyncio.sleep(delay)
                    payload = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0,
                               "model": body.get("model", "?"),
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": content}}],
                               "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}
                data = json.dumps(payload).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(data)).encode() + b"\r\n\r\n" + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        print(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1", flush=True)
        await server.serve_forever()

    asyncio.run(serve())
    return 0


def client_floor(model_url: str, clients: int, requests: int) -> dict[str, Any]:
    """The same burst sent straight to the scripted model through the ``openai`` client from ``clients``
    threads, no app in between: what this box's client, stand-in and scheduler alone cost at the tail."""
    import openai

    client = openai.OpenAI(base_url=model_url, api_key="sk-no-key-required", max_retries=0,
                           http_client=openai.DefaultHttpxClient(trust_env=False))

    def one(i: int) -> float:
        start = time.perf_counter()
        client.chat.completions.create(model="scripted", messages=[
            {"role": "user", "content": f"Question: {BANK_QUESTIONS[i % 4]} #slow{i}"}])
        return time.perf_counter() - start

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(clients)))  # the same unmeasured warm-up round as the app gets
        start = time.perf_counter()
        latencies = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - start
    client.close()
    return {**latency_summary(latencies, wall), "errors": 0, "statuses": {}}


def layers_run(args: argparse.Namespace, env: dict[str, str], root: Path, port: int) -> None:
    """The same labelled load for ``--layers-s`` seconds against the plain app and against a second app with
    every production layer on (API key, per-principal limits in a private redis-server, EMF metrics, JSON
    request logs): the difference per request is what the layers cost over HTTP."""
    from serving.auth import new_api_key
    from tests.serving_prod_support import redis_server

    plain = asyncio.run(drive(port, args.clients, None, args.layers_s, BANK_QUESTIONS, label=True, user_prefix="p"))
    key, record = new_api_key("bench", "caller")
    keys = root / "keys.json"
    keys.write_text(json.dumps([record.model_dump()]))
    with redis_server(root) as (redis_url, _):
        layered_env = {**env, "T2S_SERVE_AUTH": "required", "T2S_SERVE_API_KEYS_FILE": str(keys),
                       "T2S_SERVE_USER_HASH_KEY": "benchmark-user-hash-key",
                       "T2S_SERVE_REDIS_URL": redis_url, "T2S_SERVE_RATE_LIMIT": "1000000/minute",
                       "T2S_SERVE_RATE_LIMIT_OTHER": "1000000/minute", "T2S_SERVE_METRICS": "emf",
                       "T2S_SERVE_LOG_FORMAT": "json"}
        layered_port = free_port()
        proc = start_uvicorn(layered_env, layered_port, root / "layered.log", workers=args.server_workers)
        try:
            Conn.headers = f"X-API-Key: {key}\r\n"
            layered = asyncio.run(drive(layered_port, args.clients, None, args.layers_s, BANK_QUESTIONS, label=True,
                                        user_prefix="p"))
        finally:
            Conn.headers = ""
            proc.terminate()
            proc.wait(timeout=20)
    per_plain, per_layered = 1e6 / plain["rps"], 1e6 / layered["rps"]
    print(f"labelled load, {args.layers_s:.0f} s each, plain app:            {fmt(plain)}")
    print(f"same load, API key + Redis limits + EMF + JSON logs: {fmt(layered)}")
    print(f"  the production layers add {per_layered - per_plain:.0f} µs of server time per request over HTTP "
          f"({per_plain:.0f} → {per_layered:.0f} µs at saturation), p50 {plain['p50'] * 1000:.0f} → "
          f"{layered['p50'] * 1000:.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--requests", type=int, default=1000, help="requests in the overhead run")
    parser.add_argument("--slow-requests", type=int, default=300, help="requests against the 1 s model")
    parser.add_argument("--soak-s", type=float, default=60.0, help="soak duration (0 skips it)")
    parser.add_argument("--layers-s", type=float, default=15.0,
                        help="seconds of the overhead + label run repeated with auth, Redis rate limits and EMF "
                             "metrics on (0 skips it)")
    parser.add_argument("--server-workers", type=int, default=1,
                        help="uvicorn worker processes of the served app (the echo app always runs one)")
    parser.add_argument("--model-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--only-production", action="store_true",
                        help="only the added per-request cost of auth, rate limits, metrics and logs")
    parser.add_argument("--production-calls", type=int, default=2000, help="calls per production-layer timing")
    args = parser.parse_args()
    if args.model_server:
        return model_server()
    from benchmarks.serving_production import report

    if args.only_production:
        report(args.production_calls)
        return 0

    model = subprocess.Popen([sys.executable, __file__, "--model-server"], stdout=subprocess.PIPE, text=True)
    assert model.stdout is not None
    model_url = model.stdout.readline().strip()
    with tempfile.TemporaryDirectory(prefix="t2s-bench-serving-") as tmp:
        root = Path(tmp)
        env = {**os.environ, **setup_registry(root, model_url)}
        port, echo_port = free_port(), free_port()
        (root / "echo_app.py").write_text(ECHO_APP)
        server = start_uvicorn(env, port, root / "server.log", workers=args.server_workers)
        echo = subprocess.Popen([sys.executable, "-m", "uvicorn", "echo_app:app", "--host", "127.0.0.1", "--port",
                                 str(echo_port), "--log-level", "warning"], cwd=root,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            print(f"# serving benchmark on {os.cpu_count()} cores (shared machine), {args.clients} clients, "
                  f"{args.server_workers} server worker process(es)")
            asyncio.run(drive(port, 4, len(BANK_QUESTIONS), None, BANK_QUESTIONS))  # warm the completion cache
            time.sleep(1.0)
            app_run = asyncio.run(drive(port, args.clients, args.requests, None, BANK_QUESTIONS))
            echo_run = asyncio.run(drive(echo_port, args.clients, args.requests, None, BANK_QUESTIONS))
            print(f"serving, cached completions, execute=true on bank: {fmt(app_run)}")
            print(f"bare FastAPI echo, same server and client:        {fmt(echo_run)}")
            print(f"overhead ratio: throughput {echo_run['rps'] / app_run['rps']:.1f}x lower, "
                  f"p50 {app_run['p50'] / echo_run['p50']:.1f}x, p99 {app_run['p99'] / echo_run['p99']:.1f}x")

            # One unmeasured round first: the app's model client opens its ~100 connections (a service under
            # steady load has them open); then the measured requests, each question new to the cache.
            warm = [f"{q} #slow-warm{i}" for i, q in enumerate(BANK_QUESTIONS * (args.clients // 4 + 1))]
            asyncio.run(drive(port, args.clients, args.clients, None, warm, user_prefix="s"))
            unique = [f"{q} #slow{i}" for i, q in enumerate(BANK_QUESTIONS * (args.slow_requests // 4 + 1))]
            slow_run = asyncio.run(drive(port, args.clients, args.slow_requests, None, unique, user_prefix="s"))
            print(f"1 s model, {args.clients} concurrent users: {fmt(slow_run)} "
                  "(target p95 <= 1.3 s, 0 errors)")
            floor = client_floor(model_url, args.clients, args.slow_requests)
            print(f"  the same burst from {args.clients} threads straight to the model (openai client, no app): "
                  f"{fmt(floor)}; the app adds {1000 * (slow_run['p95'] - floor['p95']):.0f} ms at p95")

            if args.soak_s > 0:
                from serving.store import Store

                store = Store.open(env["T2S_SERVE_STORE_URL"], run_migrations=False)
                before = store.counts()
                soak = asyncio.run(drive(port, args.clients, None, args.soak_s, BANK_QUESTIONS, label=True,
                                         user_prefix="k"))
                after = store.counts()
                persisted = (after[0] - before[0], after[1] - before[1])
                ok = soak["requests"] - soak["errors"]
                print(f"soak {args.soak_s:.0f} s with feedback: {fmt(soak)}; 5xx {soak['5xx']:.0f}")
                print(f"  persisted {persisted[0]} requests (clients saw {ok:.0f} succeed) and {persisted[1]} "
                      f"labels (clients saw {soak['labels']:.0f} accepted)")
                store.close()
            if args.layers_s > 0:
                layers_run(args, env, root, port)
        finally:
            for proc in (server, echo, model):
                proc.terminate()
                proc.wait(timeout=20)
    report(args.production_calls)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
