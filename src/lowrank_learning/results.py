"""Machine-readable headline numbers of each chapter: ``book/results/<notebook>.json``.

Every notebook ends with :func:`save_results`, which writes its headline numbers (name -> number
or list of numbers) together with the profile and the parameters that produced them, and the
provenance of the process that computed them (:func:`~lowrank_learning.core.provenance.provenance`:
inside a notebook, its kernel). The intro page's results table, the reproducibility chapter's
provenance table, CI and anyone else read these files instead of parsing notebooks.

Where the file goes: ``$LOWRANK_RESULTS_DIR`` when set (``lowrank-learning reproduce`` points it
at a staging folder and moves the file into ``book/results/`` together with the executed
notebook), else ``book/results/interactive/`` under the repository root found from the working
directory: a notebook run by hand never changes the numbers the book shows beside its pages.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .analysis.verdicts import Verdict, verdict_table
from .core._atomic import atomic_open
from .core.errors import InvalidParameterError
from .core.provenance import provenance

RESULTS_DIR_ENV = "LOWRANK_RESULTS_DIR"
PROFILE_ENV = "LOWRANK_PROFILE"
MAX_HEADLINE = 4  # numbers per chapter in the book's results-at-a-glance table


def _plain(value, where: str):
    """numpy scalars/arrays -> Python numbers/lists; NaN/inf -> None (JSON has neither)."""
    if isinstance(value, (str, bool)) or value is None:
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)) or hasattr(value, "__array__"):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(np.asarray(value).tolist())]
    raise InvalidParameterError(
        f"save_results: {where} must be a number, string, list or dict, got {type(value).__name__}"
    )


def _with_figure(verdicts: Mapping, figure: str | None) -> dict:
    if figure is None:
        return dict(verdicts)
    if not isinstance(figure, str):
        raise InvalidParameterError(f"save_results: figure must be a string, got {type(figure).__name__}")
    return {k: v.with_figure(figure) if isinstance(v, Verdict) and not v.figure else v for k, v in verdicts.items()}


def results_dir() -> Path:
    """Folder the results files go to (see the module docstring)."""
    env = os.environ.get(RESULTS_DIR_ENV)
    if env:
        return Path(env)
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / "notebooks" / "profiles.yml").is_file():
            return d / "book" / "results" / "interactive"
    return here / "book" / "results" / "interactive"


def save_results(notebook: str, results: dict, parameters: dict | None = None,
                 headline: Sequence[str] | None = None, verdicts: Mapping | None = None,
                 figure: str | None = None) -> Path:
    """Write a chapter's headline numbers to ``<results_dir>/<notebook>.json`` atomically.

    Parameters
    ----------
    notebook : str
        The notebook's name, e.g. ``"e8_twins"`` (the stem of ``notebooks/<name>.ipynb``).
    results : dict
        Name -> number, string or (nested) list of numbers; numpy values are converted, NaN/inf
        become ``null``.
    parameters : dict, optional
        The notebook's parameters (those of its ``parameters`` cell) that produced the numbers.
    headline : sequence of str, optional
        The keys of ``results`` that the book's results-at-a-glance table shows (at most 4);
        default: the first 4.
    verdicts : mapping, optional
        Claim id -> :class:`~lowrank_learning.analysis.verdicts.Verdict` (the chapter's tested
        claims, saved under ``verdicts`` with the statistic, interval, test and p-value).
    figure : str, optional
        The paper figure the chapter reproduces (e.g. ``"Fig. 2"``, or ``"beyond the paper"``),
        given to every verdict that names none (:meth:`Verdict.with_figure`).

    Returns
    -------
    Path of the written file. The JSON object has the keys ``notebook``, ``profile`` (from
    ``$LOWRANK_PROFILE``, ``"interactive"`` outside ``lowrank-learning reproduce``),
    ``parameters``, ``results``, ``headline``, ``verdicts`` (claim id -> verdict dict, empty
    without verdicts) and ``provenance`` (Python, platform, CPU,
    accelerator and package versions of the calling process).
    """
    if not isinstance(notebook, str) or not notebook or "/" in notebook or notebook.startswith("."):
        raise InvalidParameterError(f"save_results: notebook must be a plain name, got {notebook!r}")
    if not isinstance(results, dict) or not results:
        raise InvalidParameterError("save_results: results must be a non-empty dict of name -> number")
    if headline is None:
        headline = list(results)[:MAX_HEADLINE]
    if isinstance(headline, str) or not all(isinstance(k, str) for k in headline):
        raise InvalidParameterError(f"save_results: headline must be a list of result names, got {headline!r}")
    headline = list(headline)
    unknown = [k for k in headline if k not in results]
    if unknown or not headline or len(headline) > MAX_HEADLINE:
        raise InvalidParameterError(f"save_results: headline must name 1 to {MAX_HEADLINE} of the results "
                                    f"({list(results)}), got {headline!r}")
    doc = {
        "notebook": notebook,
        "profile": os.environ.get(PROFILE_ENV, "interactive"),
        "parameters": _plain(dict(parameters or {}), "parameters"),
        "results": _plain(results, "results"),
        "headline": headline,
        "verdicts": _plain(verdict_table(_with_figure(verdicts or {}, figure)), "verdicts"),  # inf/NaN -> null
        "provenance": provenance(),
    }
    out = results_dir() / f"{notebook}.json"
    with atomic_open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, allow_nan=False)  # keys in the chapter's order
        f.write("\n")
    return out


def load_results(notebook: str, directory=None) -> dict:
    """Read ``<directory>/<notebook>.json`` (default :func:`results_dir`) as written by :func:`save_results`."""
    path = Path(directory or results_dir()) / f"{notebook}.json"
    with open(path, encoding="utf-8") as f:
        return json.load(f)
