"""The promotion gate as a decision table."""

from __future__ import annotations

import json

import pytest

from evals.budget import Budget, p95
from evals.gate import GatePolicy, decide
from evals.records import EvalItem, VariantRun

Cells = tuple[int, int, int, int]  # both right, only challenger right (b), only champion right (c), both wrong


def make_pair(buckets: dict[str, Cells]) -> tuple[VariantRun, VariantRun]:
    """Challenger and champion runs on the same items, from per-difficulty contingency counts."""
    chall: list[EvalItem] = []
    champ: list[EvalItem] = []
    for difficulty, cells in buckets.items():
        patterns = [(True, True), (True, False), (False, True), (False, False)]
        for (mine, theirs), count in zip(patterns, cells, strict=True):
            for _ in range(count):
                qid = f"{difficulty}-{len(chall)}"
                for out, ok in ((chall, mine), (champ, theirs)):
                    out.append(EvalItem(id=qid, question=f"question {qid}", db_id="shop", difficulty=difficulty,
                                        category="filter", gold_sql="SELECT 1", pred_sql="SELECT 1",
                                        match=ok, error_class=None if ok else "wrong_result", exact_match=ok,
                                        valid_sql=True))

    def run(variant: str, items: list[EvalItem]) -> VariantRun:
        return VariantRun(variant=variant, prompt=f"{variant}@1", prompt_name=variant, prompt_version=1,
                          model="m", provider="fake", dataset="shop", dataset_version="v1", rules="t2s",
                          metrics={}, items=items)

    return run("challenger", chall), run("champion", champ)


POLICY = GatePolicy(n_resamples=2000)


def test_first_promotion() -> None:
    chall, _ = make_pair({"easy": (5, 0, 0, 5)})
    d = decide(chall, None, POLICY)
    assert d.passed and d.first_promotion and d.comparison is None
    assert "no champion" in d.reasons[0] and "first champion" in d.reasons[0]
    summary = d.to_dict()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["champion"] is None and summary["verdict"] == "pass"


def test_significant_win_passes() -> None:
    chall, champ = make_pair({"easy": (40, 8, 1, 1), "medium": (30, 7, 1, 2), "hard": (20, 6, 1, 3),
                              "extra": (10, 5, 0, 5)})
    d = decide(chall, champ, POLICY)
    assert d.passed and not d.first_promotion
    assert d.checks == {"significant": True, "min_gain": True, "no_bucket_regression": True}
    o = d.comparison.overall
    assert (o.b, o.c) == (26, 3) and o.p_value < 0.05 and o.diff > 0
    assert f"{100 * o.diff:+.1f} pts" in d.reasons[0]
    assert "McNemar p = " in d.reasons[0] and "< alpha 0.05" in d.reasons[0] and "95% CI" in d.reasons[0]
    assert any("No difficulty bucket regresses" in r for r in d.reasons)
    summary = d.to_dict()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["comparison"]["overall"]["b"] == 26
    assert d.to_tags()["gate.verdict"] == "pass"


def test_win_that_is_not_significant_fails() -> None:
    chall, champ = make_pair({"easy": (50, 6, 3, 41)})  # +3 pts, 6 vs 3 discordant: p ≈ 0.51
    d = decide(chall, champ, POLICY)
    assert not d.passed
    assert d.checks["significant"] is False
    assert d.comparison.overall.diff > 0
    assert "not significant" in d.reasons[0] and ">= alpha 0.05" in d.reasons[0]


def test_significant_win_with_a_bucket_regression_fails_and_names_it() -> None:
    # Overall +24 items; "hard" loses 4 of 20 items net (−20 pts), beyond the 5-pt tolerance.
    chall, champ = make_pair({"easy": (40, 15, 0, 5), "medium": (40, 15, 1, 4), "hard": (10, 1, 5, 4)})
    d = decide(chall, champ, POLICY)
    assert d.checks["significant"] is True
    assert not d.passed and d.checks["no_bucket_regression"] is False
    bad = [r for r in d.reasons if "regresses by" in r]
    assert len(bad) == 1 and "'hard'" in bad[0] and "20.0 pts" in bad[0] and "tolerance of 5.0 pts" in bad[0]
    # within a looser tolerance the same runs pass
    assert decide(chall, champ, GatePolicy(bucket_tolerance=0.25, n_resamples=2000)).passed


def test_regression_of_exactly_the_tolerance_is_allowed() -> None:
    chall, champ = make_pair({"easy": (60, 30, 0, 10), "hard": (10, 0, 1, 9)})  # hard: −1/20 = −5.0 pts
    assert decide(chall, champ, POLICY).checks["no_bucket_regression"] is True


def test_gain_below_min_gain_fails() -> None:
    chall, champ = make_pair({"easy": (700, 40, 10, 250)})  # +3 pts, p ≈ 1e-5
    d = decide(chall, champ, GatePolicy(min_gain=0.05, n_resamples=2000))
    assert d.checks["significant"] is True and d.checks["min_gain"] is False and not d.passed
    assert any("below the minimum gain of 5.0 pts" in r and "+3.0 pts" in r for r in d.reasons)
    assert decide(chall, champ, GatePolicy(min_gain=0.02, n_resamples=2000)).passed


def test_equal_runs_fail() -> None:
    chall, champ = make_pair({"easy": (30, 0, 0, 10), "hard": (5, 0, 0, 5)})
    d = decide(chall, champ, POLICY)
    assert not d.passed and d.checks["significant"] is False
    o = d.comparison.overall
    assert (o.diff, o.ci_low, o.ci_high, o.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert "does not beat the champion" in d.reasons[0]


def test_worse_challenger_fails() -> None:
    chall, champ = make_pair({"easy": (30, 1, 12, 7)})
    d = decide(chall, champ, POLICY)
    assert not d.passed and "does not beat" in d.reasons[0]


def test_different_items_cannot_be_gated() -> None:
    chall, _ = make_pair({"easy": (5, 0, 0, 5)})
    _, champ = make_pair({"easy": (5, 0, 0, 6)})
    with pytest.raises(ValueError, match="same items"):
        decide(chall, champ, POLICY)


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="alpha"):
        GatePolicy(alpha=0)
    with pytest.raises(ValueError, match="bucket_tolerance"):
        GatePolicy(bucket_tolerance=-0.1)


# ------------------------------------------------------------------------------------------ serving budget

def with_costs(run: VariantRun, latencies: list[float | None], calls: int = 1, tokens: int = 500,
               cached: bool = False, **metrics: float) -> VariantRun:
    """``run`` with per-answer latencies (cycled over its items), model calls and tokens per answer."""
    items = [i.model_copy(update={"answer_latency_s": latencies[k % len(latencies)], "latency_s": 0.001,
                                  "cached": cached, "model_calls": calls, "prompt_tokens": tokens - 20,
                                  "completion_tokens": 20}) for k, i in enumerate(run.items)]
    return run.model_copy(update={"items": items, "metrics": {**run.metrics, **metrics}})


WIN = {"easy": (40, 8, 1, 1), "medium": (30, 7, 1, 2), "hard": (20, 6, 1, 3), "extra": (10, 5, 0, 5)}


def test_p95_is_the_nearest_rank_percentile() -> None:
    assert p95([float(x) for x in range(1, 21)]) == 19.0  # ceil(0.95 · 20) = 19th of 20
    assert p95([float(x) for x in range(100, 0, -1)]) == 95.0
    assert p95([7.0]) == 7.0
    with pytest.raises(ValueError):
        p95([])


def test_a_challenger_over_the_latency_budget_is_refused_naming_the_budget() -> None:
    chall, champ = make_pair(WIN)
    slow = with_costs(chall, [1.0] * 18 + [9.5, 12.0])  # p95 of the cycle: 9.5 s of every 20 answers
    policy = GatePolicy(n_resamples=2000, budget=Budget(p95_latency_s=3.0))
    d = decide(slow, champ, policy)
    assert d.checks["significant"] is True and d.checks["within_budget"] is False and not d.passed
    reason = next(r for r in d.reasons if "serving budget" in r)
    assert "over the serving budget" in reason and "gate.budget.p95_latency_s = 3.00 s" in reason
    assert "p95 latency per answer 9.50 s" in reason
    summary = d.to_dict()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["budget"]["within"] is False and summary["budget"]["over"] == ["p95_latency_s"]
    assert summary["budget"]["measured"]["p95_latency_s"] == 9.5
    assert summary["policy"]["budget"]["p95_latency_s"] == 3.0
    assert d.to_tags()["gate.budget"] == "over"
    # The same challenger within a looser budget passes.
    loose = decide(slow, champ, GatePolicy(n_resamples=2000, budget=Budget(p95_latency_s=10.0)))
    assert loose.passed and loose.checks["within_budget"] is True
    assert any("within the serving budget" in r and "9.50 s ≤ 10.00 s" in r for r in loose.reasons)


def test_the_first_champion_must_fit_the_budget_too() -> None:
    chall, _ = make_pair({"easy": (5, 0, 0, 5)})
    budget = Budget(p95_latency_s=3.0, model_calls_per_answer=2.0, tokens_per_answer=1000)
    fast = with_costs(chall, [0.8, 1.2, 2.9], calls=1, tokens=800)
    d = decide(fast, None, GatePolicy(budget=budget))
    assert d.passed and d.first_promotion and d.checks == {"within_budget": True}
    assert "first champion" in d.reasons[0] and "within the serving budget" in d.reasons[1]
    assert "1.00 ≤ 2.00" in d.reasons[1] and "800 ≤ 1,000" in d.reasons[1]

    greedy = with_costs(chall, [0.8, 1.2, 2.9], calls=5, tokens=4000)
    d = decide(greedy, None, GatePolicy(budget=budget))
    assert not d.passed and "cannot be the first champion" in d.reasons[0]
    assert "model calls per answer 5.00 exceeds gate.budget.model_calls_per_answer = 2.00" in d.reasons[1]
    assert "tokens per answer 4,000 exceeds gate.budget.tokens_per_answer = 1,000" in d.reasons[1]
    assert d.to_dict()["budget"]["over"] == ["model_calls_per_answer", "tokens_per_answer"]


def test_missing_measurements_fail_the_budget_and_say_what_is_missing() -> None:
    chall, champ = make_pair(WIN)
    policy = GatePolicy(n_resamples=2000, budget=Budget(p95_latency_s=3.0))
    # Answers served from the completion cache before call times were kept: no latency to check.
    unmeasured = with_costs(chall, [1.0, None], cached=True)
    d = decide(unmeasured, champ, policy)
    assert not d.passed and d.checks["within_budget"] is False
    reason = next(r for r in d.reasons if "serving budget" in r)
    assert "cannot be checked against the serving budget (gate.budget)" in reason
    n = len(chall.items)
    assert f"latency of {n // 2} of {n} answers was not measured" in reason and "T2S_CACHE_DIR" in reason
    assert d.to_dict()["budget"]["missing"] == ["p95_latency_s"] and d.to_tags()["gate.budget"] == "unmeasured"
    # Records written before answer latencies were kept still count when no call was cached.
    legacy = chall.model_copy(update={"items": [i.model_copy(update={"latency_s": 0.5, "cached": False})
                                                for i in chall.items]})
    assert decide(legacy, champ, policy).checks["within_budget"] is True
    # A hosted model without prices has no cost; a local model costs nothing per token.
    costly = GatePolicy(n_resamples=2000, budget=Budget(cost_per_1k_answers_usd=0.5))
    hosted = with_costs(chall, [1.0])
    d = decide(hosted, champ, costly)
    assert not d.passed and "model m (fake) has no price" in " ".join(d.reasons)
    priced = with_costs(chall, [1.0], cost_per_1k_answers_usd=0.42)
    assert decide(priced, champ, costly).checks["within_budget"] is True
    local = with_costs(chall, [1.0]).model_copy(update={"provider": "local"})
    assert decide(local, champ, costly).checks["within_budget"] is True


def test_no_budget_no_budget_check() -> None:
    chall, champ = make_pair(WIN)
    d = decide(with_costs(chall, [99.0]), champ, POLICY)
    assert "within_budget" not in d.checks and "budget" not in d.to_dict() and d.passed
    with pytest.raises(ValueError, match=r"gate\.budget\.p95_latency_s must be a positive number"):
        Budget(p95_latency_s=0)
    with pytest.raises(ValueError, match="tokens_per_answer"):
        Budget(tokens_per_answer=float("nan"))


def test_each_servers_first_answer_is_reported_not_counted() -> None:
    """A worker's first answer waits for its server to read the schema prefix once; the p95 is over the others."""
    chall, _ = make_pair({"easy": (10, 0, 0, 10)})
    items = [i.model_copy(update={"answer_latency_s": 40.0 if k < 2 else 1.0 + k / 100, "cold_start": k < 2})
             for k, i in enumerate(chall.items)]
    run = chall.model_copy(update={"items": items})
    d = decide(run, None, GatePolicy(budget=Budget(p95_latency_s=3.0)))
    assert d.passed and d.budget is not None and d.budget.cost.p95_latency_s == pytest.approx(1.19)  # 18th of 18
    assert "(p95 over 18 answers; the 2 first answers of a server took up to 40.0 s)" in d.reasons[1]
    assert d.budget.cost.cold_start_s == 40.0 and d.budget.cost.warm_answers == 18
    # Only first answers: nothing to measure, and the gate says so.
    only_cold = run.model_copy(update={"items": [i.model_copy(update={"cold_start": True}) for i in items]})
    d = decide(only_cold, None, GatePolicy(budget=Budget(p95_latency_s=3.0)))
    assert not d.passed and "no answers after each server's first to measure" in d.reasons[1]
