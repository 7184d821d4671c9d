"""The large-N limit by a moving quadrature (learn/mean_field.py), each check against an independent reference:

* the per-row map against automatic differentiation of the full network (``ll.network_loss``) and
  of a weighted network written here, and the learner against ``ll.learn_vectors`` when the nodes
  are a network's rows (same learning-rate convention, same trials);
* linear units against the exact overlap map (``ll.learn_overlaps``) at every epoch;
* epoch 0 from a Gaussian against the Gaussian-gain latent model (closed-form erf gain,
  trapezoidal tanh gain) to the quadrature's accuracy, with the convergence in the number of nodes.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lowrank_learning as ll
from lowrank_learning.learn.mean_field import (
    NodeCloud,
    learn_mean_field,
    learn_mean_field_ensemble,
    mean_field_gradient,
    mean_field_nodes,
)

INIT = ll.INIT_OVERLAPS  # E9's initial overlaps


def _batch(rng, B, T, n_in, n_out, dt=0.1, loss="sum_time"):
    mask = (rng.random((B, T, n_out)) < 0.8).astype(float)
    mask[0, 0, 0] = 1.0
    return ll.Batch(1.5 * rng.standard_normal((B, T, n_in)), 0.5 * rng.standard_normal((B, T, n_out)), mask, dt,
                    loss)


def _weighted_loss(arch, X, w, batch):
    """The network with weighted neurons written out plainly (Euler loop on h, no latent
    coordinates): every average (1/N) sum_i is sum_i w_i."""
    act = arch.activation
    s = arch.slices
    M, U, V, Z = X[:, s["M"]], X[:, s["U"]], X[:, s["V"]], X[:, s["Z"]]
    h = jnp.zeros((batch.inputs.shape[0], X.shape[0]))
    ys = []
    for t in range(batch.inputs.shape[1]):
        h = h + batch.dt * (-h + (ll.phi(act, h) * w) @ V @ U.T + batch.inputs[:, t] @ M.T)
        ys.append((ll.phi(act, h) * w) @ Z)
    return ll.loss_value(jnp.stack(ys, axis=1), batch)


# ----------------------------------------------------------------------------- the per-row map
@pytest.mark.parametrize("activation", ["linear", "erf", "tanh"])
@pytest.mark.parametrize("loss", ["sum_time", "masked_mean"])
def test_row_map_is_the_full_network_update(activation, loss):
    """Nodes = the rows of a network, weights 1/N: f = N dL/dX of the full network (autodiff)."""
    arch = ll.Architecture(rank=2, n_in=2, n_out=2, activation=activation)
    rng = np.random.default_rng(3)
    X = ll.sample_vectors(arch, 150, seed=1)
    batch = _batch(rng, 3, 40, 2, 2, loss=loss)
    N = X.shape[0]
    L, G = jax.value_and_grad(lambda X_: ll.network_loss(arch, X_, batch))(jnp.asarray(X))
    loss_mf, f = mean_field_gradient(arch, X, np.full(N, 1.0 / N), batch)
    # same function, different summation order: rounding level (1e-12 of the largest entry)
    assert abs(float(loss_mf) - float(L)) <= 1e-12 * abs(float(L))
    np.testing.assert_allclose(np.asarray(f), N * np.asarray(G), rtol=0, atol=1e-12 * np.max(np.abs(f)))


@pytest.mark.parametrize("activation", ["erf", "tanh"])
def test_row_map_with_unequal_weights(activation):
    """Weighted neurons: f_k = (dL/dx_k) / w_k of the plainly written weighted network, and a node of
    weight 0 moves like a node of positive weight at the same place."""
    arch = ll.Architecture(rank=1, activation=activation)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((40, arch.K))
    w = rng.random(40) + 0.1
    w[-1] = 0.0
    X[-1] = X[0]                       # a weightless copy of node 0
    w = w / w.sum()
    batch = _batch(rng, 2, 12, 1, 1)
    L, G = jax.value_and_grad(lambda X_: _weighted_loss(arch, X_, jnp.asarray(w), batch))(jnp.asarray(X))
    loss_mf, f = mean_field_gradient(arch, X, w, batch)
    f = np.asarray(f)
    assert abs(float(loss_mf) - float(L)) <= 1e-12 * abs(float(L))
    scale = np.max(np.abs(f))
    np.testing.assert_allclose(f[:-1], np.asarray(G)[:-1] / w[:-1, None], rtol=0, atol=1e-11 * scale)
    np.testing.assert_allclose(f[-1], f[0], rtol=0, atol=1e-13 * scale)


def test_row_map_of_a_probe_row_with_globals_of_a_large_network():
    """The map is a function of the row and the global sequences only: probe rows with weight 0 in a
    large-N network (N = 20000) move exactly as the full network moves its own copies of them."""
    arch = ll.Architecture(activation="erf")
    N = 20000
    X = ll.sample_vectors(arch, N, seed=2, sigma=ll.sigma_from_named(arch, INIT))
    batch = _batch(np.random.default_rng(1), 2, 30, 1, 1)
    G = np.asarray(jax.grad(lambda X_: ll.network_loss(arch, X_, batch))(jnp.asarray(X)))
    probes = X[[0, 17, 4242]]
    nodes = np.concatenate([X, probes])
    w = np.concatenate([np.full(N, 1.0 / N), np.zeros(3)])
    _, f = mean_field_gradient(arch, nodes, w, batch)
    f = np.asarray(f)
    np.testing.assert_allclose(f[N:], N * G[[0, 17, 4242]], rtol=0, atol=1e-10 * np.max(np.abs(f)))


def test_learner_on_a_network_is_learn_vectors():
    """With the rows of a network as nodes (weights 1/N), learn_mean_field is learn_vectors: the same
    learning-rate convention (eta N), the same trials per seed, the same plasticity and schedule."""
    arch = ll.Architecture(activation="erf")
    X = ll.sample_vectors(arch, 120, seed=4, sigma=ll.sigma_from_named(arch, INIT))
    task = ll.tasks.flip_flop(n_trials=3, dt=0.1, T_max=4.0, wait_min=1.0, wait_max=2.0)
    sched = ll.Piecewise((0.2, 0.1), (3,))
    full = ll.learn_vectors(arch, X, task, sched, 6, plastic=["m", "v", "z"], seed=7, progress=False)
    cloud = NodeCloud(X, np.full(120, 1.0 / 120))
    mf, moved = learn_mean_field(arch, None, task, sched, 6, nodes=cloud, plastic=["m", "v", "z"], seed=7,
                                 return_nodes=True)
    scale = np.max(np.abs(full.sigma_all))
    np.testing.assert_allclose(mf.sigma_all, full.sigma_all, rtol=0, atol=1e-11 * scale)
    np.testing.assert_allclose(mf.loss, full.loss, rtol=1e-11)
    np.testing.assert_allclose(moved.nodes, full.final_vectors, rtol=0, atol=1e-11 * np.max(np.abs(X)))
    np.testing.assert_array_equal(moved.nodes[:, 1], X[:, 1])  # u frozen
    assert mf.method == "mean_field"


# ----------------------------------------------------------------------------- linear units
@pytest.mark.parametrize("rank,n_in,n_out", [(1, 1, 1), (2, 2, 1)])
def test_linear_units_equal_the_exact_map(rank, n_in, n_out):
    """Linear units: the map is linear in the row, second moments close, and Gauss-Hermite with 2
    points per dimension holds them exactly; so the node cloud's overlaps are the exact map's at
    every epoch, to rounding (1e-12), here with fresh trials, a loss-triggered schedule and a
    frozen vector."""
    arch = ll.Architecture(rank=rank, n_in=n_in, n_out=n_out)
    S0 = ll.random_overlaps(arch, 1, seed=3).sigma[0]
    rng = np.random.default_rng(0)

    def task(key):
        k1, k2 = jax.random.split(key)
        x = jax.random.normal(k1, (2, 30, n_in))
        y = 0.3 * jax.random.normal(k2, (2, 30, n_out))
        return ll.Batch(x, y, None, 0.1, "sum_time")

    del rng
    sched = ll.DropBelow(0.01, 1e9, 2.0)  # drops at once: the schedule runs inside the loop
    plastic = np.ones(arch.K, bool)
    plastic[-1] = False
    ex = ll.learn_overlaps(arch, S0, task, sched, 30, plastic=plastic, seed=3, progress=False)
    mf = learn_mean_field(arch, S0, task, sched, 30, nodes=2, plastic=plastic, seed=3)
    np.testing.assert_allclose(mf.sigma_all, ex.sigma_all, rtol=0, atol=1e-12 * np.max(np.abs(ex.sigma_all)))
    np.testing.assert_allclose(mf.loss, ex.loss, rtol=1e-12)
    assert mf.drop_epoch == ex.drop_epoch == 0


# ----------------------------------------------------------------------------- epoch 0 from a Gaussian
def _padded(cloud, n):
    """The cloud with zero-weight nodes (at the origin) appended up to ``n`` nodes: the same
    averages, and one shape for every grid, so that a sweep over grids compiles once."""
    X, w = cloud.nodes, cloud.weights
    pad = n - w.shape[0]
    return NodeCloud(np.concatenate([X, np.zeros((pad, X.shape[1]))]), np.concatenate([w, np.zeros(pad)]))


def _epoch0(arch, S0, batch, nodes, pad_to=None):
    cloud = mean_field_nodes(arch, S0, nodes)
    if pad_to is not None:
        cloud = _padded(cloud, pad_to)
    loss, f = mean_field_gradient(arch, cloud.nodes, cloud.weights, batch)
    fx = np.einsum("n,ni,nj->ij", cloud.weights, np.asarray(f), cloud.nodes)
    return float(loss), fx


@pytest.mark.parametrize("activation,points,tol_loss,tol_drift", [("erf", 32, 1e-9, 1e-9), ("tanh", 40, 1e-9, 1e-5)])
def test_epoch0_equals_the_gaussian_closure(activation, points, tol_loss, tol_drift):
    """From Gaussian rows the limit's loss is the Gaussian-gain latent model's (erf: closed-form
    gain; tanh: the trapezoidal gain), and the first-order drift of the overlaps, E[f x^T], is
    S Sigma with S = G + G^T of that model (Stein's lemma): the flow's right-hand side.

    At epoch 0 the integrands depend nonlinearly on the two (m, u) reference coordinates only and
    at most quadratically on the others, so 2 points suffice there. In (m, u) the Gauss-Hermite
    error falls geometrically for erf (entire) and more slowly for tanh (poles of sech^2 near the
    real axis); measured on this batch (relative errors, loss / drift): erf 3.6e-15 / 3.2e-11 at
    32 points, tanh 5.3e-11 / 1.2e-6 at 40 points. The tolerances sit a factor 10-30 above."""
    arch = ll.Architecture(activation=activation)
    S0 = ll.sigma_from_named(arch, INIT)
    batch = _batch(np.random.default_rng(2), 3, 60, 1, 1)
    loss, fx = _epoch0(arch, S0, batch, (points, points, 2, 2))
    ref_loss = float(ll.overlap_loss(arch, S0, batch))
    G = np.asarray(ll.overlap_gradient(arch, S0, batch))
    S = G + G.T
    assert abs(loss - ref_loss) <= tol_loss * ref_loss
    np.testing.assert_allclose(fx, S @ S0, rtol=0, atol=tol_drift * np.max(np.abs(S @ S0)))
    # the flow's right-hand side, -(S Sigma + Sigma S), is -(E[f x^T] + E[x f^T])
    rhs = np.asarray(ll.flow_rhs(arch, S0, batch))
    np.testing.assert_allclose(-(fx + fx.T), rhs, rtol=0, atol=2 * tol_drift * np.max(np.abs(rhs)))


def test_quadrature_convergence_order():
    """Convergence in the number of nodes, order measured on the epoch-0 loss against the Gaussian
    closure. erf (phi' entire): the error falls at least geometrically in the points n per (m, u)
    dimension, err ~ C q^n with a fitted q < 0.6 (measured 0.43 from n = 4 to 20, and improving:
    super-geometric). tanh (phi' = sech^2 with poles): err ~ C exp(-c sqrt(n)), the rate of
    Gauss-Hermite for integrands analytic in a strip; log err is then closer to linear in sqrt(n)
    than in n, and the fitted c > 1."""
    batch = _batch(np.random.default_rng(2), 3, 60, 1, 1)
    ns = np.array([4, 8, 12, 16, 20])
    fits = {}
    for act in ("erf", "tanh"):
        arch = ll.Architecture(activation=act)
        S0 = ll.sigma_from_named(arch, INIT)
        ref = float(ll.overlap_loss(arch, S0, batch))
        err = np.array([abs(_epoch0(arch, S0, batch, (n, n, 2, 2), pad_to=1600)[0] - ref) / ref for n in ns])
        assert np.all(np.diff(np.log(err)) < 0), (act, err)
        fits[act] = {x: np.polyfit(f(ns), np.log(err), 1, full=True) for x, f in (("n", lambda n: n),
                                                                                  ("sqrt", np.sqrt))}
    q = np.exp(fits["erf"]["n"][0][0])
    assert q < 0.6, q
    c = -fits["tanh"]["sqrt"][0][0]
    assert c > 1.0, c
    assert fits["tanh"]["sqrt"][1][0] < fits["tanh"]["n"][1][0]  # residuals: sqrt(n) fits tanh better


def test_trained_cloud_converges_in_the_number_of_nodes():
    """After training (erf, 20 epochs at eta 0.2) the overlaps converge as the tensor grid is
    refined: successive differences shrink, and the error of n = 5 per dimension against n = 9
    is below 1e-3 while the Gaussian closure differs from the limit by more than that (the limit is
    not the closure once the rows have moved)."""
    arch = ll.Architecture(activation="erf")
    S0 = ll.sigma_from_named(arch, INIT)
    batch = _batch(np.random.default_rng(8), 2, 60, 1, 1)
    finals = {n: learn_mean_field(arch, None, batch, 0.2, 20, nodes=_padded(mean_field_nodes(arch, S0, n), 9 ** 4))
              .final_sigma for n in (3, 5, 7, 9)}
    d = [np.max(np.abs(finals[a] - finals[9])) for a in (3, 5, 7)]
    assert d[0] > d[1] > d[2], d
    assert d[1] < 1e-3, d
    closure = ll.learn_overlaps(arch, S0, batch, 0.2, 20, progress=False).final_sigma
    assert np.max(np.abs(closure - finals[9])) > 10 * d[2]


# ----------------------------------------------------------------------------- the learners
def test_ensemble_members_are_single_runs():
    arch = ll.Architecture(activation="tanh")
    S0 = np.stack([ll.sigma_from_named(arch, INIT), ll.random_overlaps(arch, 1, seed=1).sigma[0]])
    task = ll.tasks.flip_flop(n_trials=2, dt=0.1, T_max=6.0, wait_min=1.0, wait_max=2.0)
    ens, moved = learn_mean_field_ensemble(arch, S0, task, 0.1, 6, nodes=3, seeds=[0, 5], return_nodes=True)
    assert moved.nodes.shape == (2, 81, arch.K)
    for i, seed in enumerate([0, 5]):
        one = learn_mean_field(arch, S0[i], task, 0.1, 6, nodes=3, seed=seed)
        np.testing.assert_allclose(ens.sigma[i], one.sigma, rtol=0, atol=1e-13)
        np.testing.assert_allclose(ens.final_sigma[i], one.final_sigma, rtol=0, atol=1e-13)
        np.testing.assert_allclose(ens.loss[i], one.loss, rtol=1e-13)
    np.testing.assert_allclose(moved.sigma(), ens.final_sigma, rtol=0, atol=1e-13)


def test_nodes_and_moments():
    arch = ll.Architecture(rank=2, n_in=1, n_out=2, activation="erf")
    S0 = ll.random_overlaps(arch, 1, seed=2).sigma[0]
    gh = mean_field_nodes(arch, S0, 2)
    assert gh.nodes.shape == (2 ** arch.K, arch.K)
    np.testing.assert_allclose(gh.sigma(), S0, rtol=0, atol=1e-13)
    aniso = mean_field_nodes(arch, S0, (3, 3, 3, 2, 2, 2, 2))
    assert aniso.n_nodes == 27 * 16
    np.testing.assert_allclose(aniso.sigma(), S0, rtol=0, atol=1e-13)
    pruned = mean_field_nodes(arch, S0, 4, prune=1e-6)
    assert pruned.n_nodes < 4 ** arch.K and abs(pruned.weights.sum() - 1) < 1e-14
    # QMC: second moments to O(n^-1) (scrambled Sobol), not exactly
    q = mean_field_nodes(arch, S0, 4096, scheme="qmc", seed=1)
    err = np.max(np.abs(q.sigma() - S0))
    assert 0 < err < 2e-2, err
    # a singular Sigma0 (two equal vectors) keeps the equality at every node
    S1 = np.ones((arch.K, arch.K)) + np.eye(arch.K)
    S1[0, :] = S1[:, 0] = S1[1, :]
    S1[0, 0] = S1[1, 1]
    c = mean_field_nodes(arch, S1, 2)
    np.testing.assert_allclose(c.nodes[:, 0], c.nodes[:, 1], atol=1e-13)
    np.testing.assert_allclose(c.sigma(), S1, atol=1e-12)


def test_same_seed_same_numbers_and_float32():
    arch = ll.Architecture(activation="erf")
    S0 = ll.sigma_from_named(arch, INIT)
    task = ll.tasks.flip_flop(n_trials=2, dt=0.1, T_max=6.0, wait_min=1.0, wait_max=2.0)
    a = learn_mean_field(arch, S0, task, 0.2, 5, nodes=3, seed=2)
    b = learn_mean_field(arch, S0, task, 0.2, 5, nodes=3, seed=2)
    np.testing.assert_array_equal(a.sigma, b.sigma)
    c = learn_mean_field(arch, S0.astype(np.float32), task, 0.2, 5, nodes=3, seed=2)
    assert c.sigma.dtype == np.float32
    # float32 rounding (1e-7 relative per operation) over 5 epochs: far below 1e-4
    np.testing.assert_allclose(c.sigma, a.sigma, rtol=0, atol=1e-4)


def test_bad_input_names_the_field():
    arch = ll.Architecture(activation="erf")
    S0 = ll.sigma_from_named(arch, INIT)
    batch = _batch(np.random.default_rng(0), 1, 5, 1, 1)
    cases = [
        (lambda: mean_field_nodes(arch, S0, 0), "nodes"),
        (lambda: mean_field_nodes(arch, S0, (2, 2)), "nodes"),
        (lambda: mean_field_nodes(arch, S0, 2, scheme="sparse"), "scheme"),
        (lambda: mean_field_nodes(arch, S0, 2, prune=1.5), "prune"),
        (lambda: mean_field_nodes(arch, S0, 40), "nodes"),
        (lambda: mean_field_nodes(arch, -S0, 2), "Sigma0"),
        (lambda: learn_mean_field(arch, S0[:3, :3], batch, 0.1, 2), "Sigma0"),
        (lambda: learn_mean_field(arch, None, batch, 0.1, 2), "Sigma0"),
        (lambda: learn_mean_field(arch, S0, batch, 0.1, 2, nodes=NodeCloud(np.zeros((3, 4)), np.ones(3) / 3)),
         "Sigma0"),
        (lambda: learn_mean_field(arch, None, batch, 0.1, 2, nodes=NodeCloud(np.zeros((3, 3)), np.ones(3) / 3)),
         "nodes"),
        (lambda: learn_mean_field(arch, S0, batch, -0.1, 2), "lr"),
        (lambda: learn_mean_field(arch, S0, batch, 0.1, 0), "epochs"),
        (lambda: learn_mean_field_ensemble(arch, S0, batch, 0.1, 2), "Sigma0"),
        (lambda: mean_field_gradient(arch, np.zeros((3, 4)), np.ones(2), batch), "weights"),
    ]
    for call, field in cases:
        with pytest.raises(ll.InvalidParameterError, match=field):
            call()


def test_divergence_is_reported():
    arch = ll.Architecture(activation="linear")
    S0 = ll.sigma_from_named(arch, INIT)
    batch = _batch(np.random.default_rng(0), 2, 30, 1, 1)
    with pytest.raises(ll.DivergenceError):
        learn_mean_field(arch, S0, batch, 50.0, 40, nodes=2)
