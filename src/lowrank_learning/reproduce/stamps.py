"""Stamps: ``book/results/<name>.stamp.json`` records what produced an executed notebook.

A stamp holds the notebook file's sha256, the resolved parameters, the package's
:func:`~lowrank_learning.core.cache.package_hash`, the numerical environment (the versions of
JAX, jaxlib, NumPy, SciPy and Numba, the operating system and the processor architecture:
:func:`~lowrank_learning.core.provenance.numeric_environment` without the accelerator) and the
profile. A notebook whose stamp matches its current inputs is up to date and is skipped.

A successful run adds the wall time, the CPU time of the processes that ran the notebook (the
kernel and whatever it started and waited for; ``cpu_s``, from which the scheduler reads how
many cores the notebook keeps busy), the time it finished and the ``provenance`` of the kernel
that executed the notebook (:func:`~lowrank_learning.core.provenance.provenance`, as the
notebook's :func:`~lowrank_learning.save_results` recorded it in the chapter's JSON).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from ..core.provenance import numeric_environment
from .files import atomic_write_text, read_json

STAMP_VERSION = 2
_KEYS = ("version", "notebook_sha256", "parameters", "source_hash", "environment")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def make_stamp(source: Path, parameters: dict, source_hash: str, profile: str) -> dict:
    """The stamp a successful run of ``source`` with ``parameters`` will write.

    Its ``environment`` leaves the accelerator out: finding it would start JAX's backend in
    the process that runs the notebooks (on a GPU, taking memory the kernels need). A run on
    another accelerator with the same software needs ``--force``.
    """
    return {"version": STAMP_VERSION, "notebook_sha256": sha256_file(source), "parameters": parameters,
            "source_hash": source_hash, "environment": numeric_environment(accelerator_kind=False),
            "profile": profile}


def is_up_to_date(output: Path, stamp_path: Path, stamp: dict) -> bool:
    """True when ``output`` exists and its stamp matches ``stamp`` (profile aside)."""
    old = read_json(stamp_path)
    return Path(output).is_file() and isinstance(old, dict) and all(old.get(k) == stamp[k] for k in _KEYS)


def write_stamp(path: Path, stamp: dict, wall_s: float, provenance: dict | None = None,
                cpu_s: float | None = None) -> None:
    """Write ``stamp`` with the run's wall time, its CPU time (``None`` when not measured), the time
    it finished and ``provenance`` (that of the kernel which executed the notebook; ``None`` when it
    was not recorded)."""
    stamp = dict(stamp, wall_s=round(wall_s, 3), cpu_s=None if cpu_s is None else round(cpu_s, 3),
                 finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), provenance=provenance)
    atomic_write_text(Path(path), json.dumps(stamp, indent=1, sort_keys=True) + "\n")


def describe(output: Path, stamp_path: Path) -> str:
    """One line saying which result of a notebook the book shows."""
    if not Path(output).is_file():
        return "no earlier result: the book cannot be built until this notebook runs"
    old = read_json(stamp_path)
    if not isinstance(old, dict):
        return f"the book shows the earlier result {output} (no stamp)"
    params = ", ".join(f"{k}={v}" for k, v in sorted((old.get("parameters") or {}).items())) or "profile defaults"
    return (f"the book shows the last good result {output} (profile {old.get('profile', '?')}, "
            f"{params}; finished {old.get('finished', '?')})")
