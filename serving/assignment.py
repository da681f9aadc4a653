"""Sticky A/B assignment: hash(salt, user id) → bucket → variant.

A user's bucket is ``sha256(salt + "\\0" + user_id)`` read as a number modulo :data:`BUCKETS`; variants own
consecutive bucket ranges sized by their weights, in config order. The bucket depends only on the salt
and the user id, so every worker process, restart and replica assigns the same user to the same variant
without sharing any state. Because the ranges are cumulative, changing weights moves only the users whose
bucket crosses a boundary: 50/50 → 60/40 moves the 10% of buckets in [5000, 6000), not half of everyone.
A new salt reshuffles everyone (use it to start a fresh experiment).

Requests without a user id are assigned at random, in the same proportions, and flagged
(``random_assignment``) so the report keeps them out of the per-user analysis.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

BUCKETS = 10_000


@dataclass(frozen=True)
class Assignment:
    variant: str
    bucket: int | None  # None for random assignment
    random_assignment: bool


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
    if user_id is None or user_id == "":
        bucket = (rng or random).randrange(BUCKETS)
        name = stopped_variant or variant_for_bucket(bucket, ranges)
        return Assignment(name, None, True)
    bucket = bucket_of(salt, user_id)
    return Assignment(stopped_variant or variant_for_bucket(bucket, ranges), bucket, False)
