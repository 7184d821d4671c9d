"""The architecture of a low-rank RNN: rank, input/output dimensions, activation.

The K = n_in + 2 rank + n_out connectivity vectors are stacked as the columns of
``X`` (shape ``(N, K)``) in the fixed order ``M, U, V, Z`` (book/theory.md, section 2):

====  ========  ==============================
group columns   role
====  ========  ==============================
M     n_in      input vectors m
U     rank      left recurrent vectors u
V     rank      right recurrent vectors v
Z     n_out     readout vectors z
====  ========  ==============================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ._checks import check_choice, check_int
from .activations import ACTIVATIONS, is_linear
from .errors import InvalidParameterError

GROUPS = ("M", "U", "V", "Z")
# Which vector is written first in an overlap's name: the paper writes zm, zu, vm, vu, mu, zv.
_NAME_PRIORITY = {"z": 0, "v": 1, "m": 2, "u": 3}
_VECTOR_RE = re.compile(r"[muvz]\d*")


@dataclass(frozen=True)
class Architecture:
    """A low-rank RNN architecture.

    Parameters
    ----------
    rank : int
        Rank R of the recurrent connectivity W = U V^T / N.
    n_in, n_out : int
        Input dimension Din and output dimension Dout.
    activation : {"linear", "erf", "tanh"}
        Unit nonlinearity phi (erf has slope 1 at 0).

    Examples
    --------
    >>> arch = Architecture(rank=1)
    >>> arch.vector_names
    ('m', 'u', 'v', 'z')
    >>> arch.K, len(arch.overlap_names)
    (4, 10)
    """

    rank: int = 1
    n_in: int = 1
    n_out: int = 1
    activation: str = "linear"

    def __post_init__(self):
        for name in ("rank", "n_in", "n_out"):
            check_int(f"Architecture.{name}", getattr(self, name), 1)
        check_choice("Architecture.activation", self.activation, ACTIVATIONS)

    # ------------------------------------------------------------------ vectors
    @property
    def K(self) -> int:
        """Number of connectivity vectors, ``n_in + 2 rank + n_out``."""
        return self.n_in + 2 * self.rank + self.n_out

    @property
    def group_sizes(self) -> dict[str, int]:
        return {"M": self.n_in, "U": self.rank, "V": self.rank, "Z": self.n_out}

    @cached_property
    def slices(self) -> dict[str, slice]:
        """Column slice of each group ``M, U, V, Z`` in ``X``."""
        out, start = {}, 0
        for g in GROUPS:
            out[g] = slice(start, start + self.group_sizes[g])
            start += self.group_sizes[g]
        return out

    @cached_property
    def vector_names(self) -> tuple[str, ...]:
        """The name of each column of X, e.g. ``("m", "u", "v", "z")``; numbered (``u1, u2``) when a
        group has several."""
        names = []
        for g in GROUPS:
            n = self.group_sizes[g]
            letter = g.lower()
            names += [letter] if n == 1 else [f"{letter}{i + 1}" for i in range(n)]
        return tuple(names)

    @cached_property
    def vector_group(self) -> tuple[str, ...]:
        """Group (``'M'``, ``'U'``, ``'V'`` or ``'Z'``) of each column of X."""
        return tuple(g for g in GROUPS for _ in range(self.group_sizes[g]))

    def vector_index(self, name: str) -> int:
        """Column of X holding vector ``name`` (e.g. ``'u'`` or ``'u2'``)."""
        try:
            return self.vector_names.index(name)
        except ValueError:
            raise InvalidParameterError(
                f"unknown vector {name!r}; this architecture has {self.vector_names}"
            ) from None

    # ----------------------------------------------------------------- overlaps
    @cached_property
    def overlap_pairs(self) -> tuple[tuple[int, int], ...]:
        """The K(K+1)/2 distinct overlaps as index pairs ``(i, j)``, ``i <= j``, in a fixed order."""
        return tuple((i, j) for i in range(self.K) for j in range(i, self.K))

    def _pair_name(self, i: int, j: int) -> str:
        a, b = self.vector_names[i], self.vector_names[j]
        ka = (_NAME_PRIORITY[a[0]], i)
        kb = (_NAME_PRIORITY[b[0]], j)
        return a + b if ka <= kb else b + a

    @cached_property
    def overlap_names(self) -> tuple[str, ...]:
        """Name of each overlap (``'zm'``, ``'vu'``, ``'mm'``, ...), in the order of ``overlap_pairs``."""
        return tuple(self._pair_name(i, j) for i, j in self.overlap_pairs)

    @property
    def n_overlaps(self) -> int:
        return self.K * (self.K + 1) // 2

    def overlap_index(self, name: str) -> int:
        """Position of overlap ``name`` in ``overlap_names``; either order of the two vectors is accepted."""
        return self.overlap_pairs.index(self.overlap_pair(name))

    def overlap_pair(self, name: str) -> tuple[int, int]:
        """Index pair ``(i, j)``, ``i <= j``, of overlap ``name`` (``'mu'`` and ``'um'`` are the same)."""
        parts = _VECTOR_RE.findall(name) if isinstance(name, str) else []
        if len(parts) != 2 or "".join(parts) != name or not all(p in self.vector_names for p in parts):
            raise InvalidParameterError(
                f"unknown overlap {name!r}; valid names are {self.overlap_names}"
            )
        i, j = sorted(self.vector_index(p) for p in parts)
        return i, j

    # --------------------------------------------------------------- visibility
    @property
    def loss_blocks(self) -> tuple[tuple[str, str], ...]:
        """The blocks ``(row group, column group)`` of Sigma that the reduced model reads.

        The single source of the visible/invisible partition: the reduced model
        (:mod:`lowrank_learning.core.latent`) hands its dynamics these blocks and no others, and
        :attr:`visible_matrix` marks them. A linear network's output depends on ``V^T M``,
        ``V^T U``, ``Z^T M`` and ``Z^T U`` only; with a nonlinearity the gain of the Gaussian
        pre-activation adds its variance, which reads ``M^T M``, ``U^T U`` and ``M^T U``
        (book/theory.md, sections 3-4).
        """
        blocks = (("V", "M"), ("V", "U"), ("Z", "M"), ("Z", "U"))
        if not is_linear(self.activation):
            blocks += (("M", "M"), ("U", "U"), ("M", "U"))
        return blocks

    @cached_property
    def visible_matrix(self) -> np.ndarray:
        """Boolean ``(K, K)`` mask of the entries of Sigma that the loss reads (symmetric).

        Derived from the blocks of Sigma read by the reduced model (:attr:`loss_blocks`), not
        typed in per case.
        """
        vis = np.zeros((self.K, self.K), dtype=bool)
        for a, b in self.loss_blocks:
            vis[self.slices[a], self.slices[b]] = True
            vis[self.slices[b], self.slices[a]] = True
        return vis

    @cached_property
    def visible(self) -> np.ndarray:
        """Boolean per overlap (order of ``overlap_names``): True if the loss depends on it."""
        vm = self.visible_matrix
        return np.array([vm[i, j] for i, j in self.overlap_pairs], dtype=bool)

    @property
    def visible_names(self) -> tuple[str, ...]:
        return tuple(n for n, v in zip(self.overlap_names, self.visible) if v)

    @property
    def invisible_names(self) -> tuple[str, ...]:
        return tuple(n for n, v in zip(self.overlap_names, self.visible) if not v)

    # ------------------------------------------------------------ plasticity
    def plasticity_mask(self, plastic=None) -> np.ndarray:
        """Boolean ``(K,)`` mask of the plastic vectors.

        ``plastic`` may be None (all vectors learn), an iterable of vector names
        (``'u'``, ``'u2'``) or group letters (``'U'`` selects every u), or a boolean
        array of length K.
        """
        if plastic is None:
            return np.ones(self.K, dtype=bool)
        if isinstance(plastic, str):
            plastic = [plastic]
        arr = np.asarray(plastic)
        if arr.dtype == bool:
            if arr.shape != (self.K,):
                raise InvalidParameterError(
                    f"plastic mask must have shape ({self.K},), got {arr.shape}"
                )
            return arr.copy()
        mask = np.zeros(self.K, dtype=bool)
        for name in plastic:
            if name in GROUPS:
                mask[self.slices[name]] = True
            else:
                mask[self.vector_index(name)] = True
        return mask
