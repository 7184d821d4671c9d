"""Verdicts for the claims of the linear and structural chapters (E1, E2, E3, E5, performance).

Claims such as "naive descent takes longer", "the eigenvalues approach the target", "every
visible gradient component is non-zero" or "gradient descent keeps the conserved quantities up
to its discretisation error" as functions returning
:class:`~lowrank_learning.analysis.verdicts.Verdict`. The generic agreement checks
(:func:`~lowrank_learning.agree_to_rounding`, :func:`~lowrank_learning.differ_beyond_rounding`,
:func:`~lowrank_learning.epochs_to_fraction`, ...) are in
:mod:`~lowrank_learning.analysis.agreement`; this module adds only what those do not cover.

All tests here are deterministic: each compares one float64 computation (one seed, no sampling
over seeds) with a stated or derived bound, so the verdict has no p-value (``p=None``) and says
what this run shows, not what holds for every seed. Each bound is in the function's signature or
derived in its docstring; a notebook passes data, never a threshold.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..core._checks import check_int, check_positive
from ..core.adjoint import ensemble_value_and_grad
from ..core.architecture import Architecture
from ..core.batch import Batch
from ..core.errors import InvalidParameterError
from ..learn.phases import ScheduleRun
from .verdicts import DOES_NOT_HOLD, HOLDS, NOT_TESTABLE, Verdict

__all__ = ["exceeds_by", "approaches", "nonzero_beyond_rounding", "conservation_step_bound",
           "conservation_bound", "conserved_to_bound", "breaks_conservation", "speedup_verdict"]

_DET = "one float64 computation (one seed), no sampling: compared with a bound, no p-value"


def _finite_or_inf(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float).ravel()
    if a.size == 0:
        raise InvalidParameterError(f"{name} is empty")
    if np.any(np.isnan(a)):
        raise InvalidParameterError(f"{name}: {int(np.sum(np.isnan(a)))} of {a.size} values are NaN; count and "
                                    "report failed runs instead of passing them")
    return a


def exceeds_by(x, y, *, claim: str, min_ratio: float = 1.0, what: str = "values", budget: float | None = None) -> Verdict:
    """Deterministic check that ``x`` is larger than ``y`` by at least a factor ``min_ratio``.

    ``x``, ``y``: non-negative numbers (or (n,) arrays, compared entry by entry: the claim holds
    if it holds for every entry). ``inf`` is a censored value (e.g. epochs to a level that was
    never reached within the run: at least the run's length) and keeps its meaning: ``x = inf``
    exceeds any finite ``y``; ``y = inf`` with finite ``x`` does not hold; both infinite is
    undefined (not testable). The statistic is ``min(x / y)`` over entries, with a censored value
    counted as ``budget`` (the run's length; the ratio is then a lower bound, and the note says so):
    ``budget`` is required when ``x`` or ``y`` holds ``inf`` (JSON has no infinity). ``y = 0 < x``
    is an infinite ratio and not allowed.

    ``min_ratio = 1.0``: the claim is "larger" (strictly: ``x > y``); a chapter that claims
    "severalfold" needs a ratio of its own, stated with its reason. Epoch counts and the quantities
    compared here are computed without sampling, so a strict inequality is a fact about the run.
    """
    xa = _finite_or_inf(x, "exceeds_by: x")
    ya = _finite_or_inf(y, "exceeds_by: y")
    if xa.shape != ya.shape:
        raise InvalidParameterError(f"exceeds_by: x and y need one shape, got {xa.size} and {ya.size}")
    if np.any(xa < 0) or np.any(ya < 0):
        raise InvalidParameterError("exceeds_by: x and y must be non-negative")
    min_ratio = check_positive("exceeds_by: min_ratio", min_ratio)
    both_inf = np.isinf(xa) & np.isinf(ya)
    if both_inf.all():
        return Verdict(claim=claim, verdict=NOT_TESTABLE, statistic=float("nan"), interval=None, p=None,
                       test="both sides censored (infinite): no order", n=int(xa.size), excluded=int(xa.size))
    xs, ys = xa[~both_inf], ya[~both_inf]
    if np.any(np.isinf(xs) | np.isinf(ys)) and budget is None:
        raise InvalidParameterError("exceeds_by: budget (the run's length) is required with censored (inf) values")
    if np.any((ys == 0) & (xs > 0)):
        raise InvalidParameterError("exceeds_by: y = 0 < x is an infinite ratio; compare other quantities")
    cap = lambda a: np.where(np.isinf(a), float(budget) if budget is not None else 0.0, a)  # noqa: E731
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(ys == 0, 1.0, cap(xs) / np.maximum(cap(ys), np.finfo(float).tiny))
    ratio = float(np.min(r))
    if min_ratio != 1.0:
        ok = bool(np.all((xs > min_ratio * ys) | (np.isinf(xs) & ~np.isinf(ys))))
    else:
        ok = bool(np.all(xs > ys))
    cens = int(np.sum(np.isinf(xs)) + np.sum(np.isinf(ys)))
    note = _DET
    if xs.size == 1:
        note = f"{xs[0]:.4g} against {ys[0]:.4g}; " + note
    if cens:
        note += (f"; {cens} censored value(s) (never reached within {budget:g}) kept with their meaning; the "
                 f"ratio counts them as {budget:g} (a bound)")
    if both_inf.any():
        note += f"; {int(both_inf.sum())} entries with both sides infinite excluded"
    rel = "> " if min_ratio == 1.0 else f">= {min_ratio:g} x "
    return Verdict(claim=claim, verdict=HOLDS if ok else DOES_NOT_HOLD, statistic=ratio, interval=None, p=None,
                   test=f"deterministic: {what} x {rel}y (smallest ratio {ratio:.3g})", n=int(xs.size),
                   excluded=int(both_inf.sum()), note=note)


def approaches(start, end, target, *, claim: str, fraction: float = 0.1) -> Verdict:
    """Deterministic check that a quantity moved from ``start`` to within ``fraction`` of its
    initial distance from ``target``.

    ``start``, ``end``, ``target``: real or complex, any one shape (e.g. the two eigenvalues of a
    rank-2 ``W``, matched by the caller). The statistic is ``max|end - target| / max|start -
    target|``: 1 if nothing was learned, 0 at the target. A non-finite ``end`` does not hold.

    ``fraction = 0.1``: the level the chapters call "learned" (as for the loss in
    :func:`~lowrank_learning.learns_faster`): the remaining error is at most a tenth of the
    initial one.
    """
    s = np.asarray(start, dtype=complex).ravel()
    e = np.asarray(end, dtype=complex).ravel()
    t = np.asarray(target, dtype=complex).ravel()
    if not (s.size == e.size and t.size in (1, s.size)) or s.size == 0:
        raise InvalidParameterError(f"approaches: start, end and target need one size, got {s.size}, {e.size}, "
                                    f"{t.size}")
    fraction = check_positive("approaches: fraction", fraction)
    if not np.all(np.isfinite(s)) or not np.all(np.isfinite(t)):
        raise InvalidParameterError("approaches: start and target must be finite")
    d0 = float(np.max(np.abs(s - t)))
    if not np.all(np.isfinite(e)):
        return Verdict(claim=claim, verdict=DOES_NOT_HOLD, statistic=float("inf"), interval=None, p=None,
                       test="the end value is not finite (diverged)", n=int(s.size), note=_DET)
    d1 = float(np.max(np.abs(e - t)))
    if d0 == 0.0:
        return Verdict(claim=claim, verdict=NOT_TESTABLE, statistic=float("nan"), interval=None, p=None,
                       test="the start is already at the target", n=int(s.size), note=_DET)
    r = d1 / d0
    return Verdict(claim=claim, verdict=HOLDS if r <= fraction else DOES_NOT_HOLD, statistic=r, interval=None,
                   p=None, test=f"deterministic: remaining / initial distance to the target {r:.2g} <= {fraction:g}",
                   n=int(s.size), note=f"distance to the target {d0:.3g} at the start, {d1:.3g} at the end; {_DET}")


def nonzero_beyond_rounding(values, scale, *, claim: str, min_rel: float = 1e-6) -> Verdict:
    """Deterministic check that EVERY entry of ``values`` is non-zero beyond rounding.

    The statistic is ``min|values| / max|scale|`` (``scale``: the array that sets the size, e.g.
    all components of the gradient); the claim holds if it is at least ``min_rel``. (Its
    counterpart, "these entries vanish to rounding", is
    :func:`~lowrank_learning.agree_to_rounding` of an array against itself with those entries set to
    zero.)

    ``min_rel = 1e-6``: as in :func:`~lowrank_learning.differ_beyond_rounding`, a thousand times the
    float64 rounding bound of :func:`~lowrank_learning.agree_to_rounding` (1e-9), so a structural
    zero computed with rounding error cannot pass it.
    """
    v = np.asarray(values, dtype=float).ravel()
    sc = np.asarray(scale, dtype=float).ravel()
    if v.size == 0 or sc.size == 0:
        raise InvalidParameterError("nonzero_beyond_rounding: values and scale must be non-empty")
    if not (np.all(np.isfinite(v)) and np.all(np.isfinite(sc))):
        raise InvalidParameterError("nonzero_beyond_rounding: values and scale must be finite")
    min_rel = check_positive("nonzero_beyond_rounding: min_rel", min_rel)
    s = float(np.max(np.abs(sc)))
    rel = float(np.min(np.abs(v)) / s) if s > 0 else 0.0
    return Verdict(claim=claim, verdict=HOLDS if rel >= min_rel else DOES_NOT_HOLD, statistic=rel, interval=None,
                   p=None, test=f"deterministic: smallest |entry| / scale {rel:.2g} >= {min_rel:g}", n=int(v.size),
                   note=_DET)


# --------------------------------------------------------------------------- conservation law (E5)
def _sign(arch: Architecture) -> np.ndarray:
    return np.array([1.0 if g in ("V", "Z") else -1.0 for g in arch.vector_group])


def conservation_step_bound(arch: Architecture, sigma, grad, lr):
    """Largest move of the conserved quantities that one gradient-descent step can cause.

    A step of gradient descent with every vector plastic and overlap rate ``lr`` is
    ``X' = X (I - lr S)``, ``S = G + G^T`` (``G = dL/dSigma``). With ``J = +1`` on ``A = [Z V]``
    and ``-1`` on ``B = [M U]``, the conserved matrix ``C = X J X^T`` (``= A A^T - B B^T``) moves by

        C' - C = -lr X (S J + J S) X^T + lr^2 X S J S X^T.

    For linear units ``S`` lives on the blocks coupling A to B, where ``S J + J S = 0``, so the
    move is exactly ``lr^2 X S J S X^T``: second order, from the discrete step. Its non-zero
    eigenvalues divided by N are those of ``Sigma^{1/2} (S J S) Sigma^{1/2}``, so its Frobenius
    norm per N is ``lr^2 sqrt(tr(S J S Sigma S J S Sigma))``. The spectrum of ``J Sigma``
    (:func:`~lowrank_learning.conserved_quantities`, the non-zero eigenvalues of ``C / N``, both
    sorted) moves by at most that in Euclidean norm (Hoffman-Wielandt). Nothing else can move it
    under gradient descent; noise added to the vectors, or an update that is not of the form
    ``X S`` (Adam), can.

    Parameters
    ----------
    sigma, grad : arrays (..., K, K)
        Overlaps before the step and ``dL/dSigma`` there.
    lr : float or array (...)
        The step's overlap-space rate.

    Returns
    -------
    float or array (...): the bound per step. Assumes a loss that reads only the A-B blocks
    (linear units); for others the first-order term is not zero and the bound does not apply
    (raises).
    """
    Sg = np.asarray(sigma, dtype=float)
    G = np.asarray(grad, dtype=float)
    if Sg.shape[-2:] != (arch.K, arch.K) or G.shape != Sg.shape:
        raise InvalidParameterError(f"conservation_step_bound: sigma and grad need one shape (..., {arch.K}, "
                                    f"{arch.K}), got {Sg.shape} and {G.shape}")
    if arch.activation != "linear":
        raise InvalidParameterError("conservation_step_bound: arch.activation must be 'linear' (the first-order "
                                    "term vanishes only for linear units)")
    S = G + np.swapaxes(G, -1, -2)
    J = _sign(arch)
    SJS = S @ (J[:, None] * S)
    P = SJS @ Sg
    tr = np.trace(P @ P, axis1=-2, axis2=-1)
    out = np.asarray(lr, dtype=float) ** 2 * np.sqrt(np.maximum(tr, 0.0))
    return float(out) if np.ndim(out) == 0 else out


def conservation_bound(arch: Architecture, run: ScheduleRun, first: int, last: int, lr=None,
                       chunk: int = 500) -> float:
    """Bound on the drift of the conserved quantities from the end of phase ``first`` to the end
    of phase ``last`` of ``run`` (``first < last``): the sum of :func:`conservation_step_bound`
    over every update in phases ``first + 1 .. last`` (triangle inequality), evaluated at the
    run's own recorded overlaps and the gradient of each phase's task there.

    ``lr``: None for the run's own overlap-space rates (gradient descent), or one rate for every
    step: the bound for gradient descent at that rate along the same path of overlaps (for a run
    whose updates were not gradient descent, e.g. Adam). The phases ``first + 1 .. last`` must
    train on fixed batches (a sampler draws other trials each epoch). Returns a float.
    """
    if not isinstance(run, ScheduleRun):
        raise InvalidParameterError(f"conservation_bound: run must be a ScheduleRun, got {type(run).__name__}")
    n = len(run.phases)
    first = check_int("conservation_bound: first", first, 0)
    last = check_int("conservation_bound: last", last, first + 1)
    if last >= n:
        raise InvalidParameterError(f"conservation_bound: last must be < {n} (the number of phases), got {last}")
    chunk = check_int("conservation_bound: chunk", chunk, 1)
    sigma = np.asarray(run.trajectory.sigma, dtype=float)
    rates = run.lr_per_epoch if lr is None else np.full(len(sigma), check_positive("conservation_bound: lr", lr))
    total = 0.0
    for i in range(first + 1, last + 1):
        phase = run.phases[i]
        if not isinstance(phase.task, Batch):
            raise InvalidParameterError(f"conservation_bound: phase {i} ({phase.label!r}) draws its trials from a "
                                        "sampler; the bound needs fixed batches")
        b = phase.task
        arrs = [jnp.asarray(np.asarray(a, float)[None]) for a in (b.inputs, b.targets, b.mask)]
        for s in range(int(run.boundaries[i]), int(run.boundaries[i + 1]), chunk):
            e = min(s + chunk, int(run.boundaries[i + 1]))
            _, g = ensemble_value_and_grad(arch, jnp.asarray(sigma[s:e]), *arrs, b.dt, b.loss,
                                           row=np.zeros(e - s, int))
            total += float(np.sum(conservation_step_bound(arch, sigma[s:e], np.asarray(g), rates[s:e])))
    return total


def _drift_args(drift, bound, scale, name):
    d = float(drift)
    b = float(bound)
    sc = check_positive(f"{name}: scale", scale)
    if not (np.isfinite(d) and np.isfinite(b)) or d < 0 or b < 0:
        raise InvalidParameterError(f"{name}: drift and bound must be finite and >= 0, got {drift!r}, {bound!r}")
    return d, b, sc


def conserved_to_bound(drift, bound, *, claim: str, scale: float = 1.0, rtol: float = 1e-9) -> Verdict:
    """Deterministic check that the conserved quantities moved no more than the derived bound.

    ``drift``: :func:`~lowrank_learning.conserved_drift` between two states; ``bound``: what
    gradient descent can cause between them (:func:`conservation_bound`); ``scale``: the size of
    the conserved quantities (e.g. the largest ``|eigenvalue of J Sigma|``). Holds if ``drift <=
    bound + rtol * scale``. The statistic is ``drift / bound``.

    ``rtol = 1e-9``: the float64 rounding allowance of :func:`~lowrank_learning.agree_to_rounding`
    (eigenvalues of overlaps recomputed from the vectors carry rounding error of that order).
    """
    d, b, sc = _drift_args(drift, bound, scale, "conserved_to_bound")
    allow = b + rtol * sc
    ratio = d / b if b > 0 else (0.0 if d == 0 else float("inf"))
    return Verdict(claim=claim, verdict=HOLDS if d <= allow else DOES_NOT_HOLD, statistic=ratio, interval=None,
                   p=None, test=f"deterministic: drift {d:.2g} <= bound {b:.2g} (+ rounding {rtol * sc:.1g})",
                   n=1, note=f"statistic: drift / bound; the bound is the second-order step term of gradient descent "
                             f"summed over the steps (Hoffman-Wielandt); {_DET}")


def breaks_conservation(drift, bound, *, claim: str, scale: float = 1.0, rtol: float = 1e-9) -> Verdict:
    """Deterministic check that the conserved quantities moved MORE than gradient descent could
    move them: ``drift > bound + rtol * scale`` (see :func:`conserved_to_bound`; ``bound`` from
    :func:`conservation_bound` along the same run). The statistic is ``drift / bound``."""
    d, b, sc = _drift_args(drift, bound, scale, "breaks_conservation")
    allow = b + rtol * sc
    ratio = d / b if b > 0 else (0.0 if d == 0 else float("inf"))
    return Verdict(claim=claim, verdict=HOLDS if d > allow else DOES_NOT_HOLD, statistic=ratio, interval=None,
                   p=None, test=f"deterministic: drift {d:.2g} > bound {b:.2g} (+ rounding {rtol * sc:.1g})",
                   n=1, note=f"statistic: drift / bound; the bound is the most gradient descent could drift along "
                             f"this path; {_DET}")


# --------------------------------------------------------------------------- performance
def speedup_verdict(full_median_s, full_best_s, overlap_s, *, claim: str) -> Verdict:
    """Is one epoch of the full network slower than one of the overlap dynamics (timings)?

    ``full_median_s``, ``full_best_s``: median and best seconds per epoch of the full network
    over the timed repeats; ``overlap_s``: median seconds per epoch of the overlap dynamics.
    The statistic is the speedup ``full_median_s / overlap_s``; the note gives the range
    ``[full_best_s / overlap_s, full_median_s / overlap_s]`` over the repeats at and below the
    median (no confidence interval: timings on a shared machine are not independent samples). The claim holds if even the best full-network repeat is slower
    (``full_best_s > overlap_s``), so one lucky repeat cannot make it hold.
    """
    m = check_positive("speedup_verdict: full_median_s", full_median_s)
    b = check_positive("speedup_verdict: full_best_s", full_best_s)
    o = check_positive("speedup_verdict: overlap_s", overlap_s)
    if b > m:
        raise InvalidParameterError(f"speedup_verdict: full_best_s ({b}) exceeds full_median_s ({m})")
    return Verdict(claim=claim, verdict=HOLDS if b > o else DOES_NOT_HOLD, statistic=m / o,
                   interval=None, p=None,
                   test=f"timing: best full-network epoch / overlap epoch {b / o:.3g} > 1",
                   n=1, note=f"speedup {b / o:.3g} (best repeat) to {m / o:.3g} (median repeat); wall-clock "
                             "timings on a shared machine, not independent samples: no p-value")
