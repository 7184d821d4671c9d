"""The closure test of E9: do non-Gaussian trained rows cause the systematic error?

E9 finds that for erf units the full network ends training with overlaps that differ from the
overlap theory by a part that does not shrink with N. For nonlinear units the theory makes one
approximation, the Gaussian closure: it treats the rows of X (one per neuron) as jointly Gaussian
with second moments Sigma. A full network whose plastic vectors are redrawn every k epochs as fresh
Gaussian rows with exactly the current overlaps (``learn_vectors(..., redraw_every=k)``) keeps
Sigma and discards every other feature of the row distribution, so its rows never drift away
from Gaussian. If non-Gaussian rows cause the systematic part, the redrawn networks lose it and
their error falls like a/sqrt(N); if the systematic part remains, something else causes it.

* :func:`compare_redrawn`: the E9 job (:func:`~.validation.compare_nonlinear`) with redrawn vectors;
  same initial vectors, same trials, same measures.
* :func:`closure_jobs`: the E9 headline jobs (erf, flip-flop, one rate) at several N and seeds.
* :func:`closure_verdict`: the test (below), on paired end-of-training errors.
* :func:`run_closure`: runs plain and redrawn networks and returns the data and the verdict.

The test
--------
Model: the mean end-of-training error of a variant (plain, redrawn) at size N is ``a / sqrt(N) + b``;
``b`` is its systematic part. Runs are paired (same N and seed: same initial vectors and trials).
``b`` is estimated by the intercept of the least-squares line through the per-size mean errors
against ``1 / sqrt(N)``: a fixed linear combination ``sum_h c_h mean_h`` of the per-size means
(``sum c = 1``, ``sum c / sqrt(N_h) = 0``; unbiased for b whatever a is). Every part below is a
one-sided Welch t-test of such a contrast of a per-pair quantity (its variance from the per-size
sample (co)variances over seeds, Satterthwaite degrees of freedom):

1. *premise*, ``b_plain > 0`` (the plain networks have a systematic part at this profile);
2. *reduces*, ``b_plain - b_redrawn > 0`` (contrast of the paired differences);
3. *removes most*, ``most * b_plain - b_redrawn > 0`` (default ``most = 1/2``: redrawing removes
   more than half of the systematic part).

A part holds if its p < alpha. The claim's verdict: "not testable at this profile" if there are
fewer than ``min_sizes`` distinct N or fewer than ``min_pairs`` complete pairs at some N, or if the
premise does not hold (there is then no systematic part for the redraw to remove); otherwise
"holds" if parts 2 and 3 hold, "holds in part" if only part 2 does (redrawing removes a significant
share of the systematic part, but not shown to be most of it), "does not hold" if neither. The
statistic is the share removed, ``1 - b_redrawn / b_plain``, with its Fieller interval (None when
``b_plain`` is not clearly away from 0). The redrawn ``b`` with its t interval is in the note: an
interval that contains 0 means the redrawn error is compatible with pure 1/sqrt(N) finite-size
error. The t-tests assume roughly normal per-size means; tests/test_closure.py checks the error
rates on skewed (log-normal) synthetic errors at the sizes the chapter uses.

:func:`run_closure` also reports E9's own fit (:func:`~lowrank_learning.analysis.stats.fit_error_scaling`,
relative residuals, ``a, b >= 0``) of each variant, to compare with the E9 chapter's numbers.

Failed runs (a divergence, a missing job) are never dropped silently: a pair with a failed run
is excluded from the fits and counted in ``Verdict.excluded`` with the reason in the note.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as _st

from ..analysis.stats import fit_error_scaling
from ..analysis.verdicts import DOES_NOT_HOLD, HOLDS, HOLDS_IN_PART, NOT_TESTABLE, Verdict, check_level, decide
from ..core._checks import check_int
from ..core.errors import InvalidParameterError, LowRankError
from .validation import compare_nonlinear, e9_jobs

__all__ = ["CLOSURE_CLAIM", "compare_redrawn", "closure_jobs", "closure_verdict", "ClosureResult", "run_closure"]

CLOSURE_CLAIM = ("Non-Gaussian trained rows cause the systematic part of the full network's error: "
                 "networks redrawn Gaussian with the same overlaps lose most of it")
VARIANTS = ("plain", "redrawn")


# ----------------------------------------------------------------------------- the job
def compare_redrawn(activation: str, task: str, N: int, lr: float, seed: int, epochs: int = 300,
                    n_trials: int = 4, dt: float = 0.1, T_max: float = 20.0, dtype: str = "float32",
                    redraw_every: int = 1) -> dict:
    """:func:`~.validation.compare_nonlinear` with the full network's vectors redrawn Gaussian with the
    same overlaps before the update of every epoch ``e > 0`` with ``e % redraw_every == 0``
    (``learn_vectors(..., redraw_every=redraw_every)``, redraws seeded by ``seed``).

    Same initial vectors (Gaussian rows of covariance :data:`~.validation.INIT_OVERLAPS`, seed
    ``seed``), same trials and same theory run as the plain job, so a plain and a redrawn job with
    the same parameters differ only by the redraws. Returns the plain job's measures (``err_end``,
    ``err_curve`` (epochs + 1,), ``diff_end`` (10,), ``kurtosis_end`` (4,), ...; see
    :func:`~.validation.compare_nonlinear`; the same keys, so that a sweep frame indexes both alike).
    ``kurtosis_end`` and
    ``gauss_dist_end`` measure the vectors after the last update, i.e. at most ``redraw_every``
    epochs of training after the last redraw.
    """
    return compare_nonlinear(activation, task, N, lr, seed, epochs=epochs, n_trials=n_trials, dt=dt, T_max=T_max,
                             dtype=dtype, redraw_every=check_int("compare_redrawn: redraw_every", redraw_every, 1))


def closure_jobs(N_values, seeds, activation: str = "erf", task: str = "flipflop", lr: float = 0.2,
                 epochs: int = 200, n_trials: int = 4, dt: float = 0.1, T_max: float = 20.0,
                 dtype: str = "float32") -> list[dict]:
    """The E9 jobs of one (activation, task, rate) combination, ``seeds[i]`` seeds (0, 1, ...) at
    ``N_values[i]``: :func:`~.validation.e9_jobs` with that one combination and no shortened runs.
    The defaults are E9's headline job (erf on flip-flop, eta = 0.2, E9's paper-profile epochs and
    trials). Each dict holds the arguments of :func:`~.validation.compare_nonlinear`; add
    ``redraw_every`` for :func:`compare_redrawn`."""
    return e9_jobs(N_values, seeds, activations=(activation,), tasks=(task,), lrs=(lr,), epochs=epochs,
                   n_trials=n_trials, dt=dt, T_max=T_max, dtype=dtype)


# ----------------------------------------------------------------------------- the test
def _intercept_weights(sizes) -> np.ndarray:
    """Weights ``c`` (one per size) with ``sum_h c_h m_h`` = the intercept b of the least-squares line
    ``m = a / sqrt(N) + b`` through per-size means ``m_h`` (one point per size, equal weights):
    ``sum c = 1`` and ``sum c / sqrt(N) = 0``, so the estimate is unbiased for b whatever a is."""
    x = 1.0 / np.sqrt(np.asarray(sizes, dtype=float))
    design = np.stack([x, np.ones_like(x)], axis=1)
    return np.linalg.pinv(design)[1]


def _contrast(N, ys, level: float) -> dict:
    """The intercept contrast of each sample in ``ys`` (list of (n,) arrays paired by run), per size
    means and (co)variances: estimates (k,), covariance (k, k) of the estimates, and the Welch-
    Satterthwaite degrees of freedom of each estimate's variance."""
    sizes = np.unique(N)
    c = _intercept_weights(sizes)
    Y = np.stack(ys)                                                 # (k, n)
    est = np.zeros(len(ys))
    cov = np.zeros((len(ys), len(ys)))
    terms = []                                                       # per size: (k, k) contributions
    n_h = []
    for ch, size in zip(c, sizes):
        y = Y[:, N == size]
        est += ch * y.mean(axis=1)
        term = ch ** 2 * np.atleast_2d(np.cov(y, ddof=1)) / y.shape[1]
        cov += term
        terms.append(term)
        n_h.append(y.shape[1])
    return {"est": est, "cov": cov, "terms": terms, "n_h": np.array(n_h), "weights": c, "sizes": sizes}


def _welch_df(terms, n_h, w) -> float:
    """Satterthwaite degrees of freedom of the variance of ``w @ estimates`` (w (k,))."""
    parts = np.array([w @ t @ w for t in terms])
    total = parts.sum()
    denom = np.sum(parts ** 2 / (n_h - 1))
    return float(total ** 2 / denom) if denom > 0 else float("inf")


def _t_part(claim: str, est: float, var: float, df: float, what: str, *, alpha: float, level: float, n: int,
            excluded: int, note: str = "") -> Verdict:
    """One-sided t-test of ``est > 0`` (a linear contrast with variance ``var``, ``df`` degrees of
    freedom) with its two-sided t interval."""
    se = float(np.sqrt(max(var, 0.0)))
    if se == 0.0:
        p, interval = (0.0 if est > 0 else 1.0), (est, est)
    else:
        p = float(_st.t.sf(est / se, df))
        q = float(_st.t.ppf((1 + level) / 2, df))
        interval = (est - q * se, est + q * se)
    return Verdict(claim=claim, verdict=decide(p, alpha), statistic=float(est), interval=interval, p=p,
                   test=f"Welch t-test of an intercept contrast ({what}; one-sided, > 0; {df:.1f} df)", n=n,
                   excluded=excluded, alpha=alpha, level=level,
                   note=(note + "; " if note else "") + f"estimate {est:.3g} +- {se:.2g} (standard error)")


def _fieller(bp, br, V, q) -> tuple[float, float] | None:
    """Fieller interval of ``theta = b_r / b_p`` from estimates with covariance V (2x2) and quantile q:
    the thetas with ``(theta b_p - b_r)^2 <= q^2 var(theta b_p - b_r)``; None if it is unbounded
    (b_p not clearly away from 0)."""
    A = bp ** 2 - q ** 2 * V[0, 0]
    B = bp * br - q ** 2 * V[0, 1]
    C = br ** 2 - q ** 2 * V[1, 1]
    disc = B ** 2 - A * C
    if A <= 0 or disc < 0:
        return None
    r = np.sqrt(disc)
    return float((B - r) / A), float((B + r) / A)


def closure_verdict(N, err_plain, err_redrawn, *, claim: str = CLOSURE_CLAIM, most: float = 0.5,
                    alpha: float = 0.05, level: float = 0.95, min_sizes: int = 3, min_pairs: int = 3) -> Verdict:
    """Does redrawing the rows Gaussian remove the systematic part of the error? (the module's test).

    Parameters
    ----------
    N : array (n,)
        Network size of each pair of runs.
    err_plain, err_redrawn : arrays (n,)
        End-of-training error of the plain and the redrawn run of each pair (same N and seed). NaN
        marks a failed run: its pair is excluded and counted (``Verdict.excluded``, note).
    most : float in (0, 1)
        Part 3's share: "removes most" means ``b_redrawn < most * b_plain``.
    alpha, level : the parts' level and the intervals' coverage.
    min_sizes, min_pairs : fewer distinct N, or fewer complete pairs at some N: not testable.

    Returns
    -------
    Verdict (statistic: the share removed ``1 - b_redrawn / b_plain``, Fieller interval) with parts
    ``premise``, ``reduces``, ``removes_most`` (statistics ``b_plain``, ``b_plain - b_redrawn`` and
    ``most * b_plain - b_redrawn``, t intervals).
    """
    N = np.asarray(N, dtype=float).ravel()
    ep = np.asarray(err_plain, dtype=float).ravel()
    er = np.asarray(err_redrawn, dtype=float).ravel()
    if not (N.shape == ep.shape == er.shape) or N.size == 0:
        raise InvalidParameterError(f"closure_verdict: N, err_plain, err_redrawn need one non-zero length, "
                                    f"got {N.size}, {ep.size}, {er.size}")
    if np.any(~np.isfinite(N)) or np.any(N <= 0):
        raise InvalidParameterError("closure_verdict: N must be positive and finite")
    for name, e in (("err_plain", ep), ("err_redrawn", er)):
        if np.any(e[np.isfinite(e)] <= 0) or np.any(np.isinf(e)):
            raise InvalidParameterError(f"closure_verdict: {name} must be positive (NaN marks a failed run)")
    if not 0.0 < float(most) < 1.0:
        raise InvalidParameterError(f"closure_verdict: most must be in (0, 1), got {most!r}")
    alpha, level = check_level("closure_verdict: alpha", alpha), check_level("closure_verdict: level", level)
    min_sizes = check_int("closure_verdict: min_sizes", min_sizes, 2)
    min_pairs = check_int("closure_verdict: min_pairs", min_pairs, 2)

    fail_p, fail_r = np.isnan(ep), np.isnan(er)
    bad = fail_p | fail_r
    notes = []
    if bad.any():
        notes.append(f"{int(bad.sum())} of {N.size} pairs excluded: {int(fail_p.sum())} plain and "
                     f"{int(fail_r.sum())} redrawn runs failed (no finite error)")
    N, ep, er = N[~bad], ep[~bad], er[~bad]
    sizes, counts = np.unique(N, return_counts=True)
    what = f"{N.size} pairs at {sizes.size} sizes"
    common = dict(alpha=alpha, level=level, excluded=int(bad.sum()), n=int(N.size))
    if sizes.size < min_sizes or counts.min(initial=N.size) < min_pairs:
        why = (f"needs >= {min_sizes} sizes with >= {min_pairs} complete pairs each; got "
               + (", ".join(f"{c} at N = {n:g}" for n, c in zip(sizes, counts)) or "none"))
        return Verdict(claim=claim, verdict=NOT_TESTABLE, statistic=float("nan"), interval=None, p=None,
                       test=f"intercept contrasts of err = a/sqrt(N) + b, {what}", note="; ".join(notes + [why]),
                       **common)

    con = _contrast(N, [ep, er], level)
    (b_p, b_r), V = con["est"], con["cov"]
    df = {k: _welch_df(con["terms"], con["n_h"], np.array(w)) for k, w in
          (("plain", (1.0, 0.0)), ("redrawn", (0.0, 1.0)), ("diff", (1.0, -1.0)), ("most", (most, -1.0)))}
    var = lambda w: float(np.array(w) @ V @ np.array(w))  # noqa: E731
    q_r = float(_st.t.ppf((1 + level) / 2, df["redrawn"])) if np.isfinite(df["redrawn"]) else 0.0
    se_r = np.sqrt(max(var((0.0, 1.0)), 0.0))
    fits = (f"b plain = {b_p:.3g}, b redrawn = {b_r:.3g} [{b_r - q_r * se_r:.3g}, {b_r + q_r * se_r:.3g}] "
            f"(intercepts of a/sqrt(N) + b through the per-size mean errors, sizes "
            + ", ".join(f"{n:g}" for n in sizes) + ")")
    premise = _t_part("The plain networks' error has a systematic (N-independent) part", b_p, var((1.0, 0.0)),
                      df["plain"], "b_plain", **common)
    reduces = _t_part("Redrawing the rows Gaussian reduces the systematic part", b_p - b_r, var((1.0, -1.0)),
                      df["diff"], "b_plain - b_redrawn, paired by seed", note=fits, **common)
    removes = _t_part(f"Redrawing the rows Gaussian removes more than {most:.0%} of the systematic part",
                      most * b_p - b_r, var((most, -1.0)), df["most"],
                      f"{most:g} b_plain - b_redrawn, paired by seed", note=fits, **common)
    parts = {"premise": premise, "reduces": reduces, "removes_most": removes}
    share = 1.0 - b_r / b_p if b_p > 0 else float("nan")
    theta = b_r / b_p if b_p != 0 else 0.0
    df_share = _welch_df(con["terms"], con["n_h"], np.array([theta, -1.0]))
    q = float(_st.t.ppf((1 + level) / 2, df_share)) if np.isfinite(df_share) else float(_st.norm.ppf((1 + level) / 2))
    fieller = _fieller(b_p, b_r, V, q)
    interval = None if fieller is None else (1.0 - fieller[1], 1.0 - fieller[0])
    if fieller is None:
        notes.append("the share's Fieller interval is unbounded (b_plain not clearly away from 0)")
    if not premise.holds:
        word = NOT_TESTABLE
        notes.append(f"the plain networks show no systematic part at this profile (p = {premise.p:.2g}): "
                     "nothing for the redraw to remove")
    else:
        word = HOLDS if (reduces.holds and removes.holds) else HOLDS_IN_PART if reduces.holds else DOES_NOT_HOLD
    notes.append(fits)
    notes.append(f"share removed = 1 - b_redrawn / b_plain (Fieller interval); reduces: p = {reduces.p:.2g}, "
                 f"removes more than {most:.0%}: p = {removes.p:.2g}")
    return Verdict(claim=claim, verdict=word, statistic=share, interval=interval, p=None,
                   test=f"three Welch t-tests of intercept contrasts of err = a/sqrt(N) + b, {what}",
                   note="; ".join(notes), parts=parts, **common)


# ----------------------------------------------------------------------------- the experiment
@dataclass(frozen=True)
class ClosureResult:
    """What :func:`run_closure` returns.

    Attributes
    ----------
    runs : DataFrame
        One row per run: ``variant`` ("plain"/"redrawn"), ``N``, ``seed``, ``err_end``,
        ``kurtosis_max``, ``gauss_dist_end``, ``seconds_full``, ``failed`` (NaN measures where failed).
    table : DataFrame
        Per (variant, N): median, min, max of ``err_end`` over seeds, ``runs`` and ``failed`` counts,
        median ``kurtosis_max``.
    fits : DataFrame
        Per variant: ``a``, ``b``, ``slope`` of ``err = a/sqrt(N) + b`` (all seeds) and ``b_lo``,
        ``b_hi`` (the verdict's bootstrap interval of b).
    verdict : Verdict
        :func:`closure_verdict` of the paired runs.
    redraw_every : int
    wall_s : float
        Wall time of this call (near 0 when every run came from a cache).
    job_s : float
        Summed run times of the jobs (full network + theory, compilation included) when computed.
    """

    runs: pd.DataFrame
    table: pd.DataFrame
    fits: pd.DataFrame
    verdict: Verdict
    redraw_every: int
    wall_s: float
    job_s: float
    params: dict = field(default_factory=dict)


def _run_in_process(name: str, fn, jobs) -> list:
    """Run ``fn(**job)`` for every job in this process; a run that raises a package error (a
    divergence) gives None (counted as failed, never dropped)."""
    out = []
    for job in jobs:
        try:
            out.append(fn(**job))
        except LowRankError:
            out.append(None)
    return out


def _from_sweep(frame: pd.DataFrame, jobs) -> list:
    """The results of a :func:`~lowrank_learning.sweeps.run_sweep` frame in the order of ``jobs``
    (None for a job without a row: it failed)."""
    flat = frame.reset_index()
    out = []
    for job in jobs:
        hit = flat[(flat["N"] == job["N"]) & (flat["seed"] == job["seed"])]
        out.append(None if hit.empty else hit.iloc[0].to_dict())
    return out


_KEEP = ("err_end", "kurtosis_max", "gauss_dist_end", "seconds_full", "seconds_theory")


def run_closure(N_values, seeds, redraw_every: int = 1, *, activation: str = "erf", task: str = "flipflop",
                lr: float = 0.2, epochs: int = 200, n_trials: int = 4, dt: float = 0.1, T_max: float = 20.0,
                dtype: str = "float32", sweep=None, most: float = 0.5, alpha: float = 0.05,
                level: float = 0.95) -> ClosureResult:
    """Run the E9 headline job with plain and with redrawn full networks and test the closure claim.

    Parameters
    ----------
    N_values, seeds : lists of the same length
        Sizes, and the number of seeds (0, 1, ...) at each (:func:`closure_jobs`).
    redraw_every : int
        Redraw period k of the redrawn networks (epochs).
    activation, task, lr, epochs, n_trials, dt, T_max, dtype
        The job (:func:`closure_jobs`; defaults: E9's headline job at its paper profile).
    sweep : callable or None
        ``sweep(name, fn, jobs) -> DataFrame`` in the form of :func:`~lowrank_learning.sweeps.run_sweep`
        (cached, parallel; jobs that fail may be left out: they are counted as failed). The plain
        runs go under the name "e9-nonlinear" (E9's own sweep: its cached runs are reused), the
        redrawn ones under "e9-closure". None: every run in this process, uncached.
    most, alpha, level
        Passed to :func:`closure_verdict`.

    Returns
    -------
    :class:`ClosureResult`.
    """
    redraw_every = check_int("run_closure: redraw_every", redraw_every, 1)
    jobs = closure_jobs(N_values, seeds, activation, task, lr, epochs, n_trials, dt, T_max, dtype)
    red_jobs = [dict(j, redraw_every=redraw_every) for j in jobs]
    t0 = time.perf_counter()
    if sweep is None:
        res = {"plain": _run_in_process("e9-nonlinear", compare_nonlinear, jobs),
               "redrawn": _run_in_process("e9-closure", compare_redrawn, red_jobs)}
    else:
        res = {"plain": _from_sweep(sweep("e9-nonlinear", compare_nonlinear, jobs), jobs),
               "redrawn": _from_sweep(sweep("e9-closure", compare_redrawn, red_jobs), jobs)}
    wall = time.perf_counter() - t0
    rows = []
    for variant in VARIANTS:
        for job, r in zip(jobs, res[variant]):
            vals = {k: (float(r[k]) if r is not None else float("nan")) for k in _KEEP}
            rows.append(dict(variant=variant, N=int(job["N"]), seed=int(job["seed"]), failed=r is None, **vals))
    runs = pd.DataFrame(rows)
    table = runs.groupby(["variant", "N"]).agg(
        median=("err_end", "median"), min=("err_end", "min"), max=("err_end", "max"),
        runs=("err_end", "size"), failed=("failed", "sum"), kurtosis_max=("kurtosis_max", "median"))
    plain = runs[runs.variant == "plain"].set_index(["N", "seed"])["err_end"]
    redrawn = runs[runs.variant == "redrawn"].set_index(["N", "seed"])["err_end"].reindex(plain.index)
    N_pairs = plain.index.get_level_values("N").to_numpy()
    verdict = closure_verdict(N_pairs, plain.to_numpy(), redrawn.to_numpy(), most=most, alpha=alpha, level=level)
    fits = _fits_table(N_pairs, plain.to_numpy(), redrawn.to_numpy(), level)
    job_s = float(np.nansum(runs["seconds_full"]) + np.nansum(runs["seconds_theory"]))
    params = dict(N_values=[int(n) for n in N_values], seeds=[int(s) for s in seeds], redraw_every=redraw_every,
                  activation=activation, task=task, lr=float(lr), epochs=int(epochs), n_trials=int(n_trials),
                  dt=float(dt), T_max=float(T_max), dtype=dtype)
    return ClosureResult(runs, table, fits, verdict, redraw_every, wall, job_s, params)


def _fits_table(N, ep, er, level: float) -> pd.DataFrame:
    """Per variant, on the complete pairs (those the verdict uses): E9's fit (:func:`fit_error_scaling`:
    a, b, slope) and the verdict's intercept contrast ``b_contrast`` with its t interval
    (``b_lo``, ``b_hi``); empty with fewer than 2 sizes or fewer than 2 pairs at some size."""
    cols = ["a", "b", "slope", "b_contrast", "b_lo", "b_hi"]
    ok = np.isfinite(ep) & np.isfinite(er)
    N, ep, er = N[ok], ep[ok], er[ok]
    sizes, counts = np.unique(N, return_counts=True)
    if sizes.size < 2 or counts.min(initial=0 if N.size == 0 else N.size) < 2:
        return pd.DataFrame(columns=cols)
    con = _contrast(N, [ep, er], level)
    rows = {}
    for i, (variant, e) in enumerate(zip(VARIANTS, (ep, er))):
        f = fit_error_scaling(N, e)
        w = np.eye(2)[i]
        df = _welch_df(con["terms"], con["n_h"], w)
        half = float(_st.t.ppf((1 + level) / 2, df)) * float(np.sqrt(con["cov"][i, i])) if np.isfinite(df) else 0.0
        b = float(con["est"][i])
        rows[variant] = dict(a=f.a, b=f.b, slope=f.slope, b_contrast=b, b_lo=b - half, b_hi=b + half)
    return pd.DataFrame.from_dict(rows, orient="index")[cols]
