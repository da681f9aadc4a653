"""Generation strategies on the local model: accuracy, paired comparison and cost against a baseline version.

For each dataset slice and each prompt version: execution accuracy, the paired difference against the
baseline version on the same items (exact McNemar p), model calls and tokens per question, and wall time
per question (fresh completion cache per version, so every call is real; one 1-thread llama.cpp server per
core with one question in flight per server, as `t2s eval` runs; questions grouped by database so each
server reuses the schema prefix; s/q is wall time over questions).

    .venv/bin/python benchmarks/strategies.py --versions 1,2,3,4,5,6 --baseline 3 --bank-limit 30 \\
        --freight-limit 40 --spider /tmp/spider-sample-ds --spider-limit 30

``--spider`` takes a dataset made by ``t2s datasets import-spider ../shared/spider-sample --out DIR`` (never
commit it). Each slice is every n-th item (bank is ordered by difficulty, Spider by database); few-shot
examples come from the dataset's training split, or, when it has none (Spider's sample), from the items
outside the slice (same databases, other questions).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from evals.metrics import summarize
from evals.scoring import ScoreConfig, score_dataset
from evals.stats import mcnemar_exact
from pipelines.eval_config import select_items
from t2s.datasets import Dataset, GoldExample, load_dataset, load_split, open_db
from t2s.generator import SqlGenerator
from t2s.llm import LLMClient
from t2s.local_llm import LocalServerPool
from t2s.prompts import PromptLibrary
from t2s.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def slice_of(ds: Dataset, limit: int, spread: bool) -> tuple[list[GoldExample], list[GoldExample]]:
    """(evaluated items, the rest): the first ``limit`` items, or every n-th one with ``spread``."""
    chosen = select_items(list(ds.examples), limit, "spread" if spread else "first")
    ids = {ex.id for ex in chosen}
    return chosen, [ex for ex in ds.examples if ex.id not in ids]


def run_dataset(label: str, ds: Dataset, items: list[GoldExample], rest: list[GoldExample], versions: list[int],
                baseline: int, base_url: list[str], rules: str, lib: PromptLibrary, tmp: Path) -> None:
    subset = Dataset(ds.root, ds.manifest, items)
    targets = {db: open_db(ds, db) for db in sorted({ex.db_id for ex in items})}
    ordered = sorted(items, key=lambda ex: ex.db_id)
    verdicts: dict[int, dict[str, bool]] = {}
    print(f"\n{label}: {len(items)} questions over {len(targets)} database(s), rules {rules}")
    print(f"  {'version':<16}{'strategy':<46}{'EX':>7}{'valid':>7}{'vs v' + str(baseline):>10}{'won/lost':>9}"
          f"{'p':>7}{'calls/q':>8}{'tok/q':>7}{'s/q':>7}{'x time':>7}")
    rows = []
    for v in versions:
        spec = lib.get("sql-analyst", v).spec
        pool = None
        if spec.few_shot.k:
            try:
                pool = load_split(ds.root, spec.few_shot.split)
            except Exception:  # no training split: the items outside the slice
                pool = rest
        client = LLMClient.from_settings(Settings(cache_dir=tmp / f"{label}-v{v}", llm_provider="local",
                                                  llm_concurrency=len(base_url)), base_url_override=base_url)
        gen = SqlGenerator(spec, client, few_shot_pool=pool)
        warm = SqlGenerator(spec, LLMClient.from_settings(Settings(llm_provider="local"), base_url_override=base_url,
                                                          cache=None), few_shot_pool=pool)
        with ThreadPoolExecutor(len(base_url)) as threads:
            first = ordered[0].db_id  # warm each server's prompt prefix with questions outside the slice
            warm_q = [ex.question for ex in rest if ex.db_id == first][: len(base_url)] or ["How many rows?"]
            list(threads.map(lambda q, w=warm, t=targets[first]: w.generate(q, t), warm_q))
            start = time.perf_counter()
            gens = list(threads.map(lambda ex, g=gen: g.generate(ex.question, targets[ex.db_id], question_id=ex.id),
                                    ordered))
        wall = (time.perf_counter() - start) / len(gens)
        scored = score_dataset(subset, {g.question_id: g.sql for g in gens},  # type: ignore[misc]
                               ScoreConfig(rules=rules, timeout_s=10))
        verdicts[v] = {x.id: x.match for x in scored}
        m = summarize(scored)
        calls = sum(g.model_calls for g in gens) / len(gens)
        tokens = sum(g.prompt_tokens + g.completion_tokens for g in gens) / len(gens)
        rows.append((v, spec.strategy.summary() + (" +masked" if spec.few_shot.selector != "bm25" else ""),
                     m.execution_accuracy, m.valid_sql_rate, calls, tokens, wall))
    base_time = next((r[6] for r in rows if r[0] == baseline), None)
    for v, strategy, ex_acc, valid, calls, tokens, wall in rows:
        if v in verdicts and baseline in verdicts:
            b = sum(verdicts[v][i] and not verdicts[baseline][i] for i in verdicts[v])
            c = sum(verdicts[baseline][i] and not verdicts[v][i] for i in verdicts[v])
            diff, p, wl = f"{100 * (b - c) / len(items):+.1f}pt", f"{mcnemar_exact(b, c):.3f}", f"{b}/{c}"
        else:
            diff, p, wl = "-", "-", "-"
        ratio = f"{wall / base_time:.2f}" if base_time else "-"
        print(f"  sql-analyst@{v:<4}{strategy:<46}{100 * ex_acc:6.1f}%{100 * valid:6.0f}%{diff:>10}{wl:>9}{p:>7}"
              f"{calls:8.2f}{tokens:7.0f}{wall:7.2f}{ratio:>7}", flush=True)
    for t in targets.values():
        t.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", default="3,4,5,6", help="sql-analyst versions (comma-separated).")
    parser.add_argument("--baseline", type=int, default=3, help="Version the others are compared with.")
    parser.add_argument("--bank-limit", type=int, default=30,
                        help="N bank questions spread over the set, which is ordered by difficulty (0: skip).")
    parser.add_argument("--freight-limit", type=int, default=0,
                        help="N questions of the held-out freight set, spread (0: skip; needs `make data`).")
    parser.add_argument("--spider", type=Path, default=None, help="An imported Spider dataset directory.")
    parser.add_argument("--spider-limit", type=int, default=30)
    args = parser.parse_args()

    lib = PromptLibrary(ROOT / "prompts")
    versions = [int(v) for v in args.versions.split(",")]
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        with LocalServerPool(Settings(cache_dir=tmp, llm_provider="local")) as server:
            print(f"{server.count} local one-thread server(s), one question in flight per server")
            if args.bank_limit:
                bank = load_dataset(ROOT / "datasets" / "bank")
                items, rest = slice_of(bank, args.bank_limit, spread=True)
                run_dataset("bank", bank, items, rest, versions, args.baseline, server.base_urls, "t2s", lib, tmp)
            if args.freight_limit:
                freight = load_dataset(ROOT / "datasets" / "freight")
                items, rest = slice_of(freight, args.freight_limit, spread=True)
                run_dataset("freight (held out)", freight, items, rest, versions, args.baseline, server.base_urls,
                            "t2s", lib, tmp)
            if args.spider is not None:
                spider = load_dataset(args.spider)
                items, rest = slice_of(spider, args.spider_limit, spread=True)
                run_dataset("spider-sample", spider, items, rest, versions, args.baseline, server.base_urls,
                            "spider", lib, tmp)


if __name__ == "__main__":
    main()
