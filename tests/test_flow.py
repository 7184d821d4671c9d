"""Gradient flow vs the exact map, and our RK4 integrator vs scipy."""

import numpy as np
from scipy.integrate import solve_ivp

import lowrank_learning as ll


def _setup(activation="linear"):
    arch = ll.Architecture(activation=activation)
    X0 = ll.sample_vectors(arch, 200, seed=11)
    task = ll.tasks.exponential_filter(dt=0.1, T_max=10.0)
    return arch, ll.overlaps(X0), task


def test_flow_minus_exact_scales_as_eta_squared():
    for activation in ("linear", "erf"):
        arch, S0, task = _setup(activation)
        etas = np.array([2e-3, 4e-3, 8e-3, 1.6e-2])
        diffs = []
        for eta in etas:
            ex = ll.learn_overlaps(arch, S0, task, lr=float(eta), epochs=1, rule="exact", progress=False)
            fl = ll.learn_overlaps(arch, S0, task, lr=float(eta), epochs=1, rule="flow", substeps=4,
                                   progress=False)
            diffs.append(np.max(np.abs(ex.final_sigma - fl.final_sigma)))
        slope = np.polyfit(np.log(etas), np.log(diffs), 1)[0]
        assert abs(slope - 2.0) < 0.1, (activation, slope, diffs)


def test_rk4_flow_matches_scipy():
    arch, S0, task = _setup("erf")
    eta, epochs = 0.02, 25
    ours = ll.learn_overlaps(arch, S0, task, lr=eta, epochs=epochs, rule="flow", substeps=2,
                             progress=False)

    def rhs(_, y):
        return np.asarray(ll.flow_rhs(arch, y.reshape(arch.K, arch.K), task)).ravel()

    ref = solve_ivp(rhs, (0.0, eta * epochs), S0.ravel(), method="DOP853", rtol=1e-11, atol=1e-13)
    assert ref.success
    np.testing.assert_allclose(ours.final_sigma, ref.y[:, -1].reshape(arch.K, arch.K), atol=1e-9)


def test_flow_rhs_is_metric_times_gradient():
    """dsigma/dtau = -Metric(Sigma) dL/dsigma, with dL/dsigma from autodiff."""
    arch, S0, task = _setup("erf")
    plastic = np.array([True, True, False, True])
    G = np.asarray(ll.overlap_gradient(arch, S0, task))
    S = G + G.T
    i, j = np.array(arch.overlap_pairs).T
    g = np.where(i == j, G[i, i], S[i, j])  # dL/dsigma over distinct overlaps
    lhs = ll.flatten(arch, np.asarray(ll.flow_rhs(arch, S0, task, plastic)))
    rhs = -ll.overlap_metric(arch, S0, plastic) @ g
    np.testing.assert_allclose(lhs, rhs, atol=1e-12)
