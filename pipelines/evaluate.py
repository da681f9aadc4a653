"""One cell of the matrix: a prompt version on a model, over a dataset → a :class:`VariantRun`.

Generation goes through :class:`t2s.generator.SqlGenerator` (the serving code path) with the completion
cache, so an interrupted cell resumes where it stopped and a rerun costs no model calls; scoring goes
through :func:`evals.scoring.score_dataset`. A question that fails is recorded and the cell goes on; only a
model that cannot be reached at all fails the cell. Each answer's latency is kept as if no call had been
cached (:mod:`pipelines.call_times`): the serving budget of the promotion gate is checked against it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from evals.metrics import ItemVerdict, item_metrics, summarize
from evals.records import EvalItem, VariantRun
from evals.scoring import ScoreConfig, StreamScorer
from pipelines.call_times import TimedCalls
from pipelines.eval_config import EvalConfig, ModelSpec, select_items
from t2s.datasets import Dataset, load_split, open_db
from t2s.generator import Generation, SqlGenerator
from t2s.prompts import PromptFile
from t2s.result_store import ResultStore

PREVIEW_ROWS = 5


def variant_name(prompt_ref: str, model: ModelSpec) -> str:
    return f"{prompt_ref}/{model.label}"


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text.replace("@", "-v").replace("/", "__"))


def lanes(items: list[Any], workers: int) -> list[list[Any]]:
    """The questions each worker answers, in order: ordered by database (the server then reuses the shared
    schema prefix), dealt round-robin. A fixed split and order, not whichever worker is free: each local
    server then sees the same questions in the same order on every run, and llama.cpp's answers, which
    depend a little on what the server's cache held before, come out the same (dvc.lock records them)."""
    ordered = sorted(items, key=lambda ex: ex.db_id)
    return [lane for k in range(max(1, workers)) if (lane := ordered[k::max(1, workers)])]


def cold_starts(items: list[Any], workers: int, warmed: bool) -> set[str]:
    """The questions a worker asks first on its database: the server has not read that schema prefix yet
    (unless ``warmed``: each worker's first database was read before any answer was timed)."""
    cold = set()
    for lane in lanes(items, workers):
        seen = {lane[0].db_id} if warmed else set()
        for ex in lane:
            if ex.db_id not in seen:
                cold.add(ex.id)
                seen.add(ex.db_id)
    return cold


def generate_all(gen: SqlGenerator, dataset: Dataset, items: list[Any], workers: int, postgres_dsn: str | None,
                 on_done: Callable[[Generation], None] | None = None,
                 warm_up: Callable[[list[dict[str, str]]], None] | None = None) -> dict[str, Generation]:
    """Generations for ``items``, each worker answering its :func:`lanes` in order. ``warm_up`` gets the
    prompt of a worker's first question in that worker's thread before it answers any: a local server reads
    the schema prefix there, as a serving process's servers hold it after their first request."""
    targets = {db: open_db(dataset, db, postgres_dsn) for db in sorted({ex.db_id for ex in items})}
    stop = threading.Event()

    def messages(ex: Any) -> list[dict[str, str]]:
        return gen.messages(ex.question, targets[ex.db_id], ex.evidence, context=ex.context)

    def one(ex: Any) -> Generation:
        g = gen.generate(ex.question, targets[ex.db_id], evidence=ex.evidence, question_id=ex.id, context=ex.context)
        if on_done:
            on_done(g)
        return g

    def answer(lane: list[Any]) -> list[Generation]:
        if warm_up is not None:
            warm_up(messages(lane[0]))
        out = []
        for ex in lane:
            if stop.is_set():
                break
            out.append(one(ex))
        return out

    try:
        # Render one prompt per database before the workers start: the schema introspection it caches would
        # otherwise run in every worker at once, all of them waiting instead of calling the model.
        for db in targets:
            messages(next(ex for ex in items if ex.db_id == db))
        split = lanes(items, workers)
        pool = ThreadPoolExecutor(len(split))
        try:
            results = [g for done in pool.map(answer, split) for g in done]
        except BaseException:  # interrupted: the questions in flight finish (and are cached), no new ones start
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
    finally:
        for t in targets.values():
            t.close()
    return {g.question_id: g for g in results}  # type: ignore[misc]


def generate_and_score(gen: SqlGenerator, dataset: Dataset, score_config: ScoreConfig, workers: int,
                       postgres_dsn: str | None, on_done: Callable[[Generation], None] | None = None,
                       warm_up: Callable[[list[dict[str, str]]], None] | None = None
                       ) -> list[tuple[ItemVerdict, Generation]]:
    """(verdict, generation) per item of ``dataset``, in dataset order.

    Each question is scored as soon as its generation returns, by one scoring thread that owns the open
    databases, so scoring runs while the model is busy with the next questions: the cell takes about as
    long as its generation instead of generation plus scoring.
    """
    stream = StreamScorer(dataset, score_config)
    scoring = ThreadPoolExecutor(1, thread_name_prefix="t2s-score")
    pending: dict[str, Future[ItemVerdict]] = {}

    def generated(g: Generation) -> None:
        assert g.question_id is not None
        pending[g.question_id] = scoring.submit(stream.score, dataset.by_id[g.question_id], g.sql)
        if on_done:
            on_done(g)

    try:
        generations = generate_all(gen, dataset, list(dataset.examples), workers, postgres_dsn, generated, warm_up)
        return [(pending[ex.id].result(), generations[ex.id]) for ex in dataset.examples]
    finally:
        scoring.submit(stream.close).result()
        scoring.shutdown()


def strategy_fields(g: Generation) -> dict[str, Any]:
    """The per-item record of what the version's strategy did (defaults for ``single``)."""
    trace = g.trace
    if not trace:
        return {"strategy": g.strategy, "model_calls": g.model_calls}
    candidates = trace["candidates"]
    chosen = candidates[trace["chosen"]] if trace.get("chosen") is not None else None
    votes = ""
    if trace.get("votes") and chosen is not None and chosen.get("group") is not None:
        votes = f"{trace['votes'][chosen['group']]}/{sum(trace['votes'])}"
    first = candidates[0].get("tokens", 0) if candidates else 0
    return {"strategy": g.strategy, "model_calls": g.model_calls, "candidates": len(candidates),
            "repair_rounds": trace.get("repair_rounds", 0), "votes": votes,
            "extra_tokens": max(0, g.prompt_tokens + g.completion_tokens - first), "strategy_trace": trace}


def cell_metrics(items: list[EvalItem], verdict_metrics: dict[str, float], model: ModelSpec) -> dict[str, float]:
    """The verdicts' metrics, what the items cost, and (for a priced model) the cost in USD: of the cell
    (``estimated_cost_usd``) and per 1,000 answers (``cost_per_1k_answers_usd``, the serving budget's)."""
    out = dict(verdict_metrics) | item_metrics(items)
    if model.prices is not None:
        price_in, price_out = model.prices
        out["estimated_cost_usd"] = (out["prompt_tokens_total"] / 1000 * price_in
                                     + out["completion_tokens_total"] / 1000 * price_out)
        out["cost_per_1k_answers_usd"] = 1000 * out["estimated_cost_usd"] / max(1, len(items))
    return out


def cell_workers(config: EvalConfig, llm: Any) -> int:
    """Questions in flight: ``config.workers``, else one per local server, else the client's concurrency."""
    if config.workers:
        return config.workers
    servers = getattr(llm, "local_server", None)
    return int(getattr(servers, "count", 0) or getattr(llm, "concurrency", 1) or 1)


def _server_warm_up(llm: Any) -> Callable[[list[dict[str, str]]], None] | None:
    """For local model servers: ask for one token of a prompt, so the server holds its prefix (the schema)
    before the answers are timed — the state of a serving process's servers after their first request.
    Through the completion cache: when the answers themselves are cached, no server is asked."""
    if not getattr(getattr(llm, "local_server", None), "count", 0):
        return None
    from t2s.llm import ChatParams

    def warm_up(messages: list[dict[str, str]]) -> None:
        llm.complete(messages, ChatParams(temperature=0.0, max_tokens=1))

    return warm_up


def _preload_client_modules() -> None:
    """The openai client imports its chat module at its first request (about a second, more on a busy
    machine): imported here, before any answer is timed, so the first answers of a cell are not charged."""
    import openai.resources.chat  # noqa: F401


def evaluate_cell(dataset: Dataset, prompt: PromptFile, model: ModelSpec, llm: Any, config: EvalConfig, *,
                  postgres_dsn: str | None = None, cache_path: Any = None,
                  on_done: Callable[[Generation], None] | None = None) -> VariantRun:
    spec = prompt.spec
    pool = load_split(dataset.root, spec.few_shot.split) if spec.few_shot.k else None
    # Candidates a strategy executes are remembered beside the gold results: the sweep's other cells and
    # reruns execute each (database, query) once.
    store = ResultStore(cache_path, table="candidates") if cache_path and spec.strategy.kind != "single" else None
    timed = TimedCalls(llm, ResultStore(cache_path, table="call_times"))
    gen = SqlGenerator(spec, timed, few_shot_pool=pool, result_store=store)
    items = select_items(dataset.examples, config.limit_for(dataset.name), config.limit_mode)
    subset = Dataset(dataset.root, dataset.manifest, items)
    answer_latency: dict[str | None, float | None] = {}
    workers = cell_workers(config, llm)
    warm_up = _server_warm_up(llm)
    cold = cold_starts(items, workers, warmed=warm_up is not None)
    _preload_client_modules()

    def done(g: Generation) -> None:  # in the worker thread that generated g, right after its last call
        answer_latency[g.question_id] = timed.answer_latency(g.latency_s)
        if on_done:
            on_done(g)

    try:
        verdicts = generate_and_score(gen, subset, ScoreConfig(
            rules=config.rules, timeout_s=config.timeout_s, max_rows=config.max_rows, exact_match=config.exact_match,
            cache_path=cache_path, postgres_dsn=postgres_dsn, previews=PREVIEW_ROWS), workers, postgres_dsn, done,
            warm_up)
    finally:
        timed.close_times()
        if store is not None:
            store.close()
    records = []
    for ex, (v, g) in zip(items, verdicts, strict=True):
        error = v.error_class
        detail = v.detail
        if g.sql is None:  # the generation failed: report its class instead of "missing_prediction"
            error, detail = g.error, g.detail
        records.append(EvalItem(
            id=ex.id, question=ex.question, db_id=ex.db_id, difficulty=ex.difficulty, category=ex.category,
            gold_sql=ex.gold_sql, pred_sql=g.sql, match=v.match, error_class=error, exact_match=v.exact_match,
            valid_sql=v.valid_sql and g.sql is not None, detail=detail, gold_preview=v.gold_preview or "",
            pred_preview=v.pred_preview or "", latency_s=g.latency_s, answer_latency_s=answer_latency.get(ex.id),
            cold_start=ex.id in cold,
            prompt_tokens=g.prompt_tokens,
            completion_tokens=g.completion_tokens, cached=g.cached, **strategy_fields(g)))
    summary = summarize(v for v, _ in verdicts)
    metrics = cell_metrics(records, {k: v for k, v in summary.flat().items() if not k.startswith("error_rate/missing")},
                           model)
    return VariantRun(
        variant=variant_name(spec.ref, model), prompt=spec.ref, prompt_name=spec.name, prompt_version=spec.version,
        model=model.name, provider=model.provider, dataset=dataset.name, dataset_version=dataset.version(),
        dataset_path=str(dataset.root),
        rules=config.rules, prompt_text=prompt.text, metrics=metrics, items=records)
