"""Equivalent networks: same loss-visible overlaps, chosen invisible ones (E4)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

import lowrank_learning as ll


def _rel_err(a, b):
    return np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(1.0, np.max(np.abs(b)))


def _check_equivalent(arch, X, Xn, targets):
    """Every overlap not targeted is unchanged, the targets are met, both to rounding."""
    S, Sn = ll.overlaps(X), ll.overlaps(Xn)
    want = S.copy()
    for name, v in targets.items():
        i, j = arch.overlap_pair(name)
        want[i, j] = want[j, i] = v
    scale = max(1.0, np.max(np.abs(want)))
    err = np.abs(Sn - want) / scale
    vis = arch.visible_matrix
    assert np.max(err[vis], initial=0) < 1e-11, np.max(err[vis])
    assert np.max(err) < 1e-9, np.max(err)
    return err


# ------------------------------------------------------------------------- the paper's pair
def test_e4_pair_changes_u_only():
    arch = ll.Architecture()
    X = ll.sample_vectors(arch, 500, seed=0)
    Xn = ll.equivalent_vectors(arch, X, {"uu": 2.048, "mu": 0.8})
    assert Xn.dtype == np.float64 and Xn.shape == X.shape
    err = _check_equivalent(arch, X, Xn, {"uu": 2.048, "mu": 0.8})
    assert np.max(err[arch.visible_matrix]) < 1e-12
    keep = [arch.vector_index(n) for n in ("m", "v", "z")]
    np.testing.assert_array_equal(Xn[:, keep], X[:, keep])
    assert np.linalg.norm(Xn[:, 1] - X[:, 1]) / np.sqrt(500) > 0.5
    # the overlap-space counterpart gives the same matrix
    np.testing.assert_allclose(ll.equivalent_overlaps(arch, ll.overlaps(X), {"uu": 2.048, "mu": 0.8}),
                               ll.overlaps(Xn), atol=1e-12)


def test_current_values_give_back_the_vectors():
    arch = ll.Architecture(rank=2, n_out=2)
    X = ll.sample_vectors(arch, 60, seed=4)
    S = ll.named(arch, ll.overlaps(X))
    targets = {n: S[n] for n in arch.invisible_names}
    np.testing.assert_allclose(ll.equivalent_vectors(arch, X, targets), X, atol=1e-12)


def test_no_targets_change_nothing():
    arch = ll.Architecture()
    X = ll.sample_vectors(arch, 20, seed=0)
    np.testing.assert_array_equal(ll.equivalent_vectors(arch, X, {}), X)
    np.testing.assert_array_equal(ll.equivalent_overlaps(arch, ll.overlaps(X), {}), ll.overlaps(X))


def test_choice_of_changed_vectors():
    arch = ll.Architecture()
    X = ll.sample_vectors(arch, 50, seed=1)
    m, u, v, z = range(4)
    Xn = ll.equivalent_vectors(arch, X, {"zv": 0.3})  # tie: the later vector (z) changes
    assert np.array_equal(Xn[:, [m, u, v]], X[:, [m, u, v]]) and not np.array_equal(Xn[:, z], X[:, z])
    Xn = ll.equivalent_vectors(arch, X, {"zv": 0.3}, change=["v"])
    assert np.array_equal(Xn[:, [m, u, z]], X[:, [m, u, z]])
    _check_equivalent(arch, X, Xn, {"zv": 0.3})
    with pytest.raises(ll.UnreachableOverlapError, match="none of the vectors to change"):
        ll.equivalent_vectors(arch, X, {"zv": 0.3}, change=["m"])


# ------------------------------------------------------------------------- random cases
def _arch(draw_rank, n_in, n_out, activation="linear"):
    return ll.Architecture(rank=draw_rank, n_in=n_in, n_out=n_out, activation=activation)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rank=st.integers(1, 3), n_in=st.integers(1, 2), n_out=st.integers(1, 2),
       extra=st.integers(0, 300), seed=st.integers(0, 2**16), data=st.data())
def test_reachable_targets_from_a_psd_completion(rank, n_in, n_out, extra, seed, data):
    """Targets read off a second Gram matrix, Sigma + Delta with Delta PSD on the A block (z, v)
    and/or the B block (m, u) -- blocks the loss of a linear network does not read -- are reached."""
    arch = _arch(rank, n_in, n_out)
    N = arch.K + extra
    rng = np.random.default_rng(seed)
    X = ll.sample_vectors(arch, N, seed=seed)
    A = [k for k, g in enumerate(arch.vector_group) if g in "VZ"]
    B = [k for k, g in enumerate(arch.vector_group) if g in "MU"]
    SA = data.draw(st.lists(st.sampled_from(A), unique=True, max_size=len(A)))
    SB = data.draw(st.lists(st.sampled_from(B), unique=True, max_size=len(B)))
    assume(SA or SB)
    Delta = np.zeros((arch.K, arch.K))
    for S in (SA, SB):
        if S:
            G = rng.standard_normal((len(S), len(S)))
            Delta[np.ix_(S, S)] = G @ G.T * rng.uniform(0.05, 2)
    other = ll.overlaps(X) + Delta
    targets = {}
    for S in (SA, SB):
        for a in S:
            for b in S:
                if a <= b:
                    name = arch.overlap_names[arch.overlap_pairs.index((a, b))]
                    targets[name] = other[a, b]
    Xn = ll.equivalent_vectors(arch, X, targets, seed=seed)
    _check_equivalent(arch, X, Xn, targets)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rank=st.integers(1, 3), n_in=st.integers(1, 2), n_out=st.integers(1, 2),
       extra=st.integers(0, 200), seed=st.integers(0, 2**16), data=st.data())
def test_reachable_exactly_when_the_requested_gram_matrix_is_psd(rank, n_in, n_out, extra, seed, data):
    """Random targets for random invisible overlaps, reachable or not: success iff the Gram matrix
    with the targets is positive semi-definite (numpy's eigvalsh as the independent oracle)."""
    arch = _arch(rank, n_in, n_out)
    N = arch.K + extra
    rng = np.random.default_rng(seed)
    X = ll.sample_vectors(arch, N, seed=seed)
    S = ll.overlaps(X)
    names = data.draw(st.lists(st.sampled_from(arch.invisible_names), unique=True, min_size=1))
    targets = {}
    for n in names:
        i, j = arch.overlap_pair(n)
        targets[n] = rng.uniform(0.0, 3.0) if i == j else rng.uniform(-1.5, 1.5)
    want = S.copy()
    for n, v in targets.items():
        i, j = arch.overlap_pair(n)
        want[i, j] = want[j, i] = v
    lo = np.linalg.eigvalsh(want)[0]
    assume(abs(lo) > 1e-6)
    event("reachable" if lo > 0 else "unreachable")
    if lo > 0:
        _check_equivalent(arch, X, ll.equivalent_vectors(arch, X, targets, seed=seed), targets)
        np.testing.assert_allclose(ll.equivalent_overlaps(arch, S, targets), want, atol=1e-12)
    else:
        with pytest.raises(ll.UnreachableOverlapError, match="no vectors have these overlaps"):
            ll.equivalent_vectors(arch, X, targets, seed=seed)
        with pytest.raises(ll.UnreachableOverlapError, match="no vectors have these overlaps"):
            ll.equivalent_overlaps(arch, S, targets)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), mm=st.floats(0.1, 3.0), uu=st.floats(0.1, 3.0), excess=st.floats(1.001, 2.0))
def test_cauchy_schwarz_violation_is_unreachable(seed, mm, uu, excess):
    arch = ll.Architecture()
    X = ll.sample_vectors(arch, 40, seed=seed)
    mu = excess * np.sqrt(mm * uu)  # |m.u| > |m| |u|: impossible for any vectors
    with pytest.raises(ll.UnreachableOverlapError, match=r"smallest eigenvalue -"):
        ll.equivalent_vectors(arch, X, {"mm": mm, "uu": uu, "mu": mu})


# ------------------------------------------------------------------------- errors
def test_error_reasons():
    arch = ll.Architecture()
    X = ll.sample_vectors(arch, 30, seed=2)
    with pytest.raises(ll.UnreachableOverlapError, match="loss-visible.*visible overlap"):
        ll.equivalent_vectors(arch, X, {"vu": 0.5})
    with pytest.raises(ll.UnreachableOverlapError, match="loss-visible"):
        ll.equivalent_vectors(ll.Architecture(activation="erf"), X, {"uu": 2.0})
    with pytest.raises(ll.UnreachableOverlapError, match="not an overlap"):
        ll.equivalent_vectors(arch, X, {"qq": 1.0})
    with pytest.raises(ll.UnreachableOverlapError, match="cannot be negative"):
        ll.equivalent_vectors(arch, X, {"vv": -0.1})
    with pytest.raises(ll.InvalidParameterError, match="finite"):
        ll.equivalent_vectors(arch, X, {"vv": np.nan})
    with pytest.raises(ll.InvalidParameterError, match="twice"):
        ll.equivalent_vectors(arch, X, {"mu": 0.1, "um": 0.2})
    with pytest.raises(ll.InvalidParameterError, match=r"shape \(N, 4\)"):
        ll.equivalent_vectors(arch, X[:, :3], {"vv": 1.0})
    # N too small: 3 dimensions cannot hold m, u and two new independent vectors v, z
    with pytest.raises(ll.UnreachableOverlapError, match="at N = 3"):
        ll.equivalent_vectors(arch, X[:3], {"vv": 2.0, "zz": 3.0, "zv": 0.1})
    # ... but they can if the new v and z differ from the old ones only along the one direction
    # orthogonal to m and u (a rank-1 Schur complement)
    X3 = X[:3].copy()
    Q, _ = np.linalg.qr(X3[:, :2])
    perp = lambda a: a - Q @ (Q.T @ a)  # noqa: E731
    Y = X3.copy()
    Y[:, 2] += perp(X3[:, 2])
    Y[:, 3] += 2 * perp(X3[:, 3])
    SY = ll.named(arch, ll.overlaps(Y))
    targets = {n: SY[n] for n in ("vv", "zz", "zv")}
    _check_equivalent(arch, X3, ll.equivalent_vectors(arch, X3, targets), targets)


def test_tied_kept_vectors_require_changing_a_visible_overlap():
    """If m = v, then sigma_mu = sigma_vu: moving mu alone would move the visible vu."""
    arch = ll.Architecture()
    X = ll.sample_vectors(arch, 30, seed=3)
    X[:, 2] = X[:, 0]
    with pytest.raises(ll.UnreachableOverlapError, match=r"would require changing sigma_vu.*loss-visible"):
        ll.equivalent_vectors(arch, X, {"mu": 0.5})
    # keeping the tie (mu = vu) is fine
    S = ll.overlaps(X)
    Xn = ll.equivalent_vectors(arch, X, {"mu": S[2, 1], "uu": 3.0})
    _check_equivalent(arch, X, Xn, {"mu": S[2, 1], "uu": 3.0})


# ------------------------------------------------------------------------- function and activity
@pytest.fixture(scope="module")
def pair():
    arch = ll.Architecture()
    X1 = ll.sample_vectors(arch, 200, seed=0)
    X2 = ll.equivalent_vectors(arch, X1, {"uu": 2.048, "mu": 0.8})
    return arch, X1, X2


def test_equivalent_networks_same_output_different_activity(pair):
    arch, X1, X2 = pair
    inputs = np.random.default_rng(0).standard_normal((3, 150, 1))
    y1, h1 = ll.run_network(arch, X1, inputs, 0.1, return_states=True)
    y2, h2 = ll.run_network(arch, X2, inputs, 0.1, return_states=True)
    y1, y2, h1, h2 = map(np.asarray, (y1, y2, h1, h2))
    assert np.max(np.abs(y1 - y2)) <= 1e-10 * np.max(np.abs(y1))
    assert np.max(np.abs(h1 - h2)) > 0.01 * np.max(np.abs(h1))  # u carries little activity at init
    # population activity |h|^2 / N differs, as sigma_uu and sigma_mu predict
    n1, n2 = (np.sum(h ** 2, axis=-1) / 200 for h in (h1, h2))
    assert np.max(np.abs(n1 - n2)) > 0.01 * np.max(n1)


def test_noisy_network_reference_and_noise_kinds(pair):
    arch, X1, X2 = pair
    inputs = np.random.default_rng(1).standard_normal((2, 40, 1))
    dt = 0.1
    np.testing.assert_allclose(ll.run_noisy_network(arch, X1, inputs, dt, 0.0),
                               ll.run_network(arch, X1, inputs, dt), rtol=0, atol=1e-13)
    # independent reference: a numpy loop with the same noise
    import jax
    xi = np.asarray(jax.random.normal(jax.random.PRNGKey(5), (40, 2, 200)))
    for mult in (False, True):
        N = 200
        m, u, v, z = X1.T
        h = np.zeros((2, N))
        ys = []
        for t in range(40):
            kick = 0.5 * xi[t] * (h if mult else 1.0)
            h = h + dt * (-h + np.outer(h @ v / N, u) + np.outer(inputs[:, t, 0], m)) + kick
            ys.append(h @ z / N)
        ref = np.stack(ys, axis=1)[..., None]
        got = np.asarray(ll.run_noisy_network(arch, X1, inputs, dt, 0.5, seed=5, multiplicative=mult))
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
    # additive isotropic noise reaches the output through z and v only: identical responses
    a1 = np.asarray(ll.run_noisy_network(arch, X1, inputs, dt, 0.5, seed=3))
    a2 = np.asarray(ll.run_noisy_network(arch, X2, inputs, dt, 0.5, seed=3))
    assert np.max(np.abs(a1 - a2)) < 1e-10 * np.max(np.abs(a1))
    # noise that scales with the activity sees |h|^2, hence sigma_uu and sigma_mu
    m1 = np.asarray(ll.run_noisy_network(arch, X1, inputs, dt, 0.5, seed=3, multiplicative=True))
    m2 = np.asarray(ll.run_noisy_network(arch, X2, inputs, dt, 0.5, seed=3, multiplicative=True))
    assert np.max(np.abs(m1 - m2)) > 1e-3 * np.max(np.abs(m1))


def test_equivalent_networks_learn_differently(pair):
    arch, X1, X2 = pair
    task = ll.tasks.exponential_filter(c=0.2, dt=0.1, T_max=10.0)
    runs = [ll.learn_vectors(arch, X, task, lr=5e-3, epochs=64, progress=False) for X in (X1, X2)]
    theory = [ll.learn_overlaps(arch, ll.overlaps(X), task, lr=5e-3, epochs=64, progress=False) for X in (X1, X2)]
    assert abs(runs[0].loss[0] - runs[1].loss[0]) < 1e-10 * runs[0].loss[0]  # same function
    assert abs(runs[0].loss[-1] - runs[1].loss[-1]) > 0.05 * runs[0].loss[-1]  # learned differently
    for full, th in zip(runs, theory):
        np.testing.assert_allclose(th.loss, full.loss, rtol=1e-9)
    # the visible overlaps part ways after the first update
    vis = [ll.flatten(arch, r.sigma_all)[:, arch.visible] for r in runs]
    assert np.max(np.abs(vis[0][0] - vis[1][0])) < 1e-12
    assert np.max(np.abs(vis[0][-1] - vis[1][-1])) > 1e-3


def _linear_filter_loss(p, c, dt, T):
    """eq-loss of the linear rank-1 reduced model (eq-latent, eq-reduced with Gain = 1) on the
    impulse-response task x_0 = 1/dt, y*(t) = exp(-c t dt), by a loop over steps.

    ``p`` = (sigma_zm, sigma_zu, sigma_vm, sigma_vu), each an array of one shape (complex allowed)."""
    zm, zu, vm, vu = p
    kappa = lam = 0.0 * zm
    L = 0.0 * zm
    for t in range(T):
        x = 1.0 / dt if t == 0 else 0.0
        kappa, lam = kappa + dt * (-kappa + x), lam + dt * (-lam + vm * kappa + vu * lam)
        L = L + (zm * kappa + zu * lam - np.exp(-c * t * dt)) ** 2 * dt
    return L


_VISIBLE = ("zm", "zu", "vm", "vu")


def _learn_exact_map(arch, S, lr, epochs, c, dt, T):
    """Gradient descent in overlap space by eq-exact-map, Sigma' = (I - lr S) Sigma (I - lr S), all
    vectors plastic, with S_ab = S_ba = dL/dsigma_ab for the four visible overlaps (linear units:
    none on the diagonal) from the complex step on ``_linear_filter_loss``. Returns the loss
    before each update (epochs,) and the last gradient (4,)."""
    idx = [arch.overlap_pair(n) for n in _VISIBLE]
    h = 1e-30
    losses = []
    for _ in range(epochs):
        p = np.array([S[i, j] for i, j in idx], dtype=complex)
        P = p[:, None] + 1j * h * np.eye(4)  # column d perturbs overlap d
        Lc = _linear_filter_loss(P, c, dt, T)
        g = np.imag(Lc) / h
        losses.append(float(np.real(Lc[0])))
        G = np.zeros_like(S)
        for (i, j), gij in zip(idx, g):
            G[i, j] = G[j, i] = gij
        A = np.eye(len(S)) - lr * G
        S = A @ S @ A
    return np.array(losses), g, p.real


def test_learning_speed_sweep():
    """learning_speed against the sweep done here: equivalent overlaps set by hand (reachable iff
    the Gram matrix stays positive semi-definite, numpy's eigvalsh), trained by the exact map
    with complex-step gradients of the reduced loss written as a loop (book/theory.md, eq-latent,
    eq-exact-map).

    The epoch counts must agree exactly: the reference's loss is nowhere within 1e-6 of the level,
    far more than the round-off by which the two computations can differ (below). Final losses:
    both compute the same float64 recursion in a different order; each epoch's loss is a T-step
    sum (T = 100) with a few ulps per step, and the update's round-off carries over the E = 128
    epochs, so the overlaps differ by at most about E T 10 u relative; the loss moves by
    kappa_L = sum_i |sigma_i dL/dsigma_i| / L times that (kappa_L computed here)."""
    arch = ll.Architecture()
    S = ll.overlaps(ll.sample_vectors(arch, 100, seed=0))
    c, dt, T, lr, E = 0.2, 0.1, 100, 1e-2, 128
    task = ll.tasks.exponential_filter(c=c, dt=dt, T_max=T * dt)
    L0 = float(np.real(_linear_filter_loss(np.array([S[arch.overlap_pair(n)] for n in _VISIBLE]), c, dt, T)))
    np.testing.assert_allclose(float(ll.overlap_loss(arch, S, task)), L0, rtol=1e-12)
    level = 0.5 * L0
    # mu^2 > mm uu breaks Cauchy-Schwarz: (0.5, 0.8) and mu = 5 are unreachable
    grid = {"uu": [0.5, 2.0], "mu": [0.0, 0.8, 5.0]}
    out = ll.learning_speed(arch, S, task, grid, lr=lr, epochs=E, level=level)
    assert out["names"] == ("uu", "mu") and out["epochs"].shape == (2, 3)
    u = np.finfo(np.float64).eps / 2
    i_uu, i_mu = arch.overlap_pair("uu"), arch.overlap_pair("mu")
    speeds = []
    for a, uu in enumerate(grid["uu"]):
        for b, mu in enumerate(grid["mu"]):
            Sg = S.copy()
            Sg[i_uu] = uu
            Sg[i_mu] = Sg[i_mu[::-1]] = mu
            lo = np.linalg.eigvalsh(Sg)[0]
            assert abs(lo) > 1e-3  # no borderline cell
            assert out["reachable"][a, b] == (lo > 0), (uu, mu, lo)
            if lo < 0:
                assert np.isnan(out["epochs"][a, b]) and np.isnan(out["final_loss"][a, b])
                continue
            losses, g, p = _learn_exact_map(arch, Sg, lr, E, c, dt, T)
            assert np.min(np.abs(losses - level)) > 1e-6 * level
            hit = np.flatnonzero(losses <= level)
            want = hit[0] if hit.size else np.inf
            assert out["epochs"][a, b] == want, (uu, mu, out["epochs"][a, b], want)
            kappa_L = np.sum(np.abs(p * g)) / losses[-1]
            np.testing.assert_allclose(out["final_loss"][a, b], losses[-1], rtol=kappa_L * E * T * 10 * u)
            speeds.append(want)
    np.testing.assert_array_equal(out["reachable"], [[True, False, False], [True, True, False]])
    assert np.all(np.isfinite(speeds)) and len(set(speeds)) > 1  # the invisible overlaps change the speed


def test_epochs_to_reach():
    assert ll.epochs_to_reach([3.0, 2.0, 1.0, 0.5], 1.0) == 2
    assert ll.epochs_to_reach([3.0, 2.0], 1.0) is None
