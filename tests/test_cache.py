"""The result cache: hits, misses, invalidation by source and by versions, corruption, atomic
writes, keys, and its maintenance (scan, prune, ``lowrank-learning cache``)."""

from __future__ import annotations

import json
import os
import shutil
import time
import zipfile
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lowrank_learning as ll
from lowrank_learning import cli
from lowrank_learning.core import cache, provenance


class Counter:
    """Wraps a function and counts how often it really runs."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0
        self.__qualname__ = f"Counter[{fn.__qualname__}]"
        self.__module__ = __name__

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def simulate(x, n=3, scale=1.0):
    x = np.asarray(x, dtype=float)
    return {"traj": np.outer(np.arange(n), x) * scale, "final": float(x.sum() * scale), "n": n,
            "label": "sim", "parts": (np.ones(2), [1, 2.5, None, True])}


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LOWRANK_LEARNING_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LOWRANK_LEARNING_NO_CACHE", raising=False)
    return tmp_path / "cache"


def _entries(root):
    return sorted(p for p in root.rglob("*.npz"))


def _assert_same(a, b):
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


def test_hit_returns_identical_values_without_calling(tmp_cache):
    fn = Counter(simulate)
    first = ll.memo("sim", fn, np.array([1.0, 2.0]), n=4, scale=0.5)
    second = ll.memo("sim", fn, np.array([1.0, 2.0]), n=4, scale=0.5)
    assert fn.calls == 1
    _assert_same(first, second)
    assert second["final"] == 1.5 and second["traj"].shape == (4, 2)
    assert len(_entries(tmp_cache)) == 1
    # the entry is a plain npz, readable without pickles
    with np.load(_entries(tmp_cache)[0], allow_pickle=False) as z:
        assert "__manifest__" in z.files and "__checksum__" in z.files


def test_changed_argument_is_a_miss(tmp_cache):
    fn = Counter(simulate)
    ll.memo("sim", fn, np.array([1.0, 2.0]), n=4)
    ll.memo("sim", fn, np.array([1.0, 2.0]), n=5)                      # kwarg value
    ll.memo("sim", fn, np.array([1.0, 2.5]), n=4)                      # array content
    ll.memo("sim", fn, np.array([1.0, 2.0], dtype=np.float32), n=4)    # array dtype
    ll.memo("sim", fn, np.array([[1.0, 2.0]]), n=4)                    # array shape
    ll.memo("other", fn, np.array([1.0, 2.0]), n=4)                    # name
    assert fn.calls == 6
    ll.memo("sim", fn, np.array([1.0, 2.0]), n=4)
    assert fn.calls == 6


def test_changed_source_hash_is_a_miss(tmp_cache, monkeypatch):
    fn = Counter(simulate)
    ll.memo("sim", fn, [1.0, 2.0])
    real = cache.source_hash()
    assert len(real) == 64
    monkeypatch.setattr(cache, "source_hash", lambda: "0" * 64)
    ll.memo("sim", fn, [1.0, 2.0])
    assert fn.calls == 2
    monkeypatch.setattr(cache, "source_hash", lambda: real)
    ll.memo("sim", fn, [1.0, 2.0])
    assert fn.calls == 2


def test_source_hash_covers_package_files():
    h = cache.source_hash()
    assert h == cache.source_hash()
    assert all(c in "0123456789abcdef" for c in h)


def test_plot_code_is_not_part_of_the_key():
    """Editing plotting.py must not rerun simulations; the notebooks' stamp still sees it."""
    assert "plotting.py" in cache.PRESENTATION_MODULES
    assert cache.source_hash() == cache._hash_package(exclude=cache.PRESENTATION_MODULES)
    assert cache.package_hash() != cache.source_hash()
    assert cache._hash_package(exclude=("plotting.py",)) != cache.package_hash()


@pytest.fixture
def package_copy(tmp_path):
    """A copy of the installed package's ``*.py`` files, to edit without touching the real one."""
    src = cache._package_root()
    dst = tmp_path / "pkg"
    for path in src.rglob("*.py"):
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return dst


def _append(path, text="\n# an edit\n"):
    path.write_text(path.read_text() + text)


def test_copy_hashes_like_the_installed_package(package_copy):
    assert cache._hash_package(cache.PRESENTATION_MODULES, root=package_copy) == cache.source_hash()
    assert cache._hash_package(root=package_copy) == cache.package_hash()


@pytest.mark.parametrize("rel", ["reproduce/runner.py", "reproduce/__init__.py", "reproduce/layout.py",
                                 "results.py", "plotting.py", "cli.py", "core/cache.py",
                                 "core/provenance.py"])
def test_editing_pipeline_code_keeps_the_model_hash(package_copy, rel):
    """The reproduction pipeline, result files, plots and CLI are not model code."""
    path = package_copy / rel
    assert path.exists(), rel
    before_model = cache._hash_package(cache.PRESENTATION_MODULES, root=package_copy)
    before_all = cache._hash_package(root=package_copy)
    _append(path)
    assert cache._hash_package(cache.PRESENTATION_MODULES, root=package_copy) == before_model
    assert cache._hash_package(root=package_copy) != before_all  # notebook stamps still see it


def test_new_file_in_reproduce_keeps_the_model_hash(package_copy):
    before = cache._hash_package(cache.PRESENTATION_MODULES, root=package_copy)
    (package_copy / "reproduce" / "extra_step.py").write_text("X = 1\n")
    assert cache._hash_package(cache.PRESENTATION_MODULES, root=package_copy) == before


@pytest.mark.parametrize("rel", ["learn/vectors.py", "core/overlaps.py", "tasks.py", "core/network.py"])
def test_editing_model_code_changes_the_model_hash(package_copy, rel):
    before = cache._hash_package(cache.PRESENTATION_MODULES, root=package_copy)
    _append(package_copy / rel)
    assert cache._hash_package(cache.PRESENTATION_MODULES, root=package_copy) != before


def test_exclusion_is_by_folder_or_exact_name(package_copy):
    """``reproduce/`` excludes the folder only; a model module whose name merely starts with
    an excluded name is still hashed."""
    before = cache._hash_package(cache.PRESENTATION_MODULES, root=package_copy)
    (package_copy / "reproduce_model.py").write_text("X = 1\n")
    (package_copy / "results_extra.py").write_text("Y = 2\n")
    assert cache._hash_package(cache.PRESENTATION_MODULES, root=package_copy) != before
    assert cache._excluded("reproduce/stamps.py", cache.PRESENTATION_MODULES)
    assert not cache._excluded("reproduce.py", ("reproduce/",))
    assert not cache._excluded("sub/plotting.py", ("plotting.py",))


def _corrupt_truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt_garbage(path):
    path.write_bytes(os.urandom(300))


def _corrupt_checksum(path):
    """A well-formed zip whose array bytes no longer match the stored checksum."""
    with np.load(path, allow_pickle=False) as z:
        content = {k: z[k] for k in z.files}
    key = next(k for k in content if not k.startswith("__") and content[k].size > 1)
    content[key] = content[key] + 1.0
    with open(path, "wb") as f:
        np.savez(f, **content)


def _corrupt_missing_key(path):
    with np.load(path, allow_pickle=False) as z:
        content = {k: z[k] for k in z.files if k != "__checksum__"}
    with open(path, "wb") as f:
        np.savez(f, **content)


def _corrupt_member(path):
    """Flip bytes inside a zip member (CRC mismatch on read)."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 3
    data[mid:mid + 16] = bytes(16)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("corrupt", [_corrupt_truncate, _corrupt_garbage, _corrupt_checksum,
                                     _corrupt_missing_key, _corrupt_member])
def test_corrupt_entry_is_recomputed_with_a_warning(tmp_cache, corrupt):
    fn = Counter(simulate)
    good = ll.memo("sim", fn, [1.0, 2.0], n=6)
    (path,) = _entries(tmp_cache)
    corrupt(path)
    with pytest.warns(cache.CacheWarning, match="unusable"):
        again = ll.memo("sim", fn, [1.0, 2.0], n=6)
    assert fn.calls == 2
    _assert_same(good, again)
    # the bad entry was replaced by a good one
    (path2,) = _entries(tmp_cache)
    assert path2 == path
    ll.memo("sim", fn, [1.0, 2.0], n=6)
    assert fn.calls == 2


def test_corrupt_entry_is_never_returned(tmp_cache):
    """A tampered entry with a recomputed-looking zip but wrong values must not come back."""
    fn = Counter(lambda: np.arange(5.0))
    fn.__qualname__ = "arange5"
    ll.memo("ar", fn)
    (path,) = _entries(tmp_cache)
    _corrupt_checksum(path)
    with pytest.warns(cache.CacheWarning):
        value = ll.memo("ar", fn)
    np.testing.assert_array_equal(value, np.arange(5.0))


def test_corrupt_entry_warning_points_at_the_caller(tmp_cache):
    ll.memo("sim", simulate, [1.0])
    (path,) = _entries(tmp_cache)
    _corrupt_garbage(path)
    with pytest.warns(cache.CacheWarning) as record:
        ll.memo("sim", simulate, [1.0])
    assert record[0].filename == __file__


def test_lookup_and_store_are_the_memo_entries(tmp_cache):
    """``lookup``/``store`` read and write the same entries as ``memo``, with the same checks."""
    key = cache.cache_key("sim", simulate, ([1.0, 2.0],), {"n": 2})
    assert cache.lookup("sim", key) == (False, None)
    value = ll.memo("sim", simulate, [1.0, 2.0], n=2)
    hit, back = cache.lookup("sim", key)
    assert hit
    _assert_same(back, value)
    fn = Counter(simulate)
    other = cache.cache_key("sim", fn, ([3.0],), {})
    cache.store("sim", other, None)
    assert cache.lookup("sim", other) == (True, None)  # a stored None is a hit
    assert ll.memo("sim", fn, [3.0]) is None and fn.calls == 0
    (path,) = [p for p in _entries(tmp_cache) if p.stem == other]
    _corrupt_garbage(path)
    with pytest.warns(cache.CacheWarning, match="unusable"):
        assert cache.lookup("sim", other) == (False, None)
    assert not path.exists()


def test_entry_for_another_key_is_rejected(tmp_cache):
    """An entry copied under another key's name is not returned for that key."""
    key = cache.cache_key("sim", simulate, ([1.0],), {})
    cache.store("sim", key, np.arange(3.0))
    wrong = "0" * 64
    shutil.copyfile(cache.entry_path("sim", key), cache.entry_path("sim", wrong))
    with pytest.warns(cache.CacheWarning, match="does not belong"):
        assert cache.lookup("sim", wrong) == (False, None)


def test_store_writes_through_atomic_open_with_fsync(tmp_cache, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    ll.memo("sim", simulate, [1.0])
    assert len(synced) == 1 and len(_entries(tmp_cache)) == 1


def test_atomic_write_failure_leaves_no_entry(tmp_cache, monkeypatch):
    fn = Counter(simulate)

    def exploding_savez(file, **arrays):
        file.write(b"PK\x03\x04partial")
        raise OSError("disk full")

    monkeypatch.setattr(cache.np, "savez", exploding_savez)
    with pytest.raises(OSError, match="disk full"):
        ll.memo("sim", fn, [1.0])
    assert not [p for p in tmp_cache.rglob("*") if p.is_file()], "a failed write left a file behind"
    monkeypatch.undo()
    monkeypatch.setenv("LOWRANK_LEARNING_CACHE", str(tmp_cache))
    ll.memo("sim", fn, [1.0])
    assert fn.calls == 2 and len(_entries(tmp_cache)) == 1
    assert not [p for p in tmp_cache.rglob("*") if p.is_file() and p.suffix != ".npz"]


def _trajectory(with_vectors: bool):
    arch = ll.Architecture(rank=1, n_in=1, n_out=1, activation="erf")
    rng = np.random.default_rng(0)
    sigma = rng.normal(size=(7, 4, 4))
    return ll.Trajectory(arch, rng.normal(size=7), sigma, rng.normal(size=(4, 4)), 0.05, "gd",
                         rng.normal(size=(30, 4)) if with_vectors else None)


@pytest.mark.parametrize("with_vectors", [True, False])
def test_trajectory_round_trip(tmp_cache, with_vectors):
    traj = _trajectory(with_vectors)
    fn = Counter(lambda: {"run": traj, "runs": [traj, traj]})
    fn.__qualname__ = f"make_traj_{with_vectors}"
    ll.memo("traj", fn)
    back = ll.memo("traj", fn)
    assert fn.calls == 1
    for t in (back["run"], *back["runs"]):
        assert isinstance(t, ll.Trajectory)
        assert t.arch == traj.arch and t.lr == traj.lr and t.method == traj.method
        np.testing.assert_array_equal(t.loss, traj.loss)
        np.testing.assert_array_equal(t.sigma, traj.sigma)
        np.testing.assert_array_equal(t.final_sigma, traj.final_sigma)
        if with_vectors:
            np.testing.assert_array_equal(t.final_vectors, traj.final_vectors)
        else:
            assert t.final_vectors is None


def test_scalars_and_jax_arrays_round_trip(tmp_cache):
    value = {"f": 0.1, "i": 2**70, "b": False, "none": None, "s": "σ_zm", "c": 1 + 2j,
             "np_scalar": np.float32(1.5), "jax": jnp.arange(3), 3: "int key"}
    fn = Counter(lambda: value)
    fn.__qualname__ = "values"
    ll.memo("vals", fn)
    back = ll.memo("vals", fn)
    assert fn.calls == 1
    assert back["f"] == 0.1 and back["i"] == 2**70 and back["b"] is False and back["none"] is None
    assert back["s"] == "σ_zm" and back["c"] == 1 + 2j and back[3] == "int key"
    assert back["np_scalar"].dtype == np.float32 and back["np_scalar"] == 1.5
    np.testing.assert_array_equal(back["jax"], np.arange(3))


def test_key_encoding_of_supported_arguments():
    arch = ll.Architecture(rank=1, n_in=1, n_out=1, activation="linear")
    ff = ll.tasks.FlipFlop(n_trials=4)
    batch = ll.Batch(np.zeros((2, 3, 1)), np.ones((2, 3, 1)), dt=0.1)

    def key(*a, **k):
        return cache.cache_key("k", simulate, a, k)

    base = key(arch, ff, batch, jnp.ones(3), jax.random.PRNGKey(0), {"b": 1, "a": [1, (2, None)]})
    assert base == key(arch, ff, batch, jnp.ones(3), jax.random.PRNGKey(0), {"a": [1, (2, None)], "b": 1})
    assert base == key(ll.Architecture(1, 1, 1, "linear"), ll.tasks.FlipFlop(n_trials=4),
                       ll.Batch(np.zeros((2, 3, 1)), np.ones((2, 3, 1)), dt=0.1),
                       np.ones(3), np.asarray(jax.random.PRNGKey(0)), {"a": [1, (2, None)], "b": 1})
    variants = [
        key(ll.Architecture(1, 1, 1, "erf"), ff, batch, jnp.ones(3), jax.random.PRNGKey(0), {"b": 1, "a": [1, (2, None)]}),
        key(arch, ll.tasks.FlipFlop(n_trials=5), batch, jnp.ones(3), jax.random.PRNGKey(0), {"b": 1, "a": [1, (2, None)]}),
        key(arch, ff, ll.Batch(np.zeros((2, 3, 1)), np.ones((2, 3, 1)), dt=0.2), jnp.ones(3), jax.random.PRNGKey(0), {"b": 1, "a": [1, (2, None)]}),
        key(arch, ff, batch, jnp.ones(3), jax.random.PRNGKey(1), {"b": 1, "a": [1, (2, None)]}),
        key(arch, ff, batch, jnp.ones(3), jax.random.PRNGKey(0), {"b": 1, "a": [1, [2, None]]}),   # tuple vs list
        key(arch, ff, batch, jnp.ones(3), jax.random.PRNGKey(0), {"b": 1.0, "a": [1, (2, None)]}),  # int vs float
        key(arch, ff, batch, jnp.ones(3), jax.random.PRNGKey(0), {"b": True, "a": [1, (2, None)]}),  # int vs bool
    ]
    assert len({base, *variants}) == len(variants) + 1
    # positional and keyword arguments are different calls
    assert key(1) != cache.cache_key("k", simulate, (), {"x": 1})
    # new-style typed PRNG keys are encoded by their data
    assert key(jax.random.key(3)) == key(jax.random.key(3)) != key(jax.random.key(4))


def test_registered_pytree_that_is_not_a_dataclass():
    @jax.tree_util.register_pytree_node_class
    class Pair:
        def __init__(self, a, b, tag):
            self.a, self.b, self.tag = a, b, tag

        def tree_flatten(self):
            return (self.a, self.b), self.tag

        @classmethod
        def tree_unflatten(cls, tag, children):
            return cls(*children, tag)

    k = lambda p: cache.cache_key("k", simulate, (p,), {})  # noqa: E731
    assert k(Pair(np.ones(2), 1.0, "x")) == k(Pair(np.ones(2), 1.0, "x"))
    assert k(Pair(np.ones(2), 1.0, "x")) != k(Pair(np.ones(2), 1.0, "y"))
    assert k(Pair(np.ones(2), 1.0, "x")) != k(Pair(np.ones(2), 2.0, "x"))


class Opaque:
    pass


@dataclass  # not frozen: mutable, so not a valid key
class Mutable:
    x: int = 1


@pytest.mark.parametrize("bad, where", [
    (Opaque(), "argument 0"),
    ([1, Opaque()], r"argument 0\[1\]"),
    (Mutable(), "argument 0"),
    (np.array([object()]), "object arrays"),
    ({1, 2}, "argument 0"),
    (lambda: 0, "argument 0"),
])
def test_unsupported_argument_is_a_type_error(tmp_cache, bad, where):
    fn = Counter(simulate)
    with pytest.raises(TypeError, match=where):
        ll.memo("sim", fn, bad)
    assert fn.calls == 0


def test_unsupported_keyword_argument_names_it(tmp_cache):
    with pytest.raises(TypeError, match="argument 'model'"):
        ll.memo("sim", simulate, 1.0, model=Opaque())


def test_unsupported_return_value_is_a_type_error(tmp_cache):
    fn = Counter(lambda: {"x": Opaque()})
    fn.__qualname__ = "opaque"
    with pytest.raises(TypeError, match="cannot cache a value"):
        ll.memo("bad", fn)
    assert not _entries(tmp_cache)


def test_no_cache_env_and_cache_dir_override(tmp_cache, tmp_path, monkeypatch):
    fn = Counter(simulate)
    monkeypatch.setenv("LOWRANK_LEARNING_NO_CACHE", "1")
    ll.memo("sim", fn, [1.0])
    ll.memo("sim", fn, [1.0])
    assert fn.calls == 2 and not _entries(tmp_cache)
    monkeypatch.delenv("LOWRANK_LEARNING_NO_CACHE")
    other = tmp_path / "elsewhere"
    ll.memo("sim", fn, [1.0], cache_dir=other)
    ll.memo("sim", fn, [1.0], cache_dir=other)
    assert fn.calls == 3 and len(_entries(other)) == 1 and not _entries(tmp_cache)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("LOWRANK_LEARNING_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache.cache_dir() == tmp_path / ".cache" / "lowrank_learning"


def test_bad_name_is_rejected(tmp_cache):
    with pytest.raises(ValueError, match="name"):
        ll.memo("../escape", simulate, 1.0)


def test_bad_zip_detected_by_zipfile_too(tmp_cache):
    """Sanity check of the corruption helpers: a truncated entry is not a valid zip."""
    ll.memo("sim", simulate, [1.0])
    (path,) = _entries(tmp_cache)
    _corrupt_truncate(path)
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(path).testzip()


# --------------------------------------------------------------------------- versions in the key
def _other_version(monkeypatch, package, version):
    """Make ``package`` look installed at ``version`` (the source of every recorded version)."""
    real = provenance.package_version
    monkeypatch.setattr(provenance, "package_version", lambda name: version if name == package else real(name))


@pytest.mark.parametrize("package", ["jax", "jaxlib", "numpy", "scipy", "numba"])
def test_entry_made_under_other_versions_is_a_miss(tmp_cache, monkeypatch, package):
    fn = Counter(simulate)
    with monkeypatch.context() as m:
        _other_version(m, package, "0.0.1")
        assert cache.key_environment()[package] == "0.0.1"
        ll.memo("sim", fn, [1.0, 2.0])
        ll.memo("sim", fn, [1.0, 2.0])
        assert fn.calls == 1  # the same versions hit
    ll.memo("sim", fn, [1.0, 2.0])
    assert fn.calls == 2      # the entry made under the other version is not reused
    ll.memo("sim", fn, [1.0, 2.0])
    assert fn.calls == 2 and len(_entries(tmp_cache)) == 2


def test_entry_made_on_another_accelerator_is_a_miss(tmp_cache, monkeypatch):
    fn = Counter(simulate)
    ll.memo("sim", fn, [1.0])
    monkeypatch.setattr(provenance, "accelerator", lambda: {"platform": "gpu", "kind": "NVIDIA H200", "count": 1})
    assert cache.key_environment()["accelerator"] == "gpu/NVIDIA H200"
    ll.memo("sim", fn, [1.0])
    assert fn.calls == 2
    monkeypatch.undo()
    monkeypatch.setenv("LOWRANK_LEARNING_CACHE", str(tmp_cache))
    ll.memo("sim", fn, [1.0])
    assert fn.calls == 2


def test_entry_made_in_the_other_float64_mode_is_a_miss_but_stays_current(tmp_cache):
    """JAX's 64-bit mode changes what float(...) inputs become inside a computation: an entry made
    with it on is not reused with it off. Both modes are the current software: prune keeps both."""
    fn = Counter(simulate)
    before = bool(jax.config.jax_enable_x64)
    try:
        for mode in (False, True, False, True):
            jax.config.update("jax_enable_x64", mode)
            ll.memo("sim", fn, [1.0])
    finally:
        jax.config.update("jax_enable_x64", before)
    assert fn.calls == 2 and len(_entries(tmp_cache)) == 2
    assert [e.status for e in cache.scan(tmp_cache)] == ["current", "current"]


def test_key_environment_names_the_numeric_software():
    env = cache.key_environment()
    assert set(env) == {"jax", "jaxlib", "numpy", "scipy", "numba", "system", "machine", "accelerator", "float64"}
    assert env["float64"] == bool(jax.config.jax_enable_x64)
    assert env["jax"] == jax.__version__ and env["numpy"] == np.__version__
    assert env["accelerator"].startswith(jax.default_backend() + "/")


def test_manifest_records_what_the_key_was_made_with(tmp_cache):
    before = time.time()
    ll.memo("sim", simulate, [1.0])
    (path,) = _entries(tmp_cache)
    meta = cache._manifest(path)
    assert meta["key"] == path.stem and meta["name"] == "sim" and meta["format"] == cache._FORMAT
    assert meta["source_hash"] == cache.source_hash()
    assert meta["environment"] == cache.key_environment()
    assert before - 1 <= meta["created"] <= time.time() + 1


# --------------------------------------------------------------------------- scan and prune
def _store_old_format(root, name="old"):
    """An entry as an earlier cache format wrote it (no versions in its manifest)."""
    key = "a" * 64
    manifest = json.dumps({"format": 1, "key": key, "name": name, "tree": {"t": "none"}}).encode()
    path = root / name / f"{key}.npz"
    path.parent.mkdir(parents=True)
    with open(path, "wb") as f:
        np.savez(f, __manifest__=np.frombuffer(manifest, dtype=np.uint8),
                 __checksum__=np.array(cache._checksum(manifest, {})))
    return path


@pytest.fixture
def mixed_cache(tmp_cache, monkeypatch):
    """A cache holding one entry of each kind; returns {kind: path}."""
    paths = {}

    def made(name, *args):
        ll.memo(name, simulate, *args)
        (path,) = [p for p in _entries(tmp_cache) if p not in paths.values()]
        return path

    paths["current"] = made("sim", [1.0])
    with monkeypatch.context() as m:
        _other_version(m, "jax", "0.0.1")
        paths["other_jax"] = made("sim", [2.0])
    with monkeypatch.context() as m:
        m.setattr(cache, "source_hash", lambda: "0" * 64)
        paths["other_code"] = made("sim", [3.0])
    with monkeypatch.context() as m:
        real = time.time
        m.setattr(cache.time, "time", lambda: real() - 10 * 86400)
        paths["ten_days"] = made("aged", [4.0])
    paths["corrupt"] = made("sim", [5.0])
    _corrupt_garbage(paths["corrupt"])
    paths["old_format"] = _store_old_format(tmp_cache)
    leftover = tmp_cache / "sim" / f".{'b' * 64}.npz.x1y2.tmp"
    leftover.write_bytes(b"PK partial")
    os.utime(leftover, (time.time() - 3 * 86400,) * 2)
    paths["leftover"] = leftover
    writing = tmp_cache / "sim" / f".{'c' * 64}.npz.x3y4.tmp"  # a write in progress: kept
    writing.write_bytes(b"PK partial")
    paths["writing"] = writing
    foreign = tmp_cache / "sim" / "notes.txt"                   # not the cache's: kept
    foreign.write_text("mine")
    paths["foreign"] = foreign
    return paths


def test_scan_classifies_entries_by_manifest(mixed_cache, tmp_cache):
    entries = {e.path: e for e in cache.scan()}
    status = {kind: entries[p].status for kind, p in mixed_cache.items() if p in entries}
    assert status == {"current": "current", "other_jax": "stale", "other_code": "stale", "ten_days": "current",
                      "corrupt": "unreadable", "old_format": "stale", "leftover": "leftover"}
    assert "jax 0.0.1 (now " + jax.__version__ + ")" in entries[mixed_cache["other_jax"]].reason
    assert entries[mixed_cache["other_code"]].reason == "other model code"
    assert entries[mixed_cache["old_format"]].reason == f"cache format 1 (now {cache._FORMAT})"
    assert 9.9 < entries[mixed_cache["ten_days"]].age_days < 10.1
    assert entries[mixed_cache["current"]].size == mixed_cache["current"].stat().st_size
    aged = {e.path: e.status for e in cache.scan(older_than_days=7)}
    assert aged[mixed_cache["ten_days"]] == "expired" and aged[mixed_cache["current"]] == "current"
    with pytest.raises(ll.InvalidParameterError, match="older_than_days"):
        cache.scan(older_than_days=-1)
    assert cache.scan(tmp_cache / "missing") == []


def test_prune_removes_what_cannot_be_hit(mixed_cache, tmp_cache):
    files = sorted(p for p in tmp_cache.rglob("*") if p.is_file())
    would = cache.prune(dry_run=True)
    assert sorted(p for p in tmp_cache.rglob("*") if p.is_file()) == files  # a dry run deletes nothing
    removed = cache.prune()
    assert {e.path for e in removed} == {e.path for e in would} == {
        mixed_cache[k] for k in ("other_jax", "other_code", "corrupt", "old_format", "leftover")}
    left = sorted(p for p in tmp_cache.rglob("*") if p.is_file())
    assert left == sorted(mixed_cache[k] for k in ("current", "ten_days", "writing", "foreign"))
    assert not (tmp_cache / "old").exists()  # a name folder left empty goes too
    assert cache.prune() == []
    assert cache.lookup("sim", cache.cache_key("sim", simulate, ([1.0],)))[0]  # the current entry still hits
    (aged,) = cache.prune(older_than_days=7)
    assert aged.path == mixed_cache["ten_days"] and aged.status == "expired"
    assert not (tmp_cache / "aged").exists()


def test_cli_cache_info_and_prune(mixed_cache, tmp_cache, capsys, monkeypatch):
    monkeypatch.delenv("LOWRANK_LEARNING_CACHE")
    sizes = {k: p.stat().st_size for k, p in mixed_cache.items()}
    assert cli.main(["cache", "info", "--cache-dir", str(tmp_cache)]) == 0
    out = capsys.readouterr().out
    assert f"cache {tmp_cache}" in out and f"jax {jax.__version__}" in out
    assert "model code " + cache.source_hash()[:12] in out
    assert "7 entries" in out and "stale: 3 entries" in out and "unreadable: 1 entry" in out
    assert "current: 2 entries" in out and "leftover: 1 entry" in out

    assert cli.main(["cache", "prune", "--cache-dir", str(tmp_cache), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would remove 5 entries" in out and mixed_cache["other_jax"].exists()
    assert "1 × stale: other model code" in out and "1 × unreadable:" in out

    stale = sum(sizes[k] for k in ("other_jax", "other_code", "corrupt", "old_format", "leftover"))
    assert cli.main(["cache", "prune", "--cache-dir", str(tmp_cache)]) == 0
    out = capsys.readouterr().out
    assert f"removed 5 entries ({stale} bytes)" in out or f"removed 5 entries ({stale / 1024:.1f} KiB)" in out
    assert not mixed_cache["other_jax"].exists() and mixed_cache["current"].exists()

    monkeypatch.setenv("LOWRANK_LEARNING_CACHE", str(tmp_cache))  # the default directory
    assert cli.main(["cache", "prune", "--older-than", "7"]) == 0
    assert "removed 1 entry" in capsys.readouterr().out and not mixed_cache["ten_days"].exists()
    with pytest.raises(SystemExit) as exc:
        cli.main(["cache", "prune", "--older-than", "-1"])
    assert exc.value.code == 2 and "--older-than" in capsys.readouterr().err
