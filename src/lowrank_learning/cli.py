"""``lowrank-learning``: reproduce the paper's results and build the book.

    lowrank-learning reproduce [--profile paper|quick] [--only NAME ...] [--jobs N]
                               [--set [NOTEBOOK.]NAME=VALUE ...] [--force]
    lowrank-learning book [--builddir _build]

The work is done in :mod:`lowrank_learning.reproduce`; this module only parses arguments.
"""

from __future__ import annotations

import argparse
import sys


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lowrank-learning",
        description="Reproducible companion to Ger & Barak, 'Learning reveals invisible structure "
                    "in low-rank RNNs' (arXiv:2605.04115).",
    )
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
    return parser


def main(argv=None) -> int:
    """Entry point of the ``lowrank-learning`` command; returns the exit code."""
    args = _parser().parse_args(argv)
    from . import reproduce as rp

    try:
        if args.command == "reproduce":
            return rp.reproduce(root=args.root, profile=args.profile, only=args.only, jobs=args.jobs,
                                sets=args.sets, force=args.force, progress=not args.no_progress)
        if args.command == "book":
            return rp.build_book(root=args.root, builddir=args.builddir)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    raise AssertionError(args.command)  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
