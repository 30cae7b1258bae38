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
from glep.ivp.discrete import activation_buffers, trapezoid_node_sum
from glep.ivp.stepping import _diagonal_mass
from glep.system import position_force_kernel
from glep.terms import add_into


def _check(system):
    if not system.is_separable:
        raise InputError("RHEL's leapfrog needs a separable Hamiltonian ½pᵀM⁻¹p + V(q, t); "
                         f"{system.name} is not separable: {system.non_separable_reason} "
                         "(use PFVP backward integration with the 'midpoint' integrator)")


def theta_dH_sum(system, theta, grid, Q, activations: dict | None = None):
    """``Σ_k h ∂_θH`` along a leapfrog trajectory: kinetic part at the half-step
    momenta ``p_{k+½}``, potential part with trapezoid weights (``activations``:
    the node activations the leapfrog recorded along ``Q``, ``{term index:
    (N+1, B, k)}``, reused instead of recomputed; see :func:`leapfrog`)."""
    N, h = grid.N, grid.h
    B, n = Q.shape[1], Q.shape[2]
    kin = system.kinetic
    index = [i for i, t in enumerate(system.terms) if not t.depends_on_velocity and t.parameters]
    pots = [system.terms[i] for i in index]
    acts = activations or {}
    dH: dict = {}
    if kin.parameters:  # a fixed mass has no θ-derivative: v̄ is not formed
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
    for key, g in trapezoid_node_sum(pots, theta, Q, h, X, grid.times, [acts.get(i) for i in index]).items():
        add_into(dH, key, -g)  # ∂_θV = −∂_θL_pot
    return dH


def _in_place_leapfrog(force, Q, p, F, h: float, m=None, P=None):
    """The kick–drift–kick steps of :func:`leapfrog` with unit (``m = None``) or diagonal masses ``m``,
    into ``Q[k+1]`` (and ``P[k+1]``) with the half-step momentum and the products in preallocated buffers:

        p_{k+½} = p_k + (h/2)F_k,   q_{k+1} = q_k + h M⁻¹p_{k+½},   p_{k+1} = p_{k+½} + (h/2)F_{k+1},

    the same operations in the same order as the loop of :func:`leapfrog` (the same values bit for bit).
    Returns the final momentum (``p``, updated in place)."""
    hh = 0.5 * h
    ph, tmp = np.empty_like(p), np.empty_like(p)
    v = ph if m is None else np.empty_like(p)
    mul, add = np.multiply, np.add
    for k in range(len(Q) - 1):
        mul(hh, F, tmp)
        add(p, tmp, ph)
        if m is not None:
            np.divide(ph, m, v)
        mul(h, v, tmp)
        add(Q[k], tmp, Q[k + 1])
        F = force(Q[k + 1], k + 1)
        mul(hh, F, tmp)
        add(ph, tmp, p)
        if P is not None:
            P[k + 1] = p
    return p


def leapfrog(system, theta, grid, q0, p0, eps: complex = 0.0, *, theta_dH: bool = False,
             store_momenta: bool = True, activations: dict | None = None):
    """Kick–drift–kick leapfrog of ``H − εc`` from ``(q₀, p₀)``.

    Returns ``(Q, P, dH)`` with ``Q, P`` of shape ``(N+1, B, n)`` (``P`` is only
    the final momentum when ``store_momenta`` is false) and, when ``theta_dH``,
    ``dH = Σ_k h ∂_θH`` along the trajectory (else ``None``; it reuses the node
    activations the forces compute, e.g. ``tanh(Wq + b)``).  ``activations``: a
    dict filled with those node activations, ``{term index: (N+1, B, k)}``, for
    :func:`theta_dH_sum` along blocks of ``Q``.
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
    acts = activation_buffers(system, theta, N, np.shape(q0)[:-1], dtype) \
        if theta_dH or activations is not None else {}
    kernel = position_force_kernel(system, theta, eps, acts)  # θ- and ε-only work done once
    solve, apply = kin.mass_kernels(theta)

    def force(q, k):
        x = {name: a[k] for name, a in X.items()}
        return kernel(q, x, times[k], k) if acts else kernel(q, x, times[k])

    F = force(Q[0], 0)
    m = _diagonal_mass(kin, solve, apply, p)
    if np.shape(F) == p.shape and np.result_type(F) == dtype and (solve is apply or m is not None):
        p = _in_place_leapfrog(force, Q, p, F, h, m, P if store_momenta else None)
    else:
        for k in range(N):
            p_half = p + 0.5 * h * F
            Q[k + 1] = Q[k] + h * solve(p_half)
            F = force(Q[k + 1], k + 1)
            p = p_half + 0.5 * h * F
            if store_momenta:
                P[k + 1] = p
    dH = theta_dH_sum(system, theta, grid, Q, acts) if theta_dH else None
    if activations is not None:
        activations.update(acts)
    return Q, (P if store_momenta else p), dH
