"""Time-dependent inputs ``x(t)`` and targets ``y(t)``.

A :class:`Signal` is a (possibly batched) vector-valued function of time.  The
echo replays inputs and targets in reverse, so every signal knows how to
reverse itself on ``[0, T]``: ``reversed(T)(t) == self(T - t)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from glep.errors import InputError
from glep.validation import as_finite_array, check_positive


class Signal:
    """A batched vector signal ``t -> array of shape (B, m)``.

    Build one with :meth:`from_samples` (piecewise-linear interpolation of
    samples on a uniform grid), :meth:`constant` or :meth:`from_function`.
    """

    def __init__(self, fn: Callable[[float], np.ndarray], dim: int, batch: int | None,
                 description: str = "signal", sampler: Callable[[np.ndarray], np.ndarray] | None = None):
        self._fn = fn
        self._sampler = sampler
        self.dim = int(dim)
        self.batch = batch
        self.description = description

    def __call__(self, t: float) -> np.ndarray:
        return self._fn(float(t))

    # -- constructors -------------------------------------------------------
    @classmethod
    def from_samples(cls, samples, T: float, name: str = "samples") -> Signal:
        """Piecewise-linear signal through ``samples`` at ``t_j = j T / (S - 1)``.

        ``samples`` has shape ``(S, m)`` (shared by the whole batch) or
        ``(B, S, m)`` (one sequence per batch member).
        """
        T = check_positive(T, "T")
        arr = as_finite_array(samples, name)
        if arr.ndim == 2:
            arr = arr[None]
            batch = None
        elif arr.ndim == 3:
            batch = arr.shape[0]
        else:
            raise InputError(f"{name} must have shape (S, m) or (B, S, m), got {arr.shape}")
        S = arr.shape[1]
        if S < 2:
            raise InputError(f"{name} needs at least 2 samples in time, got {S}")
        dt = T / (S - 1)

        def fn(t: float) -> np.ndarray:
            s = min(max(t / dt, 0.0), S - 1.0)
            j = min(int(np.floor(s)), S - 2)
            a = s - j
            return (1.0 - a) * arr[:, j] + a * arr[:, j + 1]

        def sampler(times: np.ndarray) -> np.ndarray:
            s = np.clip(times / dt, 0.0, S - 1.0)
            j = np.minimum(np.floor(s).astype(int), S - 2)
            a = (s - j)[:, None, None]
            return (1.0 - a) * np.moveaxis(arr[:, j], 1, 0) + a * np.moveaxis(arr[:, j + 1], 1, 0)

        return cls(fn, arr.shape[2], batch, f"samples{arr.shape}", sampler)

    @classmethod
    def constant(cls, value) -> Signal:
        """A constant signal (shape ``(m,)`` or ``(B, m)``)."""
        arr = as_finite_array(value, "value")
        if arr.ndim == 1:
            arr = arr[None]
            batch = None
        elif arr.ndim == 2:
            batch = arr.shape[0]
        else:
            raise InputError(f"value must have shape (m,) or (B, m), got {arr.shape}")
        return cls(lambda t: arr, arr.shape[1], batch, f"constant{arr.shape}")

    @classmethod
    def from_function(cls, fn: Callable[[float], np.ndarray], dim: int,
                      batch: int | None = None) -> Signal:
        """Wrap ``fn(t) -> (m,) or (B, m)``."""

        def wrapped(t: float) -> np.ndarray:
            out = np.asarray(fn(t), dtype=float)
            return out[None] if out.ndim == 1 else out

        return cls(wrapped, dim, batch, "function")

    def reversed(self, T: float) -> Signal:
        """The signal played backwards on ``[0, T]``: ``t -> self(T - t)``."""
        T = float(T)
        fn, sampler = self._fn, self._sampler
        rev_sampler = None if sampler is None else (lambda times: sampler(T - times))
        return Signal(lambda t: fn(T - t), self.dim, self.batch, f"reversed({self.description})", rev_sampler)

    def tiled(self, copies: int) -> Signal:
        """The batch repeated ``copies`` times (a shared, unbatched signal is returned as is)."""
        if self.batch is None or copies == 1:
            return self
        fn, sampler = self._fn, self._sampler

        def tiled_sampler(times):
            return np.concatenate([self.sample(times)] * copies, axis=1)

        return Signal(lambda t: np.concatenate([fn(t)] * copies), self.dim, self.batch * copies,
                      f"tiled({self.description})", tiled_sampler if sampler is not None else None)

    def sample(self, times) -> np.ndarray:
        """Values at ``times``: array of shape ``(len(times), B, m)`` (vectorised when possible)."""
        times = np.asarray(times, dtype=float)
        if self._sampler is not None:
            return self._sampler(times)
        return np.stack([self(t) for t in times])
