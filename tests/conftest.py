"""Shared test set-up: float64 JAX and the hypothesis profiles.

Tests run in float64: exactness claims (1e-9 relative) are checked at double precision.

Compiled XLA programs go to the shared persistent compilation cache (beside the numba kernels,
``lowrank_learning.core._kernels.use_jax_cache``): the pytest-xdist workers, and later runs,
compile each program once. ``JAX_COMPILATION_CACHE_DIR`` overrides the folder (empty: no cache).
Every program is kept there, however fast it compiles (the tests' eager operations compile
thousands of one-operation programs); ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` overrides
that threshold.

Hypothesis profiles, chosen with the environment variable ``HYPOTHESIS_PROFILE``:

- ``deterministic`` (the default; every push and pull request in CI): examples are derived from
  each test's source (``derandomize=True``), so a run is repeatable and a failure reproduces
  exactly on any machine; no example database is read or written.
- ``random``: fresh random examples on every run (CI runs it nightly), to find what the fixed
  examples miss. A failure prints the ``@reproduce_failure`` blob and the seed to rerun it.

The tests' own ``@settings`` (example counts, deadlines) apply under both profiles.
"""

import os

import jax
from hypothesis import settings

from lowrank_learning.core._kernels import use_jax_cache

jax.config.update("jax_enable_x64", True)
use_jax_cache()

PROFILE_ENV = "HYPOTHESIS_PROFILE"
settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
settings.register_profile("random", derandomize=False, print_blob=True)

_profile = os.environ.get(PROFILE_ENV, "deterministic")
if _profile not in ("deterministic", "random"):
    raise ValueError(f"{PROFILE_ENV} must be 'deterministic' or 'random', got {_profile!r}")
settings.load_profile(_profile)
