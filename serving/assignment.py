"""Sticky A/B assignment: hash(salt, user id) → bucket → variant.

A user's bucket is ``sha256(salt + "\\0" + user_id)`` read as a number modulo :data:`BUCKETS`; variants own
consecutive bucket ranges sized by their weights, in config order. The bucket depends only on the salt
and the user id, so every worker process, restart and replica assigns the same user to the same variant
without sharing any state. Because the ranges are cumulative, changing weights moves only the users whose
bucket crosses a boundary: 50/50 → 60/40 moves the 10% of buckets in [5000, 6000), not half of everyone.
A new salt reshuffles everyone (use it to start a fresh experiment).

Requests without a user id are assigned at random, in the same proportions, and flagged
(``random_assignment``) so the report keeps them out of the per-user analysis.

Every assignment carries the **epoch** of the split it was made under (:func:`split_epoch`): a hash of
the salt, the bucket ranges and the stopped variant. Any process computes the same epoch for the same
split without coordination; 50/50 → 60/40, or stopping on one variant, starts a new epoch, and going back
to an earlier split returns to that split's epoch (the same users get the same variants again). The
report checks each epoch's users against that epoch's split, because after 50/50 → 60/40 the users of the
second period follow 60/40 while those of the first followed 50/50.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

BUCKETS = 10_000


@dataclass(frozen=True)
class Assignment:
    variant: str
    bucket: int | None  # None for random assignment
    random_assignment: bool
    epoch: str = ""  # the split it was made under (split_epoch)


def bucket_of(salt: str, user_id: str) -> int:
    """The user's bucket in ``[0, BUCKETS)``: deterministic and uniform over users."""
    digest = hashlib.sha256(f"{salt}\0{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def bucket_ranges(weights: Sequence[tuple[str, float]]) -> list[tuple[str, int, int]]:
    """``(variant, start, end)`` with ``end`` exclusive: consecutive ranges proportional to the weights.

    Boundaries are rounded from the cumulative weight share, so they move only as far as the weights do.
    """
    total = float(sum(w for _, w in weights))
    if not weights or total <= 0:
        raise ValueError("an experiment needs at least one variant with a positive weight")
    out: list[tuple[str, int, int]] = []
    cumulative = 0.0
    start = 0
    for i, (name, weight) in enumerate(weights):
        cumulative += weight
        end = BUCKETS if i == len(weights) - 1 else round(BUCKETS * cumulative / total)
        out.append((name, start, end))
        start = end
    return out


def split_shares(weights: Sequence[tuple[str, float]], stopped_variant: str | None = None) -> dict[str, float]:
    """The share of users each variant gets under this split: its bucket range / BUCKETS (exact, after the
    rounding of :func:`bucket_ranges`), or everything for the stopped variant."""
    if stopped_variant is not None:
        return {name: float(name == stopped_variant) for name, _ in weights}
    return {name: (end - start) / BUCKETS for name, start, end in bucket_ranges(weights)}


def split_epoch(salt: str, weights: Sequence[tuple[str, float]], stopped_variant: str | None = None) -> str:
    """The epoch id of a split: 12 hex digits of sha256 over the salt, the bucket ranges and the stopped
    variant (weights that give the same ranges, 1:1 and 50:50, are the same split)."""
    return _epoch(salt, tuple((str(n), float(w)) for n, w in weights), stopped_variant)


@lru_cache(maxsize=64)
def _epoch(salt: str, weights: tuple[tuple[str, float], ...], stopped_variant: str | None) -> str:
    payload = json.dumps({"salt": salt, "ranges": bucket_ranges(weights), "stopped": stopped_variant})
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def variant_for_bucket(bucket: int, ranges: Sequence[tuple[str, int, int]]) -> str:
    for name, start, end in ranges:
        if start <= bucket < end:
            return name
    return ranges[-1][0]


def assign(salt: str, weights: Sequence[tuple[str, float]], user_id: str | None, *,
           stopped_variant: str | None = None, rng: random.Random | None = None) -> Assignment:
    """The variant for one request.

    ``stopped_variant`` (an experiment stopped on one variant) sends everyone there; the bucket is still
    computed for users, so resuming restores their previous variant.
    """
    ranges = bucket_ranges(weights)
    epoch = split_epoch(salt, weights, stopped_variant)
    if user_id is None or user_id == "":
        bucket = (rng or random).randrange(BUCKETS)
        name = stopped_variant or variant_for_bucket(bucket, ranges)
        return Assignment(name, None, True, epoch)
    bucket = bucket_of(salt, user_id)
    return Assignment(stopped_variant or variant_for_bucket(bucket, ranges), bucket, False, epoch)
