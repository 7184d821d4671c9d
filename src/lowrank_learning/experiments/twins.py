"""Memory in nonlinear networks: twin networks (book/experiments.md, E8, paper Fig. 9, 10, 4d).

Each pair of twins starts at the same random point in overlap space. In phase 1 twin 1 learns
flip-flop and twin 2 perceptual decision making; in phase 2 both imitate one teacher network.
After phase 2 the twins compute (almost) the same function; the question is whether their
overlaps still say which task each learned first.

:func:`run_twins` runs all pairs as one ensemble (:func:`~lowrank_learning.learn_overlaps_ensemble`)
and returns plain arrays (cacheable); :func:`twin_gaps` and :func:`decode_history` analyse them;
:func:`confirm_pair` runs one pair with full networks next to the overlap dynamics.

Whether a feature set "decodes" is decided by the exact permutation test over the within-pair
label flips (:func:`decode_history_tests`, built on
:func:`~lowrank_learning.pair_permutation_tests`), not by comparing the mean accuracy over the
splits with their spread (the splits are resamples of the same pairs). :func:`decoding_verdicts`,
:func:`memory_verdict` and :func:`activation_memory_verdict` turn the tests into the chapters'
verdicts.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import jax
import numpy as np

from ..analysis.decoding import (
    DecodingTest,
    compare_decoding,
    decode_stack,
    pair_permutation_tests,
)
from ..analysis.verdicts import NOT_TESTABLE, Verdict, combine
from ..core._checks import check_int, check_seed
from ..core.architecture import Architecture
from ..core.errors import InvalidParameterError
from ..core.initial import random_overlaps
from ..core.overlaps import flatten, sample_vectors, sigma_from_named
from ..learn.overlap_space import learn_overlaps, learn_overlaps_ensemble
from ..learn.schedules import DropBelow
from ..learn.vectors import learn_vectors
from ..tasks import decision_making, flip_flop, noisy_pulses, teacher

ARCH = Architecture(rank=1, activation="erf")

#: Epochs of each phase in the paper's protocol (book/experiments.md, E8).
PAPER_EPOCHS = 30000
#: The moments at which the chapters decode the history.
STAGES = ("start", "after phase 1", "after phase 2")

#: The teacher's loss-visible overlaps (book/experiments.md, E8).
TEACHER_VISIBLE = {"zm": 0.5, "zu": 2.3, "vm": 2.0, "vu": 1.5, "mu": 1.6, "mm": 1.8, "uu": 2.2}
#: Its invisible overlaps do not affect its output; these make its overlap matrix positive
#: definite (with vv = zz = 1 and zv = 0 it is not: no vectors would have those overlaps).
TEACHER_INVISIBLE = {"zv": 0.0, "vv": 3.0, "zz": 5.5}


def teacher_sigma(visible=None, invisible=None) -> np.ndarray:
    """The E8 teacher's overlap matrix (4, 4), validated positive semi-definite."""
    return sigma_from_named(ARCH, {**(visible or TEACHER_VISIBLE), **(invisible or TEACHER_INVISIBLE)})


def twin_tasks(n_trials: int = 128, dt: float = 0.05, T_max: float = 20.0,
               noise_std: float = 1.5, pulse_amplitude: float = 2.0, teacher_sig=None):
    """The three E8 tasks: (flip-flop, decision making, teacher), all with ``T_max / dt`` steps.

    * flip-flop: the authors' generator with waits U(1, 2) s after the 2 s unscored period,
      input amplitude 2, target amplitude 1;
    * decision making: fixation 1 s, stimulus 9 s, delay 1 s, response 9 s (T_max = 20 s),
      input noise std 0.05 at every step;
    * teacher: the targets are the outputs (mean-field) of the teacher network
      (:func:`teacher_sigma`) on ``noise_std`` * N(0, 1) white noise per step plus
      ``pulse_amplitude`` * the pulses of the E6 flip-flop generator; ``sum_time`` loss with a
      full mask, i.e. the mean squared error over trials and steps times T dt.
    """
    ff = flip_flop(n_trials=n_trials, dt=dt, T_max=T_max, wait_min=1.0, wait_max=2.0,
                   input_amplitude=2.0, target_amplitude=1.0)
    dm = decision_making(n_trials=n_trials, dt=dt)
    if abs(dm.T_max - T_max) > 1e-9:
        raise InvalidParameterError(f"twin_tasks: decision making lasts {dm.T_max} s, T_max must match, got {T_max}")
    inputs = noisy_pulses(n_trials=n_trials, dt=dt, T_max=T_max, noise_std=noise_std, pulse_amplitude=pulse_amplitude)
    sig = teacher_sigma() if teacher_sig is None else teacher_sig
    return ff, dm, teacher(ARCH, inputs, sigma=sig)


def run_twins(n_pairs: int = 10, epochs_phase1: int = 30000, epochs_phase2: int = 30000, n_trials: int = 128,
              lr_phase1: float = 0.01, drop_threshold: float = 0.015, drop_factor: float = 5.0,
              lr_phase2: float = 1e-3, seed: int = 0, record_every: int = 100,
              float32: bool = True, activation: str = "erf", progress: bool | None = None) -> dict:
    """Run the E8 twin protocol in overlap space (exact map); all 2 n_pairs networks at once.

    ``activation`` sets the units of the twins (the teacher is always the E8 erf network): the
    paper's protocol is erf; ``"linear"`` runs the same protocol with linear twins for comparison.

    Members ``0 .. n_pairs-1`` are the twins 1 (flip-flop first), members ``n_pairs .. 2 n_pairs-1``
    the twins 2 (decision making first); member ``i`` and ``i + n_pairs`` form pair ``i``.

    ``float32=True`` runs in float32 throughout, also when JAX's x64 mode is on (the result does
    not depend on it); ``float32=False`` in float64 (needs x64 mode).

    Trials: every network draws fresh trials each epoch; networks learning the same task in the
    same phase share that epoch's trials (seed ``seed`` in phase 1, ``seed + 1`` in phase 2).

    Returns
    -------
    dict of arrays: ``start`` (n_pairs, 4, 4), ``n_rejected`` (draws that were not positive
    definite), and per phase ``p1_*`` / ``p2_*``: ``loss`` (2n, epochs), ``sigma`` (2n, R, 4, 4)
    at ``record_epochs`` (R,), ``final`` (2n, 4, 4), ``lrs`` (2n, epochs); ``p1_drops`` (2n,)
    the epoch of each network's rate drop (-1: none).
    """
    seed = check_seed(seed)
    arch = Architecture(rank=1, activation=activation)
    draw = random_overlaps(arch, n_pairs, seed=seed)
    start = draw.sigma
    S0 = np.concatenate([start, start]).astype(np.float32 if float32 else np.float64)
    ff, dm, tch = twin_tasks(n_trials)
    # float32 means float32 throughout, whether or not the caller switched on JAX's x64 mode (with
    # it on, float64 trials would promote the float32 overlaps): the same arguments give the same
    # numbers (and the same cache entry) in every chapter.
    with jax.enable_x64(False) if float32 else contextlib.nullcontext():
        p1 = learn_overlaps_ensemble(arch, S0, [ff] * n_pairs + [dm] * n_pairs,
                                     DropBelow(lr_phase1, drop_threshold, drop_factor), epochs_phase1,
                                     seeds=seed, record_every=record_every, progress=progress)
        p2 = learn_overlaps_ensemble(arch, p1.final_sigma, tch, lr_phase2, epochs_phase2, seeds=seed + 1,
                                     record_every=record_every, progress=progress)
    out = {"start": start, "n_rejected": int(draw.n_rejected)}
    for tag, p in (("p1", p1), ("p2", p2)):
        out.update({f"{tag}_loss": p.loss, f"{tag}_sigma": p.sigma, f"{tag}_record_epochs": p.record_epochs,
                    f"{tag}_final": p.final_sigma, f"{tag}_lrs": p.lrs})
    out["p1_drops"] = p1.drops
    return out


def twin_gaps(sigma, arch: Architecture = ARCH) -> np.ndarray:
    """Per pair, twin 1 minus twin 2 for every overlap: (2n, K, K) -> (n, K(K+1)/2), in
    ``arch.overlap_names`` order (default the E8 networks: (2n, 4, 4) -> (n, 10))."""
    sigma = np.asarray(sigma, dtype=float)
    K = arch.K
    if sigma.ndim != 3 or sigma.shape[0] % 2 or sigma.shape[1:] != (K, K):
        raise InvalidParameterError(f"twin_gaps: sigma must have shape (2n, {K}, {K}), got {sigma.shape}")
    n = sigma.shape[0] // 2
    return flatten(arch, sigma[:n] - sigma[n:])


def gap_norms(sigma, arch: Architecture = ARCH) -> dict:
    """Per pair, the Euclidean norm of the twins' difference over the visible and over the
    invisible overlaps of ``arch`` (default erf): ``{"visible": (n,), "invisible": (n,)}``."""
    g = twin_gaps(sigma, arch)
    return {"visible": np.linalg.norm(g[:, arch.visible], axis=1),
            "invisible": np.linalg.norm(g[:, ~arch.visible], axis=1)}


def decode_history(states: dict, n_splits: int = 50, n_test_groups: int = 2, train_noise: float = 0.3,
                   seed: int = 0, names=None, arch: Architecture = ARCH) -> dict:
    """Decode which task each network learned first, from visible vs invisible overlaps.

    Parameters
    ----------
    states : dict label -> array (2n, 4, 4)
        Overlaps of all networks at some moments (e.g. start, after phase 1, after phase 2).
    names : dict feature-set name -> tuple of overlap names, optional
        Default ``{"visible": arch.visible_names, "invisible": arch.invisible_names}``.
    arch : Architecture
        The networks' architecture (default the E8 erf networks); it decides which overlaps
        are visible.

    Returns
    -------
    dict ``(feature set, label)`` -> :class:`~lowrank_learning.analysis.decoding.DecodingResult`, all on the
    same splits: ``n_splits`` random splits with ``n_test_groups`` whole pairs held out
    (both twins on the same side), Gaussian noise of std ``train_noise`` on the training
    features, standardise + logistic regression (the authors' protocol).
    """
    feats, labels, groups = _twin_features(states, names, arch)
    keys = list(feats)
    res = decode_stack({f"{a}|{b}": feats[(a, b)] for a, b in keys}, labels, groups, n_splits=n_splits,
                       n_test_groups=n_test_groups, train_noise=train_noise, seed=seed)
    return {k: res[f"{k[0]}|{k[1]}"] for k in keys}


def _twin_features(states: dict, names, arch: Architecture):
    names = names or {"visible": arch.visible_names, "invisible": arch.invisible_names}
    if not states:
        raise InvalidParameterError("states must hold at least one label -> array (2n, K, K)")
    n = np.asarray(next(iter(states.values()))).shape[0] // 2
    labels = np.r_[np.zeros(n, int), np.ones(n, int)]
    groups = np.r_[np.arange(n), np.arange(n)]
    feats = {}
    for set_name, ov in names.items():
        idx = [arch.overlap_index(o) for o in ov]
        for label, S in states.items():
            feats[(set_name, label)] = flatten(arch, np.asarray(S, dtype=float))[:, idx]
    return feats, labels, groups


def decode_history_tests(states: dict, n_splits: int = 50, n_test_groups: int = 2, train_noise: float = 0.3,
                         seed: int = 0, names=None, arch: Architecture = ARCH, alpha: float = 0.05,
                         level: float = 0.95) -> dict:
    """The exact permutation test of every decoding in :func:`decode_history` (same arguments,
    same splits, same training noise, so each test's ``observed`` is that decoding's mean).

    For every feature set and moment, the labels (which task each network learned first) are
    flipped within pairs in all 2^(n-1) distinct ways and each assignment is decoded on the same
    splits (:func:`~lowrank_learning.pair_permutation_tests`).

    Returns
    -------
    dict ``(feature set, label)`` -> :class:`~lowrank_learning.DecodingTest`.
    """
    feats, labels, groups = _twin_features(states, names, arch)
    keys = list(feats)
    res = pair_permutation_tests({f"{a}|{b}": feats[(a, b)] for a, b in keys}, labels, groups, n_splits=n_splits,
                                 n_test_groups=n_test_groups, train_noise=train_noise, seed=seed, alpha=alpha,
                                 level=level)
    return {k: res[f"{k[0]}|{k[1]}"] for k in keys}


def _test(tests: dict, key) -> DecodingTest:
    if key not in tests:
        raise InvalidParameterError(f"tests has no entry {key!r}; it has {list(tests)}")
    t = tests[key]
    if not isinstance(t, DecodingTest):
        raise InvalidParameterError(f"tests[{key!r}] is a {type(t).__name__}, not a DecodingTest")
    return t


def decoding_verdicts(tests: dict) -> dict:
    """One verdict per decoding: ``{"<feature set>, <label>": Verdict}`` for the claim "the
    <feature set> overlaps decode the first task <label>" (holds when the exact permutation test
    rejects at its level)."""
    return {f"{kind}, {label}": _test(tests, (kind, label)).verdict(
        f"the {kind} overlaps decode which task each network learned first ({label})") for kind, label in tests}


def _shorter_than_protocol(v: Verdict, epochs_phase1, epochs_phase2, what: str) -> Verdict:
    """``v`` as "not testable at this profile" when the run is shorter than the paper's protocol."""
    if epochs_phase1 is None and epochs_phase2 is None:
        return v
    e1 = check_int("epochs_phase1", epochs_phase1, 0)
    e2 = check_int("epochs_phase2", epochs_phase2, 0)
    if min(e1, e2) >= PAPER_EPOCHS:
        return v
    why = (f"{what} ran {e1} + {e2} epochs, {100 * min(e1, e2) / PAPER_EPOCHS:.0f}% of the protocol's "
           f"{PAPER_EPOCHS} per phase: the claim is about the protocol's length, so this run cannot test it "
           f"(the parts say what this shorter run shows)")
    return replace(v, verdict=NOT_TESTABLE, note=f"{why}; {v.note}")


def memory_verdict(tests: dict, stage: str = "after phase 2", epochs_phase1: int | None = None,
                   epochs_phase2: int | None = None, alpha: float = 0.05) -> Verdict:
    """E8's claim: at ``stage`` the invisible overlaps still decode the first task, and they
    decode it better than the visible ones (which the paper says have forgotten it).

    Two parts (:func:`~lowrank_learning.combine`, so the verdict can be "holds in part"):
    ``"invisible decode"`` (exact permutation test of the invisible overlaps, ``tests[("invisible",
    stage)]``) and ``"invisible better than visible"`` (:func:`~lowrank_learning.compare_decoding`,
    a one-sided sign test over the pairs' held-out accuracies). The visible overlaps' own test is
    in the note: "does not hold" there means this run does not show them decoding, not that they
    cannot. With ``epochs_phase1`` / ``epochs_phase2`` shorter than :data:`PAPER_EPOCHS` the
    verdict is "not testable at this profile" (the parts are kept).
    """
    inv, vis = _test(tests, ("invisible", stage)), _test(tests, ("visible", stage))
    if inv.alpha != alpha:
        raise InvalidParameterError(f"alpha: the tests ran at level {inv.alpha}, got {alpha}")
    parts = {
        "invisible decode": inv.verdict(f"the invisible overlaps decode the first task ({stage})"),
        "invisible better than visible": compare_decoding(
            inv, vis, f"the invisible overlaps decode the first task better than the visible ones ({stage})",
            alpha=alpha),
    }
    v = combine(f"{stage} the invisible overlaps still decode the first task, better than the visible ones", parts)
    v = replace(v, note=f"{v.note}; visible overlaps alone: {vis.verdict('the visible overlaps decode').verdict} "
                        f"(p = {vis.p:.3g}, accuracy {vis.observed:.2f}, detectable from {vis.detectable:.2f})")
    return _shorter_than_protocol(v, epochs_phase1, epochs_phase2, "the twins")


def both_decode_verdict(tests: dict, stage: str = "after phase 1") -> Verdict:
    """The claim that at ``stage`` both the visible and the invisible overlaps decode the first
    task: :func:`~lowrank_learning.combine` of the two permutation tests."""
    return combine(f"{stage} both the visible and the invisible overlaps decode the first task",
                   {kind: _test(tests, (kind, stage)).verdict(f"the {kind} overlaps decode the first task ({stage})")
                    for kind in ("visible", "invisible")})


def activation_memory_verdict(tests_erf: dict, tests_linear: dict, stage: str = "after phase 2",
                              epochs_phase1: int | None = None, epochs_phase2: int | None = None,
                              alpha: float = 0.05) -> Verdict:
    """The claim of the linear-versus-nonlinear comparison: at ``stage`` the erf twins'
    invisible overlaps decode the first task, and better than the linear twins' invisible
    overlaps do (same starts, same pairs, same splits).

    Parts: ``"erf invisible decode"`` (exact permutation test) and ``"erf better than linear"``
    (:func:`~lowrank_learning.compare_decoding` over the pairs). "Not testable at this profile"
    when the runs are shorter than :data:`PAPER_EPOCHS` per phase (the parts are kept).
    """
    erf, lin = _test(tests_erf, ("invisible", stage)), _test(tests_linear, ("invisible", stage))
    parts = {
        "erf invisible decode": erf.verdict(f"the erf twins' invisible overlaps decode the first task ({stage})"),
        "erf better than linear": compare_decoding(
            erf, lin, f"the erf twins' invisible overlaps decode the first task better than the linear twins' ({stage})",
            alpha=alpha),
    }
    v = combine(f"{stage} the erf twins' invisible overlaps decode the first task, better than the linear twins'",
                parts)
    v = replace(v, note=f"{v.note}; linear twins' invisible overlaps alone: "
                        f"{lin.verdict('decode').verdict} (p = {lin.p:.3g}, accuracy {lin.observed:.2f})")
    return _shorter_than_protocol(v, epochs_phase1, epochs_phase2, "the twins")


def confirm_pair(start, N: int, epochs_phase1: int, epochs_phase2: int, n_trials: int = 128,
                 lr_phase1: float = 0.01, drop_threshold: float = 0.015, drop_factor: float = 5.0,
                 lr_phase2: float = 1e-3, seed: int = 0, vector_seed: int = 0,
                 progress: bool | None = None) -> dict:
    """One twin pair with full networks (erf, N neurons) next to the overlap dynamics.

    Both twins start from the same vectors, drawn Gaussian with Gram matrix exactly ``start``
    (:func:`~lowrank_learning.sample_vectors` with ``exact=True``); the schedule, trials and
    seeds are those of :func:`run_twins` (so the overlap runs here equal the ensemble's members
    over these epochs). Returns a dict with, for ``twin1``/``twin2`` and ``full``/``theory``,
    the overlaps per epoch ``{key}_sigma`` (E1 + E2 + 1, 4, 4) and the losses ``{key}_loss``.
    """
    seed, vector_seed = check_seed(seed), check_seed(vector_seed, "vector_seed")
    ff, dm, tch = twin_tasks(n_trials)
    X0 = sample_vectors(ARCH, N, seed=vector_seed, sigma=np.asarray(start, dtype=float), exact=True)
    sched = DropBelow(lr_phase1, drop_threshold, drop_factor)

    def one_twin(task):
        f1 = learn_vectors(ARCH, X0, task, sched, epochs_phase1, seed=seed, progress=progress)
        f2 = learn_vectors(ARCH, f1.final_vectors, tch, lr_phase2, epochs_phase2, seed=seed + 1, progress=progress)
        t1 = learn_overlaps(ARCH, np.asarray(start, dtype=float), task, sched, epochs_phase1, seed=seed,
                            progress=progress)
        t2 = learn_overlaps(ARCH, t1.final_sigma, tch, lr_phase2, epochs_phase2, seed=seed + 1, progress=progress)
        return {"full_sigma": np.concatenate([f1.sigma, f2.sigma_all]), "full_loss": np.concatenate([f1.loss, f2.loss]),
                "theory_sigma": np.concatenate([t1.sigma, t2.sigma_all]),
                "theory_loss": np.concatenate([t1.loss, t2.loss])}

    # The twins are independent: two threads (XLA releases the GIL) use both cores for the
    # full networks, whose small per-step operations keep one core busy each.
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = dict(zip(("twin1", "twin2"), pool.map(one_twin, (ff, dm))))
    return {f"{twin}_{k}": v for twin, r in runs.items() for k, v in r.items()}


def gap_summary(gaps, arch: Architecture = ARCH) -> dict:
    """Which overlaps carry the twins' gaps after a phase (the E8 chapter's gap analysis).

    Parameters
    ----------
    gaps : array (n, P)
        Twin 1 minus twin 2 per pair and overlap, in ``arch.overlap_names`` order
        (:func:`twin_gaps`, P = K(K+1)/2).
    arch : Architecture
        Decides which overlaps are visible (default the E8 erf networks); must have overlaps named
        ``uu`` and ``vv`` (rank 1).

    Returns
    -------
    dict with

    * ``top_visible``, ``top_invisible``: the visible (invisible) overlap with the largest median
      absolute gap over the pairs;
    * ``top_visible_share``, ``top_invisible_share``: (n,) that overlap's share of the squared
      gap over the visible (invisible) overlaps, per pair (NaN for a pair with no gap there);
    * ``top_visible_same_sign``: in how many pairs the top visible overlap's gap has its more
      common sign;
    * ``uu_vv_tie``: the largest difference between the gaps in sigma_uu and sigma_vv over the
      pairs (gradient flow conserves sigma_uu - sigma_vv, so twins that start together keep
      these two gaps equal up to the discrete steps).
    """
    g = np.asarray(gaps, dtype=float)
    names = list(arch.overlap_names)
    if g.ndim != 2 or g.shape[0] == 0 or g.shape[1] != len(names):
        raise InvalidParameterError(f"gap_summary: gaps must have shape (n, {len(names)}) with n >= 1, got {g.shape}")
    if not np.all(np.isfinite(g)):
        raise InvalidParameterError(f"gap_summary: gaps has {int(np.sum(~np.isfinite(g)))} non-finite values")
    if "uu" not in names or "vv" not in names:
        raise InvalidParameterError(f"gap_summary: arch must have overlaps uu and vv, has {arch.overlap_names}")
    out = {}
    for kind, group in (("visible", arch.visible_names), ("invisible", arch.invisible_names)):
        idx = [names.index(o) for o in group]
        top = group[int(np.argmax(np.median(np.abs(g[:, idx]), axis=0)))]
        total = np.sum(g[:, idx] ** 2, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(total > 0, g[:, names.index(top)] ** 2 / np.where(total > 0, total, 1.0), np.nan)
        out[f"top_{kind}"] = top
        out[f"top_{kind}_share"] = share
    sign = np.sign(g[:, names.index(out["top_visible"])])
    out["top_visible_same_sign"] = int(max(np.sum(sign > 0), np.sum(sign < 0)))
    out["uu_vv_tie"] = float(np.max(np.abs(g[:, names.index("uu")] - g[:, names.index("vv")])))
    return out


def twin_trajectories(run: dict, pair: int, arch: Architecture = ARCH) -> dict:
    """The overlaps of both twins of one pair over both phases of :func:`run_twins`.

    Parameters
    ----------
    run : dict
        The result of :func:`run_twins`.
    pair : int
        Which pair (0 .. n_pairs - 1): twin 1 is member ``pair``, twin 2 member ``pair + n_pairs``.

    Returns
    -------
    dict with ``epochs`` (T,), the epoch of each point counted from the start of phase 1 (the
    recorded epochs of phase 1, then those of phase 2 shifted by the length of phase 1 (phase 2's
    first record is the end of phase 1), then the end of phase 2); ``twin1`` and ``twin2``
    (T, P) the overlaps at
    those epochs in ``arch.overlap_names`` order; ``names`` the overlap names; ``phase1_epochs``
    the length of phase 1 (where phase 2 starts).
    """
    n = np.asarray(run["start"]).shape[0]
    pair = check_int("pair", pair, 0)
    if pair >= n:
        raise InvalidParameterError(f"pair must be below n_pairs = {n}, got {pair}")
    e1 = int(np.asarray(run["p1_loss"]).shape[1])
    e2 = int(np.asarray(run["p2_loss"]).shape[1])
    epochs = np.concatenate([np.asarray(run["p1_record_epochs"]), e1 + np.asarray(run["p2_record_epochs"]),
                             [e1 + e2]]).astype(int)
    out = {"epochs": epochs, "names": tuple(arch.overlap_names), "phase1_epochs": e1}
    for twin, member in (("twin1", pair), ("twin2", pair + n)):
        sig = np.concatenate([np.asarray(run["p1_sigma"])[member], np.asarray(run["p2_sigma"])[member],
                              np.asarray(run["p2_final"])[member][None]])
        out[twin] = flatten(arch, np.asarray(sig, dtype=float))
    return out
