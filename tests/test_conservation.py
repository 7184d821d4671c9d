"""Conserved quantities of linear gradient flow (book/theory.md, section 6)."""

import numpy as np

import lowrank_learning as ll


def _setup():
    arch = ll.Architecture()
    X0 = ll.sample_vectors(arch, 300, seed=5)
    return arch, X0, ll.tasks.exponential_filter(dt=0.1, T_max=10.0)


def test_invariants_match_full_matrix_spectrum():
    """Spectrum of J Sigma = non-zero spectrum of the N x N matrix A A^T - B B^T (over N)."""
    arch, X0, _ = _setup()
    s = arch.slices
    A = np.concatenate([X0[:, s["Z"]], X0[:, s["V"]]], axis=1)
    B = np.concatenate([X0[:, s["M"]], X0[:, s["U"]]], axis=1)
    big = np.linalg.eigvalsh((A @ A.T - B @ B.T) / X0.shape[0])
    big = np.sort(big[np.argsort(-np.abs(big))[: arch.K]])
    np.testing.assert_allclose(ll.conserved_quantities(arch, ll.overlaps(X0)), big, atol=1e-10)


def test_conserved_under_flow_not_under_adam():
    arch, X0, task = _setup()
    S0 = ll.overlaps(X0)
    c0 = ll.conserved_quantities(arch, S0)
    drift = {}
    for substeps in (2, 4):
        flow = ll.learn_overlaps(arch, S0, task, lr=5e-3, epochs=300, rule="flow",
                                 substeps=substeps, progress=False)
        drift[substeps] = np.max(np.abs(ll.conserved_quantities(arch, flow.sigma_all) - c0))
    assert flow.loss[-1] < 0.5 * flow.loss[0]  # learning happened
    # what drift there is, is the RK4 integrator's error: it falls as h^4 (16x per halving)
    assert drift[4] < 1e-9, drift
    assert drift[2] / drift[4] > 10, drift
    # the overlaps themselves moved a lot
    assert np.max(np.abs(flow.final_sigma - S0)) > 0.1
    adam = ll.learn_vectors(arch, X0, task, lr=1e-2, epochs=300, optimizer="adam", progress=False)
    drift_adam = np.max(np.abs(ll.conserved_quantities(arch, adam.final_sigma) - c0))
    assert drift_adam > 1e-2, drift_adam


def test_discrete_gd_drift_is_second_order():
    """Plain GD (the exact map) conserves the invariants only up to O(eta^2) per step."""
    arch, X0, task = _setup()
    S0 = ll.overlaps(X0)
    c0 = ll.conserved_quantities(arch, S0)
    drifts = []
    for eta in (2e-3, 4e-3, 8e-3):
        tr = ll.learn_overlaps(arch, S0, task, lr=eta, epochs=1, progress=False)
        drifts.append(np.max(np.abs(ll.conserved_quantities(arch, tr.final_sigma) - c0)))
    slope = np.polyfit(np.log([2e-3, 4e-3, 8e-3]), np.log(drifts), 1)[0]
    assert abs(slope - 2.0) < 0.15, (slope, drifts)
