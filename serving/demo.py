"""``make serve-demo``: serve the champion briefly and use it as people would, through the real HTTP API.

Starts ``uvicorn`` on a free loopback port with a fresh store under ``$T2S_CACHE_DIR/serve-demo``, and an
experiment of the champion against the previous registered version of ``t2s-generator`` (when there is
one; else the champion alone). Simulated users ask the ``bank`` questions; each labels the answer correct
when its rows equal the gold query's rows (what an analyst checking the numbers would do). Then it prints
the experiment report's headline and per-variant figures, writes the HTML page, and stops the server.

    python -m serving.demo [--users 8] [--questions 12]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import yaml

from t2s.local_llm import free_port


def wait_healthy(http: httpx.Client, server: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    """Wait until the server started as ``server`` answers ``GET /health`` with 200; exit with the end of its
    log if it stops first, or naming the log when ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        if server.poll() is not None:
            raise SystemExit(f"error: the server stopped:\n{log.read_text()[-3000:]}")
        try:
            if http.get("/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"error: the server did not start within {timeout_s:g} s; see {log}")
        time.sleep(0.5)


def _experiment(work: Path) -> Path:
    from serving.config import VariantConfig
    from serving.variants import REGISTERED_MODEL, NoChampion, mlflow_client, resolve_version
    from t2s.settings import get_settings

    client = mlflow_client(get_settings())
    try:
        champion = resolve_version(client, VariantConfig(name="champion", alias="champion", weight=1))
    except NoChampion as exc:
        raise SystemExit(f"error: {exc}") from None
    versions = sorted((int(v.version) for v in client.search_model_versions(f"name='{REGISTERED_MODEL}'")),
                      reverse=True)
    others = [v for v in versions if v != int(champion.version)]
    variants = [{"name": "champion", "alias": "champion", "weight": 50}]
    if others:
        variants.append({"name": "previous", "version": others[0], "weight": 50})
    path = work / "experiment.yaml"
    path.write_text(yaml.safe_dump({"name": "serve-demo", "salt": "serve-demo", "control": "champion",
                                    "variants": variants}, sort_keys=False))
    return path


def _same_rows(a: list[list[object]], b: list[tuple[object, ...]]) -> bool:
    def norm(rows: list) -> Counter:  # type: ignore[type-arg]
        return Counter(tuple(round(v, 6) if isinstance(v, float) else v for v in r) for r in rows)

    return norm(a) == norm([list(r) for r in b])


def main(argv: list[str] | None = None) -> int:

    from t2s.datasets import load_dataset, open_db
    from t2s.guard import checked_for
    from t2s.settings import get_settings

    parser = argparse.ArgumentParser(prog="python -m serving.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--questions", type=int, default=12)
    parser.add_argument("--dataset", type=Path, default=Path("datasets/bank"))
    args = parser.parse_args(argv)

    settings = get_settings()
    if not (args.dataset / "bank.sqlite").is_file() and args.dataset.name == "bank":
        raise SystemExit("error: datasets/bank/bank.sqlite is missing: run `make demo` (or `make data`) first")
    work = Path(settings.cache_dir) / "serve-demo"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    experiment = _experiment(work)
    port = free_port()
    env = {**os.environ, "T2S_SERVE_STORE_URL": f"sqlite:///{work / 'store.db'}",
           "T2S_SERVE_EXPERIMENT_FILE": str(experiment),
           "T2S_SERVE_DATABASES": json.dumps({"bank": str(args.dataset)})}
    log = work / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "serving.app:app_from_env",
                                   "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                                  env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=120, trust_env=False) as http:
            wait_healthy(http, server, log, 120)
            print(f"serving {base} (experiment {yaml.safe_load(experiment.read_text())['variants']})")
            dataset = load_dataset(args.dataset)
            items = dataset.examples[: args.questions]
            target = open_db(dataset, items[0].db_id)
            labelled = 0
            for i, item in enumerate(items * max(1, args.users * 3 // len(items))):
                user = f"analyst-{(i + i // len(items)) % args.users}"
                r = http.post("/v1/sql", json={"question": item.question, "database": "bank", "user_id": user})
                body = r.json()
                if r.status_code != 200:
                    print(f"  {user}: HTTP {r.status_code} {body['error']['message']}")
                    continue
                # gold SQL is written in its item's dialect (some bank items are T-SQL): run it as the engine's
                gold_sql = checked_for(item.gold_sql, item.dialect, target.dialect, engine=target.engine)
                gold = target.execute(gold_sql, timeout_s=10, max_rows=1000).rows
                correct = body["outcome"] == "ok" and _same_rows(body["rows"] or [], gold)
                print(f"  {user} [{body['variant']}] {item.question[:60]!r} → {body['outcome']}"
                      f"{' ✓' if correct else ''} ({body['latency_ms']:.0f} ms)")
                if i % 5 != 4:  # most users leave a label
                    http.post("/v1/feedback", json={"query_id": body["query_id"], "correct": correct})
                    labelled += 1
            target.close()
            report = http.get("/v1/experiments/serve-demo/report").json()
            page = http.get("/experiments/serve-demo").text
        out_dir = Path("reports/serving")
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "experiment.html").write_text(page, encoding="utf-8")
        (out_dir / "experiment.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        print()
        print(report["headline"])
        for v in report["variants"]:
            acc = v["accuracy"]
            online = "—" if acc["online_accuracy"] is None else f"{acc['online_accuracy']:.0%}"
            offline = "—" if v["offline_accuracy"] is None else f"{v['offline_accuracy']:.0%}"
            verdict = f", {v['lift']['verdict']}" if v["lift"] else ""
            print(f"  {v['name']} (model v{v['model_version']}, {v['prompt_version']}): {v['users']} users, "
                  f"{acc['requests']} requests, {acc['labelled']} labelled over {acc['questions']} distinct "
                  f"questions, online accuracy {online}, offline {offline}, "
                  f"p95 {v['guardrails'].get('latency_p95_ms') or 0:.0f} ms{verdict}")
        print(f"report: {out_dir / 'experiment.html'} (JSON beside it); store: {work / 'store.db'}")
        return 0
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    raise SystemExit(main())
