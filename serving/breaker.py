"""A circuit breaker on each model endpoint, and the answers it may serve while open.

States: **closed** (calls pass; ``failures`` consecutive model failures — unreachable, timeout, 5xx after
the client's retries — open it), **open** (calls are refused at once for ``reset_s``: the service answers
503 with ``Retry-After``, or the cached answer to an identical question marked ``cached``), **half-open**
(after ``reset_s`` exactly one probe call goes through; success closes the circuit, failure opens it for
another ``reset_s``). Fast refusal is the point: a dead endpoint otherwise holds a worker thread for the
client's whole timeout and retries on every request.

Small and thread-safe; no library fitted both the half-open single probe and exposing the state to
readiness and metrics without wrapping the call itself.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(self, failures: int, reset_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = failures
        self.reset_s = reset_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self.opened_count = 0

    @property
    def state(self) -> State:
        with self._lock:
            return self._state()

    def _state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """May a call go through now? In half-open state only one caller (the probe) gets True."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return True
            if state == "half_open" and not self._probing:
                self._probing = True
                return True
            return False

    def retry_after_s(self) -> int:
        with self._lock:
            if self._opened_at is None:
                return 0
            return max(1, int(self.reset_s - (self._clock() - self._opened_at) + 0.999))

    def success(self) -> None:
        with self._lock:
            self._failures, self._opened_at, self._probing = 0, None, False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._probing or (self._opened_at is None and self._failures >= self.threshold):
                if self._opened_at is None:
                    self.opened_count += 1
                self._opened_at = self._clock()
            self._probing = False

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"state": self._state(), "consecutive_failures": self._failures, "times_opened": self.opened_count}


class AnswerCache:
    """The last answers (SQL and rows) per (variant, database, question): served only while a circuit is open."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str, str, bool], Any] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: tuple[str, str, str, bool], value: Any) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def get(self, key: tuple[str, str, str, bool]) -> Any:
        with self._lock:
            return self._items.get(key)
