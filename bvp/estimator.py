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

from glep.boundary import CBVP, BoundaryCondition, DirichletNatural, Periodic, Robin
from glep.bvp.adjoint import adjoint_gradient
from glep.bvp.api import make_discretisation, solve_problem
from glep.bvp.problem import ReducedProblem
from glep.errors import InputError
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


def contrast_values(problem: ReducedProblem, sol0, betas, **solver_kw) -> dict[float, dict[str, np.ndarray]]:
    """``I(β)`` for each ``β`` (each nudged solve warm-started from the free solution)."""
    disc = problem.disc
    out = {}
    for b in betas:
        disc.set_beta(b)
        solve_problem(problem, sol0, **solver_kw)
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


__all__ = ["cbvp_gradient", "fe_adjoint_gradient", "contrast_values", "RESIDUAL_FREE"]
