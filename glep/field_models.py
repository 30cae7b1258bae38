r"""Built-in field Lagrangians and the exact solutions that test their discretisations.

Every model is a :class:`glep.fields.FieldLagrangian` (one UFL density for
both backends) with a trainable parameter field:

=================  ==========================================================  ==============================
model              density ``ℒ``                                              Euler–Lagrange equation
=================  ==========================================================  ==============================
:func:`wave`       ``½φ_t² − ½κ(x)|∇φ|²``                                     ``φ_tt = ∇·(κ∇φ)``
:func:`klein_gordon` ``½φ_t² − ½|∇φ|² − ½μ(x)φ² − ¼λφ⁴``                     ``φ_tt − Δφ + μφ + λφ³ = 0``
:func:`sine_gordon`  ``½φ_t² − ½|∇φ|² − κ(x)(1 − cos φ)``                    ``φ_tt − Δφ + κ sin φ = 0``
:func:`nls`        ``b a_t − a b_t − |∇a|² − |∇b|² − V(a² + b²) + (g/2)(a² + b²)²``  ``i u_t + Δu − Vu + g|u|²u = 0``
=================  ==========================================================  ==============================

(``u = a + i b``; the NLS density is first order in time, and time reversal
is complex conjugation ``b ↦ −b``.)  The exact solutions below are NumPy
functions of ``(x, t)`` used by the convergence tests of both backends; each
was checked by substitution (see the test suite).
"""

from __future__ import annotations

import numpy as np

from glep.fields import FieldLagrangian, FieldParameter


def _ufl():
    import ufl  # noqa: PLC0415 (UFL loads only when a density is built)

    return ufl


def wave(kappa: float = 1.0, *, element: tuple[str, int] = ("P", 1)) -> FieldLagrangian:
    """The linear wave equation with a trainable stiffness field ``κ(x) = c(x)²``."""

    def density(phi, phi_t, grad_phi, theta, x, t):
        ufl = _ufl()
        return 0.5 * phi_t**2 - 0.5 * theta["kappa"] * ufl.inner(grad_phi, grad_phi)

    return FieldLagrangian(density, {"kappa": FieldParameter("field", kappa, element)}, name="wave",
                           separable=True)


def klein_gordon(mu: float = 1.0, lam: float = 0.0, *, element: tuple[str, int] = ("P", 1)) -> FieldLagrangian:
    """Klein–Gordon with a trainable mass field ``μ(x) = m(x)²`` and a φ⁴ coupling ``λ`` (scalar).

    ``λ = 0`` is the linear equation of the standing wave; ``μ = −1, λ = 1`` is
    the φ⁴ model ``φ_tt − φ_xx − φ + φ³ = 0`` of :func:`phi4_kink`.
    """

    def density(phi, phi_t, grad_phi, theta, x, t):
        ufl = _ufl()
        return (0.5 * phi_t**2 - 0.5 * ufl.inner(grad_phi, grad_phi) - 0.5 * theta["mu"] * phi**2
                - 0.25 * theta["lam"] * phi**4)

    params = {"mu": FieldParameter("field", mu, element), "lam": FieldParameter("scalar", float(lam))}
    return FieldLagrangian(density, params, name="klein-gordon", separable=True)


def sine_gordon(kappa: float = 1.0, *, element: tuple[str, int] = ("P", 1)) -> FieldLagrangian:
    """Sine-Gordon with a trainable coupling field ``κ(x)`` (``κ = 1``: the standard equation)."""

    def density(phi, phi_t, grad_phi, theta, x, t):
        ufl = _ufl()
        return 0.5 * phi_t**2 - 0.5 * ufl.inner(grad_phi, grad_phi) - theta["kappa"] * (1.0 - ufl.cos(phi))

    return FieldLagrangian(density, {"kappa": FieldParameter("field", kappa, element)}, name="sine-gordon",
                           separable=True)


def nls(g: float = 2.0, potential: float = 0.0, *, element: tuple[str, int] = ("P", 1)) -> FieldLagrangian:
    """The nonlinear Schrödinger (continuous Kerr) field ``u = a + i b`` with a trainable potential ``V(x)``.

    Varying ``u*`` in ``ℒ = (i/2)(u* u_t − u u_t*) − |∇u|² − V|u|² + (g/2)|u|⁴``
    gives ``i u_t + Δu − V u + g|u|²u = 0`` (``g = 2``: the focusing equation
    of :func:`nls_soliton`).  In real components ``(i/2)(u* u_t − u u_t*) = b a_t − a b_t``.
    """

    def density(phi, phi_t, grad_phi, theta, x, t):
        ufl = _ufl()
        a, b = phi[0], phi[1]
        a_t, b_t = phi_t[0], phi_t[1]
        rho = a**2 + b**2
        return (b * a_t - a * b_t - ufl.inner(grad_phi, grad_phi) - theta["V"] * rho
                + 0.5 * theta["g"] * rho**2)

    params = {"V": FieldParameter("field", potential, element), "g": FieldParameter("scalar", float(g))}
    return FieldLagrangian(density, params, components=2, name="nls", reversal=((1, -1), (-1, 1)),
                           separable=False)


# ----------------------------------------------------------------------------- exact solutions

def klein_gordon_standing_wave(x, t, *, k: int = 1, L: float = 1.0, mu: float = 0.0):
    """``sin(kπx/L) cos(ωt)``, ``ω² = (kπ/L)² + μ``: linear Klein–Gordon on ``[0, L]``, zero Dirichlet ends.

    ``μ = 0`` is the wave equation's ``sin(πx) cos(πt)`` (``k = L = 1``).
    """
    omega = np.sqrt((k * np.pi / L) ** 2 + mu)
    return np.sin(k * np.pi * np.asarray(x) / L) * np.cos(omega * np.asarray(t))


def sine_gordon_breather(x, t, *, m: float = 0.5):
    """``−4 atan[m/√(1−m²) · sin(√(1−m²) t) / cosh(m x)]``, exact on the whole line (decays like ``e^{−m|x|}``)."""
    s = np.sqrt(1.0 - m * m)
    return -4.0 * np.arctan(m / s * np.sin(s * np.asarray(t)) / np.cosh(m * np.asarray(x)))


def sine_gordon_kink(x, t, *, c: float = 0.2):
    """The kink ``4 atan(exp((x − ct)/√(1−c²)))`` moving at speed ``c``."""
    return 4.0 * np.arctan(np.exp((np.asarray(x) - c * np.asarray(t)) / np.sqrt(1.0 - c * c)))


def phi4_kink(x, t, *, v: float = 0.0):
    """``tanh((x − vt)/√(2(1 − v²)))`` of ``φ_tt − φ_xx − φ + φ³ = 0`` (:func:`klein_gordon` with μ = −1, λ = 1)."""
    return np.tanh((np.asarray(x) - v * np.asarray(t)) / np.sqrt(2.0 * (1.0 - v * v)))


def nls_soliton(x, t, *, eta: float = 1.0, xi: float = 0.5, x0: float = 0.0, phase: float = 0.0):
    """``η sech(η(x − 2ξt − x₀)) exp(i(ξx − (ξ² − η²)t + φ₀))`` of ``i u_t + u_xx + 2|u|²u = 0`` (complex)."""
    x = np.asarray(x)
    t = np.asarray(t)
    return eta / np.cosh(eta * (x - 2.0 * xi * t - x0)) * np.exp(1j * (xi * x - (xi**2 - eta**2) * t + phase))


__all__ = ["klein_gordon", "klein_gordon_standing_wave", "nls", "nls_soliton", "phi4_kink", "sine_gordon",
           "sine_gordon_breather", "sine_gordon_kink", "wave"]
