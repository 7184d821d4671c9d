"""Importing networks from other codebases (core/conventions.py).

Each supported convention is checked against a plain NumPy simulation written here in that
codebase's own equations (its own array layout, scaling and loop), independent of the package's
reference simulation: the imported network's outputs must equal it to 1e-10 (float64).
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import erf

import lowrank_learning as ll

RTOL = 1e-10
PHI = {"linear": lambda x: x, "tanh": np.tanh, "erf": lambda x: erf(np.sqrt(np.pi) / 2 * x)}


def _net(N=120, n_in=2, rank=2, n_out=2, seed=0):
    rng = np.random.default_rng(seed)
    return {"wi": rng.standard_normal((n_in, N)), "m": rng.standard_normal((N, rank)),
            "n": 2.0 * rng.standard_normal((N, rank)), "wo": rng.standard_normal((N, n_out))}


def _inputs(n_in=2, B=3, T=25, seed=1):
    return np.random.default_rng(seed).standard_normal((B, T, n_in))


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_erf_slope_convention():
    """The package's erf has slope 1 at 0 (the PHI used by the simulations below)."""
    x = np.linspace(-3, 3, 13)
    assert np.allclose(np.asarray(ll.phi("erf", x)), PHI["erf"](x), rtol=0, atol=1e-14)


# ----------------------------------------------------------------------- codebase 1
def lowrank_rnn(p, x, act, alpha, readout_divided_by_N):
    """A ``LowRankRNN``-style forward pass (Dubreuil, Valente et al.): wi (n_in, N), m, n (N, R),
    wo (N, n_out); ``h += alpha (-h + r n m^T / N + x wi)``, ``r = phi(h)``, output ``r wo [/ N]``
    read after the update."""
    N = p["m"].shape[0]
    h = np.zeros((x.shape[0], N))
    r = PHI[act](h)
    out = []
    for t in range(x.shape[1]):
        h = h + alpha * (-h + r @ p["n"] @ p["m"].T / N + x[:, t] @ p["wi"])
        r = PHI[act](h)
        out.append(r @ p["wo"] / (N if readout_divided_by_N else 1.0))
    return np.stack(out, axis=1)


@pytest.mark.parametrize("act", ["linear", "erf", "tanh"])
@pytest.mark.parametrize("divided", [True, False])
def test_lowrank_rnn_convention(act, divided):
    p, x = _net(), _inputs()
    tau, dt = 0.1, 0.02
    y = lowrank_rnn(p, x, act, dt / tau, divided)
    net = ll.from_vectors(p["wi"].T, p["m"], p["n"], p["wo"], activation=act, readout_scale="1/N" if divided else "1",
                          tau=tau, dt=dt, check_inputs=x, check_outputs=y)
    assert net.arch == ll.Architecture(rank=2, n_in=2, n_out=2, activation=act)
    assert net.dt == pytest.approx(0.2, rel=1e-15)
    assert _rel(net.outputs(x), y) <= RTOL
    assert net.check["user_relative"] <= RTOL


# ----------------------------------------------------------------------- codebase 2
def vanilla_rnn(W_ih, J, W_out, x, act):
    """A discrete-time rate RNN in ``torch.nn.RNN`` layout without biases: W_ih (N, n_in),
    J (N, N), W_out (n_out, N); ``r_{t+1} = phi(J r_t + W_ih x_t)``, ``y_t = W_out r_{t+1}``."""
    r = np.zeros((x.shape[0], J.shape[0]))
    out = []
    for t in range(x.shape[1]):
        r = PHI[act](r @ J.T + x[:, t] @ W_ih.T)
        out.append(r @ W_out.T)
    return np.stack(out, axis=1)


@pytest.mark.parametrize("act", ["erf", "tanh"])
def test_discrete_rate_rnn_convention(act):
    p, x = _net(), _inputs()
    N = p["m"].shape[0]
    J = p["m"] @ p["n"].T / N
    y = vanilla_rnn(p["wi"].T, J, p["wo"].T, x, act)
    net = ll.from_vectors(p["wi"].T, p["m"], p["n"], p["wo"], activation=act, readout_scale="1", recurrence="rates",
                          check_inputs=x, check_outputs=y)
    assert net.dt == 1.0
    assert _rel(net.outputs(x), y) <= RTOL


# ----------------------------------------------------------------------- codebase 3
def euler_rate_model(W_in, m, n, w_out, x, act, tau, dt, recurrence):
    """A continuous-time model integrated by Euler whose output reads the state *before* each
    update: ``y_t = w_out . r_t / N`` with ``r = phi(h)`` (current-based) or ``r`` itself
    (rate-based)."""
    N = m.shape[0]
    s = np.zeros((x.shape[0], N))
    out = []
    for t in range(x.shape[1]):
        r = PHI[act](s) if recurrence == "phi" else s
        out.append(r @ w_out / N)
        if recurrence == "phi":
            s = s + dt / tau * (-s + (r @ n) @ m.T / N + x[:, t] @ W_in.T)
        else:
            s = s + dt / tau * (-s + PHI[act]((s @ n) @ m.T / N + x[:, t] @ W_in.T))
    return np.stack(out, axis=1)


@pytest.mark.parametrize("recurrence,tau,dt", [("phi", 20.0, 5.0), ("rates", 1.0, 1.0)])
def test_readout_before_update(recurrence, tau, dt):
    p, x = _net(n_out=1), _inputs()
    W_in = p["wi"].T
    y = euler_rate_model(W_in, p["m"], p["n"], p["wo"], x, "tanh", tau, dt, recurrence)
    net = ll.from_vectors(W_in, p["m"], p["n"], p["wo"], activation="tanh", recurrence=recurrence,
                          readout_time="before", tau=tau, dt=dt, check_inputs=x, check_outputs=y)
    assert net.shift == 1
    assert _rel(net.outputs(x), y) <= RTOL
    assert np.all(y[:, 0] == 0)


def test_batch_before_update_loss_differs_by_the_constant_first_step():
    """With the readout before the update, the package's loss on ``net.batch`` equals the original
    code's (sum_time loss in its own time indexing) minus the first step, whose output is 0."""
    p, x = _net(n_out=1), _inputs()
    W_in, tau, dt = p["wi"].T, 20.0, 5.0
    targets = np.random.default_rng(3).standard_normal((x.shape[0], x.shape[1], 1))
    mask = (np.random.default_rng(4).random(targets.shape) < 0.7).astype(float)
    y = euler_rate_model(W_in, p["m"], p["n"], p["wo"], x, "tanh", tau, dt, "phi")
    a = dt / tau
    user = np.sum(mask * (y - targets) ** 2) * a / x.shape[0]
    first = np.sum(mask[:, 0] * targets[:, 0] ** 2) * a / x.shape[0]
    net = ll.from_vectors(W_in, p["m"], p["n"], p["wo"], activation="tanh", readout_time="before", tau=tau, dt=dt)
    ours = float(ll.network_loss(net.arch, net.X, net.batch(x, targets, mask, loss="sum_time")))
    assert ours == pytest.approx(user - first, rel=1e-10)


def test_check_catches_a_wrong_convention():
    """Outputs of a readout not divided by N, imported as if divided: the check refuses them."""
    p, x = _net(), _inputs()
    y = lowrank_rnn(p, x, "tanh", 0.2, False)
    with pytest.raises(ll.InvalidParameterError, match="differ from check_outputs"):
        ll.from_vectors(p["wi"].T, p["m"], p["n"], p["wo"], activation="tanh", dt=0.2, check_inputs=x, check_outputs=y)


# ----------------------------------------------------------------------- round trips and files
@settings(max_examples=10, deadline=None)
@given(N=st.integers(4, 40), n_in=st.integers(1, 3), rank=st.integers(1, 3), n_out=st.integers(1, 2),
       scale=st.sampled_from(["1/N", "1"]), when=st.sampled_from(["after", "before"]),
       act=st.sampled_from(["linear", "erf", "tanh"]), seed=st.integers(0, 1000))
def test_round_trip(N, n_in, rank, n_out, scale, when, act, seed):
    arch = ll.Architecture(rank=rank, n_in=n_in, n_out=n_out, activation=act)
    X = np.random.default_rng(seed).standard_normal((N, arch.K))
    conv = dict(readout_scale=scale, readout_time=when, tau=2.0, dt=0.5)
    arrays = ll.to_convention(arch, X, **conv)
    net = ll.from_vectors(*arrays.values(), activation=act, arch=arch, **conv)
    assert net.arch == arch
    np.testing.assert_allclose(net.X, X, rtol=1e-14, atol=1e-14)


def test_npz_and_dict(tmp_path):
    p, x = _net(), _inputs()
    y = lowrank_rnn(p, x, "erf", 0.1, True)
    arrays = dict(input_weights=p["wi"].T, left=p["m"], right=p["n"], readout=p["wo"])
    path = tmp_path / "net.npz"
    ll.save_network(path, arrays, activation="erf", dt=0.1, inputs=x, outputs=y)
    a = ll.load_network(path)
    b = ll.load_network({**arrays, "activation": "erf", "dt": 0.1})
    np.testing.assert_array_equal(a.X, b.X)
    assert a.check["user_relative"] <= RTOL and b.check["user_relative"] is None
    c = ll.load_network(path, dt=0.2, outputs=None)    # keyword overrides the file
    assert c.dt == 0.2


def test_simulate_convention_matches_codebase():
    p, x = _net(), _inputs()
    y = lowrank_rnn(p, x, "tanh", 0.25, False)
    ours = ll.simulate_convention("tanh", p["wi"].T, p["m"], p["n"], p["wo"], x, readout_scale="1", dt=0.25)
    assert _rel(ours, y) <= RTOL


# ----------------------------------------------------------------------- bad input
def _arrays():
    p = _net()
    return dict(input_weights=p["wi"].T, left=p["m"], right=p["n"], readout=p["wo"])


@pytest.mark.parametrize("change,match", [
    (lambda a: a.update(right=a["right"][:-1]), "different lengths: right"),
    (lambda a: a.update(input_weights=a["input_weights"].T), "different lengths: input_weights"),
    (lambda a: a["left"].__setitem__((3, 1), np.nan), "left has 1 non-finite"),
    (lambda a: a["readout"].__setitem__((0, 0), np.inf), "readout has 1 non-finite"),
    (lambda a: a.update(readout=np.zeros((120, 2, 1))), r"readout must have shape w_out \(N, n_out\)"),
    (lambda a: a.update(right=a["right"][:, :1]), "same rank"),
    (lambda a: a.update(left=np.array(["a"] * 120)), "numeric array"),
])
def test_bad_arrays(change, match):
    a = _arrays()
    change(a)
    with pytest.raises(ll.InvalidParameterError, match=match):
        ll.from_vectors(**a, activation="tanh")


@pytest.mark.parametrize("kwargs,match", [
    (dict(readout_scale="N"), "readout_scale must be one of"),
    (dict(recurrence="current"), "recurrence must be one of"),
    (dict(readout_time="during"), "readout_time must be one of"),
    (dict(activation="relu"), "activation must be one of"),
    (dict(tau=0.0), "tau must be a positive number"),
    (dict(recurrence="rates", dt=0.1), "dt / tau = 1"),
    (dict(arch=ll.Architecture(rank=1, n_in=2, n_out=2, activation="tanh")), "rank"),
    (dict(arch=ll.Architecture(rank=2, n_in=2, n_out=1, activation="tanh")), "n_out"),
    (dict(arch=ll.Architecture(rank=2, n_in=2, n_out=2, activation="erf")), "activation"),
    (dict(check_inputs=np.zeros((2, 5, 3))), "check_inputs"),
    (dict(check_outputs=np.zeros((1, 1, 1))), "check_outputs must have shape"),
])
def test_bad_conventions(kwargs, match):
    kw = {"activation": "tanh", **kwargs}
    with pytest.raises(ll.InvalidParameterError, match=match):
        ll.from_vectors(**_arrays(), **kw)


def test_bad_sources(tmp_path):
    with pytest.raises(ll.InvalidParameterError, match="unknown keys"):
        ll.load_network({**_arrays(), "activation": "tanh", "bias": np.zeros(3)})
    with pytest.raises(ll.InvalidParameterError, match="missing arrays"):
        ll.load_network({"left": np.ones((4, 1)), "activation": "tanh"})
    with pytest.raises(ll.InvalidParameterError, match="activation is needed"):
        ll.load_network(_arrays())
    with pytest.raises(ll.InvalidParameterError, match="unknown keyword"):
        ll.load_network({**_arrays(), "activation": "tanh"}, colour="red")
    with pytest.raises(ll.InvalidParameterError, match="path to an .npz"):
        ll.load_network(42)
