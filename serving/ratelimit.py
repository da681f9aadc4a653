"""Per-principal rate limits (the ``limits`` library, moving window), shared by replicas through Redis.

Two limits: ``T2S_SERVE_RATE_LIMIT`` (default 10/minute) on generation (``POST /v1/sql``: each call costs
a model call) and ``T2S_SERVE_RATE_LIMIT_OTHER`` on the other authenticated calls. The key is the
principal's id (``jwt:<sub>``, ``key:<name>``) plus the limit's scope. A third,
``T2S_SERVE_READY_RATE_LIMIT``, counts ``/health/ready`` probes without admin credentials per client
address (``addr:<ip>``). With ``T2S_SERVE_AUTH=none``
(loopback development, demos, benchmarks) there is no principal to count and no limit is applied.

Storage is in process memory unless ``T2S_SERVE_REDIS_URL`` (or ``T2S_REDIS_URL``) is set; then every
worker and replica counts in the same Redis, so a caller gets the limit once, not once per replica.

**Redis down** (policy ``T2S_SERVE_RATE_LIMIT_ON_REDIS_ERROR``): ``local`` (default) falls back to the
in-memory limiter of each process — limits stay enforced, only looser (× the number of processes), and
users keep being served, since an unreachable Redis is our fault, not theirs; ``closed`` answers 503 instead
(for deployments where an unmetered model bill is worse than downtime). Either way ``/health/ready`` says
``degraded`` with the error, and the limiter retries Redis after ``RETRY_S``. Redis calls carry 0.5 s socket
timeouts, so an unreachable (not refusing) Redis cannot hold a request.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from t2s.errors import ConfigError, Text2SQLError
from t2s.settings import Settings

RETRY_S = 5.0
SCOPES = ("generate", "other", "ready")


class RateLimited(Text2SQLError):
    """Too many calls by this principal (HTTP 429 with ``Retry-After``)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class LimiterUnavailable(Text2SQLError):
    """Redis is unreachable and the policy is ``closed`` (HTTP 503)."""


@dataclass
class LimiterStatus:
    backend: str  # memory | redis
    status: str  # ok | degraded | error
    detail: str | None = None


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        from limits import parse
        from limits.storage import storage_from_string
        from limits.strategies import MovingWindowRateLimiter

        try:
            self.items = {"generate": parse(settings.serve_rate_limit), "other": parse(settings.serve_rate_limit_other),
                          "ready": parse(settings.serve_ready_rate_limit)}
        except ValueError as exc:
            raise ConfigError(f"rate limit: {exc} (write e.g. '10/minute' or '5 per second')",
                              field="serve_rate_limit") from None
        self.policy = settings.serve_rate_limit_on_redis_error
        self._local = MovingWindowRateLimiter(storage_from_string("memory://"))
        self._shared: Any = None
        self.backend = "memory"
        if settings.serve_redis_url:
            options: dict[str, Any] = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
            if settings.serve_redis_password is not None:
                options["password"] = settings.serve_redis_password.get_secret_value()
            self._shared = MovingWindowRateLimiter(storage_from_string(settings.serve_redis_url, **options))
            self.backend = "redis"
        self._down_since: float | None = None
        self._last_error: str | None = None
        self._lock = threading.Lock()

    def _limiter(self) -> Any:
        """The shared limiter unless Redis failed less than RETRY_S ago."""
        if self._shared is None:
            return self._local
        down = self._down_since
        if down is not None and time.monotonic() - down < RETRY_S:
            if self.policy == "closed":
                raise LimiterUnavailable(f"rate-limit storage (Redis) is unreachable: {self._last_error}; retry later")
            return self._local
        return self._shared

    def hit(self, principal_id: str, scope: str) -> None:
        """Count one call; :class:`RateLimited` when over the limit."""
        item = self.items[scope]
        limiter = self._limiter()
        try:
            allowed = limiter.hit(item, scope, principal_id)
            if limiter is self._shared and self._down_since is not None:
                with self._lock:
                    self._down_since, self._last_error = None, None
        except Exception as exc:  # redis-py ConnectionError/TimeoutError; limits does not wrap them
            if limiter is not self._shared:
                raise
            with self._lock:
                self._down_since, self._last_error = time.monotonic(), f"{type(exc).__name__}: {exc}"
            if self.policy == "closed":
                raise LimiterUnavailable(f"rate-limit storage (Redis) is unreachable: {self._last_error}; "
                                         "retry later") from None
            limiter = self._local
            allowed = limiter.hit(item, scope, principal_id)
        if not allowed:
            stats = limiter.get_window_stats(item, scope, principal_id)
            retry = max(1, math.ceil(stats.reset_time - time.time()))
            raise RateLimited(f"rate limit {item} exceeded for {principal_id}; retry in {retry} s", retry)

    def status(self) -> LimiterStatus:
        if self._shared is None:
            return LimiterStatus("memory", "ok", "per process")
        if self._down_since is not None:
            fallback = "503 (policy closed)" if self.policy == "closed" else "per-process memory limits"
            return LimiterStatus("redis", "degraded", f"Redis unreachable ({self._last_error}); serving with {fallback}")
        return LimiterStatus("redis", "ok", "shared by all replicas")

    def check(self) -> LimiterStatus:
        """Probe Redis now (readiness); updates the fallback state."""
        if self._shared is not None:
            try:
                ok = self._shared.storage.check()
            except Exception:
                ok = False
            with self._lock:
                if ok:
                    self._down_since, self._last_error = None, None
                elif self._down_since is None:
                    self._down_since, self._last_error = time.monotonic(), "PING failed"
        return self.status()
