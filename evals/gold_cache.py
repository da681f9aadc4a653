"""Gold results computed once per (database fingerprint, gold SQL, preparation, row cap) and reused.

An entry holds what scoring needs from the gold: the SQL text executed on the engine, whether row order
matters, and the result. A hit therefore skips parsing the gold as well as executing it. Entries live in
a small SQLite file under the cache directory, so reruns, other systems' prediction files and parallel
worker processes all share them. Deterministic failures are cached too; timeouts are not (a slower
machine or a larger timeout may succeed).
"""

from __future__ import annotations

import hashlib
import pickle
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from t2s.errors import SqlError
from t2s.execution import QueryResult


@dataclass(frozen=True)
class GoldRun:
    text: str  # the SQL executed on the engine (after rule-set rewrites and transpilation)
    order_matters: bool
    result: QueryResult


Entry = GoldRun | SqlError


def cache_key(fingerprint: str, sql: str, max_rows: int, preparation: str = "") -> str:
    """``preparation`` names everything that changes the executed text (rule set, dialects)."""
    return hashlib.sha256(f"{fingerprint}\x00{max_rows}\x00{preparation}\x00{sql}".encode()).hexdigest()


class GoldCache:
    """Persistent gold-result cache. Entries are pickles written by this process family only."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._memory: dict[str, Entry] = {}
        self._conn: sqlite3.Connection | None = None
        self.hits = 0
        self.misses = 0

    def _db(self) -> sqlite3.Connection | None:
        if self.path is None:
            return None
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # a lost entry is recomputed; no fsync per entry
            conn.execute("CREATE TABLE IF NOT EXISTS gold (key TEXT PRIMARY KEY, payload BLOB NOT NULL)")
            self._conn = conn
        return self._conn

    def get(self, key: str) -> Entry | None:
        entry = self._memory.get(key)
        if entry is None and (db := self._db()) is not None:
            row = db.execute("SELECT payload FROM gold WHERE key = ?", (key,)).fetchone()
            if row is not None:
                entry = pickle.loads(row[0])
                self._memory[key] = entry
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def put(self, key: str, entry: Entry) -> None:
        self._memory[key] = entry
        if (db := self._db()) is not None:
            db.execute("INSERT OR REPLACE INTO gold (key, payload) VALUES (?, ?)",
                       (key, pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
