"""A compiled CPU kernel (numba) for the fused adjoint of the latent recurrence.

:func:`~lowrank_learning.reduced.ensemble_value_and_grad` computes the losses and ``dL/dSigma``
of an ensemble of reduced models. Written in XLA, each time step is about twenty small kernels,
and on a CPU their launch cost, not the arithmetic, sets the speed (about 23 ms for E8's 20
networks x 128 trials x 400 steps). This module writes the same computation as one loop nest:
blocks of trials in parallel (both cores), time outside, trials inside (so the compiler
vectorises across trials), each block's forward states kept in cache for its reverse pass.
The same equations as ``reduced`` (see the comment above ``ensemble_value_and_grad`` there),
generated per (rank, input and output dimension, activation, dtype) as Python source with every
small matrix product written out, compiled by numba once and cached on disk.

Linear and erf units only (closed-form gain); tanh, GPUs and machines without numba use the XLA
version. Both are tested against autodiff through ``run_latent``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from functools import lru_cache
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ._atomic import atomic_open
from .activations import is_linear
from .architecture import Architecture

KERNELS = ("auto", "numba", "xla")
_VERSION = "1"  # bump when the generator changes (part of the cache key)
_BLOCK = 512  # trials per block: a block's stored states (3 x T x 512 floats) stay in cache


def numba_available() -> bool:
    """Whether numba is installed (without importing it)."""
    return importlib.util.find_spec("numba") is not None


def supported(arch: Architecture) -> bool:
    """Whether the compiled kernel covers this architecture (linear or erf units)."""
    return is_linear(arch.activation) or arch.activation == "erf"


# Smallest linear problem, in trial-steps (members x trials x time steps), for which numba pays
# for its host call (0.3-0.7 ms fixed); erf units take numba at every size. Measured per epoch of learn_overlaps, float64, rank 1, one network:
# - erf: numba wins at every size, because XLA's erf step costs about 5 microseconds whatever the
#   batch: 0.71 vs 1.84 ms (1 x 400), 0.78 vs 1.20 (4 x 200, E9), 1.61 vs 5.13 (10 x 800, E6),
#   2.0 vs 3.0 (32 x 400); 8.5 vs 19 ms for E8's 20 x 128 x 400 (float32).
# - linear: XLA's step is cheap, so it wins on small problems: 0.05 vs 0.72 ms (1 x 400),
#   0.31 vs 0.68 (4 x 200), 0.99 vs 1.70 (32 x 400), 1.58 vs 1.42 (10 x 800).
_MIN_WORK_LINEAR = 32768


def requested(kernel: str = "auto") -> str:
    """``kernel``, with ``auto`` replaced by the environment variable ``LOWRANK_KERNEL`` if set."""
    from .errors import InvalidParameterError

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
    from .errors import InvalidParameterError

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
    """Python source of ``kern(x, y, m, row, C, dt, acc, W, Lb)`` for this architecture.

    x (G, Din, T, B), y and m (G, Dout, T, B): the distinct batches, time-major; row (E,) the
    batch of each member; C (len(rows), E) each member's block entries in row order; acc
    (len(rows) + 2, E, B) the per-trial sums (written); W (blocks, Din + R (+ 1 for the gain), T * Lb) scratch;
    Lb the most trials per block. A block is up to Lb trials of one member."""
    Din, R, Do = arch.n_in, arch.rank, n_out
    lin = is_linear(arch.activation)
    rows = _rows(arch)
    idx = {r: i for i, r in enumerate(rows)}
    F = f"np.{dtype}"
    n_acc = len(rows) + 2

    def c(name, i, j):  # a block entry of this member (a scalar inside the block)
        return f"c_{name}_{i}_{j}"

    def acc(name, i, j):
        return f"A{idx[(name, i, j)]}"

    def comb(on_m, on_u, row):  # row `row` of [block on_m, block on_u] times [kappa; lambda]
        return " + ".join([f"{c(on_m, row, d)} * k{d}" for d in range(Din)] +
                          [f"{c(on_u, row, s_)} * l{s_}" for s_ in range(R)])

    L = []
    w = L.append
    w("import math")
    w("import numpy as np")
    w("import numba")
    w("")
    w("@numba.njit(fastmath=True, nogil=True, error_model='numpy', cache=CACHE)")
    w("def kern(x, y, m, row, C, dt, acc, W, Lb, first, last):")
    w("    B = x.shape[3]")
    w("    per = (B + Lb - 1) // Lb")
    w("    for blk in range(first, last):")
    w("        e = blk // per")
    w("        b0 = (blk % per) * Lb")
    w("        block(x, y, m, row[e], e, b0, min(B, b0 + Lb), C, dt, acc, W[blk])")
    w("")
    w("")
    w("@numba.njit(fastmath=True, nogil=True, error_model='numpy', cache=CACHE)")
    w("def block(x, y, m, g_, e, b0, b1, C, dt, acc, Wb):")
    w("    T = x.shape[2]")
    w("    wd = b1 - b0")
    w(f"    one = {F}(1.0); two = {F}(2.0); zero = {F}(0.0)")
    w(f"    decay = one - dt; cg = {F}(math.pi / 2.0); cq = {F}(-math.pi / 4.0)")
    w("    if True:")
    for (name, i, j), k in idx.items():
        w(f"        {c(name, i, j)} = C[{k}, e]")
    # stored states: contiguous (T, wd) views of the scratch
    for d in range(Din):
        w(f"        ks{d} = Wb[{d}, :T * wd].reshape((T, wd))")
    for r in range(R):
        w(f"        ls{r} = Wb[{Din + r}, :T * wd].reshape((T, wd))")
    if not lin:
        w(f"        gs = Wb[{Din + R}, :T * wd].reshape((T, wd))")
    w(f"        z0 = np.zeros(wd, {F}); z1 = np.ones(wd, {F})  # the state at t = 0")
    for k in range(n_acc):
        w(f"        A{k} = np.zeros(wd, {F})")
    for r in range(R):
        w(f"        an{r} = np.zeros(wd, {F})")
    ind = " " * 16
    # ---- forward: states 1..T
    w("        for t in range(T):")
    for d in range(Din):
        w(f"            xr{d} = x[g_, {d}, t, b0:b1]; kr{d} = ks{d}[t]; kp{d} = ks{d}[t - 1] if t > 0 else z0")
    for r in range(R):
        w(f"            lr{r} = ls{r}[t]; lp{r} = ls{r}[t - 1] if t > 0 else z0")
    if not lin:
        w("            gr = gs[t]; gq = gs[t - 1] if t > 0 else z1")
    w("            for j in range(wd):")
    for d in range(Din):
        w(f"{ind}k{d} = kp{d}[j]")
    for r in range(R):
        w(f"{ind}l{r} = lp{r}[j]")
    w(f"{ind}g = {'one' if lin else 'gq[j]'}")
    for d in range(Din):
        w(f"{ind}kn{d} = decay * k{d} + dt * xr{d}[j]")
    for r in range(R):
        w(f"{ind}ln{r} = decay * l{r} + (dt * g) * ({comb('VM', 'VU', r)})")
    for d in range(Din):
        w(f"{ind}kr{d}[j] = kn{d}")
    for r in range(R):
        w(f"{ind}lr{r}[j] = ln{r}")
    if not lin:
        terms = [f"{c('MM', d, e)} * kn{d} * kn{e}" for d in range(Din) for e in range(Din)]
        terms += [f"two * {c('MU', d, r)} * kn{d} * ln{r}" for d in range(Din) for r in range(R)]
        terms += [f"{c('UU', r, s_)} * ln{r} * ln{s_}" for r in range(R) for s_ in range(R)]
        w(f"{ind}dl = max({' + '.join(terms)}, zero)")
        w(f"{ind}gn = one / math.sqrt(one + cg * dl)")
        w(f"{ind}gr[j] = gn")
    # ---- reverse: outputs, loss, adjoint and the per-trial block sums (states T..1)
    w("        for t in range(T - 1, -1, -1):")
    for d in range(Din):
        w(f"            kr{d} = ks{d}[t]")
    for r in range(R):
        w(f"            lr{r} = ls{r}[t]")
    for p in range(Do):
        w(f"            yr{p} = y[g_, {p}, t, b0:b1]; mr{p} = m[g_, {p}, t, b0:b1]")
    if not lin:
        w("            gr = gs[t]")
    w("            for j in range(wd):")
    for d in range(Din):
        w(f"{ind}k{d} = kr{d}[j]")
    for r in range(R):
        w(f"{ind}l{r} = lr{r}[j]; a_{r} = an{r}[j]")
    w(f"{ind}g = {'one' if lin else 'gr[j]'}")
    for p in range(Do):
        w(f"{ind}o{p} = {comb('ZM', 'ZU', p)}")
        w(f"{ind}mk{p} = mr{p}[j]")
        w(f"{ind}r{p} = o{p} * g - yr{p}[j]")
        w(f"{ind}e{p} = two * mk{p} * r{p}")
        w(f"{ind}ge{p} = g * e{p}")
    w(f"{ind}A{n_acc - 2}[j] += " + " + ".join(f"mk{p} * r{p} * r{p}" for p in range(Do)))
    w(f"{ind}A{n_acc - 1}[j] += " + " + ".join(f"mk{p}" for p in range(Do)))
    for r in range(R):
        w(f"{ind}ga{r} = (dt * g) * a_{r}")
    for p in range(Do):
        for d in range(Din):
            w(f"{ind}{acc('ZM', p, d)}[j] += ge{p} * k{d}")
        for r in range(R):
            w(f"{ind}{acc('ZU', p, r)}[j] += ge{p} * l{r}")
    for r in range(R):
        for d in range(Din):
            w(f"{ind}{acc('VM', r, d)}[j] += ga{r} * k{d}")
        for s_ in range(R):
            w(f"{ind}{acc('VU', r, s_)}[j] += ga{r} * l{s_}")
    for r in range(R):
        back = " + ".join(f"{c('VU', s_, r)} * a_{s_}" for s_ in range(R))
        terms = [f"{c('ZU', p, r)} * ge{p}" for p in range(Do)] + [f"decay * a_{r}", f"(dt * g) * ({back})"]
        w(f"{ind}ad{r} = {' + '.join(terms)}")
    if not lin:
        for r in range(R):
            w(f"{ind}q{r} = {comb('VM', 'VU', r)}")
            D = " + ".join([f"two * {c('MU', d, r)} * k{d}" for d in range(Din)] +
                           [f"({c('UU', r, s_)} + {c('UU', s_, r)}) * l{s_}" for s_ in range(R)])
            w(f"{ind}D{r} = {D}")
        eo = " + ".join(f"e{p} * o{p}" for p in range(Do))
        aq = " + ".join(f"a_{r} * q{r}" for r in range(R))
        w(f"{ind}gamma = (cq * g * g * g) * ({eo} + dt * ({aq}))")
        for r in range(R):
            w(f"{ind}ad{r} = ad{r} + gamma * D{r}")
        for d in range(Din):
            for e in range(Din):
                w(f"{ind}{acc('MM', d, e)}[j] += gamma * k{d} * k{e}")
            for r in range(R):
                w(f"{ind}{acc('MU', d, r)}[j] += two * gamma * k{d} * l{r}")
        for r in range(R):
            for s_ in range(R):
                w(f"{ind}{acc('UU', r, s_)}[j] += gamma * l{r} * l{s_}")
    for r in range(R):
        w(f"{ind}an{r}[j] = ad{r}")
    for k in range(n_acc):
        w(f"        acc[{k}, e, b0:b1] = A{k}")
    return "\n".join(L) + "\n"


def _n_slots(arch: Architecture) -> int:
    return arch.n_in + arch.rank + (0 if is_linear(arch.activation) else 1)


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


_SCRATCH: dict = {}


def _scratch(shape, dtype):
    """Reused scratch (fresh pages on every call would cost page faults)."""
    key = (shape, np.dtype(dtype).name)
    buf = _SCRATCH.get(key)
    if buf is None:
        _SCRATCH.clear()
        buf = _SCRATCH[key] = np.empty(shape, dtype)
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
    from concurrent.futures import ThreadPoolExecutor

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
    coef = np.empty((len(rows), E), dtype)
    for k, (name, i, j) in enumerate(rows):
        coef[k] = S[:, s[name[0]].start + i, s[name[1]].start + j]
    Lb = _block_size(E, B)
    per = -(-B // Lb)
    acc = np.empty((len(rows) + 2, E, B), dtype)
    W = _scratch((E * per, _n_slots(arch), T * Lb), dtype)
    fn = _compiled(arch, Do, dtype.name)
    args = (x, y, m, row, coef, dtype.type(dt), acc, W, Lb)
    nblk = E * per
    n = min(_threads(), nblk)
    if n <= 1:
        fn(*args, 0, nblk)
    else:  # blocks split evenly between threads (the kernel releases the GIL)
        cuts = [nblk * i // n for i in range(n + 1)]
        list(_pool().map(lambda i: fn(*args, cuts[i], cuts[i + 1]), range(n)))
    tot = acc.sum(axis=2)  # (rows + 2, E)
    sq, msum = tot[-2], tot[-1]
    if loss_kind == "sum_time":
        wgt = np.full(E, dt / B, dtype)
    else:
        wgt = np.where(msum > 0, 1.0 / np.where(msum > 0, msum, 1.0), 0.0).astype(dtype)
    G = np.zeros((E, K, K), dtype)
    for k, (name, i, j) in enumerate(rows):
        G[:, s[name[0]].start + i, s[name[1]].start + j] = wgt * tot[k]
    return (sq * wgt).astype(dtype).reshape(lead), G.reshape(Sigma.shape)


def value_and_grad(arch: Architecture, Sigma, inputs, targets, mask, dt: float, loss_kind: str, row=None):
    """Same contract as :func:`~lowrank_learning.reduced.ensemble_value_and_grad`, on the host
    through ``jax.pure_callback`` (usable inside ``jit``, ``scan`` and ``vmap``).

    With ``row`` (E,) ints, ``inputs`` etc. hold G distinct batches (G, B, T, .) and member
    ``e`` trains on batch ``row[e]`` (members that share trials are not copied)."""
    Sigma = jnp.asarray(Sigma)
    dtype = Sigma.dtype
    E = Sigma.shape[-3]
    if row is None:
        row = jnp.arange(E, dtype=jnp.int32)
    tm = lambda a: jnp.swapaxes(jnp.moveaxis(jnp.asarray(a, dtype), -1, -3), -1, -2)  # noqa: E731  (.., G, D, T, B)
    out = (jax.ShapeDtypeStruct(Sigma.shape[:-2], dtype), jax.ShapeDtypeStruct(Sigma.shape, dtype))

    def host(S, x, y, m, r):
        return _host(arch, float(dt), loss_kind, S, x, y, m, r)

    return jax.pure_callback(host, out, Sigma, tm(inputs), tm(targets), tm(mask), jnp.asarray(row, jnp.int32),
                             vmap_method="broadcast_all")
