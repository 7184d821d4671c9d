"""One plotting style for every notebook.

Loss-visible overlaps in blue, loss-invisible in red; the full network as solid lines, theory
as dashed black on top; log epochs where the dynamics span decades. Every function takes an
optional ``ax`` and returns it.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .core.architecture import Architecture
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


# The book's content column is about 7 inches wide at the 100 dpi the notebooks' figures are
# rendered with, so a figure drawn at COLUMN_WIDTH inches is shown at its natural size and its
# fonts keep their point sizes on the page.
COLUMN_WIDTH = 7.0
DPI = 100
PAGE_RC = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "figure.figsize": (COLUMN_WIDTH, 3.6),
    "figure.constrained_layout.use": True,
    "font.size": 9.5,
    "axes.titlesize": 10,
    "axes.labelsize": 9.5,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.title_fontsize": 9,
    "lines.linewidth": 1.6,
}


def use_page_style() -> None:
    """Set matplotlib's defaults for the book's pages (:data:`PAGE_RC`): figures
    :data:`COLUMN_WIDTH` inches wide at :data:`DPI`, fonts of at least 9 pt, constrained layout.
    Every chapter calls it once, after its imports."""
    plt.rcParams.update(PAGE_RC)


def page_figure(nrows: int = 1, ncols: int = 1, height: float | None = None, **kwargs):
    """``plt.subplots`` at the width of the content column.

    ``height`` is in inches (default 2.9 in per row for one row, 2.4 in per row otherwise); other
    keyword arguments go to ``plt.subplots`` (``sharex``, ``gridspec_kw``, ``squeeze`` ...).
    Returns ``(fig, axes)`` as ``plt.subplots`` does."""
    if height is None:
        height = 2.9 if nrows == 1 else 2.4 * nrows
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
                        textcoords="offset points", fontsize=8, color=color, va="center")
    ax.set_xscale("log" if logx else "linear")
    ax.set_xlabel("epoch")
    ax.set_ylabel(r"overlap $\sigma_{ab} = a \cdot b / N$")
    kinds = {bool(vis[arch.overlap_names[arch.overlap_index(n)]]) for n in names}
    handles = [plt.Line2D([], [], color=VISIBLE if k else INVISIBLE, lw=2.2,
                          label=f"loss-{'visible' if k else 'invisible'} (full network)")
               for k in sorted(kinds, reverse=True)]
    if theory is not None:
        handles.append(plt.Line2D([], [], **THEORY, label="overlap theory"))
    ax.legend(handles=handles, frameon=False, fontsize=8)
    return ax


def plot_overlap_grid(full: Trajectory, theory: Trajectory | None = None, names=None,
                      ncols: int = 5, logx: bool = True, panel_size=(2.4, 2.0)):
    """One panel per overlap: full network solid (blue visible, red invisible), theory dashed black.

    Returns the figure. Panels are ordered visible first, then invisible.
    """
    arch = full.arch
    if names is None:
        names = list(arch.visible_names) + list(arch.invisible_names)
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows),
                             sharex=True, squeeze=False)
    vis = dict(zip(arch.overlap_names, arch.visible))
    x = epochs_axis(full.epochs)
    for ax, n in zip(axes.flat, names):
        canon = arch.overlap_names[arch.overlap_index(n)]
        color = VISIBLE if vis[canon] else INVISIBLE
        ax.plot(x, full[n], color=color, lw=2.4, alpha=0.85)
        if theory is not None:
            ax.plot(epochs_axis(theory.epochs), theory[n], **THEORY)
        ax.set_title(rf"$\sigma_{{{canon}}}$ ({'visible' if vis[canon] else 'invisible'})",
                     color=color, fontsize=10)
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
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.05, 1, 1))
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
    ax.set_xticks(range(len(order)), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(len(order)), labels, fontsize=8)
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
