"""The generic verdict tests (analysis/verdicts.py) on data whose answer is known.

Null data (no effect) must give "does not hold" at least at the rate 1 - alpha promises: with 200
seeds and a 5% test the expected number of false "holds" is <= 10, and the probability of more
than 20 (the bound asserted, >= 90% "does not hold") is below 1e-3 (binomial(200, 0.05) tail).
Planted signal must give "holds". The p-values are checked against scipy and closed forms.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

import lowrank_learning as ll
from lowrank_learning.analysis import verdicts as V

SEEDS = 200


def _false_holds(make, test):
    return sum(test(*make(np.random.default_rng(s))).verdict == V.HOLDS for s in range(SEEDS))


def test_sign_test_on_null_data_says_does_not_hold_at_the_stated_rate():
    # paired samples from one distribution: no effect
    make = lambda r: (r.standard_normal(20), r.standard_normal(20))
    k = _false_holds(make, lambda x, y: ll.sign_test(x, y, claim="x > y"))
    assert k <= 20, f"{k} of {SEEDS} null runs said 'holds' (<= 20 expected for a 5% test)"


def test_sign_test_on_planted_signal_holds():
    r = np.random.default_rng(1)
    x, y = r.standard_normal(30) + 1.5, r.standard_normal(30)
    v = ll.sign_test(x, y, claim="x > y")
    assert v.verdict == V.HOLDS and v.p < 1e-3 and v.interval[0] > 0
    # and the opposite claim does not
    assert ll.sign_test(x, y, claim="x < y", alternative="less").verdict == V.DOES_NOT_HOLD


def test_sign_test_p_value_is_the_exact_binomial_tail():
    x = np.array([1, 2, 3, 4, 5, 6, 7, -1, -2, 0.0])  # 7 positive, 2 negative, 1 tie
    v = ll.sign_test(x, claim="x > 0")
    assert v.p == pytest.approx(sum(stats.binom.pmf(k, 9, 0.5) for k in range(7, 10)), rel=1e-12)
    assert "1 ties dropped" in v.note and v.n == 10


def test_sign_test_keeps_censored_outcomes():
    # learning took 10..20 epochs; relearning 5..8, except two networks that never relearned (inf)
    learn = np.array([10, 12, 14, 16, 18, 20, 11, 13.0])
    relearn = np.array([5, 6, 7, 8, 5, 6, np.inf, np.inf])
    v = ll.sign_test(learn, relearn, claim="relearning is faster")
    assert v.n == 8 and v.excluded == 0
    assert "6 of 8 pairs positive, 2 negative" in v.note and "2 censored" in v.note
    # the never-relearned pairs count against the claim: p of >= 6 of 8
    assert v.p == pytest.approx(stats.binomtest(6, 8, 0.5, alternative="greater").pvalue)
    both = ll.sign_test(np.array([np.inf, 1.0, 2, 3, 4, 5]), np.array([np.inf, 0.0, 0, 0, 0, 0]), claim="c")
    assert both.excluded == 1 and "undefined" in both.note
    with pytest.raises(ll.InvalidParameterError, match="1 of 3 values are NaN"):
        ll.sign_test([1.0, np.nan, 2.0], claim="c")


def test_median_with_censored_values():
    assert V.median([1.0, np.inf, np.inf, 2.0]) == np.inf and V.median([1.0, 3.0]) == 2.0
    assert V.median([-np.inf, np.inf]) == 0.0 and V.median([-np.inf, -np.inf, 5.0]) == -np.inf
    assert np.isnan(V.median([]))


def test_bootstrap_of_the_median_takes_every_resample_at_once_with_the_same_numbers():
    """bootstrap_interval sorts all resamples of the median at once: each row's value equals
    :func:`median` of that row, with censored values and ties, and so does the interval."""
    r = np.random.default_rng(7)
    for _ in range(200):
        n = int(r.integers(1, 30))
        x = np.round(r.normal(size=n), int(r.integers(0, 3)))
        k = int(r.integers(0, n + 1))
        x[r.choice(n, k, replace=False)] = r.choice([np.inf, -np.inf], k)
        A = x[r.integers(0, n, size=(40, n))]
        np.testing.assert_array_equal(V._row_medians(A), [V.median(row) for row in A])
    x = np.array([3.0, -1.0, np.inf, 0.5, 2.0, -np.inf, 1.0])
    idx = np.random.default_rng(4).integers(0, x.size, size=(500, x.size))
    vals = [V.median(x[i]) for i in idx]
    lo, hi = np.quantile(vals, [0.025, 0.975], method="inverted_cdf")
    assert V.bootstrap_interval(x, V.median, n_boot=500, seed=4) == (lo, hi)


def test_too_few_samples_are_not_testable():
    # a one-sided sign test over 4 pairs cannot go below 1/16 > 0.05, whatever the data
    v = ll.sign_test([1.0, 2.0, 3.0, 4.0], claim="c")
    assert v.verdict == V.NOT_TESTABLE and v.p == pytest.approx(1 / 16)
    assert ll.sign_test([1.0, 2.0, 3.0, 4.0, 5.0], claim="c").verdict == V.HOLDS  # 1/32
    assert ll.mean_test([1.0], claim="c").verdict == V.NOT_TESTABLE


def test_mean_test_matches_scipy_and_is_calibrated():
    r = np.random.default_rng(3)
    x = r.standard_normal(15) + 0.2
    v = ll.mean_test(x, 0.0, claim="mean > 0")
    assert v.p == pytest.approx(stats.ttest_1samp(x, 0.0, alternative="greater").pvalue, rel=1e-12)
    lo, hi = stats.t.interval(0.95, 14, loc=x.mean(), scale=stats.sem(x))
    assert v.interval == pytest.approx((lo, hi), rel=1e-12)
    k = _false_holds(lambda r: (r.standard_normal(10) + 1.0,), lambda x: ll.mean_test(x, 1.0, claim="c"))
    assert k <= 20
    assert ll.mean_test(r.standard_normal(40) + 1.0, 0.0, claim="c").verdict == V.HOLDS
    with pytest.raises(ll.InvalidParameterError, match="1 of 3 values are infinite"):
        ll.mean_test([1.0, np.inf, 2.0], claim="c")


def test_bootstrap_interval_covers_the_mean_at_its_level():
    # coverage of the true mean over 200 normal samples of 30: nominal 95%, percentile bootstrap
    # under-covers slightly at n = 30 (about 93%); 200 draws put the observed rate within +-4%
    hits = 0
    for s in range(SEEDS):
        x = np.random.default_rng(s).standard_normal(30)
        lo, hi = ll.bootstrap_interval(x, n_boot=500, seed=s)
        hits += lo <= 0.0 <= hi
    assert 0.86 <= hits / SEEDS <= 0.99


def test_combine_and_json():
    yes = ll.sign_test(np.arange(1.0, 11), claim="a")
    no = ll.sign_test(-np.arange(1.0, 11), claim="b")
    nt = ll.sign_test([1.0, 2.0], claim="c")
    assert ll.combine("both", {"a": yes, "b": yes}).verdict == V.HOLDS
    assert ll.combine("both", {"a": yes, "b": no}).verdict == V.HOLDS_IN_PART
    assert ll.combine("both", {"a": no, "b": no}).verdict == V.DOES_NOT_HOLD
    assert ll.combine("both", {"a": yes, "c": nt}).verdict == V.NOT_TESTABLE
    d = ll.combine("both", {"a": yes, "b": no}).as_dict()
    assert json.loads(json.dumps(d))["parts"]["a"]["verdict"] == "holds"
    assert str(yes).startswith("holds (p = ")
    with pytest.raises(ll.InvalidParameterError, match="Verdict.verdict"):
        V.Verdict(claim="c", verdict="probably", statistic=0.0, interval=None, p=None, test="t", n=1)


def test_save_results_writes_verdicts(tmp_path, monkeypatch):
    monkeypatch.setenv("LOWRANK_RESULTS_DIR", str(tmp_path))
    v = ll.sign_test(np.arange(1.0, 11), claim="a")
    path = ll.save_results("demo", {"x": 1.0}, verdicts={"a": v})
    doc = json.loads(path.read_text())
    assert doc["verdicts"]["a"]["verdict"] == "holds" and doc["verdicts"]["a"]["p"] == pytest.approx(v.p)
    with pytest.raises(ll.InvalidParameterError, match="not a Verdict"):
        ll.save_results("demo", {"x": 1.0}, verdicts={"a": "holds"})
    # the chapter's figure goes to every verdict that names none
    doc = json.loads(ll.save_results("demo", {"x": 1.0}, figure="Fig. 2",
                                     verdicts={"a": v, "b": v.with_figure("Fig. 9")}).read_text())
    assert doc["verdicts"]["a"]["figure"] == "Fig. 2" and doc["verdicts"]["b"]["figure"] == "Fig. 9"
    # a censored statistic (an interval reaching inf) is written as null: strict JSON
    inf = ll.sign_test(np.array([np.inf] * 8 + [1.0, 2.0]), claim="censored")
    assert inf.interval[1] == np.inf
    doc = json.loads(ll.save_results("demo", {"x": 1.0}, verdicts={"c": inf}).read_text())
    assert doc["verdicts"]["c"]["interval"][1] is None and doc["verdicts"]["c"]["statistic"] is None
