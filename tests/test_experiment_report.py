"""The experiment report: trust checks per epoch, two-way clustered lift, guardrails, empty data, escaping,
and the page in Chromium.

Statistical behaviour is checked by simulation: rates over many seeded experiments, printed with ``-s``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from serving.assignment import assign, split_epoch, split_shares
from serving.experiment_report import (
    RECORD_COLUMNS,
    EpochSplit,
    GuardrailThresholds,
    VariantWeight,
    build_report,
    render_html,
)
from serving.questions import normalized_question
from serving.sequential import mixture_sprt_path

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "reports" / "test-artifacts"
AB = [VariantWeight(name="champion", weight=50, model_version="3", prompt_version="sql@2"),
      VariantWeight(name="challenger", weight=50, model_version="4", prompt_version="sql@3")]


def make_records(variant: np.ndarray, user: list[str | None], correct: np.ndarray | list | None = None, *,
                 outcome: list[str] | None = None, latency: np.ndarray | None = None,
                 random_assignment: np.ndarray | None = None, epoch: list[str | None] | None = None,
                 question: list[str] | None = None) -> pd.DataFrame:
    """Rows in the contract's shape, one minute apart, in the given (time) order. By default every request
    asks its own question and carries no epoch (as recorded before epochs were kept)."""
    n = len(variant)
    labels = pd.array([None] * n if correct is None else list(correct), dtype="boolean")
    return pd.DataFrame({
        "query_id": [f"q{i}" for i in range(n)],
        "ts": pd.date_range("2026-11-01", periods=n, freq="min", tz="UTC"),
        "variant": pd.Series(variant, dtype=object),
        "user_hash": pd.Series(user, dtype=object),
        "random_assignment": (np.array([u is None for u in user]) if random_assignment is None
                              else random_assignment),
        "outcome": outcome if outcome is not None else ["ok"] * n,
        "latency_ms": latency if latency is not None else np.full(n, 100.0),
        "rows_returned": pd.array([1] * n, dtype="Int64"),
        "correct": labels,
        "epoch": pd.Series([None] * n if epoch is None else epoch, dtype=object),
        "question": pd.Series([f"question number {i}" for i in range(n)] if question is None else question,
                              dtype=object),
    })


def simulate_ab(rng: np.random.Generator, users: int, p_control: float, p_treatment: float,
                share: float = 0.5) -> pd.DataFrame:
    """One labelled request per user; users split by ``share`` (challenger)."""
    treat = rng.random(users) < share
    correct = rng.random(users) < np.where(treat, p_treatment, p_control)
    return make_records(np.where(treat, "challenger", "champion"), [f"u{i}" for i in range(users)], correct)


def load_benchmark() -> object:
    """benchmarks/ab_validity.py, the A/A benchmark, as a module (its simulator feeds some tests)."""
    path = ROOT / "benchmarks" / "ab_validity.py"
    spec = importlib.util.spec_from_file_location("ab_validity", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("ab_validity", module)
    spec.loader.exec_module(module)
    return module


# --- trust checks: users, requests per user, label coverage, per epoch -------------------------------------

def _srm_flag_rate(rng: np.random.Generator, weights: tuple[float, float], true_share: float, users: int,
                   seeds: int) -> float:
    variants = [VariantWeight(name="champion", weight=weights[0]),
                VariantWeight(name="challenger", weight=weights[1])]
    flagged = 0
    for _ in range(seeds):
        treat = rng.random(users) < true_share
        recs = make_records(np.where(treat, "challenger", "champion"), [f"u{i}" for i in range(users)])
        report = build_report("srm", variants, "champion", recs, {})
        users_check = report.epochs[0].checks[0]
        assert users_check.check == "users" and users_check.applicable
        flagged += users_check.flagged
    return flagged / seeds


def test_srm_flags_a_broken_split_and_not_a_healthy_one() -> None:
    rng = np.random.default_rng(7)
    healthy = _srm_flag_rate(rng, (50, 50), 0.5, 2000, 25)
    healthy_uneven = _srm_flag_rate(rng, (90, 10), 0.1, 2000, 25)
    broken = _srm_flag_rate(rng, (50, 50), 0.45, 4000, 25)       # a fifth of challenger users not logged
    broken_uneven = _srm_flag_rate(rng, (90, 10), 0.13, 4000, 25)
    print(f"SRM flag rate: healthy {healthy:.3f}, healthy 90/10 {healthy_uneven:.3f}, "
          f"broken 55/45 {broken:.3f}, broken 87/13 {broken_uneven:.3f}")
    assert healthy <= 0.04 and healthy_uneven <= 0.04    # expected 0.001: at most one in 25
    assert broken >= 0.95 and broken_uneven >= 0.9


def test_an_untrustworthy_report_gives_no_verdict_and_says_why_first() -> None:
    rng = np.random.default_rng(1)
    recs = simulate_ab(rng, 3000, 0.6, 0.8, share=0.4)          # the challenger really is much better...
    report = build_report("broken", AB, "champion", recs, {})   # ...but the split is broken
    assert report.srm.flagged and not report.trustworthy
    assert "not trustworthy" in report.headline and "users per variant" in report.headline
    lift = report.variants[1].lift
    assert lift is not None and lift.decision == "untrustworthy"
    assert lift.verdict.startswith("not trustworthy: users per variant do not match the split")
    assert lift.sequential is not None and lift.sequential.ci.low > 0   # the raw test would have said better
    body = json.dumps(report.model_dump(mode="json"))
    assert "better than control" not in body
    page = render_html(report)
    assert page.index('id="srm"') < page.index('id="untrusted"') < page.index('id="headline"') \
        < page.index('id="variants"')
    row = page.split('id="variants"')[1].split('data-variant="challenger"')[1].split("</tr>")[0]
    assert 'class="flag">not trustworthy' in row and "better than control" not in page


def test_checks_skip_too_few_users_and_stopped_epochs() -> None:
    recs = make_records(np.array(["champion", "challenger", "champion"]), ["a", "b", "c"])
    report = build_report("e", AB, "champion", recs, {})
    assert not any(c.applicable for c in report.epochs[0].checks) and not report.srm.flagged
    rng = np.random.default_rng(2)
    stopped = build_report("e", AB, "champion", simulate_ab(rng, 1000, 0.6, 0.6, share=0.1), {},
                           status="stopped:champion")
    users = stopped.epochs[0].checks[0]
    assert not users.applicable and not stopped.srm.flagged and "stopped" in users.note


def test_the_champion_served_alone_is_described_not_compared() -> None:
    """The usual state between experiments: one variant at 100%. Its requests are not randomized between
    variants, but its online accuracy is what the team watches: every request and label counts, nothing
    is compared. A configured challenger that a one-variant split never served gets no verdict either."""
    alone = [VariantWeight(name="champion", weight=100, model_version="1", prompt_version="sql@8")]
    users = [f"u{i % 8}" for i in range(24)]
    correct = [i % 6 != 5 for i in range(24)]
    epoch = split_epoch("s", [("champion", 100)])
    recs = make_records(np.array(["champion"] * 24, dtype=object), users, correct, epoch=[epoch] * 24,
                        random_assignment=np.zeros(24, dtype=bool))
    report = build_report("e", alone, "champion", recs, {},
                          epochs=[EpochSplit(epoch=epoch, shares={"champion": 1.0})])
    (champion,) = report.variants
    assert champion.users == 8 and champion.accuracy.requests == 24 and champion.accuracy.labelled == 24
    assert champion.accuracy.online_accuracy == pytest.approx(20 / 24)
    assert report.headline.startswith("Only the control is configured: there is nothing to compare.")
    assert "champion: online accuracy 83.3% (24 labelled of 24 requests)" in report.headline
    assert not report.srm.flagged and any("nothing is compared" in n for n in report.notes)
    weights = [("champion", 50), ("challenger", 50)]
    stop = split_epoch("s", weights, stopped_variant="champion")
    stopped = build_report("e", AB, "champion", make_records(np.array(["champion"] * 24, dtype=object), users,
                                                             correct, epoch=[stop] * 24),
                           {}, status="stopped:champion",
                           epochs=[EpochSplit(epoch=stop, shares=split_shares(weights, "champion"),
                                              stopped_variant="champion")])
    assert [v.lift for v in stopped.variants] == [None, None] and stopped.variants[0].accuracy.labelled == 24
    assert stopped.headline.startswith("No request was randomized between the variants")


def weight_change(rng: np.random.Generator, broken_share: float = 0.0) -> tuple[pd.DataFrame, list[EpochSplit]]:
    """1,200 users at 50/50 (two labelled requests each), then 60/40: half of them come back and 1,200 new
    users arrive. ``broken_share``: that share of the new challenger users' requests is never logged."""
    salt, before, after = "ramp-2026", [("champion", 50), ("challenger", 50)], [("champion", 60), ("challenger", 40)]
    rows: list[tuple[str, str, str]] = []
    early = [f"early-{i}" for i in range(1200)]
    late = [f"late-{i}" for i in range(1200)]
    for weights, people in ((before, early), (after, list(rng.permutation(early[:600] + late)))):
        for user in people:
            choice = assign(salt, weights, user)
            if user.startswith("late") and choice.variant == "challenger" and rng.random() < broken_share:
                continue
            rows += [(choice.variant, user, choice.epoch)] * 2
    variant, user, epoch = (list(x) for x in zip(*rows, strict=True))
    recs = make_records(np.array(variant, dtype=object), user, rng.random(len(rows)) < 0.6, epoch=epoch)
    splits = [EpochSplit(epoch=split_epoch(salt, w), shares=split_shares(w)) for w in (before, after)]
    return recs, splits


def test_a_weight_change_is_checked_epoch_by_epoch_and_counts_each_user_once() -> None:
    rng = np.random.default_rng(21)
    recs, splits = weight_change(rng)
    now = [VariantWeight(name="champion", weight=60), VariantWeight(name="challenger", weight=40)]
    report = build_report("ramp", now, "champion", recs, {}, epochs=splits)
    print("after 50/50 -> 60/40:", report.srm.note, [[c.p_value for c in e.checks] for e in report.epochs])
    assert not report.srm.flagged and report.trustworthy
    assert [e.epoch for e in report.epochs] == [s.epoch for s in splits]
    assert report.epochs[1].shares == {"champion": 0.6, "challenger": 0.4}
    assert [e.users for e in report.epochs] == [1200, 1800]
    assert all(c.applicable for e in report.epochs for c in e.checks)
    assert sum(v.users for v in report.variants) == 2400                  # people, each counted once
    moved = [n for n in report.notes if "after a weight change" in n]
    assert moved and 30 <= int(moved[0].split()[0]) <= 90                # ~10% of the 600 who came back
    # the same requests without epochs: one check against today's 60/40 raises the old false alarm
    legacy = build_report("ramp", now, "champion", recs.assign(epoch=None), {})
    assert legacy.srm.flagged and "users per variant" in legacy.srm.reasons[0]


def test_a_broken_split_inside_one_epoch_is_flagged() -> None:
    rng = np.random.default_rng(22)
    recs, splits = weight_change(rng, broken_share=0.3)
    now = [VariantWeight(name="champion", weight=60), VariantWeight(name="challenger", weight=40)]
    report = build_report("ramp", now, "champion", recs, {}, epochs=splits)
    first, second = report.epochs
    assert not first.checks[0].flagged and second.checks[0].flagged
    assert report.srm.flagged and splits[1].epoch in report.srm.reasons[0]
    assert report.variants[1].lift.decision == "untrustworthy"


def test_a_variant_added_later_is_checked_only_where_the_split_serves_it() -> None:
    salt, two, three = "grow", [("champion", 50), ("challenger", 50)], [("champion", 40), ("challenger", 40),
                                                                         ("newcomer", 20)]
    rows = [(assign(salt, w, f"u{i}").variant, f"u{i}", split_epoch(salt, w))
            for w, users in ((two, range(1000)), (three, range(1000, 2000))) for i in users]
    variant, user, epoch = (list(x) for x in zip(*rows, strict=True))
    variants = [VariantWeight(name=n, weight=w) for n, w in three]
    splits = [EpochSplit(epoch=split_epoch(salt, w), shares=split_shares(w)) for w in (two, three)]
    recs = make_records(np.array(variant, dtype=object), user, epoch=epoch)
    report = build_report("grow", variants, "champion", recs, {}, epochs=splits)
    assert not report.srm.flagged and all(e.checks[0].applicable for e in report.epochs)
    assert report.epochs[0].checks[0].observed["newcomer"] == 0
    recs.loc[3, "variant"] = "newcomer"                      # served by a variant the first split has not
    report = build_report("grow", variants, "champion", recs, {}, epochs=splits)
    assert report.srm.flagged and "outside this split" in report.epochs[0].checks[0].note


def test_dropped_requests_and_uneven_labelling_are_flagged() -> None:
    rng = np.random.default_rng(23)
    users = [f"u{i}" for i in range(1500)]
    arm = {u: assign("drops", [("champion", 50), ("challenger", 50)], u).variant for u in users}
    # a client that loses two-thirds of the challenger's requests but keeps every user
    rows = [(arm[u], u) for u in users for k in range(3) if arm[u] == "champion" or k == 0]
    variant, user = (list(x) for x in zip(*rows, strict=True))
    recs = make_records(np.array(variant, dtype=object), user, rng.random(len(rows)) < 0.6)
    report = build_report("drops", AB, "champion", recs, {})
    users_check, per_user, coverage = report.epochs[0].checks
    assert not users_check.flagged and per_user.flagged and not coverage.flagged
    assert per_user.observed["champion"] == pytest.approx(3.0) and per_user.observed["challenger"] == 1.0
    assert report.variants[1].lift.verdict.startswith("not trustworthy: requests per user differ")

    # every request logged, but the challenger's answers labelled half as often
    rows = [(arm[u], u) for u in users for _ in range(3)]
    variant, user = (list(x) for x in zip(*rows, strict=True))
    labelled = rng.random(len(rows)) < np.where(np.array(variant) == "champion", 0.8, 0.4)
    correct = np.where(labelled, rng.random(len(rows)) < 0.6, None)
    report = build_report("labels", AB, "champion", make_records(np.array(variant, dtype=object), user, correct), {})
    users_check, per_user, coverage = report.epochs[0].checks
    assert coverage.flagged and not per_user.flagged and not users_check.flagged
    assert any("label coverage differs" in r for r in report.srm.reasons)


def test_heterogeneous_aa_traffic_raises_no_flag() -> None:
    """A/A at 90/10 with skewed requests per user, users who label more or less, popular questions and
    long-tailed latency: the trust checks, guardrails and lift stay quiet."""
    alarms = {"srm": 0, "guardrail": 0, "lift": 0}
    variants = [VariantWeight(name="champion", weight=90), VariantWeight(name="challenger", weight=10)]
    for seed in range(25):
        rng = np.random.default_rng(100 + seed)
        n_users = 1500
        per_user = rng.geometric(0.4, n_users)
        user = np.repeat(np.arange(n_users), per_user)
        arm = np.where(rng.random(n_users) < 0.1, "challenger", "champion")[user]
        labels_often = rng.beta(2, 2, n_users)[user]
        q = np.minimum(rng.zipf(1.6, len(user)), 60)
        q_ok = rng.random(61) < 0.6
        correct = np.where(rng.random(len(user)) < labels_often, q_ok[q], None)
        order = rng.permutation(len(user))
        recs = make_records(arm[order], [f"u{u}" for u in user[order]], correct[order],
                            latency=rng.lognormal(6.5, 0.6, len(user)), question=[f"Q{k}?" for k in q[order]])
        report = build_report("aa", variants, "champion", recs, {})
        alarms["srm"] += report.srm.flagged
        alarms["guardrail"] += any(c.breached or (c.ci is not None and c.ci.low > 0)
                                   for c in report.variants[1].guardrail_checks)
        alarms["lift"] += report.variants[1].lift.decision in ("better", "worse")
    print(f"25 heterogeneous A/A experiments: {alarms}")
    assert alarms["srm"] <= 1 and alarms["guardrail"] <= 3 and alarms["lift"] <= 3


# --- lift: two-way clustered, fixed horizon and always valid -----------------------------------------------

def aa_false_positive_rates(experiments: int, users: int, look_every: int, alpha: float, share: float,
                            seed: int) -> tuple[float, float, float]:
    """A/A experiments, looked at after every ``look_every`` users: the share of experiments in which
    the sequential and the naive fixed-horizon test ever reach p <= alpha, and the naive test's rate when
    read once at the end. Users send 1-4 labelled requests and differ in how often they get correct
    answers (clustered data)."""
    from statsmodels.stats.proportion import test_proportions_2indep

    rng = np.random.default_rng(seed)
    seq_hits = naive_hits = once_hits = 0
    for _ in range(experiments):
        per_user = rng.integers(1, 5, users)
        user_p = rng.beta(6, 4, users)
        treat_user = rng.random(users) < share
        unit = np.repeat(np.arange(users), per_user)
        treat = treat_user[unit]
        correct = rng.random(len(unit)) < user_p[unit]
        path = mixture_sprt_path(treat, unit, correct, alpha=alpha)
        ends = np.cumsum(per_user)[look_every - 1::look_every] - 1       # last request of each look
        seq_hits += bool((path.p_value[ends] <= alpha).any())
        kt, nt = np.cumsum(correct & treat)[ends], np.cumsum(treat)[ends]
        kc, nc = np.cumsum(correct & ~treat)[ends], np.cumsum(~treat)[ends]
        naive_p = [test_proportions_2indep(a, b, c, d, method="score").pvalue
                   for a, b, c, d in zip(kt, nt, kc, nc, strict=True)]
        naive_hits += min(naive_p) <= alpha
        once_hits += naive_p[-1] <= alpha
    return seq_hits / experiments, naive_hits / experiments, once_hits / experiments


def test_sequential_false_positive_rate_stays_below_alpha_under_peeking() -> None:
    seq, naive, once = aa_false_positive_rates(experiments=300, users=2000, look_every=100, alpha=0.05,
                                               share=0.5, seed=11)
    print(f"A/A, 300 experiments x 20 looks: sequential FPR {seq:.3f}, naive fixed-horizon FPR {naive:.3f} "
          f"(read once at the end: {once:.3f})")
    assert seq <= 0.05 + 0.02
    assert naive >= 0.15 and naive >= once + 0.1     # peeking, not only clustering, inflates it


@pytest.mark.slow
def test_sequential_false_positive_rate_long_uneven_experiments() -> None:
    seq, naive, once = aa_false_positive_rates(experiments=2000, users=5000, look_every=100, alpha=0.05,
                                               share=0.2, seed=12)
    print(f"A/A 80/20, 2000 experiments x 50 looks: sequential FPR {seq:.3f}, naive FPR {naive:.3f} "
          f"(read once: {once:.3f})")
    assert seq <= 0.05 + 0.01
    assert naive >= 0.2


def test_repeated_questions_keep_the_error_rate() -> None:
    """200 A/A experiments of the benchmark's scenario b (80 questions, answers fixed per variant and
    question, 600 users x 3 requests) through build_report: both lift tests hold alpha, and the
    per-variant accuracy intervals cover the population accuracy. Variances clustered by user alone
    fail all three (about 50%, 40% and half the coverage)."""
    bench = load_benchmark()
    fixed = seq = covered = 0
    experiments = 200
    for k in range(experiments):
        records = bench.simulate_records(np.random.default_rng(5_000 + k), "b")  # type: ignore[attr-defined]
        report = build_report("aa", bench.VARIANTS, "control", records, {}, epochs=bench.EPOCHS)  # type: ignore[attr-defined]
        lift = report.variants[1].lift
        fixed += lift.fixed_horizon.p_value <= 0.05
        seq += lift.sequential is not None and lift.sequential.p_value <= 0.05
        ci = report.variants[0].accuracy.online_accuracy_ci
        covered += ci.low <= bench.ACCURACY <= ci.high  # type: ignore[attr-defined]
    print(f"scenario b, {experiments} A/A experiments: fixed-horizon FPR {fixed / experiments:.3f}, "
          f"always-valid FPR {seq / experiments:.3f}, accuracy interval coverage {covered / experiments:.3f}")
    assert fixed / experiments <= 0.10 and seq / experiments <= 0.07
    assert covered / experiments >= 0.88
    assert report.variants[1].lift.questions == 80 and report.variants[1].accuracy.questions <= 80


def test_the_variance_is_two_way_and_matches_statsmodels() -> None:
    import statsmodels.api as sm
    from statsmodels.stats.sandwich_covariance import cov_cluster_2groups

    bench = load_benchmark()
    records = bench.simulate_records(np.random.default_rng(3), "b").sort_values("ts")  # type: ignore[attr-defined]
    treat = (records["variant"] == "treatment").to_numpy()
    y = records["correct"].to_numpy(dtype=float)
    users = pd.factorize(records["user_hash"])[0]
    questions = pd.factorize(records["question"].map(normalized_question))[0]
    assert questions.max() == 79    # the 4 spellings of each question are one question
    fit = sm.OLS(y, sm.add_constant(treat.astype(float))).fit()
    both, by_user, by_question = (np.diag(c)[1] for c in cov_cluster_2groups(fit, users, questions))
    expected = max(both, by_user, by_question)
    assert by_question > 5 * by_user       # the questions, not the users, carry the uncertainty here

    path = mixture_sprt_path(treat, users, y, question=questions, alpha=0.05)
    assert path.variance[-1] == pytest.approx(expected, rel=1e-9)
    report = build_report("e", bench.VARIANTS, "control", records, {}, epochs=bench.EPOCHS)  # type: ignore[attr-defined]
    fh = report.variants[1].lift.fixed_horizon
    assert fh.standard_error == pytest.approx(np.sqrt(expected), rel=1e-9) and fh.degrees_of_freedom == 79
    assert report.variants[1].lift.sequential.p_value == pytest.approx(path.p_value[-1])


def test_report_shows_the_running_minimum_p_value_at_each_look() -> None:
    rng = np.random.default_rng(5)
    recs = simulate_ab(rng, 1000, 0.6, 0.6)
    labelled = recs.sort_values("ts")
    path = mixture_sprt_path((labelled["variant"] == "challenger").to_numpy(), np.arange(len(labelled)),
                             labelled["correct"].to_numpy(dtype=bool), alpha=0.05,
                             question=np.arange(len(labelled)))
    previous = 1.0
    for end in (200, 400, 600, 800, 1000):
        lift = build_report("e", AB, "champion", recs.iloc[:end], {}).variants[1].lift
        assert lift is not None and lift.sequential is not None
        assert lift.sequential.p_value == pytest.approx(path.p_value[end - 1])
        assert lift.sequential.p_value <= previous
        previous = lift.sequential.p_value
        ci = lift.sequential.ci
        assert ci is not None and ci.low <= ci.high
        assert lift.sequential.history[-1].labelled == end and len(lift.sequential.history) <= 121


def test_a_real_effect_is_detected_in_both_directions() -> None:
    rng = np.random.default_rng(3)
    better = worse = 0
    for _ in range(10):
        up = build_report("e", AB, "champion", simulate_ab(rng, 4000, 0.60, 0.70), {}).variants[1].lift
        down = build_report("e", AB, "champion", simulate_ab(rng, 4000, 0.70, 0.60), {}).variants[1].lift
        better += up.verdict == "better than control"
        worse += down.verdict == "worse than control"
        assert up.sequential.p_value >= up.fixed_horizon.p_value     # the price of peeking
    print(f"0.60 -> 0.70 with 4000 users: detected {better}/10 better, {worse}/10 worse")
    assert better >= 9 and worse >= 9


@given(st.text(max_size=60))
def test_normalized_question_is_idempotent_and_ignores_case_spacing_and_punctuation(text: str) -> None:
    key = normalized_question(text)
    assert normalized_question(key) == key
    assert normalized_question(f"  {text.upper()} ?!") == normalized_question(text.upper())
    assert "  " not in key and key == key.strip()


def test_normalized_question_examples() -> None:
    same = ["Top 5 branches by deposits?", "top 5 branches  by deposits", "TOP 5 BRANCHES BY DEPOSITS!!",
            "Top\t5 branches, by deposits."]
    assert {normalized_question(q) for q in same} == {"top 5 branches by deposits"}
    assert normalized_question("top 10 branches by deposits") != normalized_question(same[0])
    assert normalized_question("Ｔｏｐ ５ branches by deposits") == "top 5 branches by deposits"   # NFKC


# --- guardrails ------------------------------------------------------------------------------------------

def guardrail_records(rng: np.random.Generator, slower: float = 1.0, extra_sql_errors: float = 0.0) -> pd.DataFrame:
    users = 2000
    user = np.repeat(np.arange(users), 2)
    arm = np.where(rng.random(users) < 0.5, "challenger", "champion")[user]
    challenger = arm == "challenger"
    latency = rng.lognormal(6.5, 0.5, len(user)) * np.where(challenger, slower, 1.0)
    error = rng.random(len(user)) < np.where(challenger, 0.03 + extra_sql_errors, 0.03)
    outcome = np.where(error, "sql_error", "ok").tolist()
    q = rng.integers(0, 300, len(user))
    return make_records(arm, [f"u{u}" for u in user], rng.random(len(user)) < 0.6, outcome=outcome,
                        latency=latency, question=[f"question {k}" for k in q])


def test_guardrails_flag_a_slower_challenger_with_more_sql_errors() -> None:
    rng = np.random.default_rng(31)
    slow = guardrail_records(rng, slower=1.24)
    report = build_report("g", AB, "champion", slow, {})
    checks = {c.metric: c for c in report.variants[1].guardrail_checks}
    p95 = checks["latency_p95"]
    print(f"24% slower: p95 change {p95.change:+.3f}, always-valid interval [{p95.ci.low:+.3f}, {p95.ci.high:+.3f}]")
    assert p95.breached and p95.threshold == 0.2 and p95.change > 0.2 and 0 < p95.ci.low <= 0.24 <= p95.ci.high
    lift = report.variants[1].lift
    assert lift.decision == "guardrail_breached" and lift.verdict == "guardrail breached: latency_p95"
    assert not checks["sql_error_rate"].breached and report.trustworthy
    page = render_html(report)
    cell = page.split('data-metric="latency_p95"')[1].split("</tr>")[0]
    assert 'class="flag">breached' in cell

    relaxed = build_report("g", AB, "champion", slow, {}, guardrails=GuardrailThresholds(latency_p95_increase=0.5))
    p95 = {c.metric: c for c in relaxed.variants[1].guardrail_checks}["latency_p95"]
    assert not p95.breached and p95.status == "worse than control, within the threshold"
    assert relaxed.variants[1].lift.decision != "guardrail_breached"

    errors = build_report("g", AB, "champion", guardrail_records(rng, extra_sql_errors=0.06), {})
    sql = {c.metric: c for c in errors.variants[1].guardrail_checks}["sql_error_rate"]
    assert sql.breached and sql.change > 0.02 and sql.ci.low > 0
    assert errors.variants[1].lift.verdict == "guardrail breached: sql_error_rate"


def test_guardrail_thresholds_come_from_the_experiment_file(tmp_path: Path) -> None:
    from serving.config import load_experiment
    from t2s.errors import ConfigError

    shipped = load_experiment(ROOT / "experiments" / "champion-vs-challenger.yaml").guardrails
    assert shipped.latency_p95_increase == 0.2 and shipped.sql_error_rate_increase == 0.02
    base = "name: e\nsalt: s\nvariants: [{name: a, alias: champion, weight: 1}]\n"
    for bad, field in (("guardrails: {latency_p95_increase: -0.2}", "latency_p95_increase"),
                       ("guardrails: {p99_latency: 0.2}", "p99_latency")):
        path = tmp_path / "e.yaml"
        path.write_text(base + bad + "\n")
        with pytest.raises(ConfigError, match=field):
            load_experiment(path)
    path.write_text(base + "guardrails: {latency_p95_increase: null}\n")
    assert load_experiment(path).guardrails.latency_p95_increase is None


# --- figures, edge cases -------------------------------------------------------------------------------

def test_empty_records_give_a_valid_no_data_report() -> None:
    empty = make_records(np.array([], dtype=object), [])
    assert list(empty.columns) == list(RECORD_COLUMNS)
    report = build_report("fresh", AB, "champion", empty, {"champion": 0.7, "challenger": None})
    body = json.loads(json.dumps(report.model_dump(mode="json"), allow_nan=False))
    assert body["has_data"] is False and body["data_from"] is None and body["epochs"] == []
    assert report.headline.startswith("No data yet")
    assert not report.srm.flagged
    assert all(v.accuracy.requests == 0 and v.accuracy.online_accuracy is None for v in report.variants)
    assert report.variants[1].lift.difference is None
    page = render_html(report)
    assert 'id="no-data"' in page and "70.0%" in page


def test_untyped_frames_and_users_served_by_two_variants() -> None:
    bare = build_report("e", AB, "champion", pd.DataFrame(columns=list(RECORD_COLUMNS)), {})
    assert not bare.has_data and bare.headline.startswith("No data yet")
    rows = [["q1", "2026-11-01T10:00:00Z", "champion", "u1", False, "ok", 12.0, 3, True, None, "a?"],
            ["q2", "2026-11-01T10:01:00Z", "challenger", "u1", False, "ok", 15.0, None, None, None, "b"],
            ["q3", "2026-11-01T10:02:00Z", "champion", None, True, "mystery", 9.0, None, False, None, "a"]]
    report = build_report("e", AB, "champion", pd.DataFrame(rows, columns=list(RECORD_COLUMNS)), {})
    assert report.epochs[0].checks[0].observed == {"champion": 1, "challenger": 0}
    assert [v.users for v in report.variants] == [1, 0]      # u1 counts once, under the first variant
    assert any("set aside" in n for n in report.notes)
    assert any("mystery" in n for n in report.notes)
    assert report.unassigned.accuracy.labelled == 1
    json.dumps(report.model_dump(mode="json"), allow_nan=False)


def test_a_variant_without_labels() -> None:
    rng = np.random.default_rng(4)
    recs = simulate_ab(rng, 600, 0.6, 0.6)
    recs.loc[recs["variant"] == "challenger", "correct"] = pd.NA
    report = build_report("e", AB, "champion", recs, {})
    ch = report.variants[1]
    assert ch.accuracy.requests > 250 and ch.accuracy.labelled == 0
    assert ch.accuracy.label_coverage == 0 and ch.accuracy.online_accuracy is None
    assert ch.lift.decision == "untrustworthy"                  # half the traffic unlabelled on one side
    assert ch.lift.sequential is None and ch.lift.difference is None
    assert report.variants[0].accuracy.online_accuracy is not None
    assert "no labels yet" in render_html(report)


def test_figures_guardrails_and_requests_without_user_id() -> None:
    n = 20
    variant = np.array(["champion", "challenger"] * (n // 2))
    users: list[str | None] = [f"u{i % 8}" for i in range(n)]
    users[-4:] = [None] * 4                      # four requests without a user id
    outcome = ["ok"] * n
    outcome[0], outcome[2], outcome[4], outcome[1] = "sql_error", "empty", "guard_refused", "timeout"
    correct = [True, True, False, None] * 5
    recs = make_records(variant, users, correct, outcome=outcome, latency=np.arange(1, n + 1, dtype=float),
                        question=["How many?", "how many", "Top 5?"] * 6 + ["x", "y"])
    report = build_report("e", AB, "champion", recs, {"champion": 0.81})
    champ, chall = report.variants
    assert (champ.users, champ.accuracy.requests, chall.accuracy.requests) == (4, 8, 8)
    assert champ.accuracy.labelled == 8 and champ.accuracy.correct == 4
    assert chall.accuracy.labelled == 4 and chall.accuracy.label_coverage == 0.5
    assert champ.accuracy.questions == 2 and chall.lift.questions == 2   # "How many?" and "how many" are one
    assert champ.guardrails.sql_error_rate == pytest.approx(1 / 8)
    assert champ.guardrails.empty_rate == pytest.approx(1 / 8)
    assert champ.guardrails.guard_refused_rate == pytest.approx(1 / 8)
    assert chall.guardrails.timeout_rate == pytest.approx(1 / 8)
    assert champ.guardrails.latency_p50_ms == pytest.approx(8.0)               # 1,3,...,15
    assert champ.offline_accuracy == 0.81 and chall.offline_accuracy is None
    ci = champ.accuracy.online_accuracy_ci
    assert ci.low < 0.5 < ci.high
    assert report.unassigned.accuracy.requests == 4
    assert report.unassigned.requests_by_variant == {"challenger": 2, "champion": 2}
    assert report.epochs[0].users == 8 and report.epochs[0].requests == 16
    assert {c.metric for c in chall.guardrail_checks} >= {"latency_p95", "sql_error_rate", "timeout_rate"}


def test_contract_violations_are_refused_with_the_fix() -> None:
    recs = make_records(np.array(["champion"]), ["u"])
    with pytest.raises(ValueError, match="control 'baseline'"):
        build_report("e", AB, "baseline", recs, {})
    with pytest.raises(ValueError, match="correct"):
        build_report("e", AB, "champion", recs.drop(columns=["correct"]), {})
    with pytest.raises(ValueError, match="question"):
        build_report("e", AB, "champion", recs.drop(columns=["question"]), {})
    with pytest.raises(ValueError, match="status"):
        build_report("e", AB, "champion", recs, {}, status="stopped:nobody")


def test_the_store_gives_the_report_its_columns_epochs_and_questions(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from serving.store import QueryRecord, Store

    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    try:
        weights = [("champion", 60), ("challenger", 40)]
        for i, user in enumerate(["ann", "bob", "cy"]):
            choice = assign("s", weights, user)
            store.record_epoch("e", choice.epoch, split_shares(weights), dict(weights), None)   # idempotent
            store.record(QueryRecord(
                query_id=f"q{i}", ts=datetime.now(UTC), user_hash=user, user_id=None, random_assignment=False,
                experiment="e", variant=choice.variant, prompt_version=None, model_version=None, model=None,
                database="bank", question=f"How many loans? #{i}", sql="SELECT 1", outcome="ok", detail=None,
                latency_ms=5.0, rows_returned=1, principal="key:test", epoch=choice.epoch))
        store.label("q0", True, None, None, principal="key:test")
        store.label("q1", False, None, None, principal="key:reviewer", reviewer=True)
        frame = store.records_frame("e")
        epochs = store.epochs("e")
    finally:
        store.close()
    assert [e["epoch"] for e in epochs] == [split_epoch("s", weights)]
    assert epochs[0]["shares"] == {"champion": 0.6, "challenger": 0.4} and epochs[0]["weights"]["champion"] == 60
    assert set(RECORD_COLUMNS) <= set(frame.columns) and frame["question"].iloc[0] == "How many loans? #0"
    simulated = load_benchmark().simulate_records(np.random.default_rng(0), "c", users=4)  # type: ignore[attr-defined]
    assert list(simulated.columns) == list(RECORD_COLUMNS)
    assert {c: str(frame[c].dtype) for c in RECORD_COLUMNS} == {c: str(simulated[c].dtype) for c in RECORD_COLUMNS}
    report = build_report("e", [VariantWeight(name=n, weight=w) for n, w in weights], "champion", frame, {},
                          epochs=[EpochSplit(**{k: e[k] for k in ("epoch", "shares", "stopped_variant",
                                                                  "recorded_at")}) for e in epochs])
    assert report.epochs[0].split_recorded and report.epochs[0].recorded_at is not None
    by_source: dict[str, int] = {}
    for v in report.variants:
        for source, n in v.accuracy.labels_by_source.items():
            by_source[source] = by_source.get(source, 0) + n
    assert by_source == {"owner": 1, "reviewer": 1}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attrs += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_hostile_names_are_escaped() -> None:
    evil_exp = "<script>alert('x')</script>"
    evil = ['"><img src=x onerror=alert(1)>', "</title><svg onload=alert(2)>&amp;"]
    variants = [VariantWeight(name=evil[0], weight=1, model_version="<b>m</b>", prompt_version="p\"'<"),
                VariantWeight(name=evil[1], weight=1)]
    rng = np.random.default_rng(8)
    recs = simulate_ab(rng, 400, 0.6, 0.6).replace({"variant": {"champion": evil[0], "challenger": evil[1]}})
    recs["epoch"] = "<i>epoch</i>"
    recs["question"] = "<script>alert(3)</script>"
    page = render_html(build_report(evil_exp, variants, evil[0], recs, {evil[0]: 0.5}))
    parser = _Tags()
    parser.feed(page)
    assert not parser.tags & {"script", "img", "b", "i", "iframe", "link"}
    assert not [a for a, _ in parser.attrs if a.startswith("on")]
    text = "".join(parser.text)
    assert evil_exp in text and evil[0] in text and evil[1] in text and "<i>epoch</i>" in text
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page


# --- the page in a real browser ------------------------------------------------------------------------

def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        reason = "chromium not installed (infra/local/install_system_deps.sh installs Debian's chromium)"
        if os.environ.get("T2S_REQUIRE_BROWSER"):
            pytest.fail(f"a browser is required here (T2S_REQUIRE_BROWSER) but {reason}")
        pytest.skip(reason)
    return exe


def _run_chromium(exe: str, *args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="t2s-chromium-") as profile:
        return subprocess.run(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120, check=True)


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    exe = _chromium()
    rng = np.random.default_rng(9)
    recs = simulate_ab(rng, 3000, 0.62, 0.71)
    report = build_report("nightly-sql", AB, "champion", recs, {"champion": 0.64, "challenger": 0.69})
    page = tmp_path / "experiment.html"
    page.write_text(render_html(report), encoding="utf-8")
    dom = _run_chromium(exe, "--dump-dom", page.as_uri()).stdout

    table = dom.split('id="variants"', 1)[1].split("</table>", 1)[0]
    rows: dict[str, str] = {}
    for chunk in table.split("<tr")[1:]:
        if 'data-variant="' in chunk:
            rows[chunk.split('data-variant="', 1)[1].split('"', 1)[0]] = chunk.split("</tr>", 1)[0]
    for v in report.variants:
        row = rows[v.name]
        assert f">{v.users}<" in row and f">{v.accuracy.requests}<" in row and f">{v.accuracy.questions}<" in row
        assert f"{v.accuracy.online_accuracy * 100:.1f}%" in row
        assert f"{v.offline_accuracy * 100:.1f}%" in row
    assert f"{report.variants[1].lift.difference * 100:+.1f} pp" in rows["challenger"]
    assert 'class="better">better than control' in rows["challenger"]
    assert dom.index('id="srm"') < dom.index('id="variants"') and "<svg" in dom
    assert "Estimand:" in dom and 'id="epochs"' in dom and 'id="guardrail-checks"' in dom
    chart = dom.split('class="lift-chart"', 1)[1].split("</svg>", 1)[0]
    history = report.variants[1].lift.sequential.history
    assert len(history) > 50 and len(chart.split('points="')[2].split('"')[0].split()) == len(history)
    assert f"{history[-1].labelled} labelled" in chart

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "experiment_report.png"
    shot.unlink(missing_ok=True)
    _run_chromium(exe, f"--screenshot={shot}", "--window-size=1200,2400", page.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (1200, 2400)
    print(f"screenshot: {shot}")
