"""E7's learners and their analysis (experiments/learning_rules.py) and ``memo_or_divergence``.

- ``memo_or_divergence``: a diverging run comes back as its error, with its epoch, and is not
  cached; a converging one is cached.
- ``e7_runs`` on a small network: every run goes under the chapter's cache names, and the
  small-step runs under the keys E6's notebook makes (so E7 reuses them).
- ``e7_analysis`` against the same quantities recomputed with plain numpy loops from the
  trajectories (distances from the overlaps by name, the spectrum of ``J Sigma``, the tests).
- ``e7_verdicts`` on synthetic runs: planted signal holds; on null data (end points and theory gaps
  drawn from one distribution) "holds" comes at most at the test's rate; two learners that are the
  same run do not end apart; a diverged run is counted, never dropped.
- bad input fails with ``InvalidParameterError`` naming the field.
"""

from __future__ import annotations

import numpy as np
import pytest

import lowrank_learning as ll
from lowrank_learning.core import cache

ARCH = ll.Architecture(rank=1, activation="erf")
PARAMS = dict(eta_small=0.25, eta_large=1.0, adam_lr=5e-3, epochs=40, seed=0, n_seeds=2, small_divisor=2)
N = 40


# ----------------------------------------------------------------------------- memo_or_divergence
CALLS = []


def _diverges(x):
    CALLS.append(("diverges", x))
    raise ll.DivergenceError(7, 0.5)


def _converges(x):
    CALLS.append(("converges", x))
    return np.arange(3) * x


def test_memo_or_divergence_returns_the_error_and_caches_only_converged_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("LOWRANK_LEARNING_CACHE", str(tmp_path))
    CALLS.clear()
    err = ll.memo_or_divergence("bad-run", _diverges, 2.0)
    assert isinstance(err, ll.DivergenceError) and err.epoch == 7 and err.lr == 0.5
    assert not (tmp_path / "bad-run").exists() or not any((tmp_path / "bad-run").iterdir())
    assert isinstance(ll.memo_or_divergence("bad-run", _diverges, 2.0), ll.DivergenceError)
    assert CALLS == [("diverges", 2.0)] * 2  # nothing cached: run again, diverges again
    CALLS.clear()
    first = ll.memo_or_divergence("good-run", _converges, 3)
    again = ll.memo_or_divergence("good-run", _converges, 3)
    np.testing.assert_array_equal(first, [0, 3, 6])
    np.testing.assert_array_equal(again, first)
    assert CALLS == [("converges", 3)]  # the second call came from the cache, the same entry as memo's
    assert ll.memo("good-run", _converges, 3).tolist() == [0, 3, 6] and CALLS == [("converges", 3)]
    with pytest.raises(ll.InvalidParameterError, match="name"):
        ll.memo_or_divergence("bad name", _converges, 3)


# ----------------------------------------------------------------------------- a small real run
@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("e7cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOWRANK_LEARNING_CACHE", str(root))
        mp.delenv("LOWRANK_LEARNING_NO_CACHE", raising=False)
        task = ll.tasks.flip_flop(n_trials=2, dt=0.1, T_max=4.0)
        X0 = ll.balanced_vectors(ARCH, N, PARAMS["seed"])
        e7 = ll.e7_runs(ARCH, X0, task, **PARAMS)
        yield root, task, X0, e7


def test_e7_runs_use_the_chapter_cache_names_and_e6_keys(small):
    root, task, X0, e7 = small
    n, eps = N // PARAMS["small_divisor"], PARAMS["epochs"]
    names = {"e6-full", "e6-exact", "e7-sgd-large", "e7-adam", "e7-exact-large", "e7-flow", "e7-flow-linear"}
    for s in (0, 1):
        names |= {f"e6-full-N{n}-s{s}", f"e6-exact-N{n}-s{s}", f"e7-sgd-large-N{n}-s{s}", f"e7-adam-N{n}-s{s}",
                  f"e7-exact-large-N{n}-s{s}"}
    assert {p.name for p in root.iterdir()} == names
    assert all(len(list((root / k).glob("*.npz"))) == 1 for k in names)
    # the keys of E6's own calls (notebooks/e6_nonlinear.ipynb): E7 finds E6's entries
    eta = PARAMS["eta_small"]
    e6_calls = {"e6-full": (ll.learn_vectors, (ARCH, X0.astype(np.float32), task), {}),
                "e6-exact": (ll.learn_overlaps, (ARCH, ll.overlaps(X0), task), {"rule": "exact"})}
    X1 = ll.balanced_vectors(ARCH, n, 1)
    e6_calls[f"e6-full-N{n}-s1"] = (ll.learn_vectors, (ARCH, X1.astype(np.float32), task), {})
    e6_calls[f"e6-exact-N{n}-s1"] = (ll.learn_overlaps, (ARCH, ll.overlaps(X1), task), {"rule": "exact"})
    for name, (fn, args, extra) in e6_calls.items():
        seed = 1 if name.endswith("-s1") else 0
        key = cache.cache_key(name, fn, args, dict(lr=eta, epochs=eps, seed=seed, progress=False, **extra))
        assert cache.entry_path(name, key, root).is_file(), name
    assert e7.n_rep == n and list(e7.reps) == [0, 1] and e7.epochs == eps
    assert e7.runs["Adam"].method == "adam" and e7.theory["large-step SGD"].lr == PARAMS["eta_large"]
    assert e7.flow.method == "flow" and e7.flow_linear.arch.activation == "linear"
    assert len(e7.every) == 3 and e7.diverged == {}


def _by_name(arch, S, names):
    return np.array([float(S[arch.overlap_pair(k)]) for k in names])  # float64, as the package computes


def _dist(arch, A, B):
    return {kind: float(np.sqrt(np.sum((_by_name(arch, A, names) - _by_name(arch, B, names)) ** 2)))
            for kind, names in (("visible", arch.visible_names), ("invisible", arch.invisible_names))}


def _spectrum(arch, S):
    J = np.diag([1.0 if g in ("Z", "V") else -1.0 for g in arch.vector_group])
    return np.sort(np.linalg.eigvals(J @ S).real)


def test_e7_analysis_against_plain_numpy(small):
    _, _, X0, e7 = small
    Sigma0 = ll.overlaps(X0)
    res = ll.e7_analysis(ARCH, Sigma0, e7, split_threshold=0.02)
    learners = ll.E7_LEARNERS
    tail = max(1, PARAMS["epochs"] // 20)
    assert res.tail == tail == 2 and list(res.ok) == list(learners)
    for name in learners:
        tr = e7.runs[name]
        assert res.final_loss[name] == pytest.approx(sum(tr.loss[-tail:]) / tail, rel=1e-12)
        for kind, d in _dist(ARCH, Sigma0, tr.final_sigma).items():
            assert res.from_start[name][kind] == pytest.approx(d, rel=1e-12)
        sig = np.concatenate([tr.sigma, tr.final_sigma[None]])
        want = [np.linalg.norm(_spectrum(ARCH, S) - _spectrum(ARCH, Sigma0)) for S in sig]
        np.testing.assert_allclose(res.drift[name], want, rtol=1e-9, atol=1e-12)
    assert list(res.between) == [(a, b) for i, a in enumerate(learners) for b in learners[i + 1:]]
    for (a, b), d in res.between.items():
        want = _dist(ARCH, e7.runs[a].final_sigma, e7.runs[b].final_sigma)
        for kind in want:
            assert d[kind] == pytest.approx(want[kind], rel=1e-12)
            n_kind = len(ARCH.visible_names if kind == "visible" else ARCH.invisible_names)
            assert res.rms[(a, b)][kind] == pytest.approx(want[kind] / n_kind ** 0.5, rel=1e-12)
    for name in ("small-step SGD", "large-step SGD"):
        f, t = e7.runs[name], e7.theory[name]
        fs = list(f.sigma) + [f.final_sigma]
        ts = list(t.sigma) + [t.final_sigma]
        series = [max(abs(fs[e][i, j] - ts[e][i, j]) for i in range(4) for j in range(4)) for e in range(len(fs))]
        np.testing.assert_allclose(res.gap_series[name], series, rtol=0, atol=0)
        assert res.theory_gap[name] == max(series) and res.gap_end[name] == series[-1]
        first = next((e for e, g in enumerate(series) if g > 0.02), None)
        assert res.split[name] == first
    th = _dist(ARCH, e7.theory["small-step SGD"].final_sigma, e7.theory["large-step SGD"].final_sigma)
    assert res.theory_between == pytest.approx(th, rel=1e-12)
    flow_sig = e7.flow_linear.sigma_all
    lin = ll.Architecture(rank=1, activation="linear")
    np.testing.assert_allclose(res.drift_linear, [np.linalg.norm(_spectrum(lin, S) - _spectrum(lin, Sigma0))
                                                  for S in flow_sig], rtol=1e-9, atol=1e-12)
    # the verdicts: the package's tests on the same numbers, recomputed here
    every = e7.every
    noise = [_dist(ARCH, r["small-step SGD"].final_sigma, r["small-step SGD (theory)"].final_sigma)["invisible"]
             for r in every]
    apart = [_dist(ARCH, r["small-step SGD"].final_sigma, r["Adam"].final_sigma)["invisible"] for r in every]
    ref = ll.ratio_exceeds(apart, noise, claim="x", what="runs")
    part = res.verdicts["ends_apart"].parts["small_adam"]
    assert part.p == pytest.approx(ref.p, rel=1e-9) and part.statistic == pytest.approx(ref.statistic, rel=1e-9)
    initial = [r["small-step SGD"].loss[0] for r in every]
    ref = ll.solves_task(initial, [np.mean(r["large-step SGD"].loss[-tail:]) for r in every], claim="x", what="runs")
    assert res.verdicts["all_solve"].parts["large"].p == pytest.approx(ref.p, rel=1e-9)
    assert set(res.verdicts) == {"all_solve", "ends_apart", "large_step_gap"}
    assert res.verdicts["large_step_gap"].n == 3 and res.diverged == {}


# ----------------------------------------------------------------------------- synthetic runs
K = ARCH.K
EPOCHS = 10


def _sym(rng, scale, shape=()):
    A = rng.normal(0.0, scale, size=(*shape, K, K))
    return (A + np.swapaxes(A, -1, -2)) / 2


def _traj(path, loss, method="gd"):
    """A Trajectory whose overlaps are ``path`` (EPOCHS + 1, K, K): before each update, then the end."""
    return ll.Trajectory(ARCH, np.asarray(loss, float), path[:-1], path[-1], 0.1, method)


def _synthetic(rng, n_runs, *, apart=1.0, large_gap=1.0, final_loss=0.01, noise=0.02):
    """Runs whose finite-N error (small-step full vs theory) has scale ``noise``; the large-step and
    Adam end points lie ``apart * noise`` from the small-step one, the large-step full network lies
    ``large_gap * noise`` from its theory. Losses fall from 1 to about ``final_loss``."""
    every = []
    base = np.eye(K) + 0.1 * np.linspace(0, 1, EPOCHS + 1)[:, None, None] * np.ones((K, K))
    for _ in range(n_runs):
        loss = lambda: np.geomspace(1.0, final_loss * np.exp(rng.normal(0, 0.3)), EPOCHS)  # noqa: E731
        small = base + _sym(rng, noise, (EPOCHS + 1,))
        large = small + _sym(rng, apart * noise, (EPOCHS + 1,))
        adam = small + _sym(rng, apart * noise, (EPOCHS + 1,))
        large_theory = large - _sym(rng, large_gap * noise, (EPOCHS + 1,))
        every.append({"small-step SGD": _traj(small, loss()), "large-step SGD": _traj(large, loss()),
                      "Adam": _traj(adam, loss(), "adam"),
                      "small-step SGD (theory)": _traj(base, loss(), "exact"),
                      "large-step SGD (theory)": _traj(large_theory, loss(), "exact")})
    return every


def test_verdicts_hold_on_planted_signal():
    v = ll.e7_verdicts(ARCH, _synthetic(np.random.default_rng(1), 8, apart=10.0, large_gap=10.0), EPOCHS)
    assert v["all_solve"].verdict == "holds" and v["all_solve"].statistic == 3
    assert v["ends_apart"].verdict == "holds" and set(v["ends_apart"].parts) == {"small_large", "small_adam",
                                                                                 "large_adam"}
    assert v["large_step_gap"].verdict == "holds" and v["large_step_gap"].statistic == pytest.approx(1.0, abs=0.3)
    fail = ll.e7_verdicts(ARCH, _synthetic(np.random.default_rng(1), 8, final_loss=0.5), EPOCHS)
    assert fail["all_solve"].verdict == "does not hold"


def test_verdicts_on_null_data_hold_at_most_at_the_tests_rate():
    rng = np.random.default_rng(2)
    reps = 200
    held = {"small_large": 0, "small_adam": 0, "large_step_gap": 0}
    for _ in range(reps):
        v = ll.e7_verdicts(ARCH, _synthetic(rng, 8), EPOCHS)
        held["small_large"] += v["ends_apart"].parts["small_large"].holds
        held["small_adam"] += v["ends_apart"].parts["small_adam"].holds
        held["large_step_gap"] += v["large_step_gap"].holds
    bound = 0.05 + 3 * np.sqrt(0.05 * 0.95 / reps)  # alpha plus three binomial standard errors
    assert all(k / reps <= bound for k in held.values()), held


def test_two_learners_that_are_the_same_run_do_not_end_apart():
    every = _synthetic(np.random.default_rng(3), 8, apart=10.0)
    for r in every:
        r["large-step SGD"] = r["small-step SGD"]
    v = ll.e7_verdicts(ARCH, every, EPOCHS)
    part = v["ends_apart"].parts["small_large"]
    assert part.verdict == "does not hold" and "8 of 8 runs" in part.note
    assert v["ends_apart"].parts["small_adam"].verdict == "holds" and v["ends_apart"].verdict == "holds in part"


def _e7runs(every, epochs=EPOCHS):
    first, rest = every[0], every[1:]
    theory = {k: first[f"{k} (theory)"] for k in ("small-step SGD", "large-step SGD")}
    return ll.E7Runs(runs={k: first[k] for k in ll.E7_LEARNERS}, theory=theory, flow=theory["small-step SGD"],
                     flow_linear=ll.DivergenceError(4, 0.25), reps=dict(enumerate(rest, start=5)), n_rep=20,
                     epochs=epochs)


def test_a_diverged_run_is_counted_not_dropped():
    every = _synthetic(np.random.default_rng(4), 8, apart=10.0, large_gap=10.0)
    every[3]["large-step SGD"] = ll.DivergenceError(3, 1.0)
    every[0]["Adam"] = ll.DivergenceError(6, 5e-3)
    res = ll.e7_analysis(ARCH, every[0]["small-step SGD (theory)"].sigma[0], _e7runs(every))
    assert res.diverged == {"Adam": 6, "gradient flow (linear units)": 4, "large-step SGD, N = 20, seed 7": 3}
    assert list(res.ok) == ["small-step SGD", "large-step SGD"] and "Adam" not in res.final_loss
    assert list(res.between) == [("small-step SGD", "large-step SGD")] and res.drift_linear is None
    v = res.verdicts
    assert v["all_solve"].parts["large"].verdict == "does not hold" and v["all_solve"].parts["large"].excluded == 1
    assert v["all_solve"].parts["adam"].excluded == 1 and v["all_solve"].verdict == "holds in part"
    assert v["all_solve"].parts["small"].verdict == "holds"
    parts = v["ends_apart"].parts
    assert (parts["small_large"].n, parts["small_large"].excluded) == (7, 1)
    assert (parts["small_adam"].n, parts["small_adam"].excluded) == (7, 1)
    assert (parts["large_adam"].n, parts["large_adam"].excluded) == (6, 2)
    assert all(p.verdict == "holds" and "diverged" in p.note for p in parts.values())
    gap = v["large_step_gap"]
    assert (gap.n, gap.excluded, gap.verdict) == (7, 1, "holds") and "1 of 8 runs excluded" in gap.note
    for r in every:  # every run of one learner diverged: nothing to compare, not testable
        r["large-step SGD (theory)"] = ll.DivergenceError(2, 1.0)
    v = ll.e7_verdicts(ARCH, every, EPOCHS)
    assert v["large_step_gap"].verdict == "not testable at this profile" and v["large_step_gap"].excluded == 8


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("change, field", [
    (dict(eta_small=-1.0), "eta_small"), (dict(eta_large=float("nan")), "eta_large"), (dict(adam_lr=0), "adam_lr"),
    (dict(epochs=0), "epochs"), (dict(seed=-1), "seed"), (dict(n_seeds=1.5), "n_seeds"),
    (dict(small_divisor=0), "small_divisor"), (dict(small_divisor=100), "small_divisor"),
])
def test_e7_runs_bad_input(change, field):
    task = ll.tasks.flip_flop(n_trials=2, dt=0.1, T_max=4.0)
    with pytest.raises(ll.InvalidParameterError, match=field):
        ll.e7_runs(ARCH, ll.balanced_vectors(ARCH, 10, 0), task, **{**PARAMS, **change})


def test_e7_runs_refuses_bad_vectors_and_architecture():
    task = ll.tasks.flip_flop(n_trials=2, dt=0.1, T_max=4.0)
    with pytest.raises(ll.InvalidParameterError, match="X0"):
        ll.e7_runs(ARCH, np.ones((10, 3)), task, **PARAMS)
    with pytest.raises(ll.InvalidParameterError, match="arch"):
        ll.e7_runs("erf", np.ones((10, 4)), task, **PARAMS)


def test_e7_analysis_and_verdicts_bad_input():
    every = _synthetic(np.random.default_rng(5), 3)
    runs = _e7runs(every)
    S0 = np.eye(K)
    for bad in (float("nan"), -0.1):
        with pytest.raises(ll.InvalidParameterError, match="split_threshold"):
            ll.e7_analysis(ARCH, S0, runs, split_threshold=bad)
    with pytest.raises(ll.InvalidParameterError, match="Sigma0"):
        ll.e7_analysis(ARCH, np.eye(3), runs)
    with pytest.raises(ll.InvalidParameterError, match="E7Runs"):
        ll.e7_analysis(ARCH, S0, {"runs": {}})
    with pytest.raises(ll.InvalidParameterError, match="Adam"):
        ll.e7_verdicts(ARCH, [{k: v for k, v in every[0].items() if k != "Adam"}], EPOCHS)
    with pytest.raises(ll.InvalidParameterError, match="every"):
        ll.e7_verdicts(ARCH, [], EPOCHS)
    with pytest.raises(ll.InvalidParameterError, match="Trajectory"):
        ll.e7_verdicts(ARCH, [{**every[0], "Adam": np.eye(4)}], EPOCHS)
