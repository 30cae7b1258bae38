r"""Gradients on space–time solutions: the FE discrete adjoint (ground truth) and the GLEP contrasts.

The discrete field trajectory solves ``F_r(r, θ) = Qᵀ(∂A/∂φ + b)(P r + g) = 0`` and the discrete loss is
``C_h = ∫∫ c(φ_h) dx dt + ∫_Ω c_T(φ_h(T)) dx`` with the action's quadrature.  With the adjoint solve

    J_rᵀ λ_r = Pᵀ ∂C_h/∂φ,      λ = Q λ_r,

the gradient is ``dC_h/dθ = ∂C_h/∂θ − λᵀ ∂F/∂θ = −∂_θ F(φ_h; λ)`` (the cost does not read ``θ``, and
``g``, ``b`` do not depend on ``θ``).  For a parameter field ``θ(x)`` the derivative is taken with respect
to its spatial dof values: the space–time dual vector on the extension ``θ_st = E θ`` pulled back by
``Eᵀ`` (:class:`glep.bvp.spacetime.SpaceTimeProblem`); it is returned both as that dual vector and as its
``L²(Ω)`` Riesz representative ``M_x⁻¹ g`` (the function whose ``L²`` inner product with ``δθ`` is
``dC_h·δθ``).

**Contrasts.**  For residual-free conditions (CBVP with θ-independent ends, periodic) the GLEP identity
(docs/theory.md §2) holds exactly for ``C_h``:

    dC_h/dθ = d/dβ|₀ I(β),     I(β) = ∫∫ ∂_θℒ(φ^β) dx dt,

with ``φ^β`` the space–time solution of ``δA_β = 0`` under the same condition; the centred difference
``(I(β) − I(−β))/2β`` has bias ``O(β²)`` (:func:`contrast_gradient`).  For the PFVP (final state
``(φ(T), p(T))`` of the free CIVP held, nudged trajectories obtained backwards from it) the identity is
again residual-free, with the CIVP's loss and gradient (:func:`pfvp_contrast_gradient`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from petsc4py import PETSc

from glep.bvp.solvers import Newton
from glep.bvp.spacetime import SpaceTimeProblem, SpaceTimeSolution, solve
from glep.errors import InputError, SolverError


@dataclass(frozen=True)
class SpaceTimeGradient:
    """A gradient of ``C_h`` with respect to the parameters of a space–time problem.

    Attributes:
        dual: name -> ``dC_h/dθ``: a 0-d array for a scalar, the dual vector ``(∂C_h/∂θ_i)_i`` over the spatial
            dofs of a field (ordered like ``problem.field_coordinates(name)``).
        riesz: the same with each field replaced by its ``L²(Ω)`` Riesz representative ``M_x⁻¹ dual``.
        loss: ``C_h`` at the free solution.
        method: ``"FE discrete adjoint"`` or the contrast's description.
    """

    dual: dict
    riesz: dict
    loss: float
    method: str

    def flat(self) -> np.ndarray:
        """Every dual entry in one vector (names sorted) for comparisons."""
        return np.concatenate([np.ravel(self.dual[k]) for k in sorted(self.dual)])


def _with_riesz(problem: SpaceTimeProblem, dual: dict, loss: float, method: str) -> SpaceTimeGradient:
    riesz = {k: (problem.fields[k].riesz(v) if k in problem.fields else v) for k, v in dual.items()}
    return SpaceTimeGradient(dual, riesz, loss, method)


def adjoint_gradient(problem: SpaceTimeProblem, solution: SpaceTimeSolution | None = None, *,
                     nudged: bool = False) -> SpaceTimeGradient:
    r"""``dC_h/dθ`` by the discrete adjoint at the free (``β = 0``) solution held in ``problem.u``.

    Arguments:
        problem: a solved :class:`SpaceTimeProblem` with a cost.
        solution: if given, its ``φ_h`` is restored first (after nudged solves).
        nudged: allow ``β ≠ 0``: then the result is ``d_θ C_h(φ^β)``, the gradient of the loss of the *nudged*
            solution (the Jacobian of ``A_β`` in the adjoint solve), as the finite-β objective needs
            (:class:`glep.estimators.finite_fields.SpaceTimeFamily`).

    Raises:
        glep.InputError: no cost, or ``β ≠ 0`` without ``nudged=True``.
        glep.SolverError: the adjoint solve failed (singular Jacobian).
    """
    if not problem.has_cost:
        raise InputError("the adjoint gradient needs a cost: pass cost= or terminal_cost= to the problem")
    if problem.beta != 0.0 and not nudged:
        raise InputError(f"the adjoint gradient is taken at the free solution (beta = 0), got beta = {problem.beta} "
                         "(pass nudged=True for the gradient of the nudged solution's loss)")
    if solution is not None:
        problem.lift(solution.r)
    gfull = problem.u.x.petsc_vec.duplicate()
    problem._assemble_vector("cost_gradient", gfull)
    gr = problem.create_vec()
    problem.P.multTranspose(gfull, gr)
    J = problem.jacobian()
    ksp = PETSc.KSP().create(problem.comm)
    lam_r, lam = problem.create_vec(), gfull.duplicate()
    try:
        ksp.setOperators(J)
        ksp.setType("preonly")
        ksp.getPC().setType("lu")
        ksp.getPC().setFactorSolverType("mumps")
        ksp.solveTranspose(gr, lam_r)
        if ksp.getConvergedReason() < 0:
            raise SolverError("the adjoint solve J_rᵀ λ = ∂C_h/∂r failed: the space-time Jacobian is singular "
                              "(resonance?)", reason=ksp.getConvergedReason())
        problem.Q.mult(lam_r, lam)
        dual = {k: -np.asarray(v) for k, v in problem.theta_vjp(lam).items()}
        loss = problem.loss()
    finally:
        for obj in (ksp, J, gfull, gr, lam_r, lam):
            obj.destroy()
    return _with_riesz(problem, dual, loss, "FE discrete adjoint")


def _check_beta(beta: float) -> float:
    if not (isinstance(beta, (int, float, np.floating)) and np.isfinite(beta) and beta > 0):
        raise InputError(f"beta must be a finite number > 0 (the centred nudge ±beta), got {beta!r}")
    return float(beta)


def contrast_gradient(problem: SpaceTimeProblem, solution: SpaceTimeSolution, beta: float = 1e-4, *,
                      solver: Newton | None = None) -> SpaceTimeGradient:
    r"""The centred GLEP contrast ``(I(β) − I(−β))/2β`` of a residual-free space–time problem (CBVP, periodic).

    Each nudged problem ``δA_{±β} = 0`` is solved by Newton from the free solution; the problem is left at
    ``β = 0`` holding the free solution.
    """
    beta = _check_beta(beta)
    if problem.condition.label not in ("CBVP", "Periodic"):
        raise InputError(f"the contrast alone is exact for residual-free conditions (CBVP, periodic); "
                         f"{problem.condition.label} leaves a boundary residual (use pfvp_contrast_gradient)")
    if not problem.has_cost:
        raise InputError("the contrast needs a cost: pass cost= or terminal_cost= to the problem")
    values = []
    try:
        for b in (beta, -beta):
            problem.set_beta(b)
            solve(problem, solution, solver=solver, check_singular=False)
            values.append(problem.theta_gradient())
    finally:
        problem.set_beta(0.0)
        problem.lift(solution.r)
    dual = {k: (values[0][k] - values[1][k]) / (2 * beta) for k in values[0]}
    return _with_riesz(problem, dual, problem.loss(), f"CBVP contrast, centred β = {beta:g}")


def pfvp_contrast_gradient(civp: SpaceTimeProblem, solution: SpaceTimeSolution, beta: float = 1e-4, *,
                           solver: Newton | None = None) -> SpaceTimeGradient:
    r"""The PFVP contrast: nudged final-value problems through the free CIVP's ``(φ(T), p(T))``, centred in β.

    Its truth is the discrete adjoint of the free CIVP (:func:`adjoint_gradient` of ``civp``): the
    momentum data at ``t = 0`` are given as a momentum (θ-independent), so no residual remains.
    """
    beta = _check_beta(beta)
    if civp.condition.label != "CIVP":
        raise InputError(f"the PFVP contrast starts from a free CIVP, got {civp.condition.label}")
    civp.lift(solution.r)
    values = []
    for b in (beta, -beta):
        final = civp.final_value_problem(beta=b)
        try:
            solve(final, solution, solver=solver, check_singular=False)
            values.append(final.theta_gradient())
        finally:
            final.destroy()
    civp.lift(solution.r)
    dual = {k: (values[0][k] - values[1][k]) / (2 * beta) for k in values[0]}
    return _with_riesz(civp, dual, civp.loss(), f"PFVP contrast, centred β = {beta:g}")


__all__ = ["SpaceTimeGradient", "adjoint_gradient", "contrast_gradient", "pfvp_contrast_gradient"]
