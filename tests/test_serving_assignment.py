"""Sticky assignment by simulation, and the experiment file's checks."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from pathlib import Path

import pytest

from serving.assignment import BUCKETS, assign, bucket_of, bucket_ranges
from serving.config import DEFAULT_EXPERIMENT, load_experiment
from t2s.errors import ConfigError

USERS = [f"user-{i}" for i in range(20_000)]


def shares(weights: list[tuple[str, float]], salt: str = "s1") -> dict[str, float]:
    counts = Counter(assign(salt, weights, u).variant for u in USERS)
    return {k: v / len(USERS) for k, v in counts.items()}


@pytest.mark.parametrize("weights", [[("a", 50), ("b", 50)], [("a", 90), ("b", 10)],
                                     [("a", 1), ("b", 1), ("c", 2)]])
def test_assignment_proportions_follow_the_weights(weights: list[tuple[str, float]]) -> None:
    total = sum(w for _, w in weights)
    got = shares(weights)
    for name, w in weights:
        # 20,000 users: the binomial standard deviation is at most 0.35 points; allow ~4 of them
        assert abs(got.get(name, 0.0) - w / total) < 0.015, (name, got)


def test_same_user_same_variant_and_a_new_salt_reshuffles() -> None:
    weights = [("champion", 50), ("challenger", 50)]
    first = [assign("s1", weights, u).variant for u in USERS[:2000]]
    assert first == [assign("s1", weights, u).variant for u in USERS[:2000]]
    other = [assign("s2", weights, u).variant for u in USERS[:2000]]
    changed = sum(a != b for a, b in zip(first, other, strict=True)) / 2000
    assert 0.4 < changed < 0.6  # independent salts: about half the users land elsewhere


def test_weight_change_moves_only_the_users_it_must() -> None:
    before = {u: assign("s1", [("champion", 50), ("challenger", 50)], u).variant for u in USERS}
    after = {u: assign("s1", [("champion", 60), ("challenger", 40)], u).variant for u in USERS}
    moved = [u for u in USERS if before[u] != after[u]]
    print(f"50/50 -> 60/40 moved {len(moved) / len(USERS):.1%} of users")
    assert abs(len(moved) / len(USERS) - 0.10) < 0.015
    assert all(before[u] == "challenger" and after[u] == "champion" for u in moved)


def test_ranges_cover_every_bucket_once() -> None:
    ranges = bucket_ranges([("a", 1), ("b", 2), ("c", 3.5)])
    assert ranges[0][1] == 0 and ranges[-1][2] == BUCKETS
    assert all(r1[2] == r2[1] for r1, r2 in itertools.pairwise(ranges))
    assert 0 <= bucket_of("salt", "anyone") < BUCKETS
    with pytest.raises(ValueError):
        bucket_ranges([])


def test_no_user_id_is_random_and_flagged_and_stop_sends_everyone_to_one_variant() -> None:
    weights = [("champion", 50), ("challenger", 50)]
    rng = random.Random(7)
    anon = [assign("s1", weights, None, rng=rng) for _ in range(4000)]
    assert all(a.random_assignment and a.bucket is None for a in anon)
    assert abs(sum(a.variant == "champion" for a in anon) / 4000 - 0.5) < 0.04
    assert not assign("s1", weights, "ann").random_assignment
    assert {assign("s1", weights, u, stopped_variant="champion").variant for u in USERS[:500]} == {"champion"}
    # stopping does not forget: the bucket is unchanged, so resuming restores each user's variant
    assert [assign("s1", weights, u, stopped_variant="champion").bucket for u in USERS[:50]] == \
        [assign("s1", weights, u).bucket for u in USERS[:50]]


def test_experiment_file_errors_name_the_problem(tmp_path: Path) -> None:
    assert load_experiment(tmp_path / "missing.yaml") == DEFAULT_EXPERIMENT
    good = "name: ab\nsalt: x\nvariants:\n  - {name: champion, alias: champion, weight: 1}\n"
    (tmp_path / "good.yaml").write_text(good)
    exp = load_experiment(tmp_path / "good.yaml")
    assert exp.control == "champion" and exp.weights == [("champion", 1.0)]
    cases = {
        "name: ab\nsalt: x\nvariants:\n  - {name: a, alias: champion, version: 2, weight: 1}\n": "exactly one of",
        "name: ab\nsalt: x\nvariants:\n  - {name: a, weight: 1}\n": "exactly one of",
        "name: ab\nsalt: x\nvariants:\n  - {name: a, alias: c, weight: 1}\n  - {name: a, alias: d, weight: 1}\n":
            "duplicate variant names: a",
        "name: ab\nsalt: x\ncontrol: zz\nvariants:\n  - {name: a, alias: c, weight: 1}\n": "control 'zz'",
        "name: ab\nsalt: x\nvariants:\n  - {name: a, alias: c, weight: 0}\n": "greater than 0",
        "name: ab\nsalt: x\nvariants: []\n": "at least 1",
        "name: ab\nvariants:\n  - {name: a, alias: c, weight: 1}\n": "salt",
        "name: ab\nsalt: x\nvariants:\n  - {name: a, alias: c, weight: 1, colour: red}\n": "colour",
        "name: [unclosed\n": "bad.yaml",
    }
    for text, message in cases.items():
        (tmp_path / "bad.yaml").write_text(text)
        with pytest.raises(ConfigError) as info:
            load_experiment(tmp_path / "bad.yaml")
        assert message in str(info.value) or message in (info.value.field or ""), (text, str(info.value))
