r"""Hamiltonian leapfrog and the RHEL echo (THEORY.md §5).

For a separable system ``H = ½pᵀM⁻¹p + V(q, θ, t)`` the leapfrog (kick, drift,
kick) in ``Φ = (q, p)`` integrates ``Φ̇ = J∇H``; with a nudge,
``H_ε = H − ε c``.  This module is written in Hamiltonian variables on its own
(no discrete Lagrangian), so agreement of RHEL with the Lagrangian estimators
and the discrete adjoint is a genuine cross-check of §5's equivalence.

The derivative of ``H`` in θ at fixed ``p`` is ``∂_θH = −∂_θL`` at
``v = M⁻¹p`` (Legendre transform); the kinetic part is evaluated at the
half-step momentum ``p_{k+½}``, the potential part with trapezoid weights.
"""

from __future__ import annotations

import numpy as np

from glep.errors import InputError
from glep.ivp.discrete import trapezoid_node_sum
from glep.system import position_force_kernel
from glep.terms import add_into


def _check(system):
    if not system.is_separable:
        raise InputError("RHEL's leapfrog needs a separable Hamiltonian ½pᵀM⁻¹p + V(q, t); "
                         f"{system.name} is not separable: {system.non_separable_reason} "
                         "(use PFVP backward integration with the 'midpoint' integrator)")


def theta_dH_sum(system, theta, grid, Q):
    """``Σ_k h ∂_θH`` along a leapfrog trajectory: kinetic part at the half-step
    momenta ``p_{k+½}``, potential part with trapezoid weights."""
    N, h = grid.N, grid.h
    B, n = Q.shape[1], Q.shape[2]
    kin = system.kinetic
    pots = [t for t in system.terms if not t.depends_on_velocity and t.parameters]
    dH: dict = {}
    # p_{k+½} = p_k + (h/2) F(q_k) = M v̄_k with v̄_k = (q_{k+1} − q_k)/h
    vbar = ((Q[1:] - Q[:-1]) / h).reshape(N * B, n)
    for key, g in kin.theta_gradient(None, vbar, theta, None, None).items():
        add_into(dH, key, -h * g)  # ∂_θT|_p = −∂_θT|_v
    if any(t.explicit_time for t in pots):
        for k in range(N + 1):
            t = k * h
            x = system.inputs_at(t)
            w = 0.5 * h if k in (0, N) else h
            for term in pots:
                for key, g in term.theta_gradient(Q[k], None, theta, x, t).items():
                    add_into(dH, key, -w * g)
        return dH
    X = {k: s.sample(grid.times) for k, s in system.signals.items()}
    for key, g in trapezoid_node_sum(pots, theta, Q, h, X, grid.times).items():
        add_into(dH, key, -g)  # ∂_θV = −∂_θL_pot
    return dH


def leapfrog(system, theta, grid, q0, p0, eps: complex = 0.0, *, theta_dH: bool = False,
             store_momenta: bool = True):
    """Kick–drift–kick leapfrog of ``H − εc`` from ``(q₀, p₀)``.

    Returns ``(Q, P, dH)`` with ``Q, P`` of shape ``(N+1, B, n)`` (``P`` is only
    the final momentum when ``store_momenta`` is false) and, when ``theta_dH``,
    ``dH = Σ_k h ∂_θH`` along the trajectory (else ``None``).
    """
    _check(system)
    N, h = grid.N, grid.h
    kin = system.kinetic
    dtype = np.result_type(q0, p0, eps)
    Q = np.empty((N + 1,) + np.shape(q0), dtype)
    Q[0] = q0
    p = np.array(p0, dtype=dtype)
    if store_momenta:
        P = np.empty_like(Q)
        P[0] = p
    times = grid.times.tolist()
    X = {k: s.sample(grid.times) for k, s in system.signals.items()}
    kernel = position_force_kernel(system, theta, eps)  # θ- and ε-only work done once
    solve, _ = kin.mass_kernels(theta)

    def force(q, k):
        return kernel(q, {name: a[k] for name, a in X.items()}, times[k])

    F = force(Q[0], 0)
    for k in range(N):
        p_half = p + 0.5 * h * F
        Q[k + 1] = Q[k] + h * solve(p_half)
        F = force(Q[k + 1], k + 1)
        p = p_half + 0.5 * h * F
        if store_momenta:
            P[k + 1] = p
    dH = theta_dH_sum(system, theta, grid, Q) if theta_dH else None
    return Q, (P if store_momenta else p), dH
