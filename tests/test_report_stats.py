"""The report's statistics functions against scipy.stats and hand computations: paired t interval
and p (scipy.stats.ttest_rel / t.interval), Holm (by hand and a slow independent reference),
Hedges' g_z (by hand), the minimum detectable difference (power at it by simulation)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from vireid.harness.report.stats import hedges_j, holm, mdd, mdd_noncentrality, paired_power, paired_stats

CASES = [
    ([41.0, 43.5, 40.2], [40.0, 41.0, 40.5]),
    ([12.0, 15.5, 11.0, 14.0, 13.2], [10.0, 14.0, 11.5, 12.0, 12.0]),
    ([1.0, 2.0], [0.0, 0.5]),
    ([55.1, 53.2, 57.9, 54.4, 52.8, 56.0, 55.5, 54.9, 53.3, 56.6],
     [54.0, 53.9, 55.2, 55.0, 52.0, 55.1, 54.0, 55.3, 52.2, 55.0]),
]


@pytest.mark.parametrize("a,b", CASES)
def test_paired_against_scipy(a, b):
    a, b = np.array(a), np.array(b)
    (s,) = paired_stats(a - b)
    ref = sps.ttest_rel(a, b)
    n = len(a)
    assert s.n == n
    assert s.diff == pytest.approx(np.mean(a - b), abs=1e-12)
    assert s.t == pytest.approx(ref.statistic, rel=1e-10)
    assert s.p == pytest.approx(ref.pvalue, rel=1e-9)
    low, high = sps.t.interval(0.95, n - 1, loc=np.mean(a - b), scale=sps.sem(a - b))
    assert (s.ci_low, s.ci_high) == (pytest.approx(low, rel=1e-10), pytest.approx(high, rel=1e-10))
    ci = ref.confidence_interval(0.95)
    assert (s.ci_low, s.ci_high) == (pytest.approx(ci.low, rel=1e-10), pytest.approx(ci.high, rel=1e-10))


def test_paired_vectorised_rows_equal_single_calls():
    rng = np.random.default_rng(0)
    d = rng.normal(1.0, 2.0, size=(7, 4))
    many = paired_stats(d)
    for row, s in zip(d, many):
        assert paired_stats(row)[0] == s


def test_hand_worked_example():
    # d = (1, 2, 4): mean 7/3, sd = sqrt(((−4/3)² + (−1/3)² + (5/3)²) / 2) = sqrt(7/3), se = sd / sqrt(3).
    (s,) = paired_stats(np.array([1.0, 2.0, 4.0]))
    sd = math.sqrt(7 / 3)
    assert s.sd == pytest.approx(sd)
    assert s.t == pytest.approx((7 / 3) / (sd / math.sqrt(3)))  # = sqrt(7) = 2.6458
    assert s.t == pytest.approx(math.sqrt(7))
    half = 4.302652729911275 * sd / math.sqrt(3)  # t_{0.975, 2} from tables
    assert (s.ci_low, s.ci_high) == (pytest.approx(7 / 3 - half), pytest.approx(7 / 3 + half))
    # Hedges' g_z: d_z = mean / sd = (7/3) / sqrt(7/3) = sqrt(7/3); J = 1 − 3/(4·2 − 1) = 4/7.
    assert hedges_j(3) == pytest.approx(4 / 7)
    assert s.g == pytest.approx(4 / 7 * math.sqrt(7 / 3))
    # Two-sided p for t = sqrt(7), df = 2: 1 − t/sqrt(t² + 2) (closed form of the t(2) tail).
    assert s.p == pytest.approx(1 - math.sqrt(7) / math.sqrt(9))


def test_hedges_j_approximates_exact_gamma_form():
    """J = 1 − 3/(4 df − 1) is Hedges' approximation of Γ(df/2) / (sqrt(df/2) Γ((df−1)/2)); its error
    falls like 1/df² (0.007 at n = 3)."""
    for n in range(3, 40):
        df = n - 1
        exact = math.exp(math.lgamma(df / 2) - math.lgamma((df - 1) / 2)) / math.sqrt(df / 2)
        assert 0 < hedges_j(n) - exact < 0.04 / df ** 2


def test_undefined_cases():
    (one,) = paired_stats(np.array([3.5]))
    assert one.n == 1 and one.diff == 3.5 and one.undefined == "n=1"
    assert one.sd is one.ci_low is one.p is one.g is one.mdd is None
    (two,) = paired_stats(np.array([1.0, 2.0]))
    assert two.p == pytest.approx(sps.ttest_rel([1.0, 2.0], [0.0, 0.0]).pvalue)
    assert two.g is None and two.undefined == "n=2"  # J = 1 − 3/3 = 0
    assert two.mdd is not None and two.mdd > 0
    flat, const = paired_stats(np.array([[0.0, 0.0, 0.0], [1.25, 1.25, 1.25]]))
    for s in (flat, const):
        assert s.undefined == "zero spread" and s.p is None and s.g is None and s.mdd is None
    assert (const.diff, const.ci_low, const.ci_high) == (1.25, 1.25, 1.25)
    with pytest.raises(ValueError, match="finite"):
        paired_stats(np.array([1.0, float("nan")]))


def _holm_reference(pvalues):
    """Slow Holm straight from the definition: reject H_(i) at level a iff p_(j) <= a/(m−j+1) for
    all j <= i; the adjusted p is the smallest a at which H is rejected."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [0.0] * m
    for rank, i in enumerate(order):
        out[i] = min(1.0, max((m - j) * pvalues[order[j]] for j in range(rank + 1)))
    return out


def test_holm_hand_computed():
    # Sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> max 0.06).
    assert holm([0.01, 0.04, None, 0.03, 0.005]) == pytest.approx([0.03, 0.06, None, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [pytest.approx(1.0), pytest.approx(1.0)]
    assert holm([None, None]) == [None, None]
    assert holm([]) == []
    with pytest.raises(ValueError):
        holm([1.5])


def test_holm_against_reference():
    rng = np.random.default_rng(1)
    for m in (1, 2, 5, 12):
        for _ in range(20):
            p = list(rng.uniform(0, 0.2, size=m))
            p[rng.integers(m)] = p[0]  # a tie
            assert holm(p) == pytest.approx(_holm_reference(p), abs=1e-15)
    # Every ordering of the same p's gives the same adjusted values per p.
    p = [0.001, 0.02, 0.02, 0.3]
    for perm in itertools.permutations(range(4)):
        adjusted = holm([p[i] for i in perm])
        assert {perm[k]: v for k, v in enumerate(adjusted)} == pytest.approx(dict(enumerate(holm(p))))


def test_mdd_power_and_limits():
    for n in (2, 3, 5, 10):
        nc = mdd_noncentrality(n)
        assert paired_power(nc, n) == pytest.approx(0.8, abs=1e-8)
        assert paired_power(0.0, n) == pytest.approx(0.05, abs=1e-12)  # size at delta = 0
    # Large n: the normal approximation (z_{0.975} + z_{0.8}) sd / sqrt(n).
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    assert mdd(1.0, 2000) == pytest.approx(z / math.sqrt(2000), rel=2e-3)
    assert mdd(2.0, 3) == pytest.approx(2 * mdd(1.0, 3))  # linear in sd
    assert mdd(1.0, 3) > mdd(1.0, 5) > mdd(1.0, 10)
    with pytest.raises(ValueError, match="at least 2"):
        mdd_noncentrality(1)


def test_mdd_power_by_simulation():
    """At the MDD, simulated paired t-tests (n = 3, normal differences) reject 80 % of the time."""
    n, sd = 3, 1.7
    delta = mdd(sd, n)
    rng = np.random.default_rng(2)
    d = rng.normal(delta, sd, size=(200_000, n))
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(n))
    rejected = np.abs(t) > sps.t.ppf(0.975, n - 1)
    assert rejected.mean() == pytest.approx(0.8, abs=0.005)
