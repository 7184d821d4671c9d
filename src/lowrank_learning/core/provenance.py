"""Provenance: the software and hardware a result was computed with.

:func:`provenance` describes the running process (Python, operating system, CPU, the JAX
accelerator and the versions of the packages that compute the results). Every chapter's
results file (:func:`~lowrank_learning.save_results`) and every reproduction stamp record it,
and the book shows it.

:func:`numeric_environment` is the part of it that can change the numbers a computation
produces (the versions of JAX, jaxlib, NumPy, SciPy and Numba, the operating system, the
processor architecture and the accelerator); it is part of every result-cache key
(:mod:`lowrank_learning.core.cache`), so an entry computed under another JAX, say, is never
reused.

Nothing here identifies a person or a machine: no host name, user name or path is recorded.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from importlib import metadata

import jax

__all__ = ["NUMERIC_PACKAGES", "PACKAGES", "accelerator", "cpu", "lowrank_version", "numeric_environment",
           "package_version", "package_versions", "provenance"]

# The distributions whose versions a result records, by their names on PyPI.
PACKAGES = ("lowrank-learning", "jax", "jaxlib", "numpy", "scipy", "numba", "optax", "scikit-learn")
# Those whose version can change the numbers of a computation (part of the cache key).
NUMERIC_PACKAGES = ("jax", "jaxlib", "numpy", "scipy", "numba")


@functools.cache
def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def package_version(name: str) -> str | None:
    """The installed version of the distribution ``name`` (e.g. ``"jax"``), None if it is not
    installed. Read once per process with :mod:`importlib.metadata`."""
    return _installed_version(name)


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    """``{name: version or None}`` for the distributions ``names`` (default :data:`PACKAGES`)."""
    return {name: package_version(name) for name in names}


def lowrank_version() -> str:
    """The installed version of ``lowrank-learning`` (``"0+unknown"`` in a source tree that is
    not installed)."""
    return package_version("lowrank-learning") or "0+unknown"


@functools.lru_cache(maxsize=1)
def _cpu_model() -> str:
    """The processor's model name: ``/proc/cpuinfo`` on Linux, ``sysctl`` on macOS, else
    :func:`platform.processor`, else the architecture."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                 text=True, timeout=5, check=True).stdout.strip()
            if out:
                return out
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


def cpu() -> dict:
    """``{"model": str, "cores": int or None, "usable_cores": int or None}``: the processor's
    model, its logical cores, and those this process may run on (its CPU affinity)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        usable = os.cpu_count()
    return {"model": _cpu_model(), "cores": os.cpu_count(), "usable_cores": usable}


def accelerator() -> dict:
    """The devices JAX computes on: ``{"platform": "cpu" | "gpu" | "tpu" | ..., "kind": str,
    "count": int}`` (``kind`` is the device kind, e.g. ``"NVIDIA H200"``; several kinds are
    joined with ``", "``).

    This starts JAX's default backend if it has not started yet (on a GPU, JAX then reserves
    its share of the GPU memory in this process). A backend that fails to start raises
    ``RuntimeError``.
    """
    devices = jax.devices()
    kinds = sorted({str(d.device_kind) for d in devices})
    return {"platform": str(devices[0].platform), "kind": ", ".join(kinds), "count": len(devices)}


def numeric_environment(accelerator_kind: bool = True) -> dict:
    """What, besides the model code and the arguments, can change a computation's numbers.

    ``{"jax": ..., "jaxlib": ..., "numpy": ..., "scipy": ..., "numba": ..., "system": "Linux",
    "machine": "x86_64", "accelerator": "cpu/cpu"}``: the versions of :data:`NUMERIC_PACKAGES`
    (None when not installed), the operating system, the processor architecture and JAX's
    platform and device kind. With ``accelerator_kind=False`` the accelerator is left out
    (and JAX's backend is not started).
    """
    env: dict = package_versions(NUMERIC_PACKAGES)
    env["system"] = platform.system()
    env["machine"] = platform.machine()
    if accelerator_kind:
        acc = accelerator()
        env["accelerator"] = f"{acc['platform']}/{acc['kind']}"
    return env


def provenance(accelerator_kind: bool = True) -> dict:
    """The environment of this process, as a JSON-able dict.

    Keys: ``python`` (version and implementation), ``platform`` (``system``, ``release``,
    ``machine``), ``cpu`` (:func:`cpu`), ``accelerator`` (:func:`accelerator`; ``None`` with
    ``accelerator_kind=False``, ``{"platform": None, "error": ...}`` when JAX cannot start a
    backend) and ``packages`` (:func:`package_versions` of :data:`PACKAGES`).

    Examples
    --------
    >>> from lowrank_learning.core.provenance import provenance
    >>> provenance()["packages"]["jax"]  # doctest: +SKIP
    '0.4.35'
    """
    acc = None
    if accelerator_kind:
        try:
            acc = accelerator()
        except RuntimeError as exc:
            acc = {"platform": None, "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
    return {
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation()},
        "platform": {"system": platform.system(), "release": platform.release(), "machine": platform.machine()},
        "cpu": cpu(),
        "accelerator": acc,
        "packages": package_versions(PACKAGES),
    }
