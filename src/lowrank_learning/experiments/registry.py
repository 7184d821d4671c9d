"""The named sweeps that ``lowrank-learning sweep NAME`` runs (a grid of independent, cached jobs)."""

from __future__ import annotations

from ..core.errors import InvalidParameterError
from .validation import E9_PROFILES, compare_nonlinear, e9_jobs, linear_exactness


def _demo_job(N: int, seed: int) -> dict:
    """The ``demo`` sweep's job: :func:`linear_exactness` for 5 epochs of a 2 s impulse response."""
    return linear_exactness(N=N, seed=seed, epochs=5, T_max=2.0)


# name -> (description, jobs(profile) -> (fn, jobs))
NAMED_SWEEPS = {
    "demo": ("exact map vs full linear network, N = 10 and 100, 2 seeds (seconds)",
             lambda profile: (_demo_job, [dict(N=N, seed=s) for N in (10, 100) for s in range(2)])),
    "e9-linear": ("E9 linear: exact map vs full network for N = 10 .. 10^5",
                  lambda profile: (linear_exactness, [dict(N=int(N), seed=0) for N in E9_PROFILES[profile]["N_linear"]])),
    "e9-nonlinear": ("E9 nonlinear: theory vs full network, erf/tanh x flip-flop/teacher x lr x N x seeds",
                     lambda profile: (compare_nonlinear, e9_jobs(**{k: v for k, v in E9_PROFILES[profile].items()
                                                                   if k != "N_linear"}))),
}


def named_sweep(name: str, profile: str = "paper"):
    """``(fn, jobs)`` of the named sweep (:data:`NAMED_SWEEPS`) at the given profile (quick or paper)."""
    if name not in NAMED_SWEEPS:
        raise InvalidParameterError(f"unknown sweep {name!r}; known: {sorted(NAMED_SWEEPS)}")
    if profile not in E9_PROFILES:
        raise InvalidParameterError(f"unknown profile {profile!r}; known: {sorted(E9_PROFILES)}")
    return NAMED_SWEEPS[name][1](profile)
