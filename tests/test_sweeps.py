"""Sweeps: local runner vs Dask LocalCluster (same numbers), caching/resume, failures, bad input."""

import socket
import time

import numpy as np
import pandas as pd
import pytest

import lowrank_learning as ll
from lowrank_learning.cli import main as cli_main
from lowrank_learning.core import cache as result_cache


def _job(N, seed):
    """A cheap real job: exact map vs full linear network, 5 epochs (module-level: picklable)."""
    return ll.linear_exactness(N=N, seed=seed, epochs=5, T_max=2.0)


JOBS = ll.grid(N=[8, 16], seed=[0, 1])


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LOWRANK_LEARNING_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LOWRANK_LEARNING_NO_CACHE", raising=False)
    return tmp_path / "cache"


def _reference():
    """The same jobs by a plain loop, outside the sweep machinery."""
    return {(p["N"], p["seed"]): _job(**p) for p in JOBS}


def test_grid_is_the_cartesian_product():
    assert JOBS == [{"N": 8, "seed": 0}, {"N": 8, "seed": 1}, {"N": 16, "seed": 0}, {"N": 16, "seed": 1}]


def test_local_in_process_matches_plain_loop_and_is_labelled(cache):
    ref = _reference()
    df = ll.run_sweep("t-local", _job, JOBS, workers=1, progress=False)
    assert isinstance(df, pd.DataFrame)
    assert list(df.index.names) == ["N", "seed"]
    assert list(df.index) == [(8, 0), (8, 1), (16, 0), (16, 1)]
    for key, res in ref.items():
        assert df.loc[key, "error"] == res["error"]
        assert df.loc[key, "loss_error"] == res["loss_error"]
    assert df.attrs["computed"] == 4 and df.attrs["cached"] == 0


def test_resume_from_cache_computes_only_missing_jobs(cache):
    ll.run_sweep("t-resume", _job, JOBS[:2], workers=1, progress=False)
    df = ll.run_sweep("t-resume", _job, JOBS, workers=1, progress=False)
    assert df.attrs["cached"] == 2 and df.attrs["computed"] == 2
    again = ll.run_sweep("t-resume", _job, JOBS, workers=1, progress=False)
    assert again.attrs["cached"] == 4 and again.attrs["computed"] == 0
    pd.testing.assert_frame_equal(df, again)


def test_corrupt_job_entry_is_recomputed_with_a_warning(cache):
    """Sweep entries are the result cache's entries: the same verification and repair."""
    first = ll.run_sweep("t-corrupt", _job, JOBS[:2], workers=1, progress=False)
    entries = sorted(cache.rglob("*.npz"))
    assert len(entries) == 2
    entries[0].write_bytes(b"PK\x03\x04 not a zip")
    with pytest.warns(result_cache.CacheWarning, match="unusable") as record:
        again = ll.run_sweep("t-corrupt", _job, JOBS[:2], workers=1, progress=False)
    assert record[0].filename == __file__
    assert again.attrs["cached"] == 1 and again.attrs["computed"] == 1
    pd.testing.assert_frame_equal(first, again)
    key = result_cache.cache_key("t-corrupt", _job, (), JOBS[0])
    hit, value = result_cache.lookup("t-corrupt", key)
    assert hit and value["error"] == first.loc[(8, 0), "error"]


def test_dask_local_cluster_matches_local_runner(cache, monkeypatch):
    distributed = pytest.importorskip("dask.distributed")
    monkeypatch.setenv("LOWRANK_LEARNING_NO_CACHE", "1")  # both runs compute
    local = ll.run_sweep("t-dask", _job, JOBS, workers=1, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        remote = ll.run_sweep("t-dask", _job, JOBS, scheduler=cluster.scheduler_address, progress=False)
    assert remote.attrs["computed"] == 4
    pd.testing.assert_frame_equal(local, remote)


def test_failed_job_is_reported_with_its_parameters_and_others_kept(cache):
    jobs = [{"N": 8, "seed": 0}, {"N": 0, "seed": 3}, {"N": 16, "seed": 0}]
    with pytest.raises(ll.SweepError) as info:
        ll.run_sweep("t-fail", _job, jobs, workers=1, progress=False)
    msg = str(info.value)
    assert "N=0" in msg and "seed=3" in msg and "InvalidParameterError" in msg
    assert len(info.value.failures) == 1 and info.value.failures[0].params == {"N": 0, "seed": 3}
    assert list(info.value.frame.index) == [(8, 0), (16, 0)]
    # the good jobs were cached: collecting again computes nothing new but the failed job
    df = ll.run_sweep("t-fail", _job, jobs, workers=1, progress=False, errors="collect")
    assert df.attrs["cached"] == 2 and len(df.attrs["failures"]) == 1


def test_unreachable_scheduler_fails_fast_naming_the_address(cache):
    pytest.importorskip("dask.distributed")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    t0 = time.perf_counter()
    with pytest.raises(ll.SchedulerUnreachableError, match=address):
        ll.run_sweep("t-unreach", _job, JOBS, scheduler=address, timeout=1.0, progress=False)
    assert time.perf_counter() - t0 < 10.0


@pytest.mark.parametrize("jobs, match", [
    ([], "empty"),
    ({"N": [8]}, "list of parameter dicts"),
    ([{"N": 8, "seed": 0}, {"N": 8}], "same names"),
    ([{"N": 8, "seed": 0}, {"N": 8, "seed": 0}], "repeats"),
])
def test_bad_jobs(jobs, match):
    with pytest.raises(ll.InvalidParameterError, match=match):
        ll.run_sweep("t-bad", _job, jobs, workers=1)


def test_bad_arguments():
    with pytest.raises(ll.InvalidParameterError, match="empty"):
        ll.grid(N=[])
    with pytest.raises(ll.InvalidParameterError, match="workers"):
        ll.run_sweep("t-bad", _job, JOBS, workers=0)
    with pytest.raises(ll.InvalidParameterError, match="timeout"):
        ll.run_sweep("t-bad", _job, JOBS, timeout=float("inf"))
    with pytest.raises(ll.InvalidParameterError, match="errors"):
        ll.run_sweep("t-bad", _job, JOBS, errors="ignore")
    with pytest.raises(ll.InvalidParameterError, match="name"):
        ll.run_sweep("bad name!", _job, JOBS)
    with pytest.raises(ll.InvalidParameterError, match="module level"):
        ll.run_sweep("t-bad", lambda N, seed: {"x": 1.0}, JOBS, workers=2)


@pytest.mark.slow
def test_local_worker_processes_match_in_process(cache, monkeypatch):
    monkeypatch.setenv("LOWRANK_LEARNING_NO_CACHE", "1")
    one = ll.run_sweep("t-procs", _job, JOBS, workers=1, progress=False)
    two = ll.run_sweep("t-procs", _job, JOBS, workers=2, progress=False)
    pd.testing.assert_frame_equal(one, two)


# ----------------------------------------------------------------------------- CLI
def test_cli_sweep_bad_arguments_exit_2(capsys):
    for argv, message in ((["sweep", "no-such-sweep"], "invalid choice"),
                          (["sweep", "demo", "--workers", "0"], "integer >= 1, got 0"),
                          (["sweep", "demo", "--workers", "two"], "integer >= 1, got 'two'"),
                          (["sweep", "demo", "--timeout", "0"], "positive number, got 0.0"),
                          (["sweep", "demo", "--timeout", "inf"], "positive number, got inf"),
                          (["sweep", "demo", "--profile", "huge"], "invalid choice")):
        with pytest.raises(SystemExit) as info:
            cli_main(argv)
        assert info.value.code == 2
        assert message in capsys.readouterr().err, argv


def test_cli_sweep_demo_writes_csv(cache, tmp_path, capsys):
    out = tmp_path / "demo.csv"
    assert cli_main(["sweep", "demo", "--workers", "1", "--out", str(out), "--no-progress"]) == 0
    df = pd.read_csv(out)
    assert {"N", "seed", "error"} <= set(df.columns)
    assert np.all(df["error"] < 1e-10)


def test_cli_sweep_unreachable_scheduler_exits_1(cache, capsys):
    pytest.importorskip("dask.distributed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    assert cli_main(["sweep", "demo", "--scheduler", address, "--timeout", "1"]) == 1
    assert address in capsys.readouterr().err
