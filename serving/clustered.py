"""Estimates over requests that are not independent: two-way cluster-robust means and differences.

Requests are grouped twice: by user (one user sends several requests) and by normalized question (answers
are cached per variant and question, so everyone who asks a variant the same question gets the same
answer). The estimand is a population quantity over users *and* the questions they ask, so both are
sampling units and both enter the variance:

- means and differences of means: OLS with a two-way cluster-robust covariance (statsmodels'
  ``cov_cluster_2groups``, what ``cov_type="cluster"`` with both groups computes: Cameron, Gelbach &
  Miller, JBES 29(2), 2011, with statsmodels' G/(G-1)·(N-1)/(N-K) factor per dimension), floored at the
  larger one-way variance, tested with t on G-1 degrees of freedom, G the smaller cluster count (Cameron &
  Miller, J. Human Resources 50(2), 2015);
- a proportion's interval: Wilson's interval at the effective sample size p(1-p)/V, shrunk by
  (z/t_{G-1})^2 (Korn & Graubard, "Confidence intervals for proportions with small expected number of
  positive counts estimated from survey data", Survey Methodology 24(2), 1998);
- the ratio of two p95 latencies: its logarithm linearized (each request's influence on the quantile), then
  the same two-way variance as any difference of means (Francisco & Fuller, Annals of Statistics 19(1),
  1991).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """An estimate with its two-way cluster-robust variance and the smaller of its cluster counts."""

    value: float
    variance: float
    clusters: int

    @property
    def df(self) -> int:
        return max(self.clusters - 1, 1)

    @property
    def standard_error(self) -> float:
        return float(np.sqrt(self.variance))

    def interval(self, alpha: float) -> tuple[float, float]:
        """The fixed-horizon t interval at 1 - alpha."""
        from scipy.stats import t

        half = t.ppf(1 - alpha / 2, self.df) * self.standard_error
        return self.value - half, self.value + half

    def p_value(self) -> float:
        """Two-sided t test of value = 0."""
        from scipy.stats import t

        if self.variance <= 0:
            return 1.0 if self.value == 0 else 0.0
        return float(2 * t.sf(abs(self.value) / self.standard_error, self.df))


def codes(values: object) -> np.ndarray:
    """Integer codes 0..k-1 for any labels (users, questions)."""
    import pandas as pd

    return pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=False)[0].astype(np.int64)


def two_way_fit(y: np.ndarray, columns: list[np.ndarray], users: np.ndarray, questions: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, int] | None:
    """OLS of ``y`` on a constant and ``columns``: (coefficients, their variances, the smaller cluster
    count), or None with fewer than two users or two questions.

    The variance of each coefficient is the Cameron–Gelbach–Miller two-way estimate (statsmodels'
    ``cov_cluster_2groups``: users + questions - their intersection, each with its small-sample factor),
    floored at the larger of the two one-way estimates. The floor is a conservative guard: the two-way sum
    subtracts one noisy estimate from two others and can fall below what either dimension alone implies
    (or below zero); with 80 questions and identical systems it ran 1-2 points above the nominal
    false-positive rate without it (``benchmarks/ab_validity.py``).
    """
    import statsmodels.api as sm
    from statsmodels.stats.sandwich_covariance import cov_cluster_2groups

    g_users, g_questions = len(np.unique(users)), len(np.unique(questions))
    if g_users < 2 or g_questions < 2 or len(y) < len(columns) + 2:
        return None
    clusters = min(g_users, g_questions)
    x = np.column_stack([np.ones(len(y)), *columns])
    if np.ptp(y) == 0:  # a constant outcome: exact fit, no variance (not rounding noise near zero)
        return np.r_[y[0], np.zeros(len(columns))], np.zeros(x.shape[1]), clusters
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        fit = sm.OLS(np.asarray(y, dtype=float), x).fit()
        both, by_user, by_question = cov_cluster_2groups(fit, np.asarray(users), np.asarray(questions))
    variances = np.maximum.reduce([np.diag(both), np.diag(by_user), np.diag(by_question)])
    if not np.all(np.isfinite(variances)):
        return None
    return np.asarray(fit.params), variances, clusters


def mean(y: np.ndarray, users: np.ndarray, questions: np.ndarray) -> Estimate | None:
    """The mean of ``y`` with its two-way cluster-robust variance."""
    fit = two_way_fit(y, [], users, questions)
    if fit is None:
        return None
    params, variances, clusters = fit
    return Estimate(float(params[0]), float(variances[0]), clusters)


def difference(y: np.ndarray, treatment: np.ndarray, users: np.ndarray, questions: np.ndarray
               ) -> Estimate | None:
    """mean(y | treatment) - mean(y | control), two-way cluster-robust (a question in both arms is one
    cluster holding both arms' residuals)."""
    t = np.asarray(treatment, dtype=float)
    if t.min(initial=1.0) == t.max(initial=0.0):
        return None
    fit = two_way_fit(y, [t], users, questions)
    if fit is None:
        return None
    params, variances, clusters = fit
    return Estimate(float(params[1]), float(variances[1]), clusters)


def proportion_interval(successes: int, n: int, estimate: Estimate | None, clusters: int, alpha: float
                        ) -> tuple[float, float]:
    """Wilson's interval at the effective sample size (Korn & Graubard 1998, see the module docstring).

    ``clusters`` is the smaller of the user and question counts. When every outcome is the same, or there
    are too few clusters for a variance, the design effect cannot be estimated; the cluster count then
    stands in for the sample size (each cluster one observation), which keeps the interval honest when a
    few questions carry all the labels (one question: an interval about as wide as one observation's).
    """
    from scipy.stats import norm
    from scipy.stats import t as student
    from statsmodels.stats.proportion import proportion_confint

    p = successes / n
    if estimate is not None and 0 < p < 1 and estimate.variance > 0:
        n_eff = min(float(n), p * (1 - p) / estimate.variance)
    else:
        n_eff = float(max(1, min(n, clusters)))
    n_eff *= (norm.ppf(1 - alpha / 2) / student.ppf(1 - alpha / 2, max(clusters - 1, 1))) ** 2
    low, high = proportion_confint(p * n_eff, n_eff, alpha=alpha, method="wilson")
    return float(low), float(high)


def log_p95_ratio(latency: np.ndarray, treatment: np.ndarray, users: np.ndarray, questions: np.ndarray
                  ) -> Estimate | None:
    """log(p95 treatment / p95 control) with a two-way cluster-robust variance by linearization.

    A sample quantile behaves like a mean of its influence values (Bahadur's representation): for log q,
    z_i = (0.95 - 1{x_i <= q}) * s / q with s = 1/f(q) the sparsity, estimated as the slope of the empirical
    quantile function over the Hall-Sheather bandwidth (as in quantile regression, Koenker 2005). The
    variance of the difference of the two arms' log p95 is then the two-way cluster-robust variance of the
    difference of the mean z (Francisco & Fuller, "Quantile estimation with a complex survey design",
    Annals of Statistics 19(1), 1991), computed like every other difference here.
    """
    lat = np.asarray(latency, dtype=float)
    treat = np.asarray(treatment, dtype=bool)
    keep = np.isfinite(lat) & (lat > 0)
    lat, treat, users, questions = lat[keep], treat[keep], users[keep], questions[keep]
    if treat.sum() < 20 or (~treat).sum() < 20:
        return None
    z = np.empty(len(lat))
    logs = []
    for mask in (treat, ~treat):
        x = lat[mask]
        q = float(np.percentile(x, 95))
        h = _hall_sheather(len(x), 0.95)
        sparsity = (np.percentile(x, 100 * min(0.95 + h, 1.0)) - np.percentile(x, 100 * max(0.95 - h, 0.0))) / (
            min(0.95 + h, 1.0) - max(0.95 - h, 0.0))
        if not sparsity > 0:
            return None
        z[mask] = (0.95 - (x <= q)) * sparsity / q
        logs.append(np.log(q))
    fit = two_way_fit(z, [treat.astype(float)], users, questions)
    if fit is None:
        return None
    _, variances, clusters = fit
    return Estimate(float(logs[0] - logs[1]), float(variances[1]), clusters)


def _hall_sheather(n: int, tau: float, alpha: float = 0.05) -> float:
    """Hall & Sheather's (1988) bandwidth for estimating the sparsity at quantile ``tau`` from n values."""
    from scipy.stats import norm

    x = norm.ppf(tau)
    return float(n ** (-1 / 3) * norm.ppf(1 - alpha / 2) ** (2 / 3)
                 * (1.5 * norm.pdf(x) ** 2 / (2 * x**2 + 1)) ** (1 / 3))
