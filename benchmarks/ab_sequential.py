"""A/A false-positive rate of the experiment report's always-valid lift vs a naive fixed-horizon test.

Each simulated experiment splits users between two identical variants (A/A); users send 1-4 labelled
requests and differ in how often they get correct answers (clustered, as in production). The report is
"looked at" after every --look-every users; an experiment is a false positive for a method when any look
shows p <= alpha. The mixture SPRT (serving/sequential.py) should stay at or below alpha; the naive score
test (statsmodels), read at every look, should not. With --effect, the same loop measures power: how often
and how early a real difference of that size is detected.

    .venv/bin/python benchmarks/ab_sequential.py [--experiments 1000] [--users 5000] [--look-every 100]
        [--alpha 0.05] [--share 0.5] [--effect 0.05] [--max-seconds 120] [--seed 1]

Run time is bounded by --max-seconds: the loop stops early and reports how many experiments it ran.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serving.sequential import DEFAULT_MIXTURE_SD, mixture_sprt_path


def first_hit(p_values: np.ndarray, alpha: float) -> int | None:
    hits = np.flatnonzero(p_values <= alpha)
    return int(hits[0]) if len(hits) else None


def run(experiments: int, users: int, look_every: int, alpha: float, share: float, effect: float,
        mixture_sd: float, max_seconds: float, seed: int) -> dict[str, float]:
    from statsmodels.stats.proportion import test_proportions_2indep

    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    done = seq_hits = naive_hits = once_hits = 0
    seq_stop: list[int] = []
    naive_stop: list[int] = []
    for _ in range(experiments):
        if time.perf_counter() - start > max_seconds:
            break
        per_user = rng.integers(1, 5, users)
        treat_user = rng.random(users) < share
        user_p = np.clip(rng.beta(6, 4, users) + np.where(treat_user, effect, 0.0), 0, 1)
        unit = np.repeat(np.arange(users), per_user)
        treat = treat_user[unit]
        correct = rng.random(len(unit)) < user_p[unit]
        ends = np.cumsum(per_user)[look_every - 1::look_every] - 1
        path = mixture_sprt_path(treat, unit, correct, alpha=alpha, mixture_sd=mixture_sd)
        look = first_hit(path.p_value[ends], alpha)
        if look is not None:
            seq_hits += 1
            seq_stop.append((look + 1) * look_every)
        kt, nt = np.cumsum(correct & treat)[ends], np.cumsum(treat)[ends]
        kc, nc = np.cumsum(correct & ~treat)[ends], np.cumsum(~treat)[ends]
        naive_p = np.array([test_proportions_2indep(a, b, c, d, method="score").pvalue
                            for a, b, c, d in zip(kt, nt, kc, nc, strict=True)])
        once_hits += bool(naive_p[-1] <= alpha)
        look = first_hit(naive_p, alpha)
        if look is not None:
            naive_hits += 1
            naive_stop.append((look + 1) * look_every)
        done += 1
    return {"experiments": done, "seconds": time.perf_counter() - start,
            "sequential": seq_hits / max(done, 1), "naive": naive_hits / max(done, 1),
            "naive_once": once_hits / max(done, 1),
            "sequential_median_users": float(np.median(seq_stop)) if seq_stop else float("nan"),
            "naive_median_users": float(np.median(naive_stop)) if naive_stop else float("nan")}


def main() -> None:
    from statsmodels.stats.proportion import proportion_confint

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiments", type=int, default=1000)
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--look-every", type=int, default=100)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--share", type=float, default=0.5, help="share of users in the compared variant")
    ap.add_argument("--effect", type=float, default=0.0, help="true accuracy difference (0 = A/A)")
    ap.add_argument("--mixture-sd", type=float, default=DEFAULT_MIXTURE_SD)
    ap.add_argument("--max-seconds", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    r = run(a.experiments, a.users, a.look_every, a.alpha, a.share, a.effect, a.mixture_sd, a.max_seconds, a.seed)
    n = int(r["experiments"])
    kind = "A/A false-positive rate" if a.effect == 0 else f"power for a {a.effect:+.3f} difference"
    print(f"{n} experiments x {a.users} users, looked at every {a.look_every} users "
          f"({a.users // a.look_every} looks), alpha {a.alpha}, share {a.share}, {r['seconds']:.1f} s")
    for name in ("sequential", "naive"):
        rate = r[name]
        lo, hi = proportion_confint(round(rate * n), n, alpha=0.05, method="wilson")
        label = "mixture SPRT (always-valid)" if name == "sequential" else "naive score test at every look"
        print(f"  {label:32s} {kind}: {rate:.3f}  [95% CI {lo:.3f}, {hi:.3f}]"
              f"  median users at first p<=alpha: {r[name + '_median_users']:.0f}")
    once = r["naive_once"]
    lo, hi = proportion_confint(round(once * n), n, alpha=0.05, method="wilson")
    print(f"  {'naive score test, read once':32s} at the last look: {once:.3f}  [95% CI {lo:.3f}, {hi:.3f}]")


if __name__ == "__main__":
    main()
