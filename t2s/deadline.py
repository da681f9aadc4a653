"""One deadline per served request, shared by every model call and SQL execution the request makes.

A request's work is spread over layers that know nothing of requests: the generator's strategy (several
model calls, candidate executions, repairs), the LLM client's retries, the SQL sandbox. Serving opens a
:class:`Budget` around the request (:func:`request_budget`, a context variable of the request's thread)
and those layers consult it:

- :meth:`t2s.llm.LLMClient.complete` gives each HTTP attempt at most what is left, and gives up instead of
  sleeping past the deadline before a retry;
- :meth:`t2s.execution.Target.execute` runs each query with ``min(its timeout, what is left)``, so the
  strategy's candidates and the final execution share one budget, and a worker is stopped at the deadline
  at the latest; it also takes one of the principal's SQL worker slots (:class:`PrincipalShares`) first,
  waiting for it only within the deadline.

Past the deadline they raise :class:`~t2s.errors.DeadlineExceeded` (outcome ``timeout``). Without a budget
(evaluation, the CLI) nothing changes.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar

from t2s.errors import DeadlineExceeded

_BUDGET: ContextVar[Budget | None] = ContextVar("t2s_request_budget", default=None)


class PrincipalShares:
    """At most ``limit`` SQL workers held at once by one principal (in this process); others wait.

    Waiting is bounded by the waiter's own deadline. Fair share matters because the sandbox has few
    workers: without it, one caller's runaway queries hold all of them and everyone else queues.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._held: dict[str, int] = {}
        self._cond = threading.Condition()

    def acquire(self, principal: str, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        with self._cond:
            while self._held.get(principal, 0) >= self.limit:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            self._held[principal] = self._held.get(principal, 0) + 1
            return True

    def release(self, principal: str) -> None:
        with self._cond:
            left = self._held.get(principal, 0) - 1
            if left > 0:
                self._held[principal] = left
            else:
                self._held.pop(principal, None)
            self._cond.notify_all()

    def held(self, principal: str) -> int:
        with self._cond:
            return self._held.get(principal, 0)


class Budget:
    """What is left of one request's deadline, and whose request it is."""

    def __init__(self, seconds: float, principal: str = "", shares: PrincipalShares | None = None) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.principal = principal
        self.shares = shares
        self._slots = 0  # SQL worker slots this request holds (nested executions reuse the outer one)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def left_for(self, what: str, reserve_s: float = 0.0) -> float:
        """Seconds left beyond ``reserve_s``; raise :class:`DeadlineExceeded` when none are."""
        left = self.remaining() - reserve_s
        if left <= 0.0:
            raise DeadlineExceeded(f"the request's deadline ({self.seconds:g} s) passed before {what}")
        return left

    @contextlib.contextmanager
    def sql_slot(self) -> Iterator[None]:
        """Hold one of the principal's SQL worker slots (waiting within the deadline)."""
        if self.shares is None or self._slots:
            self._slots += 1
            try:
                yield
            finally:
                self._slots -= 1
            return
        if not self.shares.acquire(self.principal, max(0.0, self.remaining())):
            raise DeadlineExceeded(
                f"the request's deadline ({self.seconds:g} s) passed while the caller's other queries held its "
                f"{self.shares.limit} SQL worker(s) (T2S_SERVE_SQL_WORKERS_PER_PRINCIPAL)")
        self._slots = 1
        try:
            yield
        finally:
            self._slots = 0
            self.shares.release(self.principal)


def current() -> Budget | None:
    """The budget of the request this thread is serving, if any."""
    return _BUDGET.get()


@contextlib.contextmanager
def request_budget(seconds: float, principal: str = "", shares: PrincipalShares | None = None
                   ) -> Iterator[Budget]:
    budget = Budget(seconds, principal, shares)
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)
