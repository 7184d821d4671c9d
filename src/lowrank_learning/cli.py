"""``lowrank-learning``: reproduce the paper's results and build the book.

    lowrank-learning reproduce [--profile paper|quick] [--only NAME ...] [--jobs N]
                               [--set [NOTEBOOK.]NAME=VALUE ...] [--force]
    lowrank-learning book [--builddir _build]
    lowrank-learning sweep NAME [--profile paper|quick] [--scheduler ADDRESS] [--workers N]
                                [--timeout SECONDS] [--out FILE.csv]
    lowrank-learning cache info [--cache-dir DIR] [--older-than DAYS]
    lowrank-learning cache prune [--cache-dir DIR] [--older-than DAYS] [--dry-run]
    lowrank-learning --version

The work is done in :mod:`lowrank_learning.reproduce`, :mod:`lowrank_learning.sweeps` and
:mod:`lowrank_learning.core.cache`; this module parses arguments and prints reports.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections import Counter
from pathlib import Path

from . import reproduce as rp
from .core import cache
from .core._checks import check_int, check_positive
from .core.errors import InvalidParameterError, LowRankError
from .core.provenance import lowrank_version
from .named_sweeps import NAMED_SWEEPS, named_sweep
from .reproduce.layout import find_root
from .sweeps import run_sweep, write_csv


def _argument(text: str, parse, check, expected: str):
    """``check("value", parse(text))``, its errors as :class:`argparse.ArgumentTypeError`."""
    try:
        value = parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    try:
        return check("value", value)
    except InvalidParameterError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (the rule of :func:`~lowrank_learning.core._checks.check_int`)."""
    return _argument(text, int, functools.partial(check_int, minimum=1), "an integer >= 1")


def _positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (the rule of :func:`~lowrank_learning.core._checks.check_positive`)."""
    return _argument(text, float, check_positive, "a positive number")


def _days(text: str) -> float:
    """argparse type: a number of days >= 0."""
    def check(what, value):
        if not (value >= 0 and value != float("inf")):
            raise InvalidParameterError(f"{what} must be a finite number of days >= 0, got {value!r}")
        return value
    return _argument(text, float, check, "a number of days >= 0")


def _sweep_description() -> str:
    return ("Run a named sweep (a grid of independent jobs) in local worker processes, or on "
            "a dask.distributed cluster with --scheduler. Every job is cached (in "
            "ROOT/.lowrank_cache when run inside the repository, the cache the notebooks use), "
            "so an interrupted sweep resumes and a notebook reads the results without "
            "recomputing. Sweeps: " + "; ".join(f"{k}: {v[0]}" for k, v in NAMED_SWEEPS.items()))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lowrank-learning",
        description="Reproducible companion to Ger & Barak, 'Learning reveals invisible structure "
                    "in low-rank RNNs' (arXiv:2605.04115).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {lowrank_version()}",
                        help="print the package version and exit")
    parser.add_argument("--root", default=None,
                        help="repository root (default: found from the working directory)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rep = sub.add_parser(
        "reproduce", help="execute the notebooks into book/results/",
        description="Execute the notebooks listed in notebooks/profiles.yml with papermill into "
                    "book/results/<name>.ipynb. Notebooks whose file, parameters and package code "
                    "are unchanged since their last successful run are skipped.",
    )
    rep.add_argument("--profile", default="paper",
                     help="parameter profile from notebooks/profiles.yml: paper (default) or quick")
    rep.add_argument("--only", nargs="+", action="extend", metavar="NAME", default=None,
                     help="run only these notebooks (names from notebooks/profiles.yml)")
    rep.add_argument("--jobs", "-j", type=_positive_int, default=None,
                     help="notebooks run at once (default: min(2, number of CPUs))")
    rep.add_argument("--set", dest="sets", nargs="+", action="extend", default=[], metavar="[NOTEBOOK.]NAME=VALUE",
                     help="override a parameter after the profile (a Python literal, else a string); "
                          "repeatable; NAME=VALUE applies to every selected notebook")
    rep.add_argument("--force", action="store_true", help="rerun notebooks that are up to date")
    rep.add_argument("--no-progress", action="store_true", help="no progress bar")

    book = sub.add_parser("book", help="build the jupyter-book site from book/results/",
                          description="Build the site with jupyter-book (warnings are errors) into "
                                      "BUILDDIR/html. Run `lowrank-learning reproduce` first.")
    book.add_argument("--builddir", default="_build", help="build folder, relative to the root (default: _build)")

    sw = sub.add_parser("sweep", help="run a named sweep locally or on a Dask cluster",
                        description=_sweep_description())
    sw.add_argument("name", choices=sorted(NAMED_SWEEPS), metavar="NAME",
                    help="the sweep: " + ", ".join(sorted(NAMED_SWEEPS)))
    sw.add_argument("--profile", choices=("paper", "quick"), default="paper",
                    help="grid size: paper (default) or quick")
    sw.add_argument("--scheduler", default=None, metavar="ADDRESS",
                    help="Dask scheduler address, e.g. tcp://host:8786 (default: local processes)")
    sw.add_argument("--workers", type=_positive_int, default=None,
                    help="local worker processes (default: min(2, number of CPUs)); ignored with --scheduler")
    sw.add_argument("--timeout", type=_positive_float, default=5.0,
                    help="seconds to wait for the scheduler to answer (default 5)")
    sw.add_argument("--out", default=None, metavar="FILE.csv",
                    help="write the scalar results as CSV (one row per job, parameters as columns)")
    sw.add_argument("--no-progress", action="store_true", help="no progress bar")

    ca = sub.add_parser(
        "cache", help="inspect or prune the result cache",
        description="The result cache's key holds the model code's hash and the numerical environment "
                    "(the versions of jax, jaxlib, numpy, scipy and numba, the operating system, the "
                    "processor architecture and JAX's platform and device kind); an entry made with "
                    "others is never hit again. `info` counts the entries by status, `prune` deletes "
                    "those that cannot be hit (and, with --older-than, old ones). The cache directory: "
                    "--cache-dir, else $LOWRANK_LEARNING_CACHE, else ROOT/.lowrank_cache inside the "
                    "repository, else ~/.cache/lowrank_learning.",
    )
    ca_sub = ca.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    for action, text in (("info", "count the entries: current, stale, unreadable, and their size"),
                         ("prune", "delete the entries that the current code and software cannot hit")):
        a = ca_sub.add_parser(action, help=text, description=text[0].upper() + text[1:] + ".")
        a.add_argument("--cache-dir", default=None, metavar="DIR", help="the cache directory")
        a.add_argument("--older-than", type=_days, default=None, metavar="DAYS",
                       help="also count as expired (and prune) entries written more than DAYS days ago")
        if action == "prune":
            a.add_argument("--dry-run", action="store_true", help="report what would be removed, remove nothing")
    return parser


def _repository_cache(root) -> str | None:
    """``ROOT/.lowrank_cache`` when the working directory (or ``root``) is in the repository,
    the cache the notebooks use; None outside it."""
    try:
        return str(find_root(root) / ".lowrank_cache")
    except (rp.ReproduceError, OSError):  # outside the repository: the default cache directory
        return None


def _sweep(args) -> int:
    if "LOWRANK_LEARNING_CACHE" not in os.environ:
        repo_cache = _repository_cache(args.root)
        if repo_cache is not None:
            os.environ["LOWRANK_LEARNING_CACHE"] = repo_cache
    try:
        fn, jobs = named_sweep(args.name, args.profile, args.root)
        frame = run_sweep(args.name, fn, jobs, scheduler=args.scheduler, workers=args.workers,
                          timeout=args.timeout, progress=False if args.no_progress else None,
                          errors="collect")
    except LowRankError as exc:
        print(f"lowrank-learning sweep: {exc}", file=sys.stderr)
        return 1
    failures = frame.attrs["failures"]
    print(f"sweep {args.name} ({args.profile}): {len(jobs)} jobs, {frame.attrs['computed']} computed, "
          f"{frame.attrs['cached']} from the cache, {len(failures)} failed")
    for f in failures:
        print(f"  {f}", file=sys.stderr)
    if args.out:
        print(f"wrote {write_csv(frame, args.out)}")
    return 1 if failures else 0


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover


def _count(entries) -> str:
    return f"{len(entries)} {'entry' if len(entries) == 1 else 'entries'} ({_size(sum(e.size for e in entries))})"


def _cache(args, out=None) -> int:
    out = out or sys.stdout
    directory = Path(args.cache_dir or os.environ.get("LOWRANK_LEARNING_CACHE") or _repository_cache(args.root)
                     or cache.cache_dir())
    env = cache.key_environment()
    print(f"cache {directory}", file=out)
    print(f"  current key: model code {cache.source_hash()[:12]}, "
          + ", ".join(f"{k} {v}" for k, v in env.items()), file=out)
    if args.cache_command == "info":
        entries = cache.scan(directory, older_than_days=args.older_than)
        print(f"  {_count(entries)}", file=out)
        for status in ("current", "expired", "stale", "unreadable", "leftover"):
            chosen = [e for e in entries if e.status == status]
            if chosen:
                names = Counter(e.name for e in chosen)
                print(f"  {status}: {_count(chosen)}; by name: "
                      + ", ".join(f"{n} {c}" for n, c in sorted(names.items())), file=out)
        return 0
    removed = cache.prune(directory, older_than_days=args.older_than, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {_count(removed)}", file=out)
    for reason, n in sorted(Counter(f"{e.status}: {e.reason}" for e in removed).items()):
        print(f"  {n} × {reason}", file=out)
    return 0


def main(argv=None) -> int:
    """Entry point of the ``lowrank-learning`` command; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "reproduce":
            return rp.reproduce(root=args.root, profile=args.profile, only=args.only, jobs=args.jobs,
                                sets=args.sets, force=args.force, progress=not args.no_progress)
        if args.command == "book":
            return rp.build_book(root=args.root, builddir=args.builddir)
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "cache":
            return _cache(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    raise AssertionError(args.command)  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
