"""Trust checks before any result: is each epoch's traffic split the way it was configured?

A mismatch means assignment, request logging or labelling is broken (a variant failing before it logs, a
client that drops one arm's requests, bots, labels collected unevenly), and no accuracy figure computed
from the data can be believed (Kohavi, Tang & Xu, *Trustworthy Online Controlled Experiments*, 2020,
ch. 21). Every check runs per **epoch** of the split (``serving.assignment.split_epoch``): within one epoch
a user's variant is a fixed function of their bucket, so users, their request counts and their labelling
are exchangeable between variants; across a weight change they are not (50/50 → 60/40 changes who is
where), which is why one test over all epochs raised false alarms. Each check is flagged at
p < ``SRM_THRESHOLD`` (0.001):

- **users per variant** against the epoch's split: chi-squared goodness of fit (scipy);
- **requests per user**, each variant against the control: Welch's t test on per-user request counts (the
  user is the unit, so a user's requests count once) — a client that drops two-thirds of one arm's
  requests but keeps its users fails it. A variant that truly changes how often people ask fails it too:
  then per-request figures compare unlike populations, which is worth knowing before reading them;
- **label coverage**, each variant against the control: labelled share of requests, a t test with two-way
  cluster-robust variance (users x questions, ``serving.clustered``) — unequal labelling makes online
  accuracies describe different slices of traffic;
- **consistency**: a user served by two variants within one epoch (impossible for sticky assignment).

With more than one variant besides the control, the per-variant p-values are Bonferroni-adjusted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from serving import clustered
from serving.experiment_report import SRM_MIN_EXPECTED, SRM_THRESHOLD, EpochReport, SrmCheck, SrmTest

if TYPE_CHECKING:
    import pandas as pd

    from serving.report_stats import Split

MIN_USERS_PER_VARIANT = 20


def trust_checks(assigned: pd.DataFrame, splits: dict[str, Split], control: str, names: list[str]
                 ) -> tuple[SrmCheck, list[EpochReport]]:
    """All checks of every epoch, and the verdict over them (flagged if any check of any epoch is)."""
    reports = []
    reasons: list[str] = []
    inconsistent_total = 0
    by_epoch = dict(tuple(assigned.groupby("epoch", sort=False)))
    for epoch, split in splits.items():
        rows = by_epoch[epoch]
        per_user = rows.groupby("_user", sort=False)["variant"]
        variant_of = per_user.first()
        inconsistent = int((per_user.nunique() > 1).sum())
        label = epoch or "without a recorded epoch"
        active = [n for n in names if split.shares.get(n, 0.0) > 0]  # variants this split serves
        checks = [_users(variant_of, split, names, active),
                  _requests_per_user(rows, variant_of, split, control, active),
                  _label_coverage(rows, split, control, active)]
        for c in checks:
            if c.flagged:
                reasons.append(f"{_WHAT[c.check]} (epoch {label}, p = {c.p_value:.2g})")
        if inconsistent and split.recorded:
            inconsistent_total += inconsistent
            reasons.append(f"{inconsistent} user(s) served by two variants within epoch {label}")
        ts = rows["ts"]
        reports.append(EpochReport(
            epoch=epoch, shares=split.shares, stopped_variant=split.stopped_variant,
            split_recorded=split.recorded, recorded_at=split.recorded_at,
            first_request=ts.min().to_pydatetime() if len(ts) else None,
            last_request=ts.max().to_pydatetime() if len(ts) else None,
            users=len(variant_of), requests=len(rows), checks=checks))
    flagged = bool(reasons)
    if flagged:
        note = ("the traffic does not match the configured split: " + "; ".join(reasons)
                + ". Assignment, logging or labelling is broken: do not trust the results")
    elif not reports:
        note = "no users with a user id yet"
    elif not any(c.applicable for r in reports for c in r.checks):
        note = "nothing to check yet: " + "; ".join(sorted({c.note for r in reports for c in r.checks}))
    else:
        note = (f"users, requests per user and label coverage match the split in every epoch "
                f"(no p < {SRM_THRESHOLD})")
    return SrmCheck(flagged=flagged, reasons=reasons, inconsistent_users=inconsistent_total, note=note), reports


_WHAT = {"users": "users per variant do not match the split",
         "requests_per_user": "requests per user differ between variants",
         "label_coverage": "label coverage differs between variants"}


def _why_not(split: Split, active: list[str], users: dict[str, int] | None = None,
             control: str | None = None) -> str | None:
    """Why a check cannot run in this epoch (None: it can). ``active``: the variants the split serves;
    ``users`` per variant and the ``control`` for the comparisons against it."""
    if split.stopped_variant is not None:
        return f"stopped on {split.stopped_variant!r}: one variant serves everyone"
    if len(active) < 2:
        return "one variant in this split: there is nothing to compare"
    if control is not None and control not in active:
        return f"the control {control!r} is not in this split"
    if users is not None and min(users.get(n, 0) for n in active) < MIN_USERS_PER_VARIANT:
        return f"too few users: needs {MIN_USERS_PER_VARIANT} per variant"
    return None


def _users(variant_of: pd.Series, split: Split, names: list[str], active: list[str]) -> SrmTest:
    from scipy.stats import chisquare

    observed = {n: int((variant_of == n).sum()) for n in names}
    total = sum(observed.values())
    expected = {n: total * split.shares[n] for n in names}
    outside = sum(observed[n] for n in names if n not in active)
    if outside and split.stopped_variant is None and split.skip_users_check is None:
        return SrmTest(check="users", applicable=True, observed=observed, expected=expected, statistic=None,
                       p_value=0.0, flagged=True, note=f"{outside} user(s) served by a variant outside this split")
    observed_in = [observed[n] for n in active]
    expected_in = [expected[n] for n in active]
    reason = _why_not(split, active) or split.skip_users_check
    if reason is None and total == 0:
        reason = "no users with a user id yet"
    if reason is None and min(expected_in) < SRM_MIN_EXPECTED:
        reason = f"too few users ({total}) to check the split: needs an expected {SRM_MIN_EXPECTED:g} per variant"
    if reason is not None:
        return SrmTest(check="users", applicable=False, observed=observed, expected=expected, statistic=None,
                       p_value=None, flagged=False, note=reason)
    result = chisquare(observed_in, f_exp=expected_in)
    p = float(result.pvalue)
    flagged = p < SRM_THRESHOLD
    note = (f"users per variant do not match the split (p = {p:.2g} < {SRM_THRESHOLD})" if flagged
            else f"users per variant match the split (p = {p:.3g})")
    return SrmTest(check="users", applicable=True, observed=observed, expected=expected,
                   statistic=float(result.statistic), p_value=p, flagged=flagged, note=note)


def _against_control(check: Literal["requests_per_user", "label_coverage"], observed: dict[str, float],
                     reason: str | None, names: list[str], control: str,
                     p_value_of: Callable[[str], float]) -> SrmTest:
    """Each variant against the control, Bonferroni over the variants compared."""
    if reason is not None:
        return SrmTest(check=check, applicable=False, observed=observed, expected=None, statistic=None,
                       p_value=None, flagged=False, note=reason)
    p_values = [p_value_of(n) for n in names if n != control]
    p = min(1.0, min(p_values) * len(p_values))
    flagged = p < SRM_THRESHOLD
    what = check.replace("_", " ")
    note = f"{what}: {'variants differ' if flagged else 'no difference between variants'} (p = {p:.3g})"
    return SrmTest(check=check, applicable=True, observed=observed, expected=None, statistic=None, p_value=p,
                   flagged=flagged, note=note)


def _requests_per_user(rows: pd.DataFrame, variant_of: pd.Series, split: Split, control: str,
                       names: list[str]) -> SrmTest:
    from scipy.stats import ttest_ind

    counts = rows.groupby("_user", sort=False).size().reindex(variant_of.index).to_numpy(dtype=float)
    arm = variant_of.to_numpy()
    per_variant = {n: counts[arm == n] for n in names}
    observed = {n: float(c.mean()) if len(c) else 0.0 for n, c in per_variant.items()}

    def p_value_of(n: str) -> float:
        a, b = per_variant[n], per_variant[control]
        if a.var() == 0 and b.var() == 0:
            return 1.0 if a[0] == b[0] else 0.0
        return float(ttest_ind(a, b, equal_var=False).pvalue)

    reason = _why_not(split, names, {n: len(c) for n, c in per_variant.items()}, control)
    return _against_control("requests_per_user", observed, reason, names, control, p_value_of)


def _label_coverage(rows: pd.DataFrame, split: Split, control: str, names: list[str]) -> SrmTest:
    labelled = rows["correct"].notna().to_numpy(dtype=float)
    variant = rows["variant"].to_numpy()
    users, questions = rows["_user"].to_numpy(), rows["_question"].to_numpy()
    observed = {n: float(labelled[variant == n].mean()) if (variant == n).any() else 0.0 for n in names}

    def p_value_of(n: str) -> float:
        keep = (variant == n) | (variant == control)
        est = clustered.difference(labelled[keep], variant[keep] == n, users[keep], questions[keep])
        return 1.0 if est is None else est.p_value()  # None: one question or one user only

    reason = _why_not(split, names, rows.groupby("variant")["_user"].nunique().to_dict(), control)
    return _against_control("label_coverage", observed, reason, names, control, p_value_of)
