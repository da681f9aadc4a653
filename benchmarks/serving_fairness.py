"""Fair share under a runaway caller (figures, not tests): another principal's latency while one principal
sends nothing but runaway queries.

A real ``t2s serve`` app under uvicorn (its own process) with API-key auth and two callers, the registry
and scripted model of :mod:`benchmarks.serving` (the model answers in 150 ms, like a hosted endpoint;
every question is new to the completion cache), on the ``bank`` database:

- **quiet**: caller B alone, ``--b-clients`` sequential clients asking ordinary questions;
- **runaway**: the same, while caller A's ``--a-clients`` clients each send a query that runs until its
  timeout (``WITH RECURSIVE`` counting forever; ``T2S_QUERY_TIMEOUT_S``), back to back.

Quiet and runaway windows alternate (``--rounds`` of each, ``--window-s`` seconds) so that the load of a
shared machine falls on both alike; B's p95 in each is reported, and their ratio (target: within 20%).
The same run is repeated with fair share off (A may hold every SQL worker) to show what it prevents.
A's requests are checked too: none is a 5xx, none takes longer than the request deadline + 2 s.

    .venv/bin/python benchmarks/serving_fairness.py [--window-s 10] [--rounds 3] [--a-clients 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serving import SQL, drive, model_server, setup_registry  # noqa: E402
from tests.serving_support import free_port, start_uvicorn  # noqa: E402

RUNAWAY = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
MODEL_DELAY_S = 0.15
QUERY_TIMEOUT_S = 3.0
DEADLINE_S = 10.0
SANDBOX_WORKERS = 4


def fair_answer(question: str) -> tuple[float, str]:
    """Caller A's questions get the runaway query at once; the others a bank query after 150 ms."""
    if question.startswith("runaway"):
        return 0.0, RUNAWAY
    return MODEL_DELAY_S, SQL.get(question.split(" #")[0], "SELECT COUNT(*) FROM branches")


def server_env(root: Path, model_url: str, per_principal: int) -> tuple[dict[str, str], str, str]:
    from serving.auth import new_api_key

    key_a, rec_a = new_api_key("runaway", "caller")
    key_b, rec_b = new_api_key("quiet", "caller")
    keys = root / f"keys{per_principal}.json"
    keys.write_text(json.dumps([rec_a.model_dump(), rec_b.model_dump()]))
    env = {**os.environ, **setup_registry(root / f"r{per_principal}", model_url),
           "T2S_SERVE_AUTH": "required", "T2S_SERVE_API_KEYS_FILE": str(keys),
           "T2S_SERVE_USER_HASH_KEY": "benchmark-user-hash-key", "T2S_SERVE_RATE_LIMIT": "1000000/minute",
           "T2S_SERVE_RATE_LIMIT_OTHER": "1000000/minute", "T2S_SANDBOX_WORKERS": str(SANDBOX_WORKERS),
           "T2S_SERVE_SQL_WORKERS_PER_PRINCIPAL": str(per_principal), "T2S_QUERY_TIMEOUT_S": str(QUERY_TIMEOUT_S),
           "T2S_SERVE_REQUEST_DEADLINE_S": str(DEADLINE_S), "T2S_SERVE_METRICS": "none"}
    return env, f"X-API-Key: {key_a}\r\n", f"X-API-Key: {key_b}\r\n"


def questions(bases: list[str], tag: str, n: int = 20_000) -> list[str]:
    """``n`` questions new to the completion cache: ``base #tagN``."""
    return [f"{bases[i % len(bases)]} #{tag}{i}" for i in range(n)]


async def window(port: int, seconds: float, b_clients: int, b_headers: str, a_clients: int, a_headers: str
                 ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    b = drive(port, b_clients, None, seconds, questions(list(SQL), f"b{time.time_ns()}-"), user_prefix="b",
              headers=b_headers)
    if not a_clients:
        return await b, None
    a = drive(port, a_clients, None, seconds, questions(["runaway"], f"a{time.time_ns()}-"), user_prefix="a",
              headers=a_headers)
    b_run, a_run = await asyncio.gather(b, a)
    return b_run, a_run


def measure(args: argparse.Namespace, root: Path, model_url: str, per_principal: int) -> dict[str, Any]:
    env, a_headers, b_headers = server_env(root, model_url, per_principal)
    port = free_port()
    server = start_uvicorn(env, port, root / f"server{per_principal}.log")
    try:
        asyncio.run(window(port, 2.0, args.b_clients, b_headers, 0, a_headers))  # warm-up, not measured
        quiet: list[float] = []
        loud: list[float] = []
        a_runs: list[dict[str, Any]] = []
        errors = 0
        for _ in range(args.rounds):
            b_run, _ = asyncio.run(window(port, args.window_s, args.b_clients, b_headers, 0, a_headers))
            quiet.append(b_run["p95"])
            errors += b_run["errors"]
            time.sleep(QUERY_TIMEOUT_S + 1)  # A's last queries are over before the next quiet window
            b_run, a_run = asyncio.run(window(port, args.window_s, args.b_clients, b_headers, args.a_clients,
                                              a_headers))
            loud.append(b_run["p95"])
            errors += b_run["errors"]
            a_runs.append(a_run)  # type: ignore[arg-type]
            time.sleep(QUERY_TIMEOUT_S + 1)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"quiet": quiet, "loud": loud, "b_errors": errors, "a": a_runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window-s", type=float, default=10.0, help="seconds of each quiet and runaway window")
    parser.add_argument("--rounds", type=int, default=3, help="quiet/runaway window pairs per configuration")
    parser.add_argument("--b-clients", type=int, default=4, help="caller B's concurrent clients")
    parser.add_argument("--a-clients", type=int, default=8, help="caller A's concurrent runaway clients")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run with fair share off")
    parser.add_argument("--model-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model_server:
        return model_server(fair_answer)

    model = subprocess.Popen([sys.executable, __file__, "--model-server"], stdout=subprocess.PIPE, text=True)
    assert model.stdout is not None
    model_url = model.stdout.readline().strip()
    print(f"# fair share on {os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{SANDBOX_WORKERS} SQL workers, query timeout {QUERY_TIMEOUT_S:g} s, deadline {DEADLINE_S:g} s, "
          f"model {MODEL_DELAY_S * 1000:.0f} ms; B {args.b_clients} clients, A {args.a_clients} runaway clients, "
          f"{args.rounds} x {args.window_s:g} s windows each")
    configs = [(SANDBOX_WORKERS // 2, "fair share on (2 SQL workers per principal)")]
    if not args.no_baseline:
        configs.append((SANDBOX_WORKERS, "fair share off (a principal may hold all 4)"))
    try:
        with tempfile.TemporaryDirectory(prefix="t2s-bench-fair-") as tmp:
            for per_principal, label in configs:
                r = measure(args, Path(tmp), model_url, per_principal)
                quiet, loud = max(r["quiet"]), max(r["loud"])
                a_p99 = max(run["p99"] for run in r["a"])
                a_statuses: dict[int, int] = {}
                for run in r["a"]:
                    for code, n in run["statuses"].items():
                        a_statuses[code] = a_statuses.get(code, 0) + n
                print(f"{label}:")
                print(f"  B p95 per window, quiet {', '.join(f'{x * 1000:.0f}' for x in r['quiet'])} ms; "
                      f"with A's runaways {', '.join(f'{x * 1000:.0f}' for x in r['loud'])} ms")
                print(f"  B p95 worst window: quiet {quiet * 1000:.0f} ms, with runaways {loud * 1000:.0f} ms "
                      f"= {loud / quiet:.2f}x (target <= 1.20x); B errors {r['b_errors']}")
                print(f"  A: {sum(run['requests'] for run in r['a'])} runaway requests, statuses {a_statuses}, "
                      f"p99 {a_p99:.1f} s (deadline {DEADLINE_S:g} s + 2 s allowed)")
    finally:
        model.terminate()
        model.wait(timeout=10)
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
