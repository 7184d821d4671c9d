"""Decoding: which class (e.g. which task a network learned first) can be read from its overlaps (E8).

The authors' protocol (E8): standardise the features, fit a logistic regression, and score it on
``n_splits`` random splits that hold out ``n_test_groups`` whole groups (twin pairs: both twins of
a pair on the same side), with Gaussian noise of std ``train_noise`` added to the training
features. :func:`decode` runs it for one feature set, :func:`decode_stack` for several (e.g. the
visible and the invisible overlaps at the start, after phase 1 and after phase 2) on the same
splits, and :func:`group_splits` gives the splits themselves.

Whether a feature set decodes is a test, not a threshold on the mean accuracy: the 50 splits are
overlapping resamples of the same few pairs, so their spread says nothing about how the accuracy
would vary over new pairs. :func:`pair_permutation_test` (one feature set) and
:func:`pair_permutation_tests` (several, on the same splits) run the exact permutation test over
the within-pair label flips (2^n assignments for n pairs; the decoder treats the two classes
alike, so 2^(n-1) distinct ones), each assignment decoded on the same splits with the same
training noise as the observed one. :meth:`DecodingTest.verdict` turns it into a
:class:`~lowrank_learning.Verdict` ("decodes"), with a pair-bootstrap interval for the accuracy;
:func:`compare_decoding` is the paired test of one feature set against another (sign test over
the pairs' held-out accuracies).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

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
from .verdicts import Verdict, _alpha, decide, sign_test

__all__ = [
    "DecodingResult",
    "DecodingTest",
    "compare_decoding",
    "decode",
    "decode_stack",
    "flip_assignments",
    "group_splits",
    "pair_permutation_test",
    "pair_permutation_tests",
]


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



# --------------------------------------------------------------------------- permutation test
#: Most pairs the exact test enumerates (2^(n-1) assignments, each decoded on every split).
MAX_EXACT_PAIRS = 16


@dataclass(frozen=True, eq=False)
class DecodingTest:
    """The exact permutation test of one decoding (:func:`pair_permutation_test`).

    Attributes
    ----------
    observed : float
        Mean accuracy over the splits for the observed labels (equals :func:`decode`'s ``mean``
        on the same data and options, up to solver tolerance at exact decision ties).
    null : array (2^(n-1),)
        Mean accuracy for every distinct within-pair flip of the labels; entry 0 is the observed
        assignment (no flip); the first pair is never flipped (flipping every pair gives the same
        accuracy: the decoder treats the classes alike).
    p : float
        Exact p-value: the fraction of ``null`` at or above ``observed`` (the observed counted).
    min_p : float
        The smallest p-value the test can reach, ``1 / len(null)``.
    detectable : float
        The smallest mean accuracy this test would call decoding at level ``alpha`` for these
        features, splits and noise (its power: a lower accuracy gives p >= alpha);
        ``nan`` when no accuracy would (``min_p >= alpha``).
    alpha : float
    pair_correct, pair_tested : array (n_pairs,)
        Per pair (in ``np.unique(groups)`` order), the number of its held-out samples decoded
        correctly and the number held out, summed over the splits (observed labels).
    interval : tuple of float or None
        Percentile pair-bootstrap interval (``level``) of the mean accuracy: pairs resampled with
        replacement, accuracy = their correct / held-out counts (the fits are not redone, so it
        is the spread over pairs given these decoders); None with fewer than 2 tested pairs.
    level : float
    n_splits, n_test_groups : int
    chance : float
        Accuracy of guessing (0.5: every test set holds both twins of its pairs).
    """

    observed: float
    null: np.ndarray
    p: float
    min_p: float
    detectable: float
    alpha: float
    pair_correct: np.ndarray
    pair_tested: np.ndarray
    interval: tuple[float, float] | None
    level: float
    n_splits: int
    n_test_groups: int
    chance: float = 0.5

    @property
    def n_pairs(self) -> int:
        return int(self.pair_correct.shape[0])

    @property
    def pair_accuracy(self) -> np.ndarray:
        """(n_pairs,) held-out accuracy of each pair (NaN for a pair never held out)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.pair_tested > 0, self.pair_correct / np.maximum(self.pair_tested, 1), np.nan)

    def verdict(self, claim: str) -> Verdict:
        """The claim that the features decode the labels, as a :class:`~lowrank_learning.Verdict`:
        "holds" when ``p < alpha``; "not testable at this profile" when too few pairs for the
        test ever to reach ``alpha``."""
        never = int(np.sum(self.pair_tested == 0))
        note = (f"mean accuracy {self.observed:.3f} over {self.n_splits} splits (chance {self.chance:g}); "
                f"this test calls decoding only from {self.detectable:.3f} up; pair-bootstrap interval over "
                f"{self.n_pairs - never} held-out pairs, decoders not refitted")
        if never:
            note += f"; {never} pairs never held out (not in the interval)"
        return Verdict(claim=claim, verdict=decide(self.p, self.alpha, self.min_p), statistic=self.observed,
                       interval=self.interval, p=self.p,
                       test=(f"exact permutation test, {self.null.size} within-pair label flips, "
                             f"same {self.n_splits} splits and noise"),
                       n=self.n_pairs, alpha=self.alpha, level=self.level, note=note)

    def as_dict(self) -> dict:
        return {"observed": self.observed, "p": self.p, "min_p": self.min_p, "detectable": self.detectable,
                "alpha": self.alpha, "interval": None if self.interval is None else list(self.interval),
                "level": self.level, "n_pairs": self.n_pairs, "n_assignments": int(self.null.size),
                "n_splits": self.n_splits, "pair_accuracy": self.pair_accuracy.tolist()}


def flip_assignments(n_pairs: int) -> np.ndarray:
    """Every within-pair label flip up to flipping all pairs: (2^(n_pairs-1), n_pairs) bool,
    row 0 all False (the observed labels), column 0 all False (pair 0 never flipped); row ``r``
    flips pair ``j`` when bit ``j - 1`` of ``r`` is set."""
    n_pairs = check_int("n_pairs", n_pairs, 1)
    if n_pairs > MAX_EXACT_PAIRS:
        raise InvalidParameterError(f"n_pairs: the exact test enumerates 2^(n_pairs-1) flips; at most "
                                    f"{MAX_EXACT_PAIRS} pairs, got {n_pairs}")
    rows = np.arange(2 ** (n_pairs - 1))
    bits = (rows[:, None] >> np.arange(n_pairs - 1)[None, :]) & 1
    return np.concatenate([np.zeros((rows.size, 1), bool), bits.astype(bool)], axis=1)


def _check_pairs(labels, groups, n_samples, n_test_groups):
    """Binary labels with each group a pair holding one sample of each class -> (labels 0/1, pair index)."""
    labels, groups = _check_labels_groups(labels, groups, n_samples, n_test_groups)
    classes = np.unique(labels)
    if classes.size != 2:
        raise InvalidParameterError(f"labels: the pair permutation test needs two classes, got {classes.tolist()}")
    y = (labels == classes[1]).astype(np.int8)
    uniq, pair = np.unique(groups, return_inverse=True)
    counts = np.bincount(pair, minlength=uniq.size)
    ones = np.bincount(pair, weights=y, minlength=uniq.size)
    if np.any(counts != 2) or np.any(ones != 1):
        bad = uniq[(counts != 2) | (ones != 1)][:3].tolist()
        raise InvalidParameterError(f"groups: every group must be a pair with one sample of each class "
                                    f"(twins); groups {bad} are not")
    return y, pair, uniq.size


def _fit_logistic(X, Y, C, max_iter: int = 100):
    """L2 logistic regression for a batch of label vectors on shared features (Newton's method
    with backtracking, float64): minimises ``C sum_i log(1 + exp(-s_i z_i)) + |w|^2 / 2``
    (intercept not penalised: scikit-learn's objective), ``z = X w + b``, ``s = 2 y - 1``.
    X (n, d); Y (P, n) in {0, 1}. Returns theta (P, d + 1) = [w, b]."""
    n, d = X.shape
    Xa = np.concatenate([X, np.ones((n, 1))], axis=1)
    reg = np.r_[np.ones(d), 0.0]
    Y = Y.astype(float)
    theta = np.zeros((Y.shape[0], d + 1))
    g = np.zeros(1)

    def objective(th, z):
        return C * np.sum(np.logaddexp(0.0, z) - Y * z, axis=-1) + 0.5 * np.sum(reg * th * th, axis=-1)

    z = np.zeros(Y.shape)
    f = objective(theta, z)
    for _ in range(max_iter):
        p = 0.5 * (1.0 + np.tanh(0.5 * z))  # expit, without overflow
        g = C * (p - Y) @ Xa + reg * theta
        if np.max(np.abs(g)) < 1e-10 * max(1.0, C * n):
            return theta
        H = np.einsum("pn,ni,nj->pij", C * p * (1.0 - p), Xa, Xa, optimize=True) + np.diag(reg)
        delta = np.linalg.solve(H, g[..., None])[..., 0]
        dz = delta @ Xa.T
        decrease = 1e-4 * np.sum(g * delta, axis=-1)
        t = np.ones(theta.shape[0])
        for _ in range(40):  # backtracking (Armijo); a full Newton step nearly always passes
            th_t, z_t = theta - t[:, None] * delta, z - t[:, None] * dz
            f_t = objective(th_t, z_t)
            ok = f_t <= f - t * decrease + 1e-12 * np.abs(f)
            if ok.all():
                break
            t = np.where(ok, t, 0.5 * t)
        theta, z, f = th_t, z_t, f_t
    raise RuntimeError("pair_permutation_test: Newton's method did not converge in "
                       f"{max_iter} iterations (max gradient {np.max(np.abs(g)):.3g})")


def _correct_counts(X, Y, splits, train_noise, seed, C):
    """Per assignment (rows of Y (P, n_samples)) and sample, how often it is decoded correctly over
    the splits -> (P, n_samples) int; the noise per split is :func:`decode`'s."""
    rng = np.random.default_rng(seed)
    correct = np.zeros(Y.shape, dtype=np.int64)
    for tr, te in splits:
        X_tr = X[tr] + train_noise * rng.standard_normal((tr.size, X.shape[1]))
        mu, sd = X_tr.mean(axis=0), X_tr.std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)  # a constant feature is left unscaled (scikit-learn's rule)
        theta = _fit_logistic((X_tr - mu) / sd, Y[:, tr], C)
        z = ((X[te] - mu) / sd) @ theta[:, :-1].T + theta[:, -1]  # (n_test, P)
        correct[:, te] += ((z.T > 0) == (Y[:, te] == 1))
    return correct


def _test_from_counts(correct, pair, n_pairs, n_splits, n_test_groups, alpha):
    totals = correct.sum(axis=1)  # (P,) correct decisions over all splits and held-out samples
    n_dec = n_splits * 2 * n_test_groups
    obs = int(totals[0])
    P = totals.size
    p = float(np.sum(totals >= obs) / P)
    min_p = 1.0 / P
    m = int(np.ceil(alpha * P)) - 1  # the observed is called decoding iff at most m assignments reach it
    if m < 1:
        detectable = float("nan")
    else:
        others = np.sort(totals[1:])[::-1]  # the m-th largest of the other assignments must stay below
        detectable = float(min(others[m - 1] + 1, n_dec) / n_dec)
    pair_correct = np.bincount(pair, weights=correct[0], minlength=n_pairs).astype(np.int64)
    # every split holds out n_test_groups whole pairs, both twins: count each pair's held-out samples
    return obs / n_dec, totals / n_dec, p, min_p, detectable, pair_correct


def _pair_interval(pair_correct, pair_tested, level, n_boot, seed):
    """Percentile bootstrap over the held-out pairs (vectorised; the draws of
    :func:`~lowrank_learning.bootstrap_interval` with the same seed)."""
    keep = pair_tested > 0
    c, t = pair_correct[keep].astype(float), pair_tested[keep].astype(float)
    if c.size < 2:
        return None
    idx = np.random.default_rng(seed).integers(0, c.size, size=(n_boot, c.size))
    vals = c[idx].sum(axis=1) / t[idx].sum(axis=1)
    lo, hi = np.quantile(vals, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")
    return float(lo), float(hi)


def pair_permutation_tests(features, labels, groups, n_splits: int = 50, n_test_groups: int = 2,
                           train_noise: float = 0.3, seed: int = 0, C: float = 1.0, alpha: float = 0.05,
                           level: float = 0.95, n_boot: int = 2000) -> dict:
    """:func:`pair_permutation_test` for several feature sets of the same pairs, all on the same
    splits (and, per set, :func:`decode_stack`'s noise stream).

    ``features``: mapping ``name -> array (n_samples, n_features_i)``. Returns
    ``{name: DecodingTest}`` in the same order.
    """
    n_splits, n_test_groups, train_noise, seed, C = _check_options(n_splits, n_test_groups, train_noise, seed, C)
    alpha, level = _alpha(alpha), _alpha(level)
    n_boot = check_int("n_boot", n_boot, 1)
    if not isinstance(features, Mapping) or not features:
        raise InvalidParameterError("features must be a non-empty mapping name -> array (n_samples, n_features)")
    sets = {str(k): finite_matrix(v, f"features[{k!r}]") for k, v in features.items()}
    n_samples = {X.shape[0] for X in sets.values()}
    if len(n_samples) != 1:
        raise InvalidParameterError(f"every feature set must have the same number of samples, got {sorted(n_samples)}")
    y, pair, n_pairs = _check_pairs(labels, groups, n_samples.pop(), n_test_groups)
    flips = flip_assignments(n_pairs)
    Y = y[None, :] ^ flips[:, pair].astype(np.int8)  # (P, n_samples): a flip swaps the pair's labels
    splits = group_splits(groups, n_splits, n_test_groups, seed)
    pair_tested = np.bincount(pair[np.concatenate([te for _, te in splits])], minlength=n_pairs).astype(np.int64)
    out = {}
    with threadpool_limits(limits=1):
        for k, X in sets.items():
            correct = _correct_counts(X, Y, splits, train_noise, seed, C)
            obs, null, p, min_p, det, pc = _test_from_counts(correct, pair, n_pairs, n_splits, n_test_groups, alpha)
            out[k] = DecodingTest(observed=obs, null=null, p=p, min_p=min_p, detectable=det, alpha=alpha,
                                  pair_correct=pc, pair_tested=pair_tested,
                                  interval=_pair_interval(pc, pair_tested, level, n_boot, seed), level=level,
                                  n_splits=n_splits, n_test_groups=n_test_groups)
    return out


def pair_permutation_test(features, labels, groups, n_splits: int = 50, n_test_groups: int = 2,
                          train_noise: float = 0.3, seed: int = 0, C: float = 1.0, alpha: float = 0.05,
                          level: float = 0.95, n_boot: int = 2000) -> DecodingTest:
    """Exact permutation test that ``features`` decode ``labels`` in :func:`decode`'s protocol.

    The samples come in pairs (``groups``), one of each of two classes (twins). Under the null
    hypothesis the features say nothing about which twin is which: swapping the labels within any
    set of pairs leaves the distribution of the data unchanged. The test decodes every such
    assignment (2^n for n pairs; flipping all pairs gives the same accuracy, so 2^(n-1) are
    decoded) on the same splits with the same training noise, and the p-value is the fraction
    whose mean accuracy reaches the observed one. Exact at any number of pairs: its level does
    not rest on the splits being independent (they are not: each is a resample of the same
    pairs).

    The decoder is :func:`decode`'s model (standardise on the noisy training features, L2
    logistic regression with inverse strength ``C``, intercept unpenalised) fitted by Newton's
    method to 1e-10 in the gradient, for all assignments at once (scikit-learn's solver stops at
    1e-4, so the two can disagree only on a test sample at an exact decision tie).

    Parameters
    ----------
    features : array (n_samples, n_features)
    labels : array (n_samples,)
        Two classes; each pair holds one sample of each.
    groups : array (n_samples,)
        Pair of each sample; at most :data:`MAX_EXACT_PAIRS` pairs.
    n_splits, n_test_groups, train_noise, seed, C
        As in :func:`decode`.
    alpha : float
        Level of the test (for ``detectable`` and the verdict).
    level, n_boot
        Coverage and resamples of the pair-bootstrap interval.

    Returns
    -------
    DecodingTest
    """
    return pair_permutation_tests({"features": features}, labels, groups, n_splits=n_splits,
                                  n_test_groups=n_test_groups, train_noise=train_noise, seed=seed, C=C,
                                  alpha=alpha, level=level, n_boot=n_boot)["features"]


def compare_decoding(better: DecodingTest, worse: DecodingTest, claim: str, alpha: float = 0.05,
                     seed: int = 0) -> Verdict:
    """Paired test that ``better`` decodes better than ``worse`` (two :class:`DecodingTest` of the
    same pairs on the same splits, e.g. invisible vs visible overlaps): exact one-sided sign test
    over the pairs' held-out accuracies (ties dropped, counted in the note; if every pair ties,
    p = 1 and the claim does not hold). The pairs' accuracies share training data, so the sign
    test's level is approximate; a pair never held out is excluded and counted."""
    if not isinstance(better, DecodingTest) or not isinstance(worse, DecodingTest):
        raise InvalidParameterError("compare_decoding: better and worse must be DecodingTest results")
    if better.n_pairs != worse.n_pairs or not np.array_equal(better.pair_tested, worse.pair_tested):
        raise InvalidParameterError("compare_decoding: the two tests must hold the same pairs out on the same splits")
    keep = better.pair_tested > 0
    v = sign_test(better.pair_accuracy[keep], worse.pair_accuracy[keep], claim=claim, alternative="greater",
                  alpha=alpha, seed=seed, what="pairs")
    # Ties (e.g. both decoded perfectly) are no evidence for the claim: they leave the sign test,
    # but whether the comparison was testable is judged by the pairs compared, not by the untied
    # ones; if every pair ties, p = 1.
    n_pairs = int(np.sum(keep))
    p = 1.0 if v.p is None else v.p
    v = replace(v, p=p, verdict=decide(p, alpha, 0.5 ** n_pairs if n_pairs else None))
    never = int(np.sum(~keep))
    if never:
        v = replace(v, excluded=v.excluded + never, note=v.note + f"; {never} pairs never held out, excluded")
    return v
