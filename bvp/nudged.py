r"""Nudged whole-trajectory solves: what the finite-element backend gives a GLEP estimator.

For a residual-free boundary condition (``BoundaryCondition.residual`` is
``"none"``: CBVP, periodic, Dirichlet–natural, symmetric Robin) the GLEP identity
(THEORY.md §2) has no boundary term, so

    dC_h/dθ = d/dβ|₀ I(β),     I(β) = ∫₀ᵀ ∂_θ L(s^β, ṡ^β, θ, t) dt,

where ``s^β`` is the whole-trajectory solution of the nudged problem
``δA_β = 0``, ``A_β = ∫(L + βc) dt``.  This module provides ``I(β)``
(:func:`contrast_values`), each nudged problem on its own assembler
(:func:`nudged_problem`: the free problem is never modified) and the
first-order predictor of the nudged solution (:func:`beta_tangent`).  The
estimators that combine them live in :mod:`glep.estimators.cbvp`.
"""

from __future__ import annotations

import numpy as np
from petsc4py import PETSc

from glep.boundary import BoundaryCondition
from glep.bvp.reduced import ReducedProblem
from glep.bvp.solve import solve_problem
from glep.bvp.solvers import configure_lu
from glep.errors import InputError, SolverError
from glep.parallel import agree
from glep.trajectory import Trajectory


def residual_free(bc: BoundaryCondition) -> None:
    """Raise :class:`InputError` unless ``bc`` leaves no GLEP boundary residual (``bc.residual == "none"``)."""
    if bc.residual != "none":
        raise InputError(f"the FE contrast estimator needs a residual-free boundary condition (CBVP, Periodic, "
                         f"DirichletNatural, Robin), got {type(bc).__name__} (boundary residual {bc.residual!r})")


def _assembler_at(disc, beta: float):
    """A new assembler like ``disc`` (same system, θ, mesh and discretisation) at nudging ``β``."""
    from glep.bvp.fe import FEAction
    from glep.bvp.galerkin import GalerkinAction
    from glep.bvp.vectorised import VectorisedAction

    if isinstance(disc, FEAction):
        return FEAction(disc.system, disc.theta, disc.mesh, degree=disc.degree, quadrature=disc.quadrature,
                        quadrature_degree=disc.metadata["quadrature_degree"], beta=beta,
                        jit_options=disc.jit_options)
    if isinstance(disc, VectorisedAction):
        return VectorisedAction(disc.system, disc.theta, disc.mesh, beta=beta, chunk=disc.chunk)
    if isinstance(disc, GalerkinAction):
        return GalerkinAction(disc.system, disc.theta, disc.mesh, degree=disc.degree, quadrature=disc.quadrature,
                              quadrature_degree=disc.metadata["quadrature_degree"], beta=beta)
    raise InputError(f"cannot build a nudged copy of the assembler {type(disc).__name__}")


def nudged_problem(problem: ReducedProblem, beta: float) -> ReducedProblem:
    r"""The same boundary-value problem at nudging ``β`` (``A_β = ∫(L + βc)``), on its own assembler.

    Same mesh, boundary condition and reduced numbering as ``problem``, so a
    reduced vector of one is a reduced vector of the other; ``problem`` (its
    β, its trajectory, its kept factorisation) is left as it was.
    """
    return ReducedProblem(_assembler_at(problem.disc, float(np.real(beta))), problem.bc)


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
        cache = problem._newton_cache
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

    return agree(solve, comm, what="the β-tangent solve")


def contrast_values(problem: ReducedProblem, sol0: Trajectory, betas, **solver_kw) -> dict[float, dict]:
    r"""``I(β) = ∫∂_θL`` along the nudged solution, for each ``β`` of ``betas``.

    Arguments: ``problem`` the free (β = 0) residual-free problem and
    ``sol0`` its solution; ``solver_kw`` for :func:`~glep.bvp.solve.solve_problem`.
    The nudged solves share one assembler of their own (:func:`nudged_problem`,
    its β set per solve, its Jacobian and symbolic factorisation kept between
    them) and start from the tangent prediction ``r0 + β ∂r/∂β``; ``problem``
    is left at its free solution.  Returns ``{β: {parameter: I(β)}}``.
    """
    residual_free(problem.bc)
    if problem.disc.beta != 0.0:
        raise InputError(f"contrast_values needs the free problem (β = 0), got one at β = {problem.disc.beta:g}")
    tangent = beta_tangent(problem, sol0.fe.r)
    nudged = nudged_problem(problem, 0.0)
    out = {}
    try:
        for b in betas:
            nudged.disc.set_beta(float(np.real(b)))
            guess = sol0.fe.r.copy()
            guess.axpy(float(np.real(b)), tangent)
            try:
                solve_problem(nudged, guess, **solver_kw)
            finally:
                guess.destroy()
            out[b] = nudged.disc.theta_gradient()
    finally:
        nudged.release_solver()
        tangent.destroy()
    return out


__all__ = ["contrast_values", "beta_tangent", "nudged_problem", "residual_free"]
