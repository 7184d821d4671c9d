"""E7: three learning rules on the same erf network, task and trials, and where each one ends.

:func:`e7_runs` trains the full network with small-step SGD, large-step SGD and Adam, runs the
overlap theory (exact map) beside both SGD learners, the gradient-flow ODE at the small step for
erf and for linear units, and the same learners from further starts at a smaller N. Every run goes
through the result cache under a fixed name; the small-step runs and their theories are E6's
entries (``"e6-full"``, ``"e6-exact"``, ``"e6-full-N{n}-s{s}"``, ``"e6-exact-N{n}-s{s}"``, with
E6's arguments), so the E7 chapter reuses them. A run that diverges is kept as its
:class:`~lowrank_learning.DivergenceError` (with the epoch), never dropped.

:func:`e7_analysis` reads those runs: final losses, distances in overlap space from the start and
between the learners' end points, the full network's departure from its theory, the drift of the
conserved quantities of linear gradient flow, and the chapter's three verdicts (:func:`e7_verdicts`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..analysis.agreement import ratio_exceeds, solves_task
from ..analysis.memory import conserved_drift, overlap_distance
from ..analysis.stats import overlap_error_curve
from ..analysis.verdicts import DOES_NOT_HOLD, NOT_TESTABLE, Verdict, combine
from ..core._checks import check_instance, check_int, check_nonnegative, check_positive, check_seed, check_vectors
from ..core.architecture import Architecture
from ..core.cache import memo_or_divergence
from ..core.errors import DivergenceError, InvalidParameterError
from ..core.initial import balanced_vectors
from ..core.overlaps import overlaps
from ..learn.overlap_space import learn_overlaps
from ..learn.trajectory import Trajectory
from ..learn.vectors import learn_vectors

__all__ = ["E7_LEARNERS", "E7_KEYS", "E7Runs", "E7Analysis", "e7_runs", "e7_analysis", "e7_verdicts"]

#: The three learners, in the order the chapter shows them.
E7_LEARNERS = ("small-step SGD", "large-step SGD", "Adam")
#: Short keys of the learners (glue names, JSON keys, verdict parts).
E7_KEYS = {"small-step SGD": "small", "large-step SGD": "large", "Adam": "adam"}
_SGD = E7_LEARNERS[:2]


@dataclass(frozen=True)
class E7Runs:
    """The runs of E7 (each a :class:`~lowrank_learning.Trajectory`, or the
    :class:`~lowrank_learning.DivergenceError` of a run that diverged).

    Attributes
    ----------
    runs : dict
        Learner (:data:`E7_LEARNERS`) -> full-network run at N from the start ``X0``: loss
        (epochs,), sigma (epochs, K, K), final_sigma (K, K).
    theory : dict
        ``"small-step SGD"``, ``"large-step SGD"`` -> the overlap theory (exact map) of that learner
        from ``overlaps(X0)``, on the same trials.
    flow, flow_linear : Trajectory or DivergenceError
        The gradient-flow ODE at the small step, for the erf network and for the same start with
        linear units.
    reps : dict
        Seed -> {learner -> full-network run, ``"<SGD learner> (theory)"`` -> its theory}, at
        ``n_rep`` neurons from ``balanced_vectors(arch, n_rep, seed)``.
    n_rep : int
        Neurons of the repeat runs.
    epochs : int
        Epochs of every run.
    """

    runs: dict
    theory: dict
    flow: object
    flow_linear: object
    reps: dict
    n_rep: int
    epochs: int

    @property
    def every(self) -> list[dict]:
        """All runs as a list of {learner -> run, ``"<SGD learner> (theory)"`` -> theory}: the
        run at N first, then the repeats in seed order."""
        return [{**self.runs, **{f"{k} (theory)": v for k, v in self.theory.items()}}] + list(self.reps.values())

    @property
    def diverged(self) -> dict:
        """Name -> epoch of every run that diverged (empty: none did)."""
        named = {**self.runs, **{f"{k} (theory)": v for k, v in self.theory.items()},
                 "gradient flow": self.flow, "gradient flow (linear units)": self.flow_linear}
        out = {name: r.epoch for name, r in named.items() if isinstance(r, DivergenceError)}
        out.update({f"{name}, N = {self.n_rep}, seed {s}": r.epoch for s, rr in self.reps.items()
                    for name, r in rr.items() if isinstance(r, DivergenceError)})
        return out


def e7_runs(arch: Architecture, X0, task, *, eta_small: float, eta_large: float, adam_lr: float, epochs: int,
            seed: int, n_seeds: int, small_divisor: int) -> E7Runs:
    """Train E7's learners (through the result cache) and return every run.

    Parameters
    ----------
    arch : Architecture
        The network (E7: rank 1, erf units).
    X0 : array (N, K)
        The start (E7: ``balanced_vectors(arch, N, seed)``, as in E6); the full network trains in
        float32 from ``X0.astype(float32)``, the theory starts from ``overlaps(X0)``.
    task : Batch or sampler
        The task (E7: flip-flop with fresh trials every epoch, the same trials for every learner).
    eta_small, eta_large : float
        Overlap-space rates of the small-step and large-step SGD learners.
    adam_lr : float
        Adam's step size on the vector entries.
    epochs : int
        Epochs of every run.
    seed : int
        Seed of the trials of the run at N; the repeats use seeds ``seed, ..., seed + n_seeds - 1``
        for their starts and trials.
    n_seeds : int
        Number of repeat starts (0: none).
    small_divisor : int
        The repeats have ``N // small_divisor`` neurons (E6's finite-N runs at that size).

    Returns
    -------
    :class:`E7Runs`. Cache names: ``e6-full`` and ``e6-exact`` (small step, E6's), ``e7-sgd-large``,
    ``e7-adam``, ``e7-exact-large``, ``e7-flow``, ``e7-flow-linear``, and for the repeats the same
    names with ``-N{n_rep}-s{seed}`` appended.
    """
    check_instance("e7_runs: arch", arch, Architecture)
    check_vectors(X0, arch.K, arch.vector_names, name="e7_runs: X0")
    eta_small = check_positive("e7_runs: eta_small", eta_small)
    eta_large = check_positive("e7_runs: eta_large", eta_large)
    adam_lr = check_positive("e7_runs: adam_lr", adam_lr)
    epochs = check_int("e7_runs: epochs", epochs, 1)
    seed = check_seed(seed, "e7_runs: seed")
    n_seeds = check_int("e7_runs: n_seeds", n_seeds, 0)
    small_divisor = check_int("e7_runs: small_divisor", small_divisor, 1)
    X0 = np.asarray(X0)
    n_rep = X0.shape[0] // small_divisor
    if n_seeds and n_rep < 1:
        raise InvalidParameterError(f"e7_runs: small_divisor ({small_divisor}) leaves no neuron of N = {X0.shape[0]}")

    def full(name, X, lr, s, **opt):
        return memo_or_divergence(name, learn_vectors, arch, X, task, lr=lr, epochs=epochs, **opt, seed=s,
                                  progress=False)

    def exact(name, S, lr, s):
        return memo_or_divergence(name, learn_overlaps, arch, S, task, lr=lr, epochs=epochs, rule="exact", seed=s,
                                  progress=False)

    Xf, Sigma0 = X0.astype(np.float32), overlaps(X0)
    runs = {"small-step SGD": full("e6-full", Xf, eta_small, seed),
            "large-step SGD": full("e7-sgd-large", Xf, eta_large, seed),
            "Adam": full("e7-adam", Xf, adam_lr, seed, optimizer="adam")}
    theory = {"small-step SGD": exact("e6-exact", Sigma0, eta_small, seed),
              "large-step SGD": exact("e7-exact-large", Sigma0, eta_large, seed)}
    flow = memo_or_divergence("e7-flow", learn_overlaps, arch, Sigma0, task, lr=eta_small, epochs=epochs,
                              rule="flow", seed=seed, progress=False)
    linear = Architecture(rank=arch.rank, n_in=arch.n_in, n_out=arch.n_out, activation="linear")
    flow_linear = memo_or_divergence("e7-flow-linear", learn_overlaps, linear, Sigma0, task, lr=eta_small,
                                     epochs=epochs, rule="flow", seed=seed, progress=False)
    reps = {}
    for s in range(seed, seed + n_seeds):
        X = balanced_vectors(arch, n_rep, s)
        Xs, S = X.astype(np.float32), overlaps(X)
        tag = f"-N{n_rep}-s{s}"
        reps[s] = {"small-step SGD": full(f"e6-full{tag}", Xs, eta_small, s),
                   "large-step SGD": full(f"e7-sgd-large{tag}", Xs, eta_large, s),
                   "Adam": full(f"e7-adam{tag}", Xs, adam_lr, s, optimizer="adam"),
                   "small-step SGD (theory)": exact(f"e6-exact{tag}", S, eta_small, s),
                   "large-step SGD (theory)": exact(f"e7-exact-large{tag}", S, eta_large, s)}
    return E7Runs(runs=runs, theory=theory, flow=flow, flow_linear=flow_linear, reps=reps, n_rep=n_rep,
                  epochs=epochs)


@dataclass(frozen=True)
class E7Analysis:
    """What :func:`e7_analysis` computes (learners that diverged are absent from the per-learner
    dicts and named in ``diverged``).

    Attributes
    ----------
    ok : dict
        Learner -> its full-network run at N, for the learners that did not diverge.
    tail : int
        Epochs averaged for a final loss: the last 5% (``max(1, epochs // 20)``).
    final_loss : dict
        Learner -> mean loss over the last ``tail`` epochs.
    ends : dict
        Learner -> final overlaps (K, K).
    from_start : dict
        Learner -> {"visible", "invisible"}: Euclidean distance of its end point from the start.
    between : dict
        (learner a, learner b) -> {"visible", "invisible"}: distance between their end points (pairs
        in :data:`E7_LEARNERS` order).
    gap_series : dict
        SGD learner -> (epochs + 1,) largest absolute overlap difference, full network vs theory.
    theory_gap, gap_end : dict
        SGD learner -> the largest value of that series, and its last value.
    split : dict
        SGD learner -> first epoch at which the series exceeds ``split_threshold`` (None: never).
    split_threshold : float
        That threshold.
    theory_between : dict or None
        {"visible", "invisible"}: distance between the two SGD theories' end points (None if one
        diverged).
    rms : dict
        Pair -> {"visible", "invisible"}: ``between`` per overlap (divided by the square root of
        the number of visible or invisible overlaps).
    drift : dict
        Learner (and ``"gradient flow (theory)"``) -> (epochs + 1,) drift of the conserved
        quantities of linear gradient flow from the start (:func:`~lowrank_learning.conserved_drift`).
    drift_linear : ndarray (epochs + 1,) or None
        The same for the gradient-flow ODE with linear units (None if it diverged).
    verdicts : dict
        ``"all_solve"``, ``"ends_apart"``, ``"large_step_gap"``: see :func:`e7_verdicts`.
    every : list of dict
        :attr:`E7Runs.every`, the runs the verdicts are over.
    diverged : dict
        :attr:`E7Runs.diverged`: name -> epoch of every run that diverged.
    """

    ok: dict
    tail: int
    final_loss: dict
    ends: dict
    from_start: dict
    between: dict
    gap_series: dict
    theory_gap: dict
    gap_end: dict
    split: dict
    split_threshold: float
    theory_between: dict | None
    rms: dict
    drift: dict
    drift_linear: np.ndarray | None
    verdicts: dict
    every: list
    diverged: dict


def _check_run(where: str, r, allow_divergence: bool = True):
    if isinstance(r, DivergenceError) and allow_divergence:
        return r
    if not isinstance(r, Trajectory):
        raise InvalidParameterError(f"{where} must be a Trajectory or a DivergenceError, got {type(r).__name__}")
    return r


def _check_every(every) -> list[dict]:
    if not isinstance(every, (list, tuple)) or not every:
        raise InvalidParameterError("e7_verdicts: every must be a non-empty list of runs (dicts)")
    names = (*E7_LEARNERS, *(f"{k} (theory)" for k in _SGD))
    for i, r in enumerate(every):
        if not isinstance(r, dict) or any(n not in r for n in names):
            raise InvalidParameterError(f"e7_verdicts: every[{i}] must map each of {names} to a run")
        for n in names:
            _check_run(f"e7_verdicts: every[{i}][{n!r}]", r[n])
    return list(every)


def _tail(epochs: int) -> int:
    return max(1, epochs // 20)


def _final(tr, tail: int) -> float:
    """Mean loss over the last ``tail`` epochs; a diverged run never got there: inf."""
    return np.inf if isinstance(tr, DivergenceError) else float(np.mean(tr.loss[-tail:]))


def _paired_ratio(x, y, *, claim: str, what: str = "runs") -> Verdict:
    """:func:`~lowrank_learning.ratio_exceeds` (x > y) over the runs, counting what it cannot take.

    A run where a value is NaN (a run it needs diverged) has no value to compare: it is excluded
    and counted (``excluded``, and the note). A run where ``x`` is 0 and ``y`` positive (two end
    points that coincide) has ``log10(x / y) = -inf``, so the mean the test is about is not above
    0: the verdict is "does not hold", the note counts those runs and the statistic is the mean
    over the others. With no run left the claim is not testable.
    """
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    missing = np.isnan(x) | np.isnan(y)
    n_missing = int(missing.sum())
    x, y = x[~missing], y[~missing]
    gone = f"{n_missing} of {missing.size} {what} excluded: a run they need diverged"
    if x.size == 0:
        return Verdict(claim=claim, verdict=NOT_TESTABLE, statistic=float("nan"), interval=None, p=None,
                       test=f"no {what} left to test", n=0, excluded=n_missing, note=gone)
    same = (x == 0) & (y > 0)
    if same.any():
        rest = np.log10(x[~same] / y[~same])
        return Verdict(claim=claim, verdict=DOES_NOT_HOLD, statistic=float(np.mean(rest)) if rest.size else np.nan,
                       interval=None, p=None, test=f"{int(same.sum())} of {x.size} {what} at distance 0",
                       n=int(x.size), excluded=n_missing,
                       note="; ".join([f"{int(same.sum())} of {x.size} {what} have x = 0 (log10 ratio -inf): "
                                       "the mean log10 ratio is not above 0"] + ([gone] if n_missing else [])))
    v = ratio_exceeds(x, y, claim=claim, what=what)
    if n_missing:
        v = replace(v, excluded=n_missing, note=f"{v.note}; {gone}")
    return v


def e7_verdicts(arch: Architecture, every, epochs: int) -> dict:
    """The three verdicts of E7 over the runs ``every``.

    Parameters
    ----------
    arch : Architecture
        The network (decides which overlaps are invisible).
    every : list of dict
        Per run (the run at N and the repeats): each learner of :data:`E7_LEARNERS` and
        ``"small-step SGD (theory)"``, ``"large-step SGD (theory)"`` -> a
        :class:`~lowrank_learning.Trajectory` or the :class:`~lowrank_learning.DivergenceError`
        of a run that diverged. Each run's learners start from the same point on the same trials.
    epochs : int
        Epochs of the runs (final losses average the last ``max(1, epochs // 20)``).

    Returns
    -------
    dict of :class:`~lowrank_learning.Verdict`:

    ``all_solve``
        Every learner solves the task (:func:`~lowrank_learning.solves_task` per learner, final
        loss below a tenth of the initial one over the runs; a diverged run has final loss inf and
        the part does not hold), combined.
    ``ends_apart``
        Per pair of learners: the invisible distance between their end points exceeds the
        finite-N error, the invisible distance between the small-step full network's end point and
        its theory's (:func:`~lowrank_learning.ratio_exceeds`, paired by run), combined.
    ``large_step_gap``
        The full network's largest overlap difference from its theory over the run is larger for
        the large-step SGD learner than for the small-step one (paired by run).

    Runs where a learner that a comparison needs diverged are excluded from that comparison and
    counted in its verdict (``excluded``, note).
    """
    check_instance("e7_verdicts: arch", arch, Architecture)
    every = _check_every(every)
    tail = _tail(check_int("e7_verdicts: epochs", epochs, 1))
    for i, r in enumerate(every):
        if isinstance(r["small-step SGD"], DivergenceError):  # the initial loss is that of the start
            for n in E7_LEARNERS:
                if not isinstance(r[n], DivergenceError):
                    break
            else:
                raise InvalidParameterError(f"e7_verdicts: every[{i}]: every learner diverged, no initial loss")
    initial = [next(r[n] for n in E7_LEARNERS if not isinstance(r[n], DivergenceError)).loss[0] for r in every]

    def gap(r, name, at_end):  # finite-N error of an SGD learner: full network vs its theory (NaN if one diverged)
        f, t = r[name], r[f"{name} (theory)"]
        if isinstance(f, DivergenceError) or isinstance(t, DivergenceError):
            return np.nan
        if at_end:
            return overlap_distance(arch, f.final_sigma, t.final_sigma)["invisible"]
        return float(overlap_error_curve(f.sigma_all, t.sigma_all).max())

    def apart(r, a, b):  # invisible distance between two learners' end points (NaN if one diverged)
        if isinstance(r[a], DivergenceError) or isinstance(r[b], DivergenceError):
            return np.nan
        return overlap_distance(arch, r[a].final_sigma, r[b].final_sigma)["invisible"]

    pairs = [(a, b) for i, a in enumerate(E7_LEARNERS) for b in E7_LEARNERS[i + 1:]]
    verdicts = {"all_solve": combine("All three learners solve the task", {
        E7_KEYS[name]: solves_task(initial, [_final(r[name], tail) for r in every], what="runs",
                                   claim=f"{name} solves the task") for name in E7_LEARNERS})}
    noise = np.array([gap(r, "small-step SGD", at_end=True) for r in every])
    verdicts["ends_apart"] = combine(
        "The learners end farther apart in the invisible overlaps than the finite-N error", {
            f"{E7_KEYS[a]}_{E7_KEYS[b]}": _paired_ratio(
                np.array([apart(r, a, b) for r in every]), noise, what="runs",
                claim=f"{a} and {b} end farther apart in the invisible overlaps than the finite-N error")
            for a, b in pairs})
    verdicts["large_step_gap"] = _paired_ratio(
        np.array([gap(r, "large-step SGD", at_end=False) for r in every]),
        np.array([gap(r, "small-step SGD", at_end=False) for r in every]), what="runs",
        claim="The full network departs further from the overlap theory with large steps than with small steps")
    return verdicts


def e7_analysis(arch: Architecture, Sigma0, e7: E7Runs, *, split_threshold: float = 0.1) -> E7Analysis:
    """Everything the E7 chapter quotes, from :func:`e7_runs`' result.

    Parameters
    ----------
    arch : Architecture
        The network of the runs.
    Sigma0 : array (K, K)
        The start's overlaps (``overlaps(X0)``).
    e7 : E7Runs
        The runs.
    split_threshold : float
        ``split`` is the first epoch at which some overlap of the full network differs from its
        theory's by more than this (>= 0; default 0.1, the chapter's value: a tenth of the scale of
        the overlaps, whose start has vectors of unit norm).

    Returns
    -------
    :class:`E7Analysis`.
    """
    check_instance("e7_analysis: arch", arch, Architecture)
    check_instance("e7_analysis: e7", e7, E7Runs)
    Sigma0 = np.asarray(Sigma0, dtype=float)
    if Sigma0.shape != (arch.K, arch.K) or not np.all(np.isfinite(Sigma0)):
        raise InvalidParameterError(f"e7_analysis: Sigma0 must be a finite ({arch.K}, {arch.K}) matrix, "
                                    f"got shape {Sigma0.shape}")
    split_threshold = check_nonnegative("e7_analysis: split_threshold", split_threshold)
    if set(e7.runs) != set(E7_LEARNERS) or set(e7.theory) != set(_SGD):
        raise InvalidParameterError(f"e7_analysis: e7.runs must hold {E7_LEARNERS} and e7.theory {_SGD}")
    for name, r in {**e7.runs, **e7.theory, "flow": e7.flow, "flow_linear": e7.flow_linear}.items():
        _check_run(f"e7_analysis: run {name!r}", r)
    tail = _tail(e7.epochs)
    ok = {name: e7.runs[name] for name in E7_LEARNERS if not isinstance(e7.runs[name], DivergenceError)}
    final_loss = {name: float(np.mean(tr.loss[-tail:])) for name, tr in ok.items()}
    ends = {name: tr.final_sigma for name, tr in ok.items()}
    from_start = {name: overlap_distance(arch, Sigma0, S) for name, S in ends.items()}
    names = list(ends)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    between = {(a, b): overlap_distance(arch, ends[a], ends[b]) for a, b in pairs}
    theory_ok = {n: th for n, th in e7.theory.items() if not isinstance(th, DivergenceError)}
    gap_series = {name: np.abs(ok[name].sigma_all - th.sigma_all).max(axis=(1, 2))  # (epochs + 1,)
                  for name, th in theory_ok.items() if name in ok}
    theory_gap = {name: float(g.max()) for name, g in gap_series.items()}
    gap_end = {name: float(g[-1]) for name, g in gap_series.items()}
    split = {name: (int(np.argmax(g > split_threshold)) if np.any(g > split_threshold) else None)
             for name, g in gap_series.items()}
    theory_between = (overlap_distance(arch, theory_ok["small-step SGD"].final_sigma,
                                       theory_ok["large-step SGD"].final_sigma) if len(theory_ok) == 2 else None)
    n_vis, n_inv = len(arch.visible_names), len(arch.invisible_names)
    rms = {pair: {"visible": d["visible"] / np.sqrt(n_vis), "invisible": d["invisible"] / np.sqrt(n_inv)}
           for pair, d in between.items()}
    drift = {name: conserved_drift(arch, tr.sigma_all, Sigma0) for name, tr in ok.items()}
    if not isinstance(e7.flow, DivergenceError):
        drift["gradient flow (theory)"] = conserved_drift(arch, e7.flow.sigma_all, Sigma0)
    drift_linear = None
    if not isinstance(e7.flow_linear, DivergenceError):
        drift_linear = conserved_drift(e7.flow_linear.arch, e7.flow_linear.sigma_all, Sigma0)
    every = e7.every
    return E7Analysis(ok=ok, tail=tail, final_loss=final_loss, ends=ends, from_start=from_start, between=between,
                      gap_series=gap_series, theory_gap=theory_gap, gap_end=gap_end, split=split,
                      split_threshold=split_threshold, theory_between=theory_between, rms=rms, drift=drift,
                      drift_linear=drift_linear, verdicts=e7_verdicts(arch, every, e7.epochs), every=every,
                      diverged=e7.diverged)
