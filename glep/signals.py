"""Time-dependent inputs ``x(t)`` and targets ``y(t)``.

A :class:`Signal` is a (possibly batched) vector-valued function of time.  The
echo replays inputs and targets in reverse, so every signal knows how to
reverse itself on ``[0, T]``: ``reversed(T)(t) == self(T - t)``.

A sampled signal is defined on ``[0, horizon]`` only; :func:`check_signals`
refuses, before any work, a signal that ends before the horizon of the
problem or whose channel count differs from what the terms and the cost read.
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

    Attributes
    ----------
    dim:
        Number of channels ``m``.
    batch:
        Batch size ``B`` (``None``: shared by the whole batch).
    horizon:
        The signal is defined on ``[0, horizon]`` (``None``: for every ``t``).
    """

    def __init__(self, fn: Callable[[float], np.ndarray], dim: int, batch: int | None,
                 description: str = "signal", sampler: Callable[[np.ndarray], np.ndarray] | None = None,
                 horizon: float | None = None):
        self._fn = fn
        self._sampler = sampler
        self.dim = int(dim)
        self.batch = batch
        self.description = description
        self.horizon = None if horizon is None else float(horizon)

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

        return cls(fn, arr.shape[2], batch, f"samples{arr.shape}", sampler, horizon=T)

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
        """The signal played backwards on ``[0, T]``: ``t -> self(T - t)`` (needs ``horizon ≥ T``)."""
        T = float(T)
        if not covers(self.horizon, T):
            raise InputError(f"a signal defined on [0, {self.horizon:g}] cannot be played backwards on [0, {T:g}]; "
                             "give samples covering the whole horizon")
        fn, sampler = self._fn, self._sampler
        rev_sampler = None if sampler is None else (lambda times: sampler(T - times))
        return Signal(lambda t: fn(T - t), self.dim, self.batch, f"reversed({self.description})", rev_sampler,
                      horizon=None if self.horizon is None else T)

    def tiled(self, copies: int) -> Signal:
        """The batch repeated ``copies`` times (a shared, unbatched signal is returned as is)."""
        if self.batch is None or copies == 1:
            return self
        fn, sampler = self._fn, self._sampler

        def tiled_sampler(times):
            return np.concatenate([self.sample(times)] * copies, axis=1)

        return Signal(lambda t: np.concatenate([fn(t)] * copies), self.dim, self.batch * copies,
                      f"tiled({self.description})", tiled_sampler if sampler is not None else None,
                      horizon=self.horizon)

    def sample(self, times) -> np.ndarray:
        """Values at ``times``: array of shape ``(len(times), B, m)`` (vectorised when possible)."""
        times = np.asarray(times, dtype=float)
        if self._sampler is not None:
            return self._sampler(times)
        return np.stack([self(t) for t in times])


def covers(horizon: float | None, T: float) -> bool:
    """Whether a signal defined on ``[0, horizon]`` covers ``[0, T]`` (to relative round-off)."""
    return horizon is None or float(T) <= horizon * (1.0 + 1e-12)


def check_signals(system, T: float | None = None) -> None:
    r"""Check a system's signals against what reads them, before any work.

    Every term and the cost declare, in ``input_dims``, the channel count of
    each signal they read (``InputDrive``: the columns of ``B``;
    ``TrackingCost``: its output coordinates); a signal with another count is
    refused.  With ``T``, a signal defined on ``[0, horizon]`` with
    ``horizon < T`` is refused too (it would be held constant past its end).

    Raises
    ------
    InputError
        Naming the signal, what reads it, and what is expected.
    """
    readers = list(system.terms) + ([system.cost] if system.cost is not None else [])
    for reader in readers:
        for name, m in (getattr(reader, "input_dims", None) or {}).items():
            sig = system.signals.get(name)
            if sig is not None and sig.dim != int(m):
                who = reader.describe() if hasattr(reader, "describe") else type(reader).__name__
                raise InputError(f"signal {name!r} has {sig.dim} channel(s), but {who} reads {int(m)}: "
                                 f"give {name!r} samples of shape (S, {int(m)}) or (B, S, {int(m)})")
    if T is not None:
        for name, sig in system.signals.items():
            if not covers(sig.horizon, T):
                raise InputError(f"signal {name!r} ends at t = {sig.horizon:g}, before the horizon T = {float(T):g}: "
                                 f"give samples covering [0, {float(T):g}] (Signal.from_samples(samples, T))")
