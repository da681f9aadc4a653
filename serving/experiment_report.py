"""The experiment report: per-variant online accuracy, lift vs control, SRM check and guardrails.

Contract (shared with the serving app): ``build_report(experiment, variants, control, records,
offline_accuracy, alpha, status) -> ExperimentReport`` and ``render_html(report) -> str``. ``records`` has
one row per served request with the columns in ``RECORD_COLUMNS``; an empty frame gives a valid report
that says there is no data yet. ``ExperimentReport.model_dump(mode="json")`` is the JSON API body.

What is computed, and why:
- Sample-ratio mismatch first: a chi-squared test (scipy) of users per variant (each user counted under
  the first variant that served them) against the configured weights, flagged at p < 0.001. A flagged
  split means assignment or logging is broken, so every result below it is marked not trustworthy.
- Online accuracy = labelled correct / labelled requests, with a Wilson interval (statsmodels).
- Lift = treatment accuracy - control accuracy, with an always-valid interval and p-value (mixture SPRT,
  see ``serving.sequential``: valid however often the report is read), and for comparison the
  fixed-horizon score test and Newcombe interval (statsmodels), valid only when read once at a sample
  size fixed in advance.
- Guardrails per variant: outcome rates (SQL error, empty result, guard refusal, timeout, model error)
  and p50/p95 latency.
- Requests without a user id were assigned at random per request: they are reported on their own and
  kept out of the SRM check and the per-user lift.

Only pandas, numpy, scipy, statsmodels, pydantic and the standard library are imported at call time.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from serving.sequential import DEFAULT_MIN_UNITS, DEFAULT_MIXTURE_SD

if TYPE_CHECKING:
    import pandas as pd

RECORD_COLUMNS = ("query_id", "ts", "variant", "user_hash", "random_assignment", "outcome", "latency_ms",
                  "rows_returned", "correct")
OUTCOMES = ("ok", "guard_refused", "sql_error", "empty", "timeout", "llm_error")
SRM_THRESHOLD = 0.001
SRM_MIN_EXPECTED = 5.0
SEQUENTIAL_REFERENCE = ("Johari, Koomen, Pekelis & Walsh, 'Always Valid Inference: Continuous Monitoring "
                        "of A/B Tests', Operations Research 70(3), 2022")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VariantWeight(_Model):
    """One configured variant, in config order."""

    name: str = Field(min_length=1)
    weight: float = Field(gt=0)
    model_version: str | None = None
    prompt_version: str | None = None


class Interval(_Model):
    low: float
    high: float


class Guardrails(_Model):
    """Request outcomes and latency; rates are shares of all requests of the variant."""

    requests: int
    outcomes: dict[str, int]
    sql_error_rate: float | None
    empty_rate: float | None
    guard_refused_rate: float | None
    timeout_rate: float | None
    llm_error_rate: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None


class Accuracy(_Model):
    requests: int
    labelled: int
    correct: int
    label_coverage: float | None
    online_accuracy: float | None
    online_accuracy_ci: Interval | None = Field(description="Wilson interval at 1 - alpha")


class SequentialLift(_Model):
    ci: Interval | None
    p_value: float
    looks: int = Field(description="labelled requests at which the test could be evaluated")


class FixedHorizonLift(_Model):
    ci: Interval | None
    p_value: float | None


class Lift(_Model):
    """Treatment minus control online accuracy (absolute, 0..1 scale)."""

    control: str
    difference: float | None
    relative: float | None
    sequential: SequentialLift | None
    fixed_horizon: FixedHorizonLift | None
    verdict: str


class VariantReport(_Model):
    name: str
    weight: float
    share: float
    is_control: bool
    model_version: str | None
    prompt_version: str | None
    users: int
    accuracy: Accuracy
    offline_accuracy: float | None
    guardrails: Guardrails
    lift: Lift | None


class SrmCheck(_Model):
    applicable: bool
    observed_users: dict[str, int]
    expected_users: dict[str, float]
    statistic: float | None
    p_value: float | None
    threshold: float = SRM_THRESHOLD
    flagged: bool
    note: str


class UnassignedTraffic(_Model):
    """Requests without a user id (assigned at random per request)."""

    requests_by_variant: dict[str, int]
    accuracy: Accuracy
    guardrails: Guardrails


class Methods(_Model):
    sequential: str
    reference: str
    mixture_sd: float
    min_labelled_users: int
    fixed_horizon: str
    accuracy_interval: str
    srm: str


class ExperimentReport(_Model):
    experiment: str
    status: str
    control: str
    alpha: float
    generated_at: datetime
    data_from: datetime | None
    data_to: datetime | None
    has_data: bool
    trustworthy: bool
    headline: str
    srm: SrmCheck
    variants: list[VariantReport]
    unassigned: UnassignedTraffic
    notes: list[str]
    methods: Methods


def build_report(experiment: str, variants: list[VariantWeight], control: str, records: pd.DataFrame,
                 offline_accuracy: dict[str, float | None], alpha: float = 0.05, status: str = "running",
                 *, mixture_sd: float = DEFAULT_MIXTURE_SD,
                 min_labelled_users: int = DEFAULT_MIN_UNITS) -> ExperimentReport:
    """Compute the report (see the module docstring). Raises ``ValueError`` on arguments that break the
    contract (unknown control, duplicate variant names, missing columns, alpha outside (0, 1))."""
    from serving import report_stats as rs

    _check_arguments(variants, control, alpha, status)
    frame = rs.normalize_records(records, RECORD_COLUMNS)
    names = [v.name for v in variants]
    total_weight = sum(v.weight for v in variants)
    notes: list[str] = []

    unknown_outcomes = sorted(set(frame["outcome"].unique()) - set(OUTCOMES))
    if unknown_outcomes:
        notes.append(f"outcomes outside {', '.join(OUTCOMES)} were counted as requests only: "
                     f"{', '.join(unknown_outcomes)}")
    unconfigured = sorted(set(frame["variant"].unique()) - set(names))
    if unconfigured:
        notes.append(f"requests for variants not in the configuration are left out: {', '.join(unconfigured)}")

    assigned = frame[~frame["anonymous"] & frame["variant"].isin(names)]
    anonymous = frame[frame["anonymous"]]
    stopped = status.split(":", 1)[1] if status.startswith("stopped:") else None
    srm, moved = rs.srm_check(assigned, variants, stopped)
    if moved:
        notes.append(f"{moved} user(s) were served by more than one variant (weights changed or the experiment "
                     "was stopped); the SRM check counts each user under their first variant")

    control_rows = assigned[assigned["variant"] == control]
    reports = []
    for v in variants:
        rows = assigned[assigned["variant"] == v.name]
        acc = rs.accuracy(rows, alpha)
        lift = None
        if v.name != control:
            lift = rs.lift(rows, control_rows, control, alpha, mixture_sd, min_labelled_users)
        reports.append(VariantReport(
            name=v.name, weight=v.weight, share=v.weight / total_weight, is_control=v.name == control,
            model_version=v.model_version, prompt_version=v.prompt_version,
            users=int(rows["user_hash"].nunique()), accuracy=acc,
            offline_accuracy=offline_accuracy.get(v.name), guardrails=rs.guardrails(rows, OUTCOMES), lift=lift))

    unassigned = UnassignedTraffic(
        requests_by_variant={str(k): int(n) for k, n in anonymous["variant"].value_counts().sort_index().items()},
        accuracy=rs.accuracy(anonymous, alpha), guardrails=rs.guardrails(anonymous, OUTCOMES))
    has_data = len(frame) > 0
    ts = frame["ts"]
    trustworthy = not srm.flagged
    return ExperimentReport(
        experiment=experiment, status=status, control=control, alpha=alpha,
        generated_at=datetime.now(UTC),
        data_from=ts.min().to_pydatetime() if has_data else None,
        data_to=ts.max().to_pydatetime() if has_data else None,
        has_data=has_data, trustworthy=trustworthy,
        headline=_headline(experiment, has_data, srm, reports, alpha),
        srm=srm, variants=reports, unassigned=unassigned, notes=notes,
        methods=Methods(
            sequential=("mixture SPRT on the difference of online accuracies (normal mixture, "
                        "user-clustered plug-in variance); p-value and interval valid at every look"),
            reference=SEQUENTIAL_REFERENCE, mixture_sd=mixture_sd, min_labelled_users=min_labelled_users,
            fixed_horizon=("score test and Newcombe interval for two independent proportions; valid only "
                           "when read once at a sample size fixed in advance"),
            accuracy_interval="Wilson score interval over labelled requests",
            srm=f"chi-squared of users per variant against the configured weights, flagged at p < {SRM_THRESHOLD}",
        ))


def render_html(report: ExperimentReport) -> str:
    """One self-contained HTML page (inline CSS and SVG, no scripts); every text is escaped."""
    from serving.report_html import render

    return render(report)


def _check_arguments(variants: list[VariantWeight], control: str, alpha: float, status: str) -> None:
    names = [v.name for v in variants]
    if not names:
        raise ValueError("an experiment needs at least one variant: list them in the experiment config")
    if len(set(names)) != len(names):
        raise ValueError(f"variant names must be unique in the experiment config, got {names}")
    if control not in names:
        raise ValueError(f"control {control!r} is not one of the variants {names}: fix 'control' in the config")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    match = re.fullmatch(r"running|stopped:(.+)", status)
    if match is None or (match.group(1) is not None and match.group(1) not in names):
        raise ValueError(f"status must be 'running' or 'stopped:<variant>' with a configured variant, got {status!r}")


def _headline(experiment: str, has_data: bool, srm: SrmCheck, reports: list[VariantReport],
              alpha: float) -> str:
    if not has_data:
        return f"No data yet: no requests recorded for experiment {experiment!r}."
    if srm.flagged:
        return (f"Sample ratio mismatch (p = {srm.p_value:.2g} < {SRM_THRESHOLD}): the results are not "
                "trustworthy; check assignment and request logging.")
    parts = []
    for r in reports:
        if r.lift is None:
            continue
        if r.lift.difference is None:
            parts.append(f"{r.name}: {r.lift.verdict}")
            continue
        p = r.lift.sequential.p_value if r.lift.sequential else None
        p_text = f"always-valid p = {p:.3g}" if p is not None else "not yet testable"
        parts.append(f"{r.name}: {r.lift.difference * 100:+.1f} pp vs {r.lift.control} ({p_text}) — "
                     f"{r.lift.verdict}")
    return "; ".join(parts) if parts else "Only the control is configured: there is nothing to compare."

