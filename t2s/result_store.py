"""Query results kept across runs and processes: a small SQLite file of pickled entries, with a bounded
in-memory layer in front.

Two users: the scorer's gold results (:mod:`evals.gold_cache`) and the candidates a generation strategy
executes (:class:`t2s.generator.SqlGenerator`): a sweep's cells, a rerun after a code change and parallel
worker processes all share what was executed once. Keys must name everything the entry depends on (the
database's content fingerprint, the SQL text, the row cap …). Entries are pickles written by this process
family only: the file lives in the platform's own cache directory and is never read from elsewhere (the
serving layer keeps its results in memory only).
"""

from __future__ import annotations

import hashlib
import pickle
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

__all__ = ["ResultStore", "store_key"]


def store_key(*parts: object) -> str:
    """A fixed-length key from the parts an entry depends on."""
    return hashlib.sha256("\x00".join(str(p) for p in parts).encode("utf-8", "surrogatepass")).hexdigest()


class ResultStore:
    """``get``/``put`` by key; thread-safe. ``path=None`` keeps entries in memory only."""

    def __init__(self, path: Path | None, *, table: str = "results", memory_entries: int = 4096) -> None:
        if not table.isidentifier():
            raise ValueError(f"table name {table!r}")
        self.path = path
        self.table = table
        self.memory_entries = memory_entries
        self._memory: OrderedDict[str, Any] = OrderedDict()
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _db(self) -> sqlite3.Connection | None:
        if self.path is None:
            return None
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # a lost entry is recomputed; no fsync per entry
            conn.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (key TEXT PRIMARY KEY, payload BLOB NOT NULL)")
            self._conn = conn
        return self._conn

    def _remember(self, key: str, entry: Any) -> None:
        self._memory[key] = entry
        self._memory.move_to_end(key)
        while len(self._memory) > self.memory_entries:
            self._memory.popitem(last=False)

    def get(self, key: str) -> Any | None:
        """The entry, or None when there is none."""
        with self._lock:
            entry = self._memory.get(key)
            if entry is not None:
                self._memory.move_to_end(key)
            elif (db := self._db()) is not None:
                row = db.execute(f"SELECT payload FROM {self.table} WHERE key = ?", (key,)).fetchone()
                if row is not None:
                    entry = pickle.loads(row[0])
                    self._remember(key, entry)
            if entry is None:
                self.misses += 1
            else:
                self.hits += 1
            return entry

    def put(self, key: str, entry: Any) -> None:
        with self._lock:
            self._remember(key, entry)
            if (db := self._db()) is not None:
                db.execute(f"INSERT OR REPLACE INTO {self.table} (key, payload) VALUES (?, ?)",
                           (key, pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
