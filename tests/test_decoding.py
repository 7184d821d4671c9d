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
