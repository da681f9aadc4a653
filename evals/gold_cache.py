"""Gold results computed once per (database fingerprint, gold SQL, preparation, row cap) and reused.

An entry holds what scoring needs from the gold: the SQL text executed on the engine, whether row order
matters, and the result. A hit therefore skips parsing the gold as well as executing it. Entries live in
a small SQLite file under the cache directory, so reruns, other systems' prediction files and parallel
worker processes all share them. Deterministic failures are cached too; timeouts are not (a slower
machine or a larger timeout may succeed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from t2s.errors import SqlError
from t2s.execution import QueryResult
from t2s.result_store import ResultStore, store_key


@dataclass(frozen=True)
class GoldRun:
    text: str  # the SQL executed on the engine (after rule-set rewrites and transpilation)
    order_matters: bool
    result: QueryResult


Entry = GoldRun | SqlError


def cache_key(fingerprint: str, sql: str, max_rows: int, preparation: str = "") -> str:
    """``preparation`` names everything that changes the executed text (rule set, dialects)."""
    return store_key(fingerprint, max_rows, preparation, sql)


class GoldCache(ResultStore):
    """Persistent gold-result cache (``path=None``: this process only)."""

    def __init__(self, path: Path | None) -> None:
        super().__init__(path, table="gold", memory_entries=65536)

    def get(self, key: str) -> Entry | None:
        return super().get(key)  # type: ignore[no-any-return]
