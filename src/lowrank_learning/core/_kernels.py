"""A compiled CPU kernel (numba) for the fused adjoint of the latent recurrence.

:func:`~lowrank_learning.core.latent.ensemble_value_and_grad` computes the losses and ``dL/dSigma``
of an ensemble of reduced models. Written in XLA, each time step is about twenty small kernels,
and on a CPU their launch cost, not the arithmetic, sets the speed (about 23 ms for E8's 20
networks x 128 trials x 400 steps). This module writes the same computation as one loop nest:
blocks of trials in parallel (both cores), time outside, trials inside (so the compiler
vectorises across trials; every loop over trials writes one array, see :func:`_source`), each
thread's stored states reused by its blocks and kept in its core's cache.
The same equations as ``reduced`` (see the comment above ``ensemble_value_and_grad`` there),
generated per (rank, input and output dimension, activation, dtype) as Python source with every
small matrix product written out, compiled by numba once and cached on disk.

Linear and erf units only (closed-form gain); tanh, GPUs and machines without numba use the XLA
version. Both are tested against autodiff through ``run_latent``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache, partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ._atomic import atomic_open
from .activations import is_linear
from .architecture import Architecture
from .batch import loss_weight
from .errors import InvalidParameterError

KERNELS = ("auto", "numba", "xla")
_VERSION = "2"  # bump when the generator changes (part of the cache key)
_BLOCK = 512  # trials per block; a thread's stored states ((Din + R) x T x block floats) are reused by its blocks


def numba_available() -> bool:
    """Whether numba is installed (without importing it)."""
    return importlib.util.find_spec("numba") is not None


def supported(arch: Architecture) -> bool:
    """Whether the compiled kernel covers this architecture (linear or erf units)."""
    return is_linear(arch.activation) or arch.activation == "erf"


# Smallest linear problem, in trial-steps (members x trials x time steps), for which numba pays
# for its host call; erf units take numba at every size. Measured per epoch of learn_overlaps
# (flip-flop trials drawn every epoch), rank 1, on the shared 2-core host:
# - erf, one network, float64: numba wins at every size, because XLA's erf step costs about
#   5 microseconds whatever the batch: 0.50 vs 2.03 ms (1 x 400), 0.63 vs 1.39 (4 x 200, E9),
#   1.39 vs 4.14 (10 x 800, E6), 1.75 vs 2.44 (32 x 400), 2.22 vs 3.77 (128 x 400).
# - linear: XLA's step is cheap, so it wins on one network: 0.55 vs 0.15 ms (1 x 400), 1.40 vs
#   1.01 (32 x 400), 2.03 vs 1.75 (128 x 400, float64); numba wins on ensembles: 2.92 vs 3.62 ms
#   (4 x 128 x 400, float32), 4.10 vs 10.6 (20 x 128 x 400, float32).
_MIN_WORK_LINEAR = 1 << 17


def requested(kernel: str = "auto") -> str:
    """``kernel``, with ``auto`` replaced by the environment variable ``LOWRANK_KERNEL`` if set."""

    if kernel not in KERNELS:
        raise InvalidParameterError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if kernel == "auto":
        env = os.environ.get("LOWRANK_KERNEL", "auto")
        if env not in KERNELS:
            raise InvalidParameterError(f"LOWRANK_KERNEL must be one of {KERNELS}, got {env!r}")
        kernel = env
    return kernel


def choose(kernel: str, arch: Architecture, work: int | None = None) -> str:
    """Resolve ``kernel`` ("auto", "numba" or "xla") to the one that will run.

    ``auto`` takes the environment variable ``LOWRANK_KERNEL`` when set, else numba when it is
    installed, JAX's default backend is the CPU, and the units are erf, or linear with at least
    ``_MIN_WORK_LINEAR`` trial-steps (``work``); else XLA.
    """

    kernel = requested(kernel)
    if kernel == "auto":
        ok = (numba_available() and jax.default_backend() == "cpu" and supported(arch)
              and (work is None or work >= _MIN_WORK_LINEAR or not is_linear(arch.activation)))
        return "numba" if ok else "xla"
    if kernel == "numba":
        if not supported(arch):
            raise InvalidParameterError(
                f"the numba kernel covers linear and erf units, not {arch.activation!r}; use kernel='xla'")
        if not numba_available():
            raise InvalidParameterError("kernel='numba' needs numba (pip install numba)")
    return kernel


# ------------------------------------------------------------------ code generation
def _rows(arch: Architecture):
    """Accumulator rows: (block name, i, j) for every entry of every block the loss reads,
    in ``arch.loss_blocks`` order, then the masked squared error and the mask sum."""
    s = arch.slices
    rows = []
    for a, b in arch.loss_blocks:
        for i in range(s[a].stop - s[a].start):
            for j in range(s[b].stop - s[b].start):
                rows.append((a + b, i, j))
    return rows


def _source(arch: Architecture, n_out: int, dtype: str) -> str:
    """Python source of ``kern(x, y, m, row, C, dt, tot, W, Lb, first, last)`` for this architecture.

    x (G, Din, T, B), y and m (G, Dout, T, B): the distinct batches, time-major; row (E,) the
    batch of each member; C (E, len(rows)) each member's block entries in row order; tot
    (blocks, len(rows) + 2) float64, the sums of each block (added to); W (blocks, Din + R,
    T * Lb) scratch for the stored states; Lb the most trials per block; blocks first..last-1
    are computed. A block is up to Lb trials of one member.

    Every loop over trials writes exactly one array: LLVM then vectorises it (it checks at run
    time that the arrays do not overlap, and gives up when there are too many pairs to check;
    a loop that wrote the three states, or the per-trial sums, ran scalar and 4-5x slower).
    So the forward step is one loop per state coordinate, the reverse step one loop per adjoint
    coordinate (double-buffered, each reads the old adjoint), the gain is recomputed from the
    stored states instead of stored, and the gradient sums are vectorised reductions over the
    trials of a time step, added to float64 totals.
    """
    Din, R, Do = arch.n_in, arch.rank, n_out
    lin = is_linear(arch.activation)
    rows = _rows(arch)
    idx = {r: i for i, r in enumerate(rows)}
    F = f"np.{dtype}"
    n_acc = len(rows) + 2
    njit = "@numba.njit(fastmath=True, nogil=True, error_model='numpy', cache=CACHE)"

    def c(name, i, j):  # a block entry of this member (a scalar, loaded before the loop)
        return f"c_{name}_{i}_{j}"

    def comb(on_m, on_u, row):  # row `row` of [block on_m, block on_u] times [kappa; lambda]
        return " + ".join([f"{c(on_m, row, d)} * k{d}" for d in range(Din)] +
                          [f"{c(on_u, row, s_)} * l{s_}" for s_ in range(R)])

    ind = " " * 8
    L = []
    w = L.append

    def consts():
        w(f"    one = {F}(1.0); two = {F}(2.0); zero = {F}(0.0)")
        w(f"    cg = {F}(math.pi / 2.0); cq = {F}(-math.pi / 4.0)")
        for (name, i, j), k in idx.items():
            w(f"    {c(name, i, j)} = c[{k}]")

    def gain():  # g of the state (k, l) in the loop body
        if lin:
            w(f"{ind}g = one")
            return
        terms = [f"{c('MM', d, e)} * k{d} * k{e}" for d in range(Din) for e in range(Din)]
        terms += [f"two * {c('MU', d, r)} * k{d} * l{r}" for d in range(Din) for r in range(R)]
        terms += [f"{c('UU', r, s_)} * l{r} * l{s_}" for r in range(R) for s_ in range(R)]
        w(f"{ind}dl = max({' + '.join(terms)}, zero)")
        w(f"{ind}g = one / math.sqrt(one + cg * dl)")

    w("import math")
    w("import numpy as np")
    w("import numba")
    w("")
    # ---- forward, input coordinates: kappa_t = (1 - dt) kappa_{t-1} + dt x_t
    w(njit)
    w("def fk(x, g_, d, t, b0, ks, dt, decay):")
    w("    xr = x[g_, d, t, b0:]  # a row view: x[g_, d, t, b0 + j] would be gathered")
    w("    kr = ks[t]")
    w("    if t == 0:")
    w("        for j in range(kr.shape[0]):")
    w("            kr[j] = dt * xr[j]")
    w("    else:")
    w("        kp = ks[t - 1]")
    w("        for j in range(kr.shape[0]):")
    w("            kr[j] = decay * kp[j] + dt * xr[j]")
    w("")
    # ---- forward, recurrent coordinate r: lambda_t = (1 - dt) lambda + dt g (VM kappa + VU lambda), at t-1
    kp_args = ", ".join(f"ks{d}" for d in range(Din))
    lp_args = ", ".join(f"ls{s_}" for s_ in range(R))
    for r in range(R):
        w("")
        w(njit)
        w(f"def fl{r}({kp_args}, {lp_args}, t, c, dt, decay):")
        w("    if t == 0:  # from the zero state")
        w(f"        ls{r}[0, :] = {F}(0.0)")
        w("        return")
        consts()
        w(f"    for j in range(ls{r}.shape[1]):")
        for d in range(Din):
            w(f"{ind}k{d} = ks{d}[t - 1, j]")
        for s_ in range(R):
            w(f"{ind}l{s_} = ls{s_}[t - 1, j]")
        gain()
        w(f"{ind}ls{r}[t, j] = decay * l{r} + (dt * g) * ({comb('VM', 'VU', r)})")
        w("")
    # ---- reverse, adjoint coordinate r (r = 0 also sums the gradient)
    k_args = ", ".join(f"ks{d}" for d in range(Din))
    l_args = ", ".join(f"ls{s_}" for s_ in range(R))
    a_args = ", ".join(f"ao{s_}" for s_ in range(R))
    for r in range(R):
        sums = r == 0
        w("")
        w(njit)
        w(f"def rv{r}({k_args}, {l_args}, y, m, g_, t, b0, {a_args}, an, c, dt, decay, tot):")
        consts()
        if sums:
            for k in range(n_acc):
                w(f"    A{k} = zero")
        for p in range(Do):
            w(f"    yr{p} = y[g_, {p}, t, b0:]; mr{p} = m[g_, {p}, t, b0:]")
        w("    for j in range(an.shape[0]):")
        for d in range(Din):
            w(f"{ind}k{d} = ks{d}[t, j]")
        for s_ in range(R):
            w(f"{ind}l{s_} = ls{s_}[t, j]; a_{s_} = ao{s_}[j]")
        gain()
        for p in range(Do):
            w(f"{ind}o{p} = {comb('ZM', 'ZU', p)}")
            w(f"{ind}mk{p} = mr{p}[j]")
            w(f"{ind}r{p} = o{p} * g - yr{p}[j]")
            w(f"{ind}e{p} = two * mk{p} * r{p}")
            w(f"{ind}ge{p} = g * e{p}")
        back = " + ".join(f"{c('VU', s_, r)} * a_{s_}" for s_ in range(R))
        terms = [f"{c('ZU', p, r)} * ge{p}" for p in range(Do)] + [f"decay * a_{r}", f"(dt * g) * ({back})"]
        w(f"{ind}ad = {' + '.join(terms)}")
        if not lin:
            for s_ in range(R):
                w(f"{ind}q{s_} = {comb('VM', 'VU', s_)}")
            D = " + ".join([f"two * {c('MU', d, r)} * k{d}" for d in range(Din)] +
                           [f"({c('UU', r, s_)} + {c('UU', s_, r)}) * l{s_}" for s_ in range(R)])
            eo = " + ".join(f"e{p} * o{p}" for p in range(Do))
            aq = " + ".join(f"a_{s_} * q{s_}" for s_ in range(R))
            w(f"{ind}gamma = (cq * g * g * g) * ({eo} + dt * ({aq}))")
            w(f"{ind}ad = ad + gamma * ({D})")
        if sums:
            w(f"{ind}A{n_acc - 2} += " + " + ".join(f"mk{p} * r{p} * r{p}" for p in range(Do)))
            w(f"{ind}A{n_acc - 1} += " + " + ".join(f"mk{p}" for p in range(Do)))
            for s_ in range(R):
                w(f"{ind}ga{s_} = (dt * g) * a_{s_}")
            kap = [f"k{d}" for d in range(Din)]
            lam = [f"l{s_}" for s_ in range(R)]
            ge = [f"ge{p}" for p in range(Do)]
            ga = [f"ga{s_}" for s_ in range(R)]
            outer = [("ZM", ge, kap), ("ZU", ge, lam), ("VM", ga, kap), ("VU", ga, lam)]
            if not lin:
                outer += [("MM", [f"gamma * {k}" for k in kap], kap), ("MU", [f"two * gamma * {k}" for k in kap], lam),
                          ("UU", [f"gamma * {lm}" for lm in lam], lam)]
            for name, left, right in outer:  # block entry (i, j) += left[i] * right[j]
                for i, a in enumerate(left):
                    for j, b in enumerate(right):
                        w(f"{ind}A{idx[(name, i, j)]} += {a} * {b}")
        w(f"{ind}an[j] = ad")
        if sums:
            for k in range(n_acc):
                w(f"    tot[{k}] += A{k}")
        w("")
    # ---- one block: the forward pass storing the states, then the reverse pass
    w("")
    w(njit)
    w("def block(x, y, m, g_, b0, b1, c, dt, tot, Wb):")
    w("    T = x.shape[2]")
    w("    wd = b1 - b0")
    w(f"    decay = {F}(1.0) - dt")
    L.extend(f"    ks{d} = Wb[{d}, :T * wd].reshape((T, wd))" for d in range(Din))
    L.extend(f"    ls{r} = Wb[{Din + r}, :T * wd].reshape((T, wd))" for r in range(R))
    w("    for t in range(T):")
    L.extend(f"        fk(x, g_, {d}, t, b0, ks{d}, dt, decay)" for d in range(Din))
    L.extend(f"        fl{r}({kp_args}, {lp_args}, t, c, dt, decay)" for r in range(R))
    L.extend(f"    ao{r} = np.zeros(wd, {F}); an{r} = np.empty(wd, {F})" for r in range(R))
    w("    for t in range(T - 1, -1, -1):")
    L.extend(f"        rv{r}({k_args}, {l_args}, y, m, g_, t, b0, {a_args}, an{r}, c, dt, decay, tot)"
             for r in range(R))
    L.extend(f"        ao{r}, an{r} = an{r}, ao{r}" for r in range(R))
    w("")
    w("")
    w(njit)
    w("def kern(x, y, m, row, C, dt, tot, W, Lb, first, last):")
    w("    B = x.shape[3]")
    w("    per = (B + Lb - 1) // Lb")
    w("    for blk in range(first, last):")
    w("        e = blk // per")
    w("        b0 = (blk % per) * Lb")
    w("        block(x, y, m, row[e], b0, min(B, b0 + Lb), C[e], dt, tot[blk], W)")
    return "\n".join(L) + "\n"


def _n_slots(arch: Architecture) -> int:
    """Stored states per trial and time step: the input and the recurrent coordinates."""
    return arch.n_in + arch.rank


def _cache_dir() -> Path | None:
    root = os.environ.get("LOWRANK_KERNEL_CACHE")
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lowrank_learning"
    try:
        base.mkdir(parents=True, exist_ok=True)
        return base
    except OSError:
        return None


@lru_cache(maxsize=None)
def _compiled(arch: Architecture, n_out: int, dtype: str):
    """The numba kernel for (arch, n_out, dtype), from a source file in the cache directory
    (numba then caches its machine code beside it); in memory when nothing can be written."""
    src = _source(arch, n_out, dtype)
    tag = hashlib.sha256((_VERSION + src).encode()).hexdigest()[:16]
    name = f"_lowrank_kernel_{tag}"
    folder = _cache_dir()
    if folder is not None:
        path = folder / f"{name}.py"
        try:
            if not path.exists():
                with atomic_open(path, "w", encoding="utf-8") as fh:
                    fh.write("CACHE = True\n" + src)
            spec = importlib.util.spec_from_file_location(name, path)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[name] = mod
            spec.loader.exec_module(mod)
            return mod.kern
        except OSError:
            pass
    scope: dict = {"CACHE": False}
    exec(compile(src, f"<{name}>", "exec"), scope)  # noqa: S102 - our own generated source
    return scope["kern"]


_SCRATCH = threading.local()


def _scratch(shape, dtype):
    """Reused scratch (fresh pages on every call would cost page faults), one per calling
    thread: two threads running kernels at once (e.g. ``twins.confirm_pair``) must not share it."""
    key = (shape, np.dtype(dtype).name)
    buf = getattr(_SCRATCH, "buffers", {}).get(key)
    if buf is None:
        buf = np.empty(shape, dtype)
        _SCRATCH.buffers = {key: buf}
    return buf


def _threads() -> int:
    """Worker threads: ``LOWRANK_KERNEL_THREADS`` if set, else the CPUs this process may use."""
    env = os.environ.get("LOWRANK_KERNEL_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@lru_cache(maxsize=None)
def _pool_for(n: int):

    return ThreadPoolExecutor(max_workers=n, thread_name_prefix="lowrank-kernel")


def _pool():
    return _pool_for(_threads())


def _block_size(E: int, B: int) -> int:
    """Trials per block: at most ``_BLOCK``, and small enough that there are at least two
    blocks per thread (a single network's batch still uses every core); a multiple of 8."""
    per = max(-(-B // _BLOCK), -(-2 * _threads() // E))
    return min(B, 8 * -(-B // (8 * per)))


def _host(arch: Architecture, dt: float, loss_kind: str, Sigma, inputs, targets, mask, row):
    """numpy side. Sigma (..., E, K, K); inputs (..., G, Din, T, B), targets and mask
    (..., G, Dout, T, B), time-major; row (..., E) the batch of each member. Leading axes
    (from ``vmap``) are flattened into the ensemble. Returns (loss (..., E), G (..., E, K, K))."""
    Sigma = np.asarray(Sigma)
    dtype = Sigma.dtype
    K = Sigma.shape[-1]
    lead = Sigma.shape[:-2]
    S = Sigma.reshape(-1, K, K)
    Din, T, B = inputs.shape[-3:]
    Do = targets.shape[-3]
    x = np.ascontiguousarray(np.asarray(inputs, dtype).reshape(-1, Din, T, B))
    y = np.ascontiguousarray(np.asarray(targets, dtype).reshape(-1, Do, T, B))
    m = np.ascontiguousarray(np.asarray(mask, dtype).reshape(-1, Do, T, B))
    Gn = np.asarray(inputs).shape[-4] if np.ndim(inputs) >= 4 else 1
    row = np.asarray(row).astype(np.int64).reshape(-1, np.shape(row)[-1])
    row = (row + Gn * np.arange(row.shape[0])[:, None]).reshape(-1)  # into the flattened batches
    E = S.shape[0]
    rows = _rows(arch)
    s = arch.slices
    coef = np.empty((E, len(rows)), dtype)
    for k, (name, i, j) in enumerate(rows):
        coef[:, k] = S[:, s[name[0]].start + i, s[name[1]].start + j]
    Lb = _block_size(E, B)
    per = -(-B // Lb)
    nblk = E * per
    sums = np.zeros((nblk, len(rows) + 2), np.float64)  # each block adds its own row: no races
    n = min(_threads(), nblk)
    # one scratch per thread, reused by its blocks: it stays in the core's cache
    W = _scratch((n, _n_slots(arch), T * Lb), dtype)
    fn = _compiled(arch, Do, dtype.name)
    args = (x, y, m, row, coef, dtype.type(dt), sums)
    if n <= 1:
        fn(*args, W[0], Lb, 0, nblk)
    else:  # blocks split evenly between threads (the kernel releases the GIL)
        cuts = [nblk * i // n for i in range(n + 1)]
        list(_pool().map(lambda i: fn(*args, W[i], Lb, cuts[i], cuts[i + 1]), range(n)))
    tot = sums.reshape(E, per, -1).sum(axis=1).T  # (rows + 2, E), float64
    sq, msum = tot[-2], tot[-1]
    wgt = loss_weight(loss_kind, dt, B, msum, xp=np)
    G = np.zeros((E, K, K), dtype)
    for k, (name, i, j) in enumerate(rows):
        G[:, s[name[0]].start + i, s[name[1]].start + j] = wgt * tot[k]
    return (sq * wgt).astype(dtype).reshape(lead), G.reshape(Sigma.shape)


def time_major(a, dtype):
    """(..., G, B, T, D) -> (..., G, D, T, B) in ``dtype``: the kernel's layout (trials innermost)."""
    return jnp.swapaxes(jnp.moveaxis(jnp.asarray(a, dtype), -1, -3), -1, -2)


def value_and_grad(arch: Architecture, Sigma, inputs, targets, mask, dt: float, loss_kind: str, row=None):
    """Same contract as :func:`~lowrank_learning.core.latent.ensemble_value_and_grad`, on the host
    through ``jax.pure_callback`` (usable inside ``jit``, ``scan`` and ``vmap``).

    With ``row`` (E,) ints, ``inputs`` etc. hold G distinct batches (G, B, T, .) and member
    ``e`` trains on batch ``row[e]`` (members that share trials are not copied)."""
    Sigma = jnp.asarray(Sigma)
    dtype = Sigma.dtype
    E = Sigma.shape[-3]
    if row is None:
        row = jnp.arange(E, dtype=jnp.int32)
    out = (jax.ShapeDtypeStruct(Sigma.shape[:-2], dtype), jax.ShapeDtypeStruct(Sigma.shape, dtype))

    def host(S, x, y, m, r):
        return _host(arch, float(dt), loss_kind, S, x, y, m, r)

    tm = partial(time_major, dtype=dtype)
    return jax.pure_callback(host, out, Sigma, tm(inputs), tm(targets), tm(mask), jnp.asarray(row, jnp.int32),
                             vmap_method="broadcast_all")


# ------------------------------------------------------------------ batches kept on the host
# A pure_callback copies its operands (about 0.5 ms per epoch for E8's 1.2 MB of trials), so a
# training loop can instead draw a whole chunk of epochs' trials in one XLA call, register the
# arrays here (zero-copy views of JAX's CPU buffers) and pass the callback only a token and the
# epoch's index in the chunk.
_HOSTED: dict = {}
_TOKENS = itertools.count()


class HostedBatches:
    """Context manager registering a chunk's batches for :func:`hosted_value_and_grad`: a list of
    pieces, each a tuple (inputs, targets, mask) of ``per_piece`` epochs, (n, G, D, T, B) each
    (time-major); epoch ``i`` of the chunk is ``pieces[i // per_piece][.][i % per_piece]``.
    Entering returns the token, leaving drops the arrays."""

    def __init__(self, pieces, per_piece: int):
        self.pieces = [tuple(np.asarray(a) for a in piece) for piece in pieces]
        self.per_piece = int(per_piece)

    def __enter__(self) -> int:
        self.token = next(_TOKENS)
        _HOSTED[self.token] = self
        return self.token

    def __exit__(self, *exc):
        _HOSTED.pop(self.token, None)
        return False

    def epoch(self, i: int):
        x, y, m = self.pieces[i // self.per_piece]
        j = i % self.per_piece
        return x[j], y[j], m[j]


def hosted_value_and_grad(arch: Architecture, Sigma, token, index, row, dt: float, loss_kind: str):
    """Losses and ``dL/dSigma`` (E,), (E, K, K) of an ensemble on epoch ``index`` of the batches
    registered under ``token`` (:class:`HostedBatches`); member ``e`` trains on batch
    ``row[e]`` (a static tuple). Usable inside ``jit`` and ``scan`` (not ``vmap``)."""
    Sigma = jnp.asarray(Sigma)
    dtype = Sigma.dtype
    out = (jax.ShapeDtypeStruct(Sigma.shape[:-2], dtype), jax.ShapeDtypeStruct(Sigma.shape, dtype))
    row_np = np.asarray(row, dtype=np.int64)

    def host(S, tok, i):
        x, y, m = _HOSTED[int(tok)].epoch(int(i))
        return _host(arch, float(dt), loss_kind, S, x, y, m, row_np)

    return jax.pure_callback(host, out, Sigma, jnp.asarray(token, jnp.int32), jnp.asarray(index, jnp.int32))
