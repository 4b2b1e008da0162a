"""Paired statistics over seeds for the report: mean paired difference, its t interval, the
two-sided paired t-test, Holm's correction, Hedges' g and the minimum detectable difference.

Seeds are the replicates. A variant and its reference are paired by seed (same seed, same data
order and initialisation stream), and each run contributes one value: its mean over the
protocol's gallery trials. Gallery trials are never replicates here (they share one model).

Definitions (n = number of paired seeds, d_i = variant_i - reference_i, df = n - 1):

- diff = mean(d); sd = sample SD of d (ddof = 1); se = sd / sqrt(n);
- 95 % interval: diff +- t_{0.975, df} * se (``scipy.stats.t``);
- p: two-sided paired t-test, t = diff / se (the same as ``scipy.stats.ttest_rel``);
- Hedges' g for paired data: g_z = J * diff / sd, with d_z = diff / sd and the small-sample
  correction J = 1 - 3 / (4 df - 1) (Hedges and Olkin's approximation, df = n - 1);
- MDD: the smallest true mean difference a two-sided paired t-test at `alpha` detects with
  probability `power`, given the observed sd: MDD = nc * sd / sqrt(n), where nc solves
  P(|T| > t_{1-alpha/2, df}) = power for T ~ noncentral t(df, nc) (``scipy.stats.nct``).

Undefined cases give None with a reason instead of a number: n = 1 (no sd: no interval, p, g or
MDD); n = 2 has an interval, p and MDD (df = 1, very wide) but no g (J = 0); sd = 0 (every
paired difference equal, e.g. R20 = 100 for all seeds) has no p, g or MDD.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
POWER = 0.8


@dataclass(frozen=True)
class Paired:
    """The statistics of one paired comparison (None where undefined, with `undefined` saying why)."""

    n: int
    diff: float
    sd: float | None
    ci_low: float | None
    ci_high: float | None
    t: float | None
    p: float | None
    g: float | None
    mdd: float | None
    undefined: str | None = None  # e.g. "n=1", "n=2" (for g only), "zero spread"


def hedges_j(n: int) -> float:
    """Hedges' small-sample correction for a paired (one-sample) effect size, df = n - 1."""
    df = n - 1
    return 1.0 - 3.0 / (4.0 * df - 1.0)


def paired_stats(diffs: np.ndarray, alpha: float = ALPHA, power: float = POWER) -> list[Paired]:
    """Statistics for each row of `diffs` (k comparisons x n paired seeds), vectorised over rows.

    A 1-D array is one comparison. All rows share n (group comparisons by n before calling).
    """
    from scipy import stats

    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim == 1:
        d = d[None, :]
    if d.ndim != 2 or d.shape[1] == 0:
        raise ValueError(f"paired_stats needs a (comparisons x seeds) array with at least one seed, got {d.shape}")
    if not np.isfinite(d).all():
        raise ValueError("paired_stats: paired differences must be finite")
    k, n = d.shape
    mean = d.mean(axis=1)
    if n == 1:
        return [Paired(1, float(m), None, None, None, None, None, None, None, "n=1") for m in mean]
    df = n - 1
    sd = d.std(axis=1, ddof=1)
    # A spread below rounding noise of the mean is zero spread (identical differences).
    zero = sd <= 1e-12 * np.maximum(1.0, np.abs(mean))
    se = sd / math.sqrt(n)
    half = stats.t.ppf(1.0 - alpha / 2.0, df) * se
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(zero, np.nan, mean / se)
        p = np.where(zero, np.nan, 2.0 * stats.t.sf(np.abs(t), df))
        dz = np.where(zero, np.nan, mean / sd)
    j = hedges_j(n) if n >= 3 else float("nan")
    nc = mdd_noncentrality(n, alpha, power)
    out = []
    for i in range(k):
        if zero[i]:
            out.append(Paired(n, float(mean[i]), 0.0, float(mean[i]), float(mean[i]), None, None, None, None,
                              "zero spread"))
            continue
        g = float(j * dz[i]) if n >= 3 else None
        out.append(Paired(n, float(mean[i]), float(sd[i]), float(mean[i] - half[i]), float(mean[i] + half[i]),
                          float(t[i]), float(p[i]), g, float(nc * sd[i] / math.sqrt(n)),
                          None if n >= 3 else "n=2"))
    return out


def paired_power(nc: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test with n pairs at noncentrality nc = delta * sqrt(n) / sd."""
    from scipy import stats

    df = n - 1
    crit = stats.t.ppf(1.0 - alpha / 2.0, df)
    # P(T < -crit | nc) = P(T > crit | -nc): scipy's nct.cdf returns NaN far in the left tail.
    return float(stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc))


@functools.lru_cache(maxsize=64)
def mdd_noncentrality(n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The noncentrality nc at which the two-sided paired t-test with n pairs reaches `power`.

    MDD = nc * sd / sqrt(n). Depends only on (n, alpha, power), so it is solved once per n.
    """
    from scipy import optimize

    if n < 2:
        raise ValueError(f"the minimum detectable difference needs at least 2 paired seeds, got n={n}")
    if not (0.0 < alpha < 1.0 and alpha < power < 1.0):
        raise ValueError(f"need 0 < alpha < power < 1, got alpha={alpha}, power={power}")
    high = 1.0
    while paired_power(high, n, alpha) < power:
        high *= 2.0
        if high > 1e6:
            raise ValueError(f"no noncentrality reaches power {power} at n={n}")
    return float(optimize.brentq(lambda nc: paired_power(nc, n, alpha) - power, 0.0, high, xtol=1e-10))


def mdd(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The minimum detectable mean paired difference for a paired-differences SD `sd` and n seeds."""
    return mdd_noncentrality(n, alpha, power) * sd / math.sqrt(n)


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values; None entries (undefined p) are left out of the family
    and stay None. p_holm_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)) over the m defined p's,
    sorted ascending (ties keep their input order, which does not change the values)."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = [None] * len(pvalues)
    if not idx:
        return out
    p = np.array([pvalues[i] for i in idx], dtype=np.float64)
    if ((p < 0) | (p > 1) | ~np.isfinite(p)).any():
        raise ValueError(f"p-values must lie in [0, 1], got {p.tolist()}")
    m = len(p)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.maximum.accumulate(scaled)
    for rank, pos in enumerate(order):
        out[idx[pos]] = float(adjusted[rank])
    return out
