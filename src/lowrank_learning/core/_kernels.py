"""A compiled CPU kernel (numba) for the fused adjoint of the latent recurrence.

:func:`~lowrank_learning.core.adjoint.ensemble_value_and_grad` computes the losses and
``dL/dSigma`` of an ensemble of reduced models (book/theory.md, section 3: h_t = M kappa_t +
U lambda_t, kappa the input coordinates, lambda the recurrent ones; section 5 for learning in
overlap space). Its XLA version runs every time step as many small kernels, and on a CPU
their launch cost, not the arithmetic, sets the speed. This module computes the same equations
(those of the XLA version in :mod:`lowrank_learning.core.adjoint`) as one loop nest:

- Blocks of up to ``_BLOCK`` trials of one member run in parallel, split evenly between worker
  threads (the kernel releases the GIL); inside a block time runs outside and trials inside, so
  that the compiler vectorises across trials. Each block adds its sums to its own row of the
  totals (no races), in float64.
- A block's forward pass stores kappa and lambda ((Din + R) x T x trials floats) in its thread's
  scratch, reused by the thread's blocks so that it stays in the core's cache; the reverse pass
  reads them back, recomputing the gain instead of storing it.
- Every loop over trials writes exactly one array: LLVM vectorises such a loop (it checks at run
  time that the arrays do not overlap, and gives up when there are too many pairs to check, so
  a loop writing several arrays runs scalar). The forward step is therefore one loop per state
  coordinate, the reverse step one loop per adjoint coordinate (double-buffered, each reading
  the old adjoint), and the gradient sums are reductions over the trials of a time step.
- The source is generated per (rank, input and output dimension, activation, dtype) with every
  small matrix product written out (:mod:`lowrank_learning.core._kernel_source`), compiled by
  numba once and cached on disk under a hash of ``_VERSION`` and the source. Processes that need
  a new kernel at the same time take turns (a lock file beside the source): one compiles it, the
  others load it from the cache.
- Called through ``jax.pure_callback``, it works inside ``jit``, ``scan`` and ``vmap``. A callback
  copies its operands on every call, so a training loop may instead draw a chunk of epochs'
  trials in one XLA call and register them on the host (:class:`HostedBatches`): each epoch's
  callback then passes only a token and the epoch's index.

Linear and erf units only (closed-form gain); tanh, GPUs and machines without numba use the XLA
version. ``auto`` (:func:`choose`) takes numba for erf units at every size, since XLA's erf step
has a fixed cost whatever the batch; for linear units XLA's step is cheap, and numba pays for
its host call only on problems of at least ``_MIN_WORK_LINEAR`` trial-steps (ensembles). Both
versions are tested against autodiff through ``run_latent``.
"""

from __future__ import annotations

import contextlib
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

try:
    import fcntl
except ImportError:  # not on POSIX: no compile lock (each process compiles what it needs)
    fcntl = None

from ._atomic import atomic_open
from ._kernel_source import accumulator_rows, kernel_source
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


_FEATURES_ENV = "NUMBA_CPU_FEATURES"
_WIDE_ENV = "LOWRANK_KERNEL_WIDE"


def _use_wide_vectors() -> str | None:
    """On a CPU with AVX-512, have numba compile for 512-bit vectors: LLVM's tuning for recent Intel
    server cores prefers 256-bit ones, which halves the width of the kernels' vectorised loops
    (measured: the full network's kernel passes 1.1-1.6 -> 0.8-0.9 ns per element). Sets
    ``NUMBA_CPU_FEATURES`` (read when numba's compiler starts, inherited by worker processes) to
    the host's features plus ``-prefer-256-bit`` and returns it; does nothing when that variable
    is already set, when ``LOWRANK_KERNEL_WIDE=0``, without numba, or without AVX-512. Called
    before the first kernel is loaded; a process whose numba compiled something before that keeps
    its setting."""
    if os.environ.get(_FEATURES_ENV) or os.environ.get(_WIDE_ENV, "1") == "0" or not numba_available():
        return None
    try:
        import llvmlite.binding as llb

        features = llb.get_host_cpu_features().flatten()
    except Exception:  # noqa: BLE001 - an llvmlite without host detection: keep numba's default
        return None
    if "+avx512f" not in features.split(","):
        return None
    os.environ[_FEATURES_ENV] = features + ",-prefer-256-bit"
    config = sys.modules.get("numba.core.config")
    if config is not None and getattr(config, "CPU_FEATURES", None) is None:
        config.CPU_FEATURES = os.environ[_FEATURES_ENV]
    return os.environ[_FEATURES_ENV]


def supported(arch: Architecture) -> bool:
    """Whether the compiled kernel covers this architecture (linear or erf units)."""
    return is_linear(arch.activation) or arch.activation == "erf"


# Smallest linear problem, in trial-steps (members x trials x time steps), for which ``auto``
# takes numba (see the module docstring); erf units take numba at every size.
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


def pick(kernel: str, auto, refusal: str | None = None) -> str:
    """Resolve ``kernel`` ("auto", "numba" or "xla") to the one that will run, for a caller with
    its own numba kernel: ``auto`` (after :func:`requested`) is numba when ``auto()`` is true,
    else XLA; an explicit "numba" fails with ``refusal`` (the reason the kernel does not cover
    the case; None: it does) or when numba is not installed."""
    kernel = requested(kernel)
    if kernel == "auto":
        return "numba" if auto() else "xla"
    if kernel == "numba":
        if refusal is not None:
            raise InvalidParameterError(refusal)
        if not numba_available():
            raise InvalidParameterError("kernel='numba' needs numba (pip install numba)")
    return kernel


def choose(kernel: str, arch: Architecture, work: int | None = None) -> str:
    """Resolve ``kernel`` ("auto", "numba" or "xla") to the one that will run.

    ``auto`` takes the environment variable ``LOWRANK_KERNEL`` when set, else numba when it is
    installed, JAX's default backend is the CPU, and the units are erf, or linear with at least
    ``_MIN_WORK_LINEAR`` trial-steps (``work``); else XLA.
    """
    return pick(kernel,
                lambda: (numba_available() and jax.default_backend() == "cpu" and supported(arch)
                         and (work is None or work >= _MIN_WORK_LINEAR or not is_linear(arch.activation))),
                None if supported(arch) else
                f"the numba kernel covers linear and erf units, not {arch.activation!r}; use kernel='xla'")


# ------------------------------------------------------------------ compilation and threads
def _n_slots(arch: Architecture) -> int:
    """Stored states per trial and time step: the input and the recurrent coordinates (kappa, lambda)."""
    return arch.n_in + arch.rank


def _cache_dir() -> Path | None:
    root = os.environ.get("LOWRANK_KERNEL_CACHE")
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lowrank_learning"
    try:
        base.mkdir(parents=True, exist_ok=True)
        return base
    except OSError:
        return None


# JAX's persistent compilation cache: compiled XLA programs kept on disk beside the numba kernels,
# so that processes running the same programs (pytest-xdist workers, sweep workers, the chapters'
# kernels, later runs) compile each once. Programs that call the numba kernel (a host callback)
# are not cached by JAX; their XLA part is small.
JAX_CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"
_JAX_CACHE_MAX_BYTES = 2 << 30  # least recently used entries are dropped beyond this size (:func:`_prune`)
# Every program is kept, however fast it compiles: eager operations (an analysis outside ``jit``)
# compile thousands of one-operation programs of about 30 ms each, and reading one back takes about
# 2 ms. ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` set in the environment overrides this.
_JAX_MIN_ENV = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"
_JAX_CACHE_MIN_SECONDS = 0.0


def _jax_min_seconds() -> float:
    """The smallest compile time worth a disk entry: ``$JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS``
    when set to a number, else :data:`_JAX_CACHE_MIN_SECONDS`."""
    try:
        return float(os.environ[_JAX_MIN_ENV])
    except (KeyError, ValueError):
        return _JAX_CACHE_MIN_SECONDS


def jax_cache_settings() -> dict[str, str]:
    """Environment variables that make a child process use the shared compilation cache
    (``<kernel cache>/jax``, see :func:`_cache_dir`); empty when that folder cannot be created.
    A ``JAX_COMPILATION_CACHE_DIR`` already set is kept (an empty one turns the cache off)."""
    if JAX_CACHE_ENV in os.environ:
        return {}
    base = _cache_dir()
    if base is None:
        return {}
    _prune(base / "jax", _JAX_CACHE_MAX_BYTES)
    return {JAX_CACHE_ENV: str(base / "jax"),
            _JAX_MIN_ENV: str(_jax_min_seconds())}


def _prune(folder: Path, max_bytes: int) -> None:
    """Delete the least recently used files of ``folder`` until it holds at most ``max_bytes``
    (JAX's own size limit needs the ``filelock`` package). A file that another process removes
    or reads meanwhile is skipped; JAX recompiles an entry it cannot read."""
    try:
        files = [(st.st_atime, st.st_size, f) for f in folder.iterdir() if f.is_file() for st in [f.stat()]]
    except OSError:
        return
    total = sum(size for _, size, _ in files)
    for _, size, f in sorted(files, key=lambda t: t[0]):
        if total <= max_bytes:
            break
        try:
            f.unlink()
        except OSError:
            pass
        total -= size


def use_jax_cache() -> str | None:
    """Turn on the shared compilation cache in this process (call before the first compilation),
    unless ``JAX_COMPILATION_CACHE_DIR`` is set (JAX then reads it itself). Returns the folder
    in use, or None."""
    settings = jax_cache_settings()
    if settings:
        jax.config.update("jax_compilation_cache_dir", settings[JAX_CACHE_ENV])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", _jax_min_seconds())
    return jax.config.jax_compilation_cache_dir or None


def load_source(src: str, prefix: str, version: str) -> dict:
    """The namespace of generated kernel source ``src``, from a file ``<prefix><hash>.py`` in the
    cache directory (numba then caches its machine code beside it; the hash covers ``version``
    and the source); in memory when nothing can be written."""
    _use_wide_vectors()
    tag = hashlib.sha256((version + src).encode()).hexdigest()[:16]
    name = f"{prefix}{tag}"
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
            return vars(mod)
        except OSError:
            pass
    scope: dict = {"CACHE": False}
    exec(compile(src, f"<{name}>", "exec"), scope)  # noqa: S102 - our own generated source
    return scope


@lru_cache(maxsize=None)
def _compiled(arch: Architecture, n_out: int, dtype: str):
    """The numba kernel for (arch, n_out, dtype) (:func:`load_source`)."""
    return load_source(kernel_source(arch, n_out, dtype), "_lowrank_kernel_", _VERSION)["kern"]


def _arg_key(a):
    """A cheap stand-in for numba's type of a kernel argument (arrays: dtype, rank, layout)."""
    if isinstance(a, np.ndarray):
        return (a.dtype.str, a.ndim, a.flags.c_contiguous, a.flags.f_contiguous, a.flags.writeable)
    return type(a)


def _ensure_compiled(fn, args) -> None:
    """Compile the kernel ``fn`` for the types of ``args``, or load it from numba's disk cache,
    holding an exclusive lock on a file beside its source (``<source>.lock`` in the cache folder).
    Processes that need the same kernel at the same time (pytest-xdist workers, sweep workers,
    chapters) then compile it once: the others wait, and load the machine code the first one
    cached. Nothing to do when this process has the kernel already (checked on a cheap key of
    the arguments first: this runs on every call), or when it was compiled from memory (no
    cache folder)."""
    key = tuple(_arg_key(a) for a in args)
    ready = fn.__dict__.setdefault("_lowrank_ready", set())  # argument keys this dispatcher has
    if key in ready:
        return
    sig = tuple(fn.typeof_pyval(a) for a in args)
    if sig not in fn.overloads:
        source = Path(fn.py_func.__code__.co_filename)
        with contextlib.ExitStack() as stack:
            if fcntl is not None and source.is_file():
                try:
                    fh = stack.enter_context(open(source.with_suffix(".lock"), "a"))
                except OSError:  # a read-only cache folder: compile without the lock
                    pass
                else:
                    fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file is closed
            fn.compile(sig)
    ready.add(key)


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
    rows = accumulator_rows(arch)
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
    _ensure_compiled(fn, args + (W[0], Lb, 0, nblk))
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
    """Same contract as :func:`~lowrank_learning.ensemble_value_and_grad`, on the host
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
# A pure_callback copies its operands on every call, so a training loop can instead draw a whole
# chunk of epochs' trials in one XLA call, register the arrays here (zero-copy views of JAX's CPU
# buffers) and pass the callback only a token and the epoch's index in the chunk.
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
