"""The figures behind ``serving.experiment_report``: records, epochs, the headline population, accuracy,
lift and guardrails.

Means, differences and intervals that must survive correlated outcomes come from ``serving.clustered``
(two-way cluster-robust, statsmodels); the always-valid lift from ``serving.sequential``; the trust checks
from ``serving.srm``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from serving import clustered
from serving.experiment_report import (
    LATENCY_MIXTURE_SD,
    RATE_MIXTURE_SD,
    Accuracy,
    FixedHorizonLift,
    GuardrailCheck,
    Guardrails,
    GuardrailThresholds,
    Interval,
    Lift,
    LiftPoint,
    SequentialLift,
)
from serving.questions import normalized_question

if TYPE_CHECKING:
    from serving.experiment_report import EpochSplit, VariantWeight
    from serving.sequential import SequentialPath

HISTORY_POINTS = 120
RATE_METRICS = ("sql_error", "timeout", "llm_error", "guard_refused", "empty")


@dataclass(frozen=True)
class Split:
    """The split in force during one epoch of the records."""

    epoch: str
    shares: dict[str, float]
    stopped_variant: str | None
    recorded: bool
    recorded_at: datetime | None
    skip_users_check: str | None = None

    @property
    def randomized(self) -> bool:
        return self.stopped_variant is None and sum(s > 0 for s in self.shares.values()) >= 2


def normalize_records(records: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """The contract's columns as a lean working frame sorted by time (stable): ``ts``, ``variant``,
    ``outcome``, ``latency_ms``, ``correct`` (1.0, 0.0 or NaN when unlabelled), ``epoch`` ("" when none
    was recorded), ``anonymous``, ``question_key`` (:func:`serving.questions.normalized_question`) and the
    integer cluster codes ``_user`` (a request without a user id is its own cluster) and ``_question``,
    and ``label_source`` ("" when the records do not say)."""
    missing = [c for c in columns if c not in records.columns]
    if missing:
        raise ValueError(f"records lack the column(s) {missing}: the store's export must provide {list(columns)}")
    user = records["user_hash"].astype(object)
    no_user = user.isna().to_numpy()
    anonymous = records["random_assignment"].astype("boolean").fillna(False).to_numpy(dtype=bool) | no_user
    users = clustered.codes(user.where(~anonymous, None))
    users[anonymous] = users.max(initial=-1) + 1 + np.arange(anonymous.sum())
    text = [q if isinstance(q, str) else "" for q in records["question"].astype(object)]
    keys = {q: normalized_question(q) for q in set(text)}
    question_key = [keys[q] for q in text]
    df = pd.DataFrame({
        "ts": pd.DatetimeIndex(pd.to_datetime(records["ts"], utc=True)),
        "variant": _objects([str(v) for v in records["variant"]]),
        "outcome": _objects([str(v) for v in records["outcome"]]),
        "latency_ms": pd.to_numeric(records["latency_ms"], errors="coerce").to_numpy(dtype=float),
        "correct": pd.array(records["correct"], dtype="boolean").to_numpy(dtype=float, na_value=np.nan),
        "epoch": _objects([e if isinstance(e, str) else "" for e in records["epoch"].astype(object)]),
        "anonymous": anonymous,
        "question_key": _objects(question_key),
        "_user": users,
        "_question": clustered.codes(question_key),
        "label_source": _objects([x if isinstance(x, str) else "" for x in records["label_source"].astype(object)]
                                 if "label_source" in records.columns else [""] * len(records)),
    })
    return df.sort_values("ts", kind="stable").reset_index(drop=True)


def _objects(values: list[str]) -> pd.Series:
    """Text as plain Python objects: filtering and counting them is faster than pandas' arrow strings."""
    return pd.Series(values, dtype=object)


def resolve_epochs(assigned: pd.DataFrame, variants: list[VariantWeight], epochs: list[EpochSplit] | None,
                   stopped: str | None, notes: list[str]) -> dict[str, Split]:
    """The split of every epoch in the records, in order of first request: the store's record of it, or the
    configured weights for requests that carry no epoch (recorded before epochs were stored) or an epoch
    the store does not know."""
    known = {e.epoch: e for e in epochs or []}
    total = sum(v.weight for v in variants)
    configured = {v.name: v.weight / total for v in variants}
    out: dict[str, Split] = {}
    unknown = []
    for epoch in pd.unique(assigned["epoch"]):
        split = known.get(epoch)
        if split is not None:
            out[epoch] = Split(epoch, {n: float(split.shares.get(n, 0.0)) for n in configured},
                               split.stopped_variant, True, split.recorded_at)
            continue
        if epoch:
            unknown.append(epoch)
        elif epochs:
            notes.append("requests recorded before epochs were kept carry none: they are checked against the "
                         "configured weights, which raises a false alarm if the weights changed since")
        skip = None
        if stopped is not None:
            skip = (f"the experiment is stopped: new users all go to {stopped!r}, and these requests carry no "
                    "recorded split, so the users check cannot tell which came before the stop")
        out[epoch] = Split(epoch, configured, None, False, None, skip)
    if unknown:
        notes.append(f"epoch(s) {', '.join(unknown)} are not in the store's record of splits: checked against "
                     "the configured weights")
    return out


def headline_population(assigned: pd.DataFrame, splits: dict[str, Split], notes: list[str]
                        ) -> tuple[pd.DataFrame, bool]:
    """The requests behind the per-variant figures, lift and guardrails, and whether they were randomized:
    requests of randomized epochs, each user under the variant that first served them (later requests from
    another variant, after a weight change, are set aside). When no epoch was randomized (a split that
    serves one variant, e.g. the champion alone, or an experiment stopped from the start), every request
    is described under its user's first variant and the caller compares nothing."""
    randomized = assigned["epoch"].map({e: s.randomized for e, s in splits.items()}).astype(bool)
    if len(assigned) and not randomized.any():
        notes.append("no request was randomized between variants (each split served one variant): the "
                     "figures describe each variant's requests, and nothing is compared")
        rows, was_randomized = assigned, False
    else:
        stopped_rows = assigned[~randomized]
        if len(stopped_rows):
            notes.append(f"{len(stopped_rows)} request(s) were served while the split sent everyone to one "
                         "variant (stopped, or one variant weighted): not randomized, so they are left out of "
                         "accuracy, lift and guardrails (the epochs table counts them)")
        rows, was_randomized = assigned[randomized], True
    first = rows.groupby("_user", sort=False)["variant"].transform("first")
    keep = rows["variant"] == first
    if not keep.all():
        moved = rows.loc[~keep, "_user"].nunique()
        notes.append(f"{moved} user(s) were served by another variant after a weight change; their "
                     f"{int((~keep).sum())} later request(s) from it are set aside: each user counts once, "
                     "under the variant that first served them")
    return rows[keep], was_randomized


def accuracy(rows: pd.DataFrame, alpha: float) -> Accuracy:
    """Labelled correct / labelled, with Wilson's interval at the two-way effective sample size."""
    requests = len(rows)
    labelled_rows = rows[rows["correct"].notna()]
    labelled = len(labelled_rows)
    correct = int(labelled_rows["correct"].sum())
    ci = acc = design = None
    if labelled:
        acc = correct / labelled
        y = labelled_rows["correct"].to_numpy(dtype=float)
        est = clustered.mean(y, labelled_rows["_user"].to_numpy(), labelled_rows["_question"].to_numpy())
        clusters = min(labelled_rows["_user"].nunique(), labelled_rows["_question"].nunique())
        low, high = clustered.proportion_interval(correct, labelled, est, clusters, alpha)
        ci = Interval(low=low, high=high)
        if est is not None and 0 < acc < 1:
            design = est.variance / (acc * (1 - acc) / labelled)
    sources = labelled_rows["label_source"].value_counts()
    return Accuracy(requests=requests, labelled=labelled, correct=correct,
                    label_coverage=labelled / requests if requests else None,
                    questions=int(labelled_rows["question_key"].nunique()),
                    online_accuracy=acc, online_accuracy_ci=ci, design_effect=design,
                    labels_by_source={str(k): int(n) for k, n in sources.items() if k})


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
         min_units: int, min_questions: int) -> Lift:
    """Treatment minus control online accuracy: always-valid (mSPRT) and fixed-horizon figures, both
    with two-way cluster-robust variances."""
    from serving.sequential import mixture_sprt_path

    t = rows[rows["correct"].notna()]
    c = control_rows[control_rows["correct"].notna()]
    n_t, n_c = len(t), len(c)
    both = pd.concat([t.assign(_treat=True), c.assign(_treat=False)]).sort_values("ts", kind="stable")
    questions = int(both["question_key"].nunique())
    if n_t == 0 or n_c == 0:
        which = "this variant" if n_t == 0 else "the control"
        return Lift(control=control, difference=None, relative=None, questions=questions, sequential=None,
                    fixed_horizon=None, decision="no_labels", verdict=f"no labels yet in {which}")
    p_t, p_c = float(t["correct"].mean()), float(c["correct"].mean())
    diff = p_t - p_c
    treat = both["_treat"].to_numpy(dtype=bool)
    y = both["correct"].to_numpy(dtype=float)
    users, question_codes = both["_user"].to_numpy(), both["_question"].to_numpy()

    est = clustered.difference(y, treat, users, question_codes)
    fixed = FixedHorizonLift(ci=None, p_value=None, standard_error=None, degrees_of_freedom=None)
    if est is not None:
        fixed = FixedHorizonLift(ci=_interval(*est.interval(alpha)), p_value=est.p_value(),
                                 standard_error=est.standard_error, degrees_of_freedom=est.df)

    path = mixture_sprt_path(treat, users, y, question=question_codes, alpha=alpha, mixture_sd=mixture_sd,
                             min_units=min_units, min_questions=min_questions)
    sequential = None
    if path.looks == 0:
        decision = "collecting"
        verdict = (f"collecting: needs {min_units} labelled users in each variant and {min_questions} "
                   "distinct questions")
    else:
        ci = _interval(path.ci_low[-1], path.ci_high[-1])
        sequential = SequentialLift(ci=ci, p_value=float(path.p_value[-1]), looks=path.looks,
                                    history=_history(both["ts"], path))
        if ci is None:
            decision, verdict = "collecting", "inconsistent: the interval sequence became empty (check the data for drift)"
        elif ci.low > 0:
            decision, verdict = "better", "better than control"
        elif ci.high < 0:
            decision, verdict = "worse", "worse than control"
        else:
            decision, verdict = "no_difference", "no detectable difference yet"
    return Lift(control=control, difference=diff, relative=diff / p_c if p_c > 0 else None, questions=questions,
                sequential=sequential, fixed_horizon=fixed, decision=decision, verdict=verdict)


def guardrail_checks(rows: pd.DataFrame, control_rows: pd.DataFrame, thresholds: GuardrailThresholds,
                     alpha: float) -> list[GuardrailCheck]:
    """Each guardrail of the variant against the control: the change, its always-valid interval (the
    mixture boundary at this look, as safe to read repeatedly as the lift), the threshold and whether it
    is breached (interval above 0 and change beyond the threshold)."""
    from serving.sequential import df_inflation, mixture_half_width

    both = pd.concat([rows.assign(_treat=True), control_rows.assign(_treat=False)])
    treat = both["_treat"].to_numpy(dtype=bool)
    users, questions = both["_user"].to_numpy(), both["_question"].to_numpy()
    out = []

    def check(metric: str, control_value: float | None, value: float | None, est: clustered.Estimate | None,
              tau: float, threshold: float | None, relative: bool) -> None:
        ci = None
        change = None if est is None else est.value
        if est is not None and est.variance > 0:
            half = float(mixture_half_width(est.variance * df_inflation(est.clusters, alpha), alpha, tau))
            low, high = est.value - half, est.value + half
            if relative:
                change, low, high = float(np.expm1(est.value)), float(np.expm1(low)), float(np.expm1(high))
            ci = _interval(low, high)
        elif relative and change is not None:
            change = float(np.expm1(change))
        breached = bool(ci is not None and ci.low > 0 and threshold is not None and change > threshold)
        if est is not None and est.variance == 0 and est.value == 0:
            status = "none in either variant"
        elif ci is None:
            status = "not yet testable"
        elif breached:
            status = f"breached: worse than control by more than the threshold {_fmt(threshold, relative)}"
        elif ci.low > 0:
            status = ("worse than control, within the threshold" if threshold is not None
                      else "worse than control (no threshold set)")
        else:
            status = "no detectable degradation"
        out.append(GuardrailCheck(metric=metric, control_value=control_value, value=value, change=change, ci=ci,
                                  threshold=threshold, breached=breached, status=status))

    lat = both["latency_ms"].to_numpy(dtype=float)
    p95 = [float(np.percentile(x[np.isfinite(x)], 95)) if np.isfinite(x).any() else None
           for x in (lat[~treat], lat[treat])]
    check("latency_p95", p95[0], p95[1], clustered.log_p95_ratio(lat, treat, users, questions),
          LATENCY_MIXTURE_SD, thresholds.latency_p95_increase, relative=True)
    outcome = both["outcome"].to_numpy()
    for name in RATE_METRICS:
        y = (outcome == name).astype(float)
        values = [float(y[~treat].mean()) if (~treat).any() else None, float(y[treat].mean()) if treat.any() else None]
        est = clustered.difference(y, treat, users, questions) if y.any() else None
        if est is None and not y.any() and treat.any() and (~treat).any():
            est = clustered.Estimate(0.0, 0.0, 0)  # neither variant had one: no change, nothing to test
        check(f"{name}_rate", values[0], values[1], est, RATE_MIXTURE_SD,
              getattr(thresholds, f"{name}_rate_increase"), relative=False)
    return out


def _fmt(threshold: float | None, relative: bool) -> str:
    if threshold is None:
        return "—"
    return f"+{threshold:.0%}" if relative else f"+{threshold * 100:.1f} pt"


def _history(ts: pd.Series, path: SequentialPath) -> list[LiftPoint]:
    """Up to HISTORY_POINTS evenly spaced evaluable looks of the path, always including the last one."""
    evaluable = np.flatnonzero(path.evaluable)
    if len(evaluable) == 0:
        return []
    picks = np.unique(np.r_[evaluable[np.linspace(0, len(evaluable) - 1, HISTORY_POINTS).astype(int)],
                            evaluable[-1]])
    times = ts.to_numpy()
    return [LiftPoint(ts=pd.Timestamp(times[i]).to_pydatetime(), labelled=int(i) + 1,
                      difference=float(path.difference[i]), low=_finite(path.ci_low[i]),
                      high=_finite(path.ci_high[i]))
            for i in picks]


def _finite(x: float) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _interval(low: float, high: float) -> Interval | None:
    low_f, high_f = _finite(low), _finite(high)
    if low_f is None or high_f is None or low_f > high_f:
        return None
    return Interval(low=low_f, high=high_f)
