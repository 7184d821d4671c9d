"""Tests of agreement between the full network and the overlap theory, and of learning success.

Chapter claims such as "the two outputs are identical", "the remaining differences come from
finite N" or "every learner solves the task" as functions returning
:class:`~lowrank_learning.analysis.verdicts.Verdict`. Each states its threshold in its signature,
with the reason in its docstring; a notebook passes data, never a threshold.

Two kinds of test:

* Deterministic comparisons (:func:`agree_to_rounding`, :func:`differ_beyond_rounding`,
  :func:`speed_spread`): the claim is about one float64 computation with no sampling in it
  (two networks given the same inputs and the same noise). There is no p-value; the verdict
  compares the measured number with a stated bound, and can come out either way.
* Statistical tests over seeds or members (:func:`finite_size_scaling`, :func:`solves_task`,
  :func:`learns_faster`, :func:`ratio_exceeds`): a p-value at level ``alpha`` through
  :func:`~lowrank_learning.analysis.verdicts.decide`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import stats as _st

from ..core._checks import check_positive
from ..core.errors import InvalidParameterError
from .verdicts import (
    DOES_NOT_HOLD,
    HOLDS,
    NOT_TESTABLE,
    Verdict,
    _alpha,
    decide,
    mean_test,
    sign_test,
)

__all__ = ["agree_to_rounding", "differ_beyond_rounding", "speed_spread", "finite_size_scaling", "solves_task",
           "learns_faster", "ratio_exceeds", "epochs_to_fraction"]


def _pair(a, b, name: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise InvalidParameterError(f"{name}: a and b must have one non-empty shape, got {a.shape} and {b.shape}")
    bad = int(np.sum(~np.isfinite(a)) + np.sum(~np.isfinite(b)))
    if bad:
        raise InvalidParameterError(f"{name}: {bad} values of a and b are not finite; report the failed run "
                                    "instead of comparing it")
    return a, b


def _relative_difference(a, b) -> float:
    scale = float(np.max(np.abs(a)))
    diff = float(np.max(np.abs(a - b)))
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale


def agree_to_rounding(a, b, *, claim: str, rtol: float = 1e-9) -> Verdict:
    """Deterministic check that two float64 computations are equal to rounding.

    The statistic is ``max|a - b| / max|a|`` over all entries of ``a`` and ``b`` (any one shape);
    the claim holds if it is at most ``rtol``. No p-value: nothing is sampled.

    ``rtol = 1e-9``: float64 rounding (2.2e-16 per operation) accumulated over the chapters'
    recurrences (at most a few thousand time steps of sums over at most ~1e3 neurons, errors
    adding at worst linearly: ~1e3 * 1e3 * 2.2e-16 = 2e-10) stays below it, while any
    difference a chapter calls real is orders of magnitude larger. A float32 computation needs a
    bound of its own (~1e-5).
    """
    a, b = _pair(a, b, "agree_to_rounding")
    rtol = check_positive("agree_to_rounding: rtol", rtol)
    rel = _relative_difference(a, b)
    return Verdict(claim=claim, verdict=HOLDS if rel <= rtol else DOES_NOT_HOLD, statistic=rel, interval=None,
                   p=None, test=f"deterministic: max relative difference {rel:.1e} <= {rtol:g} (rounding bound)",
                   n=int(a.size), note="one float64 computation, no sampling: compared with a bound, no p-value")


def differ_beyond_rounding(a, b, *, claim: str, min_rel: float = 1e-6) -> Verdict:
    """Deterministic check that two computations differ by more than rounding could explain.

    The statistic is ``max|a - b| / max|a|``; the claim holds if it is at least ``min_rel``.

    ``min_rel = 1e-6``: a thousand times the float64 rounding bound of :func:`agree_to_rounding`
    (1e-9), so rounding alone cannot pass it; any difference a chapter calls "different" is far
    larger (percent level).
    """
    a, b = _pair(a, b, "differ_beyond_rounding")
    min_rel = check_positive("differ_beyond_rounding: min_rel", min_rel)
    rel = _relative_difference(a, b)
    return Verdict(claim=claim, verdict=HOLDS if rel >= min_rel else DOES_NOT_HOLD, statistic=rel, interval=None,
                   p=None, test=f"deterministic: max relative difference {rel:.2g} >= {min_rel:g}",
                   n=int(a.size), note="one computation, no sampling: compared with a bound, no p-value")


def epochs_to_fraction(loss, fraction: float = 0.1) -> np.ndarray:
    """First epoch at which each loss curve is at or below ``fraction`` of its own initial value.

    ``loss`` (epochs,) or (members, epochs) -> float array () or (members,), ``inf`` for a curve
    that never gets there within the run (a censored outcome, kept for
    :func:`~lowrank_learning.analysis.verdicts.sign_test`). A curve with a non-finite value
    before it reaches the level (a diverged run) is also ``inf``: it never reached it.
    """
    L = np.asarray(loss, dtype=float)
    if L.ndim not in (1, 2) or L.shape[-1] < 1:
        raise InvalidParameterError(f"epochs_to_fraction: loss must be (epochs,) or (members, epochs), got {L.shape}")
    fraction = check_positive("epochs_to_fraction: fraction", fraction)
    L2 = np.atleast_2d(L)
    out = np.full(L2.shape[0], np.inf)
    for i, row in enumerate(L2):
        if not np.isfinite(row[0]):
            continue
        with np.errstate(invalid="ignore"):
            hit = np.flatnonzero(row <= fraction * row[0])
        bad = np.flatnonzero(~np.isfinite(row))
        if hit.size and (bad.size == 0 or hit[0] < bad[0]):
            out[i] = hit[0]
    return out if L.ndim == 2 else out[0]


def learns_faster(loss_fast, loss_slow, *, claim: str, fraction: float = 0.1, alpha: float = 0.05,
                  what: str = "members") -> Verdict:
    """Paired sign test that learner A (``loss_fast``) reaches ``fraction`` of the initial loss in
    fewer epochs than learner B (``loss_slow``), over paired runs (same start, same trials).

    ``loss_fast``, ``loss_slow``: (members, epochs). A run that never reaches the level is
    censored (``inf`` epochs) and enters the sign test with its sign; two censored runs of one
    pair are an undefined difference and counted as excluded. The statistic is the median of
    ``epochs_slow - epochs_fast``.

    ``fraction = 0.1``: the level the chapters call "learned" (a tenth of the initial loss); for
    flip-flop, where the untrained network outputs about 0, this is an rms error of a third of the
    target's amplitude, so the output holds the sign of the last pulse.
    """
    a = epochs_to_fraction(np.atleast_2d(loss_fast), fraction)
    b = epochs_to_fraction(np.atleast_2d(loss_slow), fraction)
    if a.shape != b.shape:
        raise InvalidParameterError(f"learns_faster: loss_fast and loss_slow have {a.size} and {b.size} members")
    v = sign_test(b, a, claim=claim, alternative="greater", alpha=alpha, what=what)
    never = f"never reached {fraction:g} of the initial loss: {int(np.sum(np.isinf(a)))} (faster learner), " \
            f"{int(np.sum(np.isinf(b)))} (slower learner) of {a.size}"
    # The statistic is the fraction of decided pairs in which B was slower (the sign test's own count;
    # finite even when most runs are censored, where the median difference is infinite), with its
    # Clopper-Pearson interval; the median difference goes into the note.
    with np.errstate(invalid="ignore"):
        d = b - a
    d = d[~np.isnan(d)]
    k, n = int(np.sum(d > 0)), int(np.sum(d != 0))
    frac = k / n if n else float("nan")
    ci = _st.binomtest(k, n).proportion_ci(v.level, method="exact") if n else None
    return replace(v, statistic=frac, interval=None if ci is None else (float(ci.low), float(ci.high)),
                   note=f"{v.note}; {never}; median difference (slower - faster) {v.statistic:.4g} epochs; "
                        "statistic: fraction of decided pairs in which the slower learner was slower")


def solves_task(initial_loss, final_loss, *, claim: str, fraction: float = 0.1, alpha: float = 0.05,
                what: str = "seeds") -> Verdict:
    """One-sided t-test over seeds that the final loss is below ``fraction`` of the initial loss.

    ``initial_loss``, ``final_loss``: (n,) per seed (the final loss averaged over the last epochs
    of each run). The test is on ``log10(final / initial)`` against ``log10(fraction)`` (losses are
    positive and their ratios spread over decades, so the log is the scale on which a t-test's
    normal errors are plausible); the statistic is the mean of ``log10(final / initial)``, with its
    t interval. A run whose final loss is not finite (diverged) did not solve the task: the verdict
    is then "does not hold" whatever the others do, and the note counts it.

    ``fraction = 0.1``: as in :func:`learns_faster`, a tenth of the initial loss.
    """
    fraction = check_positive("solves_task: fraction", fraction)
    alpha = _alpha(alpha)
    i = np.asarray(initial_loss, dtype=float).ravel()
    f = np.asarray(final_loss, dtype=float).ravel()
    if i.shape != f.shape or i.size == 0:
        raise InvalidParameterError(f"solves_task: initial_loss and final_loss need one length >= 1, got {i.size}, {f.size}")
    if not np.all(np.isfinite(i)) or np.any(i <= 0):
        raise InvalidParameterError("solves_task: every initial loss must be positive and finite")
    if np.any(f < 0):
        raise InvalidParameterError("solves_task: a final loss is negative")
    failed = ~np.isfinite(f)
    r = np.log10(np.where(failed, 1.0, np.maximum(f, np.finfo(float).tiny)) / i)
    if failed.any():
        ok = r[~failed]
        return Verdict(claim=claim, verdict=DOES_NOT_HOLD, statistic=float(np.mean(ok)) if ok.size else float("nan"),
                       interval=None, p=None, test=f"{int(failed.sum())} of {f.size} {what} diverged",
                       n=int(f.size), excluded=int(failed.sum()), alpha=alpha,
                       note=f"{int(failed.sum())} of {f.size} runs ended with a non-finite loss (diverged): "
                            "they did not solve the task")
    v = mean_test(r, np.log10(fraction), claim=claim, alternative="less", alpha=alpha, what=what)
    worst = float(np.max(f / i))
    return replace(v, note=f"log10(final / initial loss): {v.note}; largest final / initial {worst:.3g}, "
                             f"threshold {fraction:g}")


def ratio_exceeds(x, y, *, claim: str, alternative: str = "greater", alpha: float = 0.05,
                  what: str = "seeds") -> Verdict:
    """Paired one-sample t-test on ``log10(x / y)`` (claim: x > y for "greater", x < y for "less").

    ``x``, ``y``: (n,) positive finite values, paired by seed (e.g. the distance between two
    learners' end points and the finite-N error of one of them). The statistic is the mean of
    ``log10(x / y)`` (0: equal; 1: x ten times y), with its t interval. Positive quantities that
    spread over decades are compared on the log scale.
    """
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape or x.size == 0:
        raise InvalidParameterError(f"ratio_exceeds: x and y need one length >= 1, got {x.size}, {y.size}")
    bad = int(np.sum(~np.isfinite(x) | ~np.isfinite(y) | (x <= 0) | (y <= 0)))
    if bad:
        raise InvalidParameterError(f"ratio_exceeds: {bad} of {x.size} pairs are not positive and finite; "
                                    "count and report them")
    return mean_test(np.log10(x / y), 0.0, claim=claim, alternative=alternative, alpha=alpha, what=what)


def finite_size_scaling(N, error, *, claim: str, alpha: float = 0.05, expected_slope: float = -0.5) -> Verdict:
    """Test that an error shrinks as the network grows: least-squares slope of ``log error``
    against ``log N`` over runs at several sizes (several seeds per size allowed).

    ``N``, ``error``: (n,) per run, errors positive and finite (a failed run must be counted and
    reported by the caller). Claim: the slope is negative (one-sided t-test of the regression
    slope, ``n - 2`` degrees of freedom). The statistic is the slope, with its t interval; the note
    says whether the interval contains ``expected_slope``.

    ``expected_slope = -0.5``: the finite-N size of an overlap (or of a mean-field average) is
    ``1/sqrt(N)``: the fluctuation of a sum of N independent terms divided by N. A difference
    that does not come from finite N (a bias of the theory, a different convention) does not
    shrink: slope 0.
    """
    alpha = _alpha(alpha)
    N = np.asarray(N, dtype=float).ravel()
    e = np.asarray(error, dtype=float).ravel()
    if N.shape != e.shape:
        raise InvalidParameterError(f"finite_size_scaling: N and error need one length, got {N.size}, {e.size}")
    if np.any(~np.isfinite(N)) or np.any(N <= 0):
        raise InvalidParameterError("finite_size_scaling: N must be positive")
    bad = int(np.sum(~np.isfinite(e) | (e <= 0)))
    if bad:
        raise InvalidParameterError(f"finite_size_scaling: {bad} of {e.size} errors are not positive and finite; "
                                    "count and report them")
    sizes = np.unique(N)
    if e.size < 3 or sizes.size < 2:
        return Verdict(claim=claim, verdict=NOT_TESTABLE, statistic=float("nan"), interval=None, p=None,
                       test=f"regression slope needs >= 3 runs at >= 2 sizes, got {e.size} at {sizes.size}",
                       n=int(e.size), alpha=alpha)
    res = _st.linregress(np.log(N), np.log(e))
    slope, se = float(res.slope), float(res.stderr)
    df = e.size - 2
    if se == 0.0:
        p = 0.0 if slope < 0 else 1.0
        interval = (slope, slope)
    else:
        p = float(_st.t.cdf(slope / se, df))
        q = float(_st.t.ppf(0.975, df))
        interval = (slope - q * se, slope + q * se)
    covers = interval[0] <= expected_slope <= interval[1]
    return Verdict(claim=claim, verdict=decide(p, alpha), statistic=slope, interval=interval, p=p,
                   test=f"t-test of the log-log slope (one-sided, < 0), {e.size} runs at {sizes.size} sizes",
                   n=int(e.size), alpha=alpha,
                   note=f"slope {slope:.3g} +- {se:.2g}; the 95% interval "
                        f"{'contains' if covers else 'does not contain'} {expected_slope:g} (1/sqrt(N) scaling)")


def speed_spread(epochs, *, claim: str, min_ratio: float = 2.0) -> Verdict:
    """Deterministic check that learning speeds differ by at least ``min_ratio`` across a set of
    equivalent networks (same function, different invisible overlaps).

    ``epochs``: any shape, epochs to a loss level per network; ``inf`` = not reached within the run
    (censored: the slowest is at least the run's length), ``NaN`` = no network exists there (an
    unreachable grid point; counted as excluded). The statistic is ``max / min`` over the networks
    (``inf`` when some network never reached the level). No p-value: the runs are deterministic
    overlap-space computations.

    ``min_ratio = 2.0``: "severalfold" means at least a factor two; a smaller spread is not what
    the chapters claim.
    """
    E = np.asarray(epochs, dtype=float).ravel()
    min_ratio = check_positive("speed_spread: min_ratio", min_ratio)
    missing = np.isnan(E)
    E = E[~missing]
    if E.size < 2 or not np.any(np.isfinite(E)):
        return Verdict(claim=claim, verdict=NOT_TESTABLE, statistic=float("nan"), interval=None, p=None,
                       test="needs >= 2 networks, one of which reaches the level", n=int(E.size),
                       excluded=int(missing.sum()))
    fastest = float(np.min(E))
    ratio = float(np.max(E) / max(fastest, 1.0))
    censored = int(np.sum(np.isinf(E)))
    note = f"fastest {fastest:.0f} epochs, slowest {np.max(E):.0f}"
    if censored:
        note += f"; {censored} of {E.size} never reached the level (censored: ratio counted as infinite)"
    if missing.any():
        note += f"; {int(missing.sum())} grid points excluded (no vectors have those overlaps)"
    return Verdict(claim=claim, verdict=HOLDS if ratio >= min_ratio else DOES_NOT_HOLD, statistic=ratio,
                   interval=None, p=None, test=f"deterministic: slowest / fastest {ratio:.3g} >= {min_ratio:g}",
                   n=int(E.size), excluded=int(missing.sum()), note=note)
