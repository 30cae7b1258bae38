r"""The CBVP row of a comparison: a different boundary condition, a different loss.

A CBVP pins both ends of the trajectory: here ``q(0)`` of the free CIVP and
``q(T)`` of its free final state, so that at β = 0 the CBVP solution *is* the
free trajectory (found by Newton from it).  Its loss ``C_h`` has the same
value, but a different gradient: ``q(T)`` is held fixed when θ changes.  The
estimator is the residual-free GLEP contrast on nudged whole-trajectory solves
of the finite-element backend; its ground truth is the discrete adjoint of the
same finite-element system.
"""

from __future__ import annotations

import time

import numpy as np

from glep.boundary import CBVP
from glep.errors import InputError
from glep.estimators.nudging import Centred, Nudge, OneSided
from glep.estimators.problem import Problem
from glep.estimators.result import GradientEstimate

LOSS = "C_h of the CBVP trajectory (q(0), q(T) pinned; FE P1 + Gauss–Lobatto)"


def _setup(problem: Problem):
    if problem.final_value:
        raise InputError("the CBVP row pins the ends of a free CIVP trajectory; this problem is a CFVP")
    free = problem.free
    if free.Q.shape[1] != 1:
        raise InputError("the finite-element backend solves one trajectory at a time: CBVP needs an "
                         f"unbatched problem (batch {free.Q.shape[1]})")
    bc = CBVP(free.q0[0], free.Q[-1][0])
    mesh = (problem.grid.T, problem.grid.N)
    return bc, mesh, free.Q[:, 0, :]


def cbvp_truth(problem: Problem) -> GradientEstimate:
    """Discrete adjoint of the FE CBVP system (the CBVP row's ground truth)."""
    from glep.bvp import fe_adjoint_gradient, solve_bvp

    bc, mesh, guess = _setup(problem)
    t0 = time.perf_counter()
    grad, loss = fe_adjoint_gradient(problem.system, problem.params, mesh, bc, guess=guess)
    wall = time.perf_counter() - t0
    morse = solve_bvp(problem.system, problem.params, mesh, bc, guess=guess, morse=True).morse_index
    return GradientEstimate("CBVP adjoint", grad, passes=2.0, wall_time=wall, loss=LOSS,
                            notes=[f"ground truth: FE discrete adjoint; C_h = {loss:.6g}; Morse index {morse}"])


def cbvp(problem: Problem, nudge: Nudge | None = None) -> GradientEstimate:
    """GLEP contrast on the CBVP: nudged whole-trajectory Newton solves (no residual)."""
    from glep.bvp import cbvp_gradient

    nudge = nudge or Centred(1e-4)
    if not isinstance(nudge, (Centred, OneSided)):
        raise InputError(f"the finite-element backend nudges with real β only; {nudge.label} is not supported")
    bc, mesh, guess = _setup(problem)
    scheme = "centred" if isinstance(nudge, Centred) else "one-sided"
    t0 = time.perf_counter()
    grad = cbvp_gradient(problem.system, problem.params, mesh, bc, nudge.beta, scheme=scheme, guess=guess)
    grad = {k: np.asarray(grad.get(k, np.zeros(s)), dtype=float) for k, s in problem.system.parameters.items()}
    return GradientEstimate("CBVP", grad, passes=1 + len(nudge.betas), wall_time=time.perf_counter() - t0,
                            nudge=nudge.label, beta=nudge.beta, loss=LOSS,
                            notes=["exact (residual-free): FE whole-trajectory solves, passes = Newton solves"])
