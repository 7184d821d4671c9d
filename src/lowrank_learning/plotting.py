"""One plotting style for every notebook.

Loss-visible overlaps in blue, loss-invisible in red; the full network as solid lines, theory
as dashed black on top; log epochs where the dynamics span decades. Every function takes an
optional ``ax`` and returns it.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .core.architecture import Architecture
from .core.errors import InvalidParameterError
from .learn.trajectory import Trajectory

VISIBLE = "#1f5fbf"
INVISIBLE = "#d62728"
THEORY = dict(color="black", ls="--", lw=1.2)
RULE_STYLE = {
    "gd": dict(color="#444444", lw=2.5, label="full network (GD)"),
    "adam": dict(color="#8c564b", lw=2.0, label="full network (Adam)"),
    "exact": dict(color="black", ls="--", lw=1.4, label="overlaps: exact map"),
    "flow": dict(color="#ff7f0e", ls=":", lw=1.8, label="overlaps: gradient flow"),
    "naive": dict(color="#2ca02c", ls="-.", lw=1.6, label="naive visible-only descent"),
}


# The book's content column is 688 px wide at a 1280 px window. Figures are rendered at 100 dpi,
# and the inline backend's tight bounding box adds up to ~70 px where a legend sits outside the
# axes, so a figure drawn at COLUMN_WIDTH = 6.5 in is at most ~720 px: shown at >= 95% of its
# natural size, so that its smallest fonts (9.5 pt) stay at >= 9 pt on the page.
COLUMN_WIDTH = 6.5
DPI = 100
PAGE_RC = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "figure.figsize": (COLUMN_WIDTH, 3.4),
    "figure.constrained_layout.use": True,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9.5,
    "ytick.labelsize": 9.5,
    "legend.fontsize": 9.5,
    "legend.title_fontsize": 9.5,
    "lines.linewidth": 1.6,
}


def use_page_style() -> None:
    """Set matplotlib's defaults for the book's pages (:data:`PAGE_RC`): figures
    :data:`COLUMN_WIDTH` inches wide at :data:`DPI`, fonts of at least 9.5 pt, constrained layout.
    Every chapter calls it once, after its imports."""
    plt.rcParams.update(PAGE_RC)


def page_figure(nrows: int = 1, ncols: int = 1, height: float | None = None, **kwargs):
    """``plt.subplots`` at the width of the content column.

    ``height`` is in inches (default 2.9 in per row for one row, 2.4 in per row otherwise); other
    keyword arguments go to ``plt.subplots`` (``sharex``, ``gridspec_kw``, ``squeeze`` ...).
    Returns ``(fig, axes)`` as ``plt.subplots`` does."""
    if height is None:
        height = 2.9 if nrows == 1 else 2.4 * nrows
    kwargs.setdefault("layout", "constrained")  # also where use_page_style was not called
    return plt.subplots(nrows, ncols, figsize=(COLUMN_WIDTH, height), **kwargs)


def _ax(ax):
    return plt.gca() if ax is None else ax


def epochs_axis(n: int) -> np.ndarray:
    """Epoch numbers 1..n (1-based so they show on a log axis)."""
    return np.arange(1, n + 1)


def plot_losses(trajectories, ax=None, logx: bool = True, logy: bool = True):
    """Loss curves of several trajectories (styled by ``Trajectory.method``)."""
    ax = _ax(ax)
    for tr in trajectories:
        style = dict(RULE_STYLE.get(tr.method, {}))
        ax.plot(epochs_axis(tr.epochs), tr.loss, **style)
    ax.set_xscale("log" if logx else "linear")
    ax.set_yscale("log" if logy else "linear")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(frameon=False)
    return ax


def plot_overlaps(full: Trajectory, theory: Trajectory | None = None, names=None, ax=None,
                  logx: bool = True, label_lines: bool = True):
    """Overlap trajectories: full network solid (blue visible, red invisible), theory dashed black."""
    ax = _ax(ax)
    arch = full.arch
    names = arch.overlap_names if names is None else names
    x = epochs_axis(full.epochs)
    vis = dict(zip(arch.overlap_names, arch.visible))
    for n in names:
        canon = arch.overlap_names[arch.overlap_index(n)]
        color = VISIBLE if vis[canon] else INVISIBLE
        ax.plot(x, full[n], color=color, lw=2.2, alpha=0.8)
        if theory is not None:
            ax.plot(epochs_axis(theory.epochs), theory[n], **THEORY)
        if label_lines:
            ax.annotate(rf"$\sigma_{{{canon}}}$", (x[-1], full[n][-1]), xytext=(3, 0),
                        textcoords="offset points", fontsize=9, color=color, va="center")
    ax.set_xscale("log" if logx else "linear")
    ax.set_xlabel("epoch")
    ax.set_ylabel(r"overlap $\sigma_{ab} = a \cdot b / N$")
    kinds = {bool(vis[arch.overlap_names[arch.overlap_index(n)]]) for n in names}
    handles = [plt.Line2D([], [], color=VISIBLE if k else INVISIBLE, lw=2.2,
                          label=f"loss-{'visible' if k else 'invisible'} (full network)")
               for k in sorted(kinds, reverse=True)]
    if theory is not None:
        handles.append(plt.Line2D([], [], **THEORY, label="overlap theory"))
    ax.legend(handles=handles, frameon=False)
    return ax


def plot_overlap_grid(full: Trajectory, theory: Trajectory | None = None, names=None,
                      ncols: int = 5, logx: bool = True, row_height: float = 1.75):
    """One panel per overlap: full network solid (blue visible, red invisible), theory dashed black.

    Returns the figure, :data:`COLUMN_WIDTH` inches wide (``row_height`` inches per row of
    ``ncols`` panels, the legend below). Panels are ordered visible first, then invisible.
    """
    arch = full.arch
    if names is None:
        names = list(arch.visible_names) + list(arch.invisible_names)
    nrows = -(-len(names) // ncols)
    fig, axes = page_figure(nrows, ncols, height=row_height * nrows + 0.4, sharex=True, squeeze=False)
    vis = dict(zip(arch.overlap_names, arch.visible))
    x = epochs_axis(full.epochs)
    for ax, n in zip(axes.flat, names):
        canon = arch.overlap_names[arch.overlap_index(n)]
        color = VISIBLE if vis[canon] else INVISIBLE
        ax.plot(x, full[n], color=color, lw=2.4, alpha=0.85)
        if theory is not None:
            ax.plot(epochs_axis(theory.epochs), theory[n], **THEORY)
        ax.set_title(rf"$\sigma_{{{canon}}}$ ({'visible' if vis[canon] else 'invisible'})", color=color)
        ax.set_xscale("log" if logx else "linear")
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel("overlap")
    handles = [plt.Line2D([], [], color=VISIBLE, lw=2.4, label="loss-visible, full network"),
               plt.Line2D([], [], color=INVISIBLE, lw=2.4, label="loss-invisible, full network")]
    if theory is not None:
        handles.append(plt.Line2D([], [], **THEORY, label="overlap theory"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    return fig


def plot_metric(arch: Architecture, matrix, ax=None, title: str | None = None, cmap="RdBu_r",
                symmetric: bool = True):
    """Draw an (n_overlaps, n_overlaps) matrix with rows/columns ordered visible first.

    ``symmetric``: colour scale centred on 0 (signed values); else from 0 to the maximum
    (e.g. a 0/1 support pattern with ``cmap="Greys"``).
    """
    ax = _ax(ax)
    order = np.r_[np.flatnonzero(arch.visible), np.flatnonzero(~arch.visible)]
    M = np.asarray(matrix, dtype=float)[np.ix_(order, order)]
    lim = np.max(np.abs(M)) or 1.0
    im = ax.imshow(M, cmap=cmap, vmin=-lim if symmetric else 0.0, vmax=lim)
    labels = [rf"$\sigma_{{{arch.overlap_names[k]}}}$" for k in order]
    ax.set_xticks(range(len(order)), labels, rotation=90, fontsize=9)
    ax.set_yticks(range(len(order)), labels, fontsize=9)
    for tick, k in zip(ax.get_xticklabels(), order):
        tick.set_color(VISIBLE if arch.visible[k] else INVISIBLE)
    for tick, k in zip(ax.get_yticklabels(), order):
        tick.set_color(VISIBLE if arch.visible[k] else INVISIBLE)
    nv = int(arch.visible.sum())
    ax.axhline(nv - 0.5, color="k", lw=0.8)
    ax.axvline(nv - 0.5, color="k", lw=0.8)
    ax.set_xlabel(r"gradient component $\partial L / \partial \sigma$")
    ax.set_ylabel(r"rate $d\sigma / d\tau$")
    if title:
        ax.set_title(title)
    return ax, im


def plot_twin_trajectories(traj: dict, teacher: dict | None = None, arch: Architecture | None = None,
                           height: float = 5.2):
    """Both twins of one E8 pair over both phases: visible overlaps (top), invisible (bottom).

    ``traj`` is :func:`~lowrank_learning.experiments.twins.twin_trajectories`'s dict (``epochs``
    (T,), ``twin1`` and ``twin2`` (T, P), ``names``, ``phase1_epochs``); ``teacher`` maps the
    teacher's visible overlap names to their values, drawn as thin horizontal lines over phase 2.
    One colour per overlap; twin 1 (flip-flop first) solid, twin 2 (decision making first)
    dashed; a grey line marks the start of phase 2. ``arch`` (default erf, rank 1) decides which
    overlaps are visible. Returns the figure (:func:`page_figure`, 2 rows).
    """
    arch = Architecture(rank=1, activation="erf") if arch is None else arch
    names = list(traj["names"])
    x = np.asarray(traj["epochs"])
    e1 = traj["phase1_epochs"]
    fig, axes = page_figure(2, 1, height=height, sharex=True)
    for ax, group, kind, first in ((axes[0], arch.visible_names, "visible", 0),
                                   (axes[1], arch.invisible_names, "invisible", len(arch.visible_names))):
        colours = plt.cm.tab10((first + np.arange(len(group))) % 10)
        for o, c in zip(group, colours):
            j = names.index(o)
            ax.plot(x, traj["twin1"][:, j], color=c, lw=1.6, label=rf"$\sigma_{{{o}}}$")
            ax.plot(x, traj["twin2"][:, j], color=c, lw=1.6, ls="--")
            if teacher is not None and o in teacher:
                ax.plot([e1, x[-1]], [teacher[o]] * 2, color=c, lw=0.9, ls=":")
        ax.axvline(e1, color="0.6", lw=1)
        ax.set_ylabel(f"loss-{kind} overlap")
        ax.legend(frameon=False, ncol=1, loc="center left", bbox_to_anchor=(1.0, 0.5), handlelength=1.5)
    keys = [plt.Line2D([], [], color="k", lw=1.6, label="twin 1 (flip-flop first)"),
            plt.Line2D([], [], color="k", lw=1.6, ls="--", label="twin 2 (decision making first)")]
    if teacher is not None:
        keys.append(plt.Line2D([], [], color="k", lw=0.9, ls=":", label="teacher (visible)"))
    fig.legend(handles=keys, frameon=False, loc="outside upper center", ncol=len(keys))
    axes[1].set_xlabel("epoch (phase 1: own task; phase 2, from the grey line: imitate the teacher)")
    return fig


class Table:
    """A small table shown as markdown in a notebook (and on the book's page): the last expression
    of a cell, instead of printed lines. ``header``: column names; ``rows``: sequences of cells,
    each a string or a number (numbers are formatted with ``fmt``)."""

    def __init__(self, header, rows, fmt: str = ".3g"):
        self.header = [str(h) for h in header]
        self.rows = [[c if isinstance(c, str) else format(c, fmt) for c in row] for row in rows]
        bad = [k for k, r in enumerate(self.rows) if len(r) != len(self.header)]
        if bad:
            raise InvalidParameterError(f"rows: row {bad[0]} has {len(self.rows[bad[0]])} cells, the header "
                                        f"{len(self.header)}")

    def _repr_markdown_(self) -> str:
        esc = lambda c: str(c).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        lines = ["| " + " | ".join(map(esc, self.header)) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(map(esc, r)) + " |" for r in self.rows]
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        return self._repr_markdown_()
