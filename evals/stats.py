"""Paired comparison of two variants evaluated on the same golden items.

Both variants answer the same questions, so their verdicts are paired: the right tests look only at the
items where they disagree. :func:`mcnemar_exact` is the exact McNemar test on those discordant items and
:func:`paired_bootstrap` gives an interval for the accuracy difference by resampling items (both verdicts of
an item travel together). :func:`compare_runs` applies both overall and per bucket (difficulty by default).

Both come from the well-kept libraries rather than hand-written numerics: the McNemar tail is
``statsmodels``' exact test (a binomial CDF from scipy) and the interval is ``scipy.stats.bootstrap`` in its
paired, percentile form. Both are imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from evals.records import EvalItem, VariantRun
from t2s.datasets import DIFFICULTIES

__all__ = ["BucketComparison", "Comparison", "bucket_order", "compare_runs", "mcnemar_exact", "paired_bootstrap"]

_CHUNK_CELLS = 2_000_000  # resampled items per batch (bounds the bootstrap's memory at a few tens of MB)


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
    if b + c == 0:
        return 1.0
    from statsmodels.stats.contingency_tables import mcnemar

    # Only the discordant cells enter the exact test; the diagonal is irrelevant.
    return float(mcnemar([[0, int(b)], [int(c), 0]], exact=True).pvalue)


def paired_bootstrap(challenger: Sequence[bool], champion: Sequence[bool], *, n_resamples: int = 10_000,
                     confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Accuracy difference (challenger − champion) and its percentile bootstrap interval.

    Each resample draws item indices with replacement and keeps both verdicts of an item together (a paired
    bootstrap, ``scipy.stats.bootstrap(paired=True)``). Returns ``(diff, ci_low, ci_high)``; deterministic for
    a given ``seed``.
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

    diff = (int(a.sum()) - int(z.sum())) / n
    if not np.any(a != z):  # identical verdicts: every resample is 0 (scipy would warn of degenerate data)
        return diff, 0.0, 0.0
    if n == 1:  # every resample is the one item (scipy needs two observations to resample)
        return diff, diff, diff

    from scipy.stats import bootstrap

    def accuracy_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return x.mean(axis=axis) - y.mean(axis=axis)

    res = bootstrap((a.astype(np.float64), z.astype(np.float64)), accuracy_diff, paired=True, vectorized=True,
                    n_resamples=n_resamples, batch=max(1, _CHUNK_CELLS // n), confidence_level=confidence,
                    method="percentile", rng=np.random.default_rng(seed))
    return diff, float(res.confidence_interval.low), float(res.confidence_interval.high)


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
