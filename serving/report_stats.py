"""The figures behind ``serving.experiment_report``: record normalization, SRM, accuracy, guardrails, lift.

Standard statistics come from scipy/statsmodels (chi-squared, Wilson, score test, Newcombe); only the
always-valid lift is computed here, by ``serving.sequential``.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from serving.experiment_report import (
    SRM_MIN_EXPECTED,
    SRM_THRESHOLD,
    Accuracy,
    FixedHorizonLift,
    Guardrails,
    Interval,
    Lift,
    SequentialLift,
    SrmCheck,
)

if TYPE_CHECKING:
    from serving.experiment_report import VariantWeight


def normalize_records(records: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """Coerce the contract's columns to working dtypes, add ``anonymous``, sort by time (stable)."""
    missing = [c for c in columns if c not in records.columns]
    if missing:
        raise ValueError(f"records lack the column(s) {missing}: the store's export must provide {list(columns)}")
    df = records.loc[:, list(columns)].copy()
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    df["variant"] = df["variant"].astype(str)
    df["outcome"] = df["outcome"].astype(str)
    df["latency_ms"] = pd.to_numeric(df["latency_ms"], errors="coerce").astype(float)
    df["correct"] = df["correct"].astype("boolean")
    no_user = df["user_hash"].isna()
    df["user_hash"] = df["user_hash"].astype(object).where(~no_user, None)
    df["anonymous"] = df["random_assignment"].astype("boolean").fillna(False).astype(bool) | no_user
    return df.sort_values("ts", kind="stable").reset_index(drop=True)


def srm_check(assigned: pd.DataFrame, variants: list[VariantWeight], stopped: str | None) -> tuple[SrmCheck, int]:
    """Chi-squared of users per variant (first variant seen) against the weights; also returns how many
    users were served by more than one variant."""
    from scipy.stats import chisquare

    names = [v.name for v in variants]
    per_user = assigned.groupby("user_hash", sort=False)["variant"]
    first = per_user.first()
    moved = int((per_user.nunique() > 1).sum())
    observed = {n: int((first == n).sum()) for n in names}
    total = sum(observed.values())
    weight_sum = sum(v.weight for v in variants)
    expected = {v.name: total * v.weight / weight_sum for v in variants}

    def skip(note: str) -> tuple[SrmCheck, int]:
        return SrmCheck(applicable=False, observed_users=observed, expected_users=expected, statistic=None,
                        p_value=None, flagged=False, note=note), moved

    if len(names) < 2:
        return skip("one variant only: there is no split to check")
    if stopped is not None:
        return skip(f"the experiment is stopped: new users all go to {stopped!r}, so the split no longer "
                    "follows the weights")
    if total == 0:
        return skip("no users with a user id yet")
    if min(expected.values()) < SRM_MIN_EXPECTED:
        return skip(f"too few users ({total}) to check the split: needs an expected {SRM_MIN_EXPECTED:g} "
                    "per variant")
    result = chisquare(list(observed.values()), f_exp=list(expected.values()))
    p = float(result.pvalue)
    flagged = p < SRM_THRESHOLD
    note = (f"users per variant do not match the weights (p = {p:.2g} < {SRM_THRESHOLD}): assignment or "
            "logging is broken; do not trust the results" if flagged
            else f"users per variant match the weights (p = {p:.3g} ≥ {SRM_THRESHOLD})")
    return SrmCheck(applicable=True, observed_users=observed, expected_users=expected,
                    statistic=float(result.statistic), p_value=p, flagged=flagged, note=note), moved


def accuracy(rows: pd.DataFrame, alpha: float) -> Accuracy:
    """Labelled correct / labelled, with a Wilson interval (statsmodels)."""
    from statsmodels.stats.proportion import proportion_confint

    requests = len(rows)
    labels = rows["correct"].dropna()
    labelled = len(labels)
    correct = int(labels.sum())
    ci = None
    acc = None
    if labelled:
        acc = correct / labelled
        low, high = proportion_confint(correct, labelled, alpha=alpha, method="wilson")
        ci = Interval(low=float(low), high=float(high))
    return Accuracy(requests=requests, labelled=labelled, correct=correct,
                    label_coverage=labelled / requests if requests else None,
                    online_accuracy=acc, online_accuracy_ci=ci)


def guardrails(rows: pd.DataFrame, outcomes: tuple[str, ...]) -> Guardrails:
    """Outcome counts and rates, p50/p95 latency."""
    requests = len(rows)
    counts = {o: 0 for o in outcomes}
    for outcome, n in rows["outcome"].value_counts().items():
        counts[str(outcome)] = int(n)

    def rate(name: str) -> float | None:
        return counts[name] / requests if requests else None

    latency = rows["latency_ms"].dropna().to_numpy(dtype=float)
    p50, p95 = (float(x) for x in np.percentile(latency, [50, 95])) if len(latency) else (None, None)
    return Guardrails(requests=requests, outcomes=counts, sql_error_rate=rate("sql_error"),
                      empty_rate=rate("empty"), guard_refused_rate=rate("guard_refused"),
                      timeout_rate=rate("timeout"), llm_error_rate=rate("llm_error"),
                      latency_p50_ms=p50, latency_p95_ms=p95)


def lift(rows: pd.DataFrame, control_rows: pd.DataFrame, control: str, alpha: float, mixture_sd: float,
         min_units: int) -> Lift:
    """Treatment minus control online accuracy: always-valid (mSPRT) and fixed-horizon figures."""
    from statsmodels.stats.proportion import confint_proportions_2indep, test_proportions_2indep

    from serving.sequential import mixture_sprt_path

    t = rows[rows["correct"].notna()]
    c = control_rows[control_rows["correct"].notna()]
    n_t, n_c = len(t), len(c)
    if n_t == 0 or n_c == 0:
        which = "this variant" if n_t == 0 else "the control"
        return Lift(control=control, difference=None, relative=None, sequential=None, fixed_horizon=None,
                    verdict=f"no labels yet in {which}")
    k_t, k_c = int(t["correct"].sum()), int(c["correct"].sum())
    p_t, p_c = k_t / n_t, k_c / n_c
    diff = p_t - p_c

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        test = test_proportions_2indep(k_t, n_t, k_c, n_c, method="score")
        low, high = confint_proportions_2indep(k_t, n_t, k_c, n_c, method="newcomb", alpha=alpha)
    fixed = FixedHorizonLift(ci=_interval(low, high), p_value=_finite(test.pvalue))

    both = pd.concat([t.assign(_treat=True), c.assign(_treat=False)]).sort_values("ts", kind="stable")
    units, _ = pd.factorize(both["user_hash"])
    path = mixture_sprt_path(both["_treat"].to_numpy(dtype=bool), units,
                             both["correct"].to_numpy(dtype=bool), alpha=alpha, mixture_sd=mixture_sd,
                             min_units=min_units)
    sequential = None
    if path.looks == 0:
        verdict = f"collecting: needs {min_units} labelled users in each variant"
    else:
        ci = _interval(path.ci_low[-1], path.ci_high[-1])
        sequential = SequentialLift(ci=ci, p_value=float(path.p_value[-1]), looks=path.looks)
        if ci is None:
            verdict = "inconsistent: the interval sequence became empty (check the data for drift)"
        elif ci.low > 0:
            verdict = "better than control"
        elif ci.high < 0:
            verdict = "worse than control"
        else:
            verdict = "no detectable difference yet"
    return Lift(control=control, difference=diff, relative=diff / p_c if p_c > 0 else None,
                sequential=sequential, fixed_horizon=fixed, verdict=verdict)


def _finite(x: float) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _interval(low: float, high: float) -> Interval | None:
    low_f, high_f = _finite(low), _finite(high)
    if low_f is None or high_f is None or low_f > high_f:
        return None
    return Interval(low=low_f, high=high_f)
