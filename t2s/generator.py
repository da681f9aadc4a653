"""Question → SQL: the one generation code path, shared by evaluation and serving.

:class:`SqlGenerator` renders a prompt version with the schema context of the live database (and
few-shot examples retrieved from a training split), calls the model through :class:`t2s.llm.LLMClient`,
extracts the SQL, checks it with the guard and transpiles it to the engine's dialect. A model answer that
yields no usable SQL is a recorded failure (:attr:`Generation.error`), not an exception; an unreachable
endpoint or rejected credentials raise, since no question can succeed then.

The version's ``strategy`` (:mod:`t2s.strategy`) decides what happens around the model call: one call
(``single``), execution-guided repair, or self-consistency by execution voting. Candidates are executed
on the question's own target through a result cache, and :attr:`Generation.trace` records what happened.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from t2s.datasets import GoldExample, Turn
from t2s.errors import LLMAuthError, LLMError, LLMRefused, LLMUnavailable, SqlError, SqlTimeout
from t2s.execution import Target
from t2s.guard import checked_for
from t2s.prompts import PromptSpec
from t2s.result_store import ResultStore, store_key
from t2s.schema_context import build_schema_context
from t2s.sql_extract import extract_sql
from t2s.strategy import (
    Candidate,
    StrategyTrace,
    column_hint,
    missing_column,
    question_implies_rows,
    repair_message,
    tables_in,
    vote,
)

DIALECT_NAMES = {"sqlite": "SQLite", "tsql": "T-SQL (SQL Server)", "postgres": "PostgreSQL", "duckdb": "DuckDB",
                 "mysql": "MySQL", "bigquery": "BigQuery", "snowflake": "Snowflake"}
GENERATION_ERRORS = ("llm_error", "no_sql", "parse_error", "refused")
#: Executed candidates remembered per generator (by database fingerprint, SQL and row cap).
RESULT_CACHE_SIZE = 4096


@dataclass(frozen=True)
class Generation:
    question: str
    sql: str | None  # in the target engine's dialect; None when generation failed
    raw_text: str
    error: str | None  # one of GENERATION_ERRORS
    detail: str
    latency_s: float
    prompt_tokens: int  # over all model calls of the strategy
    completion_tokens: int
    cached: bool  # every model call was answered from the completion cache
    prompt: str  # name@version
    model: str
    question_id: str | None = None
    strategy: str = "single"
    model_calls: int = 1
    trace: dict[str, Any] | None = None  # StrategyTrace.as_dict() for strategies other than single
    #: error ``llm_error`` because the provider refused this request (a 4xx such as context length), not
    #: because the endpoint failed: serving's circuit breaker does not count it.
    llm_refused: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def format_examples(examples: list[GoldExample]) -> str:
    return "\n\n".join(f"Question: {ex.question}\nSQL: {ex.gold_sql.strip().rstrip(';')}" for ex in examples)


def format_conversation(context: Sequence[Turn]) -> str:
    """The ``{{conversation}}`` value: earlier turns, oldest first, as question/SQL pairs."""
    if not context:
        return "(none)"
    return "\n\n".join(f"Question: {t.question.strip()}\nSQL: {(t.sql or '(no SQL was produced)').strip().rstrip(';')}"
                        for t in context)


@dataclass
class _Call:
    """One model answer turned into a candidate query."""

    text: str
    sql: str | None
    error: str | None
    detail: str
    latency_s: float
    prompt_tokens: int
    completion_tokens: int
    cached: bool
    model: str
    refused: bool = False  # the provider refused the request (LLMRefused)


class SqlGenerator:
    """Generates SQL for questions with one prompt version on one model."""

    def __init__(self, spec: PromptSpec, llm: Any, *, few_shot_pool: list[GoldExample] | None = None,
                 result_store: ResultStore | None = None) -> None:
        """``result_store``: where executed candidates are remembered (default: in this generator's memory);
        an evaluation passes a persistent one so a sweep's cells and reruns share them."""
        if spec.few_shot.k and not few_shot_pool:
            raise LLMError(f"{spec.ref} uses {spec.few_shot.k} few-shot examples but no training split was given "
                           f"(expected {spec.few_shot.split}.jsonl beside the dataset)")
        self.spec = spec
        self.llm = llm
        self.pool = few_shot_pool or []
        self._results = result_store or ResultStore(None, memory_entries=RESULT_CACHE_SIZE)

    def few_shot(self, question: str, target: Target | None = None) -> list[GoldExample]:
        """The version's ``few_shot.k`` examples for ``question`` (deterministic). ``masked_similarity``
        masks the words of ``target``'s schema; without a target only values are masked."""
        if not self.spec.few_shot.k:
            return []
        keys = [ex.id for ex in self.pool]
        questions = [ex.question for ex in self.pool]
        if self.spec.few_shot.selector == "masked_similarity":
            from t2s.example_selection import masked_similarity_rank, schema_words
            from t2s.schema_context import introspect

            names: list[str] = []
            if target is not None:
                for table in introspect(target).tables:
                    names += [table.name, *(c.name for c in table.columns)]
            top = masked_similarity_rank(keys, questions, question, schema_words(names), top_k=self.spec.few_shot.k)
        else:
            from t2s.retrieval import bm25_rank

            top = bm25_rank(keys, questions, question, top_k=self.spec.few_shot.k)
        by_id = {ex.id: ex for ex in self.pool}
        return [by_id[k] for k in top]

    def messages(self, question: str, target: Target, evidence: str | None = None,
                 context: Sequence[Turn] = ()) -> list[dict[str, str]]:
        """The rendered prompt. ``context``: the conversation before a follow-up question; schema narrowing
        and example retrieval then read the earlier questions too ("only savings accounts" alone names
        no table), and versions declaring ``{{conversation}}`` show the turns to the model."""
        topic = " ".join([*(t.question for t in context), question]) if context else question
        values = {
            "question": question.strip(),
            "schema": build_schema_context(target, self.spec.schema_context, topic),
            "dialect": DIALECT_NAMES.get(self.spec.dialect, self.spec.dialect),
            "examples": format_examples(self.few_shot(topic, target)),
            "evidence": (evidence or "").strip(),
            "conversation": format_conversation(context),
        }
        return self.spec.render(values)

    # -- one model call

    def _params(self, sample: int = 0) -> Any:
        from t2s.llm import ChatParams

        p = self.spec.model
        if sample == 0:
            return ChatParams(temperature=p.temperature, max_tokens=p.max_tokens, stop=tuple(p.stop), seed=p.seed)
        return ChatParams(temperature=self.spec.strategy.temperature, max_tokens=p.max_tokens, stop=tuple(p.stop),
                          seed=(p.seed or 0) + sample)

    def _repair_sample_params(self, sample: int, rnd: int) -> Any:
        """Sampling parameters for a repair whose greedy answer repeated a query already tried."""
        from t2s.llm import ChatParams

        p = self.spec.model
        return ChatParams(temperature=max(self.spec.strategy.temperature, 0.7), max_tokens=p.max_tokens,
                          stop=tuple(p.stop), seed=(p.seed or 0) + 1000 + 100 * sample + rnd)

    def _call(self, messages: list[dict[str, str]], params: Any, target: Target) -> _Call:
        """Ask the model and extract, guard and transpile its SQL. Only an unusable endpoint raises."""
        start = time.perf_counter()
        try:
            completion = self.llm.complete(messages, params)
        except (LLMUnavailable, LLMAuthError):
            raise
        except LLMError as exc:
            return self._failed_call(exc, start)
        return self._candidate(completion, target)

    def _failed_call(self, exc: LLMError, start: float) -> _Call:
        """A call the provider failed (``llm_error``), remembering whether it refused this request."""
        return _Call("", None, "llm_error", str(exc), time.perf_counter() - start, 0, 0, False,
                     getattr(self.llm, "model", ""), isinstance(exc, LLMRefused))

    def _samples(self, messages: list[dict[str, str]], target: Target, n: int) -> list[_Call]:
        """Samples 1..n at the strategy's temperature: one request with ``n`` choices where the provider
        supports it (:meth:`t2s.llm.LLMClient.complete_samples`), else one request per seed."""
        sampler = getattr(self.llm, "complete_samples", None)
        if sampler is None:
            return [self._call(messages, self._params(i), target) for i in range(1, n + 1)]
        start = time.perf_counter()
        try:
            completions = sampler(messages, self._params(1), n)
        except (LLMUnavailable, LLMAuthError):
            raise
        except LLMError as exc:
            return [self._failed_call(exc, start) for _ in range(n)]
        return [self._candidate(c, target) for c in completions]

    def _candidate(self, completion: Any, target: Target) -> _Call:
        call = _Call(completion.text, None, None, "", completion.latency_s, completion.prompt_tokens,
                     completion.completion_tokens, completion.cached, completion.model)
        try:
            candidate = extract_sql(completion.text, self.spec.dialect)
            call.sql = checked_for(candidate, self.spec.dialect, target.dialect, engine=target.engine)
        except SqlError as exc:
            call.error, call.detail = exc.error_class, str(exc)
        return call

    def generate(self, question: str, target: Target, *, evidence: str | None = None,
                 question_id: str | None = None, context: Sequence[Turn] = ()) -> Generation:
        """SQL for ``question`` on ``target``; ``context`` holds the earlier turns when it is a follow-up
        (evaluation passes a golden item's ``context``, serving a session's turns)."""
        messages = self.messages(question, target, evidence, context)
        base = {"question": question, "prompt": self.spec.ref, "question_id": question_id}
        if self.spec.strategy.kind == "single":
            c = self._call(messages, self._params(), target)
            return Generation(sql=c.sql, raw_text=c.text, error=c.error, detail=c.detail, latency_s=c.latency_s,
                              prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens, cached=c.cached,
                              model=c.model, llm_refused=c.refused, **base)
        return self._run_strategy(question, messages, target, base)

    # -- strategies

    def _execute(self, sql: str, target: Target, fingerprint: str, trace: StrategyTrace
                 ) -> tuple[list[tuple[Any, ...]] | None, SqlError | None]:
        """Rows or the engine's error, through the result cache (timeouts are not cached)."""
        st = self.spec.strategy
        key = store_key("candidate", fingerprint, st.max_rows, sql)
        cached = self._results.get(key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        trace.executions += 1
        try:
            entry: tuple[list[tuple[Any, ...]] | None, SqlError | None] = (
                [tuple(r) for r in target.execute(sql, timeout_s=st.timeout_s, max_rows=st.max_rows).rows], None)
        except SqlTimeout as exc:
            return None, exc
        except SqlError as exc:
            entry = (None, exc)
        self._results.put(key, entry)
        return entry

    def _repair_turn(self, cand: Candidate, target: Target, empty: bool) -> str:
        """The repair request: the error, where an invented column really lives, and the columns of the
        tables the query named (plus those holding the missing column)."""
        from t2s.schema_context import introspect

        columns = {t.name: [c.name for c in t.columns] for t in introspect(target).tables}
        names = tables_in(cand.sql, list(columns))
        hints = []
        missing = missing_column(cand.detail) if not empty else None
        if missing:
            hints.append(column_hint(missing, columns))
            names += [t for t, cols in columns.items() if t not in names and missing.lower() in map(str.lower, cols)]
        return repair_message(cand.error or "empty_result", cand.detail, {t: columns[t] for t in names},
                              empty=empty, hints=hints)

    def _run_strategy(self, question: str, messages: list[dict[str, str]], target: Target,
                      base: dict[str, Any]) -> Generation:
        st = self.spec.strategy
        start = time.perf_counter()
        trace = StrategyTrace(kind=st.kind)
        fingerprint = target.fingerprint()
        calls: list[_Call] = []
        finals: list[tuple[int, list[tuple[Any, ...]] | None]] = []  # per sample: (candidate index, rows)
        wants_rows = st.repair_on_empty and question_implies_rows(question)
        first = [self._call(messages, self._params(), target)]
        if st.samples > 1:
            first += self._samples(messages, target, st.samples - 1)
        for sample in range(st.samples):
            conversation = list(messages)
            call = first[sample]
            calls.append(call)
            sample_start = len(trace.candidates)
            best: tuple[int, list[tuple[Any, ...]] | None] | None = None
            for rnd in range(st.repair_rounds + 1):
                rows, failure = self._execute(call.sql, target, fingerprint, trace) if call.sql else (None, None)
                cand = Candidate(sample=sample, round=rnd, sql=call.sql,
                                 error=call.error or (failure.error_class if failure else None),
                                 detail=call.detail or (str(failure) if failure else ""),
                                 rows=None if rows is None else len(rows),
                                 tokens=call.prompt_tokens + call.completion_tokens)
                trace.candidates.append(cand)
                index = len(trace.candidates) - 1
                if rows is not None and (best is None or not best[1]):
                    best = (index, rows)  # an executed answer beats a failed one; a non-empty one an empty one
                empty = rows is not None and not rows and wants_rows
                repairable = (call.error is not None and call.error != "llm_error") or failure is not None or empty
                if not repairable or rnd == st.repair_rounds:
                    break
                conversation += [{"role": "assistant", "content": call.text.strip() or "(no answer)"},
                                 {"role": "user", "content": self._repair_turn(
                                     cand, target, empty=empty and failure is None and call.error is None)}]
                tried = {c.sql for c in trace.candidates[sample_start:] if c.sql}
                call = self._call(conversation, self._params(), target)
                if call.sql in tried:  # a small model often repeats itself: ask once more, sampling
                    calls.append(call)
                    trace.candidates.append(Candidate(sample=sample, round=rnd + 1, sql=call.sql, error="repeated",
                                                      detail="the repair repeated an earlier query",
                                                      tokens=call.prompt_tokens + call.completion_tokens))
                    call = self._call(conversation, self._repair_sample_params(sample, rnd), target)
                calls.append(call)
                trace.repair_rounds += 1
            finals.append(best or (len(trace.candidates) - 1, None))
        if st.kind == "self_consistency":
            groups, trace.votes, winner = vote([rows for _, rows in finals])
            for (index, _), group in zip(finals, groups, strict=True):
                trace.candidates[index].group = group
            if winner is not None:
                trace.chosen = finals[winner][0]
        if trace.chosen is None:  # nothing executed (or no vote): the first sample's answer
            with_sql = [i for i, _ in finals if trace.candidates[i].sql is not None]
            trace.chosen = with_sql[0] if with_sql else finals[0][0]
        trace.model_calls = len(calls)
        chosen = trace.candidates[trace.chosen]
        raw = calls[trace.chosen].text  # one call per candidate, appended in step
        gen_error = None if chosen.sql is not None else (chosen.error or "no_sql")
        return Generation(
            sql=chosen.sql, raw_text=raw, error=gen_error, detail="" if chosen.sql is not None else chosen.detail,
            latency_s=time.perf_counter() - start, prompt_tokens=sum(c.prompt_tokens for c in calls),
            completion_tokens=sum(c.completion_tokens for c in calls), cached=all(c.cached for c in calls),
            model=calls[-1].model, strategy=st.summary(), model_calls=len(calls), trace=trace.as_dict(),
            llm_refused=gen_error == "llm_error" and calls[trace.chosen].refused, **base)

