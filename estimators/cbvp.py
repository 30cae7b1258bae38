r"""GLEP on the finite-element backend: the CBVP estimator and its ground truth.

A CBVP pins both ends of the trajectory: here ``q(0)`` of the free CIVP and
``q(T)`` of its free final state, so that at β = 0 the CBVP solution *is* the
free trajectory (found by Newton from it).  Its loss ``C_h`` has the same
value, but a different gradient: ``q(T)`` is held fixed when θ changes.

For any residual-free boundary condition (``BoundaryCondition.residual ==
"none"``) the GLEP identity has no boundary term,

    dC_h/dθ = d/dβ|₀ I(β),     I(β) = ∫₀ᵀ ∂_θ L(s^β, ṡ^β, θ, t) dt,

with ``s^β`` the nudged whole-trajectory solution; with the action's own
quadrature it holds exactly for the discrete loss ``C_h``, so the contrast
converges to the FE discrete adjoint with bias ``O(β)`` (one-sided) or
``O(β²)`` (centred).  The backend (:mod:`glep.bvp.nudged`) gives ``I(β)``;
this module combines it with a :class:`~glep.estimators.nudging.Nudge`.

The same machinery runs on another residual-free condition named in
:data:`BOUNDARIES`: ``"periodic"`` (``q(0) = q(T)``, ``p(0) = p(T)``;
:class:`PeriodicContrast` against :class:`PeriodicFEAdjoint`, which fails on
a singular action Hessian instead of differentiating a trajectory that is not
isolated).

The free FE problem is solved once per :class:`~glep.estimators.problem.Problem`
and discretisation (kept in ``problem.cache``) and shared by the estimate
(:class:`CBVP`) and its truth (:class:`FEAdjoint`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from glep.boundary import CBVP as CBVPCondition
from glep.boundary import BoundaryCondition, Periodic
from glep.errors import GlepError, InputError, SingularHessianError
from glep.estimators.base import AbstractEstimator, AbstractTruth, Progress
from glep.estimators.nudging import Centred, Nudge, OneSided, nudge_from_name
from glep.estimators.problem import Problem
from glep.estimators.result import GradientEstimate
from glep.system import LagrangianSystem
from glep.validation import check_beta

LOSS = "C_h of the CBVP trajectory (q(0), q(T) pinned; FE P1 + Gauss–Lobatto)"
PERIODIC_LOSS = "C_h of the periodic trajectory (q(0) = q(T), p(0) = p(T); FE P1 + Gauss–Lobatto)"


def _cbvp_setup(problem: Problem):
    """``(CBVP condition, guess)``: the ends ``q(0)``, ``q(T)`` of the free CIVP trajectory, which is the guess."""
    if problem.final_value:
        raise InputError("the CBVP row pins the ends of a free CIVP trajectory; this problem is a CFVP")
    free = problem.free
    if free.Q.shape[1] != 1:
        raise InputError("the finite-element backend solves one trajectory at a time: CBVP needs an "
                         f"unbatched problem (batch {free.Q.shape[1]})")
    return CBVPCondition(free.q0[0], free.Q[-1][0]), free.Q[:, 0, :]


def autonomous(system: LagrangianSystem) -> str | None:
    """Why ``system``'s periodic trajectories are not isolated (no term reads an input signal or ``t``), or None.

    An autonomous system's periodic orbits come in time-shift families, so the periodic problem's action
    Hessian is singular (and from the zero start Newton finds only an equilibrium): the periodic row needs
    a driven system.
    """
    if any(t.inputs or t.explicit_time or getattr(t, "reads_time", False) for t in system.terms):
        return None
    return ("the system is autonomous (no term of its Lagrangian reads an input signal or t): its periodic "
            "trajectories come in time-shift families, so the periodic problem's action Hessian is singular")


def _periodic_setup(problem: Problem):
    """``(Periodic condition, None)``: with no pinned end, ``None`` is the zero trajectory (see :data:`BOUNDARIES`)."""
    batch = problem.system.batch
    if (batch or 1) != 1:
        raise InputError("the finite-element backend solves one trajectory at a time: the periodic row needs an "
                         f"unbatched problem (batch {batch})")
    reason = autonomous(problem.system)
    if reason:
        raise InputError(f"the periodic row needs a driven system: {reason}")
    return Periodic(), None


#: boundary-condition name -> ``problem -> (condition, Newton's initial guess)`` of the FE rows.  The CBVP
#: goes through the free CIVP trajectory's ends, which is then its solution at β = 0.  The periodic
#: trajectory (``q(0) = q(T)``, ``p(0) = p(T)``) starts from the zero trajectory: its first Newton step is
#: the periodic response of the system linearised about ``q = 0`` (the free CIVP trajectory is a good
#: start only if it is nearly periodic, which a driven system's seldom is).
BOUNDARIES: dict[str, Callable[[Problem], tuple]] = {"cbvp": _cbvp_setup, "periodic": _periodic_setup}


def _setup(problem: Problem, boundary: str = "cbvp"):
    """``(boundary condition, mesh (T, N), guess)`` of the FE row on ``boundary`` (a key of :data:`BOUNDARIES`)."""
    bc, guess = BOUNDARIES[boundary](problem)
    return bc, (problem.grid.T, problem.grid.N), guess


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


def _monitor(progress: Progress, what: str) -> dict:
    """``solver_kw`` carrying a :class:`NewtonProgress` monitor (empty without ``progress``)."""
    return {} if progress is None else {"monitor": NewtonProgress(progress, what)}


# -- the free FE problem, solved once ----------------------------------------------------------
@dataclass
class FreeFE:
    """A solved free (β = 0) FE boundary-value problem: the ``ReducedProblem``, its solution, the solve time."""

    problem: object
    solution: object
    wall_time: float


def solve_free(system: LagrangianSystem, params: Mapping[str, np.ndarray], mesh, bc: BoundaryCondition, *,
               degree: int = 1, quadrature: str = "gll", assembler: str = "fe", guess=None, **solver_kw) -> FreeFE:
    """Solve ``δA_0 = 0`` under ``bc`` on the FE mesh (``mesh``: a dolfinx interval mesh or ``(T, N)``)."""
    from glep.bvp import ReducedProblem, make_discretisation, solve_problem

    t0 = time.perf_counter()
    disc = make_discretisation(system, params, mesh, assembler=assembler, degree=degree, quadrature=quadrature)
    problem = ReducedProblem(disc, bc)
    sol0 = solve_problem(problem, guess, **solver_kw)
    return FreeFE(problem, sol0, time.perf_counter() - t0)


def _as_nudge(beta: Nudge | float, scheme: str | None) -> Nudge:
    """A :class:`Nudge` as given, or the one named ``scheme`` (default centred) at ``beta``."""
    if isinstance(beta, Nudge):
        if scheme is not None:
            raise InputError(f"give the nudge either as a Nudge or by scheme, not both (got {beta.label} "
                             f"and scheme={scheme!r})")
        return beta
    return nudge_from_name("centred" if scheme is None else scheme, float(np.real(check_beta(beta))))


def _real(nudge: Nudge) -> Nudge:
    """``nudge`` if the FE backend can use it (a real β: one-sided or centred); else :class:`InputError`."""
    if not isinstance(nudge, (Centred, OneSided)):
        raise InputError(f"the finite-element backend nudges with real β only; {nudge.label} is not supported")
    return nudge


def contrast_gradient(free: FreeFE, nudge: Nudge, **solver_kw) -> dict[str, np.ndarray]:
    r"""``d/dβ|₀ I(β)`` by the nudge's rule from nudged solves of the free problem ``free`` (real β only)."""
    from glep.bvp import contrast_values

    _real(nudge)
    I0 = free.problem.disc.theta_gradient() if nudge.needs_free else None
    values = contrast_values(free.problem, free.solution, nudge.betas, **solver_kw)
    return nudge.combine(values, I0)


def cbvp_gradient(system: LagrangianSystem, params: Mapping[str, np.ndarray], mesh, bc: BoundaryCondition,
                  beta: Nudge | float = 1e-4, *, scheme: str | None = None, degree: int = 1,
                  quadrature: str = "gll", assembler: str = "fe", guess=None, **solver_kw) -> dict[str, np.ndarray]:
    r"""GLEP contrast estimate of ``dC_h/dθ`` from nudged whole-trajectory solves.

    Arguments
    ---------
    system, params:
        The system (with its cost) and the parameter point.
    mesh:
        A dolfinx interval mesh or ``(T, N)``.
    bc:
        A residual-free boundary condition (usually :class:`glep.CBVP`).
    beta:
        A :class:`~glep.estimators.nudging.Centred` (``(I(β) − I(−β))/2β``,
        bias ``O(β²)``) or :class:`~glep.estimators.nudging.OneSided`
        (``(I(β) − I(0))/β``, bias ``O(β)``) nudge, or the nudging strength
        ``β`` of the nudge named ``scheme``.
    scheme:
        With a number ``beta``: a name of :data:`~glep.estimators.nudging.NUDGES`
        (``"centred"`` by default, or ``"one-sided"``).
    degree, quadrature, assembler, guess, solver_kw:
        The discretisation, the free solve's initial guess and the Newton options.

    Returns
    -------
    dict
        Parameter name -> gradient array (same shapes as ``params``).
    """
    from glep.bvp import residual_free

    residual_free(bc)  # before any work
    nudge = _real(_as_nudge(beta, scheme))
    free = solve_free(system, params, mesh, bc, degree=degree, quadrature=quadrature, assembler=assembler,
                      guess=guess, **solver_kw)
    return contrast_gradient(free, nudge, **solver_kw)


def fe_adjoint_gradient(system: LagrangianSystem, params: Mapping[str, np.ndarray], mesh, bc: BoundaryCondition,
                        *, degree: int = 1, quadrature: str = "gll", assembler: str = "fe", guess=None,
                        **solver_kw) -> tuple[dict[str, np.ndarray], float]:
    """Ground truth: ``(dC_h/dθ, C_h)`` from the discrete adjoint of the same FE system."""
    from glep.bvp import adjoint_gradient

    res = adjoint_gradient(solve_free(system, params, mesh, bc, degree=degree, quadrature=quadrature,
                                      assembler=assembler, guess=guess, **solver_kw).problem)
    return res.theta, res.loss


# -- strategy objects -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _FEOptions:
    """The discretisation of an FE row (assembler, element degree, quadrature) and its boundary condition.

    ``boundary`` names the condition in :data:`BOUNDARIES`; :meth:`mesh` is what the free problem is solved
    on (``(T, N)``: a mesh on ``COMM_WORLD``; a subclass may build it on another communicator).
    """

    assembler: str = "fe"
    degree: int = 1
    quadrature: str = "gll"
    boundary: ClassVar[str] = "cbvp"

    def mesh(self, T: float, N: int):
        """The time mesh of ``[0, T]`` with ``N`` cells (``(T, N)``: built by the backend on ``COMM_WORLD``)."""
        return (T, N)

    def free_cbvp(self, problem: Problem, progress: Progress, what: str) -> FreeFE:
        """The free FE problem of ``problem`` on :attr:`boundary`: solved on first use, then from ``problem.cache``."""
        bc, (T, N), guess = _setup(problem, self.boundary)
        key = ("free FE", self.boundary, self.assembler, self.degree, self.quadrature)
        if key not in problem.cache:
            problem.cache[key] = solve_free(problem.system, problem.params, self.mesh(T, N), bc, degree=self.degree,
                                            quadrature=self.quadrature, assembler=self.assembler, guess=guess,
                                            **_monitor(progress, what))
        return problem.cache[key]


@dataclass(frozen=True)
class FEAdjoint(_FEOptions, AbstractTruth):
    """Discrete adjoint of the FE CBVP system (the CBVP row's ground truth).

    A Morse index that cannot be determined (singular action Hessian) is
    stated in the notes; it does not fail the truth, whose gradient does not
    depend on it (unless :attr:`regular`).  ``wall_time`` includes the free solve.
    """

    name: ClassVar[str] = "FE discrete adjoint"
    label: ClassVar[str] = "CBVP adjoint"
    loss: ClassVar[str] = LOSS
    #: whether a singular action Hessian fails the truth (the trajectory is then not isolated)
    regular: ClassVar[bool] = False

    def __call__(self, problem: Problem, progress: Progress = None) -> GradientEstimate:
        from glep.bvp import adjoint_gradient, hessian_report

        free = self.free_cbvp(problem, progress, "FE adjoint")
        t0 = time.perf_counter()
        res = adjoint_gradient(free.problem)
        wall = free.wall_time + time.perf_counter() - t0
        try:
            rep = hessian_report(free.problem, free.solution.fe.r)
            index = f"Morse index {rep.index}, smallest Jacobi eigenvalue {rep.min_eigenvalue:.2e}"
        except GlepError as exc:
            if self.regular and isinstance(exc, SingularHessianError):
                raise
            index = "Morse index undetermined (" + " ".join(str(exc).split())[:80] + ")"
        return GradientEstimate(self.label, res.theta, passes=2.0, wall_time=wall, loss=self.loss,
                                notes=[f"ground truth: FE discrete adjoint; C_h = {res.loss:.6g}; {index}"])


@dataclass(frozen=True)
class PeriodicFEAdjoint(FEAdjoint):
    """Discrete adjoint of the FE periodic system (``q(0) = q(T)``, ``p(0) = p(T)``): the periodic row's truth.

    The periodic trajectory must be isolated: a singular action Hessian (a time-shift family of periodic
    orbits of an autonomous system, or a resonance) raises :class:`glep.SingularHessianError` rather than
    giving the gradient of an ambiguous trajectory.
    """

    name: ClassVar[str] = "FE discrete adjoint (periodic)"
    label: ClassVar[str] = "periodic adjoint"
    loss: ClassVar[str] = PERIODIC_LOSS
    regular: ClassVar[bool] = True
    boundary: ClassVar[str] = "periodic"


@dataclass(frozen=True)
class CBVPContrast(_FEOptions, AbstractEstimator):
    """GLEP contrast on the CBVP through the free trajectory's ends: nudged whole-trajectory Newton solves.

    Exact (residual-free) for its own loss, the CBVP ``C_h``; real β only.
    Passes count Newton solves (the free one included); ``wall_time``
    includes the free solve, shared with :class:`FEAdjoint`.
    """

    name: ClassVar[str] = "cbvp"
    label: ClassVar[str] = "CBVP"
    loss: ClassVar[str] = LOSS
    nudged_family: ClassVar[str] = "cbvp"
    exact_at_finite_beta: ClassVar[bool] = True  # residual-free: the contrast is ∇J at every β
    truth_type: ClassVar[type[FEAdjoint]] = FEAdjoint

    @property
    def truth(self) -> FEAdjoint:
        return self.truth_type(self.assembler, self.degree, self.quadrature)

    def accepts(self, nudge: Nudge) -> bool:
        return isinstance(nudge, (Centred, OneSided))

    def estimate(self, problem: Problem, nudge: Nudge, progress: Progress = None) -> GradientEstimate:
        _real(nudge)
        what = nudge.label
        free = self.free_cbvp(problem, progress, what)
        t0 = time.perf_counter()
        grad = contrast_gradient(free, nudge, **_monitor(progress, what))
        grad = {k: np.asarray(grad.get(k, np.zeros(s)), dtype=float) for k, s in problem.system.parameters.items()}
        return GradientEstimate(self.label, grad, passes=self.passes(problem, nudge),
                                wall_time=free.wall_time + time.perf_counter() - t0,
                                nudge=nudge.label, beta=nudge.beta, loss=self.loss,
                                notes=["exact (residual-free): FE whole-trajectory solves, passes = Newton solves"])


@dataclass(frozen=True)
class PeriodicContrast(CBVPContrast):
    r"""GLEP contrast on the periodic trajectory (``q(0) = q(T)``, ``p(0) = p(T)``), nudged periodic solves.

    Residual-free (the two ends' boundary terms cancel), so ``dC_h/dθ = d/dβ|₀ ∫₀ᵀ ∂_θL(s^β) dt`` exactly
    for the periodic ``C_h``; its truth is :class:`PeriodicFEAdjoint`.  Newton starts from the zero
    trajectory (:data:`BOUNDARIES`); the problem must be unbatched.
    """

    name: ClassVar[str] = "periodic"
    label: ClassVar[str] = "Periodic"
    loss: ClassVar[str] = PERIODIC_LOSS
    nudged_family: ClassVar[str] = "periodic"
    boundary: ClassVar[str] = "periodic"
    truth_type: ClassVar[type[FEAdjoint]] = PeriodicFEAdjoint


def cbvp_truth(problem: Problem, progress: Progress = None) -> GradientEstimate:
    """:class:`FEAdjoint` with the default discretisation (``progress`` receives Newton progress)."""
    return FEAdjoint()(problem, progress)


def cbvp(problem: Problem, nudge: Nudge | None = None, progress: Progress = None) -> GradientEstimate:
    """:class:`CBVP` with the default discretisation (default nudge ``Centred(1e-4)``)."""
    return CBVPContrast()(problem, nudge, progress)


__all__ = ["BOUNDARIES", "CBVPContrast", "autonomous", "FEAdjoint", "FreeFE", "NewtonProgress", "PeriodicContrast",
           "PeriodicFEAdjoint", "cbvp", "cbvp_truth", "cbvp_gradient",
           "contrast_gradient", "fe_adjoint_gradient", "solve_free"]
