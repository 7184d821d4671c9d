"""Execute notebooks with papermill, one child process per notebook, keeping the last good result.

:func:`reproduce` runs the notebooks that :func:`~.profiles.plan` selects, ``jobs`` at a time.
Each child (``python -m lowrank_learning.reproduce``) runs :func:`execute_job`:

- the notebook executes into a temporary file beside ``book/results/<name>.ipynb``; the kernel
  gets ``LOWRANK_RESULTS_DIR`` pointing at a staging folder beside it (where
  :func:`~lowrank_learning.save_results` writes the chapter's JSON) and ``LOWRANK_PROFILE``;
- on success the staged JSON files, the notebook and then the stamp are renamed into
  ``book/results/`` (each rename atomic), and an older ``<name>.failed.ipynb`` is removed; the
  stamp records the provenance of the kernel, taken from the chapter's JSON (written by
  :func:`~lowrank_learning.save_results` inside the kernel), or, for a notebook that saves no
  results, that of this process (the same interpreter and environment; no accelerator);
- on failure (an exception in a cell, a dead kernel) nothing in ``book/results/`` changes
  except that the partial notebook is kept as ``<name>.failed.ipynb``: the last good result, its
  JSON and its stamp stay, and the book keeps showing them;
- on interrupt the temporary files are removed and the last good result stays, as on failure.

Execution conventions: kernel ``python3`` running this interpreter; working directory
``notebooks/``; matplotlib's headless inline backend (``MPLBACKEND``, so figures are embedded);
``LOWRANK_LEARNING_CACHE=<root>/.lowrank_cache`` unless set; JAX's persistent compilation cache
in the numba kernels' folder (:func:`~lowrank_learning.core._kernels.jax_cache_settings`) unless
``JAX_COMPILATION_CACHE_DIR`` is set.
"""

from __future__ import annotations

import contextlib
import resource
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm  # the command line's bar (tqdm.auto would warn in every notebook that imports ll)

from ..core._atomic import move_into_place
from ..core._kernels import jax_cache_settings
from ..core.provenance import provenance
from ..results import PROFILE_ENV, RESULTS_DIR_ENV
from .files import read_json, unlink
from .layout import Layout, ReproduceError, find_root, optional
from .profiles import Job, plan
from .stamps import describe, write_stamp


@dataclass
class Outcome:
    name: str
    status: str  # "ok", "skipped", "failed", "interrupted"
    wall_s: float = 0.0
    message: str = ""


# --------------------------------------------------------------------------- kernel
def _kernel_env(layout: Layout, tmpdir: Path) -> dict:
    """Environment for the child processes: a ``python3`` kernel running this interpreter."""
    env = dict(os.environ)
    env.setdefault("LOWRANK_LEARNING_CACHE", str(layout.cache))
    # JAX's persistent compilation cache, shared by the chapters' kernels and their sweep workers
    env.update(jax_cache_settings())
    # Headless, Agg-rendered, and figures embedded in the executed notebook. Plain "Agg" would
    # override ipykernel's inline backend and plt.show() would drop every figure.
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    # No progress bars in the executed notebooks: every redraw of a bar is kept in the stored
    # output and would stand on the book's page between the claim and its figure (the command
    # line shows one bar per notebook instead). `make lab` keeps the bars.
    env.setdefault("TQDM_DISABLE", "1")

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
    kernelspec = optional("jupyter_client.kernelspec")
    KernelSpecManager, NoSuchKernel = kernelspec.KernelSpecManager, kernelspec.NoSuchKernel
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


# --------------------------------------------------------------------------- one notebook
def _source_cell_index(executed_path, index: int) -> int:
    """Index in the source notebook of cell ``index`` of the executed one (papermill inserts
    an ``injected-parameters`` cell after the parameters cell)."""

    try:
        cells = optional("nbformat").read(str(executed_path), as_version=4).cells[:index]
    except Exception:
        return index
    return index - sum("injected-parameters" in c.get("metadata", {}).get("tags", []) for c in cells)


def _temporaries(results: Path, name: str):
    """Leftovers of an unfinished run of ``name``: temporary notebooks and staging folders."""
    return [*results.glob(f".{name}.*.tmp.ipynb"), *results.glob(f".{name}.*.staging")]


def _remove_temporaries(results: Path, name: str) -> None:
    for p in _temporaries(results, name):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            unlink(p)


@contextlib.contextmanager
def _signals_ignored():
    """SIGINT/SIGTERM ignored (while a result is published); a no-op outside the main thread."""
    try:
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def kernel_provenance(staging: Path, name: str) -> tuple[dict, str]:
    """``(provenance, where from)`` of a run: the kernel's, as recorded in the staged chapter
    JSON ``<name>.json`` (``"kernel"``), else this process's without the accelerator
    (``"runner"``: the kernel ran this interpreter with this environment; asking JAX for the
    accelerator here would start a backend beside the kernels')."""
    doc = read_json(staging / f"{name}.json")
    if isinstance(doc, dict) and isinstance(doc.get("provenance"), dict):
        return doc["provenance"], "kernel"
    return provenance(accelerator_kind=False), "runner"


def _publish(name: str, tmp: str, staging: Path, output: Path, stamp_path: Path, stamp: dict,
             wall: float, cpu: float | None = None) -> None:
    """Move a successful run into place: stamp removed, JSON files, notebook, new stamp."""
    prov, origin = kernel_provenance(staging, name)
    unlink(stamp_path)  # a crash from here on leaves no stamp: the next run reruns the notebook
    staged = sorted(staging.glob("*.json"))
    for f in staged:
        move_into_place(f, output.parent / f.name)
    if f"{name}.json" not in {f.name for f in staged}:
        unlink(output.parent / f"{name}.json")  # numbers of an older run would not match the page
    move_into_place(tmp, output)
    write_stamp(stamp_path, dict(stamp, provenance_from=origin), wall, provenance=prov, cpu_s=cpu)


def _children_cpu() -> float:
    """User + system CPU seconds of this process's finished children (and theirs, when waited for):
    after papermill returns, the kernel's, including its worker processes."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def execute_job(job: dict, cwd: str) -> dict:
    """Execute one notebook (in this process); returns an :class:`Outcome` as a dict.

    See the module docstring for what is kept on success, failure and interrupt.
    """
    papermill = optional("papermill")
    PapermillExecutionError = optional("papermill.exceptions").PapermillExecutionError
    name = job["name"]
    output, stamp_path = Path(job["output"]), Path(job["stamp_path"])
    failed = output.with_name(f"{name}.failed.ipynb")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{name}.", suffix=".staging"))
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{name}.", suffix=".tmp.ipynb")
    os.close(fd)
    saved_env = {k: os.environ.get(k) for k in (RESULTS_DIR_ENV, PROFILE_ENV)}
    os.environ[RESULTS_DIR_ENV] = str(staging)  # the kernel inherits these
    os.environ[PROFILE_ENV] = str(job.get("profile", "unknown"))
    t0 = time.perf_counter()
    cpu0 = _children_cpu()

    def keep_failed_copy() -> bool:
        if os.path.exists(tmp) and os.path.getsize(tmp) > 0:
            move_into_place(tmp, failed)
            return True
        return False

    try:
        try:
            papermill.execute_notebook(
                job["source"], tmp, parameters=job["parameters"], kernel_name="python3", language="python",
                cwd=cwd, progress_bar=False, log_output=False,
            )
        except PapermillExecutionError as exc:
            wall = time.perf_counter() - t0
            idx = _source_cell_index(tmp, exc.cell_index)
            keep_failed_copy()
            first = next((ln for ln in str(exc.source).splitlines() if ln.strip()), "").strip()
            msg = (f"cell {idx} of {Path(job['source']).name} (0-based, In [{exc.exec_count}], starting "
                   f"{first[:80]!r}) raised {exc.ename}: {str(exc.evalue)[:500]}; partial output in {failed}")
            return asdict(Outcome(name, "failed", wall, msg))
        except KeyboardInterrupt:
            return asdict(Outcome(name, "interrupted", time.perf_counter() - t0, "interrupted"))
        except BaseException as exc:  # kernel died, bad notebook, ...
            where = f"; partial output in {failed}" if keep_failed_copy() else ""
            return asdict(Outcome(name, "failed", time.perf_counter() - t0, f"{type(exc).__name__}: {exc}{where}"))
        wall = time.perf_counter() - t0
        cpu = _children_cpu() - cpu0
        with _signals_ignored():
            _publish(name, tmp, staging, output, stamp_path, job["stamp"], wall, cpu)
            unlink(failed)
        return asdict(Outcome(name, "ok", wall))
    finally:
        unlink(tmp)
        shutil.rmtree(staging, ignore_errors=True)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _job_dict(job: Job) -> dict:
    return {"name": job.name, "source": str(job.source), "output": str(job.output),
            "stamp_path": str(job.stamp_path), "parameters_cell": job.parameters_cell,
            "parameters": job.parameters, "stamp": job.stamp, "profile": job.profile}


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


# --------------------------------------------------------------------------- many notebooks
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
    result = read_json(result_file)
    if isinstance(result, dict):
        return Outcome(**result)
    # The worker died before reporting: its temporaries go, the last good result stays.
    _remove_temporaries(job.output.parent, job.name)
    if children.stopping:
        return Outcome(job.name, "interrupted", time.perf_counter() - t0, "interrupted")
    tail = log.decode(errors="replace").strip().splitlines()[-15:]
    return Outcome(job.name, "failed", time.perf_counter() - t0,
                   f"worker exited with code {proc.returncode}:\n    " + "\n    ".join(tail))


def _print_summary(jobs: list[Job], outcomes: dict[str, Outcome], out) -> None:
    width = max(len(j.name) for j in jobs)
    print("\nSummary (wall time per notebook):", file=out)
    for j in jobs:
        o = outcomes.get(j.name) or Outcome(j.name, "interrupted", 0.0, "not run")
        timing = "unchanged, skipped" if o.status == "skipped" else f"{o.wall_s:8.1f} s"
        print(f"  {j.name:<{width}}  {o.status:<11} {timing}", file=out)
    for j in jobs:
        o = outcomes.get(j.name)
        if o is not None and o.status == "failed":
            print(f"\nFAILED {o.name}: {o.message}\n  {describe(j.output, j.stamp_path)}", file=out)
        elif o is None or o.status == "interrupted":
            print(f"\nINTERRUPTED {j.name}: {describe(j.output, j.stamp_path)}", file=out)


def expected_seconds(job) -> float:
    """How long ``job`` is expected to take: the longer of the wall time of its last timed run
    of the same profile (its stamp) and the registry's ``minutes`` estimate (0 for what is
    missing). The estimate is a floor because a rerun whose simulations come from the result
    cache is timed too, and its short wall time must not make a long chapter start last."""
    estimate = 60.0 * job.minutes if job.minutes is not None else 0.0
    old = read_json(job.stamp_path)
    if isinstance(old, dict) and old.get("profile") == job.profile and isinstance(old.get("wall_s"), (int, float)):
        return max(float(old["wall_s"]), estimate)
    return estimate


def longest_first(todo: list) -> list:
    """``todo`` ordered by :func:`expected_seconds`, longest first (ties keep book order): with two
    notebooks at a time, a long chapter started last would otherwise run alone at the end."""
    return sorted(todo, key=lambda j: -expected_seconds(j))


def expected_cores(job, capacity: int) -> float:
    """How many cores ``job`` keeps busy on average, at most ``capacity``: the CPU time over the
    wall time of its last timed run of the same profile (its stamp's ``cpu_s / wall_s``), else the
    registry's ``cores`` estimate, else 1."""
    old = read_json(job.stamp_path)
    need = job.cores or 1.0
    if isinstance(old, dict) and old.get("profile") == job.profile:
        cpu, wall = old.get("cpu_s"), old.get("wall_s")
        if isinstance(cpu, (int, float)) and isinstance(wall, (int, float)) and wall > 0 and cpu > 0:
            need = cpu / wall
    return float(min(need, capacity))


#: A notebook starts while the running ones leave at least this much of a core idle.
IDLE_CORE = 0.1


def schedule(todo: list, running: list, capacity: int, jobs: int, unfinished=()) -> list:
    """The jobs of ``todo`` (in its order) to start now, given the cores each running job keeps
    busy on average (``running``, :func:`expected_cores`) on ``capacity`` cores and at most
    ``jobs`` notebooks at once: jobs in order while the running ones (those just started
    included) leave at least :data:`IDLE_CORE` of a core idle.

    A chapter that keeps 1.6 of 2 cores busy leaves the rest idle in its serial sections and
    while its threads or workers wait for each other; a second notebook beside it fills that time.
    Both then run slower, but the two finish sooner than one after the other (two E8 twin runs
    that each keep 1.6 cores busy took 16% less time side by side than in turn on the 2-core
    reference machine): the CPU time a notebook needs does not grow with sharing, the idle time
    shrinks. Only a notebook that keeps (nearly) every core busy runs alone. The order is strict:
    the first job that cannot start holds back those after it. A job whose ``after`` names a
    notebook in ``todo`` or in ``unfinished`` (the names of the running ones) waits without
    holding back the others: it reuses that notebook's results from the result cache."""
    free = capacity - sum(running)
    n = len(running)
    start = []
    waiting = {j.name for j in todo} | set(unfinished)
    for j in todo:
        if any(a in waiting for a in getattr(j, "after", ())):
            continue
        if n >= jobs or free < IDLE_CORE:
            break
        start.append(j)
        free -= expected_cores(j, capacity)
        n += 1
    return start


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
        Notebooks executed at most at once (default ``min(2, cpu count)``); within that, a
        notebook starts while the running ones leave part of a core idle (:func:`schedule`).
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
    todo = longest_first([j for j in planned if not j.up_to_date])
    print(f"profile {profile!r}: {len(todo)} to run, {len(outcomes)} up to date "
          f"(results in {layout.results})", file=out)
    if not todo:
        _print_summary(planned, outcomes, out)
        return 0

    layout.results.mkdir(parents=True, exist_ok=True)
    for j in todo:
        _remove_temporaries(layout.results, j.name)
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
        capacity = os.cpu_count() or 1
        pool = ThreadPoolExecutor(max_workers=min(jobs, len(todo)))
        futures: dict = {}
        try:
            pending, running = list(todo), {}
            while pending or running:
                for j in schedule(pending, list(running.values()), capacity, jobs,
                                  unfinished=[futures[f].name for f in running]):
                    pending.remove(j)
                    fut = pool.submit(_run_child, j, layout.notebooks, env, tmpdir, children)
                    futures[fut] = j
                    running[fut] = expected_cores(j, capacity)
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in done:
                    running.pop(fut)
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
                _remove_temporaries(layout.results, j.name)
    _print_summary(planned, outcomes, out)
    if interrupted or any(o.status == "interrupted" for o in outcomes.values()):
        return 130
    return 1 if any(o.status == "failed" for o in outcomes.values()) else 0
