"""``t2s score``: score a predictions file against a dataset."""

from __future__ import annotations


def score() -> None:
    """Score predictions (not implemented yet)."""
