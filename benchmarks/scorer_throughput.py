"""Scorer throughput on a Spider sample, against the bare cost of running the SQL.

Imports a Spider sample (e.g. ../shared/spider-sample: third-party data, read in place, never copied into
this repository) with ``pipelines.importers.import_spider`` into a temporary directory and measures, on
every system's predictions in ``predictions.tsv``:

  (a) bare:        every item's gold and predicted query executed once with plain sqlite3 (read-only
                   connection, one per database, fetchall): the reference;
  (b) cold cache:  ``evals.scoring.score_dataset`` with a fresh gold-cache directory, exact_match=False,
                   workers=1;
  (c) warm cache:  the same with the gold cache already filled (a rerun of ``t2s score``);
  (d) warm + exact match: (c) with exact_match=True (sqlglot-normalized exact match);
  (e) parallel:    the items repeated --scale times as separate dataset items, warm cache, workers=1
                   vs workers=2 (the process pool's start-up cost is measured on its own too).

Every figure is the best of --repeat runs timed with time.perf_counter. ``--profile`` adds a cProfile
of one warm run (top entries by cumulative time, and the share of a few known stages).

Run from the repository root:

    .venv/bin/python benchmarks/scorer_throughput.py --spider-dir ../shared/spider-sample
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import spider_conformance as conformance  # the sibling script: benchmarks/ is on sys.path when run
import sqlglot

from evals.compare import RULES, MatchRules, results_match
from evals.predictions import gold_as_predictions, load_predictions
from evals.scoring import SERIAL_BELOW, ScoreConfig, choose_workers, score_dataset
from t2s.datasets import Dataset, load_dataset
from t2s.errors import SqlError
from t2s.execution import Target, open_target
from t2s.guard import guard_select

GOAL_RATIO = 1.3


# ---------------------------------------------------------------------------------------------------
# setup


def import_sample(spider_dir: Path, work: Path) -> tuple[Dataset, dict[str, dict[str, str | None]]]:
    """The imported dataset and ``system -> {dataset id: predicted SQL}`` (via load_predictions), read with
    the conformance benchmark's checked TSV reader and id mapping."""
    ds, index_to_id = conformance.import_sample(spider_dir, work)
    preds = {}
    for system, rows in conformance.read_predictions_tsv(spider_dir / "predictions.tsv").items():
        path = work / f"predictions-{system}.jsonl"
        conformance.write_jsonl(rows, index_to_id, ds, path)
        preds[system] = load_predictions(path, ds)
    return ds, preds


def load_self_check(root: Path) -> tuple[Dataset, dict[str, dict[str, str | None]]]:
    """A dataset whose gold is transpiled to SQLite (so bare sqlite3 can run it), scored against itself."""
    ds = load_dataset(root)
    preds = gold_as_predictions(ds)
    examples = [ex.model_copy(update={"gold_sql": preds[ex.id], "dialect": "sqlite"}) for ex in ds.examples]
    return Dataset(ds.root, ds.manifest, examples), {"gold-self": preds}


def replicate(ds: Dataset, preds: dict[str, dict[str, str | None]], scale: int) -> tuple[Dataset, dict]:
    """One in-memory dataset holding every (system, item) pair ``scale`` times as separate items."""
    examples, merged = [], {}
    for k in range(scale):
        for system, p in preds.items():
            for ex in ds.examples:
                new_id = f"{system}/{k}/{ex.id}"
                examples.append(ex.model_copy(update={"id": new_id}))
                merged[new_id] = p[ex.id]
    return Dataset(ds.root, ds.manifest, examples), merged


# ---------------------------------------------------------------------------------------------------
# measurements


def best_of(repeat: int, fn: Callable[[], object], before: Callable[[], None] | None = None) -> float:
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@dataclass
class BareCounts:
    executed: int = 0
    failed: int = 0
    rows: int = 0


def bare_run(ds: Dataset, preds: dict[str, dict[str, str | None]], gold: bool, pred: bool) -> BareCounts:
    """Every item's gold and/or predicted SQL once, with plain sqlite3; one read-only connection per db."""
    counts = BareCounts()
    conns: dict[str, sqlite3.Connection] = {}
    try:
        for p in preds.values():
            for ex in ds.examples:
                conn = conns.get(ex.db_id)
                if conn is None:
                    path = ds.database_paths(ex.db_id)[0]
                    conn = conns[ex.db_id] = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
                for sql in ((ex.gold_sql,) if gold else ()) + ((p[ex.id],) if pred and p[ex.id] else ()):
                    counts.executed += 1
                    try:
                        counts.rows += len(conn.execute(sql).fetchall())
                    except sqlite3.Error:
                        counts.failed += 1
    finally:
        for conn in conns.values():
            conn.close()
    return counts


def parse_all(ds: Dataset, preds: dict[str, dict[str, str | None]], gold: bool, pred: bool) -> int:
    """guard_select (sqlglot parse + read-only checks) of every item's gold and/or predicted SQL."""
    n = 0
    for p in preds.values():
        for ex in ds.examples:
            for sql in ((ex.gold_sql,) if gold else ()) + ((p[ex.id],) if pred and p[ex.id] else ()):
                try:
                    guard_select(sql, "sqlite")
                    n += 1
                except SqlError:
                    pass
    return n


def target_exec_all(ds: Dataset, preds: dict[str, dict[str, str | None]], targets: dict[str, Target],
                    max_rows: int) -> list[tuple[list, list, bool] | None]:
    """Every item's gold and predicted SQL through SqliteTarget.execute (the scorer's engine wrapper);
    returns (gold rows, pred rows, gold outermost-orders) per item, None when either fails."""
    out: list[tuple[list, list, bool] | None] = []
    for p in preds.values():
        for ex in ds.examples:
            target = targets[ex.db_id]
            try:
                gold = target.execute(ex.gold_sql, timeout_s=10, max_rows=max_rows)
                pred = target.execute(p[ex.id] or "", timeout_s=10, max_rows=max_rows)
            except SqlError:
                out.append(None)
                continue
            out.append((gold.rows, pred.rows, "order by" in ex.gold_sql.lower()))
    return out


def compare_all(results: list[tuple[list, list, bool] | None], rules: MatchRules) -> int:
    return sum(results_match(g, p, rules, order) for g, p, order in filter(None, results))


def score_all(ds: Dataset, preds: dict[str, dict[str, str | None]], config: ScoreConfig, workers: int,
              fresh_cache_per_system: Callable[[], Path] | None = None) -> int:
    """Score every system's predictions (one ``score_dataset`` call each, as ``t2s score`` per file)."""
    n = 0
    for p in preds.values():
        if fresh_cache_per_system is not None:
            config = ScoreConfig(**{**config.__dict__, "cache_path": fresh_cache_per_system()})
        n += len(score_dataset(ds, p, config, workers=workers))
    return n


# ---------------------------------------------------------------------------------------------------
# report


def line(label: str, seconds: float, items: int, ref: float | None = None, ref_name: str = "bare") -> None:
    ratio = f"   ratio to {ref_name}: {seconds / ref:5.2f}" if ref else ""
    print(f"  {label:<46s} {seconds * 1000:9.1f} ms  {items / seconds:9.0f} items/s  "
          f"{seconds / items * 1e6:8.0f} µs/item{ratio}")


KNOWN_STAGES = [  # (label, file suffix, function name) looked up in the profile
    ("score_dataset (total)", "evals/scoring.py", "score_dataset"),
    ("execution_match", "evals/execution.py", "execution_match"),
    ("  _prepare (parse gold+pred, guard, dialect)", "evals/execution.py", "_prepare"),
    ("    guard_select -> sqlglot parse + walk", "t2s/guard.py", "guard_select"),
    ("    to_dialect", "t2s/guard.py", "to_dialect"),
    ("    spider_text.strip_distinct (tokenize)", "evals/spider_text.py", "strip_distinct"),
    ("  outermost_orders", "evals/execution.py", "outermost_orders"),
    ("  _run_gold (cache lookup or execute)", "evals/execution.py", "_run_gold"),
    ("    cache_key (sha256)", "evals/gold_cache.py", "cache_key"),
    ("    GoldCache.get (sqlite lookup + unpickle)", "evals/gold_cache.py", "get"),
    ("    SqliteTarget.fingerprint", "t2s/execution.py", "fingerprint"),
    ("  SqliteTarget.execute (all calls)", "t2s/execution.py", "execute"),
    ("  results_match", "evals/compare.py", "results_match"),
    ("pydantic BaseModel.__init__ (ItemVerdict)", "pydantic/main.py", "__init__"),
    ("sqlglot parser: parse (all calls)", "sqlglot/parser.py", "parse"),
    ("sqlglot tokenizer: tokenize (all calls)", "sqlglot/tokens.py", "tokenize"),
]


EXACT_STAGES = [
    ("normalized_exact_match", "evals/normalize.py", "normalized_exact_match"),
    ("  canonical_sql", "evals/normalize.py", "canonical_sql"),
    ("    copy.deepcopy", "copy.py", "deepcopy"),
    ("    qualify", "sqlglot/optimizer/qualify.py", "qualify"),
    ("    canonicalize_internal_names", "sqlglot/optimizer/canonicalize_internal_names.py",
     "canonicalize_internal_names"),
    ("    optimize", "sqlglot/optimizer/optimizer.py", "optimize"),
    ("  target_schema", "evals/normalize.py", "target_schema"),
]


def profile(ds: Dataset, preds: dict, config: ScoreConfig, top: int,
            extra: list[tuple[str, str, str]] | None = None) -> None:
    prof = cProfile.Profile()
    prof.enable()
    score_all(ds, preds, config, workers=1)
    prof.disable()
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats(order).print_stats(top)
        text = out.getvalue()
        print(f"\n  top {top} by {order} time:")
        print("\n".join(ln for ln in text[text.index("   ncalls"):].splitlines() if ln.strip()))
    raw = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    total = sum(ct for (f, _, fn), (_, _, _, ct, _) in raw.items()
                if f.replace(os.sep, "/").endswith("evals/scoring.py") and fn == "score_dataset")
    print("\n  where the time goes (cumulative time under the profiler, share of score_dataset):")
    for label, suffix, name in KNOWN_STAGES + (extra or []):
        hits = [(nc, ct) for (f, _, fn), (_, nc, _, ct, _) in raw.items()
                if fn == name and f.replace(os.sep, "/").endswith(suffix)]
        if not hits:
            continue
        calls = sum(h[0] for h in hits)
        ct = sum(h[1] for h in hits)
        share = f"{100 * ct / total:5.1f}%" if total else "  n/a"
        print(f"    {label:<48s} {ct * 1000:9.1f} ms  {share}  ({calls} calls)")
    print("  (cProfile inflates pure-Python work relative to C code such as sqlite3; read shares, not ms.)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Measure the scorer's throughput (items/s) on a Spider sample and its ratio to the bare "
                    "cost of executing the gold and predicted SQL with sqlite3.",
        epilog="Example: .venv/bin/python benchmarks/scorer_throughput.py --spider-dir ../shared/spider-sample "
               "--profile",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--spider-dir", type=Path,
                        help="Spider sample folder with dev.json, database/ and predictions.tsv (read in place).")
    source.add_argument("--dataset", type=Path,
                        help="A SQLite dataset directory (e.g. datasets/bank): its gold, transpiled to SQLite, "
                             "is scored as the predictions.")
    parser.add_argument("--repeat", type=int, default=3, help="Runs per measurement; the best is kept (default 3).")
    parser.add_argument("--rules", choices=sorted(RULES), default="t2s",
                        help="Rule set the scorer uses (default t2s, as `t2s score`).")
    parser.add_argument("--scale", type=int, default=10,
                        help="(e): every (system, item) pair repeated this many times as separate items "
                             "(default 10); 0 skips the parallel measurement.")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile one warm-cache serial run and print where the time goes.")
    parser.add_argument("--profile-exact", action="store_true",
                        help="Also cProfile one warm-cache serial run with exact_match=True.")
    parser.add_argument("--top", type=int, default=15, help="Profile entries to print (default 15).")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="Where to import the sample and keep caches (default: a temporary directory).")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.spider_dir is not None and not ((args.spider_dir / "dev.json").is_file()
                                            and (args.spider_dir / "predictions.tsv").is_file()):
        parser.error(f"{args.spider_dir} must contain dev.json and predictions.tsv")

    print(f"Python {platform.python_version()} ({platform.python_implementation()}), sqlite {sqlite3.sqlite_version}, "
          f"sqlglot {sqlglot.__version__}, {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    with tempfile.TemporaryDirectory(prefix="t2s-throughput-") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        ds, preds = import_sample(args.spider_dir, work) if args.spider_dir else load_self_check(args.dataset)
        n_items = len(ds) * len(preds)
        missing = sum(v is None for p in preds.values() for v in p.values())
        print(f"dataset {ds.name}: {len(ds)} questions × {len(preds)} systems ({', '.join(preds)}) = "
              f"{n_items} scored items ({missing} without prediction); rules {args.rules}; "
              f"best of {args.repeat} runs")

        # (a) bare sqlite3
        counts = bare_run(ds, preds, gold=True, pred=True)
        t_bare = best_of(args.repeat, lambda: bare_run(ds, preds, gold=True, pred=True))
        t_bare_gold = best_of(args.repeat, lambda: bare_run(ds, preds, gold=True, pred=False))
        t_bare_pred = best_of(args.repeat, lambda: bare_run(ds, preds, gold=False, pred=True))
        print(f"\n(a) bare sqlite3: {counts.executed} executions ({counts.failed} failed), "
              f"{counts.rows} rows fetched")
        line("gold + predicted (reference)", t_bare, n_items)
        line("gold only (once per scored item)", t_bare_gold, n_items)
        line("predicted only (once per scored item)", t_bare_pred, n_items)

        base = ScoreConfig(rules=args.rules, exact_match=False)
        counter = iter(range(1_000_000))

        def fresh() -> Path:
            return work / "cold" / f"{next(counter)}" / "gold_results.sqlite"

        # (b) cold cache: a fresh cache file for every score_dataset call
        t_cold = best_of(args.repeat, lambda: score_all(ds, preds, base, 1, fresh_cache_per_system=fresh))
        # (c) warm cache: filled once, then reruns
        warm_cfg = ScoreConfig(rules=args.rules, exact_match=False, cache_path=work / "warm" / "gold_results.sqlite")
        score_all(ds, preds, warm_cfg, 1)
        t_warm = best_of(args.repeat, lambda: score_all(ds, preds, warm_cfg, 1))
        # no persistent cache at all (gold executed each time, only the in-run memory cache)
        nocache_cfg = ScoreConfig(rules=args.rules, exact_match=False, cache_path=None)
        t_nocache = best_of(args.repeat, lambda: score_all(ds, preds, nocache_cfg, 1))
        # (d) warm + normalized exact match
        exact_cfg = ScoreConfig(**{**warm_cfg.__dict__, "exact_match": True})
        t_exact = best_of(args.repeat, lambda: score_all(ds, preds, exact_cfg, 1))

        # components: the sqlglot parse + guard every item pays for gold and prediction, no execution
        t_parse_gold = best_of(args.repeat, lambda: parse_all(ds, preds, gold=True, pred=False))
        t_parse_pred = best_of(args.repeat, lambda: parse_all(ds, preds, gold=False, pred=True))
        targets = {db_id: open_target("sqlite", ds.database_paths(db_id)[0]) for db_id in ds.manifest.databases}
        try:
            results = target_exec_all(ds, preds, targets, base.max_rows)
            t_target = best_of(args.repeat, lambda: target_exec_all(ds, preds, targets, base.max_rows))
        finally:
            for t in targets.values():
                t.close()
        t_compare = best_of(args.repeat, lambda: compare_all(results, RULES[args.rules]))

        print("\n(b)-(d) scorer, serial (workers=1), one score_dataset call per system:")
        line("(b) cold gold cache (fresh cache file)", t_cold, n_items, t_bare)
        line("(c) warm gold cache", t_warm, n_items, t_bare)
        line("    no cache file (cache_path=None)", t_nocache, n_items, t_bare)
        line("(d) warm gold cache + exact_match=True", t_exact, n_items, t_bare)
        print(f"  warm-cache ratio to bare: {t_warm / t_bare:.2f} (goal < {GOAL_RATIO}: "
              f"{'met' if t_warm / t_bare < GOAL_RATIO else 'NOT met'}); "
              f"to bare predicted-only (the SQL a warm run must still execute): {t_warm / t_bare_pred:.2f}")
        print("  components of a scored item, each measured alone (guard_select = sqlglot parse + read-only walk):")
        line("guard_select(gold) for every item", t_parse_gold, n_items, t_bare)
        line("guard_select(predicted) for every item", t_parse_pred, n_items, t_bare)
        line("SqliteTarget.execute(gold + predicted)", t_target, n_items, t_bare)
        line(f"results_match ({args.rules}) on those results", t_compare, n_items, t_bare)
        print(f"  scorer overhead per item beyond bare SQL: cold {(t_cold - t_bare) / n_items * 1e6:.0f} µs, "
              f"warm {(t_warm - t_bare_pred) / n_items * 1e6:.0f} µs; exact match adds "
              f"{(t_exact - t_warm) / n_items * 1e6:.0f} µs/item")

        # (e) parallel
        if args.scale > 0:
            big, big_preds = replicate(ds, preds, args.scale)
            one = {"all": big_preds}
            cfg = warm_cfg
            score_dataset(big, big_preds, cfg, workers=1)  # warm the cache for the (identical) gold SQL
            tiny = Dataset(ds.root, ds.manifest, ds.examples[:2])
            tiny_preds = {"tiny": {ex.id: preds[next(iter(preds))][ex.id] for ex in tiny.examples}}
            # The first pool of a process also starts the forkserver (which preloads evals.scoring).
            t_pool_first = best_of(1, lambda: score_all(tiny, tiny_preds, cfg, 2))
            t_pool = best_of(args.repeat, lambda: score_all(tiny, tiny_preds, cfg, 2))
            t_tiny1 = best_of(args.repeat, lambda: score_all(tiny, tiny_preds, cfg, 1))
            t_big1 = best_of(args.repeat, lambda: score_all(big, one, cfg, 1))
            t_big2 = best_of(args.repeat, lambda: score_all(big, one, cfg, 2))
            t_big_bare = t_bare * args.scale
            print(f"\n(e) {len(big)} items ({args.scale}× every system's items as separate items), warm cache "
                  f"(auto workers for this size: {choose_workers(len(big))}; serial below {SERIAL_BELOW} items):")
            line("workers=1", t_big1, len(big), t_big_bare, "bare×scale")
            line("workers=2 (incl. process pool start-up)", t_big2, len(big), t_big_bare, "bare×scale")
            print(f"  speed-up workers=2 vs 1: {t_big1 / t_big2:.2f}×")
            print(f"  process pool start-up + teardown (2 items, workers=2 minus workers=1): "
                  f"{(t_pool - t_tiny1) * 1000:.0f} ms per score_dataset call; the first pool in a process "
                  f"also starts the forkserver: {(t_pool_first - t_tiny1) * 1000:.0f} ms")
            print(f"  (the machine has {os.cpu_count()} CPUs, shared with other work: 2 workers cannot exceed 2×)")

        if args.profile:
            print(f"\nprofile of one warm-cache serial run ({n_items} items, exact_match=False), "
                  f"top {args.top} by cumulative time:")
            profile(ds, preds, warm_cfg, args.top)
        if args.profile_exact:
            print(f"\nprofile of one warm-cache serial run ({n_items} items, exact_match=True):")
            profile(ds, preds, exact_cfg, args.top, extra=EXACT_STAGES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
