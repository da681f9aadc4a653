"""Do the experiment report's lift tests hold their error rate when questions repeat? A/A and power.

Each simulated experiment: 600 users x 3 requests, users split 50/50, every request asks one of 80
distinct questions at random (written with varying case, spacing and punctuation, as people type them),
every answer labelled. The records frame has the exact shape of ``Store.records_frame`` and goes through
the report's own ``build_report``; an experiment counts as a positive for a test when its p-value in the
finished report is <= alpha (for the always-valid test that is "ever", since its p-value is a running
minimum over every look).

Scenarios, A/A (no true difference over the population of questions):
  a  identical systems: one correctness per question, shared by both variants;
  b  different systems of equal expected accuracy (0.6): each variant has its own correctness per
     question, fixed for every user who asks it (answers are cached per variant and question);
  c  independent answers: every request correct with probability 0.6.
and with a true +10 pt effect (power): a+ the treatment also fixes a quarter of the questions the
control gets wrong; b+ the treatment's per-question correctness has probability 0.7; c+ 0.7 per request.

For contrast the same data is also tested the way the report did before (variance clustered by user
only, ``--no-before`` to skip). The p-values are read whether or not the trust checks flagged an
experiment (at p < 0.001 on three checks they flag about 0.3% of healthy ones: counted on each line).

    .venv/bin/python benchmarks/ab_validity.py [--experiments 1000] [--workers 2] [--quick] [--seed 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serving.assignment import split_epoch, split_shares
from serving.experiment_report import EpochSplit, VariantWeight, build_report

USERS, REQUESTS_PER_USER, QUESTIONS, ACCURACY, EFFECT = 600, 3, 80, 0.6, 0.10
VARIANTS = [VariantWeight(name="control", weight=50), VariantWeight(name="treatment", weight=50)]
WEIGHTS = [(v.name, v.weight) for v in VARIANTS]
EPOCH = split_epoch("ab-validity", WEIGHTS)
EPOCHS = [EpochSplit(epoch=EPOCH, shares=split_shares(WEIGHTS))]
SCENARIOS = ("a", "b", "c", "a+", "b+", "c+")


def question_text(rng: np.random.Generator, k: np.ndarray) -> list[str]:
    """How people type question k: the same words with varying case, spacing and punctuation."""
    base = [f"Which branches had more than {q} loans last month" for q in k]
    style = rng.integers(0, 4, len(k))
    return [b + "?" if s == 0 else b.upper() if s == 1 else "  " + b.lower() + " ?? " if s == 2
            else b.replace(" ", "  ") + "." for b, s in zip(base, style, strict=True)]


def simulate_records(rng: np.random.Generator, scenario: str, users: int = USERS,
                     requests_per_user: int = REQUESTS_PER_USER, questions: int = QUESTIONS) -> pd.DataFrame:
    """One experiment's records, shaped like ``Store.records_frame`` (same columns and dtypes)."""
    kind, effect = scenario[0], EFFECT if scenario.endswith("+") else 0.0
    n = users * requests_per_user
    user = np.repeat(np.arange(users), requests_per_user)
    treat = (rng.random(users) < 0.5)[user]
    q = rng.integers(0, questions, n)
    if kind == "a":
        control_ok = rng.random(questions) < ACCURACY
        fixes = rng.random(questions) < effect / (1 - ACCURACY)
        correct = np.where(treat, (control_ok | fixes)[q], control_ok[q])
    elif kind == "b":
        control_ok = rng.random(questions) < ACCURACY
        treatment_ok = rng.random(questions) < ACCURACY + effect
        correct = np.where(treat, treatment_ok[q], control_ok[q])
    elif kind == "c":
        correct = rng.random(n) < np.where(treat, ACCURACY + effect, ACCURACY)
    else:
        raise ValueError(f"unknown scenario {scenario!r}: one of {', '.join(SCENARIOS)}")
    order = np.argsort(rng.random(n), kind="stable")  # users' requests interleave over the experiment
    user, treat, q, correct = user[order], treat[order], q[order], correct[order]
    frame = pd.DataFrame({
        "query_id": pd.Series([f"{i:08x}" for i in range(n)], dtype=object),
        "ts": pd.date_range("2026-12-01", periods=n, freq="10s", tz="UTC").astype("datetime64[ns, UTC]"),
        "variant": pd.Series(np.where(treat, "treatment", "control"), dtype=object),
        "user_hash": pd.Series([f"user-{u}" for u in user], dtype=object),
        "random_assignment": np.zeros(n, dtype=bool),
        "outcome": pd.Series(["ok"] * n, dtype=object),
        "latency_ms": rng.lognormal(6.5, 0.4, n),
        "rows_returned": pd.array(rng.integers(1, 20, n), dtype="Int64"),
        "correct": pd.array(correct, dtype="boolean"),
        "epoch": pd.Series([EPOCH] * n, dtype=object),
        "question": pd.Series(question_text(rng, q), dtype=object),
    })
    return frame


def one_experiment(args: tuple[str, int, float, bool]) -> tuple[float, float, float, float, float]:
    """(always-valid p, fixed-horizon p, the same two with user-only variance — NaN if skipped — and 1.0
    when the trust checks flagged the experiment, which by chance they do about 3 times in 1,000)."""
    scenario, seed, alpha, before = args
    rng = np.random.default_rng(seed)
    records = simulate_records(rng, scenario)
    report = build_report("ab-validity", VARIANTS, "control", records, {}, alpha, epochs=EPOCHS)
    lift = report.variants[1].lift
    assert lift is not None and lift.fixed_horizon is not None
    seq_p = lift.sequential.p_value if lift.sequential is not None else 1.0
    fixed_p = lift.fixed_horizon.p_value if lift.fixed_horizon.p_value is not None else 1.0
    old_seq = old_fixed = float("nan")
    if before:
        old_seq, old_fixed = user_only_p_values(records, alpha)
    return seq_p, fixed_p, old_seq, old_fixed, float(not report.trustworthy)


def user_only_p_values(records: pd.DataFrame, alpha: float) -> tuple[float, float]:
    """The report's previous variance (users only) on the same data: mSPRT p and a z test's p."""
    from scipy.stats import norm

    from serving.sequential import mixture_sprt_path

    df = records.sort_values("ts", kind="stable")
    treat = (df["variant"] == "treatment").to_numpy()
    y = df["correct"].to_numpy(dtype=float)
    units = pd.factorize(df["user_hash"])[0]
    path = mixture_sprt_path(treat, units, y, alpha=alpha)
    v = path.variance[-1]
    return float(path.p_value[-1]), float(2 * norm.sf(abs(path.difference[-1]) / np.sqrt(v)))


def rate_line(label: str, hits: int, n: int) -> str:
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(hits, n, alpha=0.05, method="wilson")
    return f"{label} {hits / n:.3f} [{lo:.3f}, {hi:.3f}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiments", type=int, default=1000, help="simulated experiments per scenario")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="200 experiments per scenario")
    ap.add_argument("--no-before", action="store_true", help="skip the user-only variance comparison")
    a = ap.parse_args(argv)
    n = 200 if a.quick else a.experiments
    scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    print(f"{n} experiments per scenario: {USERS} users x {REQUESTS_PER_USER} requests, {QUESTIONS} questions, "
          f"alpha {a.alpha}, through build_report; rate [95% Wilson interval of the rate]")
    start = time.perf_counter()
    with Pool(a.workers) as pool:
        for i, scenario in enumerate(scenarios):
            jobs = [(scenario, a.seed * 1_000_003 + i * 100_000 + k, a.alpha, not a.no_before) for k in range(n)]
            t0 = time.perf_counter()
            res = np.array(pool.map(one_experiment, jobs, chunksize=max(1, n // (8 * a.workers))))
            kind = "power" if scenario.endswith("+") else "false-positive rate"
            hits = (res[:, :4] <= a.alpha).sum(axis=0)
            line = (f"  {scenario:3s} {kind:19s} " + rate_line("always-valid", int(hits[0]), n) + "; "
                    + rate_line("fixed-horizon", int(hits[1]), n))
            if not a.no_before:
                line += " | before (user-only variance): " + rate_line("always-valid", int(hits[2]), n) + "; " \
                        + rate_line("z test", int(hits[3]), n)
            flagged = int(res[:, 4].sum())
            print(line + f" | trust checks flagged {flagged}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"total {time.perf_counter() - start:.0f} s with {a.workers} worker(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
