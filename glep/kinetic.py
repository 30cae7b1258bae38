"""Kinetic terms ``½ vᵀ M v``."""

from __future__ import annotations

import numpy as np

from glep.errors import InputError
from glep.terms import KineticTerm, array_namespace
from glep.validation import as_finite_array


class DiagonalMass(KineticTerm):
    r"""``T = ½ Σ_i m_i v_i²`` with trainable masses (``name``) or fixed ones.

    Parameters
    ----------
    n:
        Number of degrees of freedom.
    name:
        Name of the trainable mass parameter (shape ``(n,)``); ``None`` for
        fixed masses given by ``masses``.  Trainable masses make the kinetic
        term θ-dependent, which is what gives PFVP its ``t = 0`` residual
        when the CIVP fixes the velocity rather than the momentum.
    masses:
        Fixed masses (used when ``name is None``); default ones.
    """

    array_api = True

    def __init__(self, n: int, name: str | None = "m", masses=None):
        super().__init__(n)
        self.name = name
        self.parameters = {name: (n,)} if name else {}
        if name is None:
            m = np.ones(n) if masses is None else as_finite_array(masses, "masses", shape=(n,))
            if np.any(m <= 0):
                raise InputError(f"masses must be > 0, got {m.tolist()}")
            self._fixed = m

    def check_values(self, theta) -> None:
        """Trainable masses must be positive (``½ vᵀMv`` with ``M > 0``): refused before any work."""
        if not self.name:
            return
        m = np.real(np.asarray(theta[self.name]))
        if np.any(m <= 0):
            bad = np.flatnonzero(m <= 0)
            raise InputError(f"params[{self.name!r}] holds the masses of DiagonalMass and must be > 0; "
                             f"got {m[bad].tolist()} at index {bad.tolist()}")

    def _m(self, theta):
        return theta[self.name] if self.name else self._fixed

    def mass_apply(self, v, theta):
        return self._m(theta) * v

    def mass_solve(self, p, theta):
        return p / self._m(theta)

    def mass_kernels(self, theta):
        """``(p ↦ p/m, v ↦ m v)``; the identity for unit masses (bit for bit the same values)."""
        m = np.asarray(self._m(theta))
        if np.all(m == 1.0):
            return _identity, _identity
        return (lambda p: p / m), (lambda v: m * v)

    def mass_theta_vjp(self, v, b):
        if not self.name:
            return {}
        return {self.name: array_namespace(v).sum(v * b, axis=tuple(range(v.ndim - 1)))}

    def mass_theta_jvp(self, v, dtheta):
        if not self.name or self.name not in dtheta:
            return None
        dm = dtheta[self.name]  # (K, n)
        return dm[:, None, :] * v[None]

    def ufl_lagrangian(self, q, v, theta, x, t):
        import ufl  # on first use: `import glep` does not load UFL

        m = theta[self.name] if self.name else ufl.as_vector(self._fixed.tolist())
        return 0.5 * ufl.dot(m, ufl.elem_mult(v, v))


def _identity(a):
    return a
