r"""Costs ``c(q, t)`` and terminal costs ``c_T(q(T))``.

A cost enters the augmented Lagrangian as ``L_β = L + β c`` and the loss of the
free trajectory is ``C = ∫₀ᵀ c(q⁰, t) dt (+ c_T(q⁰(T)))``; on a time grid the
integral is the trapezoid sum ``C_h = Σ_k w_k c(q_k, t_k)``.
"""

from __future__ import annotations

import numpy as np

from glep.errors import InputError
from glep.validation import as_finite_array


class TrackingCost:
    r"""``c(q, t) = ½ Σ_i (q_{j_i} − y_i(t))²`` on the output coordinates ``j``.

    Parameters
    ----------
    n:
        Number of degrees of freedom.
    indices:
        Output coordinates (the oscillators that carry the target).
    target:
        Name of the target signal ``y`` (a :class:`glep.Signal` given to the
        system).
    """

    def __init__(self, n: int, indices, target: str = "y"):
        idx = np.atleast_1d(np.asarray(indices, dtype=int))
        if idx.ndim != 1 or idx.size == 0 or np.any(idx < 0) or np.any(idx >= n):
            raise InputError(f"indices must be a non-empty list of coordinates in [0, {n}), got {indices!r}")
        self.n = n
        self.indices = idx
        self.target = target
        self.inputs = (target,)
        self.input_dims = {target: idx.size}  # one target channel per output coordinate
        # a contiguous index set is a slice: much cheaper to gather and scatter
        contiguous = np.all(np.diff(idx) == 1)
        self._sel = slice(int(idx[0]), int(idx[-1]) + 1) if contiguous else idx

    def cost(self, q, x, t):
        r = q[..., self._sel] - x[self.target]
        return 0.5 * np.sum(r * r, axis=-1)

    def gradient(self, q, x, t):
        y = x[self.target]
        g = np.zeros(np.broadcast_shapes(q.shape, y.shape[:-1] + (1,)), dtype=np.result_type(q, y))
        g[..., self._sel] = q[..., self._sel] - y
        return g

    def hessian_action(self, q, x, t, dq):
        h = np.zeros_like(dq)
        h[..., self._sel] = dq[..., self._sel]
        return h

    def hessian_entries(self):
        """``∂²c/∂q²`` as ``(rows, cols, values)``: ones on the output coordinates."""
        return self.indices, self.indices, np.ones(self.indices.size)

    def add_gradient(self, out, q, x, t, scale) -> None:
        """``out += scale ∇c(q, t)`` in place (only the output coordinates are touched)."""
        out[..., self._sel] += scale * (q[..., self._sel] - x[self.target])

    def ufl_cost(self, q, x, t):
        y = x[self.target]
        return 0.5 * sum((q[int(j)] - y[i]) ** 2 for i, j in enumerate(self.indices))


class TerminalCost:
    r"""``c_T(q) = ½ ‖q_j − y_T‖²`` at the final time only (HEB-style losses)."""

    def __init__(self, n: int, indices, value):
        idx = np.atleast_1d(np.asarray(indices, dtype=int))
        if idx.ndim != 1 or idx.size == 0 or np.any(idx < 0) or np.any(idx >= n):
            raise InputError(f"indices must be coordinates in [0, {n}), got {indices!r}")
        self.n = n
        self.indices = idx
        self.value = as_finite_array(value, "value")
        if self.value.shape[-1] != idx.size:
            raise InputError(f"value must have last dimension {idx.size}, got {self.value.shape}")

    def cost(self, q):
        r = q[..., self.indices] - self.value
        return 0.5 * np.sum(r * r, axis=-1)

    def gradient(self, q):
        g = np.zeros_like(q)
        g[..., self.indices] = q[..., self.indices] - self.value
        return g

    def hessian_action(self, q, dq):
        h = np.zeros_like(dq)
        h[..., self.indices] = dq[..., self.indices]
        return h
