"""Paired comparison of two variants evaluated on the same golden items.

Both variants answer the same questions, so their verdicts are paired: the right tests look only at the
items where they disagree. :func:`mcnemar_exact` is the exact McNemar test on those discordant items and
:func:`paired_bootstrap` gives an interval for the accuracy difference by resampling items (both verdicts of
an item travel together). :func:`compare_runs` applies both overall and per bucket (difficulty by default).

No scipy here: the binomial tail is summed exactly with integers for moderate ``n`` and in log space beyond.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from evals.records import EvalItem, VariantRun
from t2s.datasets import DIFFICULTIES

__all__ = ["BucketComparison", "Comparison", "bucket_order", "compare_runs", "mcnemar_exact", "paired_bootstrap"]

_EXACT_MAX_N = 20_000  # up to here the tail is an exact integer sum; beyond, a log-space series
_CHUNK_CELLS = 2_000_000  # resample indices drawn per chunk (bounds memory at ~16 MB)


def _binom_half_cdf(k: int, n: int) -> float:
    """P[X <= k] for X ~ Bin(n, 1/2)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if n <= _EXACT_MAX_N:
        term, total = 1, 1  # C(n, 0)
        for j in range(1, k + 1):
            term = term * (n - j + 1) // j
            total += term
        return total / (1 << n)  # int / int is correctly rounded, even for huge ints
    # Log space: start at the largest term C(n, k)/2^n and walk down; ratios C(n, j-1)/C(n, j) = j/(n-j+1).
    log_top = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2.0)
    total, term = 1.0, 1.0
    for j in range(k, 0, -1):
        term *= j / (n - j + 1)
        total += term
        if term < total * 1e-17:
            break
    return min(1.0, math.exp(log_top + math.log(total)))


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value.

    ``b``: items the challenger gets right and the champion wrong; ``c``: the reverse. Under the null
    hypothesis each discordant item is a fair coin, so p = min(1, 2·P[X <= min(b, c)]) with
    X ~ Bin(b + c, 1/2), and p = 1 when there are no discordant items.
    """
    for name, value in (("b", b), ("c", c)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an integer count, got {value!r}")
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    b, c = int(b), int(c)
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * _binom_half_cdf(min(b, c), n))


def paired_bootstrap(challenger: Sequence[bool], champion: Sequence[bool], *, n_resamples: int = 10_000,
                     confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Accuracy difference (challenger − champion) and its percentile bootstrap interval.

    Each resample draws item indices with replacement and keeps both verdicts of an item together (a paired
    bootstrap). Returns ``(diff, ci_low, ci_high)``; deterministic for a given ``seed``.
    """
    a = np.asarray(challenger, dtype=bool)
    z = np.asarray(champion, dtype=bool)
    if a.ndim != 1 or z.ndim != 1:
        raise ValueError("challenger and champion must be flat sequences of verdicts")
    if a.shape != z.shape:
        raise ValueError(f"paired verdicts must have the same length: {a.size} vs {z.size}")
    n = a.size
    if n == 0:
        raise ValueError("cannot bootstrap an empty set of items")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")

    d = a.astype(np.int8) - z.astype(np.int8)  # +1, 0 or −1 per item
    diff = int(d.sum()) / n
    if not d.any():  # identical verdicts: every resample is 0
        return diff, 0.0, 0.0

    rng = np.random.default_rng(seed)
    sums = np.empty(n_resamples, dtype=np.int64)
    rows = max(1, _CHUNK_CELLS // n)
    index_dtype = np.int32 if n < 2**31 else np.int64
    for start in range(0, n_resamples, rows):
        stop = min(n_resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n), dtype=index_dtype)
        sums[start:stop] = d[idx].sum(axis=1, dtype=np.int64)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(sums / n, [tail, 1.0 - tail])
    return diff, float(low), float(high)


@dataclass
class BucketComparison:
    """Challenger vs champion on one set of paired items (all of them, or one bucket)."""

    bucket: str
    n: int
    challenger_acc: float
    champion_acc: float
    diff: float  # challenger − champion, absolute accuracy
    ci_low: float
    ci_high: float
    b: int  # challenger right, champion wrong
    c: int  # champion right, challenger wrong
    p_value: float  # exact McNemar

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Comparison:
    challenger: str
    champion: str
    by: str
    confidence: float
    overall: BucketComparison
    buckets: dict[str, BucketComparison]

    def to_dict(self) -> dict[str, Any]:
        return {"challenger": self.challenger, "champion": self.champion, "by": self.by,
                "confidence": self.confidence, "overall": self.overall.to_dict(),
                "buckets": {k: v.to_dict() for k, v in self.buckets.items()}}


def _compare(bucket: str, pairs: list[tuple[EvalItem, EvalItem]], bootstrap_kwargs: dict[str, Any]) -> BucketComparison:
    a = [x.match for x, _ in pairs]
    z = [y.match for _, y in pairs]
    n = len(pairs)
    b = sum(1 for x, y in zip(a, z, strict=True) if x and not y)
    c = sum(1 for x, y in zip(a, z, strict=True) if y and not x)
    diff, low, high = paired_bootstrap(a, z, **bootstrap_kwargs)
    return BucketComparison(bucket=bucket, n=n, challenger_acc=sum(a) / n, champion_acc=sum(z) / n, diff=diff,
                            ci_low=low, ci_high=high, b=b, c=c, p_value=mcnemar_exact(b, c))


def _index(run: VariantRun, side: str) -> dict[str, EvalItem]:
    out: dict[str, EvalItem] = {}
    for item in run.items:
        if item.id in out:
            raise ValueError(f"{side} run {run.variant!r} has duplicate item id {item.id!r}")
        out[item.id] = item
    return out


def bucket_order(keys: set[str], by: str) -> list[str]:
    """Difficulties in their natural order (easy, medium, hard, extra), then any others sorted."""
    known = [k for k in DIFFICULTIES if k in keys] if by == "difficulty" else []
    return known + sorted(keys - set(known))


def compare_runs(challenger: VariantRun, champion: VariantRun, *, by: str = "difficulty",
                 **bootstrap_kwargs: Any) -> Comparison:
    """Paired comparison, overall and per bucket of the item attribute ``by`` (``difficulty``,
    ``category``, ``db_id`` …). Items are paired by ``id``; both runs must hold the same ids.

    ``bootstrap_kwargs`` go to :func:`paired_bootstrap` (``n_resamples``, ``confidence``, ``seed``).
    """
    if by not in EvalItem.model_fields:
        raise ValueError(f"unknown item attribute {by!r} to bucket by")
    ours, theirs = _index(challenger, "challenger"), _index(champion, "champion")
    if ours.keys() != theirs.keys():
        missing_champ = sorted(ours.keys() - theirs.keys())
        missing_chall = sorted(theirs.keys() - ours.keys())
        example = (missing_champ or missing_chall)[:3]
        raise ValueError(
            f"cannot compare {challenger.variant!r} with {champion.variant!r}: they were not evaluated on the "
            f"same items ({len(missing_chall)} ids missing from the challenger, {len(missing_champ)} missing "
            f"from the champion, e.g. {', '.join(map(repr, example))}); evaluate both on the same dataset "
            "version")
    if not ours:
        raise ValueError(f"cannot compare {challenger.variant!r} with {champion.variant!r}: no items")
    pairs = [(ours[i], theirs[i]) for i in sorted(ours)]  # sorted: results do not depend on item order
    groups: dict[str, list[tuple[EvalItem, EvalItem]]] = {}
    for x, y in pairs:
        groups.setdefault(str(getattr(x, by)), []).append((x, y))
    confidence = float(bootstrap_kwargs.get("confidence", 0.95))
    return Comparison(
        challenger=challenger.variant, champion=champion.variant, by=by, confidence=confidence,
        overall=_compare("overall", pairs, bootstrap_kwargs),
        buckets={k: _compare(k, groups[k], bootstrap_kwargs) for k in bucket_order(set(groups), by)},
    )
