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
from collections.abc import Callable

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


class NewtonProgress:
    """A PETSc SNES monitor that reports Newton progress at most every ``every`` seconds.

    Passed as ``monitor`` to :func:`glep.bvp.solvers.newton`, it is called
    with ``(snes, iteration, residual norm)`` after every Newton iteration of
    every solve of one estimate; it calls ``progress`` with the solve count,
    the iteration, ``‖F‖`` and the elapsed time when ``every`` seconds have
    passed since its last message (so quick solves print nothing).
    """

    def __init__(self, progress: Callable[[str], None], what: str, every: float = 2.0):
        self.progress, self.what, self.every = progress, what, every
        self.start = self.last = time.monotonic()
        self.solves = 0

    def __call__(self, snes, its: int, fnorm: float) -> None:
        if its == 0:
            self.solves += 1
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.progress(f"{self.what}: Newton solve {self.solves}, iteration {its}, residual {fnorm:.3e} "
                          f"({now - self.start:.0f} s)")


def _monitor(progress: Callable[[str], None] | None, what: str) -> dict:
    """``solver_kw`` carrying a :class:`NewtonProgress` monitor (empty without ``progress``)."""
    return {} if progress is None else {"monitor": NewtonProgress(progress, what)}


def cbvp_truth(problem: Problem, progress: Callable[[str], None] | None = None) -> GradientEstimate:
    """Discrete adjoint of the FE CBVP system (the CBVP row's ground truth).

    ``progress`` (a callable taking a message) receives the Newton progress of
    long solves (see :class:`NewtonProgress`).  A Morse index that cannot be
    determined (singular action Hessian) is stated in the notes; it does not
    fail the row, whose gradient does not depend on it.
    """
    from glep.bvp import fe_adjoint_gradient, solve_bvp
    from glep.errors import GlepError

    bc, mesh, guess = _setup(problem)
    t0 = time.perf_counter()
    grad, loss = fe_adjoint_gradient(problem.system, problem.params, mesh, bc, guess=guess,
                                     **_monitor(progress, "FE adjoint"))
    wall = time.perf_counter() - t0
    try:
        morse = solve_bvp(problem.system, problem.params, mesh, bc, guess=guess, morse=True,
                          **_monitor(progress, "Morse index")).morse_index
        index = f"Morse index {morse}"
    except GlepError as exc:
        index = "Morse index undetermined (" + " ".join(str(exc).split())[:80] + ")"
    return GradientEstimate("CBVP adjoint", grad, passes=2.0, wall_time=wall, loss=LOSS,
                            notes=[f"ground truth: FE discrete adjoint; C_h = {loss:.6g}; {index}"])


def cbvp(problem: Problem, nudge: Nudge | None = None,
         progress: Callable[[str], None] | None = None) -> GradientEstimate:
    """GLEP contrast on the CBVP: nudged whole-trajectory Newton solves (no residual).

    ``progress`` receives the Newton progress of long solves (see :class:`NewtonProgress`).
    """
    from glep.bvp import cbvp_gradient

    nudge = nudge or Centred(1e-4)
    if not isinstance(nudge, (Centred, OneSided)):
        raise InputError(f"the finite-element backend nudges with real β only; {nudge.label} is not supported")
    bc, mesh, guess = _setup(problem)
    scheme = "centred" if isinstance(nudge, Centred) else "one-sided"
    t0 = time.perf_counter()
    grad = cbvp_gradient(problem.system, problem.params, mesh, bc, nudge.beta, scheme=scheme, guess=guess,
                         **_monitor(progress, f"{scheme} β = {nudge.beta:g}"))
    grad = {k: np.asarray(grad.get(k, np.zeros(s)), dtype=float) for k, s in problem.system.parameters.items()}
    return GradientEstimate("CBVP", grad, passes=1 + len(nudge.betas), wall_time=time.perf_counter() - t0,
                            nudge=nudge.label, beta=nudge.beta, loss=LOSS,
                            notes=["exact (residual-free): FE whole-trajectory solves, passes = Newton solves"])
