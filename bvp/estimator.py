r"""GLEP contrast estimators on the finite-element backend.

For a residual-free boundary condition (CBVP, periodic, Dirichlet–natural,
symmetric Robin) the GLEP identity (THEORY.md §2) has no boundary term, so

    dC/dθ = d/dβ|₀ I(β),     I(β) = ∫₀ᵀ ∂_θ L(s^β, ṡ^β, θ, t) dt,

where ``s^β`` is the whole-trajectory solution of the nudged problem.  On the
finite-element mesh ``I(β)`` is assembled with the action's own quadrature,
so the identity holds exactly for the *discrete* loss ``C_h`` and the
estimator converges to the discrete adjoint gradient of
:func:`glep.bvp.adjoint.adjoint_gradient` with bias ``O(β)`` (one-sided
``(I(β) − I(0))/β``) or ``O(β²)`` (centred ``(I(β) − I(−β))/2β``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from petsc4py import PETSc

from glep.boundary import CBVP, BoundaryCondition, DirichletNatural, Periodic, Robin
from glep.bvp.adjoint import adjoint_gradient
from glep.bvp.api import make_discretisation, solve_problem
from glep.bvp.problem import ReducedProblem
from glep.bvp.solvers import collective, configure_lu
from glep.errors import InputError, SolverError
from glep.system import LagrangianSystem
from glep.validation import check_beta

RESIDUAL_FREE = (CBVP, Periodic, DirichletNatural, Robin)


def _solved_problem(system, params, mesh, bc, *, degree, quadrature, assembler, guess, solver_kw):
    if not isinstance(bc, RESIDUAL_FREE):
        raise InputError(f"the FE contrast estimator needs a residual-free boundary condition "
                         f"(CBVP, Periodic, DirichletNatural, Robin), got {type(bc).__name__}")
    disc = make_discretisation(system, params, mesh, assembler=assembler, degree=degree, quadrature=quadrature)
    problem = ReducedProblem(disc, bc)
    sol0 = solve_problem(problem, guess, **solver_kw)
    return problem, sol0


def beta_tangent(problem: ReducedProblem, r0: PETSc.Vec) -> PETSc.Vec:
    r"""``∂r/∂β`` at the free solution ``r0``: ``J_r ṙ = −Qᵀ ∇C_h`` (one linear solve).

    The nudged residual is ``F_β = F_0 + β Qᵀ∇C_h``, so ``r0 + β ṙ`` is
    an ``O(β²)``-accurate first guess of the nudged solution: Newton then
    needs one or two iterations, and does not wander off to another
    stationary point from a saddle of high Morse index at larger ``β``.
    The factorisation kept by the last Newton solve is reused when present.
    """
    disc, comm = problem.disc, problem.comm

    def solve():
        problem.lift(r0)
        g = disc.u.x.petsc_vec.duplicate()
        disc.cost_gradient(g)
        rhs = problem.create_vec()
        problem.Q.multTranspose(g, rhs)
        cache = getattr(problem, "_newton_cache", None)
        if cache is not None:
            J, ksp, own = cache["J"], cache["snes"].getKSP(), False
            problem.jacobian(r0, J)
        else:
            J, own = problem.jacobian(r0), True
            ksp = PETSc.KSP().create(comm)
            ksp.setOperators(J)
            configure_lu(ksp, comm)
        tangent = problem.create_vec()
        ksp.solve(rhs, tangent)
        reason = ksp.getConvergedReason()
        if own:
            ksp.destroy()
            J.destroy()
        if reason < 0:
            raise SolverError("the β-tangent solve failed (singular Jacobian at the free solution?)",
                              reason=str(reason), history=[])
        tangent.scale(-1.0)
        return tangent

    return collective(comm, solve)


def contrast_values(problem: ReducedProblem, sol0, betas, **solver_kw) -> dict[float, dict[str, np.ndarray]]:
    """``I(β)`` for each ``β``; each nudged solve starts from the tangent prediction ``r0 + β ∂r/∂β``."""
    disc = problem.disc
    out = {}
    disc.set_beta(0.0)
    tangent = beta_tangent(problem, sol0.r)
    for b in betas:
        disc.set_beta(b)
        guess = sol0.r.copy()
        guess.axpy(b, tangent)
        solve_problem(problem, guess, **solver_kw)
        out[b] = disc.theta_gradient()
    disc.set_beta(0.0)
    solve_problem(problem, sol0, **solver_kw)
    return out


def cbvp_gradient(system: LagrangianSystem, params: Mapping[str, np.ndarray], mesh, bc: BoundaryCondition,
                  beta: float = 1e-4, *, scheme: str = "centred", degree: int = 1, quadrature: str = "gll",
                  assembler: str = "fe", guess=None, **solver_kw) -> dict[str, np.ndarray]:
    r"""GLEP contrast estimate of ``dC_h/dθ`` from nudged whole-trajectory solves.

    Parameters
    ----------
    system, params:
        The system (with its cost) and the parameter point.
    mesh:
        A dolfinx interval mesh or ``(T, N)``.
    bc:
        A residual-free boundary condition (usually :class:`glep.CBVP`).
    beta:
        Nudging strength.
    scheme:
        ``"centred"``: ``(I(β) − I(−β))/2β`` (bias ``O(β²)``);
        ``"one-sided"``: ``(I(β) − I(0))/β`` (bias ``O(β)``).

    Returns
    -------
    dict
        Parameter name -> gradient array (same shapes as ``params``).
    """
    beta = float(np.real(check_beta(beta)))
    problem, sol0 = _solved_problem(system, params, mesh, bc, degree=degree, quadrature=quadrature,
                                    assembler=assembler, guess=guess, solver_kw=solver_kw)
    if scheme == "centred":
        vals = contrast_values(problem, sol0, [beta, -beta], **solver_kw)
        return {k: (vals[beta][k] - vals[-beta][k]) / (2.0 * beta) for k in vals[beta]}
    if scheme in ("one-sided", "forward"):
        I0 = problem.disc.theta_gradient()
        vals = contrast_values(problem, sol0, [beta], **solver_kw)
        return {k: (vals[beta][k] - I0[k]) / beta for k in I0}
    raise InputError(f"scheme must be 'centred' or 'one-sided', got {scheme!r}")


def fe_adjoint_gradient(system: LagrangianSystem, params: Mapping[str, np.ndarray], mesh, bc: BoundaryCondition,
                        *, degree: int = 1, quadrature: str = "gll", assembler: str = "fe", guess=None,
                        **solver_kw) -> tuple[dict[str, np.ndarray], float]:
    """Ground truth: ``(dC_h/dθ, C_h)`` from the discrete adjoint of the same FE system."""
    disc = make_discretisation(system, params, mesh, assembler=assembler, degree=degree, quadrature=quadrature)
    problem = ReducedProblem(disc, bc)
    solve_problem(problem, guess, **solver_kw)
    res = adjoint_gradient(problem)
    return res.theta, res.loss


__all__ = ["cbvp_gradient", "fe_adjoint_gradient", "contrast_values", "beta_tangent", "RESIDUAL_FREE"]
