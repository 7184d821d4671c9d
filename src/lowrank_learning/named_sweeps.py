"""The named sweeps that ``lowrank-learning sweep NAME`` runs: grids of independent, cached jobs.

The E9 grids are read from the E9 chapter itself: the defaults of ``notebooks/e9_validation.ipynb``'s
``parameters`` cell (the quick profile) with the overrides that ``notebooks/profiles.yml`` lists for
the profile. A sweep run from the command line therefore computes exactly the jobs the chapter
asks for, and its cached results are the chapter's.
"""

from __future__ import annotations

import ast
from pathlib import Path

from .core.errors import InvalidParameterError
from .experiments.validation import compare_nonlinear, e9_jobs, linear_exactness
from .reproduce.layout import Layout, find_root
from .reproduce.profiles import available_profiles, load_profiles, notebook_parameters

E9_NOTEBOOK = "e9_validation"
# The E9 chapter's parameters that describe its grid (the others are the notebook's own settings).
_GRID_KEYS = ("N_values", "seeds", "activations", "tasks", "lrs", "epochs", "n_trials", "dt", "T_max",
              "epochs_largest", "activations_largest", "lrs_largest", "dtype")


def e9_grid(profile: str = "paper", root=None) -> dict:
    """The E9 chapter's parameters at ``profile``: the notebook's defaults updated with the
    profile's overrides from ``notebooks/profiles.yml``. ``root``: the repository (default: found
    from the working directory). Returns ``{name: value}``, including ``N_linear``."""
    layout = Layout(Path(root) if root is not None else find_root())
    registry = load_profiles(layout.profiles)
    if profile not in available_profiles(registry):
        raise InvalidParameterError(f"unknown profile {profile!r}; known: {available_profiles(registry)}")
    _, params = notebook_parameters(layout.notebooks / f"{E9_NOTEBOOK}.ipynb")
    values = {name: ast.literal_eval(p.default) for name, p in params.items()}
    values.update(registry[E9_NOTEBOOK]["profiles"][profile])
    return values


def _demo_job(N: int, seed: int) -> dict:
    """The ``demo`` sweep's job: :func:`linear_exactness` for 5 epochs of a 2 s impulse response."""
    return linear_exactness(N=N, seed=seed, epochs=5, T_max=2.0)


def _demo(profile, root):
    return _demo_job, [dict(N=N, seed=s) for N in (10, 100) for s in range(2)]


def _e9_linear(profile, root):
    return linear_exactness, [dict(N=int(N), seed=0) for N in e9_grid(profile, root)["N_linear"]]


def _e9_nonlinear(profile, root):
    grid = e9_grid(profile, root)
    return compare_nonlinear, e9_jobs(**{k: grid[k] for k in _GRID_KEYS if k in grid})


# name -> (description, (profile, root) -> (fn, jobs))
NAMED_SWEEPS = {
    "demo": ("exact map vs full linear network, N = 10 and 100, 2 seeds (seconds)", _demo),
    "e9-linear": ("E9 linear: exact map vs full network, the N of the E9 chapter's profile", _e9_linear),
    "e9-nonlinear": ("E9 nonlinear: theory vs full network, the E9 chapter's grid "
                     "(activation x task x lr x N x seeds)", _e9_nonlinear),
}


def named_sweep(name: str, profile: str = "paper", root=None):
    """``(fn, jobs)`` of the named sweep (:data:`NAMED_SWEEPS`) at the given profile of the
    E9 chapter (``quick`` or ``paper``, from ``notebooks/profiles.yml``)."""
    if name not in NAMED_SWEEPS:
        raise InvalidParameterError(f"unknown sweep {name!r}; known: {sorted(NAMED_SWEEPS)}")
    return NAMED_SWEEPS[name][1](profile, root)
