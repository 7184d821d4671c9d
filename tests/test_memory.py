"""Memory measures and training schedules (E5)."""

import numpy as np
import pytest

import lowrank_learning as ll

ARCH = ll.Architecture()
TASK_A = ll.tasks.exponential_filter(c=0.2, dt=0.1, T_max=10.0)
TASK_B = ll.tasks.exponential_filter(c=0.4, dt=0.1, T_max=10.0)
N = 120
EPOCHS = 64  # one chunk size for every run below: one compilation per learner


@pytest.fixture(scope="module")
def X0():
    X = ll.sample_vectors(ARCH, N, seed=0)
    return ll.equivalent_vectors(ARCH, X, {"uu": 2.048, "mu": 0.8})


# ------------------------------------------------------------------------- distances
def test_overlap_distance_by_hand():
    S = ll.overlaps(ll.sample_vectors(ARCH, 50, seed=1))
    T = S.copy()
    T[2, 1] = T[1, 2] = S[2, 1] + 0.3   # vu, visible
    T[3, 3] = S[3, 3] - 0.4             # zz, invisible
    T[0, 1] = T[1, 0] = S[0, 1] + 0.3   # mu, invisible
    d = ll.overlap_distance(ARCH, S, T)
    assert d["visible"] == pytest.approx(0.3, abs=1e-14)
    assert d["invisible"] == pytest.approx(0.5, abs=1e-14)
    assert ll.invisible_distance(ARCH, S, T) == d["invisible"]
    stack = ll.overlap_distance(ARCH, S, np.stack([S, T, T]))
    np.testing.assert_allclose(stack["invisible"], [0.0, 0.5, 0.5], atol=1e-14)
    with pytest.raises(ll.InvalidParameterError, match="shape"):
        ll.overlap_distance(ARCH, S, np.eye(3))


def test_equivalent_pair_distance(X0):
    X1 = ll.sample_vectors(ARCH, N, seed=0)
    S1, S2 = ll.overlaps(X1), ll.overlaps(X0)
    d = ll.overlap_distance(ARCH, S1, S2)
    assert d["visible"] < 1e-13
    assert d["invisible"] == pytest.approx(np.hypot(2.048 - S1[1, 1], 0.8 - S1[0, 1]), rel=1e-12)


def test_conserved_drift_sees_only_what_breaks_the_law():
    """X -> X G with G J G^T = J (a boost mixing m with z, a rotation of v with z) keeps
    A A^T - B B^T, hence the conserved quantities, while the overlaps change a lot."""
    X = ll.sample_vectors(ARCH, 80, seed=2)
    m, u, v, z = range(4)
    G = np.eye(4)
    a = 0.7
    G[np.ix_([m, z], [m, z])] = [[np.cosh(a), np.sinh(a)], [np.sinh(a), np.cosh(a)]]
    R = np.eye(4)
    R[np.ix_([v, z], [v, z])] = [[np.cos(1.0), -np.sin(1.0)], [np.sin(1.0), np.cos(1.0)]]
    S = ll.overlaps(X)
    S_moved = ll.overlaps(X @ G @ R)
    assert np.max(np.abs(S_moved - S)) > 0.5
    assert ll.conserved_drift(ARCH, S_moved, S) < 1e-12
    scaled = X.copy()
    scaled[:, z] *= 1.5  # not J-orthogonal
    assert ll.conserved_drift(ARCH, ll.overlaps(scaled), S) > 0.5
    series = ll.conserved_drift(ARCH, np.stack([S, S_moved, ll.overlaps(scaled)]), S)
    assert series.shape == (3,) and series[0] == 0.0


def test_compare_visits():
    S = np.diag([1.0, 2.0, 3.0, 4.0])
    between = S.copy()
    between[0, 0] = 3.0  # mm moved by 2 (invisible)
    again = S.copy()
    again[0, 0] = 1.5    # came back to within 0.5
    out = ll.compare_visits(ARCH, S, again, between)
    assert out["visible"] == 0.0
    assert out["invisible"] == pytest.approx(0.5)
    assert out["excursion"] == pytest.approx(2.0)
    assert out["trace"] == pytest.approx(0.25)
    assert out["conserved_drift"] == pytest.approx(ll.conserved_drift(ARCH, again, S))
    assert set(ll.compare_visits(ARCH, S, again)) == {"visible", "invisible", "conserved_drift"}


# ------------------------------------------------------------------------- schedules
def test_phase_validation():
    with pytest.raises(ll.InvalidParameterError, match="Phase.lr"):
        ll.Phase(TASK_A, lr=0.0, epochs=3)
    with pytest.raises(ll.InvalidParameterError, match="Phase.epochs"):
        ll.Phase(TASK_A, lr=1e-3, epochs=2.5)
    with pytest.raises(ll.InvalidParameterError, match="Phase.optimizer"):
        ll.Phase(TASK_A, lr=1e-3, epochs=3, optimizer="sgd")
    with pytest.raises(ll.InvalidParameterError, match="Phase.update_noise"):
        ll.Phase(TASK_A, lr=1e-3, epochs=3, update_noise=-1.0)
    with pytest.raises(ll.InvalidParameterError, match="Phase.task"):
        ll.Phase("A", lr=1e-3, epochs=3)
    with pytest.raises(ll.InvalidParameterError, match="overlap-space"):
        ll.run_schedule(ARCH, np.eye(4), [ll.Phase(TASK_A, 1e-3, 3, optimizer="adam")], space="overlaps")
    with pytest.raises(ll.InvalidParameterError, match="non-empty"):
        ll.run_schedule(ARCH, np.eye(4), [], space="overlaps")


def _schedule():
    noisy_A = ll.tasks.with_label_noise(TASK_A, 0.1)
    return [ll.Phase(TASK_A, 1e-2, EPOCHS, label="A"), ll.Phase(TASK_B, 1e-2, EPOCHS, label="B"),
            ll.Phase(noisy_A, 2e-2, EPOCHS, label="A+noise")]


def test_schedule_equals_phases_by_hand(X0):
    phases = _schedule()
    run = ll.run_schedule(ARCH, X0, phases, seed=10)
    X, parts = X0, []
    for i, p in enumerate(phases):
        parts.append(ll.learn_vectors(ARCH, X, p.task, lr=p.lr, epochs=p.epochs, seed=10 + i, progress=False))
        X = parts[-1].final_vectors
    tr = run.trajectory
    np.testing.assert_array_equal(tr.loss, np.concatenate([p.loss for p in parts]))
    np.testing.assert_array_equal(tr.sigma, np.concatenate([p.sigma for p in parts]))
    np.testing.assert_array_equal(tr.final_vectors, X)
    np.testing.assert_array_equal(run.boundaries, [0, EPOCHS, 2 * EPOCHS, 3 * EPOCHS])
    assert run.labels == ("A", "B", "A+noise")
    np.testing.assert_array_equal(run.end_sigma(1), parts[1].final_sigma)
    np.testing.assert_array_equal(run.start_sigma(2), parts[2].sigma[0])
    np.testing.assert_array_equal(run.lr_per_epoch, np.repeat([1e-2, 1e-2, 2e-2], EPOCHS))
    # the overlap-space schedule (exact map) is the same dynamics, label noise included
    theory = ll.run_schedule(ARCH, ll.overlaps(X0), phases, space="overlaps", seed=10)
    scale = np.max(np.abs(tr.sigma))
    np.testing.assert_allclose(theory.trajectory.sigma_all, tr.sigma_all, rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(theory.trajectory.loss, tr.loss, rtol=1e-9)


def test_schedule_cache(X0, tmp_path, monkeypatch):
    monkeypatch.setenv("LOWRANK_LEARNING_CACHE", str(tmp_path))
    phases = _schedule()[:2]
    S0 = ll.overlaps(X0)
    first = ll.run_schedule(ARCH, S0, phases, space="overlaps", cache_name="sched")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sched-0", "sched-1"]
    again = ll.run_schedule(ARCH, S0, phases, space="overlaps", cache_name="sched")
    np.testing.assert_array_equal(again.trajectory.sigma, first.trajectory.sigma)
    np.testing.assert_array_equal(again.trajectory.loss, first.trajectory.loss)


def test_gd_keeps_the_conservation_law_noise_breaks_it(X0):
    """A, B, A: under GD (small steps) the conserved quantities barely move and the invisible
    overlaps come back; update noise moves the conserved quantities and leaves a trace."""
    plain = [ll.Phase(TASK_A, 1e-2, EPOCHS), ll.Phase(TASK_B, 1e-2, EPOCHS), ll.Phase(TASK_A, 1e-2, EPOCHS)]
    noisy = [ll.Phase(p.task, p.lr, p.epochs, update_noise=0.01) for p in plain]
    S0 = ll.overlaps(X0)
    gd = ll.run_schedule(ARCH, S0, plain, space="overlaps")
    ngd = ll.run_schedule(ARCH, X0, noisy)
    m_gd = ll.compare_visits(ARCH, gd.end_sigma(0), gd.end_sigma(2), gd.end_sigma(1))
    m_noisy = ll.compare_visits(ARCH, ngd.end_sigma(0), ngd.end_sigma(2), ngd.end_sigma(1))
    # GD breaks the law only through its finite steps (O(eta^2) per step, large gradients early)
    assert m_gd["conserved_drift"] < 0.02, m_gd
    assert m_gd["trace"] < 0.1, m_gd  # the invisible overlaps came (nearly) all the way back
    assert m_noisy["conserved_drift"] > 5 * m_gd["conserved_drift"], (m_noisy, m_gd)
    assert m_noisy["invisible"] > 3 * m_gd["invisible"], (m_noisy, m_gd)
    # both returned to (nearly) the same function
    assert max(m_gd["visible"], m_noisy["visible"]) < 0.05
