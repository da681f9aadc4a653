"""The promotion gate: may a challenger replace the champion?

The challenger is promoted only when, on the same golden items, it

1. is significantly better: exact McNemar p < ``alpha`` and a positive accuracy difference;
2. gains at least ``min_gain`` absolute accuracy;
3. regresses in no difficulty bucket by more than ``bucket_tolerance``;
4. when the runs are pooled over several datasets (:mod:`evals.pooling`), regresses on no dataset by more
   than ``dataset_tolerance``;
5. when ``heldout`` names datasets the versions were not written against, the decision covers one of them;
6. when ``budget`` sets serving limits (:mod:`evals.budget`: p95 latency, model calls, tokens or cost per
   answer), fits every one of them; a limit it cannot be measured against fails.

With no champion yet the challenger is promoted as the first champion (only checks 5 and 6 apply). Every reason
is a sentence with the numbers behind it, for people, the audit log and the registry tags
(:meth:`GateDecision.to_dict`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from evals.budget import Budget, BudgetCheck, check_budget
from evals.pooling import datasets_of
from evals.records import VariantRun
from evals.stats import BucketComparison, Comparison, compare_runs

__all__ = ["GateDecision", "GatePolicy", "decide", "fmt_p", "fmt_pts"]

_EPS = 1e-12  # float slack: a regression of exactly the tolerance is allowed


@dataclass(frozen=True)
class GatePolicy:
    alpha: float = 0.05  # McNemar significance level
    min_gain: float = 0.0  # minimum absolute accuracy gain (0.02 = 2 points)
    bucket_tolerance: float = 0.05  # largest allowed absolute regression in any difficulty bucket
    dataset_tolerance: float = 0.05  # largest allowed absolute regression on any one dataset of a pooled run
    heldout: tuple[str, ...] = ()  # datasets the versions were not written against; a decision must cover one
    budget: Budget | None = None  # serving limits per answer the challenger must fit
    confidence: float = 0.95  # of the bootstrap interval shown in reasons
    n_resamples: int = 10_000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if not 0.0 <= self.min_gain <= 1.0:
            raise ValueError(f"min_gain is an absolute accuracy gain in [0, 1], got {self.min_gain}")
        if not 0.0 <= self.bucket_tolerance <= 1.0:
            raise ValueError(f"bucket_tolerance is an absolute accuracy drop in [0, 1], got {self.bucket_tolerance}")
        if not 0.0 <= self.dataset_tolerance <= 1.0:
            raise ValueError(f"dataset_tolerance is an absolute accuracy drop in [0, 1], got {self.dataset_tolerance}")
        object.__setattr__(self, "heldout", tuple(self.heldout))
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.n_resamples < 1:
            raise ValueError(f"n_resamples must be >= 1, got {self.n_resamples}")


def fmt_pts(x: float, signed: bool = True) -> str:
    """An absolute accuracy difference in percentage points: ``+6.0 pts``."""
    return f"{100 * x:+.1f} pts" if signed else f"{100 * x:.1f} pts"


def fmt_p(p: float) -> str:
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3g}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _ci(cmp: BucketComparison, confidence: float) -> str:
    return f"{round(100 * confidence):g}% CI {100 * cmp.ci_low:+.1f} to {100 * cmp.ci_high:+.1f}"


@dataclass
class GateDecision:
    passed: bool
    first_promotion: bool
    reasons: list[str]
    comparison: Comparison | None
    challenger: str = ""
    champion: str | None = None
    checks: dict[str, bool] = field(default_factory=dict)  # significant, min_gain, no_bucket_regression, …
    policy: GatePolicy | None = None
    by_dataset: Comparison | None = None  # pooled runs: the same comparison, dataset by dataset
    budget: BudgetCheck | None = None  # the challenger against the serving budget, when one is set

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else "fail"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary for the audit log and the registry."""
        out: dict[str, Any] = {
            "passed": self.passed, "verdict": self.verdict, "first_promotion": self.first_promotion,
            "challenger": self.challenger, "champion": self.champion, "checks": dict(self.checks),
            "reasons": list(self.reasons), "policy": ({**asdict(self.policy), "heldout": list(self.policy.heldout)} if self.policy else None),
        }
        if self.comparison is not None:
            out["comparison"] = self.comparison.to_dict()
        if self.by_dataset is not None:
            out["by_dataset"] = self.by_dataset.to_dict()
        if self.budget is not None:
            out["budget"] = self.budget.to_dict()
        return out

    def to_tags(self, prefix: str = "gate.") -> dict[str, str]:
        """Flat string tags (MLflow / model registry): verdict, headline statistics, reasons as JSON."""
        tags = {f"{prefix}verdict": self.verdict, f"{prefix}first_promotion": str(self.first_promotion).lower(),
                f"{prefix}champion": self.champion or "",
                f"{prefix}reasons": json.dumps(self.reasons, ensure_ascii=False)}
        if self.budget is not None:
            tags[f"{prefix}budget"] = ("within" if self.budget.within else
                                      "unmeasured" if self.budget.missing else "over")
        if self.comparison is not None:
            o = self.comparison.overall
            tags |= {f"{prefix}diff": f"{o.diff:.6f}", f"{prefix}ci_low": f"{o.ci_low:.6f}",
                     f"{prefix}ci_high": f"{o.ci_high:.6f}", f"{prefix}p_value": f"{o.p_value:.6g}",
                     f"{prefix}n": str(o.n)}
        return tags


def _heldout_check(run: VariantRun, policy: GatePolicy) -> tuple[bool, str] | None:
    """(covered, reason) when the policy names held-out datasets; None when it names none."""
    if not policy.heldout:
        return None
    datasets = datasets_of(run)
    covered = [d for d in datasets if d in policy.heldout]
    if covered:
        return True, (f"The decision includes {', '.join(covered)}, a dataset the versions were not written "
                      "against.")
    return False, (f"The decision covers only {', '.join(datasets)}, none of the held-out datasets "
                   f"({', '.join(policy.heldout)}) the versions were not written against: evaluate the sweep on "
                   "one of them too.")


def decide(challenger: VariantRun, champion: VariantRun | None, policy: GatePolicy | None = None) -> GateDecision:
    """Apply the promotion gate. Raises ``ValueError`` when the runs were not evaluated on the same items."""
    policy = policy or GatePolicy()
    heldout = _heldout_check(challenger, policy)
    budget = check_budget(challenger, policy.budget)
    if champion is None:
        checks: dict[str, bool] = {}
        extra: list[str] = []
        if heldout is not None:
            checks["heldout"], reason = heldout
            extra.append(reason)
        if budget is not None:
            checks["within_budget"] = budget.within
            extra.append(budget.reason)
        passed = all(checks.values())
        head = (f"There is no champion yet, so {challenger.variant} is promoted as the first champion without a "
                "paired comparison." if passed else
                f"There is no champion yet, but {challenger.variant} cannot be the first champion on this evidence.")
        return GateDecision(passed=passed, first_promotion=True, challenger=challenger.variant, champion=None,
                            policy=policy, reasons=[head, *extra], comparison=None, checks=checks, budget=budget)

    bootstrap = {"n_resamples": policy.n_resamples, "confidence": policy.confidence, "seed": policy.seed}
    cmp = compare_runs(challenger, champion, by="difficulty", **bootstrap)
    o = cmp.overall
    stats = (f"accuracy {fmt_pts(o.diff)} ({_ci(o, policy.confidence)}) on {o.n} paired items, "
             f"{_pct(o.champion_acc)} → {_pct(o.challenger_acc)}, {o.b} gained vs {o.c} lost")
    reasons: list[str] = []

    significant = o.diff > 0 and o.p_value < policy.alpha
    if significant:
        reasons.append(f"The challenger is significantly better: {stats}; McNemar p = {fmt_p(o.p_value)} "
                       f"< alpha {policy.alpha:g}.")
    elif o.diff <= 0:
        reasons.append(f"The challenger does not beat the champion: {stats}; McNemar p = {fmt_p(o.p_value)}.")
    else:
        reasons.append(f"The gain is not significant: {stats}; McNemar p = {fmt_p(o.p_value)} "
                       f">= alpha {policy.alpha:g}.")

    gain_ok = o.diff >= policy.min_gain - _EPS
    if policy.min_gain > 0 or not gain_ok:
        if gain_ok:
            reasons.append(f"The gain of {fmt_pts(o.diff)} meets the minimum gain of "
                           f"{fmt_pts(policy.min_gain, signed=False)}.")
        else:
            reasons.append(f"The gain of {fmt_pts(o.diff)} is below the minimum gain of "
                           f"{fmt_pts(policy.min_gain, signed=False)}.")

    checks = {"significant": significant, "min_gain": gain_ok,
              "no_bucket_regression": _tolerated(cmp, "difficulty bucket", policy.bucket_tolerance, policy, reasons)}
    by_dataset = None
    if len(datasets_of(challenger)) > 1:
        by_dataset = compare_runs(challenger, champion, by="dataset", **bootstrap)
        checks["no_dataset_regression"] = _tolerated(by_dataset, "dataset", policy.dataset_tolerance, policy,
                                                     reasons)
    if heldout is not None:
        checks["heldout"], reason = heldout
        reasons.append(reason)
    if budget is not None:
        checks["within_budget"] = budget.within
        reasons.append(budget.reason)
    return GateDecision(passed=all(checks.values()), first_promotion=False, reasons=reasons, comparison=cmp,
                        challenger=challenger.variant, champion=champion.variant, checks=checks, policy=policy,
                        by_dataset=by_dataset, budget=budget)


def _tolerated(cmp: Comparison, what: str, tol: float, policy: GatePolicy, reasons: list[str]) -> bool:
    """True when no bucket of ``cmp`` (a ``what``: "difficulty bucket", "dataset") regresses by more than
    ``tol``; one reason per regression, or one for the weakest bucket."""
    regressed = [bc for bc in cmp.buckets.values() if bc.diff < -tol - _EPS]
    for bc in regressed:
        reasons.append(f"{what.capitalize()} '{bc.bucket}' regresses by {fmt_pts(-bc.diff, signed=False)} "
                       f"({_pct(bc.champion_acc)} → {_pct(bc.challenger_acc)} on {bc.n} items, "
                       f"{_ci(bc, policy.confidence)}), beyond the tolerance of {fmt_pts(tol, signed=False)}.")
    if not regressed and cmp.buckets:
        worst = min(cmp.buckets.values(), key=lambda bc: bc.diff)
        reasons.append(f"No {what} regresses by more than {fmt_pts(tol, signed=False)} "
                       f"(weakest: '{worst.bucket}' at {fmt_pts(worst.diff)} on {worst.n} items).")
    return not regressed
