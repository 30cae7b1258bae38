"""Velocity-linear (magnetic, gyroscopic) terms that break time reversal."""

from __future__ import annotations

import numpy as np

from glep.errors import InputError
from glep.terms import Term
from glep.validation import as_finite_array


class Gyroscopic(Term):
    r"""``L_g = γ vᵀ G q`` with ``G`` antisymmetric (a uniform magnetic field).

    The Euler–Lagrange equation gains the gyroscopic force ``γ (Gᵀ − G) v``,
    which is odd in ``v``: ``L(q, −v) ≠ L(q, v)`` as soon as ``γ ≠ 0``, so
    the echo no longer retraces the forward trajectory.  The strength ``γ``
    measures how much time-reversal symmetry is broken.
    """

    depends_on_velocity = True
    hessian_constant = True  # bilinear: L_qv = γGᵀ, L_vq = γG

    def __init__(self, n: int, gamma: float, G=None):
        super().__init__(n)
        if G is None:
            G = np.zeros((n, n))
            for i in range(0, n - 1, 2):
                G[i, i + 1], G[i + 1, i] = 1.0, -1.0
        G = as_finite_array(G, "G", shape=(n, n))
        if not np.allclose(G, -G.T):
            raise InputError("G must be antisymmetric (G = -G.T)")
        self._G, self._gamma = G, float(gamma)
        self._products()
        self.parameters = {}

    def _products(self) -> None:
        self._gG, self._gGt = self._gamma * self._G, np.ascontiguousarray(self._gamma * self._G.T)  # γG, γGᵀ

    @property
    def G(self) -> np.ndarray:
        """The antisymmetric coupling matrix."""
        return self._G

    @G.setter
    def G(self, value) -> None:
        self._G = value
        self._products()

    @property
    def gamma(self) -> float:
        """The strength ``γ``."""
        return self._gamma

    @gamma.setter
    def gamma(self, value: float) -> None:
        self._gamma = float(value)
        self._products()

    def lagrangian(self, q, v, theta, x, t):
        return self.gamma * np.sum(v * (q @ self.G.T), axis=-1)

    def gradient(self, q, v, theta, x, t):
        return v @ self._gG, q @ self._gGt

    def hessian_action(self, q, v, theta, x, t, dq, dv):
        hq = None if dv is None else self.gamma * (dv @ self.G)
        hv = None if dq is None else self.gamma * (dq @ self.G.T)
        return hq, hv

    def theta_gradient(self, q, v, theta, x, t):
        return {}

    def theta_vjp(self, q, v, theta, x, t, a, b):
        return {}

    def theta_jvp(self, q, v, theta, x, t, dtheta):
        return None, None

    def ufl_lagrangian(self, q, v, theta, x, t):
        import ufl  # on first use: `import glep` does not load UFL

        return self.gamma * ufl.dot(v, ufl.as_matrix(self.G.tolist()) * q)
