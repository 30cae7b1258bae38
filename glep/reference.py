r"""Reference boundary-value problems with closed-form or independently computed solutions.

Backend-free (NumPy, SciPy and UFL forms only; neither dolfinx nor PETSc): the time-stepping and the
finite-element backends and their tests take the same systems from here.  Scalar Lagrangians
``L = ½ q'² − V(q)`` (so ``q'' = −V'(q)``), written as :class:`glep.PotentialTerm` subclasses with
NumPy and UFL methods, plus their exact solutions:

* **Bratu** ``V = λ eᵠ``: ``y'' + λeʸ = 0``, ``y(0) = y(1) = 0``; two
  solutions for ``λ < λ_c = 3.51383071912516`` (lower: minimum, upper:
  Morse index 1), none beyond.
* **Troesch** ``V = −cosh(λq)``: ``y'' = λ sinh(λy)``, ``y(0) = 0``,
  ``y(1) = 1``; convex action, boundary layer at ``t = 1``.
* **Harmonic oscillator** ``V = ½ω²q²`` (:class:`glep.Harmonic` with
  ``k = ω²``, one or several uncoupled frequencies): Morse index ``⌊ωT/π⌋`` per frequency.
* **Pendulum** ``V = ω²(1 − cos q)`` (:class:`glep.Pendulum` with ``w = ω²``):
  with both ends fixed and ``ωT`` large the CBVP has several solutions (one
  per number of swings that fits in ``T``); :func:`pendulum_cbvp_reference`
  finds them independently of the finite-element backend, by a scan of the
  initial slope with SciPy's DOP853 and Brent's method, and counts the
  conjugate points of each from the Jacobi equation ``y'' = −ω² cos(q) y``.
"""

from __future__ import annotations

import numpy as np
import ufl
from scipy.optimize import brentq

from glep.kinetic import DiagonalMass
from glep.potentials import Harmonic, Pendulum
from glep.system import LagrangianSystem
from glep.terms import PotentialTerm, batch_sum

BRATU_FOLD = 3.51383071912516


class BratuPotential(PotentialTerm):
    r"""``V(q) = λ Σ_i e^{q_i}`` with a trainable scalar ``λ`` (parameter ``name``)."""

    def __init__(self, n: int = 1, name: str = "lam"):
        super().__init__(n)
        self.name = name
        self.parameters = {name: ()}

    def potential(self, q, theta, x, t):
        return theta[self.name] * np.sum(np.exp(q), axis=-1)

    def potential_gradient(self, q, theta, x, t):
        return theta[self.name] * np.exp(q)

    def potential_hessian_action(self, q, theta, x, t, dq):
        return theta[self.name] * np.exp(q) * dq

    def potential_theta_gradient(self, q, theta, x, t):
        return {self.name: np.asarray(batch_sum(np.sum(np.exp(q), axis=-1), 0))}

    def potential_theta_vjp(self, q, theta, x, t, a):
        return {self.name: np.asarray(batch_sum(np.sum(np.exp(q) * a, axis=-1), 0))}

    def potential_theta_jvp(self, q, theta, x, t, dtheta):
        if self.name not in dtheta:
            return None
        return np.asarray(dtheta[self.name]).reshape(-1, *([1] * q.ndim)) * np.exp(q)[None]

    def ufl_potential(self, q, theta, x, t):
        return theta[self.name] * sum(ufl.exp(q[i]) for i in range(self.n))


class TroeschPotential(PotentialTerm):
    r"""``V(q) = −Σ_i cosh(λ q_i)`` with a trainable scalar ``λ``: ``q'' = λ sinh(λq)``."""

    def __init__(self, n: int = 1, name: str = "lam"):
        super().__init__(n)
        self.name = name
        self.parameters = {name: ()}

    def potential(self, q, theta, x, t):
        return -np.sum(np.cosh(theta[self.name] * q), axis=-1)

    def potential_gradient(self, q, theta, x, t):
        lam = theta[self.name]
        return -lam * np.sinh(lam * q)

    def potential_hessian_action(self, q, theta, x, t, dq):
        lam = theta[self.name]
        return -lam * lam * np.cosh(lam * q) * dq

    def potential_theta_gradient(self, q, theta, x, t):
        lam = theta[self.name]
        return {self.name: np.asarray(batch_sum(np.sum(-q * np.sinh(lam * q), axis=-1), 0))}

    def potential_theta_vjp(self, q, theta, x, t, a):
        lam = theta[self.name]
        d = -(np.sinh(lam * q) + lam * q * np.cosh(lam * q))
        return {self.name: np.asarray(batch_sum(np.sum(d * a, axis=-1), 0))}

    def potential_theta_jvp(self, q, theta, x, t, dtheta):
        if self.name not in dtheta:
            return None
        lam = theta[self.name]
        d = -(np.sinh(lam * q) + lam * q * np.cosh(lam * q))
        return np.asarray(dtheta[self.name]).reshape(-1, *([1] * q.ndim)) * d[None]

    def ufl_potential(self, q, theta, x, t):
        lam = theta[self.name]
        return -sum(ufl.cosh(lam * q[i]) for i in range(self.n))


def bratu_system(lam: float = 1.0) -> tuple[LagrangianSystem, dict]:
    """``L = ½q'² − λeᵠ`` (unit mass) and its parameters ``{"lam": λ}``."""
    sys = LagrangianSystem(1, [DiagonalMass(1, None), BratuPotential(1)], name="Bratu")
    return sys, {"lam": np.array(float(lam))}


def troesch_system(lam: float = 1.0) -> tuple[LagrangianSystem, dict]:
    """``L = ½q'² + cosh(λq)`` and its parameters."""
    sys = LagrangianSystem(1, [DiagonalMass(1, None), TroeschPotential(1)], name="Troesch")
    return sys, {"lam": np.array(float(lam))}


def harmonic_system(omega=1.0) -> tuple[LagrangianSystem, dict]:
    """``L = Σ_i ½q_i'² − ½ω_i²q_i²`` (:class:`glep.Harmonic`, ``k = ω²``); ``omega`` a number or one per
    degree of freedom."""
    omegas = np.atleast_1d(np.asarray(omega, dtype=float))
    n = len(omegas)
    sys = LagrangianSystem(n, [DiagonalMass(n, None), Harmonic(n, "k")], name="harmonic oscillator")
    return sys, {"k": omegas**2}


def pendulum_system(omega: float = 1.0) -> tuple[LagrangianSystem, dict]:
    """``L = ½q'² − ω²(1 − cos q)`` (:class:`glep.Pendulum`, ``w = ω²``)."""
    sys = LagrangianSystem(1, [DiagonalMass(1, None), Pendulum(1, "w")], name="pendulum")
    return sys, {"w": np.array([float(omega) ** 2])}


def pendulum_cbvp_reference(omega: float, T: float, a: float, b: float, *, scan: int = 801,
                            rtol: float = 1e-12) -> list[tuple[float, int, float]]:
    r"""All solutions of ``q'' = −ω² sin q``, ``q(0) = a``, ``q(T) = b``, with ``|a|, |b| < π``.

    Every solution oscillates below the separatrix (a rotating one never comes back to ``b``), so its
    initial slope lies in ``|s| < s_sep = 2ω cos(a/2)``.  ``s ↦ q(T; s) − b`` (DOP853, ``rtol``) is
    sampled at ``scan`` slopes in ``(−s_sep, s_sep)`` and each sign change refined by Brent's method.
    The Morse index of each is the number of zeros in ``(0, T)`` of the Jacobi field ``y'' = −ω² cos(q) y``,
    ``y(0) = 0``, ``y'(0) = 1`` (Morse index theorem); ``y(T)`` is returned too (``0`` would mean a
    conjugate point at ``T``, a degenerate solution).

    Returns
    -------
    list of ``(s, index, y(T))``, sorted by ``s``.
    """
    from scipy.integrate import solve_ivp

    w2 = float(omega) ** 2

    def rhs(t, z):  # z = (q, q', y, y') for every slope at once
        q, v, y, u = z.reshape(4, -1)
        return np.concatenate([v, -w2 * np.sin(q), u, -w2 * np.cos(q) * y])

    def run(s, dense=False):
        s = np.atleast_1d(np.asarray(s, dtype=float))
        z0 = np.concatenate([np.full_like(s, a), s, np.zeros_like(s), np.ones_like(s)])
        return solve_ivp(rhs, (0.0, T), z0, method="DOP853", rtol=rtol, atol=rtol, dense_output=dense)

    def miss(s):
        return float(run(s).y[0, -1]) - b

    s_sep = 2.0 * float(omega) * np.cos(a / 2.0)
    slopes = np.linspace(-s_sep, s_sep, scan + 2)[1:-1]
    vals = run(slopes).y[: len(slopes), -1] - b  # the whole scan in one vectorised integration
    out = []
    for i in np.flatnonzero(np.sign(vals[:-1]) != np.sign(vals[1:])):
        s = brentq(miss, slopes[i], slopes[i + 1], xtol=1e-14, rtol=4 * np.finfo(float).eps)
        sol = run(s, dense=True)
        y = sol.sol(np.linspace(0.0, T, 20001)[1:-1])[2]
        out.append((float(s), int(np.count_nonzero(np.sign(y[:-1]) != np.sign(y[1:]))), float(sol.y[2, -1])))
    return out


def bratu_theta(lam: float, branch: str = "lower") -> float:
    r"""Root of ``θ = √(2λ) cosh(θ/4)`` on the requested branch."""
    f = lambda th: th - np.sqrt(2.0 * lam) * np.cosh(th / 4.0)  # noqa: E731
    # the fold: θ_c solves 1 = √(2λ)/4 sinh(θ/4) together with the equation; θ_c ≈ 4.7987
    th_c = brentq(lambda th: th / 4.0 * np.tanh(th / 4.0) - 1.0, 0.1, 20.0)
    if f(th_c) < 0:
        raise ValueError(f"Bratu has no solution for λ = {lam} > λ_c = {BRATU_FOLD}")
    return brentq(f, 0.0, th_c) if branch == "lower" else brentq(f, th_c, 60.0)


def bratu_exact(lam: float, branch: str = "lower"):
    """Exact Bratu solution: ``(y(t), y'(0), y(½), θ)`` with ``y`` a NumPy callable."""
    th = bratu_theta(lam, branch)

    def y(t):
        return -2.0 * np.log(np.cosh((np.asarray(t) - 0.5) * th / 2.0) / np.cosh(th / 4.0))

    return y, th * np.tanh(th / 4.0), 2.0 * np.log(np.cosh(th / 4.0)), th


def bratu_exact_ufl(th: float, t):
    """The exact Bratu solution as a UFL expression of the time coordinate ``t``."""
    return -2.0 * ufl.ln(ufl.cosh((t - 0.5) * th / 2.0) / np.cosh(th / 4.0))


__all__ = ["BRATU_FOLD", "BratuPotential", "TroeschPotential", "bratu_system", "troesch_system",
           "harmonic_system", "pendulum_system", "pendulum_cbvp_reference", "bratu_theta",
           "bratu_exact", "bratu_exact_ufl"]
