"""Checks of user input with errors that name the argument."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from glep.errors import InputError


def as_finite_array(value, name: str, *, shape: tuple | None = None, ndim: int | None = None,
                    dtype=float) -> np.ndarray:
    """Return ``value`` as an array, checking finiteness and (optionally) shape."""
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be numeric array-like, got {type(value).__name__}") from exc
    if shape is not None and arr.shape != tuple(shape):
        raise InputError(f"{name} must have shape {tuple(shape)}, got {arr.shape}")
    if ndim is not None and arr.ndim != ndim:
        raise InputError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains non-finite values (nan or inf)")
    return arr


def check_positive(value: float, name: str) -> float:
    """Return ``float(value)`` after checking it is finite and > 0."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a positive number, got {value!r}") from exc
    if not np.isfinite(v) or v <= 0.0:
        raise InputError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def check_beta(beta: complex | float, name: str = "beta") -> float:
    """Nudging strengths must be finite and non-zero."""
    b = complex(beta)
    if not np.isfinite(b.real) or not np.isfinite(b.imag):
        raise InputError(f"{name} must be finite, got {beta!r}")
    if b == 0:
        raise InputError(f"{name} must be non-zero: a contrast needs a nudged trajectory "
                         f"(use e.g. {name}=1e-4)")
    return beta


def check_params(params: Mapping[str, np.ndarray], declared: Mapping[str, tuple],
                 name: str = "params") -> dict[str, np.ndarray]:
    """Check a parameter dictionary against declared shapes; return float copies."""
    if not isinstance(params, Mapping):
        raise InputError(f"{name} must be a mapping from parameter name to array")
    missing = [k for k in declared if k not in params]
    if missing:
        raise InputError(f"{name} is missing parameter(s) {missing}; expected {list(declared)}")
    unknown = [k for k in params if k not in declared]
    if unknown:
        raise InputError(f"{name} has unknown parameter(s) {unknown}; expected {list(declared)}")
    out = {}
    for key, shape in declared.items():
        out[key] = as_finite_array(params[key], f"{name}[{key!r}]", shape=shape)
    return out
