"""Your own network (book/experiments.md, "Your own network"): predict how an imported network learns.

* :func:`context_task`: a context-dependent integration task (two noisy stimuli, two context
  cues; report the mean of the cued stimulus) and its variants on the same trials (the other
  stimulus, the sum, the first stimulus only), none of which the paper's chapters use.
* :func:`predict_learning`: the overlap theory's learning of a new task from the network's own
  overlaps, beside the full network's at its own N (same trials), with their difference; and
  Gaussian networks with exactly the same overlaps at the same N (fresh rows,
  :func:`~lowrank_learning.redraw_gaussian`), whose difference from the theory is what finite N
  alone gives. :func:`departure_verdict` tests whether the network departs from the theory more
  than they do.
* :func:`probe_network`: the probe analysis of the predictions chapter
  (:func:`~lowrank_learning.degenerate_ensemble`, :func:`~lowrank_learning.probe_curves`,
  :func:`~lowrank_learning.decode_from_curves`, :func:`~lowrank_learning.probe_verdict`) for
  networks with this network's behaviour: which probe task best reveals their invisible overlaps.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np

from ..analysis.diagnose import monte_carlo_verdict
from ..analysis.predictions import curve_features, decode_from_curves, degenerate_ensemble, probe_curves, probe_verdict
from ..analysis.stats import overlap_error_curve
from ..analysis.verdicts import Verdict
from ..core._checks import check_choice, check_instance, check_int, check_nonnegative, check_positive, check_seed
from ..core._checks import check_vectors
from ..core.architecture import Architecture
from ..core.batch import Batch
from ..core.errors import InvalidParameterError
from ..core.overlaps import overlaps
from ..learn.overlap_space import learn_overlaps
from ..learn.vectors import learn_vectors, redraw_gaussian

__all__ = ["CONTEXT_RULES", "context_task", "predict_learning", "departure_verdict", "probe_network"]

CONTEXT_RULES = ("context", "other", "sum", "first")


def context_task(rule: str = "context", n_trials: int = 32, dt: float = 0.2, T_max: float = 10.0,
                 stimulus: tuple[float, float] = (1.0, 6.0), response: tuple[float, float] = (7.0, 10.0),
                 noise: float = 0.5, seed: int = 0) -> Batch:
    """Context-dependent integration: a fixed batch of trials (inputs (B, T, 4), targets (B, T, 1)).

    Inputs: two stimuli ``s_k(t) = c_k + noise xi_k(t)`` during ``stimulus`` (times, ``xi``
    standard normal per step, coherences ``c_k`` uniform in [-1, 1]) and two context cues (one of
    them 1 for the whole trial, at random). The target during ``response`` (the mask) is, by
    ``rule``: ``"context"`` the coherence of the cued stimulus; ``"other"`` that of the other
    one; ``"sum"`` ``(c_1 + c_2) / 2``; ``"first"`` ``c_1``. Every rule has the same inputs for
    one ``seed`` (draws from ``numpy.random.default_rng(seed)``), so the variants are new tasks
    for a network that learned one of them. Loss ``masked_mean``.
    """
    check_choice("rule", rule, CONTEXT_RULES)
    n_trials = check_int("n_trials", n_trials, 1)
    dt, T_max = check_positive("dt", dt), check_positive("T_max", T_max)
    noise = check_nonnegative("noise", noise)
    (s0, s1), (r0, r1) = (float(v) for v in stimulus), (float(v) for v in response)
    if not (0 <= s0 < s1 <= T_max and 0 <= r0 < r1 <= T_max):
        raise InvalidParameterError(f"stimulus {stimulus} and response {response} must be windows within [0, {T_max}]")
    rng = np.random.default_rng(check_seed(seed))
    T = int(round(T_max / dt))
    t = np.arange(T) * dt
    c = rng.uniform(-1.0, 1.0, (n_trials, 2))
    ctx = rng.integers(0, 2, n_trials)
    on = ((t >= s0) & (t < s1)).astype(float)
    x = np.zeros((n_trials, T, 4))
    x[:, :, :2] = on[None, :, None] * (c[:, None, :] + noise * rng.standard_normal((n_trials, T, 2)))
    x[np.arange(n_trials), :, 2 + ctx] = 1.0
    value = {"context": c[np.arange(n_trials), ctx], "other": c[np.arange(n_trials), 1 - ctx],
             "sum": c.mean(axis=1), "first": c[:, 0]}[rule]
    mask = np.broadcast_to(((t >= r0) & (t < r1)).astype(float)[None, :, None], (n_trials, T, 1)).copy()
    return Batch(x, value[:, None, None] * mask, mask, dt, "masked_mean")


def predict_learning(arch: Architecture, X, task, lr, epochs: int, *, n_redraws: int = 0, seed: int = 0,
                     redraw_seed: int = 0, dtype: str = "float32") -> dict:
    """The overlap theory's learning of ``task`` from the overlaps of ``X`` beside the network's own.

    The theory (:func:`~lowrank_learning.learn_overlaps`, exact map) starts from ``overlaps(X)``;
    the full network (:func:`~lowrank_learning.learn_vectors`, gradient descent) from ``X`` at
    its own N; both see the same trials (``seed``). ``n_redraws`` Gaussian networks with exactly
    the overlaps of ``X`` (:func:`~lowrank_learning.redraw_gaussian`, draw ``i`` keyed by
    ``(redraw_seed, i)``) learn the task too: the theory is the same for them, so their
    difference from it is what finite N alone gives. The full networks run in ``dtype``
    ("float32", as in the validation chapter, or "float64", which needs ``jax_enable_x64``); the
    theory in JAX's default float type.

    Parameters
    ----------
    X : array (N, K);  task : Batch or sampler;  lr : float or Schedule;  epochs : int

    Returns
    -------
    dict with ``theory`` and ``full`` (:class:`~lowrank_learning.Trajectory`), ``err_curve``
    (epochs + 1,) the largest overlap difference full - theory per epoch, ``err_end``,
    ``err_max``, ``loss_rel`` (epochs,) ``|L_full - L_theory| / L_theory``, ``loss_rel_max``,
    ``loss_rel_end``; ``redraw_err_end`` and ``redraw_loss_rel_end`` (n_redraws,) and
    ``redraw_loss`` (n_redraws, epochs) for the Gaussian networks.
    """
    check_instance("arch", arch, Architecture)
    check_vectors(X, arch.K, arch.vector_names, "X")
    epochs = check_int("epochs", epochs, 1)
    n_redraws = check_int("n_redraws", n_redraws, 0)
    seed, redraw_seed = check_seed(seed), check_seed(redraw_seed, "redraw_seed")
    check_choice("dtype", dtype, ("float32", "float64"))
    if dtype == "float64" and not jax.config.jax_enable_x64:
        raise InvalidParameterError("dtype='float64' needs jax_enable_x64")
    X = np.asarray(X, dtype=np.float64)
    theory = learn_overlaps(arch, overlaps(X), task, lr, epochs, rule="exact", seed=seed, progress=False)
    full = learn_vectors(arch, X.astype(dtype), task, lr, epochs, seed=seed, progress=False)

    def compare(run):
        curve = overlap_error_curve(run.sigma_all, theory.sigma_all)
        rel = np.abs(np.asarray(run.loss) - np.asarray(theory.loss)) / np.asarray(theory.loss)
        return curve, rel

    curve, rel = compare(full)
    red_err, red_rel, red_loss = [], [], []
    key = jax.random.PRNGKey(redraw_seed)
    plastic = np.ones(arch.K)
    for i in range(n_redraws):
        Xi = np.asarray(redraw_gaussian(X, plastic, jax.random.fold_in(key, i)), dtype=dtype)
        run = learn_vectors(arch, Xi, task, lr, epochs, seed=seed, progress=False)
        c, r = compare(run)
        red_err.append(c[-1])
        red_rel.append(r[-1])
        red_loss.append(np.asarray(run.loss))
    return {"theory": theory, "full": full, "err_curve": curve, "err_end": float(curve[-1]),
            "err_max": float(np.max(curve)), "loss_rel": rel, "loss_rel_max": float(np.max(rel)),
            "loss_rel_end": float(rel[-1]), "redraw_err_end": np.array(red_err),
            "redraw_loss_rel_end": np.array(red_rel),
            "redraw_loss": np.array(red_loss).reshape(n_redraws, epochs)}


def departure_verdict(err, redraw_err, *, alpha: float = 0.05) -> Verdict:
    """Does the network depart from the overlap theory more than Gaussian networks with the same
    overlaps at the same N? :func:`~lowrank_learning.monte_carlo_verdict` of its end-of-learning
    overlap error ``err`` against those of the redrawn networks ``redraw_err`` (n,): exact when the
    network's rows are Gaussian (then it is one more draw), with smallest p ``1 / (n + 1)``."""
    return monte_carlo_verdict(err, redraw_err, alpha=alpha, what="Gaussian networks with the same overlaps",
                               claim="The network departs from the overlap theory's prediction more than Gaussian "
                                     "networks with the same overlaps at the same N (end-of-learning overlap error)")


def probe_network(arch: Architecture, Sigma, tasks: Mapping, *, n: int, lr: float, epochs: int,
                  n_permutations: int = 99, alpha: float = 0.05, seed: int = 0,
                  norm_range: tuple[float, float] | None = None, cross_scale: float | None = None) -> dict:
    """Which probe task best reveals the invisible overlaps of networks that behave like ``Sigma``.

    ``n`` networks with the visible overlaps of ``Sigma`` and random invisible ones
    (:func:`~lowrank_learning.degenerate_ensemble`, seed ``seed``; invisible norms uniform in
    ``norm_range``, invisible cross overlaps ``N(0, cross_scale^2)``, by default
    ``(0.5 s, 2 s)`` and ``0.4 s`` with ``s`` the largest invisible norm of ``Sigma``, so that
    a trained network's large norms stay within reach) learn each probe task in
    overlap space (:func:`~lowrank_learning.probe_curves`; the tasks' batches need one shape, dt
    and loss); a cross-validated ridge regression reads their invisible overlaps from the learning
    curves (:func:`~lowrank_learning.decode_from_curves`, ``n_permutations`` shuffles), and
    :func:`~lowrank_learning.probe_verdict` tests each probe at ``alpha / len(tasks)``.

    Returns
    -------
    dict with ``ensemble``, ``curves`` (task -> (n, epochs)), ``decoded`` (task -> result),
    ``verdict`` and ``best`` (the task with the highest cross-validated R^2).
    """
    if not isinstance(tasks, Mapping) or not tasks:
        raise InvalidParameterError("tasks must be a non-empty dict name -> task")
    S = np.asarray(Sigma, dtype=float)
    if S.shape != (arch.K, arch.K):
        raise InvalidParameterError(f"Sigma must have shape ({arch.K}, {arch.K}), got {S.shape}")
    norms = [S[i, i] for i, j in map(arch.overlap_pair, arch.invisible_names) if i == j]
    scale = max(norms) if norms and max(norms) > 0 else 1.0
    ens = degenerate_ensemble(arch, S, n, seed=seed, cross_scale=0.4 * scale if cross_scale is None else cross_scale,
                              norm_range=(0.5 * scale, 2.0 * scale) if norm_range is None else norm_range)
    curves = probe_curves(arch, ens.sigma, tasks, lr, epochs, seed=seed)
    decoded = {t: decode_from_curves(curve_features(c), ens.invisible, n_permutations=n_permutations, seed=seed)
               for t, c in curves.items()}
    verdict = probe_verdict([decoded], n_permutations, alpha=alpha)
    best = max(decoded, key=lambda t: decoded[t]["r2"])
    return {"ensemble": ens, "curves": curves, "decoded": decoded, "verdict": verdict, "best": best}
