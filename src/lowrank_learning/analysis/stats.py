"""Statistics of trained networks and learning curves.

* :func:`excess_kurtosis` and :func:`gaussian_distance`: how far the entries of trained vectors
  (rows of X, one sample per neuron) are from the jointly Gaussian population the mean-field
  theory assumes.
* :func:`fit_error_scaling`: ``err(N) = a / sqrt(N) + b`` (finite-size part + systematic part)
  and the log-log slope, with ``a, b >= 0`` or unconstrained.
* :func:`bootstrap_error_scaling`: intervals of ``a``, ``b`` and the slope by resampling the
  seeds at each N.
* :func:`levels_off_test`: the verdict "the error has an N-independent part" (log-log slope
  flatter than the -1/2 of pure finite-size error, and not growing with N).
* :func:`rank_correlation_test`: a Spearman rank correlation with its permutation p-value
  (within strata), as a verdict.
* :func:`loss_drop_epoch`: the (fractional) epoch at which a loss curve drops.
* :func:`overlap_error_curve`: the largest overlap difference per epoch between two runs.
* :func:`mean_se`: mean and standard error of a sample.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st
from scipy.optimize import nnls
from scipy.special import ndtri
from scipy.stats import kurtosis

from ..core._checks import (
    check_choice,
    check_int,
    check_seed,
    finite_matrix,
    finite_sample,
)
from ..core.errors import InvalidParameterError
from .verdicts import DOES_NOT_HOLD, NOT_TESTABLE, Verdict, _alpha, decide

__all__ = [
    "ErrorScaling",
    "bootstrap_error_scaling",
    "excess_kurtosis",
    "fit_error_scaling",
    "gaussian_distance",
    "levels_off_test",
    "loss_drop_epoch",
    "mean_se",
    "overlap_error_curve",
    "rank_correlation_test",
]


def excess_kurtosis(X) -> np.ndarray:
    """Excess kurtosis of each column of ``X`` (N, K) -> (K,) (0 for a Gaussian; Fisher's
    definition, biased estimator). For N Gaussian samples its standard error is ``sqrt(24/N)``."""

    return np.atleast_1d(kurtosis(finite_matrix(X, "excess_kurtosis: X", min_rows=4, shape="(N, K)"), axis=0, fisher=True, bias=True))


def gaussian_distance(X, n_projections: int = 64, seed: int = 0) -> float:
    """Sliced 1-Wasserstein distance between the rows of ``X`` (N, K) and a Gaussian with the
    same mean and covariance, in units of each projection's standard deviation (scale-free).

    For each of ``n_projections`` random unit directions ``w`` (drawn from ``seed``), the
    projections ``X w`` are standardised and their sorted values compared with the standard
    normal quantiles at ``(i + 1/2) / N``; the mean absolute difference is the 1-d
    Wasserstein distance to the Gaussian (no Gaussian sample is drawn). Returns the average over
    directions: 0 for an exactly Gaussian population, ~0.8/sqrt(N) for an i.i.d. Gaussian sample,
    O(1) for strongly non-Gaussian rows (a +-1 coin gives 0.40 in one dimension).
    """

    X = finite_matrix(X, "gaussian_distance: X", min_rows=4, shape="(N, K)")
    n_projections = check_int("gaussian_distance: n_projections", n_projections, 1)
    seed = check_seed(seed, "gaussian_distance: seed")
    N, K = X.shape
    W = np.random.default_rng(seed).standard_normal((K, n_projections))
    W /= np.linalg.norm(W, axis=0)
    P = (X - X.mean(axis=0)) @ W  # (N, n_projections)
    sd = P.std(axis=0)
    if np.any(sd == 0):
        raise InvalidParameterError("gaussian_distance: a projection of X has zero variance")
    P = np.sort(P / sd, axis=0)
    q = ndtri((np.arange(N) + 0.5) / N)
    return float(np.mean(np.abs(P - q[:, None])))


@dataclass(frozen=True)
class ErrorScaling:
    """Fit of ``err(N) = a / sqrt(N) + b`` (relative least squares) and the log-log slope.

    Attributes
    ----------
    a : float  finite-size amplitude (error at N = 1 of the 1/sqrt(N) part)
    b : float  systematic, N-independent part
    slope : float  slope of log err against log N (-0.5 for pure finite-size error)
    crossover : float  N at which the two parts are equal, ``(a / b)^2`` (inf unless a, b > 0)
    rms_residual : float  root-mean-square relative residual of the fit
    constrained : bool  whether ``a, b >= 0`` was imposed (non-negative least squares)
    """

    a: float
    b: float
    slope: float
    crossover: float
    rms_residual: float
    constrained: bool = True

    def __call__(self, N):
        return self.a / np.sqrt(np.asarray(N, dtype=float)) + self.b


def _scaling_data(N, err, where: str):
    N = np.asarray(N, dtype=float).ravel()
    err = np.asarray(err, dtype=float).ravel()
    if N.shape != err.shape or N.size < 2:
        raise InvalidParameterError(f"{where}: N and err need the same length >= 2, got {N.size} and {err.size}")
    if np.any(~np.isfinite(N)) or np.any(N <= 0):
        raise InvalidParameterError(f"{where}: N must be positive, got {N}")
    bad = int(np.sum(~np.isfinite(err) | (err <= 0)))
    if bad:
        raise InvalidParameterError(f"{where}: err must be positive and finite; {bad} of {err.size} values are "
                                    "not (count and report failed runs before fitting)")
    if np.unique(N).size < 2:
        raise InvalidParameterError(f"{where}: need at least two distinct N")
    return N, err


def fit_error_scaling(N, err, constrained: bool = True) -> ErrorScaling:
    """Fit ``err = a / sqrt(N) + b`` to positive errors ``err`` at sizes ``N`` (arrays of the same
    shape; repeated N = several seeds). Residuals are relative (errors span decades): minimise
    ``sum ((a/sqrt(N) + b - err) / err)^2``, by non-negative least squares (``a, b >= 0``) when
    ``constrained``, else by ordinary least squares (``a`` or ``b`` may come out negative: an
    error that grows with N gives ``a < 0``, which the constrained fit would read as ``a = 0``,
    a flat error). The slope is the ordinary least-squares slope of ``log err`` on ``log N``."""

    N, err = _scaling_data(N, err, "fit_error_scaling")
    A = np.stack([1.0 / np.sqrt(N), np.ones_like(N)], axis=1) / err[:, None]
    if constrained:
        (a, b), _ = nnls(A, np.ones_like(N))
    else:
        (a, b), *_ = np.linalg.lstsq(A, np.ones_like(N), rcond=None)
    slope = float(np.polyfit(np.log(N), np.log(err), 1)[0])
    resid = (a / np.sqrt(N) + b - err) / err
    cross = float((a / b) ** 2) if (a > 0 and b > 0) else float("inf")
    return ErrorScaling(float(a), float(b), slope, cross, float(np.sqrt(np.mean(resid ** 2))), bool(constrained))


def _resample_within(N, rng, n_boot):
    """(n_boot, n) indices: each size's points (seeds) resampled with replacement among themselves."""
    groups = [np.flatnonzero(N == u) for u in np.unique(N)]
    idx = np.empty((n_boot, N.size), dtype=np.int64)
    for g in groups:
        idx[:, g] = g[rng.integers(0, g.size, size=(n_boot, g.size))]
    return idx


def _fits_vectorised(N, err):
    """Unconstrained and constrained (a, b) and the log-log slope for a stack of data sets:
    ``N``, ``err`` (n_boot, n) -> dict of (n_boot,) arrays (closed-form 2 x 2 least squares)."""
    x = 1.0 / np.sqrt(N) / err  # rows of the design matrix, relative residuals
    y = 1.0 / err
    sxx, syy, sxy = np.sum(x * x, 1), np.sum(y * y, 1), np.sum(x * y, 1)
    sx, sy = np.sum(x, 1), np.sum(y, 1)
    det = sxx * syy - sxy ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        a_free = (syy * sx - sxy * sy) / det
        b_free = (sxx * sy - sxy * sx) / det
        # constrained: the free solution if both >= 0, else the better of the one-parameter fits
        a_only, b_only = np.maximum(sx / sxx, 0.0), np.maximum(sy / syy, 0.0)
    r_a = a_only ** 2 * sxx - 2 * a_only * sx      # residual sum of squares minus n
    r_b = b_only ** 2 * syy - 2 * b_only * sy
    ok = (a_free >= 0) & (b_free >= 0) & np.isfinite(det) & (det > 0)
    a_con = np.where(ok, a_free, np.where(r_a <= r_b, a_only, 0.0))
    b_con = np.where(ok, b_free, np.where(r_a <= r_b, 0.0, b_only))
    lx, ly = np.log(N), np.log(err)
    lxc = lx - lx.mean(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.sum(lxc * (ly - ly.mean(1, keepdims=True)), 1) / np.sum(lxc ** 2, 1)
    return {"a": a_con, "b": b_con, "a_free": a_free, "b_free": b_free, "slope": slope}


def bootstrap_error_scaling(N, err, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> dict:
    """Percentile-bootstrap intervals of the fit of :func:`fit_error_scaling`, resampling the
    seeds at each size: the points (one per seed) at each distinct N are drawn with replacement
    among themselves, ``n_boot`` times from ``seed``, and both fits are redone.

    Returns ``{name: (estimate, low, high)}`` for ``a``, ``b`` (constrained, ``a, b >= 0``),
    ``a_free``, ``b_free`` (unconstrained) and ``slope``, plus ``seeds`` ({N: number of seeds})
    and ``n_boot``. With few seeds per size the percentile interval is too narrow (with 2 seeds a
    size has only 3 distinct resamples); ``seeds`` says how many there were. A resample whose
    sizes all repeat one value cannot be fitted; resampling within sizes never produces one.
    """
    N, err = _scaling_data(N, err, "bootstrap_error_scaling")
    level = _alpha(level)
    n_boot = check_int("bootstrap_error_scaling: n_boot", n_boot, 1)
    rng = np.random.default_rng(check_seed(seed, "bootstrap_error_scaling: seed"))
    idx = _resample_within(N, rng, n_boot)
    boot = _fits_vectorised(N[idx], err[idx])
    con, free = fit_error_scaling(N, err, True), fit_error_scaling(N, err, False)
    est = {"a": con.a, "b": con.b, "a_free": free.a, "b_free": free.b, "slope": con.slope}
    q = [(1 - level) / 2, (1 + level) / 2]
    out = {}
    for k, v in est.items():
        vals = boot[k][np.isfinite(boot[k])]
        lo, hi = np.quantile(vals, q, method="inverted_cdf") if vals.size else (np.nan, np.nan)
        out[k] = (float(v), float(lo), float(hi))
    out["seeds"] = {float(u): int(np.sum(N == u)) for u in np.unique(N)}
    out["n_boot"] = n_boot
    return out


def levels_off_test(N, err, *, claim: str = "the error has an N-independent part (it levels off)",
                    alpha: float = 0.05, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> Verdict:
    """Verdict on "the error ``err`` (n,) at sizes ``N`` (n,) (one point per seed) has an
    N-independent part".

    Model: ``err = (a / sqrt(N) + b) * noise`` with multiplicative seed-to-seed noise. Pure
    finite-size error (``b = 0``) has log-log slope exactly -1/2 at every N; a systematic part
    ``b > 0`` flattens it. The test is the one-sided t-test of the least-squares slope of
    ``log err`` on ``log N`` against -1/2 (``n - 2`` degrees of freedom; exact for log-normal
    noise of one spread at every N): "holds" if the slope is significantly above -1/2.

    An error that grows with N is not an error that levels off (the constrained fit would read
    it as ``a = 0``, a flat error): if the slope is significantly above 0 (one-sided t-test at
    ``alpha``), the verdict is "does not hold" whatever the first test says, and the note says so.

    The statistic is the slope with its t interval (``level``); the note adds the unconstrained
    systematic part ``b`` with its bootstrap interval over seeds (:func:`bootstrap_error_scaling`).
    Not testable with fewer than 3 points.
    """
    alpha, level = _alpha(alpha), _alpha(level)
    N, err = _scaling_data(N, err, "levels_off_test")
    n = N.size
    if n < 3:
        return Verdict(claim=claim, verdict=NOT_TESTABLE, statistic=float("nan"), interval=None, p=None,
                       test=f"log-log slope t-test needs >= 3 points, got {n}", n=n, alpha=alpha, level=level)
    lx, ly = np.log(N), np.log(err)
    res = _st.linregress(lx, ly)
    slope, se, df = float(res.slope), float(res.stderr), n - 2
    if se == 0.0:
        p_flat = 0.0 if slope > -0.5 else 1.0
        p_grow = 0.0 if slope > 0 else 1.0
        interval = (slope, slope)
    else:
        p_flat = float(_st.t.sf((slope + 0.5) / se, df))
        p_grow = float(_st.t.sf(slope / se, df))
        q = float(_st.t.ppf((1 + level) / 2, df))
        interval = (slope - q * se, slope + q * se)
    boot = bootstrap_error_scaling(N, err, level=level, n_boot=n_boot, seed=seed)
    b, blo, bhi = boot["b_free"]
    seeds = ", ".join(f"{k} at N = {u:g}" for u, k in boot["seeds"].items())
    notes = [f"log-log slope {slope:.3f} (pure finite-size error: -0.5)",
             (f"systematic part b = {b:.3g} (unconstrained fit), {level:.0%} bootstrap interval over seeds "
              f"[{blo:.3g}, {bhi:.3g}]"), f"seeds: {seeds}"]
    word = decide(p_flat, alpha)
    test = f"one-sided t-test of the log-log slope > -0.5, {n} runs, {df} degrees of freedom"
    if p_grow < alpha:
        word = DOES_NOT_HOLD
        notes.insert(0, f"the error grows with N (slope > 0: p = {p_grow:.2g}); growth is not levelling off")
        test += "; overruled: the error grows with N"
    return Verdict(claim=claim, verdict=word, statistic=slope, interval=interval, p=p_flat, test=test, n=n,
                   alpha=alpha, level=level, note="; ".join(notes))


def _centred_ranks(v, strata_idx):
    """Average ranks of ``v`` within each stratum, centred on the stratum's mean rank."""
    r = np.empty_like(v)
    for g in strata_idx:
        rg = _st.rankdata(v[g])
        r[g] = rg - rg.mean()
    return r


def rank_correlation_test(x, y, strata=None, *, claim: str, alternative: str = "greater", alpha: float = 0.05,
                          level: float = 0.95, n_perm: int = 9999, n_boot: int = 1000, seed: int = 0,
                          what: str = "runs") -> Verdict:
    """Verdict on "``x`` and ``y`` (n,) are rank-correlated" (positively for ``alternative =
    "greater"``): a correlation, not a cause.

    The statistic is Spearman's rho computed within strata: ``x`` and ``y`` are ranked within
    each stratum (``strata`` (n,) labels; None: one stratum), each centred on its stratum's mean
    rank, and the Pearson correlation of the pooled centred ranks is taken (with one stratum this
    is Spearman's rho exactly). Comparing only within strata keeps a common trend (e.g. both
    shrinking with N) from posing as a correlation. The p-value is a permutation test that
    shuffles ``y`` within strata: exact (every arrangement enumerated) when there are at most
    ``n_perm`` arrangements, else Monte Carlo with ``n_perm`` shuffles from ``seed`` and
    ``p = (1 + #{rho* >= rho}) / (1 + n_perm)``. "Not testable at this profile" when the number of
    arrangements is too small for any p below ``alpha``. Strata with a single run cannot
    contribute and are counted as excluded. The interval is a percentile bootstrap over runs
    within strata (``n_boot`` resamples; None when not testable). Values must be finite (count failed runs before).
    """
    alternative = check_choice("rank_correlation_test: alternative", alternative, ("greater", "less", "two-sided"))
    alpha, level = _alpha(alpha), _alpha(level)
    n_perm = check_int("rank_correlation_test: n_perm", n_perm, 1)
    n_boot = check_int("rank_correlation_test: n_boot", n_boot, 1)
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise InvalidParameterError(f"rank_correlation_test: x and y need one length, got {x.size} and {y.size}")
    for name, v in (("x", x), ("y", y)):
        bad = int(np.sum(~np.isfinite(v)))
        if bad:
            raise InvalidParameterError(f"rank_correlation_test: {bad} of {v.size} values of {name} are not finite; "
                                        "count and report them before testing")
    labels = np.zeros(x.size, dtype=np.int64) if strata is None else \
        np.unique(np.asarray(list(strata), dtype=object).astype(str), return_inverse=True)[1].ravel()
    if labels.size != x.size:
        raise InvalidParameterError(f"rank_correlation_test: strata need one label per run, got {labels.size} for {x.size}")
    groups = [np.flatnonzero(labels == g) for g in np.unique(labels)]
    single = sum(g.size for g in groups if g.size < 2)
    groups = [g for g in groups if g.size >= 2]
    used = np.concatenate(groups) if groups else np.array([], dtype=np.int64)
    side = {"greater": "one-sided, rho > 0", "less": "one-sided, rho < 0", "two-sided": "two-sided"}[alternative]
    n_strata = len(groups)
    test = f"permutation test of Spearman's rho within {n_strata} strata ({side}), {used.size} {what}"
    note = [f"{single} {what} alone in their stratum excluded"] if single else []
    arrangements = float(np.prod([float(math.factorial(g.size)) for g in groups])) if groups else 1.0
    min_p = 1.0 / arrangements if arrangements <= n_perm else 1.0 / (1 + n_perm)
    if alternative == "two-sided":
        min_p *= 2
    if not groups:
        return Verdict(claim=claim, verdict=NOT_TESTABLE, statistic=float("nan"), interval=None, p=None, test=test,
                       n=0, excluded=single, alpha=alpha, level=level, note="; ".join(note + ["no stratum has 2 runs"]))
    rx, ry = _centred_ranks(x, groups), _centred_ranks(y, groups)
    rx, ry = rx[used], ry[used]
    local = [np.arange(g.size) + sum(h.size for h in groups[:i]) for i, g in enumerate(groups)]
    denom = np.sqrt(np.sum(rx ** 2) * np.sum(ry ** 2))

    def rho_of(ry_perm):
        return np.sum(rx * ry_perm, axis=-1) / denom if denom > 0 else np.zeros(np.shape(ry_perm)[:-1])

    rho = float(rho_of(ry))
    rng = np.random.default_rng(check_seed(seed, "rank_correlation_test: seed"))
    if arrangements <= n_perm:
        perms = [np.array(list(itertools.permutations(g))) for g in local]
        combos = itertools.product(*[range(len(p)) for p in perms])
        null = np.array([rho_of(ry[np.concatenate([perms[i][c] for i, c in enumerate(cs)])]) for cs in combos])
        exact = True
    else:
        P = np.empty((n_perm, used.size), dtype=np.int64)
        for g in local:
            P[:, g] = g[np.argsort(rng.random((n_perm, g.size)), axis=1)]
        null = rho_of(ry[P])
        exact = False
    tol = 1e-12
    if alternative == "greater":
        k = np.sum(null >= rho - tol)
    elif alternative == "less":
        k = np.sum(null <= rho + tol)
    else:
        k = np.sum(np.abs(null) >= abs(rho) - tol)
    p = float(k / null.size) if exact else float((1 + k) / (1 + n_perm))
    # bootstrap interval: runs resampled within strata, ranks recomputed
    lo_hi = None
    if n_boot > 1 and used.size >= 3 and min_p < alpha:  # no interval where nothing is testable
        vals = []
        for _ in range(n_boot):
            bi = np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups])
            bg = [np.arange(g.size) + sum(h.size for h in groups[:i]) for i, g in enumerate(groups)]
            bx, by = _centred_ranks(x[bi], bg), _centred_ranks(y[bi], bg)
            d = np.sqrt(np.sum(bx ** 2) * np.sum(by ** 2))
            if d > 0:
                vals.append(np.sum(bx * by) / d)
        if vals:
            lo, hi = np.quantile(vals, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")
            lo_hi = (float(lo), float(hi))
    note.append(f"exact over all {arrangements:.0f} arrangements" if exact
                else f"Monte Carlo, {n_perm} within-stratum shuffles")
    note.append("a correlation across runs, not a test of cause")
    return Verdict(claim=claim, verdict=decide(p, alpha, min_p), statistic=rho, interval=lo_hi, p=min(1.0, p),
                   test=test, n=int(used.size), excluded=single, alpha=alpha, level=level, note="; ".join(note))


def loss_drop_epoch(loss, min_ratio: float = 10.0) -> float:
    """Fractional epoch at which ``log(loss)`` first falls halfway from its initial value to its
    minimum (linear interpolation between epochs); NaN if the loss never falls by ``min_ratio``."""
    loss = np.asarray(loss, dtype=float)
    if loss.ndim != 1 or loss.size < 2 or np.any(~np.isfinite(loss)) or np.any(loss <= 0):
        raise InvalidParameterError("loss_drop_epoch: loss must be a 1-d array of >= 2 positive finite values")
    lo = float(np.min(loss))
    if loss[0] / lo < min_ratio:
        return float("nan")
    level = 0.5 * (np.log(loss[0]) + np.log(lo))
    ll = np.log(loss)
    e = int(np.argmax(ll <= level))
    if e == 0:
        return 0.0
    return float(e - 1 + (ll[e - 1] - level) / (ll[e - 1] - ll[e]))


def overlap_error_curve(sigma_a, sigma_b) -> np.ndarray:
    """Largest absolute overlap difference per epoch: (epochs, K, K) x 2 -> (epochs,)."""
    a, b = np.asarray(sigma_a), np.asarray(sigma_b)
    if a.shape != b.shape or a.ndim != 3:
        raise InvalidParameterError(f"overlap_error_curve: two (epochs, K, K) stacks of one shape, got {a.shape}, {b.shape}")
    return np.max(np.abs(a - b), axis=(1, 2))


def mean_se(x) -> tuple[float, float]:
    """Mean and standard error (``std(ddof=1) / sqrt(n)``) of a sample ``x`` (any shape, flattened).

    Every value must be finite: a NaN or an infinity (a run that failed, an event that never
    happened within the budget) raises :class:`InvalidParameterError` saying how many there are,
    so that nothing is dropped silently; count and report them, or use a test that handles
    censored outcomes (:func:`~lowrank_learning.analysis.verdicts.sign_test`). Standard error
    ``nan`` with one value; an empty sample raises.
    """
    x = finite_sample("mean_se", x, hint="count and report them before averaging")
    se = float(np.std(x, ddof=1) / np.sqrt(x.size)) if x.size > 1 else float("nan")
    return float(np.mean(x)), se
