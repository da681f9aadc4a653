"""Always-valid lift of one variant's online accuracy over the control's: a mixture SPRT.

Why: people open a running experiment's report every day. A fixed-horizon test read at every look and
stopped at the first p < alpha has a false-positive rate far above alpha (about 25% with 20 looks at
alpha = 0.05). The mixture sequential probability ratio test (mSPRT) gives a p-value and an interval that
stay valid however often, and whenever, they are looked at.

Method (Johari, Koomen, Pekelis & Walsh, "Always Valid Inference: Continuous Monitoring of A/B Tests",
Operations Research 70(3), 2022; the normal-mixture boundary of Robbins 1970; plug-in variances as in
Waudby-Smith et al., "Time-uniform central limit theory and asymptotic confidence sequences", Annals of
Statistics, 2024). After each labelled request, in time order:

    d  = p_t - p_c                                   (difference of online accuracies)
    V  = Var(p_t) + Var(p_c)                         (per-variant variance, see below)
    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2)))    (mixture over theta ~ N(0, tau^2))
    p  = min(1, 1 / max_{s <= n} Lambda_s)                              (always-valid p-value)
    CI = d -+ sqrt(V (V + tau^2) / tau^2 * (2 log(1/alpha) + log((V + tau^2) / V))),
         intersected over all looks so far (a confidence sequence).

Under no difference, P(p ever <= alpha) <= alpha by Ville's inequality, so the guarantee holds at any
stopping time. tau (``mixture_sd``) is the size of difference the test is tuned for: the interval is
tightest when the standard error of d is near tau.

Variance: users, not requests, are the independent units (one user sends several requests under sticky
assignment), so each variant's accuracy is a ratio of per-user sums and its variance comes from the delta
method: Var(p) = sum_u (c_u - p l_u)^2 / (sum_u l_u)^2 * U / (U - 1), with c_u correct and l_u labelled
requests of user u and U users with labels. With one label per user this is p(1 - p)/(n - 1).

Written by hand: the packages that implement confidence sequences (``confseq``, last released 2023, a C++
extension; ``savvi``) do not cover a two-sample difference with user-clustered plug-in variances, and the
whole method is the formula above. Looks before ``min_units`` labelled users in each variant, or with a
zero variance, are not evaluated (the plug-in variance is not yet trustworthy there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_MIXTURE_SD = 0.05
DEFAULT_MIN_UNITS = 20


@dataclass(frozen=True)
class SequentialPath:
    """The test's state after each labelled request (arrays aligned to the time-ordered events).

    ``p_value``, ``ci_low`` and ``ci_high`` are already the running minimum / intersection, so the last
    element is what a report shows now and element ``i`` is what a report built after event ``i`` showed.
    Before the first evaluable look they are 1.0 and -inf/+inf.
    """

    difference: np.ndarray
    p_value: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    evaluable: np.ndarray

    @property
    def looks(self) -> int:
        return int(self.evaluable.sum())


def mixture_sprt_path(treatment: np.ndarray, unit: np.ndarray, correct: np.ndarray, *, alpha: float,
                      mixture_sd: float = DEFAULT_MIXTURE_SD,
                      min_units: int = DEFAULT_MIN_UNITS) -> SequentialPath:
    """Run the mSPRT over labelled requests already sorted by time.

    ``treatment`` is True for the compared variant's requests and False for the control's; ``unit`` is an
    integer code per user (a user's requests share it); ``correct`` is the label.
    """
    treatment = np.asarray(treatment, dtype=bool)
    unit = np.asarray(unit, dtype=np.int64)
    x = np.asarray(correct, dtype=np.float64)
    n = len(x)
    if not (len(treatment) == len(unit) == n):
        raise ValueError("treatment, unit and correct must have the same length")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if mixture_sd <= 0:
        raise ValueError(f"mixture_sd must be > 0, got {mixture_sd}")
    if n == 0:
        empty = np.zeros(0)
        return SequentialPath(empty, empty, empty, empty, np.zeros(0, dtype=bool))

    # A user's labels before this one (per variant: a user moved between variants counts in each).
    key = unit * 2 + treatment.astype(np.int64)
    prev_labels = _cumcount(key).astype(np.float64)
    prev_correct = _cumsum_before(key, x)
    # Increments of the per-variant sums that the delta-method variance needs.
    inc = {
        "L": np.ones(n),
        "C": x,
        "CC": 2 * prev_correct * x + x,
        "LL": 2 * prev_labels + 1,
        "CL": prev_correct + x * prev_labels + x,
        "U": (prev_labels == 0).astype(np.float64),
    }
    arms = {}
    for arm_flag in (True, False):
        mask = treatment == arm_flag
        arms[arm_flag] = {k: np.cumsum(np.where(mask, v, 0.0)) for k, v in inc.items()}

    t, c = arms[True], arms[False]
    with np.errstate(divide="ignore", invalid="ignore"):
        p_t, var_t = _ratio_and_variance(t)
        p_c, var_c = _ratio_and_variance(c)
        d = p_t - p_c
        v = var_t + var_c
        evaluable = (t["U"] >= min_units) & (c["U"] >= min_units) & (v > 0) & np.isfinite(v)
        tau2 = mixture_sd**2
        log_lambda = 0.5 * np.log(v / (v + tau2)) + tau2 * d**2 / (2 * v * (v + tau2))
        half = np.sqrt(v * (v + tau2) / tau2 * (2 * np.log(1 / alpha) + np.log((v + tau2) / v)))
    log_lambda = np.where(evaluable, log_lambda, -np.inf)
    p_value = np.minimum(1.0, np.exp(-np.maximum.accumulate(log_lambda)))
    low = np.maximum.accumulate(np.where(evaluable, d - half, -np.inf))
    high = np.minimum.accumulate(np.where(evaluable, d + half, np.inf))
    return SequentialPath(difference=d, p_value=p_value, ci_low=low, ci_high=high, evaluable=evaluable)


def _ratio_and_variance(s: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy (sum c / sum l) and its delta-method variance over users, with a U/(U-1) correction."""
    p = s["C"] / s["L"]
    resid = s["CC"] - 2 * p * s["CL"] + p**2 * s["LL"]
    units = s["U"]
    var = np.maximum(resid, 0.0) / s["L"] ** 2 * units / (units - 1)
    return p, var


def _cumcount(key: np.ndarray) -> np.ndarray:
    """How many earlier elements share each element's key (0 for the first occurrence)."""
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.r_[True, sorted_key[1:] != sorted_key[:-1]]
    group_start = np.maximum.accumulate(np.where(starts, np.arange(len(key)), 0))
    out = np.empty(len(key), dtype=np.int64)
    out[order] = np.arange(len(key)) - group_start
    return out


def _cumsum_before(key: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Sum of ``values`` over earlier elements with the same key."""
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    sorted_vals = values[order]
    total = np.cumsum(sorted_vals) - sorted_vals
    starts = np.r_[True, sorted_key[1:] != sorted_key[:-1]]
    base = np.maximum.accumulate(np.where(starts, np.arange(len(key)), 0))
    out = np.empty(len(key), dtype=np.float64)
    out[order] = total - total[base]
    return out
