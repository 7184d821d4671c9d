"""Bad input across the public API and the command line fails loudly, never silently.

Every case below is a call that must not produce numbers: it must raise a
:class:`lowrank_learning.LowRankError` (the package's own errors; most are
:class:`~lowrank_learning.InvalidParameterError`) whose message names the offending field, or,
on the command line, exit with code 2 and a message on stderr. None may be accepted. Cases are
cheap: nothing trains for more than one epoch.
"""

from __future__ import annotations

import numpy as np
import pytest

import lowrank_learning as ll
from lowrank_learning import cli

LIN = ll.Architecture()
ERF = ll.Architecture(activation="erf")
TASK = ll.tasks.exponential_filter()
X0 = ll.sample_vectors(LIN, 20, seed=0)
S0 = ll.overlaps(X0)
NAN = float("nan")


def _batch(**kw):
    base = dict(inputs=np.zeros((2, 5, 1)), targets=np.zeros((2, 5, 1)), mask=None, dt=0.1, loss="sum_time")
    return ll.Batch(**(base | kw))


def _nan_sigma():
    S = np.array(S0, dtype=float)
    S[0, 0] = NAN
    return S


def _psd_violation():
    S = np.eye(4)
    S[0, 1] = S[1, 0] = 2.0
    return S


# (id, call, text the message must contain)
API_CASES = [
    # Architecture
    ("arch-activation", lambda: ll.Architecture(activation="relu"), "activation"),
    ("arch-rank-zero", lambda: ll.Architecture(rank=0), "rank"),
    ("arch-rank-float", lambda: ll.Architecture(rank=1.5), "rank"),
    ("arch-n_in-negative", lambda: ll.Architecture(n_in=-1), "n_in"),
    ("arch-n_out-float", lambda: ll.Architecture(n_out=1.5), "n_out"),
    # overlaps and vectors
    ("sample-N-zero", lambda: ll.sample_vectors(LIN, 0, seed=0), "N"),
    ("sample-seed-none", lambda: ll.sample_vectors(LIN, 10, seed=None), "seed"),
    ("sigma-shape", lambda: ll.validate_sigma(LIN, np.eye(3)), "shape"),
    ("sigma-asymmetric", lambda: ll.validate_sigma(LIN, np.triu(np.ones((4, 4)))), "symmetric"),
    ("sigma-not-psd", lambda: ll.validate_sigma(LIN, _psd_violation()), "positive semi-definite"),
    ("sigma-nan", lambda: ll.validate_sigma(LIN, _nan_sigma()), "Sigma"),
    ("named-unknown", lambda: ll.sigma_from_named(LIN, {"zq": 1.0}, fill_identity=True), "unknown overlap"),
    ("named-missing", lambda: ll.sigma_from_named(LIN, {"zm": 0.1}), "missing overlaps"),
    ("unflatten-length", lambda: ll.unflatten(LIN, np.ones(7)), "sigma"),
    # Batch
    ("batch-shape", lambda: _batch(targets=np.zeros((2, 4, 1))), "Batch.targets"),
    ("batch-loss", lambda: _batch(loss="mse"), "Batch.loss"),
    ("batch-dt-negative", lambda: _batch(dt=-0.1), "dt"),
    ("batch-nan-input", lambda: _batch(inputs=np.full((2, 5, 1), NAN)), "Batch.inputs"),
    ("batch-inf-target", lambda: _batch(targets=np.full((2, 5, 1), np.inf)), "Batch.targets"),
    ("batch-negative-mask", lambda: _batch(mask=-np.ones((2, 5, 1))), "mask"),
    ("batch-zero-mask-mean", lambda: _batch(mask=np.zeros((2, 5, 1)), loss="masked_mean"), "mask"),
    # tasks
    ("flipflop-wait", lambda: ll.tasks.flip_flop(wait_min=5.0, wait_max=1.0), "wait_min"),
    ("flipflop-trials", lambda: ll.tasks.flip_flop(n_trials=0), "n_trials"),
    ("filter-dt", lambda: ll.tasks.exponential_filter(dt=0.0), "dt"),
    ("filter-T", lambda: ll.tasks.exponential_filter(T_max=-1.0), "T_max"),
    ("label-noise-std", lambda: ll.tasks.with_label_noise(TASK, -0.1), "std"),
    ("teacher-nothing", lambda: ll.tasks.teacher(ERF, ll.tasks.flip_flop()), "sigma"),
    # learners
    ("learn-lr-negative", lambda: ll.learn_overlaps(LIN, S0, TASK, lr=-1.0, epochs=1), "lr"),
    ("learn-lr-nan", lambda: ll.learn_overlaps(LIN, S0, TASK, lr=NAN, epochs=1), "lr"),
    ("learn-epochs-zero", lambda: ll.learn_overlaps(LIN, S0, TASK, lr=1e-3, epochs=0), "epochs"),
    ("learn-epochs-negative", lambda: ll.learn_vectors(LIN, X0, TASK, lr=1e-3, epochs=-5), "epochs"),
    ("learn-rule", lambda: ll.learn_overlaps(LIN, S0, TASK, lr=1e-3, epochs=1, rule="euler"), "rule"),
    ("learn-optimizer", lambda: ll.learn_vectors(LIN, X0, TASK, lr=1e-3, epochs=1, optimizer="sgd"), "optimizer"),
    ("learn-plastic", lambda: ll.learn_overlaps(LIN, S0, TASK, lr=1e-3, epochs=1, plastic=["q"]), "unknown vector"),
    ("learn-X0-shape", lambda: ll.learn_vectors(LIN, np.ones((10, 3)), TASK, lr=1e-3, epochs=1), "X0"),
    ("learn-task-type", lambda: ll.learn_overlaps(LIN, S0, "flip_flop", lr=1e-3, epochs=1), "task"),
    ("learn-update-noise", lambda: ll.learn_vectors(LIN, X0, TASK, lr=1e-3, epochs=1, update_noise=-1.0),
     "update_noise"),
    ("learn-substeps", lambda: ll.learn_overlaps(LIN, S0, TASK, lr=1e-3, epochs=1, rule="flow", substeps=0),
     "substeps"),
    ("learn-task-n_in", lambda: ll.learn_overlaps(ll.Architecture(n_in=2), np.eye(5), TASK, lr=1e-3, epochs=1),
     "n_in"),
    ("learn-task-n_out", lambda: ll.learn_vectors(ll.Architecture(n_out=2), ll.sample_vectors(
        ll.Architecture(n_out=2), 20, seed=0), TASK, lr=1e-3, epochs=1), "n_out"),
    # learning-rate schedules
    ("schedule-constant", lambda: ll.schedules.Constant(-1.0), "lr"),
    ("schedule-piecewise", lambda: ll.schedules.Piecewise((1e-3, 1e-4), (10, 5)), "boundaries"),
    ("schedule-piecewise-count", lambda: ll.schedules.Piecewise((1e-3, 1e-4), ()), "boundaries"),
    ("schedule-drop-factor", lambda: ll.schedules.DropBelow(1e-3, 0.1, factor=0.0), "factor"),
    ("schedule-drop-threshold", lambda: ll.schedules.DropBelow(1e-3, -0.1), "threshold"),
    # ensembles
    ("ensemble-sigma-shape", lambda: ll.learn_overlaps_ensemble(LIN, S0, TASK, lr=1e-3, epochs=1), "Sigma0"),
    ("ensemble-seeds", lambda: ll.learn_overlaps_ensemble(LIN, np.stack([S0, S0]), TASK, lr=1e-3, epochs=1,
                                                          seeds=[1, 2, 3]), "seeds"),
    ("ensemble-record", lambda: ll.learn_overlaps_ensemble(LIN, np.stack([S0, S0]), TASK, lr=1e-3, epochs=2,
                                                           record_every=0), "record_every"),
    # the full network
    ("network-X-columns", lambda: ll.run_network(LIN, np.ones((20, 3)), np.zeros((1, 5, 1)), 0.1), "X must have shape"),
    ("network-inputs-dim", lambda: ll.run_network(LIN, X0, np.zeros((1, 5, 2)), 0.1), "inputs must have shape"),
    ("network-dt", lambda: ll.run_network(LIN, X0, np.zeros((1, 5, 1)), -0.1), "dt"),
    # degeneracy, memory, analyses
    ("equivalent-visible", lambda: ll.equivalent_overlaps(LIN, S0, {"zm": 0.3}), "zm"),
    ("equivalent-unknown", lambda: ll.equivalent_overlaps(LIN, S0, {"qq": 0.3}), "qq"),
    ("noisy-std", lambda: ll.run_noisy_network(LIN, X0, np.zeros((1, 5, 1)), 0.1, noise_std=-1.0), "noise_std"),
    ("phase-epochs", lambda: ll.Phase(TASK, 1e-3, 0), "epochs"),
    ("schedule-space", lambda: ll.run_schedule(LIN, X0, [ll.Phase(TASK, 1e-3, 1)], space="latent"), "space"),
    ("speed-grid", lambda: ll.learning_speed(LIN, S0, TASK, {}, lr=1e-3, epochs=1, level=0.1), "grid"),
    ("gain-activation", lambda: ll.gain("relu", 1.0), "activation"),
    ("decode-lengths", lambda: ll.decode(np.ones((10, 3)), np.zeros(9), np.arange(10)), "labels"),
    ("decode-splits", lambda: ll.decode(np.ones((10, 3)), np.arange(10) % 2, np.arange(10), n_splits=0), "n_splits"),
    ("random-overlaps-n", lambda: ll.random_overlaps(LIN, 0, seed=0), "n"),
    ("balanced-N", lambda: ll.balanced_vectors(LIN, 0, seed=0), "N"),
    ("sweep-errors", lambda: ll.run_sweep("x", lambda **kw: {}, [{}], errors="ignore"), "errors"),
    ("grid-empty-axis", lambda: ll.grid(N=[]), "N"),
    # results files
    ("results-name", lambda: ll.save_results("../x", {"a": 1}), "notebook"),
    ("results-empty", lambda: ll.save_results("x", {}), "results"),
]


def _params(cases):
    out = []
    for c in cases:
        if hasattr(c, "marks"):  # pytest.param(id, call, text, marks=...)
            out.append(pytest.param(*c.values[1:], id=c.values[0], marks=c.marks))
        else:
            out.append(pytest.param(*c[1:], id=c[0]))
    return out


@pytest.mark.parametrize("call, text", _params(API_CASES))
def test_api_rejects(call, text, tmp_path, monkeypatch):
    monkeypatch.setenv("LOWRANK_RESULTS_DIR", str(tmp_path))
    monkeypatch.setenv("LOWRANK_LEARNING_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ll.LowRankError) as err:
        call()
    assert text in str(err.value), f"the message does not name {text!r}: {err.value}"


# --------------------------------------------------------------------------- command line
CLI_CASES = [
    ("unknown-command", ["frobnicate"], "invalid choice"),
    ("reproduce-profile", ["reproduce", "--profile", "fast"], "unknown profile 'fast'"),
    ("reproduce-only", ["reproduce", "--only", "e99_nothing"], "unknown notebook 'e99_nothing'"),
    ("reproduce-jobs-zero", ["reproduce", "--jobs", "0"], "--jobs"),
    ("reproduce-jobs-text", ["reproduce", "--jobs", "two"], "--jobs"),
    ("reproduce-set-syntax", ["reproduce", "--only", "e1_framework", "--set", "N"], "expected NAME=VALUE"),
    ("reproduce-set-unknown", ["reproduce", "--only", "e1_framework", "--set", "NN=3"], "'NN' is not a parameter"),
    ("reproduce-set-type", ["reproduce", "--only", "e1_framework", "--set", "N=fast"], "'N' expects int"),
    ("reproduce-set-other", ["reproduce", "--only", "e1_framework", "--set", "e3_metric.N=3"], "not selected"),
    ("reproduce-root", ["--root", "/nonexistent/lowrank", "reproduce"], "not found"),
    ("sweep-name", ["sweep", "nope"], "nope"),
    ("sweep-profile", ["sweep", "demo", "--profile", "fast"], "fast"),
]


@pytest.mark.parametrize("argv, text", _params(CLI_CASES))
def test_cli_rejects(argv, text, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert text in err, err


def test_enough_cases():
    """The issue asks for at least 40 kinds of bad input."""
    ids = [c.values[0] if hasattr(c, "marks") else c[0] for c in API_CASES + CLI_CASES]
    assert len(ids) >= 40 and len(set(ids)) == len(ids)
