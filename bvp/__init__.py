r"""Finite-element backend: whole trajectories on a time mesh, solved at once with PETSc.

The trajectory ``q_h`` is a vector Lagrange function on a dolfinx interval
mesh (time = ``x``); the augmented action ``A_β = ∫ L_β dt`` is assembled
from the system's UFL definition (:class:`FEAction`) or, for many
components per node, from the NumPy discrete Lagrangian
(:class:`VectorisedAction`).  Every boundary condition of
:mod:`glep.boundary` is a restriction of the whole-trajectory system
(:class:`ReducedProblem`); :func:`solve_bvp` solves it with SNES Newton,
trust-region residual descent, action-gradient flow (TS pseudo-transient) or
deflation (:func:`find_solutions` enumerates solutions from one guess);
:func:`morse_index` counts negative Hessian eigenvalues and
:func:`hessian_report` says how far the Hessian is from singular;
:func:`adjoint_gradient` is the discrete adjoint and :func:`contrast_values`
gives ``∫∂_θL`` along nudged solutions (the GLEP estimators built on them are in
:mod:`glep.estimators.cbvp`); :mod:`glep.bvp.continuation` follows branches and
locates folds.  Solvers are objects (``solve_bvp(..., solver=Newton(rtol=1e-12,
options={"snes_monitor": None}))``, :mod:`glep.bvp.solvers`); PETSc options are given per solve and set
under the problem's own prefix; a script that wants ``-glep_*`` options from its command line calls
:func:`use_command_line_options`.  Field equations on ``(d+1)``-dimensional space–time meshes are in
:mod:`glep.bvp.spacetime` (problems, Newton, Morse indices), :mod:`glep.bvp.spacetime_gradients` (FE
adjoint, contrasts) and :mod:`glep.bvp.spacetime_krylov` (MINRES for 2+1-D).
"""

import dolfinx_solver  # noqa: F401  isort: skip  (configures PETSc before dolfinx/petsc4py load)

from glep.bvp.adjoint import FEAdjointResult, adjoint_gradient, discrete_loss
from glep.bvp.continuation import Continuation, functional_continuation, locate_fold, natural_continuation
from glep.bvp.deflation import deflated_newton, deflation_search, perturbed_starts
from glep.bvp.fe import FEAction, interpolate_signal, quadrature_metadata
from glep.bvp.galerkin import GalerkinAction
from glep.bvp.nudged import beta_tangent, contrast_values, nudged_problem, residual_free
from glep.bvp.reduced import ReducedProblem
from glep.bvp.solve import (
    FESolve,
    find_problem_solutions,
    find_solutions,
    gather_nodal,
    make_discretisation,
    set_guess,
    solve_bvp,
    solve_problem,
)
from glep.bvp.solvers import (
    Deflation,
    GradientFlow,
    HessianReport,
    Newton,
    ResidualDescent,
    TrustRegion,
    gradient_flow,
    hessian_report,
    inertia,
    morse_index,
    newton,
    residual_descent,
    set_default_petsc_options,
    use_command_line_options,
)
from glep.bvp.spacetime import (
    SpaceTimeCBVP,
    SpaceTimeCFVP,
    SpaceTimeCIVP,
    SpaceTimeMesh,
    SpaceTimePeriodic,
    SpaceTimeProblem,
    SpaceTimeSolution,
    spacetime_mesh,
    tracking_cost,
)
from glep.bvp.spacetime import solve as solve_spacetime
from glep.bvp.spacetime_gradients import SpaceTimeGradient, pfvp_contrast_gradient
from glep.bvp.spacetime_gradients import adjoint_gradient as spacetime_adjoint_gradient
from glep.bvp.spacetime_gradients import contrast_gradient as spacetime_contrast_gradient
from glep.bvp.spacetime_krylov import KrylovNewton
from glep.bvp.vectorised import VectorisedAction

__all__ = [
    "solve_bvp", "solve_problem", "find_solutions", "find_problem_solutions",
    "FESolve", "make_discretisation", "set_guess", "gather_nodal",
    "FEAction", "VectorisedAction", "GalerkinAction", "ReducedProblem", "interpolate_signal", "quadrature_metadata",
    "newton", "residual_descent", "gradient_flow", "deflated_newton", "deflation_search", "perturbed_starts",
    "morse_index", "hessian_report", "HessianReport", "inertia",
    "adjoint_gradient", "discrete_loss", "FEAdjointResult",
    "contrast_values", "beta_tangent", "nudged_problem", "residual_free",
    "natural_continuation", "functional_continuation", "locate_fold",
    "Newton", "TrustRegion", "ResidualDescent", "GradientFlow", "Deflation", "Continuation",
    "set_default_petsc_options", "use_command_line_options",
    "spacetime_mesh", "SpaceTimeMesh", "SpaceTimeProblem", "SpaceTimeSolution", "SpaceTimeCBVP", "SpaceTimeCIVP",
    "SpaceTimeCFVP", "SpaceTimePeriodic", "solve_spacetime", "tracking_cost", "KrylovNewton", "SpaceTimeGradient",
    "spacetime_adjoint_gradient", "spacetime_contrast_gradient", "pfvp_contrast_gradient",
]
