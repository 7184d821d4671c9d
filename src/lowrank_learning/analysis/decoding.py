"""Decoding: which class (e.g. which task a network learned first) can be read from its overlaps (E8).

The authors' protocol (E8): standardise the features, fit a logistic regression, and score it on
``n_splits`` random splits that hold out ``n_test_groups`` whole groups (twin pairs: both twins of
a pair on the same side), with Gaussian noise of std ``train_noise`` added to the training
features. :func:`decode` runs it for one feature set, :func:`decode_stack` for several (e.g. the
visible and the invisible overlaps at the start, after phase 1 and after phase 2) on the same
splits, and :func:`group_splits` gives the splits themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ..core._checks import (
    check_int,
    check_nonnegative,
    check_positive,
    check_seed,
    finite_matrix,
)
from ..core.errors import InvalidParameterError

__all__ = ["DecodingResult", "group_splits", "decode", "decode_stack"]


@dataclass(frozen=True, eq=False)
class DecodingResult:
    """Accuracies of a decoder over random group splits.

    Attributes
    ----------
    accuracies : array (n_splits,)
        Fraction of the test samples classified correctly on each split.
    mean, std : float
        Mean and standard deviation (``ddof=0``) of ``accuracies`` over the splits.
    chance : float
        Accuracy of always predicting the majority class of the training split, averaged over
        the splits; where classes tie for the majority, the average over the tied classes (the
        expected accuracy of guessing among them). For balanced data such as twin pairs this is
        ``1 / n_classes`` (0.5 for two classes).
    chance_per_split : array (n_splits,)
    n_test_groups : int
    train_noise : float
    seed : int
    """

    accuracies: np.ndarray
    mean: float
    std: float
    chance: float
    chance_per_split: np.ndarray
    n_test_groups: int
    train_noise: float
    seed: int

    @property
    def n_splits(self) -> int:
        return int(self.accuracies.shape[0])

    def as_dict(self) -> dict:
        """Plain numbers and lists (for :func:`~lowrank_learning.save_results`)."""
        return {"accuracies": self.accuracies.tolist(), "mean": self.mean, "std": self.std,
                "chance": self.chance, "n_splits": self.n_splits, "n_test_groups": self.n_test_groups,
                "train_noise": self.train_noise, "seed": self.seed}


def _check_groups(groups, n_test_groups: int) -> np.ndarray:
    """``groups`` (n_samples,) with enough distinct groups to hold ``n_test_groups`` out and train."""
    groups = np.asarray(groups)
    if groups.ndim != 1:
        raise InvalidParameterError(f"groups must have shape (n_samples,), got {groups.shape}")
    n_groups = np.unique(groups).size
    if n_groups < n_test_groups + 1:
        raise InvalidParameterError(
            f"groups: {n_groups} groups cannot hold out n_test_groups = {n_test_groups} and still train; "
            f"need at least {n_test_groups + 1}"
        )
    return groups


def _check_labels_groups(labels, groups, n_samples: int, n_test_groups: int):
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise InvalidParameterError(f"labels must have shape (n_samples,), got {labels.shape}")
    if labels.shape[0] != n_samples:
        raise InvalidParameterError(
            f"labels has {labels.shape[0]} entries but features has {n_samples} samples"
        )
    groups = _check_groups(groups, n_test_groups)
    if groups.shape[0] != labels.shape[0]:
        raise InvalidParameterError(f"groups has {groups.shape[0]} entries but labels has {labels.shape[0]}")
    if np.unique(labels).size < 2:
        raise InvalidParameterError(f"labels must contain at least two classes, got {np.unique(labels).tolist()}")
    return labels, groups


def group_splits(groups, n_splits: int = 50, n_test_groups: int = 2, seed: int = 0):
    """Random train/test splits that keep each group on one side.

    Parameters
    ----------
    groups : array (n_samples,)
        Group of each sample (e.g. the twin pair it belongs to).
    n_splits : int
    n_test_groups : int
        Number of whole groups in each test set.
    seed : int

    Returns
    -------
    tuple of ``n_splits`` pairs ``(train_index, test_index)``, integer arrays into the samples
    (scikit-learn's :class:`~sklearn.model_selection.GroupShuffleSplit`).
    """
    n_splits = check_int("n_splits", n_splits, 1)
    n_test_groups = check_int("n_test_groups", n_test_groups, 1)
    seed = check_seed(seed)
    groups = _check_groups(groups, n_test_groups)
    gss = GroupShuffleSplit(n_splits=n_splits, test_size=n_test_groups, random_state=seed)
    return tuple((tr, te) for tr, te in gss.split(np.zeros((groups.shape[0], 1)), groups=groups))


def _chance(train_labels, test_labels) -> float:
    classes, counts = np.unique(train_labels, return_counts=True)
    majority = classes[counts == counts.max()]
    return float(np.mean([np.mean(test_labels == c) for c in majority]))


def _decode(features, labels, splits, train_noise, seed, C):
    # tens of samples per fit: too little work for a BLAS thread pool to pay for its overhead
    with threadpool_limits(limits=1):
        return _decode_splits(features, labels, splits, train_noise, seed, C)


def _decode_splits(features, labels, splits, train_noise, seed, C):
    rng = np.random.default_rng(seed)
    acc = np.empty(len(splits))
    chance = np.empty(len(splits))
    for s, (tr, te) in enumerate(splits):
        X_tr = features[tr] + train_noise * rng.standard_normal((tr.size, features.shape[1]))
        y_tr = labels[tr]
        if np.unique(y_tr).size < 2:  # one class left to train on: the decoder can only predict it
            pred = np.full(te.size, y_tr[0])
        else:
            model = make_pipeline(StandardScaler(), LogisticRegression(C=C))
            model.fit(X_tr, y_tr)
            pred = model.predict(features[te])
        acc[s] = np.mean(pred == labels[te])
        chance[s] = _chance(y_tr, labels[te])
    return acc, chance


def _check_options(n_splits, n_test_groups, train_noise, seed, C):
    return (check_int("n_splits", n_splits, 1), check_int("n_test_groups", n_test_groups, 1),
            check_nonnegative("train_noise", train_noise), check_seed(seed), check_positive("C", C))


def decode(features, labels, groups, n_splits: int = 50, n_test_groups: int = 2,
           train_noise: float = 0.3, seed: int = 0, C: float = 1.0) -> DecodingResult:
    """Decode ``labels`` from ``features`` on random group splits (the authors' E8 protocol).

    On each split (:func:`group_splits`): Gaussian noise of std ``train_noise`` is added to the
    training features *before* standardising (to the raw features given to the fit, as the
    authors do; the test features stay noise-free); a pipeline of
    :class:`~sklearn.preprocessing.StandardScaler` and
    :class:`~sklearn.linear_model.LogisticRegression` (L2, inverse strength ``C``) is fitted on
    the training samples and scored on the held-out groups. If a training split holds a single
    class, the decoder predicts that class.

    Parameters
    ----------
    features : array (n_samples, n_features)
        E.g. the visible (or invisible) overlaps of each network; 1-D is one feature.
    labels : array (n_samples,)
        Class of each sample (e.g. which task it learned first).
    groups : array (n_samples,)
        Group of each sample; a group is never split between training and test (twin pairs).
    n_splits, n_test_groups : int
        Defaults 50 and 2 (with 10 pairs: 8 training pairs, 2 test pairs).
    train_noise : float
        Std of the noise added to the training features (default 0.3).
    seed : int
        Seeds the splits and the noise; the same seed gives the same result.

    Returns
    -------
    DecodingResult
    """
    n_splits, n_test_groups, train_noise, seed, C = _check_options(n_splits, n_test_groups, train_noise, seed, C)
    X = finite_matrix(features, "features")
    labels, groups = _check_labels_groups(labels, groups, X.shape[0], n_test_groups)
    splits = group_splits(groups, n_splits, n_test_groups, seed)
    return _result(*_decode(X, labels, splits, train_noise, seed, C), n_test_groups, train_noise, seed)


def _result(acc, chance, n_test_groups, train_noise, seed) -> DecodingResult:
    return DecodingResult(acc, float(acc.mean()), float(acc.std()), float(chance.mean()), chance,
                          n_test_groups, train_noise, seed)


def decode_stack(features, labels, groups, n_splits: int = 50, n_test_groups: int = 2,
                 train_noise: float = 0.3, seed: int = 0, C: float = 1.0):
    """:func:`decode` for several feature sets of the same samples, all on the same splits.

    ``features`` is either a mapping ``name -> array (n_samples, n_features_i)`` (e.g.
    ``{"visible, start": ..., "invisible, start": ..., "visible, phase 1": ...}``), returning
    ``{name: DecodingResult}`` in the same order, or an array (n_sets, n_samples, n_features),
    returning a list of ``n_sets`` results. Every set sees the same splits and, per split, the
    same random stream for its training noise (paired comparison).
    """
    n_splits, n_test_groups, train_noise, seed, C = _check_options(n_splits, n_test_groups, train_noise, seed, C)
    if isinstance(features, Mapping):
        if not features:
            raise InvalidParameterError("features must hold at least one feature set")
        sets = {str(k): finite_matrix(v, f"features[{k!r}]") for k, v in features.items()}
    else:
        arr = np.asarray(features, dtype=float)
        if arr.ndim != 3:
            raise InvalidParameterError(
                f"features must be a mapping of arrays or an array (n_sets, n_samples, n_features), got shape {arr.shape}"
            )
        sets = {i: finite_matrix(arr[i], f"features[{i}]") for i in range(arr.shape[0])}
    n_samples = {X.shape[0] for X in sets.values()}
    if len(n_samples) != 1:
        raise InvalidParameterError(f"every feature set must have the same number of samples, got {sorted(n_samples)}")
    labels, groups = _check_labels_groups(labels, groups, n_samples.pop(), n_test_groups)
    splits = group_splits(groups, n_splits, n_test_groups, seed)
    out = {k: _result(*_decode(X, labels, splits, train_noise, seed, C), n_test_groups, train_noise, seed)
           for k, X in sets.items()}
    return out if isinstance(features, Mapping) else list(out.values())
