"""Validators shared by every public entry point: one rule each, one message format.

Each raises :class:`~lowrank_learning.core.errors.InvalidParameterError` naming the field and
the value it got, and returns the value in the type the caller computes with.
"""

from __future__ import annotations

import numpy as np

from .errors import InvalidParameterError


def is_int(value) -> bool:
    """True for Python and NumPy integers (``bool`` is not an integer here)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value) -> bool:
    """True for finite real numbers (Python or NumPy; not ``bool``)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and bool(np.isfinite(value))


def check_int(name: str, value, minimum: int | None = None) -> int:
    """An integer ``>= minimum`` (any integer when ``minimum`` is None), returned as ``int``."""
    if not is_int(value) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise InvalidParameterError(f"{name} must be an integer{bound}, got {value!r}")
    return int(value)


def check_seed(value, name: str = "seed") -> int:
    """A random seed: a non-negative integer (NumPy and JAX both accept these)."""
    return check_int(name, value, 0)


def check_finite(name: str, value) -> float:
    """A finite real number, returned as ``float``."""
    if not is_number(value):
        raise InvalidParameterError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_positive(name: str, value) -> float:
    """A finite number > 0, returned as ``float``."""
    if not is_number(value) or value <= 0:
        raise InvalidParameterError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def check_nonnegative(name: str, value) -> float:
    """A finite number >= 0, returned as ``float``."""
    if not is_number(value) or value < 0:
        raise InvalidParameterError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def check_vectors(X, K: int, vector_names, name: str = "X", finite: bool = True) -> None:
    """``X`` has shape ``(N, K)`` with ``N >= 1`` (columns ``vector_names``) and, when ``finite``,
    finite entries.

    With ``finite=False`` only the shape is read, which a JAX tracer has too (free under ``jit``).
    """
    shape = tuple(getattr(X, "shape", np.shape(X)))
    if len(shape) != 2 or shape[1] != K or shape[0] < 1:
        raise InvalidParameterError(
            f"{name} must have shape (N, {K}) with N >= 1 for vectors {tuple(vector_names)}, got {shape}"
        )
    if finite and not bool(np.all(np.isfinite(np.asarray(X)))):
        raise InvalidParameterError(f"{name} has non-finite entries (NaN or inf)")


def check_instance(name: str, value, cls: type):
    """An instance of ``cls``, returned unchanged."""
    if not isinstance(value, cls):
        article = "an" if cls.__name__[:1] in "AEIOU" else "a"
        raise InvalidParameterError(f"{name} must be {article} {cls.__name__}, got {type(value).__name__}")
    return value


def check_choice(name: str, value, options) -> str:
    """One of ``options`` (compared with ``==``)."""
    if value not in tuple(options):
        raise InvalidParameterError(f"{name} must be one of {tuple(options)}, got {value!r}")
    return value


def finite_matrix(values, name: str, min_rows: int = 1, shape: str = "(n_samples, n_features)") -> np.ndarray:
    """``values`` as a float array of shape ``shape`` (a 1-D array becomes one column), with at
    least ``min_rows`` rows and only finite entries; else :class:`InvalidParameterError` naming
    ``name``."""
    X = np.asarray(values, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[1] < 1 or X.shape[0] < min_rows:
        rows = f" with at least {min_rows} rows" if min_rows > 1 else ""
        raise InvalidParameterError(f"{name} must have shape {shape}{rows}, got {np.shape(values)}")
    if not np.all(np.isfinite(X)):
        raise InvalidParameterError(f"{name} has non-finite entries (NaN or inf)")
    return X


def finite_sample(where: str, values, what: str = "values", hint: str = "count and report them") -> np.ndarray:
    """``values`` (any shape) as a flat float array with at least one value, all finite; else
    :class:`InvalidParameterError` from ``where`` saying how many of the ``what`` are NaN or
    infinite (``hint`` ends the message: what the caller should do with them instead)."""
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise InvalidParameterError(f"{where}: the {what} are empty: at least one value is needed")
    bad = int(np.sum(~np.isfinite(x)))
    if bad:
        raise InvalidParameterError(f"{where}: {bad} of {x.size} {what} are not finite "
                                    f"({int(np.sum(np.isnan(x)))} NaN); {hint}")
    return x
