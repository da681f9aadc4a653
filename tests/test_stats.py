"""Paired statistics: exact McNemar (scipy as the oracle), paired bootstrap, compare_runs."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from evals.records import EvalItem, VariantRun
from evals.stats import compare_runs, mcnemar_exact, paired_bootstrap


def make_run(variant: str, verdicts: dict[str, bool], difficulty: dict[str, str] | None = None) -> VariantRun:
    items = [EvalItem(id=k, question=f"q {k}", db_id="shop", difficulty=(difficulty or {}).get(k, "easy"),
                      category="filter", gold_sql="SELECT 1", pred_sql="SELECT 1" if ok else "SELECT 2",
                      match=ok, error_class=None if ok else "wrong_result", exact_match=ok, valid_sql=True)
             for k, ok in verdicts.items()]
    return VariantRun(variant=variant, prompt="p@1", prompt_name="p", prompt_version=1, model="m", provider="fake",
                      dataset="shop", dataset_version="v1", rules="t2s", metrics={}, items=items)


GRID = sorted({*range(0, 12), 15, 20, 37, 60, 100, 250, 1000, 3000})


@pytest.mark.parametrize("b", GRID)
def test_mcnemar_matches_scipy_binomtest(b: int) -> None:
    for c in GRID:
        expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
        assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300), (b, c)


@pytest.mark.parametrize(("b", "c"), [(30_000, 30_500), (25_000, 24_000), (10_000, 40_000), (100_000, 100_000)])
def test_mcnemar_large_n_log_space(b: int, c: int) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-8, abs=1e-300)


def test_mcnemar_edges() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 1) == 1.0
    assert mcnemar_exact(0, 10) == pytest.approx(2 / 1024)
    assert mcnemar_exact(3, 7) == mcnemar_exact(7, 3)
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)
    with pytest.raises(TypeError):
        mcnemar_exact(1.5, 3)  # type: ignore[arg-type]


def test_bootstrap_identical_inputs_give_zero() -> None:
    v = [True, False, True, True, False] * 20
    assert paired_bootstrap(v, list(v)) == (0.0, 0.0, 0.0)


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    rng = random.Random(3)
    a = [rng.random() < 0.7 for _ in range(300)]
    z = [rng.random() < 0.6 for _ in range(300)]
    first = paired_bootstrap(a, z, n_resamples=2000, seed=7)
    assert paired_bootstrap(a, z, n_resamples=2000, seed=7) == first
    assert paired_bootstrap(a, z, n_resamples=2000, seed=8) != first
    assert first[1] <= first[0] <= first[2]


def test_bootstrap_ci_contains_true_diff_in_a_clear_case() -> None:
    # 1000 items: the challenger fixes 150 of the champion's failures and breaks 30 of its successes.
    z = [i < 600 for i in range(1000)]
    a = [(i < 600 and i >= 30) or (600 <= i < 750) for i in range(1000)]
    diff, low, high = paired_bootstrap(a, z)
    assert diff == pytest.approx(0.12)
    assert low < 0.12 < high
    assert low > 0.08 and high < 0.16  # a clear win: the interval excludes 0 and is reasonably tight
    assert paired_bootstrap(a, z, confidence=0.5)[1] > low  # narrower at a lower confidence


def test_bootstrap_is_vectorized_enough_for_10k_by_1k() -> None:
    rng = np.random.default_rng(0)
    a, z = rng.random(1000) < 0.7, rng.random(1000) < 0.65
    diff, low, high = paired_bootstrap(a, z, n_resamples=10_000)  # not timed; it just has to run
    assert low < diff < high


def test_bootstrap_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="same length"):
        paired_bootstrap([True], [True, False])
    with pytest.raises(ValueError, match="empty"):
        paired_bootstrap([], [])
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap([True], [False], confidence=1.5)


def test_compare_runs_pairs_by_id_irrespective_of_order() -> None:
    diffs = {"a": "easy", "b": "easy", "c": "hard", "d": "hard", "e": "medium", "f": "extra", "g": "odd"}
    chall = {"a": True, "b": True, "c": True, "d": False, "e": True, "f": False, "g": True}
    champ = {"a": True, "b": False, "c": False, "d": True, "e": True, "f": False, "g": False}
    x = make_run("x", chall, diffs)
    y = make_run("y", champ, diffs)
    shuffled = make_run("y", dict(reversed(list(champ.items()))), diffs)
    cmp1 = compare_runs(x, y, n_resamples=500)
    cmp2 = compare_runs(x, shuffled, n_resamples=500)
    assert cmp1 == cmp2
    o = cmp1.overall
    assert (o.n, o.b, o.c) == (7, 3, 1)
    assert o.challenger_acc == pytest.approx(5 / 7) and o.champion_acc == pytest.approx(3 / 7)
    assert o.diff == pytest.approx(2 / 7)
    assert o.p_value == pytest.approx(binomtest(3, 4, 0.5).pvalue)
    assert list(cmp1.buckets) == ["easy", "medium", "hard", "extra", "odd"]
    hard = cmp1.buckets["hard"]
    assert (hard.n, hard.b, hard.c, hard.diff) == (2, 1, 1, 0.0)
    assert cmp1.buckets["easy"].diff == pytest.approx(0.5)
    assert compare_runs(x, y, by="category", n_resamples=100).buckets.keys() == {"filter"}


def test_compare_runs_refuses_different_items() -> None:
    x = make_run("x", {"a": True, "b": True, "c": False})
    y = make_run("y", {"a": True, "d": False, "e": True, "f": True})
    with pytest.raises(ValueError, match=r"3 ids missing from the challenger, 2 missing from the champion"):
        compare_runs(x, y)


def test_compare_runs_refuses_duplicate_ids() -> None:
    x = make_run("x", {"a": True, "b": True})
    x.items.append(x.items[0])
    with pytest.raises(ValueError, match="duplicate"):
        compare_runs(x, make_run("y", {"a": True, "b": False}))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.sampled_from(["easy", "hard"])), min_size=1,
                max_size=40))
def test_swapping_sides_negates_diff_and_keeps_p(rows: list[tuple[bool, bool, str]]) -> None:
    ids = [f"q{i}" for i in range(len(rows))]
    difficulty = {k: d for k, (_, _, d) in zip(ids, rows, strict=True)}
    x = make_run("x", {k: a for k, (a, _, _) in zip(ids, rows, strict=True)}, difficulty)
    y = make_run("y", {k: b for k, (_, b, _) in zip(ids, rows, strict=True)}, difficulty)
    xy = compare_runs(x, y, n_resamples=200)
    yx = compare_runs(y, x, n_resamples=200)
    for one, other in [(xy.overall, yx.overall), *((xy.buckets[k], yx.buckets[k]) for k in xy.buckets)]:
        assert one.diff == -other.diff
        assert one.p_value == other.p_value
        assert (one.b, one.c) == (other.c, other.b)
        assert one.ci_low == pytest.approx(-other.ci_high, abs=1e-12)
        assert one.ci_high == pytest.approx(-other.ci_low, abs=1e-12)
