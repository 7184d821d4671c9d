"""Import a trained low-rank RNN from another codebase: its vectors in this package's convention.

This package's network (:mod:`lowrank_learning.core.network`, book/theory.md, section 1) is

    h_{t+1} = h_t + dt (-h_t + U V^T phi(h_t) / N + M x_t),   h_0 = 0,
    y_t     = Z^T phi(h_{t+1}) / N.

Codebases differ in a few conventions. :func:`from_vectors` takes the arrays of a trained network
(one row per neuron) and the conventions it was written in, and returns the architecture and the
vectors ``X = [M, U, V, Z]`` (N, K) of the same network here (:class:`ImportedNetwork`), checked
on an input: the imported network's outputs must equal those of the original equations (and the
user's own outputs, when given). The conventions (:data:`CONVENTIONS`):

``readout_scale``
    ``"1/N"``: ``y = w_out^T r / N`` (the readout is divided by N, as here); ``"1"``:
    ``y = w_out^T r`` (then ``Z = N w_out``).
``recurrence``
    ``"phi"``: the recurrence acts on ``phi(h)`` (current-based: ``h' = h + a (-h + J phi(h) +
    W_in x)``, ``r = phi(h)``, as here); ``"rates"``: on the rates (rate-based: ``r' = r + a (-r +
    phi(J r + W_in x))``). The rate form is the same network only for ``a = dt / tau = 1``
    (discrete-time RNNs such as ``r' = phi(J r + W_in x)``): then ``r_t = phi(h_t)`` with the
    state ``h_t = J r_{t-1} + W_in x_{t-1}`` of the current form. For ``a < 1`` the rates are a
    low-pass filter of ``phi(h)`` that no readout of ``phi(h)`` equals, and the import is refused.
``tau``, ``dt``
    Time constant and Euler step; only ``a = dt / tau`` enters the equations and becomes this
    package's ``dt``.
``readout_time``
    ``"after"``: ``y_t`` reads the state after the update of step t (as here); ``"before"``:
    before it (``y_t = w_out^T r_t``, ``y_0`` from the initial state). Then the original outputs
    are this package's shifted one step later (``y_0 = 0``, since ``phi(0) = 0``);
    :meth:`ImportedNetwork.outputs` and :meth:`ImportedNetwork.batch` apply the shift.

In every convention ``J = m n^T / N`` with left vectors ``m`` (N, R) and right vectors ``n``
(N, R), the input enters as ``W_in x`` with ``W_in`` (N, n_in) (no 1/N), the initial state is 0
and there are no biases or noise.

From a PyTorch ``state_dict`` (e.g. of a ``LowRankRNN`` with parameters ``wi`` (n_in, N),
``m``, ``n`` (N, R) and ``wo`` (N, n_out), input and output scales already folded in) two lines
export a file that :func:`load_network` reads::

    sd = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    np.savez("net.npz", input_weights=sd["wi"].T, left=sd["m"], right=sd["n"], readout=sd["wo"])
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np

from ._checks import check_choice, check_instance, check_positive, check_seed
from .activations import ACTIVATIONS, phi
from .architecture import Architecture
from .batch import LOSSES, Batch
from .errors import InvalidParameterError
from .network import run_network

__all__ = ["CONVENTIONS", "ARRAY_NAMES", "ImportedNetwork", "from_vectors", "to_convention", "load_network",
           "save_network", "simulate_convention"]

CONVENTIONS = {
    "readout_scale": ("1/N", "1"),
    "recurrence": ("phi", "rates"),
    "readout_time": ("after", "before"),
}
# The arrays of a network, in the order M, U, V, Z, and their roles.
ARRAY_NAMES = ("input_weights", "left", "right", "readout")
_ROLES = {"input_weights": "W_in (N, n_in)", "left": "m (N, rank)", "right": "n (N, rank)",
          "readout": "w_out (N, n_out)"}
# Keys an .npz file or dict may hold besides the arrays: the conventions and a check input/output.
_META = ("activation", "readout_scale", "recurrence", "readout_time", "tau", "dt", "inputs", "outputs")


def _check_conventions(readout_scale, recurrence, readout_time, tau, dt) -> float:
    """Validate the conventions; return ``a = dt / tau``."""
    check_choice("readout_scale", readout_scale, CONVENTIONS["readout_scale"])
    check_choice("recurrence", recurrence, CONVENTIONS["recurrence"])
    check_choice("readout_time", readout_time, CONVENTIONS["readout_time"])
    a = check_positive("dt", dt) / check_positive("tau", tau)
    if recurrence == "rates" and abs(a - 1.0) > 1e-12:
        raise InvalidParameterError(
            f"recurrence='rates' is this package's network only for dt / tau = 1 (got dt / tau = {a:g}): "
            "with dt < tau the rates low-pass filter phi(h), and no readout of phi(h) equals them")
    return a


def _array(name: str, value, N: int | None) -> np.ndarray:
    """``value`` as a float64 (N, d) array (1-d: one column), finite, with N rows if N is given."""
    arr = np.asarray(value)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InvalidParameterError(f"{name} must be a numeric array {_ROLES[name]}, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InvalidParameterError(f"{name} must have shape {_ROLES[name]} (one row per neuron), "
                                    f"got shape {np.shape(value)}")
    if N is not None and arr.shape[0] != N:
        raise InvalidParameterError(
            f"the vectors have different lengths: {name} has {arr.shape[0]} rows, left has {N} "
            f"(every array needs one row per neuron; a (d, N) array needs transposing)")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InvalidParameterError(f"{name} has {int(bad.sum())} non-finite entries (NaN or inf)")
    return arr


def simulate_convention(activation: str, input_weights, left, right, readout, inputs, *,
                        readout_scale: str = "1/N", recurrence: str = "phi", readout_time: str = "after",
                        tau: float = 1.0, dt: float = 1.0) -> np.ndarray:
    """The original network's outputs, from its own equations in its own convention (NumPy, float64).

    A plain loop over time on the N-dimensional state, with the arrays as given (no conversion):
    the reference :func:`from_vectors` checks the import against.

    Parameters
    ----------
    input_weights, left, right, readout : arrays (N, n_in), (N, R), (N, R), (N, n_out)
    inputs : array (B, T, n_in)

    Returns
    -------
    array (B, T, n_out)
    """
    a = _check_conventions(readout_scale, recurrence, readout_time, tau, dt)
    check_choice("activation", activation, ACTIVATIONS)
    W_in, m, n, w_out = (np.asarray(v, dtype=np.float64).reshape(len(v), -1)
                         for v in (input_weights, left, right, readout))
    x = np.asarray(inputs, dtype=np.float64)
    N = m.shape[0]
    B, T, _ = x.shape
    f = (lambda v: np.asarray(phi(activation, jnp.asarray(v))))
    scale = 1.0 / N if readout_scale == "1/N" else 1.0
    state = np.zeros((B, N))                         # h (phi) or r (rates)
    rate = (lambda s: f(s)) if recurrence == "phi" else (lambda s: s)
    out = np.zeros((B, T, w_out.shape[1]))
    for t in range(T):
        before = rate(state) @ w_out * scale
        if recurrence == "phi":
            state = state + a * (-state + (f(state) @ n) @ m.T / N + x[:, t] @ W_in.T)
        else:
            state = state + a * (-state + f((state @ n) @ m.T / N + x[:, t] @ W_in.T))
        out[:, t] = before if readout_time == "before" else rate(state) @ w_out * scale
    return out


@dataclass(frozen=True)
class ImportedNetwork:
    """A network imported by :func:`from_vectors`.

    Attributes
    ----------
    arch : Architecture
    X : ndarray (N, K)
        The vectors ``[M, U, V, Z]`` in this package's convention (float64).
    dt : float
        This package's Euler step, ``dt / tau`` of the original.
    conventions : dict
        ``readout_scale``, ``recurrence``, ``readout_time``, ``tau``, ``dt`` of the original.
    check : dict
        The import check: ``max_abs`` and ``relative`` difference between the imported network's
        outputs and the original equations' on the check input, ``rtol``, ``user_relative`` (the
        same against the user's outputs; None without them), ``shape`` of the check input.
    """

    arch: Architecture
    X: np.ndarray
    dt: float
    conventions: dict
    check: dict = field(default_factory=dict)

    @property
    def N(self) -> int:
        return int(self.X.shape[0])

    @property
    def shift(self) -> int:
        """Steps by which the original outputs lag this package's (1 for ``readout_time="before"``)."""
        return 1 if self.conventions["readout_time"] == "before" else 0

    def outputs(self, inputs) -> np.ndarray:
        """The original network's outputs (B, T, n_out) on ``inputs`` (B, T, n_in), computed by this
        package's network (:func:`~lowrank_learning.run_network`) and shifted to the original's
        readout time."""
        y = np.asarray(run_network(self.arch, self.X, np.asarray(inputs, dtype=self.X.dtype), self.dt))
        if self.shift:
            y0 = np.zeros_like(y[:, :1])  # phi(0) = 0: the readout of the zero initial state
            y = np.concatenate([y0, y[:, :-1]], axis=1)
        return y

    def batch(self, inputs, targets, mask=None, loss: str = "masked_mean") -> Batch:
        """A task given in the original's time convention as a :class:`~lowrank_learning.Batch` here.

        With ``readout_time="before"`` the original's output at step ``t + 1`` is this package's at
        step ``t``: targets and mask move one step earlier, the last step is not scored, and the
        original's step 0 (output 0 whatever the vectors) is dropped. The loss then differs from
        the original's by that constant term (and, for ``masked_mean``, by the normalisation), not
        in the direction of its gradient.

        Parameters
        ----------
        inputs : array (B, T, n_in);  targets, mask : arrays (B, T, n_out)
        loss : {"sum_time", "masked_mean"}
        """
        check_choice("loss", loss, LOSSES)
        x, y = np.asarray(inputs, dtype=float), np.asarray(targets, dtype=float)
        w = np.ones_like(y) if mask is None else np.asarray(mask, dtype=float)
        if self.shift:
            y = np.concatenate([y[:, 1:], np.zeros_like(y[:, :1])], axis=1)
            w = np.concatenate([w[:, 1:], np.zeros_like(w[:, :1])], axis=1)
        return Batch(x, y, w, self.dt, loss)


def _convert(arrays: dict, readout_scale: str) -> np.ndarray:
    N = arrays["left"].shape[0]
    Z = arrays["readout"] * (N if readout_scale == "1" else 1.0)
    return np.concatenate([arrays["input_weights"], arrays["left"], arrays["right"], Z], axis=1)


def from_vectors(input_weights, left, right, readout, *, activation: str, readout_scale: str = "1/N",
                 recurrence: str = "phi", readout_time: str = "after", tau: float = 1.0, dt: float = 1.0,
                 arch: Architecture | None = None, check_inputs=None, check_outputs=None,
                 rtol: float | None = None, seed: int = 0) -> ImportedNetwork:
    """Import a trained low-rank RNN: its architecture and vectors in this package's convention.

    Parameters
    ----------
    input_weights : array (N, n_in)
        ``W_in``: the input enters the state as ``W_in x`` (1-d: one input).
    left, right : arrays (N, rank)
        ``m`` and ``n`` of the connectivity ``J = m n^T / N``.
    readout : array (N, n_out)
        ``w_out`` (1-d: one output).
    activation : {"linear", "erf", "tanh"}
    readout_scale, recurrence, readout_time, tau, dt
        The conventions of the original code (module docstring, :data:`CONVENTIONS`).
    arch : Architecture, optional
        The architecture the user states: the arrays must match its rank, input and output
        dimensions and activation.
    check_inputs : array (B, T, n_in), optional
        Input of the import check (default: 2 trials of 20 steps of standard-normal input from
        ``seed``).
    check_outputs : array (B, T, n_out), optional
        The original code's own outputs on ``check_inputs``, compared too.
    rtol : float, optional
        Largest accepted difference relative to the largest output (default 1e-10 in float64,
        1e-4 when JAX computes in float32).

    Returns
    -------
    ImportedNetwork with ``arch``, ``X`` (N, K), ``dt`` and the ``check``.

    Raises
    ------
    InvalidParameterError
        An unknown convention name or activation; arrays of different lengths, of the wrong shape
        or with NaN/inf entries; a rank that does not match ``arch`` (or left and right of
        different ranks); outputs that differ from the original equations or from
        ``check_outputs`` beyond ``rtol``.
    """
    a = _check_conventions(readout_scale, recurrence, readout_time, tau, dt)
    check_choice("activation", activation, ACTIVATIONS)
    left_arr = _array("left", left, None)
    arrays = {"left": left_arr}
    for name, value in (("input_weights", input_weights), ("right", right), ("readout", readout)):
        arrays[name] = _array(name, value, left_arr.shape[0])
    rank = arrays["left"].shape[1]
    if arrays["right"].shape[1] != rank:
        raise InvalidParameterError(f"left and right must have the same rank (columns), got {rank} and "
                                    f"{arrays['right'].shape[1]}")
    n_in, n_out = arrays["input_weights"].shape[1], arrays["readout"].shape[1]
    found = Architecture(rank=rank, n_in=n_in, n_out=n_out, activation=activation)
    if arch is not None:
        check_instance("arch", arch, Architecture)
        for attr, what in (("rank", "rank (columns of left and right)"), ("n_in", "n_in (columns of input_weights)"),
                           ("n_out", "n_out (columns of readout)"), ("activation", "activation")):
            if getattr(arch, attr) != getattr(found, attr):
                raise InvalidParameterError(f"the arrays' {what} is {getattr(found, attr)!r}, but the stated "
                                            f"architecture has {attr}={getattr(arch, attr)!r}")
    X = _convert(arrays, readout_scale)
    conventions = dict(readout_scale=readout_scale, recurrence=recurrence, readout_time=readout_time,
                       tau=float(tau), dt=float(dt))
    net = ImportedNetwork(found, X, a, conventions)
    if check_inputs is None:
        check_inputs = np.random.default_rng(check_seed(seed)).standard_normal((2, 20, n_in))
    x = np.asarray(check_inputs, dtype=float)
    if x.ndim != 3 or x.shape[2] != n_in or not np.all(np.isfinite(x)):
        raise InvalidParameterError(f"check_inputs must be a finite array (B, T, n_in={n_in}), got shape {x.shape}")
    y_net = net.outputs(x)
    y_ref = simulate_convention(activation, arrays["input_weights"], arrays["left"], arrays["right"],
                                arrays["readout"], x, **{k: conventions[k] for k in conventions})
    if rtol is None:
        rtol = 1e-10 if y_net.dtype == np.float64 else 1e-4
    rtol = check_positive("rtol", rtol)

    def rel(y):
        return float(np.max(np.abs(y_net - y)) / max(np.max(np.abs(y)), 1e-300))

    r_ref = rel(y_ref)
    if not r_ref <= rtol:
        raise InvalidParameterError(f"the imported network's outputs differ from the original equations by "
                                    f"{r_ref:.3g} (relative; rtol {rtol:g})")
    r_user = None
    if check_outputs is not None:
        yu = np.asarray(check_outputs, dtype=float)
        if yu.shape != y_net.shape:
            raise InvalidParameterError(f"check_outputs must have shape {y_net.shape} (B, T, n_out), got {yu.shape}")
        r_user = rel(yu)
        if not r_user <= rtol:
            raise InvalidParameterError(
                f"the imported network's outputs differ from check_outputs by {r_user:.3g} (relative; rtol "
                f"{rtol:g}): check the conventions (readout_scale, recurrence, readout_time, tau, dt)")
    check = {"max_abs": float(np.max(np.abs(y_net - y_ref))), "relative": r_ref, "rtol": rtol,
             "user_relative": r_user, "shape": tuple(x.shape)}
    return ImportedNetwork(found, X, a, conventions, check)


def to_convention(arch: Architecture, X, *, readout_scale: str = "1/N", recurrence: str = "phi",
                  readout_time: str = "after", tau: float = 1.0, dt: float = 1.0) -> dict:
    """The arrays of the network ``X`` (N, K) written in another convention (the inverse of
    :func:`from_vectors`): a dict with ``input_weights``, ``left``, ``right``, ``readout``.

    The conventions describe the code that will run the arrays; ``dt / tau`` is the step that code
    takes (this package's network runs it with its ``dt`` equal to ``dt / tau``).
    """
    check_instance("arch", arch, Architecture)
    _check_conventions(readout_scale, recurrence, readout_time, tau, dt)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != arch.K:
        raise InvalidParameterError(f"X must have shape (N, {arch.K}), got {X.shape}")
    s = arch.slices
    N = X.shape[0]
    return {"input_weights": X[:, s["M"]].copy(), "left": X[:, s["U"]].copy(), "right": X[:, s["V"]].copy(),
            "readout": X[:, s["Z"]] / (N if readout_scale == "1" else 1.0)}


def save_network(path, arrays: Mapping, **meta) -> None:
    """Write ``arrays`` (``input_weights``, ``left``, ``right``, ``readout``) and ``meta`` (the
    activation and conventions, ``inputs``/``outputs`` of a check) to an ``.npz`` file."""
    _check_keys(arrays, meta)
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()}, **{k: np.asarray(v) for k, v in meta.items()})


def _check_keys(arrays: Mapping, meta: Mapping) -> None:
    unknown = sorted(set(arrays) - set(ARRAY_NAMES)) + sorted(set(meta) - set(_META))
    if unknown:
        raise InvalidParameterError(f"unknown keys {unknown}; a network has arrays {ARRAY_NAMES} and may "
                                    f"carry {_META}")
    missing = [k for k in ARRAY_NAMES if k not in arrays]
    if missing:
        raise InvalidParameterError(f"missing arrays {missing} (a network needs {ARRAY_NAMES})")


def load_network(source, **overrides) -> ImportedNetwork:
    """:func:`from_vectors` on a ``.npz`` file or a dict of arrays.

    ``source`` holds ``input_weights``, ``left``, ``right``, ``readout`` and may hold the
    ``activation``, the conventions (``readout_scale``, ``recurrence``, ``readout_time``, ``tau``,
    ``dt``) and a check input and output (``inputs``, ``outputs``). Keyword arguments give or
    override any of these, and ``arch``, ``rtol``, ``seed``; other keys are refused.
    """
    if isinstance(source, (str, os.PathLike)):
        with np.load(source, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    elif isinstance(source, Mapping):
        data = dict(source)
    else:
        raise InvalidParameterError(f"source must be a path to an .npz file or a dict of arrays, got "
                                    f"{type(source).__name__}")
    arrays = {k: v for k, v in data.items() if k in ARRAY_NAMES}
    meta = {k: v for k, v in data.items() if k not in ARRAY_NAMES}
    _check_keys(arrays, meta)
    extra = {k: v for k, v in overrides.items() if k not in _META}
    bad = sorted(set(extra) - {"arch", "rtol", "seed"})
    if bad:
        raise InvalidParameterError(f"unknown keyword arguments {bad}")
    meta.update({k: v for k, v in overrides.items() if k in _META})
    kw = {}
    for k in ("activation", "readout_scale", "recurrence", "readout_time"):
        if k in meta:
            kw[k] = str(np.asarray(meta[k]).item()) if not isinstance(meta[k], str) else meta[k]
    for k in ("tau", "dt"):
        if k in meta:
            kw[k] = float(np.asarray(meta[k]))
    if "activation" not in kw:
        raise InvalidParameterError(f"activation is needed (one of {ACTIVATIONS}): in the file or as a keyword")
    return from_vectors(*(arrays[k] for k in ARRAY_NAMES), **kw, arch=extra.get("arch"),
                        check_inputs=meta.get("inputs"), check_outputs=meta.get("outputs"),
                        rtol=extra.get("rtol"), seed=extra.get("seed", 0))
