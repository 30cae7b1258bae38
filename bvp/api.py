r"""High-level entry point: :func:`solve_bvp` returns a :class:`BVPSolution`.

The trajectory is found at once, on the whole time mesh, as a stationary
point of the (restricted) augmented action ``A_β`` under one of the boundary
conditions of :mod:`glep.boundary`.  PFVP is solved in two stages: the free
CIVP (at ``β = 0``) gives ``q(T)`` and the discrete momentum ``p(T)``, then
the nudged trajectory is the CFVP with that final state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import dolfinx
import numpy as np
from mpi4py import MPI
from petsc4py import PETSc

from glep.boundary import CFVP, PFVP, BoundaryCondition
from glep.bvp import _mesh
from glep.bvp.fe import FEAction
from glep.bvp.problem import ReducedProblem
from glep.bvp.solvers import collective, deflated_newton, gradient_flow, morse_index, newton, residual_descent
from glep.errors import InputError
from glep.system import LagrangianSystem


@dataclass
class BVPSolution:
    """A whole-trajectory solution.

    Attributes
    ----------
    times:
        Times of all degrees of freedom (vertices and, for ``p ≥ 2``, interior
        nodes), sorted; identical on every rank.
    q:
        Nodal values, shape ``(len(times), n)`` (gathered on every rank).
    p0, pT:
        Discrete end momenta ``−∂A_β/∂q(0)`` and ``∂A_β/∂q(T)``.
    action:
        ``A_β`` at the solution (with the boundary point terms).
    beta:
        The nudging strength.
    morse_index:
        Negative inertia of the action Hessian (``None`` if not computed or
        not defined for the boundary condition).
    iterations, history, reason, wall_time:
        Solver report (residual norms per iteration).
    problem:
        The :class:`~glep.bvp.problem.ReducedProblem` (its discretisation
        holds the dolfinx function ``problem.disc.u``); ``r`` is the reduced
        solution vector.
    """

    times: np.ndarray
    q: np.ndarray
    p0: np.ndarray
    pT: np.ndarray
    action: float
    beta: float
    morse_index: int | None
    iterations: int
    history: list
    reason: str
    wall_time: float
    problem: ReducedProblem = field(repr=False)
    r: PETSc.Vec = field(repr=False)

    @property
    def function(self) -> dolfinx.fem.Function:
        return self.problem.disc.u

    def at(self, t: float) -> np.ndarray:
        """Piecewise-linear interpolation of the nodal values at ``t``."""
        return np.array([np.interp(t, self.times, self.q[:, i]) for i in range(self.q.shape[1])])


def gather_nodal(disc) -> tuple[np.ndarray, np.ndarray]:
    """All nodal times and values of ``disc.u`` on every rank, sorted by time."""
    V = disc.V
    nown = V.dofmap.index_map.size_local
    t = V.tabulate_dof_coordinates()[:nown, 0]
    vals = disc.u.x.array[: nown * disc.n].reshape(nown, disc.n)
    ts = np.concatenate(disc.comm.allgather(t))
    vs = np.concatenate(disc.comm.allgather(vals))
    order = np.argsort(ts, kind="stable")
    return ts[order], vs[order]


def set_guess(problem: ReducedProblem, guess) -> PETSc.Vec:
    """Interpolate an initial guess into the reduced space.

    ``guess`` may be ``None`` (straight line between pinned ends, or the
    pinned value), a callable ``t -> (n,)`` (or vectorised ``t[...] -> (n, len(t))``),
    an array of nodal values ``(len(times), n)`` ordered by time, a
    :class:`BVPSolution`, or a reduced PETSc vector of this problem.
    """
    disc, n = problem.disc, problem.n
    u = disc.u
    if isinstance(guess, PETSc.Vec):
        return guess.copy()
    if isinstance(guess, BVPSolution):
        if guess.problem is problem:
            return guess.r.copy()
        guess.problem.lift(guess.r)
        if guess.problem.disc.V is not disc.V:
            u.interpolate(guess.problem.disc.u)
        u.x.scatter_forward()
        return problem.restrict()
    fixed = problem.spec.trial_fixed
    T0, T1 = problem.t0, problem.T
    if guess is None:
        a = fixed.get("0", fixed.get("T", np.zeros(n)))
        b = fixed.get("T", a)

        def guess(t):
            s = (np.asarray(t) - T0) / (T1 - T0)
            return np.outer(a, 1 - s) + np.outer(b, s)
    if callable(guess):
        fn: Callable = guess

        def interp(X):
            try:
                out = np.asarray(fn(X[0]), dtype=float)
                if out.shape == (n, X.shape[1]):
                    return out
            except Exception:  # noqa: BLE001 - fall back to pointwise evaluation
                pass
            return np.stack([np.asarray(fn(float(ti)), dtype=float).reshape(n) for ti in X[0]], axis=1)

        collective(problem.comm, u.interpolate, interp)
    else:
        arr = np.asarray(guess, dtype=float)
        ts, _ = gather_nodal(disc)
        if arr.shape != (len(ts), n):
            raise InputError(f"guess array must have shape ({len(ts)}, {n}) (nodal values ordered by time)")
        u.interpolate(lambda X: np.stack([np.interp(X[0], ts, arr[:, i]) for i in range(n)]))
    u.x.scatter_forward()
    # pinned values win over the guess
    x = u.x.petsc_vec
    for end in fixed:
        dofs = problem.end_dofs[end]
        if dofs.size:
            x.array[dofs] = problem.g.array_r[dofs]
    return problem.restrict()


def make_discretisation(system: LagrangianSystem, params, mesh, *, assembler: str = "fe", degree: int = 1,
                        quadrature: str = "gll", quadrature_degree: int | None = None, beta: float = 0.0,
                        comm: MPI.Comm | None = None, jit_options: dict | None = None):
    """Build an assembler: ``"fe"`` (UFL forms) or ``"vectorised"`` (NumPy, no form compilation).

    ``"vectorised"`` is :class:`~glep.bvp.vectorised.VectorisedAction` (the trapezoid discrete
    Lagrangian, any system) for P1 + Gauss–Lobatto, and :class:`~glep.bvp.galerkin.GalerkinAction`
    (separable systems, any degree and quadrature) otherwise.
    """
    mesh = _mesh.as_mesh(mesh, comm)
    if assembler == "fe":
        return FEAction(system, params, mesh, degree=degree, quadrature=quadrature,
                        quadrature_degree=quadrature_degree, beta=beta, jit_options=jit_options)
    if assembler == "vectorised":
        from glep.bvp.vectorised import VectorisedAction

        if degree == 1 and quadrature in ("gll", "vertex", "trapezoid") and quadrature_degree in (None, 1):
            return VectorisedAction(system, params, mesh, beta=beta)
        from glep.bvp.galerkin import GalerkinAction

        return GalerkinAction(system, params, mesh, degree=degree, quadrature=quadrature,
                              quadrature_degree=quadrature_degree, beta=beta)
    raise InputError(f"assembler must be 'fe' or 'vectorised', got {assembler!r}")


def _solution(problem: ReducedProblem, res, beta: float, index: int | None) -> BVPSolution:
    ts, qs = gather_nodal(problem.disc)
    mom = problem.momenta()
    return BVPSolution(ts, qs, mom["0"], mom["T"], problem.action(), beta, index, res.iterations,
                       res.history, res.reason, res.wall_time, problem, res.r)


def solve_problem(problem: ReducedProblem, guess=None, *, method: str = "newton", morse: bool = False,
                  known: list | None = None, metric: str = "H1", **kw) -> BVPSolution:
    """Solve an already built :class:`~glep.bvp.problem.ReducedProblem` (see :func:`solve_bvp`)."""
    r0 = set_guess(problem, guess)
    if method in ("newton", "trust-region"):
        res = newton(problem, r0, method=method, **kw)
    elif method == "residual-descent":
        res = residual_descent(problem, r0, **kw)
    elif method == "gradient-flow":
        res = gradient_flow(problem, r0, metric=metric, **kw)
    elif method == "deflation":
        res = deflated_newton(problem, r0, [s.r for s in (known or [])], **kw)
    else:
        raise InputError("method must be 'newton', 'residual-descent', 'trust-region', 'gradient-flow' or "
                         "'deflation', "
                         f"got {method!r}")
    index = getattr(res, "morse_index", None)
    if morse and index is None:
        index = morse_index(problem, res.r)
    return _solution(problem, res, problem.disc.beta, index)


def solve_bvp(system: LagrangianSystem, params: Mapping[str, np.ndarray], mesh, bc: BoundaryCondition, *,
              beta: float = 0.0, guess=None, method: str = "newton", degree: int = 1, quadrature: str = "gll",
              quadrature_degree: int | None = None, assembler: str = "fe", morse: bool = False,
              known: list | None = None, comm: MPI.Comm | None = None, **solver_kw) -> BVPSolution:
    r"""Solve a Lagrangian boundary-value problem on a finite-element time mesh.

    Parameters
    ----------
    system, params:
        The Lagrangian system and its parameter point ``θ``.
    mesh:
        A dolfinx interval mesh, or ``(T, N)`` for ``N`` uniform elements.
    bc:
        ``CBVP``, ``CIVP``, ``PFVP``, ``CFVP``, ``Periodic``,
        ``DirichletNatural`` or ``Robin`` (:mod:`glep.boundary`).
    beta:
        Nudging strength: the trajectory is stationary for ``A_β = ∫(L + βc)``.
    guess:
        Initial guess (see :func:`set_guess`); selects the branch.
    method:
        ``"newton"`` (SNES newtonls, default), ``"residual-descent"``
        (Levenberg–Marquardt on ``½‖F‖²``, for poor guesses),
        ``"trust-region"`` (SNES newtontr), ``"gradient-flow"`` (action
        descent, minima only) or ``"deflation"`` (with ``known`` solutions).
    degree, quadrature, quadrature_degree:
        The finite element (vector Lagrange ``P_degree``) and the quadrature
        (``"gll"``: Gauss–Lobatto, trapezoid for P1; ``"gauss"``).
    assembler:
        ``"fe"`` (UFL) or ``"vectorised"`` (NumPy discrete-Lagrangian blocks).
    morse:
        Also compute the Morse index (inertia of the action Hessian).
    solver_kw:
        Passed to the solver (``rtol``, ``atol``, ``max_it``, ``linesearch``,
        ``options`` for the ``glep_`` PETSc prefix...).
    """
    disc = make_discretisation(system, params, mesh, assembler=assembler, degree=degree, quadrature=quadrature,
                               quadrature_degree=quadrature_degree, beta=0.0, comm=comm)
    if isinstance(bc, PFVP):
        free = ReducedProblem(disc, bc.free)
        fsol = solve_problem(free, guess, **solver_kw)
        bc = CFVP(fsol.q[-1], pT=fsol.pT)
        guess = fsol if guess is None else guess
    disc.set_beta(beta)
    problem = ReducedProblem(disc, bc)
    return solve_problem(problem, guess, method=method, morse=morse, known=known, **solver_kw)


__all__ = ["BVPSolution", "solve_bvp", "solve_problem", "make_discretisation", "set_guess", "gather_nodal"]
