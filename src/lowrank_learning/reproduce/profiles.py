"""The notebook registry ``notebooks/profiles.yml``, notebook parameters and the run plan.

The registry lists the notebooks in book order::

    e1_framework:
      title: "E1 Framework: parameter space = overlap space"
      quick: {N: 200, epochs: 300}
      paper: {N: 500, epochs: 2000}

Each ``notebooks/<name>.ipynb`` has one cell tagged ``parameters`` holding the quick defaults;
a profile holds overrides, ``--set`` overrides on top. :func:`plan` validates all of it and
resolves each notebook's parameters before anything runs.
"""

from __future__ import annotations

import ast
import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..core import cache
from .layout import PROFILES_FILE, Layout, ReproduceError, optional
from .stamps import is_up_to_date, make_stamp


def _estimates(path: Path, name: str, entry: dict, key: str, least: float) -> dict[str, float]:
    value = entry.get(key) or {}
    if not isinstance(value, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= least for v in value.values()):
        raise ReproduceError(f"{path}: {name}.{key} must map profile names to numbers >= {least:g}, got {value!r}")
    return {str(k): float(v) for k, v in value.items()}


def load_profiles(path: Path) -> dict[str, dict]:
    """Read the registry: ``{name: {"title": str, "minutes": {profile: float}, "cores": {profile:
    float}, "after": (name, ...), "profiles": {profile: {param: value}}}}``. ``minutes`` (optional)
    is the approximate wall time per profile, used only to start the longest notebooks first, and
    ``cores`` (optional, default 1) the number of cores a run keeps busy, used only to decide what
    runs beside it; both are estimates for when no earlier run of that profile has been timed.
    ``after`` (optional) lists notebooks whose results this one reuses from the result cache: when
    both run, it starts once they have finished."""

    yaml = optional("yaml")
    path = Path(path)
    if not path.is_file():
        raise ReproduceError(f"notebook registry {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ReproduceError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ReproduceError(f"{path} must map notebook names to entries")
    out = {}
    for name, entry in data.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ReproduceError(f"{path}: notebook name {name!r} must be an identifier (e.g. e1_framework)")
        if not isinstance(entry, dict):
            raise ReproduceError(f"{path}: entry {name!r} must be a mapping with a title and profiles")
        title = entry.get("title", name)
        minutes = _estimates(path, name, entry, "minutes", 0)
        cores = _estimates(path, name, entry, "cores", 1)
        after = entry.get("after", [])
        if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
            raise ReproduceError(f"{path}: {name}.after must be a list of notebook names, got {after!r}")
        profiles = {}
        for key, value in entry.items():
            if key in ("title", "minutes", "cores", "after"):
                continue
            value = {} if value is None else value
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise ReproduceError(f"{path}: {name}.{key} must map parameter names to values")
            profiles[key] = value
        out[name] = {"title": str(title), "minutes": minutes, "cores": cores, "after": tuple(after),
                     "profiles": profiles}
    if not out:
        raise ReproduceError(f"{path} lists no notebooks")
    for name, entry in out.items():
        unknown = [a for a in entry["after"] if a not in out or a == name]
        if unknown:
            raise ReproduceError(f"{path}: {name}.after names {', '.join(map(repr, unknown))}, which "
                                 f"{'is' if len(unknown) == 1 else 'are'} not another notebook of the registry")
    return out


def available_profiles(registry: dict) -> list[str]:
    """Profiles defined for every notebook, in first-seen order."""
    names: list[str] = []
    for entry in registry.values():
        for p in entry["profiles"]:
            if p not in names:
                names.append(p)
    return [p for p in names if all(p in e["profiles"] for e in registry.values())]


# --------------------------------------------------------------------------- parameters
_TYPE_NAMES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "tuple": tuple,
               "dict": dict, "complex": complex}


@dataclass(frozen=True)
class Parameter:
    name: str
    type: type | None  # None: unknown/any
    default: str  # source text


def notebook_parameters(path: Path) -> tuple[int, dict[str, Parameter]]:
    """Index of the cell tagged ``parameters`` and its parameters (name -> :class:`Parameter`)."""

    nbformat = optional("nbformat")
    translators = optional("papermill.translators")
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as exc:
        raise ReproduceError(f"cannot read notebook {path}: {exc}") from exc
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ReproduceError(f"{path} must have exactly one cell tagged 'parameters' (found {len(tagged)})")
    # What papermill.inspect_notebook does for a python3 kernel, without needing kernel metadata.
    params = {}
    for info in translators.PythonTranslator.inspect(nb.cells[tagged[0]]):
        ptype = _TYPE_NAMES.get(info.inferred_type_name)
        if ptype is None:
            try:
                value = ast.literal_eval(info.default)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                value = ...  # not a literal: type unknown
            ptype = None if value is None or value is ... else type(value)
        params[info.name] = Parameter(info.name, ptype, info.default)
    return tagged[0], params


def _coerce(value, param: Parameter, where: str, raw: str | None = None):
    """``value`` checked against ``param``'s type (int -> float, list <-> tuple)."""
    t = param.type
    if t is None:
        return value
    if t is str and raw is not None and not isinstance(value, str):
        return raw  # --set label=3 for a str parameter means the string "3"
    if isinstance(value, t) and not (t is int and isinstance(value, bool)):
        return value
    if t is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if t is complex and isinstance(value, (int, float)) and not isinstance(value, bool):
        return complex(value)
    if t in (list, tuple) and isinstance(value, (list, tuple)):
        return t(value)
    hint = ""
    if t is float and isinstance(value, str):
        with contextlib.suppress(ValueError):
            float(value)
            hint = " (YAML reads numbers like 1e-3 as strings: write 1.0e-3)"
    raise ReproduceError(
        f"{where}: parameter {param.name!r} expects {t.__name__} (default {param.default}), "
        f"got {type(value).__name__} {value!r}{hint}"
    )


def parse_assignment(text: str) -> tuple[str | None, str, object, str]:
    """``"[NOTEBOOK.]NAME=VALUE"`` -> (notebook or None, name, value, raw value text)."""
    if "=" not in text:
        raise ReproduceError(f"--set {text!r}: expected NAME=VALUE or NOTEBOOK.NAME=VALUE")
    target, raw = text.split("=", 1)
    target, raw = target.strip(), raw.strip()
    notebook, _, name = target.rpartition(".")
    if not name.isidentifier() or (notebook and not notebook.isidentifier()):
        raise ReproduceError(f"--set {text!r}: {target!r} is not NAME or NOTEBOOK.NAME")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = raw
    return notebook or None, name, value, raw


# --------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class Job:
    """One notebook to execute (or skip)."""

    name: str
    title: str
    source: Path
    output: Path
    stamp_path: Path
    parameters_cell: int
    parameters: dict
    stamp: dict
    up_to_date: bool = False
    minutes: float | None = None  # the registry's estimate for this profile (ordering only)
    cores: float | None = None  # the registry's estimate of the cores it keeps busy (scheduling only)
    after: tuple = ()  # notebooks to finish first when they run too (their cached results are reused)

    @property
    def profile(self) -> str:
        return self.stamp["profile"]

    @property
    def failed_copy(self) -> Path:
        """Where a failed run's partial notebook is kept: ``<name>.failed.ipynb`` beside the output."""
        return self.output.with_name(f"{self.name}.failed.ipynb")


def _jsonable(params: dict) -> dict:
    return json.loads(json.dumps(params, sort_keys=True, default=repr))


def plan(layout: Layout, profile: str = "paper", only=None, sets=(), force: bool = False) -> list[Job]:
    """Validate everything and resolve each selected notebook's parameters; runs nothing.

    Raises :class:`ReproduceError` naming the valid choices for an unknown profile, notebook or
    parameter, or a value of the wrong type.
    """

    registry = load_profiles(layout.profiles)
    profiles = available_profiles(registry)
    if profile not in profiles:
        raise ReproduceError(f"unknown profile {profile!r}; valid profiles: {', '.join(profiles)}")
    only = list(only or [])
    unknown = [n for n in only if n not in registry]
    if unknown:
        raise ReproduceError(
            f"unknown notebook{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"valid notebooks (from {PROFILES_FILE}): {', '.join(registry)}"
        )
    selected = [n for n in registry if not only or n in only]
    assignments = [parse_assignment(s) for s in sets]
    for nb, name, _, raw in assignments:
        if nb is not None and nb not in selected:
            raise ReproduceError(
                f"--set {nb}.{name}={raw}: notebook {nb!r} is not selected; selected notebooks: {', '.join(selected)}"
            )

    src_hash = cache.package_hash()
    jobs = []
    for name in selected:
        source = layout.notebooks / f"{name}.ipynb"
        if not source.is_file():
            raise ReproduceError(f"notebook {name!r} is listed in {PROFILES_FILE} but {source} does not exist")
        cell, params = notebook_parameters(source)
        valid = ", ".join(params) or "(none)"
        resolved = {}
        for key, value in registry[name]["profiles"][profile].items():
            if key not in params:
                raise ReproduceError(
                    f"{PROFILES_FILE}: {name}.{profile} sets {key!r}, which is not in the parameters cell "
                    f"of {source.name}; valid parameters: {valid}"
                )
            resolved[key] = _coerce(value, params[key], f"{PROFILES_FILE}: {name}.{profile}")
        for nb, key, value, raw in assignments:
            if nb is not None and nb != name:
                continue
            if key not in params:
                hint = "" if nb else " (use --set NOTEBOOK.NAME=VALUE or --only to target one notebook)"
                raise ReproduceError(
                    f"--set {key}={raw}: {key!r} is not a parameter of notebook {name!r}; "
                    f"valid parameters: {valid}{hint}"
                )
            resolved[key] = _coerce(value, params[key], f"--set {key}={raw} ({name})", raw=raw)
        resolved = _jsonable(resolved)
        stamp = make_stamp(source, resolved, src_hash, profile)
        output = layout.results / f"{name}.ipynb"
        stamp_path = layout.results / f"{name}.stamp.json"
        fresh = not force and is_up_to_date(output, stamp_path, stamp)
        jobs.append(Job(name, registry[name]["title"], source, output, stamp_path, cell, resolved, stamp, fresh,
                        registry[name]["minutes"].get(profile), registry[name]["cores"].get(profile),
                        registry[name]["after"]))
    return jobs
