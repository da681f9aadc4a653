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
    V  = Var(d)                                      (two-way cluster-robust, see below)
    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2)))    (mixture over theta ~ N(0, tau^2))
    p  = min(1, 1 / max_{s <= n} Lambda_s)                              (always-valid p-value)
    CI = d -+ sqrt(V (V + tau^2) / tau^2 * (2 log(1/alpha) + log((V + tau^2) / V))),
         intersected over all looks so far (a confidence sequence).

Under no difference, P(p ever <= alpha) <= alpha by Ville's inequality, so the guarantee holds at any
stopping time. tau (``mixture_sd``) is the size of difference the test is tuned for: the interval is
tightest when the standard error of d is near tau.

Variance: outcomes are correlated within a user (one user sends several requests) and within a question
(answers are cached per variant and question, so everyone asking a variant the same question gets the
same answer). V is the two-way cluster-robust variance of Cameron, Gelbach & Miller ("Robust Inference
With Multiway Clustering", Journal of Business & Economic Statistics 29(2), 2011) for the difference of
two ratio means, users x questions:

    V = c_U S_U + c_Q S_Q - c_UQ S_UQ,   S_G = sum over groups g of G of (sum_{i in g} h_i)^2,
    h_i = (y_i - p_t) / n_t for a treatment request, -(y_i - p_c) / n_c for a control request,

with the small-sample factor c_G = G/(G-1) * (N-1)/(N-2) of each dimension (what statsmodels applies, so
at the last look V equals statsmodels' ``cov_cluster_2groups``). A question asked in both arms enters one
cluster with both arms' residuals, so shared questions are accounted for. V is floored at the larger
one-way variance (c_U S_U or c_Q S_Q), as in ``serving.clustered``: the subtraction makes the two-way
sum noisy, and it may fall below either dimension alone or below zero. With few clusters the normal
approximation is too optimistic; as the fixed-horizon test uses t with G-1 degrees of freedom (G the
smaller cluster count; Cameron & Miller, "A Practitioner's Guide to Cluster-Robust Inference", Journal of
Human Resources 50(2), 2015), V is scaled by (t_{G-1, 1-alpha/2} / z_{1-alpha/2})^2.

Written by hand: the packages that implement confidence sequences (``confseq``, last released 2023, a C++
extension; ``savvi``) do not cover a two-sample difference with clustered plug-in variances, and the
whole method is the formulas above, computed for every look at once from running sums. Looks before
``min_units`` labelled users in each variant (and ``min_questions`` distinct questions), or with a zero
variance, are not evaluated (the plug-in variance is not yet trustworthy there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_MIXTURE_SD = 0.05
DEFAULT_MIN_UNITS = 20
DEFAULT_MIN_QUESTIONS = 10


@dataclass(frozen=True)
class SequentialPath:
    """The test's state after each labelled request (arrays aligned to the time-ordered events).

    ``p_value``, ``ci_low`` and ``ci_high`` are already the running minimum / intersection, so the last
    element is what a report shows now and element ``i`` is what a report built after event ``i`` showed.
    Before the first evaluable look they are 1.0 and -inf/+inf. ``variance`` is the plug-in V of each look
    before the degrees-of-freedom scaling (NaN while undefined).
    """

    difference: np.ndarray
    p_value: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    evaluable: np.ndarray
    variance: np.ndarray

    @property
    def looks(self) -> int:
        return int(self.evaluable.sum())


def mixture_sprt_path(treatment: np.ndarray, unit: np.ndarray, correct: np.ndarray, *, alpha: float,
                      question: np.ndarray | None = None, mixture_sd: float = DEFAULT_MIXTURE_SD,
                      min_units: int = DEFAULT_MIN_UNITS,
                      min_questions: int = DEFAULT_MIN_QUESTIONS) -> SequentialPath:
    """Run the mSPRT over labelled requests already sorted by time.

    ``treatment`` is True for the compared variant's requests and False for the control's; ``unit`` is an
    integer code per user (a user's requests share it); ``question`` an integer code per normalized
    question (None: cluster by user only); ``correct`` is the label.
    """
    treatment = np.asarray(treatment, dtype=bool)
    unit = np.asarray(unit, dtype=np.int64)
    x = np.asarray(correct, dtype=np.float64)
    n = len(x)
    if not (len(treatment) == len(unit) == n) or (question is not None and len(question) != n):
        raise ValueError("treatment, unit, question and correct must have the same length")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if mixture_sd <= 0:
        raise ValueError(f"mixture_sd must be > 0, got {mixture_sd}")
    if n == 0:
        empty = np.zeros(0)
        return SequentialPath(empty, empty, empty, empty, np.zeros(0, dtype=bool), empty)

    t = treatment.astype(np.float64)
    n_t, n_c = np.cumsum(t), np.cumsum(1.0 - t)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_t, p_c = np.cumsum(x * t) / n_t, np.cumsum(x * (1.0 - t)) / n_c
        d = p_t - p_c
        arms = (t, x, p_t, p_c, n_t, n_c)
        users = _Groups(unit)
        v_user, g_user = users.clustered_sum_of_squares(*arms)
        if question is None:
            v, clusters = v_user, g_user
            enough_questions = np.ones(n, dtype=bool)
        else:
            q = np.asarray(question, dtype=np.int64)
            v_q, g_q = _Groups(q).clustered_sum_of_squares(*arms)
            v_uq, _ = _Groups(unit * (int(q.max()) + 1) + q).clustered_sum_of_squares(*arms)
            v = v_user + v_q - v_uq
            v = np.maximum(v, np.maximum(v_user, v_q))
            clusters = np.minimum(g_user, g_q)
            enough_questions = g_q >= min_questions
        # labelled users per arm so far (a user served by both arms counts in each)
        per_arm = _Groups(unit * 2 + treatment.astype(np.int64)).first
        users_t, users_c = np.cumsum(per_arm * t), np.cumsum(per_arm * (1.0 - t))
        v_used = v * df_inflation(clusters, alpha)
        evaluable = ((users_t >= min_units) & (users_c >= min_units) & enough_questions & (v_used > 0)
                     & np.isfinite(v_used))
        log_lambda = mixture_log_likelihood_ratio(d, v_used, mixture_sd)
        half = mixture_half_width(v_used, alpha, mixture_sd)
    log_lambda = np.where(evaluable, log_lambda, -np.inf)
    p_value = np.minimum(1.0, np.exp(-np.maximum.accumulate(log_lambda)))
    low = np.maximum.accumulate(np.where(evaluable, d - half, -np.inf))
    high = np.minimum.accumulate(np.where(evaluable, d + half, np.inf))
    return SequentialPath(difference=d, p_value=p_value, ci_low=low, ci_high=high, evaluable=evaluable,
                          variance=np.where(np.isfinite(v) & (v > 0), v, np.nan))


def mixture_log_likelihood_ratio(d: np.ndarray | float, v: np.ndarray | float,
                                 mixture_sd: float) -> np.ndarray:
    """log Lambda of the normal mixture (theta ~ N(0, tau^2)) for an estimate ``d`` with variance ``v``."""
    tau2 = mixture_sd**2
    d, v = np.asarray(d, dtype=float), np.asarray(v, dtype=float)
    return 0.5 * np.log(v / (v + tau2)) + tau2 * d**2 / (2 * v * (v + tau2))


def mixture_half_width(v: np.ndarray | float, alpha: float, mixture_sd: float) -> np.ndarray:
    """Half-width of the always-valid interval at variance ``v`` (the boundary where Lambda = 1/alpha)."""
    tau2 = mixture_sd**2
    v = np.asarray(v, dtype=float)
    return np.sqrt(v * (v + tau2) / tau2 * (2 * np.log(1 / alpha) + np.log((v + tau2) / v)))


def df_inflation(clusters: np.ndarray | float, alpha: float) -> np.ndarray:
    """(t_{G-1, 1-alpha/2} / z_{1-alpha/2})^2: the small-sample scaling of a variance from G clusters."""
    from scipy.stats import norm
    from scipy.stats import t as student

    g = np.asarray(clusters, dtype=float)
    df = np.maximum(g - 1.0, 1.0)
    values, inverse = np.unique(df, return_inverse=True)
    ratio = (student.ppf(1 - alpha / 2, values) / norm.ppf(1 - alpha / 2)) ** 2
    return ratio[inverse].reshape(g.shape)


class _Groups:
    """Running sums within the groups of an integer key, for events in time order."""

    def __init__(self, key: np.ndarray) -> None:
        n = len(key)
        self.order = np.argsort(key, kind="stable")
        sorted_key = key[self.order]
        starts = np.r_[True, sorted_key[1:] != sorted_key[:-1]]
        self.base = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
        self.first = np.zeros(n)
        self.first[self.order[starts]] = 1.0

    def before(self, values: np.ndarray) -> np.ndarray:
        """Sum of ``values`` over the earlier events of each event's group."""
        ordered = values[self.order]
        exclusive = np.cumsum(ordered) - ordered
        out = np.empty(len(values))
        out[self.order] = exclusive - exclusive[self.base]
        return out

    def clustered_sum_of_squares(self, t: np.ndarray, x: np.ndarray, p_t: np.ndarray, p_c: np.ndarray,
                                 n_t: np.ndarray, n_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """At every event: c_G * sum over groups of (sum of h_i)^2 (see the module docstring), and G.

        A group's sum is a_g = (C_tg - p_t L_tg) / n_t - (C_cg - p_c L_cg) / n_c with C correct and L
        labelled counts per arm, so sum a_g^2 expands into ten sums of products of per-group totals; each
        grows by a known amount when an event joins its group, so one cumulative sum gives every look.
        """
        c = 1.0 - t
        ct_b, lt_b = self.before(x * t), self.before(t)      # the group's totals before this event
        cc_b, lc_b = self.before(x * c), self.before(c)
        s = {
            "CtCt": np.cumsum(t * (2 * ct_b * x + x)),
            "CtLt": np.cumsum(t * (ct_b + x * lt_b + x)),
            "LtLt": np.cumsum(t * (2 * lt_b + 1)),
            "CcCc": np.cumsum(c * (2 * cc_b * x + x)),
            "CcLc": np.cumsum(c * (cc_b + x * lc_b + x)),
            "LcLc": np.cumsum(c * (2 * lc_b + 1)),
            "CtCc": np.cumsum(t * x * cc_b + c * x * ct_b),
            "CtLc": np.cumsum(t * x * lc_b + c * ct_b),
            "LtCc": np.cumsum(t * cc_b + c * x * lt_b),
            "LtLc": np.cumsum(t * lc_b + c * lt_b),
        }
        treat = (s["CtCt"] - 2 * p_t * s["CtLt"] + p_t**2 * s["LtLt"]) / n_t**2
        control = (s["CcCc"] - 2 * p_c * s["CcLc"] + p_c**2 * s["LcLc"]) / n_c**2
        cross = (s["CtCc"] - p_c * s["CtLc"] - p_t * s["LtCc"] + p_t * p_c * s["LtLc"]) / (n_t * n_c)
        groups = np.cumsum(self.first)
        events = np.arange(1, len(x) + 1, dtype=float)
        factor = groups / (groups - 1) * (events - 1) / (events - 2)
        return np.maximum(treat + control - 2 * cross, 0.0) * factor, groups
