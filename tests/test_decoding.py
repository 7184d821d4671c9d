"""Decoding with group splits (E8 protocol): separable data, null data, split integrity, seeds, errors."""

import numpy as np
import pytest

import lowrank_learning as ll


def _twins(n_pairs=10, seed=0, shift=0.0, n_features=3):
    """Twin pairs: one sample of each class per pair; class 1 shifted by ``shift`` in every feature."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_pairs), 2)
    labels = np.tile([0, 1], n_pairs)
    X = rng.standard_normal((2 * n_pairs, n_features)) + shift * labels[:, None]
    return X, labels, groups


def test_separable_data_decodes_perfectly():
    X, y, g = _twins(shift=10.0)
    r = ll.decode(X, y, g)
    assert r.n_splits == 50 and r.accuracies.shape == (50,)
    np.testing.assert_array_equal(r.accuracies, 1.0)
    assert r.mean == 1.0 and r.std == 0.0
    assert r.chance == 0.5  # balanced twins: every training split is tied 8/8


def test_label_independent_features_decode_at_chance():
    """Null: features independent of labels. Each held-out group's label assignment is a fair coin
    independent of the training data, so a split's accuracy (the mean over 20 independent test groups,
    each in {0, 1/2, 1}) has mean 1/2 and variance <= 0.25/20. The mean over the splits of one data set
    has at most that variance; over 20 independent data sets the grand mean has sd <= sqrt(0.0125/20)
    = 0.025. Bound: 4 sd = 0.1."""
    means = []
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        groups = np.repeat(np.arange(40), 2)
        labels = np.stack([rng.permutation(2) for _ in range(40)]).ravel()  # one of each class per pair
        X = rng.standard_normal((80, 3))
        r = ll.decode(X, labels, groups, n_splits=10, n_test_groups=20, seed=seed)
        assert r.chance == 0.5
        means.append(r.mean)
    assert abs(np.mean(means) - 0.5) < 0.1, np.mean(means)


def test_groups_never_straddle_train_and_test():
    g = np.repeat(np.arange(10), 2)
    splits = ll.group_splits(g, n_splits=50, n_test_groups=2, seed=3)
    assert len(splits) == 50
    for tr, te in splits:
        assert np.intersect1d(tr, te).size == 0 and np.union1d(tr, te).size == 20
        assert np.unique(g[te]).size == 2 and te.size == 4  # 2 whole pairs in test
        assert np.intersect1d(g[tr], g[te]).size == 0  # no pair on both sides
    # different splits are drawn (45 possible test sets of 2 pairs out of 10)
    assert len({tuple(np.unique(g[te])) for _, te in splits}) > 20


def test_reproducible_with_seed_and_noise_matters():
    X, y, g = _twins(shift=0.8, seed=2)
    a, b = ll.decode(X, y, g, seed=5), ll.decode(X, y, g, seed=5)
    np.testing.assert_array_equal(a.accuracies, b.accuracies)
    c = ll.decode(X, y, g, seed=6)
    assert not np.array_equal(a.accuracies, c.accuracies)
    # train_noise is applied: with no noise the same splits give different accuracies for weak signals
    d = ll.decode(X, y, g, seed=5, train_noise=0.0)
    e = ll.decode(X, y, g, seed=5, train_noise=3.0)
    assert not np.array_equal(d.accuracies, e.accuracies)


def test_chance_is_majority_class_of_training_split():
    # unbalanced: 3 classes, groups of one sample each
    labels = np.array([0] * 6 + [1] * 3 + [2] * 3)
    groups = np.arange(12)
    X = np.random.default_rng(0).standard_normal((12, 2))
    r = ll.decode(X, labels, groups, n_splits=30, n_test_groups=3, seed=1)
    splits = ll.group_splits(groups, 30, 3, seed=1)
    expected = []
    for tr, te in splits:
        counts = np.bincount(labels[tr], minlength=3)
        tied = np.flatnonzero(counts == counts.max())
        expected.append(np.mean([np.mean(labels[te] == c) for c in tied]))
    np.testing.assert_allclose(r.chance_per_split, expected)
    np.testing.assert_allclose(r.chance, np.mean(expected))


def test_stack_uses_the_same_splits():
    X, y, g = _twins(shift=10.0, seed=1)
    noise = np.random.default_rng(9).standard_normal(X.shape)
    out = ll.decode_stack({"signal": X, "noise": noise}, y, g, n_splits=20)
    assert list(out) == ["signal", "noise"]
    np.testing.assert_array_equal(out["signal"].accuracies, 1.0)
    np.testing.assert_array_equal(out["noise"].accuracies, ll.decode(noise, y, g, n_splits=20).accuracies)
    arr = ll.decode_stack(np.stack([X, noise]), y, g, n_splits=20)
    assert isinstance(arr, list) and len(arr) == 2
    np.testing.assert_array_equal(arr[1].accuracies, out["noise"].accuracies)
    d = out["signal"].as_dict()
    assert d["mean"] == 1.0 and len(d["accuracies"]) == 20


def test_errors_name_the_problem():
    X, y, g = _twins()
    with pytest.raises(ll.InvalidParameterError, match="labels has 19 entries"):
        ll.decode(X, y[:-1], g[:-1])
    with pytest.raises(ll.InvalidParameterError, match="groups has 19 entries"):
        ll.decode(X, y, g[:-1])
    with pytest.raises(ll.InvalidParameterError, match="at least two classes"):
        ll.decode(X, np.zeros(20), g)
    with pytest.raises(ll.InvalidParameterError, match="need at least 3"):
        ll.decode(X[:4], y[:4], g[:4])  # 2 pairs cannot hold out 2 and train
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ll.InvalidParameterError, match="features has non-finite"):
        ll.decode(bad, y, g)
    with pytest.raises(ll.InvalidParameterError, match=r"features\['b'\] has non-finite"):
        ll.decode_stack({"a": X, "b": bad}, y, g)
    with pytest.raises(ll.InvalidParameterError, match="same number of samples"):
        ll.decode_stack({"a": X, "b": X[:10]}, y, g)
    for kw, field in [({"n_splits": 0}, "n_splits"), ({"n_test_groups": 0}, "n_test_groups"),
                      ({"train_noise": -1.0}, "train_noise"), ({"seed": -1}, "seed"), ({"C": 0.0}, "C")]:
        with pytest.raises(ll.InvalidParameterError, match=field):
            ll.decode(X, y, g, **kw)


# --------------------------------------------------------------------------- exact permutation test
def _random_twins(seed, n_pairs=10, n_features=2, shift=0.0):
    """Pairs with one sample of each class in random order; class 1 shifted by ``shift``."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_pairs), 2)
    labels = np.stack([rng.permutation(2) for _ in range(n_pairs)]).ravel()
    X = rng.standard_normal((2 * n_pairs, n_features)) + shift * labels[:, None]
    return X, labels, groups


def test_newton_fit_matches_scikit_learn_and_scipy():
    """The batched Newton fit minimises scikit-learn's objective: its coefficients equal
    scikit-learn's at a tight tolerance and scipy's minimiser of the objective written here."""
    from scipy.optimize import minimize
    from sklearn.linear_model import LogisticRegression

    from lowrank_learning.analysis.decoding import _fit_logistic

    rng = np.random.default_rng(4)
    X = rng.standard_normal((16, 3))
    Y = (rng.random((5, 16)) < 0.5).astype(int)
    Y[:, 0], Y[:, 1] = 0, 1  # both classes in every row
    theta = _fit_logistic(X, Y, C=0.7)
    for y, th in zip(Y, theta):
        m = LogisticRegression(C=0.7, tol=1e-12, max_iter=100000).fit(X, y)
        np.testing.assert_allclose(th, np.r_[m.coef_[0], m.intercept_], atol=1e-6)

        def f(t, y=y):
            z = X @ t[:3] + t[3]
            return 0.7 * np.sum(np.logaddexp(0, z) - y * z) + 0.5 * t[:3] @ t[:3]
        np.testing.assert_allclose(th, minimize(f, np.zeros(4), method="BFGS", tol=1e-12).x, atol=1e-5)


def test_flip_assignments_cover_every_flip_up_to_the_global_one():
    F = ll.flip_assignments(5)
    assert F.shape == (16, 5) and not F[0].any() and not F[:, 0].any()
    rows = {tuple(r) for r in F} | {tuple(~r) for r in F}  # with their complements: all 2^5
    assert len(rows) == 32
    with pytest.raises(ll.InvalidParameterError, match="n_pairs"):
        ll.flip_assignments(17)


def test_observed_accuracy_equals_decode_and_global_flip_changes_nothing():
    """The test's decoder is decode()'s model: the observed mean accuracy equals decode()'s
    (scikit-learn) on the same splits and noise; swapping both classes everywhere gives
    decode() the same accuracies (why 2^(n-1) assignments suffice)."""
    for seed, shift in [(0, 0.0), (1, 0.6), (2, 1.5)]:
        X, y, g = _random_twins(seed, n_features=4, shift=shift)
        ref = ll.decode(X, y, g, n_splits=20, seed=seed)
        t = ll.pair_permutation_test(X, y, g, n_splits=20, seed=seed)
        assert t.observed == ref.mean and t.null[0] == t.observed
        np.testing.assert_array_equal(ll.decode(X, 1 - y, g, n_splits=20, seed=seed).accuracies, ref.accuracies)


def test_p_value_equals_brute_force_over_all_flips_with_scikit_learn():
    """Independent reference: all 2^6 label assignments of 6 pairs decoded by decode()
    (scikit-learn) on the same splits; p = share with mean accuracy >= the observed one."""
    X, y, g = _random_twins(7, n_pairs=6, n_features=2, shift=0.7)
    t = ll.pair_permutation_test(X, y, g, n_splits=8, seed=3)
    obs = ll.decode(X, y, g, n_splits=8, seed=3).mean
    means = []
    for bits in range(2 ** 6):
        flip = np.array([(bits >> j) & 1 for j in range(6)], bool)[g]
        means.append(ll.decode(X, np.where(flip, 1 - y, y), g, n_splits=8, seed=3).mean)
    assert t.p == pytest.approx(np.mean(np.array(means) >= obs - 1e-12))
    assert t.min_p == 1 / 32


def test_detectable_is_the_smallest_accuracy_the_test_calls_decoding():
    """detectable = the smallest accuracy a on the grid k / n_decisions for which an observed a
    would give p = (1 + #(other assignments >= a)) / P < alpha; checked by scanning the grid."""
    X, y, g = _random_twins(3, shift=0.3)
    t = ll.pair_permutation_test(X, y, g, n_splits=10, seed=1)
    n_dec = 10 * 4
    others = np.round(t.null[1:] * n_dec)
    grid = [k for k in range(n_dec + 1) if (1 + np.sum(others >= k)) / t.null.size < 0.05]
    assert t.detectable == pytest.approx(min(grid) / n_dec)
    assert (t.p < 0.05) == (t.observed >= t.detectable)


def test_pair_bootstrap_interval_is_the_percentile_interval_over_pairs():
    """Reference: resample the pairs with replacement (the generator draws of bootstrap_interval),
    accuracy = their correct / held-out counts, 2.5% and 97.5% order statistics."""
    X, y, g = _random_twins(5, shift=0.8)
    t = ll.pair_permutation_test(X, y, g, n_splits=30, seed=2, n_boot=500)
    assert t.pair_correct.sum() / t.pair_tested.sum() == pytest.approx(t.observed)
    assert t.pair_tested.sum() == 30 * 4
    idx = np.random.default_rng(2).integers(0, 10, size=(500, 10))
    vals = np.sort([t.pair_correct[i].sum() / t.pair_tested[i].sum() for i in idx])
    lo, hi = np.quantile(vals, [0.025, 0.975], method="inverted_cdf")
    assert t.interval == (pytest.approx(lo), pytest.approx(hi))


def test_null_features_rarely_decode():
    """Features independent of the labels (each pair's order is a fair coin): the exact test
    rejects at 5% with probability <= 5% (exact level; ties make it conservative). Over 200
    independent seeds the number of "holds" is at most Binomial(200, 0.05): mean 10, and
    P(X >= 21) = 0.0014, so >= 90% "does not hold" fails only if the test's level is wrong.
    Small and fast: 2 features, 3 splits of 4 held-out pairs, 512 flips each."""
    words = []
    for seed in range(200):
        X, y, g = _random_twins(seed)
        t = ll.pair_permutation_test(X, y, g, n_splits=3, n_test_groups=4, seed=seed, n_boot=50)
        words.append(t.verdict("null features decode").verdict)
    assert set(words) <= {"holds", "does not hold"}
    assert words.count("does not hold") >= 180, words.count("holds")


def test_planted_signal_decodes():
    X, y, g = _random_twins(11, n_features=3, shift=3.0)
    t = ll.pair_permutation_test(X, y, g)
    v = t.verdict("planted features decode")
    assert v.verdict == "holds" and t.p == 1 / 512 and t.observed > t.detectable
    assert v.interval[0] > 0.5 and v.n == 10 and "512 within-pair label flips" in v.test


def test_too_few_pairs_is_not_testable():
    X, y, g = _random_twins(0, n_pairs=4, shift=5.0)  # 8 assignments: smallest p 1/8
    v = ll.pair_permutation_test(X, y, g, n_splits=5).verdict("decodes")
    assert v.verdict == "not testable at this profile"


def test_compare_decoding_is_a_paired_sign_test_over_pairs():
    X, y, g = _random_twins(2, n_features=3, shift=3.0)
    noise = np.random.default_rng(1).standard_normal((20, 3))
    tests = ll.pair_permutation_tests({"signal": X, "noise": noise}, y, g, n_splits=40)
    assert list(tests) == ["signal", "noise"]
    v = ll.compare_decoding(tests["signal"], tests["noise"], "signal beats noise")
    ref = ll.sign_test(tests["signal"].pair_accuracy, tests["noise"].pair_accuracy, claim="x")
    assert v.verdict == ref.verdict == "holds" and v.p == ref.p
    assert ll.compare_decoding(tests["noise"], tests["signal"], "noise beats signal").verdict == "does not hold"
    other = ll.pair_permutation_test(X, y, g, n_splits=40, seed=9)
    with pytest.raises(ll.InvalidParameterError, match="same pairs"):
        ll.compare_decoding(tests["signal"], other, "x")


def test_permutation_test_errors_name_the_problem():
    X, y, g = _random_twins(0)
    with pytest.raises(ll.InvalidParameterError, match="groups: every group must be a pair"):
        ll.pair_permutation_test(X, np.tile([0, 0, 1, 1], 5), g)
    with pytest.raises(ll.InvalidParameterError, match="two classes"):
        ll.pair_permutation_test(X, np.tile([0, 1, 2, 1], 5), g)
    with pytest.raises(ll.InvalidParameterError, match="n_pairs"):
        Xb, yb, gb = _random_twins(0, n_pairs=17)
        ll.pair_permutation_test(Xb, yb, gb, n_splits=1)
    with pytest.raises(ll.InvalidParameterError, match="alpha"):
        ll.pair_permutation_test(X, y, g, alpha=1.5)
    with pytest.raises(ll.InvalidParameterError, match="features"):
        ll.pair_permutation_tests(X, y, g)
