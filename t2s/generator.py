"""Question → SQL: the one generation code path, shared by evaluation and serving.

:class:`SqlGenerator` renders a prompt version with the schema context of the live database (and
few-shot examples retrieved from a training split), calls the model through :class:`t2s.llm.LLMClient`,
extracts the SQL, checks it with the guard and transpiles it to the engine's dialect. A model answer that
yields no usable SQL is a recorded failure (:attr:`Generation.error`), not an exception; an unreachable
endpoint or rejected credentials raise, since no question can succeed then.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from t2s.datasets import GoldExample
from t2s.errors import LLMAuthError, LLMError, LLMUnavailable, SqlError
from t2s.execution import Target
from t2s.guard import guard_select, to_dialect
from t2s.prompts import PromptSpec
from t2s.schema_context import build_schema_context
from t2s.sql_extract import extract_sql

DIALECT_NAMES = {"sqlite": "SQLite", "tsql": "T-SQL (SQL Server)", "postgres": "PostgreSQL", "duckdb": "DuckDB",
                 "mysql": "MySQL", "bigquery": "BigQuery", "snowflake": "Snowflake"}
GENERATION_ERRORS = ("llm_error", "no_sql", "parse_error", "refused")


@dataclass(frozen=True)
class Generation:
    question: str
    sql: str | None  # in the target engine's dialect; None when generation failed
    raw_text: str
    error: str | None  # one of GENERATION_ERRORS
    detail: str
    latency_s: float
    prompt_tokens: int
    completion_tokens: int
    cached: bool
    prompt: str  # name@version
    model: str
    question_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def format_examples(examples: list[GoldExample]) -> str:
    return "\n\n".join(f"Question: {ex.question}\nSQL: {ex.gold_sql.strip().rstrip(';')}" for ex in examples)


class SqlGenerator:
    """Generates SQL for questions with one prompt version on one model."""

    def __init__(self, spec: PromptSpec, llm: Any, *, few_shot_pool: list[GoldExample] | None = None) -> None:
        if spec.few_shot.k and not few_shot_pool:
            raise LLMError(f"{spec.ref} uses {spec.few_shot.k} few-shot examples but no training split was given "
                           f"(expected {spec.few_shot.split}.jsonl beside the dataset)")
        self.spec = spec
        self.llm = llm
        self.pool = few_shot_pool or []

    def few_shot(self, question: str) -> list[GoldExample]:
        if not self.spec.few_shot.k:
            return []
        from t2s.retrieval import bm25_rank

        keys = [ex.id for ex in self.pool]
        top = bm25_rank(keys, [ex.question for ex in self.pool], question, top_k=self.spec.few_shot.k)
        by_id = {ex.id: ex for ex in self.pool}
        return [by_id[k] for k in top]

    def messages(self, question: str, target: Target, evidence: str | None = None) -> list[dict[str, str]]:
        values = {
            "question": question.strip(),
            "schema": build_schema_context(target, self.spec.schema_context, question),
            "dialect": DIALECT_NAMES.get(self.spec.dialect, self.spec.dialect),
            "examples": format_examples(self.few_shot(question)),
            "evidence": (evidence or "").strip(),
        }
        return self.spec.render(values)

    def generate(self, question: str, target: Target, *, evidence: str | None = None,
                 question_id: str | None = None) -> Generation:
        from t2s.llm import ChatParams

        start = time.perf_counter()
        messages = self.messages(question, target, evidence)
        p = self.spec.model
        params = ChatParams(temperature=p.temperature, max_tokens=p.max_tokens, stop=tuple(p.stop), seed=p.seed)
        base = {"question": question, "prompt": self.spec.ref, "question_id": question_id}
        try:
            completion = self.llm.complete(messages, params)
        except (LLMUnavailable, LLMAuthError):
            raise
        except LLMError as exc:
            return Generation(sql=None, raw_text="", error="llm_error", detail=str(exc),
                              latency_s=time.perf_counter() - start, prompt_tokens=0, completion_tokens=0,
                              cached=False, model=getattr(self.llm, "model", ""), **base)
        result = dict(raw_text=completion.text, latency_s=completion.latency_s,
                      prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens,
                      cached=completion.cached, model=completion.model, **base)
        try:
            candidate = extract_sql(completion.text)
            tree = guard_select(candidate, self.spec.dialect, engine=target.engine)
            sql = to_dialect(tree, candidate, self.spec.dialect, target.dialect)
        except SqlError as exc:
            return Generation(sql=None, error=exc.error_class, detail=str(exc), **result)
        return Generation(sql=sql, error=None, detail="", **result)
