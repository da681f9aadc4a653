"""Served databases: a small pool of read-only targets per database, shared by the request threads.

A :class:`t2s.execution.Target` holds one connection and is not meant for two queries at once, so each
query borrows a target from its database's pool and returns it. One extra target per database stays with
the generator for schema context (introspection is cached per target, and warmed at start so request
threads only read the cache).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from serving.config import DatabaseSpec, parse_database
from t2s import deadline
from t2s.engines import EngineLimits
from t2s.errors import ConfigError, DeadlineExceeded
from t2s.execution import Target, open_target
from t2s.settings import Settings


def serving_limits(settings: Settings) -> EngineLimits:
    """Engine limits of served queries: values and whole results capped for an HTTP response."""
    return EngineLimits(max_cell_chars=settings.serve_max_cell_chars,
                        max_result_bytes=settings.serve_max_response_bytes)


class DatabasePool:
    def __init__(self, spec: DatabaseSpec, size: int, postgres_dsn: str | None,
                 limits: EngineLimits | None = None) -> None:
        self.spec = spec
        self.size = size
        self.limits = limits
        self._dsn = spec.location or postgres_dsn or ""
        if spec.engine == "postgres" and not self._dsn:
            raise ConfigError(f"served database {spec.name!r} is on PostgreSQL but no DSN is configured: set "
                              "T2S_POSTGRES_DSN or give postgres:DSN in T2S_SERVE_DATABASES",
                              field="serve_databases")
        self._idle: queue.LifoQueue[Target] = queue.LifoQueue()
        self._created = 0
        self._lock = threading.Lock()
        self._all: list[Target] = []
        self.schema_target = self._open()

    def _open(self) -> Target:
        if self.spec.engine == "postgres":
            target = open_target("postgres", self._dsn, schema=self.spec.schema, limits=self.limits)
        else:
            target = open_target(self.spec.engine, self.spec.location, limits=self.limits)
        with self._lock:
            self._all.append(target)
        return target

    @property
    def dialect(self) -> str:
        return self.schema_target.dialect

    @contextmanager
    def target(self) -> Iterator[Target]:
        """Borrow a target (opening one while fewer than ``size`` exist, else waiting for one, within the
        request's deadline when there is one)."""
        try:
            t = self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                grow = self._created < self.size
                if grow:
                    self._created += 1
            t = self._open() if grow else self._wait()
        try:
            yield t
        finally:
            self._idle.put(t)

    def _wait(self) -> Target:
        budget = deadline.current()
        try:
            return self._idle.get(timeout=None if budget is None else max(0.0, budget.remaining()))
        except queue.Empty:
            raise DeadlineExceeded(f"every connection to {self.spec.name!r} stayed busy until the request's "
                                   "deadline") from None

    def check(self) -> None:
        """Raise unless a trivial query runs (readiness)."""
        with self.target() as t:
            t.execute("SELECT 1", timeout_s=5, max_rows=1)

    def close(self) -> None:
        with self._lock:
            targets, self._all = self._all, []
        for t in targets:
            t.close()


class Databases:
    """Every database requests may name, by name."""

    def __init__(self, specs: dict[str, str], pool_size: int, postgres_dsn: str | None,
                 limits: EngineLimits | None = None) -> None:
        self.pools: dict[str, DatabasePool] = {}
        try:
            for name, spec in specs.items():
                self.pools[name] = DatabasePool(parse_database(name, spec), pool_size, postgres_dsn, limits)
        except Exception:
            self.close()
            raise

    def get(self, name: str) -> DatabasePool | None:
        return self.pools.get(name)

    @property
    def names(self) -> list[str]:
        return sorted(self.pools)

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
