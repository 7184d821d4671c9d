"""The performance chapter's headline numbers: ``ll.crossover_size`` and ``ll.scaling_benchmark``.

References: synthetic timing curves with a crossing known in closed form, and the weighted
least-squares fit written out here with numpy's normal equations (``crossover_size``);
recording stand-ins for the timer and the learners, which show what ``scaling_benchmark``
times and where each number lands (``scaling_benchmark``). ``seconds_per_epoch`` itself is
tested in tests/test_validation.py.
"""

import numpy as np
import pytest

import lowrank_learning as ll
from lowrank_learning.experiments import performance

# float64 round-off of a 2-parameter least-squares fit on a handful of points of order 1e-3 s:
# the solver's backward error is a few eps = 2.2e-16 times the condition number of the
# (relative-error) design matrix, below 1e4 for N spanning 1e2..1e5; 1e-9 relative leaves
# room for that product (~1e-11) with a margin of 100.
_RTOL_FIT = 1e-9


# ----------------------------------------------------------------------------- crossover_size
@pytest.mark.parametrize("c0, c1, overlap_s", [
    (2e-4, 3e-7, 5e-3),      # crossing at (5e-3 - 2e-4) / 3e-7 = 16000 neurons
    (1e-5, 1e-9, 2e-3),      # crossing far beyond the measured sizes (extrapolation)
    (4e-3, 1e-6, 4.5e-3),    # crossing at 500, inside the measured range
])
def test_crossover_of_an_exact_line_is_the_closed_form(c0, c1, overlap_s):
    """Timings exactly on t = c0 + c1 N: the fit returns (c0, c1) and the crossing is (t_ov - c0) / c1."""
    N = np.array([100, 300, 1000, 3000, 10000, 30000])
    t = c0 + c1 * N
    got = ll.crossover_size(N, t, overlap_s)
    np.testing.assert_allclose(got, (overlap_s - c0) / c1, rtol=_RTOL_FIT)
    # at the crossing, the fitted full-network cost equals the overlap cost
    np.testing.assert_allclose(c0 + c1 * got, overlap_s, rtol=_RTOL_FIT)


def _relative_least_squares(N, t):
    """Minimise sum_i ((c0 + c1 N_i - t_i) / t_i)^2 by the normal equations (2 x 2, written out)."""
    w = 1.0 / np.asarray(t, float) ** 2
    N = np.asarray(N, float)
    A = np.array([[np.sum(w), np.sum(w * N)], [np.sum(w * N), np.sum(w * N * N)]])
    b = np.array([np.sum(w * t), np.sum(w * N * t)])
    return np.linalg.solve(A, b)


def test_crossover_on_noisy_timings_uses_the_relative_error_fit():
    """Timings off the line (multiplicative noise, as measured timings are): the crossing is the one
    of the fit that weighs each point by 1/t^2, which differs from an unweighted fit here."""
    rng = np.random.default_rng(0)
    N = np.array([100, 200, 400, 800, 1600, 3200, 6400, 12800])
    t = (1e-3 + 2e-7 * N) * np.exp(0.3 * rng.standard_normal(N.size))
    overlap_s = 3e-3
    c0, c1 = _relative_least_squares(N, t)
    assert c0 < overlap_s and c1 > 0
    got = ll.crossover_size(N, t, overlap_s)
    np.testing.assert_allclose(got, (overlap_s - c0) / c1, rtol=_RTOL_FIT)
    # the weighting matters: an unweighted fit puts the crossing elsewhere (here by > 5 %)
    d1, d0 = np.polyfit(N, t, 1)
    assert abs((overlap_s - d0) / d1 - got) > 0.05 * got


def test_crossover_edge_cases():
    N = np.array([100.0, 1000.0, 10000.0])
    # full network already as slow as the overlaps at N -> 0 (c0 >= overlap_s): 0
    assert ll.crossover_size(N, 5e-3 + 1e-7 * N, 5e-3) == 0.0
    assert ll.crossover_size(N, 6e-3 + 1e-7 * N, 5e-3) == 0.0
    # cost not growing with N (c1 <= 0) and cheaper than the overlaps: it never crosses
    assert np.isnan(ll.crossover_size(N, np.full(3, 1e-3), 5e-3))
    assert np.isnan(ll.crossover_size(N, 2e-3 - 1e-8 * N, 5e-3))


@pytest.mark.parametrize("N, t, field", [
    ([100, 1000, 10000], [1e-3, 2e-3], "full_s"),            # lengths differ
    ([100], [1e-3], "N"),                                    # one size: the line is not determined
    ([100, 1000], [1e-3, 0.0], "full_s"),                    # a zero timing: the relative fit divides by it
    ([100, 1000], [1e-3, np.nan], "full_s"),                 # a failed timing
    ([100, 100], [1e-3, 2e-3], "N"),                         # one distinct size
])
def test_crossover_rejects_bad_timings(N, t, field):
    with pytest.raises(ll.InvalidParameterError, match=field):
        ll.crossover_size(N, t, 1e-3)


# ----------------------------------------------------------------------------- scaling_benchmark
class _Recorder:
    """Stand-ins for the learners and the timer: each learner call is recorded, and the timer
    returns a distinct pair of numbers for each call, so that the test can see where it lands."""

    def __init__(self):
        self.learner_calls, self.timer_calls = [], []

    def learn_overlaps(self, arch, S0, task, lr, epochs, progress=True):
        self.learner_calls.append(("overlaps", arch.activation, None, np.asarray(S0), task, lr, epochs))

    def learn_vectors(self, arch, X0, task, lr, epochs, progress=True):
        self.learner_calls.append(("vectors", arch.activation, np.asarray(X0), None, task, lr, epochs))

    def seconds_per_epoch(self, run, epochs, repeats):
        k = len(self.timer_calls)
        run(epochs)  # one call of the learner with the epochs to time
        self.timer_calls.append((epochs, repeats))
        return 10.0 * (k + 1), 10.0 * (k + 1) + 1.0  # (median, best): call k -> 10(k+1), 10(k+1) + 1


def test_scaling_benchmark_times_the_stated_workloads_and_files_each_number(monkeypatch):
    rec = _Recorder()
    for name in ("learn_overlaps", "learn_vectors", "seconds_per_epoch"):
        monkeypatch.setattr(performance, name, getattr(rec, name))
    sizes = [300, 50, 1200]
    out = ll.scaling_benchmark(sizes, activations=("linear", "erf"), epochs=4, repeats=5, epochs_largest=2)
    assert out["N"] == sizes and out["dtype"] == "float64" and isinstance(out["device"], str)
    # per activation: one overlap timing, then one full-network timing per size, in the order given
    assert [c[0] for c in rec.learner_calls] == (["overlaps"] + ["vectors"] * 3) * 2
    # overlap runs are 8x longer (they are cheap); the largest size uses epochs_largest
    assert rec.timer_calls == [(32, 5), (4, 5), (4, 5), (2, 5)] * 2
    S_init = ll.sigma_from_named(ll.Architecture(), ll.INIT_OVERLAPS)
    for a, act in enumerate(("linear", "erf")):
        calls = rec.learner_calls[4 * a: 4 * a + 4]
        k = 4 * a  # the timer call number of this activation's overlap timing
        assert out[act]["overlap_s"] == 10.0 * (k + 1) and out[act]["overlap_best_s"] == 10.0 * (k + 1) + 1
        assert out[act]["full_s"] == [10.0 * (k + 2 + i) for i in range(3)]
        assert out[act]["full_best_s"] == [10.0 * (k + 2 + i) + 1 for i in range(3)]
        for kind, activation, X0, S0, task, lr, _ in calls:
            assert activation == act
            if act == "linear":  # the E1 task: impulse response exp(-0.2 t), 400 steps of 0.05, one trial
                assert lr == 5e-3 and isinstance(task, ll.Batch) and task.inputs.shape == (1, 400, 1)
                np.testing.assert_allclose(np.asarray(task.targets)[0, :, 0], np.exp(-0.2 * 0.05 * np.arange(400)),
                                           rtol=1e-15)
            else:  # E9's flip-flop: fresh trials, 4 of 200 steps of 0.1 s
                assert lr == 0.1 and isinstance(task, ll.tasks.FlipFlop)
                assert (task.n_trials, task.dt, task.n_steps) == (4, 0.1, 200)
        np.testing.assert_array_equal(calls[0][3], S_init)  # the overlap run starts at the initial overlaps
        for (_, _, X0, _, _, _, _), N in zip(calls[1:], sizes):
            assert X0.shape == (N, 4)
            # the full network starts from Gaussian vectors with those overlaps (seed 0)
            np.testing.assert_array_equal(X0, ll.sample_vectors(ll.Architecture(activation=act), N, seed=0,
                                                                sigma=S_init))


def test_scaling_benchmark_defaults_and_validation(monkeypatch):
    rec = _Recorder()
    for name in ("learn_overlaps", "learn_vectors", "seconds_per_epoch"):
        monkeypatch.setattr(performance, name, getattr(rec, name))
    ll.scaling_benchmark([20, 10], activations=("linear",), epochs=3, repeats=2)
    assert rec.timer_calls == [(24, 2), (3, 2), (3, 2)]  # no epochs_largest: every size gets `epochs`
    for kw, field in [(dict(N_values=[]), "N_values"), (dict(N_values=[10, 0]), r"N_values\[1\]"),
                      (dict(N_values=[10], epochs=0), "epochs"), (dict(N_values=[10], repeats=0), "repeats"),
                      (dict(N_values=[10], epochs_largest=0), "epochs_largest")]:
        with pytest.raises(ll.InvalidParameterError, match=field):
            ll.scaling_benchmark(**kw)


def test_scaling_benchmark_runs_for_real_on_a_tiny_case():
    """End to end, no stand-ins: every timing positive and finite, best <= median, one per size."""
    out = ll.scaling_benchmark([4, 8], activations=("linear",), epochs=1, repeats=1)
    r = out["linear"]
    assert len(r["full_s"]) == len(r["full_best_s"]) == 2
    for med, best in [(r["overlap_s"], r["overlap_best_s"]), *zip(r["full_s"], r["full_best_s"])]:
        assert np.isfinite(med) and 0 < best <= med
    assert out["device"] == "cpu" or isinstance(out["device"], str)
    # the crossover of these numbers is a number (or 0 / NaN by the rules above), never an error
    c = ll.crossover_size(out["N"], r["full_s"], r["overlap_s"])
    assert c == 0.0 or np.isnan(c) or c > 0
