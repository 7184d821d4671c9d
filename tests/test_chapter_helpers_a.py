"""The package functions behind chapters E2, E4 and linear-versus-nonlinear, against independent
references: eigenvalues of W from an explicit N x N matrix, hidden states from a plain NumPy loop
of the network equation, sweep summaries from hand-counted arrays, conserved quantities from
their definitions."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lowrank_learning as ll

jax.config.update("jax_enable_x64", True)


# ------------------------------------------------------------------ E2: eigenvalues of W
@settings(max_examples=15, deadline=None)
@given(rank=st.integers(1, 3), N=st.integers(8, 40), seed=st.integers(0, 10_000))
def test_connectivity_eigenvalues_are_those_of_W(rank, N, seed):
    arch = ll.Architecture(rank=rank, activation="linear")
    X = np.random.default_rng(seed).standard_normal((N, arch.K))
    W = X[:, arch.slices["U"]] @ X[:, arch.slices["V"]].T / N
    eig_W = np.linalg.eigvals(W)
    top = eig_W[np.argsort(-np.abs(eig_W))[:rank]]
    got = ll.connectivity_eigenvalues(arch, X.T @ X / N)
    assert got.shape == (rank,)
    # the same multiset: each eigenvalue of W has a match among those from the overlaps
    assert max(np.min(np.abs(got - t)) for t in top) < 1e-9 * max(1.0, np.max(np.abs(top)))


def test_discrete_time_eigenvalue_reproduces_the_target_per_step():
    rate, dt = complex(-0.3, 2.0), 0.05
    lam = ll.discrete_time_eigenvalue(rate, dt)
    # one Euler step of kappa' = kappa + dt (-kappa + lam kappa) multiplies by exp(rate dt)
    assert abs((1 + dt * (lam - 1)) - np.exp(rate * dt)) < 1e-14
    assert abs(ll.discrete_time_eigenvalue(rate, 1e-7) - (1 + rate)) < 1e-6
    with pytest.raises(ll.InvalidParameterError, match="dt"):
        ll.discrete_time_eigenvalue(rate, 0.0)


def test_eigenvalue_summary_tracks_a_pair_becoming_complex():
    arch = ll.Architecture(rank=2, activation="linear")
    V, U = arch.slices["V"], arch.slices["U"]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, arch.K))
    S = X.T @ X / 50
    path = np.repeat(S[None], 4, axis=0)
    blocks = [np.diag([0.5, 0.6]), np.diag([0.55, 0.55]), np.array([[0.5, -0.3], [0.3, 0.5]]),
              np.array([[0.7, -2.0], [2.0, 0.7]])]
    for k, b in enumerate(blocks):
        path[k][V, U] = b  # only Sigma_VU matters for the eigenvalues
    out = ll.eigenvalue_summary(arch, path, path, X, complex(-0.3, 2.0), 0.05)
    assert out["complex_from"] == 2
    np.testing.assert_allclose(out["full"][-1], [0.7 - 2.0j, 0.7 + 2.0j], atol=1e-12)
    target = ll.discrete_time_eigenvalue(complex(-0.3, 2.0), 0.05)
    assert out["error"] == pytest.approx(min(abs(0.7 - 2j - target), abs(0.7 + 2j - target),
                                             abs(0.7 - 2j - np.conj(target))))
    assert out["target_ct"] == complex(0.7, 2.0)
    # W of X itself (whose Sigma_VU is not the planted last block) is compared with the final path
    W = X[:, U] @ X[:, V].T / 50
    top = np.linalg.eigvals(W)
    top = top[np.argsort(-np.abs(top))[:2]]
    assert out["W_check"] == pytest.approx(np.max(np.abs(np.sort_complex(top) - np.sort_complex(out["full"][-1]))))
    with pytest.raises(ll.InvalidParameterError, match="X_final"):
        ll.eigenvalue_summary(arch, path, path, X[:, :3], complex(-0.3, 2.0), 0.05)
    with pytest.raises(ll.InvalidParameterError, match="sigma"):
        ll.connectivity_eigenvalues(arch, S[:3, :3])


# ------------------------------------------------------------------ E4: same function, different activity
def _loop(arch, X, inputs, dt):
    """Plain NumPy loop of h_{t+1} = h_t + dt (-h_t + U V^T h_t / N + M x_t), y_t = Z^T h_{t+1} / N."""
    N = X.shape[0]
    M, U, V, Z = (X[:, arch.slices[g]] for g in "MUVZ")
    B, T, _ = inputs.shape
    h = np.zeros((B, N))
    hs, ys = [], []
    for t in range(T):
        h = h + dt * (-h + (h @ V) @ U.T / N + inputs[:, t] @ M.T)
        hs.append(h.copy())
        ys.append(h @ Z / N)
    return np.stack(ys, 1), np.stack(hs, 1)


def test_activity_comparison_against_a_plain_loop():
    arch = ll.Architecture(rank=1, activation="linear")
    N, dt = 60, 0.1
    X1 = ll.sample_vectors(arch, N, seed=3)
    X2 = ll.equivalent_vectors(arch, X1, {"uu": 2.0, "mu": 0.5})
    inputs = np.random.default_rng(1).standard_normal((2, 30, 1))
    out = ll.activity_comparison(arch, X1, X2, inputs, dt)
    (y1, h1), (y2, h2) = _loop(arch, X1, inputs, dt), _loop(arch, X2, inputs, dt)
    np.testing.assert_allclose(out["rms1"], np.linalg.norm(h1[0], axis=-1) / np.sqrt(N), rtol=1e-10)
    np.testing.assert_allclose(out["diff"], np.linalg.norm(h2[0] - h1[0], axis=-1) / np.sqrt(N), rtol=1e-9,
                               atol=1e-13)
    # the latent theory of both curves is exact for linear units (float64)
    np.testing.assert_allclose(out["rms1_theory"], out["rms1"], rtol=1e-9)
    np.testing.assert_allclose(out["diff_theory"], out["diff"], rtol=1e-8, atol=1e-12)
    assert out["theory_err"] < 1e-8
    assert out["out_diff"] == pytest.approx(np.max(np.abs(y1 - y2)), abs=1e-12)
    assert out["out_rel"] < 1e-10  # same visible overlaps: same function
    assert np.max(out["diff"]) > 1e-3  # different u: different activity


def test_activity_comparison_refuses_what_its_theory_does_not_cover():
    arch = ll.Architecture(rank=1, activation="linear")
    X1 = ll.sample_vectors(arch, 20, seed=0)
    X2 = X1.copy()
    X2[:, arch.slices["V"]] *= 2.0
    x = np.zeros((1, 5, 1))
    with pytest.raises(ll.InvalidParameterError, match="only U may differ"):
        ll.activity_comparison(arch, X1, X2, x, 0.1)
    with pytest.raises(ll.InvalidParameterError, match="linear"):
        ll.activity_comparison(ll.Architecture(rank=1, activation="erf"), X1, X1, x, 0.1)
    with pytest.raises(ll.InvalidParameterError, match="X2"):
        ll.activity_comparison(arch, X1, X1[:, :3], x, 0.1)


# ------------------------------------------------------------------ E4: the sweep's summary
def test_speed_summary_counts_every_kind_of_point():
    E = np.array([[10.0, 40.0, np.inf], [np.nan, 20.0, np.nan]])
    reachable = np.array([[True, True, True], [False, True, True]])  # one nan unreachable, one diverged
    lines = {"uu": {"epochs": np.array([10.0, 30.0, np.inf])}, "mu": {"epochs": np.array([20.0, 25.0])},
             "zz": {"epochs": np.array([np.nan, np.inf])}}
    out = ll.speed_summary({"epochs": E, "reachable": reachable}, lines)
    assert (out["n_reachable"], out["n_reached"], out["n_missed"], out["n_failed"]) == (5, 3, 1, 1)
    assert (out["min"], out["max"], out["ratio"]) == (10.0, 40.0, 4.0)
    assert out["spread"] == {"uu": 3.0, "mu": 1.25, "zz": None}
    assert out["order"] == ["uu", "mu", "zz"]
    none = ll.speed_summary({"epochs": np.full(2, np.inf), "reachable": np.ones(2, bool)})
    assert none["min"] is None and none["ratio"] is None and none["n_missed"] == 2
    with pytest.raises(ll.InvalidParameterError, match="shape"):
        ll.speed_summary({"epochs": E, "reachable": reachable[0]})


# ------------------------------------------------------------------ linear vs nonlinear: A, B, A
@pytest.fixture(scope="module")
def aba():
    A = ll.tasks.exponential_filter(c=0.2, dt=0.2, T_max=2.0)
    B = ll.tasks.exponential_filter(c=0.4, dt=0.2, T_max=2.0)
    plan = [ll.Phase(A, 0.05, 10, label="A"), ll.Phase(B, 0.05, 10, label="B"), ll.Phase(A, 0.05, 10, label="A")]
    erf = ll.Architecture(activation="erf")
    start = ll.random_overlaps(erf, 1, seed=0).sigma[0]
    out = {}
    for act in ("linear", "erf"):
        arch = ll.Architecture(activation=act)
        run = ll.run_schedule(arch, start, plan, space="overlaps", rule="exact", seed=0)
        flow = ll.learn_overlaps(arch, start, A, 0.05, 6, rule="flow", substeps=4, seed=0, progress=False)
        out[act] = (arch, run, flow, start)
    return out


def test_schedule_memory_against_definitions(aba):
    arch, run, flow, start = aba["linear"]
    m = ll.schedule_memory(arch, run, start, flow=flow, every=5)
    sig = np.asarray(run.trajectory.sigma_all)
    # conserved quantities: the spectrum of J Sigma, J = +1 on (Z, V), -1 on (M, U)
    J = np.diag([1.0 if g in ("Z", "V") else -1.0 for g in arch.vector_group])
    spec = lambda S: np.sort(np.linalg.eigvals(J @ S).real)  # noqa: E731
    assert m["drift"][-1] == pytest.approx(np.linalg.norm(spec(sig[-1]) - spec(start)), rel=1e-6, abs=1e-12)
    u, v = arch.vector_names.index("u"), arch.vector_names.index("v")
    bal = sig[:, u, u] - sig[:, v, v]
    assert m["balance_change"] == pytest.approx(np.max(np.abs(bal - (start[u, u] - start[v, v]))), abs=1e-15)
    assert len(m["final_losses"]) == 3 and m["visits"]["excursion"] > 0
    epochs, rate = m["violation"]
    assert list(epochs) == list(range(0, 30, 5)) and np.max(np.abs(rate)) < 1e-12  # linear: C is conserved
    assert m["flow_drift"] < 1e-6 and m["flow_balance_change"] < 1e-6  # gradient flow keeps both laws


def test_schedule_memory_erf_breaks_the_linear_law_not_the_balance(aba):
    arch, run, flow, start = aba["erf"]
    m = ll.schedule_memory(arch, run, start, flow=flow, every=5)
    assert np.max(m["violation"][1]) > 1e-6
    assert m["flow_drift"] > 1e3 * m["flow_balance_change"]


def test_schedule_memory_needs_three_phases(aba):
    arch, run, _, _ = aba["linear"]
    two = ll.run_schedule(arch, run.trajectory.sigma[0], run.phases[:2], space="overlaps", seed=0)
    with pytest.raises(ll.InvalidParameterError, match="3 or more"):
        ll.schedule_memory(arch, two)


# ------------------------------------------------------------------ linear vs nonlinear: twins
def _twins_run(n=3, R1=4, R2=3, seed=0):
    """A run_twins-shaped result from random Gram matrices (no training): the twins of a pair
    start together, then move apart."""
    rng = np.random.default_rng(seed)

    def gram(shape):
        F = rng.standard_normal(shape + (30, 4))
        return np.einsum("...nk,...nl->...kl", F, F) / 30

    start = gram((n,))
    p1 = gram((2 * n, R1))
    p1[:, 0] = np.concatenate([start, start])
    p2 = gram((2 * n, R2))
    return {"start": start, "p1_final": p2[:, 0], "p2_final": p2[:, -1], "p1_sigma": p1, "p2_sigma": p2,
            "p1_record_epochs": np.arange(R1) * 5, "p2_record_epochs": np.arange(R2) * 5,
            "p1_loss": np.ones((2 * n, 5 * R1))}


def test_twins_memory_against_definitions():
    run = _twins_run()
    arch = ll.Architecture(activation="erf")
    out = ll.twins_memory(arch, run, seed=0)
    assert len(out["dec_inv"]) == len(ll.TWIN_STAGES) == 3
    assert all(0.0 <= d <= 1.0 for d in out["dec_inv"] + out["dec_vis"])
    assert all(0.0 < p <= 1.0 for p in out["p_inv"])
    # the drift is measured from each network's own start: zero at the first record
    assert out["drift_curve"][0] == 0.0
    J = np.diag([1.0 if g in ("Z", "V") else -1.0 for g in arch.vector_group])
    spec = lambda S: np.sort(np.linalg.eigvals(J @ S).real)  # noqa: E731
    ends = [np.linalg.norm(spec(run["p2_sigma"][i, -1]) - spec(run["p1_sigma"][i, 0])) for i in range(6)]
    assert out["drift"] == pytest.approx(np.median(ends), rel=1e-9)
    np.testing.assert_array_equal(out["record_epochs"], np.r_[0, 5, 10, 15, 20, 25, 30])
    g = run["p2_final"][:3] - run["p2_final"][3:]
    inv = [np.linalg.norm(ll.flatten(arch, gi)[~arch.visible]) for gi in g]
    assert out["gap_inv"] == pytest.approx(np.median(inv))
    assert out["tests"][("invisible", "after phase 2")].observed == out["dec_inv"][2]
    with pytest.raises(ll.InvalidParameterError, match="p2_final"):
        ll.twins_memory(arch, {k: v for k, v in run.items() if k != "p2_final"})


# ------------------------------------------------------------------ tables on the page
def test_table_renders_markdown_and_refuses_ragged_rows():
    t = ll.plotting.Table(["a", "b|c"], [("x", 1.23456), ("y\nz", 2)], fmt=".2g")
    assert t._repr_markdown_() == "| a | b\\|c |\n|---|---|\n| x | 1.2 |\n| y z | 2 |\n"
    with pytest.raises(ll.InvalidParameterError, match="rows"):
        ll.plotting.Table(["a", "b"], [("x",)])
