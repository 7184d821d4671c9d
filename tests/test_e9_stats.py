"""E9's verdicts and summaries on data whose answer is known.

Null data must give "does not hold" at the rate a 5% test promises: over 200 seeds the expected
number of false "holds" is 10, and more than 20 (the bound asserted: >= 90% "does not hold") has
binomial(200, 0.05) probability below 1e-3. Planted signal must give "holds". Fits are checked
against closed forms and scipy; summaries against values computed by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import lowrank_learning as ll
from lowrank_learning.analysis import verdicts as V

SEEDS = 200
# the paper profile's design: seeds per size
N_PAPER = np.repeat([1e2, 1e3, 1e4, 1e5], [5, 5, 5, 2])


def _finite_size(rng, a=0.3, spread=0.3):
    """b = 0: pure finite-size error a / sqrt(N) times log-normal seed-to-seed noise."""
    return a / np.sqrt(N_PAPER) * np.exp(spread * rng.standard_normal(N_PAPER.size))


# ----------------------------------------------------------------------------- levels off
def test_levels_off_on_pure_finite_size_error_does_not_hold_at_the_stated_rate():
    k = sum(ll.levels_off_test(N_PAPER, _finite_size(np.random.default_rng(s)), n_boot=50).holds
            for s in range(SEEDS))
    assert k <= 20, f"{k} of {SEEDS} null runs said 'holds' (<= 20 expected for a 5% test)"


def test_levels_off_on_a_maximum_of_gaussian_differences_does_not_hold_at_the_stated_rate():
    """Closer to E9's error (the largest of 10 overlap differences, each ~ N(0, c^2/N)), whose
    log is not Gaussian: the t-test on the log-log slope still keeps its level."""
    def err(rng):
        return np.max(np.abs(rng.standard_normal((N_PAPER.size, 10))), axis=1) * 0.3 / np.sqrt(N_PAPER)
    k = sum(ll.levels_off_test(N_PAPER, err(np.random.default_rng(s)), n_boot=50).holds for s in range(SEEDS))
    assert k <= 20, f"{k} of {SEEDS} null runs said 'holds'"


def test_levels_off_on_a_planted_systematic_part_holds():
    rng = np.random.default_rng(1)
    err = (0.3 / np.sqrt(N_PAPER) + 3e-3) * np.exp(0.3 * rng.standard_normal(N_PAPER.size))
    v = ll.levels_off_test(N_PAPER, err)
    assert v.verdict == V.HOLDS and v.p < 1e-3 and v.interval[0] > -0.5
    assert "systematic part b" in v.note
    # a flat error (a = 0) levels off too
    flat = 2e-3 * np.exp(0.3 * rng.standard_normal(N_PAPER.size))
    assert ll.levels_off_test(N_PAPER, flat).verdict == V.HOLDS


def test_an_error_that_grows_with_N_is_not_read_as_levelling_off():
    rng = np.random.default_rng(2)
    err = 1e-3 * N_PAPER ** 0.2 * np.exp(0.3 * rng.standard_normal(N_PAPER.size))
    v = ll.levels_off_test(N_PAPER, err)
    assert v.verdict == V.DOES_NOT_HOLD and "grows with N" in v.note and "overruled" in v.test
    assert v.p < 1e-6  # the slope is far above -1/2, and still it is not a level
    # the constrained fit alone would have read it as a flat error: a = 0, b > 0
    fit = ll.fit_error_scaling(N_PAPER, err)
    assert fit.a == 0 and fit.b > 0
    free = ll.fit_error_scaling(N_PAPER, err, constrained=False)
    assert free.a < 0  # the unconstrained fit shows the growth


def test_levels_off_slope_and_p_match_scipy():
    rng = np.random.default_rng(3)
    err = _finite_size(rng)
    v = ll.levels_off_test(N_PAPER, err, n_boot=10)
    res = stats.linregress(np.log(N_PAPER), np.log(err))
    t = (res.slope + 0.5) / res.stderr
    assert v.statistic == pytest.approx(res.slope, rel=1e-12)
    assert v.p == pytest.approx(stats.t.sf(t, N_PAPER.size - 2), rel=1e-10)
    q = stats.t.ppf(0.975, N_PAPER.size - 2)
    assert v.interval == pytest.approx((res.slope - q * res.stderr, res.slope + q * res.stderr), rel=1e-10)
    assert v.n == N_PAPER.size


def test_levels_off_needs_three_points_and_positive_errors():
    v = ll.levels_off_test([100, 1000], [0.1, 0.03])
    assert v.verdict == V.NOT_TESTABLE and v.p is None
    with pytest.raises(ll.InvalidParameterError, match="1 of 3 values"):
        ll.levels_off_test([100, 1000, 1e4], [0.1, np.nan, 0.01])


# ----------------------------------------------------------------------------- fits, bootstrap
def test_unconstrained_fit_recovers_a_negative_part_exactly():
    N = np.array([1e2, 1e3, 1e4, 1e5])
    err = -0.01 / np.sqrt(N) + 2e-3          # positive on this range, a < 0
    free = ll.fit_error_scaling(N, err, constrained=False)
    assert free.a == pytest.approx(-0.01, rel=1e-9) and free.b == pytest.approx(2e-3, rel=1e-9)
    assert not free.constrained and free.crossover == np.inf
    con = ll.fit_error_scaling(N, err)
    assert con.a >= 0 and con.b >= 0 and con.constrained


def test_bootstrap_error_scaling_resamples_seeds_within_each_size():
    # without seed-to-seed noise every resample is the data itself: zero-width intervals
    N = np.repeat([1e2, 1e3, 1e4], 3)
    err = 0.3 / np.sqrt(N) + 1e-3
    out = ll.bootstrap_error_scaling(N, err, n_boot=200)
    for k in ("a", "b", "a_free", "b_free", "slope"):
        est, lo, hi = out[k]
        assert lo == pytest.approx(est, rel=1e-9) and hi == pytest.approx(est, rel=1e-9), k
    assert out["seeds"] == {100.0: 3, 1000.0: 3, 10000.0: 3} and out["n_boot"] == 200
    # with noise: the vectorised fits inside agree with fit_error_scaling on the data, and the
    # 95% interval of b covers the planted value in most seeds (a coarse coverage check)
    covered = 0
    for s in range(40):
        rng = np.random.default_rng(s)
        e = (0.3 / np.sqrt(N_PAPER) + 2e-3) * np.exp(0.2 * rng.standard_normal(N_PAPER.size))
        o = ll.bootstrap_error_scaling(N_PAPER, e, n_boot=300, seed=s)
        assert o["b_free"][0] == pytest.approx(ll.fit_error_scaling(N_PAPER, e, constrained=False).b, rel=1e-9)
        assert o["b"][0] == pytest.approx(ll.fit_error_scaling(N_PAPER, e).b, rel=1e-9)
        covered += o["b_free"][1] <= 2e-3 <= o["b_free"][2]
    # the percentile bootstrap undercovers with 2-5 seeds per size: ask for >= 60% of 40
    assert covered >= 24, covered


def test_vectorised_constrained_fit_matches_nnls():
    from lowrank_learning.analysis.stats import _fits_vectorised
    for s in range(50):
        rng = np.random.default_rng(s)
        e = np.abs((0.3 / np.sqrt(N_PAPER) + rng.normal(0, 3e-3)) * np.exp(0.5 * rng.standard_normal(N_PAPER.size)))
        f = _fits_vectorised(N_PAPER[None], e[None])
        c = ll.fit_error_scaling(N_PAPER, e)
        assert f["a"][0] == pytest.approx(c.a, rel=1e-8, abs=1e-14)
        assert f["b"][0] == pytest.approx(c.b, rel=1e-8, abs=1e-14)


# ----------------------------------------------------------------------------- rank correlation
def test_rank_correlation_without_strata_is_spearman_with_the_exact_permutation_p():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal(6), rng.standard_normal(6)
    v = ll.rank_correlation_test(x, y, claim="c")
    assert v.statistic == pytest.approx(stats.spearmanr(x, y).statistic, rel=1e-12)
    ref = stats.permutation_test((y,), lambda yy: stats.spearmanr(x, yy).statistic, permutation_type="pairings",
                                 alternative="greater")
    assert v.p == pytest.approx(ref.pvalue, rel=1e-12)
    assert "exact over all 720 arrangements" in v.note and "not a test of cause" in v.note


def test_rank_correlation_on_independent_data_does_not_hold_at_the_stated_rate():
    k = 0
    for s in range(SEEDS):
        rng = np.random.default_rng(s)
        k += ll.rank_correlation_test(rng.standard_normal(20), rng.standard_normal(20), claim="c",
                                      n_perm=999, n_boot=1).holds
    assert k <= 20, f"{k} of {SEEDS} null runs said 'holds'"


def test_rank_correlation_within_strata_ignores_a_shared_trend():
    """Both x and y fall with N (strata), independent within each N: pooled Spearman finds a
    strong correlation, the within-strata test does not (at the stated rate)."""
    k = 0
    strata = np.repeat([100, 1000, 10000, 100000], 5)
    for s in range(SEEDS):
        rng = np.random.default_rng(s)
        x = 1 / np.sqrt(strata) * (1 + 0.2 * rng.standard_normal(20))
        y = 1 / np.sqrt(strata) * (1 + 0.2 * rng.standard_normal(20))
        k += ll.rank_correlation_test(x, y, strata, claim="c", n_perm=999, n_boot=1).holds
    assert stats.spearmanr(x, y).statistic > 0.7
    assert k <= 20, f"{k} of {SEEDS} null runs said 'holds'"


def test_rank_correlation_on_a_planted_correlation_holds():
    rng = np.random.default_rng(5)
    strata = np.repeat(["a", "b", "c"], 8)
    x = rng.standard_normal(24)
    y = x + 0.5 * rng.standard_normal(24) + np.repeat([0.0, 5.0, -5.0], 8)
    v = ll.rank_correlation_test(x, y, strata, claim="c")
    assert v.verdict == V.HOLDS and v.p < 1e-3 and v.interval[0] > 0 and v.n == 24


def test_rank_correlation_is_not_testable_with_too_few_runs():
    # 3 runs: 6 arrangements, smallest p 1/6; two strata of 2: 4 arrangements
    assert ll.rank_correlation_test([1, 2, 3], [1, 2, 3], claim="c").verdict == V.NOT_TESTABLE
    v = ll.rank_correlation_test([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], ["a", "a", "b", "b", "c"], claim="c")
    assert v.verdict == V.NOT_TESTABLE and v.excluded == 1 and "alone in their stratum" in v.note
    # 4 runs in one stratum: 24 arrangements, p = 1/24 < 0.05 is reachable
    assert ll.rank_correlation_test([1, 2, 3, 4], [1, 2, 3, 4], claim="c").verdict == V.HOLDS
    with pytest.raises(ll.InvalidParameterError, match="1 of 4 values of y"):
        ll.rank_correlation_test([1, 2, 3, 4], [1, 2, np.nan, 4], claim="c")


# ----------------------------------------------------------------------------- summaries
def _frame(errs):
    """An E9-like frame: index (activation, task, lr, N, seed), column err_end."""
    rows = [("erf", "flipflop", 0.2, N, s, e) for N, es in errs.items() for s, e in enumerate(es)]
    df = pd.DataFrame(rows, columns=["activation", "task", "lr", "N", "seed", "err_end"])
    return df.set_index(["activation", "task", "lr", "N", "seed"])


def test_seed_summary_values_and_missing_runs():
    frame = _frame({100: [0.3, 0.1, 0.2], 1000: [0.05, np.nan, 0.03, np.inf]})
    out = ll.seed_summary(frame, "err_end")
    r100 = out.loc[("erf", "flipflop", 0.2, 100)]
    assert (r100["median"], r100["min"], r100["max"], r100["count"], r100["missing"]) == (0.2, 0.1, 0.3, 3, 0)
    r1k = out.loc[("erf", "flipflop", 0.2, 1000)]
    assert (r1k["median"], r1k["min"], r1k["max"], r1k["count"], r1k["missing"]) == (0.04, 0.03, 0.05, 2, 2)
    with pytest.raises(ll.InvalidParameterError, match="no column"):
        ll.seed_summary(frame, "nope")


def test_scaling_table_values_and_excluded_runs():
    N = [100, 1000, 10000]
    errs = {n: list(0.3 / np.sqrt(n) + 1e-3 + np.zeros(3)) for n in N}
    errs[10000].append(np.nan)
    table = ll.scaling_table(_frame(errs), n_boot=100)
    row = table.loc[("erf", "flipflop", 0.2)]
    assert row["a"] == pytest.approx(0.3, rel=1e-9) and row["b"] == pytest.approx(1e-3, rel=1e-9)
    assert row["a_free"] == pytest.approx(0.3, rel=1e-9) and row["b_free"] == pytest.approx(1e-3, rel=1e-9)
    assert row["b_lo"] == pytest.approx(1e-3, rel=1e-9) and row["b_hi"] == pytest.approx(1e-3, rel=1e-9)
    assert row["crossover"] == pytest.approx((0.3 / 1e-3) ** 2, rel=1e-8)
    assert row["runs"] == 9 and row["excluded"] == 1
    assert row["levels_off"] == V.HOLDS and row["holds"]  # the slope of a/sqrt(N) + b over 1e2..1e4 is above -1/2
    v = ll.levels_off_verdict(_frame(errs), ("erf", "flipflop", 0.2))
    assert v.excluded == 1 and "1 of 10 runs" in v.note and v.p == pytest.approx(row["p"])
