"""The experiment report: per-variant online accuracy, lift vs control, trust checks and guardrails.

Contract (shared with the serving app): ``build_report(experiment, variants, control, records,
offline_accuracy, alpha, status, *, epochs, guardrails) -> ExperimentReport`` and
``render_html(report) -> str``. ``records`` has one row per served request with the columns in
``RECORD_COLUMNS`` (what ``Store.records_frame`` returns; its optional ``label_source`` is counted per
variant); ``epochs`` gives the split in force in each epoch
(``Store.epochs``); an empty frame gives a valid report that says there is no data yet.
``ExperimentReport.model_dump(mode="json")`` is the JSON API body.

The estimand (:data:`ESTIMAND`): a variant's accuracy over the questions users ask, across users — the
share of labelled requests answered correctly, where both the users and the questions they ask are
samples from populations that keep producing new ones. Serving caches answers per (variant, question),
so every user asking a variant the same question gets the same answer: outcomes are correlated within a
question as well as within a user. Every interval and test below uses a variance that is valid under both
(two-way cluster-robust, users x normalized question text: ``serving.clustered``, ``serving.sequential``).

What is computed, and why:
- Trust checks first (``serving.srm``), per epoch of the split (``serving.assignment.split_epoch``): users
  per variant against that epoch's split (chi-squared), requests per user and label coverage per variant
  against the control's. Any flagged check marks every result below it not trustworthy, and no verdict
  then says better or worse.
- The headline population: a user belongs to the variant that first served them in a randomized epoch;
  requests another variant served them later (after a weight change) are set aside, and requests served
  while the experiment was stopped on one variant are not randomized and are left out. No user is counted
  twice.
- Online accuracy = labelled correct / labelled, with Wilson's interval at the two-way effective sample
  size; the number of distinct questions behind it.
- Lift = treatment - control accuracy, with an always-valid interval and p-value (mixture SPRT,
  ``serving.sequential``: valid however often the report is read) and, for comparison, the fixed-horizon
  t test and interval (statsmodels), valid only when read once at a sample size fixed in advance.
- Guardrails per variant (outcome rates, p50/p95 latency) and, against the control, always-valid
  intervals with thresholds from the experiment file; a breached guardrail is the variant's verdict.
- Requests without a user id were assigned at random per request: they are reported on their own and
  kept out of the trust checks, the lift and the guardrail comparisons.

Only pandas, numpy, scipy, statsmodels, pydantic and the standard library are imported at call time.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from serving.sequential import DEFAULT_MIN_QUESTIONS, DEFAULT_MIN_UNITS, DEFAULT_MIXTURE_SD

if TYPE_CHECKING:
    import pandas as pd

RECORD_COLUMNS = ("query_id", "ts", "variant", "user_hash", "random_assignment", "outcome", "latency_ms",
                  "rows_returned", "correct", "epoch", "question")
OUTCOMES = ("ok", "guard_refused", "sql_error", "empty", "timeout", "llm_error")
SRM_THRESHOLD = 0.001
SRM_MIN_EXPECTED = 5.0
RATE_MIXTURE_SD = 0.02
LATENCY_MIXTURE_SD = 0.10
ESTIMAND = ("accuracy over the questions users ask, across users: the share of labelled requests answered "
            "correctly, with users and their (normalized) questions both treated as samples from larger "
            "populations; lift = treatment minus control accuracy")
SEQUENTIAL_REFERENCE = ("Johari, Koomen, Pekelis & Walsh, 'Always Valid Inference: Continuous Monitoring "
                        "of A/B Tests', Operations Research 70(3), 2022")
VARIANCE_REFERENCE = ("Cameron, Gelbach & Miller, 'Robust Inference With Multiway Clustering', Journal of "
                      "Business & Economic Statistics 29(2), 2011; t with G-1 degrees of freedom: Cameron & "
                      "Miller, 'A Practitioner's Guide to Cluster-Robust Inference', J. Human Resources "
                      "50(2), 2015")
SRM_REFERENCE = ("Kohavi, Tang & Xu, 'Trustworthy Online Controlled Experiments', 2020, ch. 21 (sample "
                 "ratio mismatch; periods with different splits are checked separately)")

Decision = Literal["better", "worse", "no_difference", "collecting", "no_labels", "untrustworthy",
                   "guardrail_breached"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VariantWeight(_Model):
    """One configured variant, in config order."""

    name: str = Field(min_length=1)
    weight: float = Field(gt=0)
    model_version: str | None = None
    prompt_version: str | None = None


class EpochSplit(_Model):
    """The split in force during one epoch, as the store recorded it."""

    epoch: str
    shares: dict[str, float] = Field(description="share of users per variant (bucket ranges / buckets)")
    stopped_variant: str | None = None
    recorded_at: datetime | None = Field(None, description="when a server first assigned under this split")


class GuardrailThresholds(_Model):
    """How much worse than the control a variant may be before its verdict is "guardrail breached".

    Latency is relative (0.20 = p95 20% above the control's); rates are absolute shares of requests
    (0.02 = 2 points more SQL errors). None: shown with its interval, never breached.
    """

    latency_p95_increase: float | None = Field(0.20, gt=0)
    sql_error_rate_increase: float | None = Field(0.02, gt=0, le=1)
    timeout_rate_increase: float | None = Field(0.02, gt=0, le=1)
    llm_error_rate_increase: float | None = Field(0.02, gt=0, le=1)
    guard_refused_rate_increase: float | None = Field(None, gt=0, le=1)
    empty_rate_increase: float | None = Field(None, gt=0, le=1)


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


class GuardrailCheck(_Model):
    """One guardrail of a variant against the control, with an always-valid interval."""

    metric: str = Field(description="latency_p95 (relative change) or an outcome rate (absolute change)")
    control_value: float | None
    value: float | None
    change: float | None = Field(description="relative for latency_p95 (0.24 = 24% slower), else absolute")
    ci: Interval | None = Field(description="always-valid interval of the change at 1 - alpha")
    threshold: float | None
    breached: bool = Field(description="the interval lies above 0 and the change exceeds the threshold")
    status: str


class Accuracy(_Model):
    requests: int
    labelled: int
    correct: int
    label_coverage: float | None
    questions: int = Field(description="distinct normalized questions behind the labelled requests")
    online_accuracy: float | None
    online_accuracy_ci: Interval | None = Field(
        description="Wilson interval at 1 - alpha at the two-way (user x question) effective sample size")
    design_effect: float | None = Field(
        description="two-way clustered variance / the variance if every labelled request were independent")
    labels_by_source: dict[str, int] = Field(
        description="labelled requests by who gave the effective label: owner, reviewer, unverified")


class LiftPoint(_Model):
    """The cumulative lift and its always-valid interval after ``labelled`` labelled requests."""

    ts: datetime
    labelled: int
    difference: float
    low: float | None
    high: float | None


class SequentialLift(_Model):
    ci: Interval | None
    p_value: float
    looks: int = Field(description="labelled requests at which the test could be evaluated")
    history: list[LiftPoint] = Field(description="at most 120 points of the cumulative lift over time")


class FixedHorizonLift(_Model):
    ci: Interval | None
    p_value: float | None
    standard_error: float | None
    degrees_of_freedom: int | None = Field(description="G - 1, G the smaller of the user and question counts")


class Lift(_Model):
    """Treatment minus control online accuracy (absolute, 0..1 scale)."""

    control: str
    difference: float | None
    relative: float | None
    questions: int = Field(description="distinct normalized questions behind both variants' labels")
    sequential: SequentialLift | None
    fixed_horizon: FixedHorizonLift | None
    decision: Decision
    verdict: str


class VariantReport(_Model):
    name: str
    weight: float
    share: float
    is_control: bool
    model_version: str | None
    prompt_version: str | None
    users: int = Field(description="users whose first randomized request this variant served")
    accuracy: Accuracy
    offline_accuracy: float | None
    guardrails: Guardrails
    guardrail_checks: list[GuardrailCheck]
    lift: Lift | None


class SrmTest(_Model):
    """One trust check of one epoch."""

    check: Literal["users", "requests_per_user", "label_coverage"]
    applicable: bool
    observed: dict[str, float]
    expected: dict[str, float] | None
    statistic: float | None
    p_value: float | None
    flagged: bool
    note: str


class EpochReport(_Model):
    epoch: str
    shares: dict[str, float]
    stopped_variant: str | None
    split_recorded: bool = Field(description="the split comes from the store (else: the configured weights)")
    recorded_at: datetime | None
    first_request: datetime | None
    last_request: datetime | None
    users: int
    requests: int
    checks: list[SrmTest]


class SrmCheck(_Model):
    flagged: bool
    threshold: float = SRM_THRESHOLD
    reasons: list[str]
    inconsistent_users: int = Field(description="users served by two variants within one epoch")
    note: str


class UnassignedTraffic(_Model):
    """Requests without a user id (assigned at random per request)."""

    requests_by_variant: dict[str, int]
    accuracy: Accuracy
    guardrails: Guardrails


class Methods(_Model):
    estimand: str
    variance: str
    variance_reference: str
    sequential: str
    reference: str
    mixture_sd: float
    min_labelled_users: int
    min_questions: int
    fixed_horizon: str
    accuracy_interval: str
    srm: str
    srm_reference: str
    guardrails: str
    guardrail_thresholds: GuardrailThresholds


class ExperimentReport(_Model):
    experiment: str
    status: str
    control: str
    alpha: float
    estimand: str
    generated_at: datetime
    data_from: datetime | None
    data_to: datetime | None
    has_data: bool
    trustworthy: bool
    headline: str
    srm: SrmCheck
    epochs: list[EpochReport]
    variants: list[VariantReport]
    unassigned: UnassignedTraffic
    notes: list[str]
    methods: Methods


def build_report(experiment: str, variants: list[VariantWeight], control: str, records: pd.DataFrame,
                 offline_accuracy: dict[str, float | None], alpha: float = 0.05, status: str = "running",
                 *, epochs: list[EpochSplit] | None = None, guardrails: GuardrailThresholds | None = None,
                 mixture_sd: float = DEFAULT_MIXTURE_SD, min_labelled_users: int = DEFAULT_MIN_UNITS,
                 min_questions: int = DEFAULT_MIN_QUESTIONS) -> ExperimentReport:
    """Compute the report (see the module docstring). Raises ``ValueError`` on arguments that break the
    contract (unknown control, duplicate variant names, missing columns, alpha outside (0, 1))."""
    from serving import report_stats as rs
    from serving import srm as srm_checks

    _check_arguments(variants, control, alpha, status)
    thresholds = guardrails or GuardrailThresholds()
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
    splits = rs.resolve_epochs(assigned, variants, epochs, stopped, notes)
    srm, epoch_reports = srm_checks.trust_checks(assigned, splits, control, names)
    analysed, randomized = rs.headline_population(assigned, splits, notes)

    control_rows = analysed[analysed["variant"] == control]
    reports = []
    for v in variants:
        rows = analysed[analysed["variant"] == v.name]
        lift = checks = None
        if v.name != control and randomized:
            lift = rs.lift(rows, control_rows, control, alpha, mixture_sd, min_labelled_users, min_questions)
            checks = rs.guardrail_checks(rows, control_rows, thresholds, alpha)
            _settle_verdict(lift, checks, srm)
        reports.append(VariantReport(
            name=v.name, weight=v.weight, share=v.weight / total_weight, is_control=v.name == control,
            model_version=v.model_version, prompt_version=v.prompt_version,
            users=int(rows["_user"].nunique()), accuracy=rs.accuracy(rows, alpha),
            offline_accuracy=offline_accuracy.get(v.name), guardrails=rs.guardrails(rows, OUTCOMES),
            guardrail_checks=checks or [], lift=lift))

    unassigned = UnassignedTraffic(
        requests_by_variant={str(k): int(n) for k, n in anonymous["variant"].value_counts().sort_index().items()},
        accuracy=rs.accuracy(anonymous, alpha), guardrails=rs.guardrails(anonymous, OUTCOMES))
    has_data = len(frame) > 0
    ts = frame["ts"]
    return ExperimentReport(
        experiment=experiment, status=status, control=control, alpha=alpha, estimand=ESTIMAND,
        generated_at=datetime.now(UTC),
        data_from=ts.min().to_pydatetime() if has_data else None,
        data_to=ts.max().to_pydatetime() if has_data else None,
        has_data=has_data, trustworthy=not srm.flagged,
        headline=_headline(experiment, has_data, srm, reports, randomized),
        srm=srm, epochs=epoch_reports, variants=reports, unassigned=unassigned, notes=notes,
        methods=_methods(mixture_sd, min_labelled_users, min_questions, thresholds))


def render_html(report: ExperimentReport) -> str:
    """One self-contained HTML page (inline CSS and SVG, no scripts); every text is escaped."""
    from serving.report_html import render

    return render(report)


def _settle_verdict(lift: Lift, checks: list[GuardrailCheck], srm: SrmCheck) -> None:
    """One verdict per variant: untrustworthy beats a breached guardrail, which beats the lift's result."""
    breached = [c.metric for c in checks if c.breached]
    if srm.flagged:
        lift.decision = "untrustworthy"
        lift.verdict = "not trustworthy: " + "; ".join(srm.reasons)
    elif breached:
        lift.decision = "guardrail_breached"
        lift.verdict = "guardrail breached: " + ", ".join(breached)


def _methods(mixture_sd: float, min_users: int, min_questions: int, thresholds: GuardrailThresholds) -> Methods:
    return Methods(
        estimand=ESTIMAND,
        variance=("two-way cluster-robust variance, users x normalized question text (case, whitespace and "
                  "punctuation folded), with G/(G-1)(N-1)/(N-K) per dimension; tests and intervals use t "
                  "with G-1 degrees of freedom, G the smaller cluster count"),
        variance_reference=VARIANCE_REFERENCE,
        sequential=("mixture SPRT on the difference of online accuracies with the two-way cluster-robust "
                    "plug-in variance, scaled by (t_{G-1}/z)^2; p-value and interval valid at every look"),
        reference=SEQUENTIAL_REFERENCE, mixture_sd=mixture_sd, min_labelled_users=min_users,
        min_questions=min_questions,
        fixed_horizon=("OLS of correct on the variant with two-way cluster-robust covariance (statsmodels), "
                       "t test and interval on G-1 degrees of freedom; valid only when read once at a sample "
                       "size fixed in advance"),
        accuracy_interval=("Wilson interval at the effective sample size p(1-p)/V shrunk by (z/t_{G-1})^2, V "
                           "the two-way cluster-robust variance (Korn & Graubard, Survey Methodology 24(2), "
                           "1998)"),
        srm=(f"per epoch of the split: chi-squared of users per variant against that epoch's split; Welch t "
             f"test of requests per user and a two-way clustered test of label coverage, each variant "
             f"against the control (Bonferroni over variants); flagged at p < {SRM_THRESHOLD}; users served "
             "by two variants within one epoch are flagged too"),
        srm_reference=SRM_REFERENCE,
        guardrails=(f"always-valid intervals (the mixture boundary at the current look, tau {RATE_MIXTURE_SD} "
                    f"for rates, {LATENCY_MIXTURE_SD} for log p95 latency): rate differences with two-way "
                    "cluster-robust variances; log p95 latency linearized through its influence values (Francisco "
                    "& Fuller, Annals of Statistics 19(1), 1991), then the same two-way variance; breached when "
                    "the interval lies above 0 and the change exceeds the experiment file's threshold"),
        guardrail_thresholds=thresholds)


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
              randomized: bool = True) -> str:
    if not has_data:
        return f"No data yet: no requests recorded for experiment {experiment!r}."
    if srm.flagged:
        return ("The results are not trustworthy: " + "; ".join(srm.reasons)
                + ". Check assignment, request logging and labelling before reading any figure.")
    parts = []
    for r in reports:
        if r.lift is None:
            continue
        if r.lift.difference is None:
            parts.append(f"{r.name}: {r.lift.verdict}")
            continue
        p = r.lift.sequential.p_value if r.lift.sequential else None
        p_text = f"always-valid p = {p:.3g}" if p is not None else "not yet testable"
        parts.append(f"{r.name}: {r.lift.difference * 100:+.1f} pp vs {r.lift.control} ({p_text}, "
                     f"{r.lift.questions} questions) — {r.lift.verdict}")
    if parts:
        return "; ".join(parts)
    why = ("Only the control is configured" if len(reports) == 1 or randomized
           else "No request was randomized between the variants (each split served one variant)")
    described = [f"{r.name}: online accuracy {r.accuracy.online_accuracy:.1%} "
                 f"({r.accuracy.labelled} labelled of {r.accuracy.requests} requests)"
                 for r in reports if r.accuracy.online_accuracy is not None]
    return f"{why}: there is nothing to compare." + (" " + "; ".join(described) + "." if described else "")
