"""The twins of E8 summarised for the linear-versus-nonlinear chapter: what decodes the first task,
the twins' gaps, and how far the conserved quantities of linear gradient flow moved.

:func:`twins_memory` reads one :func:`~lowrank_learning.twins.run_twins` result (linear or erf
twins) and returns the numbers that chapter compares between the two activations.
"""

from __future__ import annotations

import numpy as np

from ..analysis.memory import conserved_drift
from ..core.architecture import Architecture
from ..core.errors import InvalidParameterError
from . import twins

__all__ = ["twins_memory", "TWIN_STAGES"]

TWIN_STAGES = ("start", "after phase 1", "after phase 2")


def twins_memory(arch: Architecture, run: dict, seed: int = 0) -> dict:
    """What a twins run keeps of the first task, for one activation.

    Parameters
    ----------
    arch : Architecture
        The twins' architecture (rank 1; linear or erf: it decides which overlaps are visible).
    run : dict
        A :func:`~lowrank_learning.twins.run_twins` result: ``start`` (n, 4, 4), ``p1_final``,
        ``p2_final`` (2n, 4, 4), ``p1_sigma``, ``p2_sigma`` (2n, R, 4, 4) and their
        ``*_record_epochs``.
    seed : int
        Seed of the decoding splits (:func:`~lowrank_learning.twins.decode_history_tests`).

    Returns
    -------
    dict with ``tests`` (the permutation tests, ``(feature set, stage) -> DecodingTest``);
    ``dec_inv``, ``dec_vis``, ``p_inv`` (lists over :data:`TWIN_STAGES`: decoding accuracy from the
    invisible and visible overlaps, and the invisible one's p-value); ``gap_inv``, ``gap_vis``
    (median over pairs of the twins' gap norms after phase 2) and ``gap_inv_p1`` (after phase 1);
    ``drift`` (median over networks of the conserved quantities' drift from the start, at the end)
    and ``drift_curve`` (its median at every recorded epoch of both phases, (R1 + R2,)), with
    ``record_epochs`` (R1 + R2,) counted from the start of phase 1.
    """
    for key in ("start", "p1_final", "p2_final", "p1_sigma", "p2_sigma", "p1_record_epochs", "p2_record_epochs",
                "p1_loss"):
        if key not in run:
            raise InvalidParameterError(f"run has no {key!r}: pass a run_twins result")
    states = {"start": np.concatenate([run["start"]] * 2), "after phase 1": run["p1_final"],
              "after phase 2": run["p2_final"]}
    tests = twins.decode_history_tests(states, arch=arch, seed=seed)
    gaps = {k: twins.gap_norms(S, arch) for k, S in states.items() if k != "start"}
    sig = np.concatenate([run["p1_sigma"], run["p2_sigma"]], axis=1).astype(float)  # (2n, R, K, K)
    d = conserved_drift(arch, sig, sig[:, :1])
    epochs_phase1 = np.asarray(run["p1_loss"]).shape[1]
    return {"tests": tests,
            "dec_inv": [tests[("invisible", t)].observed for t in TWIN_STAGES],
            "dec_vis": [tests[("visible", t)].observed for t in TWIN_STAGES],
            "p_inv": [tests[("invisible", t)].p for t in TWIN_STAGES],
            "gap_inv": float(np.median(gaps["after phase 2"]["invisible"])),
            "gap_vis": float(np.median(gaps["after phase 2"]["visible"])),
            "gap_inv_p1": float(np.median(gaps["after phase 1"]["invisible"])),
            "drift": float(np.median(d[:, -1])), "drift_curve": np.median(d, axis=0),
            "record_epochs": np.concatenate([run["p1_record_epochs"], np.asarray(run["p2_record_epochs"]) + epochs_phase1])}
