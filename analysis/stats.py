"""Statistics over runs: description, tests between two groups, outliers, correlation.

Each function returns numbers or NaN plus a reason: too few values give no statistic rather
than a misleading one. scipy is imported here only, when the analysis runs.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np

CONFIDENCE = 0.95
MAD_THRESHOLD = 3.5  # modified z-score above which a run is an outlier (Iglewicz and Hoaglin)
MAD_SCALE = 0.6745  # Φ⁻¹(0.75): makes the MAD comparable to a standard deviation for normal data
# The MAD is floored at this fraction of |median|: runs closer together than a meter's accuracy (0.1–0.5 % of
# reading) and the run-to-run noise of a quiet machine differ by noise, not as outliers. With the 3.5 threshold a
# run must then lie more than 3.5 / 0.6745 × 0.5 % ≈ 2.6 % from the median to be one.
MAD_MIN_RELATIVE = 0.005
NAN = float("nan")


def _clean(values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return array[np.isfinite(array)]


ROUNDING = 1e-9  # relative to the values' magnitude: below it a spread or a mean is floating-point noise


def _constant(x: np.ndarray) -> bool:
    """No spread beyond floating-point noise (where scipy's moments lose all precision)."""
    return len(x) == 0 or float(np.ptp(x)) <= ROUNDING * float(np.max(np.abs(x)))


@functools.lru_cache(maxsize=4096)
def t_quantile(n: int) -> float:
    """Two-sided Student t quantile for the CONFIDENCE interval of a mean of n values."""
    from scipy import stats

    return float(stats.t.ppf((1 + CONFIDENCE) / 2, n - 1))


def describe(values) -> dict[str, float]:
    """n, mean, sample standard deviation, 95 % confidence interval of the mean (Student t), median, min, max
    and the Shapiro–Wilk p-value (n ≥ 3 and not constant), of the finite values."""
    from scipy import stats

    x = _clean(values)
    n = len(x)
    out = {"n": n, "mean": NAN, "std": NAN, "ci_low": NAN, "ci_high": NAN, "median": NAN, "min": NAN,
           "max": NAN, "shapiro_p": NAN}
    if n == 0:
        return out
    out.update(mean=float(x.mean()), median=float(np.median(x)), min=float(x.min()), max=float(x.max()))
    if n >= 2:
        std = float(x.std(ddof=1))
        half = t_quantile(n) * std / math.sqrt(n)
        out.update(std=std, ci_low=out["mean"] - half, ci_high=out["mean"] + half)
    if n >= 3 and not _constant(x):
        out["shapiro_p"] = float(stats.shapiro(x).pvalue)
    return out


def compare(a, b) -> dict[str, float | str]:
    """Group B against group A: difference of the means (B − A, and in % of A), Welch's t-test and Mann–Whitney U
    (two-sided), Cohen's d, Hedges' g and the rank-biserial correlation. Every signed figure is positive when B
    tends to be larger. ``reason`` says why a test gave no number."""
    from scipy import stats

    x, y = _clean(a), _clean(b)
    na, nb = len(x), len(y)
    out: dict[str, float | str] = {
        "n_a": na, "n_b": nb, "mean_a": float(x.mean()) if na else NAN, "mean_b": float(y.mean()) if nb else NAN,
        "difference": NAN, "difference_pct": NAN, "welch_t": NAN, "welch_p": NAN, "mannwhitney_u": NAN,
        "mannwhitney_p": NAN, "cohens_d": NAN, "hedges_g": NAN, "rank_biserial": NAN, "reason": ""}
    if na == 0 or nb == 0:
        out["reason"] = "no values in one group"
        return out
    out["difference"] = out["mean_b"] - out["mean_a"]
    # a mean that is 0 up to rounding (a baseline's own induced energy) makes any percentage of it noise
    scale = max(float(np.max(np.abs(x))), float(np.max(np.abs(y))))
    if abs(out["mean_a"]) > ROUNDING * scale:
        out["difference_pct"] = 100 * out["difference"] / abs(out["mean_a"])
    else:
        out["reason"] = "mean of a is zero within rounding: no % difference"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        u = stats.mannwhitneyu(y, x, alternative="two-sided")  # U of B
    out.update(mannwhitney_u=float(u.statistic), mannwhitney_p=float(u.pvalue),
               rank_biserial=2 * float(u.statistic) / (na * nb) - 1)
    if na < 2 or nb < 2:
        out["reason"] = _join(out["reason"], "fewer than 2 runs in a group: no t-test or effect size")
        return out
    va, vb = x.var(ddof=1), y.var(ddof=1)
    if _constant(x) and _constant(y):
        out["reason"] = _join(out["reason"], "both groups constant: no t-test or effect size")
        return out
    with warnings.catch_warnings():  # one constant group is fine for Welch; scipy warns about its moments
        warnings.simplefilter("ignore", RuntimeWarning)
        t = stats.ttest_ind(y, x, equal_var=False)
    pooled = math.sqrt(((na - 1) * va + (nb - 1) * vb) / (na + nb - 2))
    d = out["difference"] / pooled
    out.update(welch_t=float(t.statistic), welch_p=float(t.pvalue), cohens_d=d,
               hedges_g=d * (1 - 3 / (4 * (na + nb) - 9)))
    return out


def _join(*reasons: str) -> str:
    return "; ".join(r for r in reasons if r)


def mad_outliers(values, threshold: float = MAD_THRESHOLD) -> tuple[np.ndarray, str]:
    """Which values are outliers by the modified z-score ``0.6745 (x − median) / MAD`` (|z| > threshold).

    NaN values are never outliers. With fewer than 3 values or a MAD of zero there is no scale to
    judge by: nothing is flagged and the reason says so. The MAD is floored at ``MAD_MIN_RELATIVE`` × |median|.
    """
    x = np.asarray(values, dtype=np.float64)
    flags = np.zeros(len(x), bool)
    finite = np.isfinite(x)
    if finite.sum() < 3:
        return flags, "fewer than 3 runs"
    median = np.median(x[finite])
    mad = np.median(np.abs(x[finite] - median))
    if mad == 0:
        return flags, "median absolute deviation is zero"
    z = MAD_SCALE * (x - median) / max(mad, MAD_MIN_RELATIVE * abs(median))
    flags[finite] = np.abs(z[finite]) > threshold
    return flags, ""


def pearson(x, y) -> dict[str, float | str]:
    """Pearson's r and its two-sided p over the pairs where both are finite; a reason instead where too few."""
    from scipy import stats

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    both = np.isfinite(x) & np.isfinite(y)
    x, y = x[both], y[both]
    out: dict[str, float | str] = {"n": int(len(x)), "r": NAN, "p": NAN, "reason": ""}
    if len(x) < 3:
        out["reason"] = f"{len(x)} pairs: at least 3 needed"
    elif _constant(x) or _constant(y):
        out["reason"] = "one of the two is constant"
    else:
        result = stats.pearsonr(x, y)
        out.update(r=float(result.statistic), p=float(result.pvalue))
    return out


def linear_fit(x, y) -> dict[str, float | str]:
    """Least-squares line ``y = slope · x + intercept`` with r², over the finite pairs (n ≥ 3, x not constant)."""
    from scipy import stats

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    both = np.isfinite(x) & np.isfinite(y)
    x, y = x[both], y[both]
    out: dict[str, float | str] = {"n": int(len(x)), "slope": NAN, "intercept": NAN, "r2": NAN, "reason": ""}
    if len(x) < 3:
        out["reason"] = f"{len(x)} runs: at least 3 needed for a fit"
    elif _constant(x):
        out["reason"] = "every run has the same meter energy: no fit"
    else:
        fit = stats.linregress(x, y)
        out.update(slope=float(fit.slope), intercept=float(fit.intercept), r2=float(fit.rvalue) ** 2)
    return out
