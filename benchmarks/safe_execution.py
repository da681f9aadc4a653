"""What safe execution costs, and how fast it stops hostile SQL.

Prints, measured in one run:

1. per-query cost of running in a sandbox worker vs the same engine session in-process (ratio), on the
   bundled ``bank`` database (SQLite) and a DuckDB copy of it, for a trivial and a typical query;
2. guard time: the bundled gold queries on average, and the worst inputs at the guard's limits;
3. stop time for statements no engine timeout interrupts (time past the timeout until the caller has its
   ``SqlTimeout``), and for ones the engine stops itself;
4. SQL extraction from model answers: a typical answer, and 1 MB hostile answers of every family the tests
   use (best of 5), with the time at 100 KB beside it (linear time: about a tenth).

    .venv/bin/python benchmarks/safe_execution.py [--repeat 300] [--extract-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from t2s.engines import DuckdbSession, EngineLimits, SqliteSession  # noqa: E402
from t2s.errors import SqlError  # noqa: E402
from t2s.execution import DuckdbTarget, SqliteTarget  # noqa: E402
from t2s.guard import MAX_TOKENS, guard_select  # noqa: E402
from t2s.sandbox import Sandbox  # noqa: E402
from tests.shop_copies import shop_to_duckdb  # noqa: E402

QUERIES = {
    "trivial": "SELECT 1",
    "typical": "SELECT c.city, count(*), avg(a.balance) FROM customers c JOIN accounts a "
               "ON a.customer_id = c.customer_id GROUP BY c.city ORDER BY 2 DESC LIMIT 5",
}


def _per_call(fn, repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - start) / repeat)
    return best


def sandbox_overhead(db: Path, repeat: int) -> None:
    print("1. per query: sandbox worker vs the same session in-process (best of 3)")
    box = Sandbox(max_workers=1)
    with tempfile.TemporaryDirectory() as tmp:
        duck = shop_to_duckdb(db, Path(tmp) / "bank.duckdb", tables=None)
        pairs = [("sqlite", SqliteTarget(db), SqliteSession(db, EngineLimits())),
                 ("duckdb", DuckdbTarget(duck), DuckdbSession(duck, EngineLimits()))]
        for engine, target, session in pairs:
            target.sandbox = box
            for label, sql in QUERIES.items():
                inproc = _per_call(lambda s=sql, ses=session: ses.run(s, 10, 1000), repeat)
                boxed = _per_call(lambda s=sql, t=target: t.execute(s, timeout_s=10, max_rows=1000), repeat)
                print(f"   {engine:7s} {label:8s} in-process {inproc * 1e6:8.0f} µs   sandboxed {boxed * 1e6:8.0f} µs"
                      f"   +{(boxed - inproc) * 1e6:6.0f} µs   ratio {boxed / inproc:5.2f}")
            session.close()
    box.close()


def guard_times(repeat: int) -> None:
    print("2. guard time")
    golds = [json.loads(line) for line in (ROOT / "datasets/bank/questions.jsonl").read_text().splitlines()]
    start = time.perf_counter()
    for _ in range(max(1, repeat // 100)):
        for g in golds:
            guard_select(g["gold_sql"], g.get("dialect", "sqlite"))
    per = (time.perf_counter() - start) / (max(1, repeat // 100) * len(golds))
    print(f"   bundled gold queries (n={len(golds)}): {per * 1e6:.0f} µs each")
    worst = {
        f"{MAX_TOKENS - 10} tokens (IN list at the token limit)":
            "SELECT 1 FROM t WHERE a IN (" + ", ".join(["1"] * ((MAX_TOKENS - 10) // 2)) + ")",
        "19,990-character string literal": "SELECT '" + "x" * 19_980 + "'",
        "OR chain at the token limit": "SELECT 1 FROM t WHERE " + " OR ".join(["a = 1"] * (MAX_TOKENS // 4 - 2)),
        "700 KB OR chain (refused by size)": "SELECT 1 FROM t WHERE " + " OR ".join(f"a = {i}" for i in range(60_000)),
        "500 nested parentheses (refused by depth)": "SELECT " + "(" * 500 + "1" + ")" * 500,
        "2,000 chained CTEs (refused)": "WITH c0 AS (SELECT 1), " + ", ".join(
            f"c{i} AS (SELECT * FROM c{i - 1})" for i in range(1, 2000)) + " SELECT * FROM c1999",
    }
    for label, sql in worst.items():
        start = time.perf_counter()
        try:
            guard_select(sql, "sqlite")
            outcome = "passed"
        except SqlError as exc:
            outcome = type(exc).__name__
        print(f"   {label:45s} {(time.perf_counter() - start) * 1e3:8.1f} ms  ({outcome})")


def stop_times(db: Path) -> None:
    print("3. stop time past a 1 s timeout")
    box = Sandbox(max_workers=1)
    target = SqliteTarget(db)
    target.sandbox = box
    cases = {
        "printf('%.*c', 1e9) (one call: worker killed)": "SELECT printf('%.*c', 999999999, 'x')",
        "cartesian product (progress handler)": "SELECT count(*) FROM customers a, customers b, customers c, customers d",
        "string doubling (size limit)": "WITH RECURSIVE r(x, n) AS (SELECT 'x', 0 UNION ALL "
                                        "SELECT x || x, n + 1 FROM r WHERE n < 40) SELECT max(length(x)) FROM r",
    }
    for label, sql in cases.items():
        start = time.perf_counter()
        try:
            target.execute(sql, timeout_s=1.0, max_rows=5)
            outcome = "answered"
        except SqlError as exc:
            outcome = type(exc).__name__
        print(f"   {label:48s} returned after {time.perf_counter() - start:5.2f} s ({outcome})")
        if box.killed and "killed" in label:
            start = time.perf_counter()
            target.execute("SELECT 1", timeout_s=5, max_rows=1)
            print(f"   {'  next query (starts a new worker)':48s} {(time.perf_counter() - start) * 1e3:8.0f} ms")
    box.close()


def extraction_times() -> None:
    from t2s.sql_extract import extract
    from tests.test_sql_extract import ADVERSARIAL

    print("4. SQL extraction from a model answer (best of 5; SqlError outcomes are refusals, also bounded)")

    def best(text: str, dialect: str) -> tuple[float, str]:
        times, outcome = [], ""
        for _ in range(5):
            start = time.perf_counter()
            try:
                outcome = f"{extract(text, dialect).steps} steps"
            except SqlError as exc:
                outcome = type(exc).__name__
            times.append(time.perf_counter() - start)
        return min(times), outcome

    typical = "Here is the query:\n\n```sql\n" + QUERIES["typical"] + ";\n```\n\nIt counts customers per city."
    took, outcome = best(typical, "sqlite")
    print(f"   {'typical fenced answer':24s} {len(typical):>9,} chars {took * 1e6:9.0f} µs  ({outcome})")
    worst = 0.0
    for family, text in ADVERSARIAL.items():
        for dialect in ("sqlite", "postgres", "duckdb"):
            took, outcome = best(text, dialect)
            small, _ = best(text[:len(text) // 10], dialect)
            worst = max(worst, took)
            print(f"   {family:24s} {dialect:8s} {len(text):>9,} chars {took * 1e3:7.2f} ms  (100 KB: "
                  f"{small * 1e3:5.2f} ms)  {outcome}")
    print(f"   slowest 1 MB answer: {worst * 1e3:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=300, help="calls per timing (best of 3)")
    parser.add_argument("--db", type=Path, default=ROOT / "datasets/bank/bank.sqlite")
    parser.add_argument("--extract-only", action="store_true", help="only section 4 (no database needed)")
    args = parser.parse_args()
    if args.extract_only:
        extraction_times()
        return
    if not args.db.is_file():
        sys.exit(f"{args.db} not found: build it with `dvc repro build_bank` (or `make data`)")
    print(f"Python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    sandbox_overhead(args.db, args.repeat)
    guard_times(args.repeat)
    stop_times(args.db)
    extraction_times()


if __name__ == "__main__":
    main()
