"""Run the companion's notebooks with papermill and build the book.

The registry of notebooks is ``notebooks/profiles.yml`` (book order)::

    e1_framework:
      title: "E1 Framework: parameter space = overlap space"
      quick: {N: 200, epochs: 300}
      paper: {N: 500, epochs: 2000}

Each ``notebooks/<name>.ipynb`` has one cell tagged ``parameters`` holding the quick defaults;
a profile holds overrides. :func:`reproduce` executes the selected notebooks into
``book/results/<name>.ipynb`` (one child process per notebook, ``jobs`` at a time) and skips a
notebook whose file, resolved parameters and package :func:`~lowrank_learning.cache.package_hash`
match its last successful run (``book/results/<name>.stamp.json``). All input is validated
before anything runs. :func:`build_book` builds the jupyter-book site from the executed copies.

Execution conventions: kernel ``python3`` running this interpreter; working directory
``notebooks/``; matplotlib's headless inline backend (``MPLBACKEND``, so figures are embedded);
``LOWRANK_LEARNING_CACHE=<root>/.lowrank_cache`` unless set.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "ReproduceError", "Layout", "Job", "Outcome", "find_root", "load_profiles", "plan",
    "reproduce", "build_book", "ensure_mathjax", "MATHJAX_VERSION",
]

PROFILES_FILE = Path("notebooks") / "profiles.yml"
RESULTS_DIR = Path("book") / "results"
STATIC_DIR = Path("book") / "_static"
MATHJAX_VERSION = "3.2.2"
# What tex-chtml.js needs at run time: the component itself, its fonts, the TeX extensions it
# autoloads (\boldsymbol, \color, ...), and the assistive-MathML piece its menu can load.
MATHJAX_FILES = ("tex-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions",
                 "a11y/assistive-mml.js")
_STAMP_VERSION = 1


class ReproduceError(Exception):
    """Invalid input (profile, notebook, parameter) or a missing prerequisite; nothing has run."""


# --------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class Layout:
    """Where things live, relative to the repository root."""

    root: Path

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def profiles(self) -> Path:
        return self.root / PROFILES_FILE

    @property
    def results(self) -> Path:
        return self.root / RESULTS_DIR

    @property
    def static(self) -> Path:
        return self.root / STATIC_DIR

    @property
    def cache(self) -> Path:
        return self.root / ".lowrank_cache"


def find_root(start=None) -> Path:
    """The repository root: the first of ``start`` (default: cwd) and its parents holding
    ``notebooks/profiles.yml`` or ``_toc.yml``."""
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / PROFILES_FILE).is_file() or (d / "_toc.yml").is_file():
            return d
    raise ReproduceError(
        f"cannot find the repository root (a folder with {PROFILES_FILE} or _toc.yml) "
        f"from {here}; run from inside the lowrank-learning checkout or pass --root"
    )


# --------------------------------------------------------------------------- profiles
def load_profiles(path: Path) -> dict[str, dict]:
    """Read the registry: ``{name: {"title": str, "profiles": {profile: {param: value}}}}``."""
    import yaml

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
        profiles = {}
        for key, value in entry.items():
            if key == "title":
                continue
            value = {} if value is None else value
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise ReproduceError(f"{path}: {name}.{key} must map parameter names to values")
            profiles[key] = value
        out[name] = {"title": str(title), "profiles": profiles}
    if not out:
        raise ReproduceError(f"{path} lists no notebooks")
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
    import nbformat
    from papermill.translators import PythonTranslator

    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as exc:
        raise ReproduceError(f"cannot read notebook {path}: {exc}") from exc
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ReproduceError(f"{path} must have exactly one cell tagged 'parameters' (found {len(tagged)})")
    # What papermill.inspect_notebook does for a python3 kernel, without needing kernel metadata.
    params = {}
    for info in PythonTranslator.inspect(nb.cells[tagged[0]]):
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


@dataclass
class Outcome:
    name: str
    status: str  # "ok", "skipped", "failed", "interrupted"
    wall_s: float = 0.0
    message: str = ""


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _jsonable(params: dict) -> dict:
    return json.loads(json.dumps(params, sort_keys=True, default=repr))


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def plan(layout: Layout, profile: str = "paper", only=None, sets=(), force: bool = False) -> list[Job]:
    """Validate everything and resolve each selected notebook's parameters; runs nothing.

    Raises :class:`ReproduceError` naming the valid choices for an unknown profile, notebook or
    parameter, or a value of the wrong type.
    """
    from .cache import package_hash

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

    src_hash = package_hash()
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
        stamp = {
            "version": _STAMP_VERSION,
            "notebook_sha256": _sha256_file(source),
            "parameters": resolved,
            "source_hash": src_hash,
        }
        output = layout.results / f"{name}.ipynb"
        stamp_path = layout.results / f"{name}.stamp.json"
        old = _read_json(stamp_path)
        fresh = (not force and output.is_file() and isinstance(old, dict)
                 and all(old.get(k) == v for k, v in stamp.items()))
        jobs.append(Job(name, registry[name]["title"], source, output, stamp_path, cell, resolved,
                        stamp | {"profile": profile}, fresh))
    return jobs


# --------------------------------------------------------------------------- kernel
def _kernel_env(layout: Layout, tmpdir: Path) -> dict:
    """Environment for the child processes: a ``python3`` kernel running this interpreter."""
    env = dict(os.environ)
    env.setdefault("LOWRANK_LEARNING_CACHE", str(layout.cache))
    # Headless, Agg-rendered, and figures embedded in the executed notebook. Plain "Agg" would
    # override ipykernel's inline backend and plt.show() would drop every figure.
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    import importlib.util

    if importlib.util.find_spec("ipykernel") is None or importlib.util.find_spec("papermill") is None:
        raise ReproduceError("papermill and ipykernel are needed: pip install 'lowrank-learning[book]'")
    if not _python3_kernel_is_ours():
        # Shadow whatever "python3" kernelspec is installed with one that runs this interpreter.
        spec_dir = tmpdir / "kernels" / "python3"
        spec_dir.mkdir(parents=True)
        (spec_dir / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (lowrank-learning)", "language": "python",
        }))
        env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(tmpdir), env.get("JUPYTER_PATH")]))
    return env


def _python3_kernel_is_ours() -> bool:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix"], check=True,
                       stdout=subprocess.DEVNULL)
        try:
            spec = KernelSpecManager().get_kernel_spec("python3")
        except NoSuchKernel:
            return False
    argv0 = spec.argv[0] if spec.argv else ""
    # jupyter_client replaces a bare "python"/"python3"/"python3.X" with the launching interpreter.
    bare = {"python", f"python{sys.version_info[0]}", "python%d.%d" % sys.version_info[:2]}
    return argv0 in bare or os.path.abspath(argv0) == os.path.abspath(sys.executable)


# --------------------------------------------------------------------------- execution
def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        _chmod_default(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _chmod_default(path) -> None:
    """Give a mkstemp file (mode 0600) the mode a normally created file would have."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def _source_cell_index(executed_path, index: int) -> int:
    """Index in the source notebook of cell ``index`` of the executed one (papermill inserts
    an ``injected-parameters`` cell after the parameters cell)."""
    import nbformat

    try:
        cells = nbformat.read(str(executed_path), as_version=4).cells[:index]
    except Exception:
        return index
    return index - sum("injected-parameters" in c.get("metadata", {}).get("tags", []) for c in cells)


def _unlink(*paths) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


def _tmp_glob(results: Path, name: str):
    return results.glob(f".{name}.*.tmp.ipynb")


def execute_job(job: dict, cwd: str) -> dict:
    """Execute one notebook (in this process); returns an :class:`Outcome` as a dict.

    The notebook is written to a temporary file next to the output and renamed into place only
    on success, after which the stamp is written. On failure the old output and stamp are
    removed and the partial notebook is kept as ``<name>.failed.ipynb``; on interrupt the
    temporary file is removed and a previous successful result is left as it was.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    name = job["name"]
    output, stamp_path = Path(job["output"]), Path(job["stamp_path"])
    failed = output.with_name(f"{name}.failed.ipynb")
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{name}.", suffix=".tmp.ipynb")
    os.close(fd)
    t0 = time.perf_counter()
    try:
        papermill.execute_notebook(
            job["source"], tmp, parameters=job["parameters"], kernel_name="python3", language="python",
            cwd=cwd, progress_bar=False, log_output=False,
        )
    except PapermillExecutionError as exc:
        wall = time.perf_counter() - t0
        _unlink(output, stamp_path)
        _chmod_default(tmp)
        os.replace(tmp, failed)
        idx = _source_cell_index(tmp, exc.cell_index)
        first = next((ln for ln in str(exc.source).splitlines() if ln.strip()), "").strip()
        msg = (f"cell {idx} of {Path(job['source']).name} (0-based, In [{exc.exec_count}], starting {first[:80]!r}) "
               f"raised {exc.ename}: {str(exc.evalue)[:500]}; partial output in {failed}")
        return asdict(Outcome(name, "failed", wall, msg))
    except KeyboardInterrupt:
        _unlink(tmp)
        return asdict(Outcome(name, "interrupted", time.perf_counter() - t0, "interrupted"))
    except BaseException as exc:  # kernel died, bad notebook, ...
        _unlink(tmp, output, stamp_path)
        return asdict(Outcome(name, "failed", time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"))
    wall = time.perf_counter() - t0
    _chmod_default(tmp)
    os.replace(tmp, output)
    stamp = dict(job["stamp"], wall_s=round(wall, 3), finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    _atomic_write_text(stamp_path, json.dumps(stamp, indent=1, sort_keys=True) + "\n")
    _unlink(failed)
    return asdict(Outcome(name, "ok", wall))


def _job_dict(job: Job) -> dict:
    return {"name": job.name, "source": str(job.source), "output": str(job.output),
            "stamp_path": str(job.stamp_path), "parameters_cell": job.parameters_cell,
            "parameters": job.parameters, "stamp": job.stamp}


def _worker_main(argv) -> int:
    """``python -m lowrank_learning.reproduce JOB.json RESULT.json CWD`` (internal)."""
    job_file, result_file, cwd = argv

    def interrupt(signum, frame):  # interrupt once; ignore repeats so the cleanup can finish
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    job = json.loads(Path(job_file).read_text(encoding="utf-8"))
    outcome = execute_job(job, cwd)
    Path(result_file).write_text(json.dumps(outcome), encoding="utf-8")
    return 130 if outcome["status"] == "interrupted" else 0


class _Children:
    """The child processes started by this run, so an interrupt can stop exactly those."""

    def __init__(self):
        self.procs: set[subprocess.Popen] = set()
        self.lock = threading.Lock()
        self.stopping = False

    def stop(self, grace: float = 15.0) -> None:
        with self.lock:
            self.stopping = True
            procs = list(self.procs)
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _run_child(job: Job, cwd: Path, env: dict, tmpdir: Path, children: _Children) -> Outcome:
    job_file = tmpdir / f"{job.name}.job.json"
    result_file = tmpdir / f"{job.name}.result.json"
    job_file.write_text(json.dumps(_job_dict(job)), encoding="utf-8")
    t0 = time.perf_counter()
    with children.lock:
        if children.stopping:
            return Outcome(job.name, "interrupted", 0.0, "not started")
        proc = subprocess.Popen(
            [sys.executable, "-m", "lowrank_learning.reproduce", str(job_file), str(result_file), str(cwd)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        children.procs.add(proc)
    try:
        log, _ = proc.communicate()
    finally:
        with children.lock:
            children.procs.discard(proc)
    result = _read_json(result_file)
    if isinstance(result, dict):
        return Outcome(**result)
    for stale in _tmp_glob(job.output.parent, job.name):
        _unlink(stale)
    if children.stopping:
        return Outcome(job.name, "interrupted", time.perf_counter() - t0, "interrupted")
    _unlink(job.output, job.stamp_path)
    tail = log.decode(errors="replace").strip().splitlines()[-15:]
    return Outcome(job.name, "failed", time.perf_counter() - t0,
                   f"worker exited with code {proc.returncode}:\n    " + "\n    ".join(tail))


def _print_summary(jobs: list[Job], outcomes: dict[str, Outcome], out) -> None:
    width = max(len(j.name) for j in jobs)
    print("\nSummary (wall time per notebook):", file=out)
    for j in jobs:
        o = outcomes.get(j.name) or Outcome(j.name, "interrupted", 0.0, "not run")
        if o.status == "skipped":
            timing = "unchanged, skipped"
        else:
            timing = f"{o.wall_s:8.1f} s"
        print(f"  {j.name:<{width}}  {o.status:<11} {timing}", file=out)
    failed = [outcomes[j.name] for j in jobs if j.name in outcomes and outcomes[j.name].status == "failed"]
    for o in failed:
        print(f"\nFAILED {o.name}: {o.message}", file=out)


def reproduce(root=None, profile: str = "paper", only=None, jobs: int | None = None, sets=(),
              force: bool = False, progress: bool = True, out=None) -> int:
    """Execute the registry's notebooks; returns an exit code (0 ok, 1 failures, 2 bad input, 130 interrupted).

    Parameters
    ----------
    root : path, optional
        Repository root (default: found from the working directory).
    profile : str
        A profile of ``notebooks/profiles.yml`` (``"paper"`` or ``"quick"``).
    only : list of str, optional
        Notebook names to run (default: all, in book order).
    jobs : int, optional
        Notebooks executed at once (default ``min(2, cpu count)``).
    sets : list of str
        ``NAME=VALUE`` (every selected notebook) or ``NOTEBOOK.NAME=VALUE`` overrides, applied
        after the profile; values are Python literals, else strings.
    force : bool
        Rerun notebooks that are up to date.
    """
    out = out or sys.stdout
    try:
        layout = Layout(Path(root).resolve() if root is not None else find_root())
        if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
            raise ReproduceError(f"--jobs must be an integer >= 1, got {jobs!r}")
        planned = plan(layout, profile, only, sets, force)
    except ReproduceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    jobs = jobs or max(1, min(2, os.cpu_count() or 1))
    outcomes = {j.name: Outcome(j.name, "skipped") for j in planned if j.up_to_date}
    todo = [j for j in planned if not j.up_to_date]
    print(f"profile {profile!r}: {len(todo)} to run, {len(outcomes)} up to date "
          f"(results in {layout.results})", file=out)
    if not todo:
        _print_summary(planned, outcomes, out)
        return 0

    from tqdm.auto import tqdm

    layout.results.mkdir(parents=True, exist_ok=True)
    for j in todo:
        for stale in _tmp_glob(layout.results, j.name):
            _unlink(stale)
    children = _Children()
    interrupted = False
    with tempfile.TemporaryDirectory(prefix="lowrank-reproduce-") as tmp:
        tmpdir = Path(tmp)
        try:
            env = _kernel_env(layout, tmpdir)
        except ReproduceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        bar = tqdm(total=len(todo), desc="notebooks", unit="nb", disable=not progress, file=out)
        pool = ThreadPoolExecutor(max_workers=min(jobs, len(todo)))
        futures: dict = {}
        try:
            futures = {pool.submit(_run_child, j, layout.notebooks, env, tmpdir, children): j for j in todo}
            for fut in as_completed(futures):
                o = fut.result()
                outcomes[o.name] = o
                bar.update(1)
                bar.write(f"{o.name}: {o.status} ({o.wall_s:.1f} s)" if o.status != "failed"
                          else f"{o.name}: FAILED ({o.wall_s:.1f} s)", file=out)
        except KeyboardInterrupt:
            interrupted = True
            print("\ninterrupted: stopping running notebooks ...", file=sys.stderr)
            children.stop()
            for f in futures:
                f.cancel()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
        if interrupted:
            for f, j in futures.items():
                if f.done() and not f.cancelled():
                    outcomes[j.name] = f.result()
            for j in todo:
                for stale in _tmp_glob(layout.results, j.name):
                    _unlink(stale)
    _print_summary(planned, outcomes, out)
    if interrupted or any(o.status == "interrupted" for o in outcomes.values()):
        return 130
    return 1 if any(o.status == "failed" for o in outcomes.values()) else 0


# --------------------------------------------------------------------------- book
def _toc_files(toc) -> list[str]:
    files = []
    if isinstance(toc, dict):
        for key, value in toc.items():
            if key in ("root", "file") and isinstance(value, str):
                files.append(value)
            else:
                files.extend(_toc_files(value))
    elif isinstance(toc, list):
        for item in toc:
            files.extend(_toc_files(item))
    return files


def _missing_toc_files(root: Path) -> tuple[list[str], list[str]]:
    """(missing executed notebooks, other missing pages) of ``_toc.yml``."""
    import yaml

    toc_path = root / "_toc.yml"
    if not toc_path.is_file():
        raise ReproduceError(f"{toc_path} not found")
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
    results, other = [], []
    for f in _toc_files(toc):
        p = root / f
        exists = p.is_file() if p.suffix else any(p.with_suffix(s).is_file() for s in (".md", ".ipynb", ".rst"))
        if not exists:
            (results if Path(f).as_posix().startswith(RESULTS_DIR.as_posix() + "/") else other).append(f)
    return results, other


def ensure_mathjax(static_dir: Path) -> Path:
    """``static_dir/mathjax`` with MathJax's ``tex-chtml`` component, fetched with npm if missing."""
    dest = Path(static_dir) / "mathjax"
    if (dest / "tex-chtml.js").is_file():
        return dest
    npm = shutil.which("npm")
    if npm is None:
        raise ReproduceError(
            f"MathJax is missing from {dest} and npm is not installed to fetch it; install Node.js/npm "
            f"(e.g. apt-get install npm) or copy the es5/ files of the npm package mathjax@{MATHJAX_VERSION} there"
        )
    with tempfile.TemporaryDirectory(prefix="mathjax-") as tmp:
        r = subprocess.run([npm, "pack", f"mathjax@{MATHJAX_VERSION}", "--silent"], cwd=tmp,
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise ReproduceError(f"npm pack mathjax@{MATHJAX_VERSION} failed:\n{r.stderr.strip()}")
        import tarfile

        tgz = next(Path(tmp).glob("mathjax-*.tgz"))
        with tarfile.open(tgz) as tf:
            try:
                tf.extractall(tmp, filter="data")
            except TypeError:  # Python without extraction filters
                tf.extractall(tmp)
        es5 = Path(tmp) / "package" / "es5"
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".mathjax-"))
        try:
            for rel in MATHJAX_FILES:
                src, dst = es5 / rel, staging / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
            shutil.copy2(Path(tmp) / "package" / "LICENSE", staging / "LICENSE")
            (staging / "VERSION").write_text(
                f"mathjax {MATHJAX_VERSION} (npm), es5 subset: {', '.join(MATHJAX_FILES)}\n")
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(staging, 0o777 & ~mask)  # mkdtemp creates 0700
            shutil.rmtree(dest, ignore_errors=True)
            os.replace(staging, dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return dest


def build_book(root=None, builddir="_build", out=None) -> int:
    """Build the site with jupyter-book (warnings are errors); returns an exit code.

    The HTML goes to ``<builddir>/html`` (``builddir`` relative to the root). Fails, before
    building, when an executed notebook listed in ``_toc.yml`` is missing.
    """
    out = out or sys.stdout
    try:
        root = Path(root).resolve() if root is not None else find_root()
        missing_results, missing_pages = _missing_toc_files(root)
        if missing_results:
            raise ReproduceError(
                "executed notebooks listed in _toc.yml are missing: "
                + ", ".join(f"{f}.ipynb" for f in missing_results)
                + "\nrun `lowrank-learning reproduce` first (or `lowrank-learning reproduce --profile quick`)"
            )
        if missing_pages:
            raise ReproduceError("pages listed in _toc.yml are missing: " + ", ".join(missing_pages))
        ensure_mathjax(Layout(root).static)
    except ReproduceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from jupyter_book.sphinx import build_sphinx

    build = (root / builddir).resolve()
    outdir = build / "html"
    # Always from scratch: an incremental Sphinx build does not repeat the warnings of unchanged
    # pages (so -W would pass), and viewcode keeps stale _modules pages.
    for stale in (outdir, build / ".doctrees", build / "jupyter_execute"):
        shutil.rmtree(stale, ignore_errors=True)
    result = build_sphinx(
        root, outdir, use_external_toc=True, noconfig=True, path_config=str(root / "_config.yml"),
        confoverrides={"external_toc_path": (root / "_toc.yml").as_posix(), "latex_individualpages": False},
        builder="html", warningiserror=True, keep_going=True, freshenv=True,
    )
    if result != 0:
        print(f"error: the book build failed ({result}); warnings count as errors", file=sys.stderr)
        return 1
    print(f"book built: {outdir / 'index.html'}", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
