"""Generation benchmark: the local model behind the openai client.

Prints (1) throughput and latency at client concurrency 1 and 4 against one local llama.cpp server (which
answers one request at a time), and against a pool of one 1-thread server per core (what `t2s eval` and
serving run), (2) completion-cache hit latency, and (3) the execution accuracy of each shipped prompt version
on the bundled golden set with the local model.

    .venv/bin/python benchmarks/generation.py [--limit 100] [--prompts 1,2,3] [--throughput-questions 12]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from evals.metrics import summarize
from evals.scoring import ScoreConfig, score_dataset
from t2s.datasets import load_dataset, load_split, open_db
from t2s.generator import SqlGenerator
from t2s.llm import CompletionCache, LLMClient
from t2s.local_llm import LocalServer, LocalServerPool
from t2s.prompts import PromptLibrary
from t2s.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def throughput(settings: Settings, base_url: str | list[str], gen_spec, target, questions: list[str],  # type: ignore[no-untyped-def]
               workers: int) -> float:
    client = LLMClient.from_settings(settings.model_copy(update={"llm_concurrency": workers}),
                                     base_url_override=base_url, cache=None)
    gen = SqlGenerator(gen_spec, client)
    servers = 1 if isinstance(base_url, str) else len(base_url)
    with ThreadPoolExecutor(workers) as pool:
        # warm every server's prompt prefix (concurrent calls go to different servers)
        list(pool.map(lambda q: gen.generate(q, target), questions[:servers]))
        start = time.perf_counter()
        results = list(pool.map(lambda q: gen.generate(q, target), questions))
    wall = time.perf_counter() - start
    lat = [r.latency_s for r in results]
    tokens = sum(r.completion_tokens for r in results)
    print(f"  {servers} server(s), concurrency {workers}: {len(questions)} calls in {wall:6.2f} s = "
          f"{len(questions) / wall:5.2f} calls/s, {tokens / wall:5.1f} completion tok/s; per-call latency "
          f"p50 {statistics.median(lat):5.2f} s, p95 {pct(lat, 0.95):5.2f} s")
    return len(questions) / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=ROOT / "datasets" / "bank")
    parser.add_argument("--prompt-name", default="sql-analyst")
    parser.add_argument("--prompts", default="1,2,3", help="Versions to evaluate (comma-separated).")
    parser.add_argument("--limit", type=int, default=None, help="Only the first N questions for accuracy.")
    parser.add_argument("--throughput-questions", type=int, default=12)
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="Completion cache for the accuracy runs (default: a fresh temp dir, so calls are real).")
    args = parser.parse_args()

    ds = load_dataset(args.dataset)
    target = open_db(ds)
    lib = PromptLibrary(ROOT / "prompts")
    versions = [int(v) for v in args.prompts.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(cache_dir=Path(tmp), llm_provider="local")
        t0 = time.perf_counter()
        with LocalServer(settings) as server:
            print(f"local server ready in {time.perf_counter() - t0:.2f} s at {server.base_url} "
                  f"(model {settings.llm_model}, 1 thread)")
            spec2 = lib.get(args.prompt_name, 2).spec
            questions = [ex.question for ex in ds.examples[: args.throughput_questions]]
            print(f"\n(1) throughput, prompt {spec2.ref}, {len(questions)} questions, no cache:")
            one = throughput(settings, server.base_url, spec2, target, questions, 1)
            throughput(settings, server.base_url, spec2, target, questions, 4)
            print("  (a server answers one request at a time: at concurrency 4 calls queue, so per-call latency "
                  "grows while throughput stays flat)")
            with LocalServerPool(settings) as pool:
                if pool.count > 1:
                    many = throughput(settings, pool.base_urls, spec2, target, questions, pool.count)
                    print(f"  pool of {pool.count} one-thread servers vs one server: {many / one:.2f}x the calls/s")

            cache = CompletionCache(Path(tmp) / "hit.sqlite")
            client = LLMClient.from_settings(settings, base_url_override=server.base_url, cache=cache)
            gen = SqlGenerator(spec2, client)
            for q in questions[:5]:
                gen.generate(q, target)
            hits = [gen.generate(q, target) for q in questions[:5] for _ in range(20)]
            assert all(h.cached for h in hits)
            lookups = [h.latency_s * 1000 for h in hits]
            full = [(time.perf_counter(), gen.generate(q, target), time.perf_counter()) for q in questions[:5]]
            print(f"\n(2) completion cache: lookup {statistics.mean(lookups):.2f} ms mean (p95 {pct(lookups, 0.95):.2f} ms); "
                  f"a cached generate() incl. schema context and SQL checks "
                  f"{statistics.mean((e - s) * 1000 for s, _, e in full):.1f} ms")

            cache_dir = args.cache_dir or Path(tmp) / "acc"
            acc_settings = Settings(cache_dir=cache_dir, llm_provider="local")
            examples = ds.examples[: args.limit] if args.limit else ds.examples
            print(f"\n(3) accuracy on {ds.name} ({len(examples)} questions), rules t2s, local model:")
            print(f"  {'prompt':<16}{'EX':>7}{'easy':>7}{'medium':>8}{'hard':>7}{'extra':>7}{'valid SQL':>11}"
                  f"{'no SQL':>8}{'s/question':>12}{'prompt tok':>12}")
            for v in versions:
                spec = lib.get(args.prompt_name, v).spec
                pool = load_split(args.dataset, spec.few_shot.split) if spec.few_shot.k else None
                client = LLMClient.from_settings(acc_settings, base_url_override=server.base_url)
                gen = SqlGenerator(spec, client, few_shot_pool=pool)
                start = time.perf_counter()
                gens = [gen.generate(ex.question, target, question_id=ex.id) for ex in examples]
                wall = time.perf_counter() - start
                subset = type(ds)(ds.root, ds.manifest, list(examples))
                verdicts = score_dataset(subset, {g.question_id: g.sql for g in gens},  # type: ignore[misc]
                                         ScoreConfig(timeout_s=10, exact_match=False))
                m = summarize(verdicts)
                d = {k: f"{100 * b.accuracy:.0f}%" for k, b in m.by_difficulty.items()}
                print(f"  {spec.ref:<16}{100 * m.execution_accuracy:6.1f}%{d.get('easy', '-'):>7}{d.get('medium', '-'):>8}"
                      f"{d.get('hard', '-'):>7}{d.get('extra', '-'):>7}{100 * m.valid_sql_rate:10.0f}%"
                      f"{sum(g.error is not None for g in gens):>8}{wall / len(gens):11.2f}s"
                      f"{statistics.mean(g.prompt_tokens for g in gens):12.0f}")


if __name__ == "__main__":
    main()
