"""The time each model call took, kept so that an answer served from the completion cache keeps its real cost.

The completion cache makes a rerun free, but a cached call returns in microseconds: an evaluation served from
the cache would report every version as instant, and the serving budget (:mod:`evals.budget`) would pass
anything. :class:`TimedCalls` wraps the evaluation's model client: each call the model answers is recorded
(key: model, messages, parameters, sample index — what the completion cache keys on) with its latency, in a
:class:`~t2s.result_store.ResultStore` table beside the executed candidates; a call the cache answers is
looked up. Per question (the calls of one ``generate`` run in one worker thread), :meth:`TimedCalls.answer_latency`
turns the generation's wall time into the time it would have taken without the cache: the lookups are
replaced by the recorded times, or the answer has no measured latency (None) when one was never recorded.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from t2s.result_store import ResultStore, store_key

__all__ = ["TimedCalls"]


class _Tally(threading.local):
    def __init__(self) -> None:
        self.extra_s = 0.0  # recorded time minus lookup time, over the cached calls
        self.unknown = False  # a cached call whose time was never recorded


class TimedCalls:
    """A model client that remembers call times; everything else is the wrapped client's."""

    def __init__(self, llm: Any, store: ResultStore) -> None:
        self._llm = llm
        self._store = store
        self._tally = _Tally()
        if hasattr(llm, "complete_samples"):  # the generator samples in one call only when the client can
            self.complete_samples = self._complete_samples

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)

    def _key(self, messages: list[Any], params: Any, n: int) -> str:
        blob = json.dumps({"messages": messages, "params": params.as_dict() if params is not None else None},
                          sort_keys=True, ensure_ascii=False)
        return store_key("call", getattr(self._llm, "model", ""), blob, n)

    def _account(self, key: str, completions: list[Any]) -> None:
        for i, c in enumerate(completions):
            k = f"{key}:{i}"
            if not c.cached:
                self._store.put(k, float(c.latency_s))
                continue
            recorded = self._store.get(k)
            if recorded is None:
                self._tally.unknown = True
            else:
                self._tally.extra_s += float(recorded) - float(c.latency_s)

    def complete(self, messages: list[Any], params: Any = None) -> Any:
        completion = self._llm.complete(messages, params)
        self._account(self._key(messages, params, 1), [completion])
        return completion

    def _complete_samples(self, messages: list[Any], params: Any, n: int) -> list[Any]:
        completions = self._llm.complete_samples(messages, params, n)
        self._account(self._key(messages, params, n), list(completions))
        return completions

    def close_times(self) -> None:
        """Close the store of call times (the wrapped client stays open: its owner closes it)."""
        self._store.close()

    def answer_latency(self, wall_s: float) -> float | None:
        """The latency of the answer this thread just generated, had no call been cached; resets the tally."""
        tally = self._tally
        latency = None if tally.unknown else wall_s + tally.extra_s
        tally.extra_s, tally.unknown = 0.0, False
        return latency
