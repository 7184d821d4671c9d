"""A result cache for heavy computations, keyed by their inputs, the package's code and the
software that computes them.

``memo(name, fn, *args, **kwargs)`` returns ``fn(*args, **kwargs)``, from disk when an entry
for the same name, function, arguments, package source and numerical environment exists.
Editing a plot never reruns a simulation (``plotting.py`` is not part of the key); editing the
model code always does (:func:`source_hash`), and so does another version of JAX, jaxlib,
NumPy, SciPy or Numba, another operating system or processor architecture, another
accelerator, or JAX's 64-bit mode switched the other way (:func:`key_environment`).

Keys are built from a canonical, type-tagged encoding of the arguments (numbers, strings,
containers, arrays, frozen dataclasses, JAX pytrees); anything else is a ``TypeError``, never a
``repr`` or a pickle. Entries are ``.npz`` files holding the arrays, a JSON manifest of the
structure and a checksum, written atomically and verified on load: a corrupt entry is reported,
deleted and recomputed. :func:`lookup` and :func:`store` read and write one entry; ``memo`` and
:func:`~lowrank_learning.run_sweep` both go through them.

Each entry's manifest records the model-code hash and the numerical environment it was made
with, and when; :func:`scan` classifies the entries by them without loading any array and
:func:`prune` deletes those the current code and software can never hit (``lowrank-learning
cache info`` and ``lowrank-learning cache prune`` on the command line).

Environment
-----------
``LOWRANK_LEARNING_CACHE``
    Cache directory (default ``~/.cache/lowrank_learning``).
``LOWRANK_LEARNING_NO_CACHE=1``
    Bypass the cache: always call ``fn`` and store nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import math
import os
import re
import struct
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from . import provenance
from ._atomic import atomic_open
from .errors import DivergenceError, InvalidParameterError

__all__ = ["CacheEntry", "CacheWarning", "cache_dir", "cache_key", "check_name", "enabled", "entry_path",
           "key_environment", "lookup", "memo", "memo_or_divergence", "package_hash", "prune", "scan",
           "source_hash", "store"]

_FORMAT = 2
_MANIFEST = "__manifest__"
_CHECKSUM = "__checksum__"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class CacheWarning(UserWarning):
    """A cache entry is unusable (corrupt, truncated, tampered with): it is deleted and recomputed."""


# --------------------------------------------------------------------------- source hash
# Modules that only present or orchestrate results: editing them must not rerun a simulation.
# An entry ending in "/" excludes a whole subpackage (every file under that folder).
PRESENTATION_MODULES = ("plotting.py", "cli.py", "core/cache.py", "core/provenance.py", "results.py",
                        "reproduce/")


def _excluded(rel: str, exclude) -> bool:
    """Whether the package-relative posix path ``rel`` is excluded: an exact file name in
    ``exclude``, or a file under a folder named there with a trailing ``/``."""
    return any(rel.startswith(e) if e.endswith("/") else rel == e for e in exclude)


def _package_root() -> Path:
    spec = importlib.util.find_spec("lowrank_learning")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("cannot locate the installed lowrank_learning package")
    return Path(next(iter(spec.submodule_search_locations)))


def _hash_package(exclude=(), root=None) -> str:
    """sha256 over the ``*.py`` files under ``root`` (default: the installed package), in
    sorted order of their relative paths, skipping those :func:`_excluded` by ``exclude``."""
    root = _package_root() if root is None else Path(root)
    h = hashlib.sha256()
    for rel in sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py")):
        if _excluded(rel, exclude):
            continue
        data = (root / rel).read_bytes()
        h.update(rel.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def source_hash() -> str:
    """sha256 of the package's model code: every ``*.py`` file except :data:`PRESENTATION_MODULES`
    (plotting, the command line, the cache itself, provenance, result files and the
    ``reproduce/`` pipeline).

    Part of every cache key: changing the model always reruns a simulation, editing a plot,
    the command line or the reproduction pipeline never does. Computed once per process.
    """
    return _hash_package(exclude=PRESENTATION_MODULES)


@functools.lru_cache(maxsize=1)
def package_hash() -> str:
    """sha256 over every ``*.py`` file of the package (plotting included): a notebook whose
    figures may change must be re-executed (``lowrank-learning reproduce`` stamps use this)."""
    return _hash_package()


_MODE_KEYS = ("float64",)  # settings of a process, not software: entries under either stay current


def key_environment() -> dict:
    """The numerical environment that is part of every key:
    :func:`~lowrank_learning.core.provenance.numeric_environment` (the versions of JAX, jaxlib,
    NumPy, SciPy and Numba, the operating system, the processor architecture and JAX's
    platform and device kind) and ``float64``, whether JAX's 64-bit mode is on in this process
    (it changes the precision of every array JAX creates from Python numbers). Starts JAX's
    default backend if it has not started yet."""
    return dict(provenance.numeric_environment(), float64=bool(jax.config.jax_enable_x64))


def _software(env):
    """``env`` without the per-process settings (:data:`_MODE_KEYS`)."""
    return {k: v for k, v in env.items() if k not in _MODE_KEYS} if isinstance(env, dict) else env


def _environment_token(env: dict) -> bytes:
    return _bytes_token(b"e", json.dumps(env, sort_keys=True).encode())


def cache_dir(override=None) -> Path:
    """The cache directory: ``override``, else ``$LOWRANK_LEARNING_CACHE``, else ``~/.cache/lowrank_learning``."""
    if override is not None:
        return Path(override)
    env = os.environ.get("LOWRANK_LEARNING_CACHE")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "lowrank_learning"


_cache_dir = cache_dir  # for functions whose ``cache_dir`` argument hides this one


def enabled() -> bool:
    """False when ``$LOWRANK_LEARNING_NO_CACHE`` is ``1``, ``true``, ``yes`` or ``on``."""
    return os.environ.get("LOWRANK_LEARNING_NO_CACHE", "").strip().lower() not in {"1", "true", "yes", "on"}


def check_name(caller: str, name) -> str:
    """A cache label: a non-empty string of letters, digits, ``_ . -`` (it names a folder)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidParameterError(
            f"{caller}: name must be a non-empty string of letters, digits, '_', '.', '-'; got {name!r}")
    return name


# --------------------------------------------------------------------------- key encoding
def _as_numpy(x, where: str) -> np.ndarray | None:
    """``x`` as a numpy array if it is a numpy/JAX array, else None."""
    if isinstance(x, np.ndarray):
        return x
    if jax is not None and isinstance(x, jax.Array):
        if isinstance(x, jax.core.Tracer):
            raise TypeError(f"{where}: cannot cache on a traced JAX value (called inside jit/grad/vmap?)")
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.asarray(x)
    return None


def _u64(n: int) -> bytes:
    return struct.pack("<Q", n)


def _bytes_token(tag: bytes, data: bytes) -> bytes:
    return tag + _u64(len(data)) + data


def _encode(x, where: str) -> bytes:
    """Canonical, type-tagged byte encoding of ``x`` (``where`` names it in errors)."""
    if x is None:
        return b"N"
    if isinstance(x, (bool, np.bool_)):
        return b"T" if x else b"F"
    if isinstance(x, (int, np.integer)):
        return _bytes_token(b"I", str(int(x)).encode())
    if isinstance(x, (float, np.floating)):
        v = float(x)
        return _bytes_token(b"D", (repr(v) if math.isnan(v) else v.hex()).encode())
    if isinstance(x, str):
        return _bytes_token(b"S", x.encode("utf-8"))
    if isinstance(x, bytes):
        return _bytes_token(b"B", x)
    if isinstance(x, np.generic):  # complex and other numpy scalars
        x = np.asarray(x)
    arr = _as_numpy(x, where)
    if arr is not None:
        if arr.dtype.hasobject:
            raise TypeError(f"{where}: object arrays cannot be part of a cache key")
        arr = np.ascontiguousarray(arr)
        head = json.dumps([arr.dtype.str, list(arr.shape)]).encode()
        return b"A" + _bytes_token(b"h", head) + _bytes_token(b"d", arr.tobytes())
    if isinstance(x, (tuple, list)):
        tag = b"(" if isinstance(x, tuple) else b"["
        items = [_encode(v, f"{where}[{i}]") for i, v in enumerate(x)]
        return tag + _u64(len(items)) + b"".join(items)
    if isinstance(x, dict):
        pairs = sorted((_encode(k, f"{where} key {k!r}"), _encode(v, f"{where}[{k!r}]")) for k, v in x.items())
        return b"{" + _u64(len(pairs)) + b"".join(k + v for k, v in pairs)
    cls = type(x)
    cls_name = f"{cls.__module__}.{cls.__qualname__}".encode()
    if dataclasses.is_dataclass(x) and not isinstance(x, type) and cls.__dataclass_params__.frozen:
        fields = dataclasses.fields(x)
        out = [b"C", _bytes_token(b"c", cls_name), _u64(len(fields))]
        for f in fields:
            out.append(_bytes_token(b"f", f.name.encode()))
            out.append(_encode(getattr(x, f.name), f"{where}.{f.name}"))
        return b"".join(out)
    if jax is not None:
        children, treedef = jax.tree_util.tree_flatten(x, is_leaf=lambda y: y is not x)
        node = treedef.node_data()
        if node is not None and not (len(children) == 1 and children[0] is x):
            _, aux = node
            return (b"P" + _bytes_token(b"c", cls_name) + _encode(aux, f"{where} (pytree aux data)")
                    + _encode(list(children), f"{where} (pytree children)"))
    raise TypeError(
        f"{where}: cannot build a cache key from an object of type {cls.__module__}.{cls.__qualname__}; "
        "supported: None, bool, int, float, str, bytes, tuple/list/dict of these, numpy/JAX arrays, "
        "frozen dataclasses and registered JAX pytrees"
    )


def _fn_name(fn) -> str:
    qual = getattr(fn, "__qualname__", None)
    mod = getattr(fn, "__module__", None)
    if not qual or not isinstance(qual, str):
        raise TypeError(f"memo: fn must be a function with a qualified name, got {type(fn).__name__}")
    return f"{mod}.{qual}"


def cache_key(name: str, fn, args: tuple = (), kwargs: dict | None = None) -> str:
    """The hex sha256 key of a ``memo(name, fn, *args, **kwargs)`` call."""
    kwargs = kwargs or {}
    h = hashlib.sha256()
    h.update(_bytes_token(b"v", str(_FORMAT).encode()))
    h.update(_bytes_token(b"n", name.encode()))
    h.update(_bytes_token(b"q", _fn_name(fn).encode()))
    try:
        for i, a in enumerate(args):
            h.update(_encode(a, f"argument {i}"))
        h.update(b"|")
        for k in sorted(kwargs):
            h.update(_bytes_token(b"k", k.encode()) + _encode(kwargs[k], f"argument {k!r}"))
    except TypeError as exc:
        raise TypeError(f"memo({name!r}, {_fn_name(fn)}): {exc}") from None
    h.update(_bytes_token(b"s", source_hash().encode()))
    h.update(_environment_token(key_environment()))
    return h.hexdigest()


# --------------------------------------------------------------------------- value storage
class _CorruptEntry(Exception):
    pass


# Types stored by their plain-array form: tag -> class with ``to_dict()`` and ``from_dict(d)``.
_TYPES: dict[str, type] = {}


def cacheable(tag: str):
    """Class decorator: store instances through ``to_dict()`` / ``cls.from_dict(d)`` under ``tag``
    (a dict of arrays, scalars and strings; no pickles). Lets the layers above register their
    record types without this module importing them."""
    def register(cls):
        if tag in _TYPES and _TYPES[tag] is not cls:
            raise ValueError(f"cache tag {tag!r} is already registered for {_TYPES[tag].__name__}")
        _TYPES[tag] = cls
        return cls
    return register


def _pack(value, arrays: dict, where: str):
    """JSON-able manifest node for ``value``; arrays are moved into ``arrays``."""
    if value is None:
        return {"t": "none"}
    if isinstance(value, np.generic):  # numpy scalars keep their dtype (np.float64 is also a float)
        key = f"a{len(arrays)}"
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise TypeError(f"{where}: object-dtype values cannot be cached")
        arrays[key] = arr
        return {"t": "scalar", "k": key}
    if isinstance(value, bool):
        return {"t": "bool", "v": value}
    if isinstance(value, int):
        return {"t": "int", "v": str(value)}
    if isinstance(value, float):
        return {"t": "float", "v": value.hex()}
    if isinstance(value, str):
        return {"t": "str", "v": value}
    if isinstance(value, complex):
        return {"t": "complex", "v": [value.real.hex(), value.imag.hex()]}
    arr = _as_numpy(value, where)
    if arr is not None:
        if arr.dtype.hasobject:
            raise TypeError(f"{where}: object arrays cannot be cached")
        key = f"a{len(arrays)}"
        arrays[key] = np.ascontiguousarray(arr)
        return {"t": "array", "k": key}
    if isinstance(value, (list, tuple)):
        return {"t": "list" if isinstance(value, list) else "tuple",
                "v": [_pack(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, dict):
        for k in value:
            if not (k is None or isinstance(k, (str, int, float))):
                raise TypeError(f"{where}: dict keys must be str, int, float, bool or None to be cached, got {k!r}")
        return {"t": "dict", "v": [[_pack(k, arrays, f"{where} key"), _pack(v, arrays, f"{where}[{k!r}]")]
                                   for k, v in value.items()]}
    for tag, cls in _TYPES.items():
        if type(value) is cls:
            return {"t": tag, "v": _pack(value.to_dict(), arrays, f"{where} ({cls.__name__})")}
    raise TypeError(
        f"{where}: cannot cache a value of type {type(value).__module__}.{type(value).__qualname__}; "
        "supported: numpy/JAX arrays, Python scalars and strings, the registered types "
        f"({', '.join(c.__name__ for c in _TYPES.values())}), and dicts/lists/tuples of these"
    )


def _unpack(node, arrays):
    t = node["t"]
    if t == "none":
        return None
    if t == "bool":
        return bool(node["v"])
    if t == "int":
        return int(node["v"])
    if t == "float":
        return float.fromhex(node["v"])
    if t == "complex":
        return complex(float.fromhex(node["v"][0]), float.fromhex(node["v"][1]))
    if t == "str":
        return str(node["v"])
    if t == "array":
        return arrays[node["k"]]
    if t == "scalar":
        return arrays[node["k"]][()]
    if t == "list":
        return [_unpack(v, arrays) for v in node["v"]]
    if t == "tuple":
        return tuple(_unpack(v, arrays) for v in node["v"])
    if t == "dict":
        return {_unpack(k, arrays): _unpack(v, arrays) for k, v in node["v"]}
    if t in _TYPES:
        return _TYPES[t].from_dict(_unpack(node["v"], arrays))
    raise _CorruptEntry(f"unknown node type {t!r} in manifest")


def _checksum(manifest: bytes, arrays: dict) -> str:
    h = hashlib.sha256()
    h.update(_bytes_token(b"m", manifest))
    for key in sorted(arrays):
        arr = np.ascontiguousarray(arrays[key])
        head = json.dumps([key, arr.dtype.str, list(arr.shape)]).encode()
        h.update(_bytes_token(b"h", head) + _bytes_token(b"d", arr.tobytes()))
    return h.hexdigest()


def _write(path: Path, key: str, name: str, value) -> None:
    arrays: dict[str, np.ndarray] = {}
    tree = _pack(value, arrays, f"return value of {name!r}")
    manifest = json.dumps({"format": _FORMAT, "key": key, "name": name, "tree": tree,
                           "source_hash": source_hash(), "environment": key_environment(),
                           "created": time.time()}, sort_keys=True).encode()
    payload = dict(arrays)
    payload[_MANIFEST] = np.frombuffer(manifest, dtype=np.uint8)
    payload[_CHECKSUM] = np.array(_checksum(manifest, arrays))
    with atomic_open(path, "wb", fsync=True) as f:
        np.savez(f, **payload)


def _read(path: Path, key: str):
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            for required in (_MANIFEST, _CHECKSUM):
                if required not in files:
                    raise _CorruptEntry(f"missing {required}")
            manifest_arr = z[_MANIFEST]
            if manifest_arr.dtype != np.uint8 or manifest_arr.ndim != 1:
                raise _CorruptEntry("malformed manifest")
            manifest = manifest_arr.tobytes()
            meta = json.loads(manifest.decode())
            if meta.get("format") != _FORMAT or meta.get("key") != key:
                raise _CorruptEntry("manifest does not belong to this key")
            arrays = {k: z[k] for k in files - {_MANIFEST, _CHECKSUM}}
            stored = str(z[_CHECKSUM][()])
    except _CorruptEntry:
        raise
    except Exception as exc:  # bad zip, truncated member, bad JSON, bad header, ...
        raise _CorruptEntry(f"{type(exc).__name__}: {exc}") from exc
    if _checksum(manifest, arrays) != stored:
        raise _CorruptEntry("checksum mismatch")
    try:
        return _unpack(meta["tree"], arrays)
    except _CorruptEntry:
        raise
    except Exception as exc:
        raise _CorruptEntry(f"{type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------- public API
def entry_path(name: str, key: str, cache_dir_override=None) -> Path:
    """Where the entry for ``name``/``key`` lives: ``<cache dir>/<name>/<key>.npz``."""
    return cache_dir(cache_dir_override) / name / f"{key}.npz"


def lookup(name: str, key: str, *, cache_dir=None) -> tuple[bool, object]:
    """``(True, value)`` for a valid entry ``name``/``key``, else ``(False, None)``.

    An entry that fails verification (bad zip, wrong key, checksum mismatch, unknown manifest
    node) is reported with a :class:`CacheWarning` at the caller's caller, deleted, and is a miss.
    """
    path = entry_path(name, key, cache_dir)
    if not path.exists():
        return False, None
    try:
        return True, _read(path, key)
    except _CorruptEntry as exc:
        warnings.warn(f"cache entry {path} is unusable ({exc}); deleting it and recomputing",
                      CacheWarning, stacklevel=3)
        path.unlink(missing_ok=True)
    return False, None


def store(name: str, key: str, value, *, cache_dir=None) -> None:
    """Write ``value`` as the entry ``name``/``key``, atomically (a ``TypeError`` if it cannot be stored).

    The manifest records this process's :func:`source_hash` and :func:`key_environment` (those
    ``key`` was made with when it comes from :func:`cache_key` in this process) and the time.
    """
    _write(entry_path(name, key, cache_dir), key, name, value)


def memo(name: str, fn, *args, cache_dir=None, **kwargs):
    """``fn(*args, **kwargs)``, from the cache when a valid entry exists.

    Parameters
    ----------
    name : str
        A label for the computation (letters, digits, ``_ . -``); also the entry's sub-folder.
    fn : callable
        A function with a qualified name (module-level function or method).
    *args, **kwargs
        Passed to ``fn``; together with ``name``, ``fn``'s qualified name, :func:`source_hash`
        and :func:`key_environment` they form the key. Each must be None, bool, int, float,
        str, a tuple/list/dict of these, a numpy/JAX array, a frozen dataclass or a JAX pytree.
    cache_dir : path, optional
        Overrides ``$LOWRANK_LEARNING_CACHE`` (keyword-only; not passed to ``fn``).

    Returns
    -------
    What ``fn`` returns. Arrays come back from the cache as numpy arrays (JAX arrays are stored
    as numpy). Supported return values: numpy/JAX arrays, Python scalars and strings,
    :class:`~lowrank_learning.Trajectory`, and nested dicts/lists/tuples of these.

    Raises
    ------
    InvalidParameterError
        ``name`` is not a valid label (a ``ValueError``).
    TypeError
        An argument cannot be part of a key, or the return value cannot be stored.

    Examples
    --------
    >>> traj = memo("e1_gd", ll.learn_vectors, arch, task, N=500, epochs=2000)  # doctest: +SKIP
    """
    check_name("memo", name)
    if not enabled():
        return fn(*args, **kwargs)
    key = cache_key(name, fn, args, kwargs)
    hit, value = lookup(name, key, cache_dir=cache_dir)
    if not hit:
        value = fn(*args, **kwargs)
        store(name, key, value, cache_dir=cache_dir)
    return value


def memo_or_divergence(name: str, fn, *args, cache_dir=None, **kwargs):
    """:func:`memo`, with a run that diverges returned as its
    :class:`~lowrank_learning.DivergenceError` (which carries the epoch) instead of raised.

    For comparisons of several runs where one may diverge (a large learning rate): the caller
    keeps the error in place of the run and counts it. Nothing is cached for a run that diverged,
    so it is recomputed (and diverges again) on the next call; a run that converges is cached and
    returned as by :func:`memo`, under the same key. Other errors propagate.
    """
    try:
        return memo(name, fn, *args, cache_dir=cache_dir, **kwargs)
    except DivergenceError as err:
        return err


# --------------------------------------------------------------------------- maintenance
_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
_TEMPORARY_GRACE_S = 86400.0  # an unfinished write older than this is a leftover of a crash


@dataclass(frozen=True)
class CacheEntry:
    """One file of the cache directory, as :func:`scan` classifies it.

    ``status`` is ``"current"`` (the current code and software can hit it), ``"stale"`` (made
    with other model code, other versions or another platform, or in an older format: never hit
    again), ``"expired"`` (current, but older than the age limit asked for), ``"unreadable"`` (its
    manifest cannot be read) or ``"leftover"`` (a temporary file of a write that did not finish,
    more than a day old). ``reason`` says why, in words; ``age_days`` counts from when the entry
    was written.
    """

    path: Path
    name: str
    size: int
    age_days: float
    status: str
    reason: str = ""


def _manifest(path: Path) -> dict:
    """The manifest of the entry at ``path`` (no array is read); ``_CorruptEntry`` if unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if _MANIFEST not in z.files:
                raise _CorruptEntry(f"missing {_MANIFEST}")
            meta = json.loads(z[_MANIFEST].tobytes().decode())
    except _CorruptEntry:
        raise
    except Exception as exc:
        raise _CorruptEntry(f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(meta, dict):
        raise _CorruptEntry("malformed manifest")
    return meta


def _differences(then: dict, now: dict) -> str:
    keys = sorted(set(then) | set(now))
    return ", ".join(f"{k} {then.get(k)} (now {now.get(k)})" for k in keys if then.get(k) != now.get(k))


def _classify(path: Path, now_s: float, current_source: str, current_env: dict,
              older_than_days: float | None) -> CacheEntry:
    st = path.stat()
    name = path.parent.name
    created = st.st_mtime
    try:
        meta = _manifest(path)
    except _CorruptEntry as exc:
        return CacheEntry(path, name, st.st_size, (now_s - created) / 86400.0, "unreadable", str(exc))
    if isinstance(meta.get("created"), (int, float)):
        created = float(meta["created"])
    age = max(0.0, (now_s - created) / 86400.0)
    if meta.get("format") != _FORMAT:
        status, reason = "stale", f"cache format {meta.get('format')} (now {_FORMAT})"
    elif meta.get("key") != path.stem or meta.get("name") != name:
        status, reason = "unreadable", "manifest does not belong to this entry"
    elif meta.get("source_hash") != current_source:
        status, reason = "stale", "other model code"
    elif _software(meta.get("environment")) != _software(current_env):
        then = meta.get("environment") if isinstance(meta.get("environment"), dict) else {}
        status, reason = "stale", "other versions or platform: " + _differences(then, current_env)
    elif older_than_days is not None and age > older_than_days:
        status, reason = "expired", f"written {age:.1f} days ago"
    else:
        status, reason = "current", ""
    return CacheEntry(path, name, st.st_size, age, status, reason)


def scan(cache_dir=None, *, older_than_days: float | None = None) -> list[CacheEntry]:
    """Every entry of the cache (``<cache dir>/<name>/<key>.npz``) and every leftover temporary
    file, classified without loading any array (see :class:`CacheEntry`).

    An entry is current when its manifest records the current :func:`source_hash` and
    :func:`key_environment` (computing the latter starts JAX's default backend); with
    ``older_than_days``, a current entry written longer ago than that is ``"expired"``. Files
    the cache did not write are not listed. A missing cache directory has no entries.
    """
    if older_than_days is not None:
        older_than_days = float(older_than_days)
        if not math.isfinite(older_than_days) or older_than_days < 0:
            raise InvalidParameterError(f"scan: older_than_days must be a number >= 0, got {older_than_days!r}")
    root = _cache_dir(cache_dir)
    if not root.is_dir():
        return []
    now_s = time.time()
    current_source, current_env = source_hash(), key_environment()
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and _NAME_RE.match(p.name)):
        for path in sorted(folder.iterdir()):
            try:
                if not path.is_file():
                    continue
                if path.suffix == ".npz" and _KEY_RE.match(path.stem):
                    out.append(_classify(path, now_s, current_source, current_env, older_than_days))
                elif path.name.startswith(".") and ".npz." in path.name and path.name.endswith(".tmp"):
                    st = path.stat()
                    age_s = now_s - st.st_mtime
                    if age_s > _TEMPORARY_GRACE_S:
                        out.append(CacheEntry(path, folder.name, st.st_size, age_s / 86400.0, "leftover",
                                              "temporary file of an unfinished write"))
            except FileNotFoundError:  # removed meanwhile by another process
                continue
    return out


def prune(cache_dir=None, *, older_than_days: float | None = None, dry_run: bool = False) -> list[CacheEntry]:
    """Delete the entries that are not current (see :func:`scan`): those made with other model
    code, other versions, another platform or an older format, the unreadable ones, leftover
    temporary files and, with ``older_than_days``, entries written longer ago than that.

    Returns the entries removed (with ``dry_run=True``: those that would be, and nothing is
    deleted). A name folder left empty is removed too. Safe while other processes use the cache:
    entries appear by an atomic rename, and a process that has an entry open keeps reading it.
    """
    doomed = [e for e in scan(cache_dir, older_than_days=older_than_days) if e.status != "current"]
    if not dry_run:
        for e in doomed:
            e.path.unlink(missing_ok=True)
        for folder in {e.path.parent for e in doomed}:
            try:
                folder.rmdir()
            except OSError:  # not empty
                pass
    return doomed
