"""Python source of the numba kernel for one architecture (its design: :mod:`lowrank_learning.core._kernels`).

The latent recurrence of book/theory.md, section 3 (h_t = M kappa_t + U lambda_t, kappa the input
coordinates, lambda the recurrent ones), written out for one (rank, input and output dimension,
activation, dtype) with every small matrix product spelled out as scalar terms:

- ``fk``: the forward step of one input coordinate, kappa_t = (1 - dt) kappa_{t-1} + dt x_t;
- ``fl<r>``: the forward step of recurrent coordinate r,
  lambda_t = (1 - dt) lambda_{t-1} + dt g (VM kappa + VU lambda)_{t-1};
- ``rv<r>``: the reverse step of adjoint coordinate r; ``rv0`` also adds the time step's loss
  and gradient sums to the block's totals;
- ``block``: one block of trials, the forward pass storing kappa and lambda, then the reverse pass;
- ``kern``: the entry point, a range of blocks.

The entries of Sigma's blocks are scalars ``c_<block>_<i>_<j>`` loaded before each loop over
trials; in the generated code ``k<d>`` and ``l<s>`` are a trial's kappa_d and lambda_s, ``ks<d>``
and ``ls<s>`` their stored values (T, trials).
"""

from __future__ import annotations

from .activations import is_linear
from .architecture import Architecture

_NJIT = "@numba.njit(fastmath=True, nogil=True, error_model='numpy', cache=CACHE)"
_BODY = " " * 8  # the indentation of a loop over trials


def accumulator_rows(arch: Architecture):
    """Accumulator rows: (block name, i, j) for every entry of every block the loss reads,
    in ``arch.loss_blocks`` order, then the masked squared error and the mask sum."""
    s = arch.slices
    rows = []
    for a, b in arch.loss_blocks:
        for i in range(s[a].stop - s[a].start):
            for j in range(s[b].stop - s[b].start):
                rows.append((a + b, i, j))
    return rows


def _c(name, i, j):
    """A block entry of this member (a scalar, loaded before the loop over trials)."""
    return f"c_{name}_{i}_{j}"


class _Writer:
    """The lines of one kernel's source, written step by step.

    Din input coordinates (kappa), R recurrent coordinates (lambda), Do outputs; ``idx`` the
    accumulator of each block entry (:func:`accumulator_rows`), ``n_acc`` their number with the
    squared error and the mask sum."""

    def __init__(self, arch: Architecture, n_out: int, dtype: str):
        self.Din, self.R, self.Do = arch.n_in, arch.rank, n_out
        self.lin = is_linear(arch.activation)
        rows = accumulator_rows(arch)
        self.idx = {r: i for i, r in enumerate(rows)}
        self.n_acc = len(rows) + 2
        self.F = f"np.{dtype}"
        self.kappas = ", ".join(f"ks{d}" for d in range(self.Din))  # stored kappa, one array a coordinate
        self.lambdas = ", ".join(f"ls{s}" for s in range(self.R))  # stored lambda
        self.lines: list[str] = []

    def w(self, line: str):
        self.lines.append(line)

    def comb(self, on_m, on_u, row):
        """Row ``row`` of [block on_m, block on_u] times [kappa; lambda]."""
        return " + ".join([f"{_c(on_m, row, d)} * k{d}" for d in range(self.Din)] +
                          [f"{_c(on_u, row, s)} * l{s}" for s in range(self.R)])

    def consts(self):
        """The constants and this member's block entries, at the top of a step function."""
        F = self.F
        self.w(f"    one = {F}(1.0); two = {F}(2.0); zero = {F}(0.0)")
        self.w(f"    cg = {F}(math.pi / 2.0); cq = {F}(-math.pi / 4.0)")
        for (name, i, j), k in self.idx.items():
            self.w(f"    {_c(name, i, j)} = c[{k}]")

    def gain(self):
        """g, the gain at the trial's state (kappa, lambda), in the loop body."""
        if self.lin:
            self.w(f"{_BODY}g = one")
            return
        Din, R = self.Din, self.R
        terms = [f"{_c('MM', d, e)} * k{d} * k{e}" for d in range(Din) for e in range(Din)]
        terms += [f"two * {_c('MU', d, r)} * k{d} * l{r}" for d in range(Din) for r in range(R)]
        terms += [f"{_c('UU', r, s)} * l{r} * l{s}" for r in range(R) for s in range(R)]
        self.w(f"{_BODY}dl = max({' + '.join(terms)}, zero)")
        self.w(f"{_BODY}g = one / math.sqrt(one + cg * dl)")

    def header(self):
        for line in ("import math", "import numpy as np", "import numba", ""):
            self.w(line)

    def forward_input(self):
        """``fk``: one input coordinate, kappa_t = (1 - dt) kappa_{t-1} + dt x_t."""
        for line in (_NJIT,
                     "def fk(x, g_, d, t, b0, ks, dt, decay):",
                     "    xr = x[g_, d, t, b0:]  # a row view: x[g_, d, t, b0 + j] would be gathered",
                     "    kr = ks[t]",
                     "    if t == 0:",
                     "        for j in range(kr.shape[0]):",
                     "            kr[j] = dt * xr[j]",
                     "    else:",
                     "        kp = ks[t - 1]",
                     "        for j in range(kr.shape[0]):",
                     "            kr[j] = decay * kp[j] + dt * xr[j]",
                     ""):
            self.w(line)

    def forward_recurrent(self, r):
        """``fl<r>``: recurrent coordinate r, lambda_t = (1 - dt) lambda + dt g (VM kappa + VU lambda),
        all at t - 1."""
        self.w("")
        self.w(_NJIT)
        self.w(f"def fl{r}({self.kappas}, {self.lambdas}, t, c, dt, decay):")
        self.w("    if t == 0:  # from the zero state")
        self.w(f"        ls{r}[0, :] = {self.F}(0.0)")
        self.w("        return")
        self.consts()
        self.w(f"    for j in range(ls{r}.shape[1]):")
        for d in range(self.Din):
            self.w(f"{_BODY}k{d} = ks{d}[t - 1, j]")
        for s in range(self.R):
            self.w(f"{_BODY}l{s} = ls{s}[t - 1, j]")
        self.gain()
        self.w(f"{_BODY}ls{r}[t, j] = decay * l{r} + (dt * g) * ({self.comb('VM', 'VU', r)})")
        self.w("")

    def reverse(self, r):
        """``rv<r>``: adjoint coordinate r at time t from the old adjoint ``ao*`` into ``an``;
        ``rv0`` also adds the step's loss and gradient sums to ``tot``."""
        sums = r == 0
        a_args = ", ".join(f"ao{s}" for s in range(self.R))
        self.w("")
        self.w(_NJIT)
        self.w(f"def rv{r}({self.kappas}, {self.lambdas}, y, m, g_, t, b0, {a_args}, an, c, dt, decay, tot):")
        self.consts()
        if sums:
            for k in range(self.n_acc):
                self.w(f"    A{k} = zero")
        for p in range(self.Do):
            self.w(f"    yr{p} = y[g_, {p}, t, b0:]; mr{p} = m[g_, {p}, t, b0:]")
        self.w("    for j in range(an.shape[0]):")
        for d in range(self.Din):
            self.w(f"{_BODY}k{d} = ks{d}[t, j]")
        for s in range(self.R):
            self.w(f"{_BODY}l{s} = ls{s}[t, j]; a_{s} = ao{s}[j]")
        self.gain()
        self.outputs()
        self.adjoint(r)
        if sums:
            self.gradient_sums()
        self.w(f"{_BODY}an[j] = ad")
        if sums:
            for k in range(self.n_acc):
                self.w(f"    tot[{k}] += A{k}")
        self.w("")

    def outputs(self):
        """Output p: o = ZM kappa + ZU lambda, the residual r = o g - y, e = dL/dy at unit weight."""
        for p in range(self.Do):
            self.w(f"{_BODY}o{p} = {self.comb('ZM', 'ZU', p)}")
            self.w(f"{_BODY}mk{p} = mr{p}[j]")
            self.w(f"{_BODY}r{p} = o{p} * g - yr{p}[j]")
            self.w(f"{_BODY}e{p} = two * mk{p} * r{p}")
            self.w(f"{_BODY}ge{p} = g * e{p}")

    def adjoint(self, r):
        """``ad``, the new adjoint of lambda_r; for erf units also gamma, the gain's share."""
        Din, R, Do = self.Din, self.R, self.Do
        back = " + ".join(f"{_c('VU', s, r)} * a_{s}" for s in range(R))
        terms = [f"{_c('ZU', p, r)} * ge{p}" for p in range(Do)] + [f"decay * a_{r}", f"(dt * g) * ({back})"]
        self.w(f"{_BODY}ad = {' + '.join(terms)}")
        if self.lin:
            return
        for s in range(R):
            self.w(f"{_BODY}q{s} = {self.comb('VM', 'VU', s)}")
        D = " + ".join([f"two * {_c('MU', d, r)} * k{d}" for d in range(Din)] +
                       [f"({_c('UU', r, s)} + {_c('UU', s, r)}) * l{s}" for s in range(R)])
        eo = " + ".join(f"e{p} * o{p}" for p in range(Do))
        aq = " + ".join(f"a_{s} * q{s}" for s in range(R))
        self.w(f"{_BODY}gamma = (cq * g * g * g) * ({eo} + dt * ({aq}))")
        self.w(f"{_BODY}ad = ad + gamma * ({D})")

    def gradient_sums(self):
        """The trial's squared error, mask and block-gradient terms, added to the accumulators."""
        n_acc, Do = self.n_acc, self.Do
        self.w(f"{_BODY}A{n_acc - 2} += " + " + ".join(f"mk{p} * r{p} * r{p}" for p in range(Do)))
        self.w(f"{_BODY}A{n_acc - 1} += " + " + ".join(f"mk{p}" for p in range(Do)))
        for s in range(self.R):
            self.w(f"{_BODY}ga{s} = (dt * g) * a_{s}")
        kap = [f"k{d}" for d in range(self.Din)]
        lam = [f"l{s}" for s in range(self.R)]
        ge = [f"ge{p}" for p in range(Do)]
        ga = [f"ga{s}" for s in range(self.R)]
        outer = [("ZM", ge, kap), ("ZU", ge, lam), ("VM", ga, kap), ("VU", ga, lam)]
        if not self.lin:
            outer += [("MM", [f"gamma * {k}" for k in kap], kap), ("MU", [f"two * gamma * {k}" for k in kap], lam),
                      ("UU", [f"gamma * {lm}" for lm in lam], lam)]
        for name, left, right in outer:  # block entry (i, j) += left[i] * right[j]
            for i, a in enumerate(left):
                for j, b in enumerate(right):
                    self.w(f"{_BODY}A{self.idx[(name, i, j)]} += {a} * {b}")

    def block(self):
        """``block``: one block's forward pass storing kappa and lambda in ``Wb``, then its reverse
        pass with double-buffered adjoints."""
        Din, R, F = self.Din, self.R, self.F
        a_args = ", ".join(f"ao{s}" for s in range(R))
        self.w("")
        self.w(_NJIT)
        self.w("def block(x, y, m, g_, b0, b1, c, dt, tot, Wb):")
        self.w("    T = x.shape[2]")
        self.w("    wd = b1 - b0")
        self.w(f"    decay = {F}(1.0) - dt")
        self.lines.extend(f"    ks{d} = Wb[{d}, :T * wd].reshape((T, wd))" for d in range(Din))
        self.lines.extend(f"    ls{r} = Wb[{Din + r}, :T * wd].reshape((T, wd))" for r in range(R))
        self.w("    for t in range(T):")
        self.lines.extend(f"        fk(x, g_, {d}, t, b0, ks{d}, dt, decay)" for d in range(Din))
        self.lines.extend(f"        fl{r}({self.kappas}, {self.lambdas}, t, c, dt, decay)" for r in range(R))
        self.lines.extend(f"    ao{r} = np.zeros(wd, {F}); an{r} = np.empty(wd, {F})" for r in range(R))
        self.w("    for t in range(T - 1, -1, -1):")
        self.lines.extend(f"        rv{r}({self.kappas}, {self.lambdas}, y, m, g_, t, b0, {a_args}, an{r}, c, dt, decay, tot)"
                          for r in range(R))
        self.lines.extend(f"        ao{r}, an{r} = an{r}, ao{r}" for r in range(R))

    def entry(self):
        """``kern``: blocks ``first..last-1``, each up to ``Lb`` trials of one member."""
        for line in ("", "", _NJIT,
                     "def kern(x, y, m, row, C, dt, tot, W, Lb, first, last):",
                     "    B = x.shape[3]",
                     "    per = (B + Lb - 1) // Lb",
                     "    for blk in range(first, last):",
                     "        e = blk // per",
                     "        b0 = (blk % per) * Lb",
                     "        block(x, y, m, row[e], b0, min(B, b0 + Lb), C[e], dt, tot[blk], W)"):
            self.w(line)


def kernel_source(arch: Architecture, n_out: int, dtype: str) -> str:
    """Python source of ``kern(x, y, m, row, C, dt, tot, W, Lb, first, last)`` for this architecture.

    x (G, Din, T, B), y and m (G, Dout, T, B): the distinct batches, time-major; row (E,) the
    batch of each member; C (E, len(rows)) each member's block entries in row order
    (:func:`accumulator_rows`); tot (blocks, len(rows) + 2) float64, the sums of each block
    (added to); W (blocks, Din + R, T * Lb) scratch for the stored states; Lb the most trials per
    block; blocks first..last-1 are computed. A block is up to Lb trials of one member.
    """
    src = _Writer(arch, n_out, dtype)
    src.header()
    src.forward_input()
    for r in range(src.R):
        src.forward_recurrent(r)
    for r in range(src.R):
        src.reverse(r)
    src.block()
    src.entry()
    return "\n".join(src.lines) + "\n"
