r"""Echo (PFVP) estimator for complex fields on the implicit-midpoint integrator (NLS): time reversal = conjugation.

The discrete GLEP identity (THEORY §4) holds for any variational integrator: with the final state
``(q_N, p_N)`` of the free forward pass held fixed while β varies (PFVP),

    dC_h/dθ  = d/dβ|₀ I(β),      I(β) = Σ_k ∂_θL_d(q^β_k, q^β_{k+1})   (the midpoint discrete Lagrangian),
    dC_h/dq₀ = −d/dβ|₀ p^β(0),   dC_h/dp₀ = d/dβ|₀ q^β(0),

where ``q^β`` is the nudged trajectory (``L_d + βℓ``) integrated backward from ``(q_N, p_N − β∂_q c_T(q_N))``.
For NLS the discrete momentum is ``p ≈ M(b, −a)``, so the terminal impulse ``p_N − β∂_q c_T`` is
``u_N − iη ∂c_T/∂u*`` with ``η = 2β`` per unit mass: the error is injected on the conjugate component.
The density is invariant under conjugation (``ℒ(a, −b; −a_t, b_t) = ℒ``, :attr:`FieldLagrangian.reversal`),
so the backward pass is the **echo**: conjugate the state at ``T``, run the *same* midpoint steps forward
in time with targets replayed in reverse (and conjugated), conjugate back
(:func:`glep.ivp.field_stepping.midpoint_echo`).  The gradient with respect to the initial field
``u₀ = a₀ + i b₀`` (``p₀`` its Legendre map ``P(q₀)``) is ``dC_h/dq₀ + (∂P/∂q₀)ᵀ dC_h/dp₀``.

``d/dβ`` by a :class:`~glep.estimators.nudging.Nudge` (``Centred``: bias ``O(β²)``).  Cost: one forward pass
plus one echo per β, whatever the number of parameter dofs; memory: a constant number of state vectors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from glep.errors import InputError
from glep.estimators.field_estimators import FieldEstimate
from glep.estimators.nudging import Centred, Nudge
from glep.field_midpoint import check_midpoint_system
from glep.ivp import field_stepping as fs
from glep.ivp.field_midpoint_adjoint import initial_field_gradient


@dataclass
class NLSEstimate(FieldEstimate):
    """A :class:`FieldEstimate` with ``field0 = dC_h/dq₀ + (∂P/∂q₀)ᵀ dC_h/dp₀`` (the initial field's gradient)."""

    field0: np.ndarray | None = None


def _reversible(system) -> bool:
    sq, sv = system.lagrangian.reversal_signs
    return all(a == -b for a, b in zip(sq, sv, strict=True))


def nls_echo(system, T: float, N: int, nudge: Nudge | None = None, *, q0=None, p0=None,
             riesz: bool = True) -> FieldEstimate:
    r"""Echo estimate of ``dC_h/dθ``, ``dC_h/dq₀``, ``dC_h/dp₀`` for a :class:`glep.field_midpoint.MidpointFieldSystem`.

    Arguments:
        nudge: the β-derivative scheme (default ``Centred(1e-4)``; real β only).
        q0, p0: initial state (default: the system's).
        riesz: also compute the Riesz representatives of the parameter-field gradients.

    Returns:
        an :class:`NLSEstimate` (a :class:`glep.estimators.field_estimators.FieldEstimate` with ``field0``,
        the gradient with respect to the initial field ``u₀``).
    """
    start = time.perf_counter()
    check_midpoint_system(system, "nls_echo")
    nudge = nudge or Centred(1e-4)
    if not isinstance(nudge, Nudge):
        raise InputError(f"nudge must be a glep Nudge (Centred, OneSided), got {type(nudge).__name__}")
    if any(isinstance(b, complex) for b in nudge.betas):
        raise InputError("the NLS echo takes a real β (Centred or OneSided nudge, not ComplexStep)")
    if not _reversible(system):
        raise InputError("the echo needs a reversal with velocity signs opposite to the position signs "
                         "(ℒ(σφ, −σφ_t) = ℒ(φ, φ_t)); this density's reversal is not of that form")
    if q0 is None or p0 is None:
        qi, pi = system.initial_state()
        q0 = qi if q0 is None else q0
        p0 = pi if p0 is None else p0
    free = fs.midpoint_forward(system, T, N, q0=q0, p0=p0, theta_integral=nudge.needs_free)
    gT = system.terminal_gradient(free.q, T)
    values, iterations = {}, free.assemblies
    for b in nudge.betas:
        pas = fs.midpoint_echo(system, free.q, free.p - b * gT, T, N, beta=b, theta_integral=True)
        values[b] = (pas.theta_integral, pas.q, pas.p)
        iterations += pas.assemblies
    dI, dq, dp = nudge.combine(values, (free.theta_integral, np.asarray(q0, float), np.asarray(p0, float)))
    theta = system.labelled_gradients(dI, riesz)
    gq0, gp0 = -dp, dq
    gq0[system.bc_dofs] = 0.0
    gp0[system.bc_dofs] = 0.0
    est = NLSEstimate("NLS echo", theta, gq0, gp0, free.loss, 1 + len(nudge.betas), iterations,
                        time.perf_counter() - start, nudge.label, peak_vectors=8,
                        notes=["exact (conjugation-reversible density): forward passes only; "
                               "assemblies = Newton iterations"])
    est.field0 = initial_field_gradient(system, np.asarray(q0, float), gq0, gp0)
    return est


__all__ = ["NLSEstimate", "nls_echo"]
