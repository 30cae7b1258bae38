r"""Discrete adjoint of the finite-element boundary-value problem (the ground truth).

The discrete trajectory solves ``F_r(r, θ) = Qᵀ(∂A/∂q + b)(P r + g) = 0`` and
the discrete loss is ``C_h = ∫ c(q_h, t) dt (+ c_T(q_h(T)))`` with the
action's quadrature (trapezoid weights for P1 + Gauss–Lobatto).  With
``J_r = ∂F_r/∂r`` and the adjoint solve

    J_rᵀ λ_r = ∂C_h/∂r = Pᵀ ∂C_h/∂q,

the gradient is ``dC_h/dθ = ∂C_h/∂θ − λ_rᵀ ∂F_r/∂θ = −∂_θ F(q_h; Q λ_r)``
(the cost does not depend on ``θ``).  ``∂_θ F(q_h; λ)`` is assembled from
the UFL derivative of ``∂_θ L`` (finite-element path) or from
``theta_vjp`` of the discrete Lagrangian (vectorised path).  A momentum
fixed through a velocity, ``p₀ = ∂_v L(q₀, v₀, θ)``, adds its own
``θ``-dependence at the end where it enters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from petsc4py import PETSc

from glep.boundary import CFVP, CIVP
from glep.bvp.reduced import ReducedProblem, _vec
from glep.bvp.solvers import configure_lu
from glep.errors import InputError
from glep.terms import add_into


@dataclass
class FEAdjointResult:
    """``dC_h/dθ`` per parameter, the loss ``C_h`` and the full adjoint vector ``λ``."""

    theta: dict
    loss: float
    lam: PETSc.Vec


def discrete_loss(problem: ReducedProblem) -> float:
    """``C_h`` of the current trajectory (integral cost plus terminal cost)."""
    disc = problem.disc
    loss = disc.cost()
    tc = disc.system.terminal_cost
    if tc is not None:
        qT = problem.end_positions()["T"]
        loss += float(tc.cost(qT[None])[0])
    return loss


def adjoint_gradient(problem: ReducedProblem) -> FEAdjointResult:
    r"""Discrete-adjoint gradient of ``C_h`` at the problem's current (solved) trajectory."""
    disc = problem.disc
    comm = problem.comm
    gfull = disc.u.x.petsc_vec.duplicate()
    disc.cost_gradient(gfull)
    tc = disc.system.terminal_cost
    if tc is not None:
        dofs = problem.end_dofs["T"]
        if dofs.size:
            q = disc.u.x.petsc_vec.array_r[dofs[: problem.n]]
            gfull.array[dofs[: problem.n]] += tc.gradient(q[None])[0]
    gr = problem.create_vec()
    problem.P.multTranspose(gfull, gr)
    J = problem.jacobian()
    ksp = PETSc.KSP().create(comm)
    ksp.setOperators(J)
    configure_lu(ksp, comm)
    lam_r = problem.create_vec()
    ksp.solveTranspose(gr, lam_r)
    if ksp.getConvergedReason() < 0:
        raise InputError(f"adjoint solve failed (reason {ksp.getConvergedReason()}): singular Jacobian?")
    lam = disc.u.x.petsc_vec.duplicate()
    problem.Q.mult(lam_r, lam)
    grad = {k: -v for k, v in disc.theta_vjp(lam).items()}
    _momentum_theta_terms(problem, lam, grad)
    ksp.destroy()
    J.destroy()
    return FEAdjointResult(grad, discrete_loss(problem), lam)


def _momentum_theta_terms(problem: ReducedProblem, lam: PETSc.Vec, grad: dict) -> None:
    """``θ``-dependence of a momentum given through a velocity (``p = ∂_v L(q, v, θ)``)."""
    bc = problem.bc
    sysm, theta, n = problem.disc.system, problem.disc.theta, problem.n
    if isinstance(bc, CIVP) and bc.data.v is not None:
        end, t, sign, data = "0", problem.t0, -1.0, bc.data  # F_0 += p0(θ)  ->  −∂_θ(p0·λ0)
    elif isinstance(bc, CFVP) and bc.data.v is not None:
        end, t, sign, data = "T", problem.T, 1.0, bc.data  # F_N −= pT(θ)  ->  +∂_θ(pT·λN)
    else:
        return
    lam_end = problem._end_values(lam, end)
    q, v = _vec(data.q, n, "position"), _vec(data.v, n, "velocity")
    for k, g in sysm.theta_vjp(q[None], v[None], theta, sysm.inputs_at(t), t, None, lam_end[None]).items():
        add_into(grad, k, sign * np.asarray(g))
