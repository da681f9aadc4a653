"""`t2s score` with default options against Spider's official test-suite scorer, one file at a time.

Imports a Spider sample (e.g. ../shared/spider-sample: third-party data, read in place, never copied into
this repository) and, for every system in ``predictions.tsv``, times what a user runs: ``t2s score --rules
spider`` in a fresh process per predictions file, with a fresh cache directory (nothing reused between
files), in three ways:

  default          ``t2s score --rules spider`` (exact match is computed only when asked)
  --exact-match    the same with sqlglot-normalized exact match (the default before it became opt-in)
  --no-exact-match explicit, for comparison with the published figure below

The reference is Spider's official ``evaluation.py --etype exec`` (github.com/taoyds/test-suite-sql-eval):

- with ``--official-dir DIR`` (a checkout of that repository, run with this Python), it is run on the same
  files in the same run, in a fresh process per file as well, and the ratio is measured;
- otherwise the ratio is taken against the published per-item figure ``--official-s-per-item`` (default:
  8.1 s for one 972-item Spider-dev file, measured on another machine). That ratio is an estimate: the
  machines, the databases and the item counts differ.

    .venv/bin/python benchmarks/score_vs_official.py --spider-dir ../shared/spider-sample [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import spider_conformance as conformance  # the sibling script: benchmarks/ is on sys.path when run

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED_OFFICIAL_S_PER_ITEM = 8.1 / 972  # one Spider-dev file, official scorer, fresh process
GOAL_RATIO = 0.5
MODES = {"default": [], "--exact-match": ["--exact-match"], "--no-exact-match": ["--no-exact-match"]}


def t2s_command() -> list[str]:
    exe = Path(sys.executable).with_name("t2s")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "cli.main"]


def timed(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} … failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spider-dir", type=Path, required=True,
                        help="Spider sample with dev.json, database/ and predictions.tsv (read in place).")
    parser.add_argument("--repeat", type=int, default=3, help="Runs per file and mode; the best is kept.")
    parser.add_argument("--official-dir", type=Path, default=None,
                        help="A checkout of test-suite-sql-eval: run its evaluation.py in the same run.")
    parser.add_argument("--official-s-per-item", type=float, default=PUBLISHED_OFFICIAL_S_PER_ITEM,
                        help="Published official seconds per item, used without --official-dir.")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    print(f"Python {platform.python_version()}, {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="t2s-vs-official-") as tmp:
        work = Path(tmp)
        ds, index_to_id = conformance.import_sample(args.spider_dir, work)
        systems = conformance.read_predictions_tsv(args.spider_dir / "predictions.tsv")
        files: dict[str, Path] = {}
        for system, rows in systems.items():
            files[system] = work / f"predictions-{system}.jsonl"
            conformance.write_jsonl(rows, index_to_id, ds, files[system])
        items = sum(len(rows) for rows in systems.values())
        print(f"{len(files)} predictions files × {len(ds)} items = {items} items; best of {args.repeat} runs, "
              "a fresh process and a fresh cache directory per file")

        runs = iter(range(1_000_000))
        totals: dict[str, float] = {}
        for mode, extra in MODES.items():
            total = 0.0
            for path in files.values():
                def once(path: Path = path, extra: list[str] = extra) -> float:
                    env = {**os.environ, "T2S_CACHE_DIR": str(work / "cache" / str(next(runs)))}
                    return timed([*t2s_command(), "score", "-d", str(ds.root), "-p", str(path), "--rules", "spider",
                                  *extra], env)
                total += min(once() for _ in range(args.repeat))
            totals[mode] = total

        official_s: float | None = None
        if args.official_dir is not None:
            official_s = 0.0
            for system, rows in systems.items():
                gold = work / f"gold-{system}.txt"
                pred = work / f"pred-{system}.txt"
                gold.write_text("".join(f"{ds.by_id[index_to_id[r.index]].gold_sql}\t{r.db_id}\n" for r in rows))
                pred.write_text("".join(f"{r.sql}\n" for r in rows))
                cmd = [sys.executable, "evaluation.py", "--gold", str(gold), "--pred", str(pred),
                       "--db", str(args.spider_dir.resolve() / "database"), "--etype", "exec"]
                official_s += min(timed(cmd, dict(os.environ), cwd=args.official_dir) for _ in range(args.repeat))
            reference, ref_name = official_s, "official scorer, same run"
        else:
            reference, ref_name = args.official_s_per_item * items, "published official figure (estimate)"

        print(f"\n  {'t2s score --rules spider':<42s} {'total':>8s} {'per item':>10s}  ratio to {ref_name}")
        for mode, total in totals.items():
            ratio = total / reference
            flag = "" if mode != "default" else ("   goal < 0.5: met" if ratio < GOAL_RATIO else "   goal < 0.5: NOT met")
            print(f"  {mode:<42s} {total:7.2f}s {1000 * total / items:8.2f}ms  {ratio:5.2f}{flag}")
        if official_s is not None:
            print(f"  {'official evaluation.py --etype exec':<42s} {official_s:7.2f}s "
                  f"{1000 * official_s / items:8.2f}ms")
        else:
            print(f"  (reference: {1000 * args.official_s_per_item:.2f} ms per item, published; pass "
                  "--official-dir to run the official scorer in the same run)")
        print(f"  default / --exact-match in this run: {totals['default'] / totals['--exact-match']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
