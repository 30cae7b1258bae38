r"""High-level entry point: :func:`solve_bvp` returns a :class:`~glep.Trajectory` (``B = 1``).

The trajectory is found at once, on the whole time mesh, as a stationary
point of the (restricted) augmented action ``A_β`` under one of the boundary
conditions of :mod:`glep.boundary`.  PFVP is solved in two stages: the free
CIVP (at ``β = 0``) gives ``q(T)`` and the discrete momentum ``p(T)``, then
the nudged trajectory is the CFVP with that final state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import dolfinx
import numpy as np
from mpi4py import MPI
from petsc4py import PETSc

from glep.boundary import CFVP, PFVP, BoundaryCondition
from glep.bvp import _mesh
from glep.bvp.fe import FEAction
from glep.bvp.reduced import ReducedProblem
from glep.bvp.solvers import (
    DEFLATION_SEARCH_OPTIONS,
    Deflation,
    HessianReport,
    Newton,
    Solver,
    TrustRegion,
    hessian_report,
    newton,
    solver_from_keywords,
)
from glep.errors import InputError, SingularHessianError, SolverError
from glep.parallel import agree
from glep.signals import check_signals
from glep.system import LagrangianSystem
from glep.trajectory import SolverReport, Trajectory


@dataclass(frozen=True)
class FESolve:
    """The finite-element backend's handles of a solved trajectory (``Trajectory.fe``; never saved).

    Attributes
    ----------
    problem:
        The :class:`~glep.bvp.reduced.ReducedProblem` (its discretisation holds the dolfinx function
        ``problem.disc.u``).
    r:
        The reduced solution vector.
    hessian:
        The :class:`~glep.bvp.solvers.HessianReport` (Morse index with ``λ_min``, ``λ_max`` of
        ``J_r v = λ M v``, their ratio and the tolerance ``|λ_min|`` exceeded), if it was computed.
    """

    problem: ReducedProblem = field(repr=False)
    r: PETSc.Vec = field(repr=False)
    hessian: HessianReport | None = None

    @property
    def function(self) -> dolfinx.fem.Function:
        """The dolfinx function ``q_h`` (holds this solution once ``problem.lift(r)`` has been called)."""
        return self.problem.disc.u


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
    :class:`~glep.Trajectory` (of this problem: its vector; of another FE problem: interpolated; from another
    mesh or backend, piecewise-linearly between its nodes; ``B = 1``), or a reduced PETSc vector of this problem.
    """
    disc, n = problem.disc, problem.n
    u = disc.u
    if isinstance(guess, PETSc.Vec):
        return guess.copy()
    if isinstance(guess, Trajectory):
        if np.shape(guess.q)[1:] != (1, n):
            raise InputError(f"guess trajectory must have q of shape (nodes, 1, {n}), got {np.shape(guess.q)}")
        fe = guess.fe
        if fe is not None and fe.problem is problem:
            return fe.r.copy()
        if fe is None or fe.problem.disc.mesh is not disc.mesh:
            # another mesh or backend: piecewise-linear interpolation of its (gathered) nodal values
            return set_guess(problem, lambda t, s=guess: np.stack([np.interp(t, s.times, np.real(s.q[:, 0, i]))
                                                                   for i in range(n)]))
        fe.problem.lift(fe.r)
        if fe.problem.disc.V is not disc.V:
            u.interpolate(fe.problem.disc.u)
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

        agree(lambda: u.interpolate(interp), problem.comm, "interpolating the guess")
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
    x = mesh.geometry.x[:, 0]
    t_end = mesh.comm.allreduce(float(x.max()) if x.size else -np.inf, op=MPI.MAX)
    check_signals(system, t_end)  # a signal ending before the mesh would be held constant past its end
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


def _solution(problem: ReducedProblem, res, hr: HessianReport | None) -> Trajectory:
    """The :class:`~glep.Trajectory` of the solve ``res`` (``q`` of shape ``(nodes, 1, n)``, gathered)."""
    problem.lift(res.r)
    ts, qs = gather_nodal(problem.disc)
    mom = problem.momenta()
    index = hr.index if hr is not None else None
    disc = problem.disc
    return Trajectory(ts, qs[:, None, :], None, disc.beta, problem.bc, dict(disc.theta),
                      {"system": disc.system.name, "backend": "fe"},
                      SolverReport(str(res.reason), int(res.iterations), tuple(res.history), res.wall_time),
                      problem.action(), index, (np.asarray(mom["0"])[None], np.asarray(mom["T"])[None]),
                      FESolve(problem, res.r, hr))


def solve_problem(problem: ReducedProblem, guess=None, *, solver: Solver | None = None, method: str = "newton",
                  morse: bool = False, known: list | None = None, metric: str = "H1",
                  singular_tol: float | None = None, **kw) -> Trajectory:
    """Solve an already built :class:`~glep.bvp.reduced.ReducedProblem` (see :func:`solve_bvp`)."""
    if solver is None:
        solver = solver_from_keywords(method, known=known, metric=metric, **kw)
    elif kw or method != "newton" or known is not None:
        raise InputError("pass either solver=<a solver object> or the keywords method=, rtol=, ... (not both); "
                         f"got solver={solver!r} with {sorted(kw) + (['method'] if method != 'newton' else [])}")
    if not isinstance(solver, Solver):
        raise InputError(f"solver must be Newton, TrustRegion, ResidualDescent, GradientFlow or Deflation, "
                         f"got {solver!r}")
    if isinstance(solver, Deflation):
        return _first_new_solution(problem, guess, solver, morse, singular_tol)
    r0 = set_guess(problem, guess)
    res = solver.solve(problem, r0)
    report = res.hessian_report  # the gradient flow checks the end point's inertia itself
    if morse and (report is None or singular_tol is not None):
        report = hessian_report(problem, res.r, singular_tol=singular_tol)
    return _solution(problem, res, report)


def _first_new_solution(problem: ReducedProblem, guess, solver: Deflation, morse: bool,
                        singular_tol: float | None) -> Trajectory:
    sols = find_problem_solutions(problem, guess, known=list(solver.known), max_solutions=1, morse=morse,
                                  singular_tol=singular_tol, modes=solver.modes, amplitudes=solver.amplitudes,
                                  shooting_momenta=solver.shooting_momenta, max_attempts=solver.max_attempts,
                                  max_newton_iterations=solver.max_newton_iterations, **solver.search)
    if not sols:
        rep = sols.search
        raise SolverError(f"deflation found no solution besides the {len(solver.known)} known ones "
                          f"({problem.spec.label}; {rep.attempts} deflated Newton runs from "
                          f"{rep.starts} starts failed or returned a known solution: {rep.failures})",
                          reason="no new solution")
    return sols[0]


class FoundSolutions(list):
    """A list of :class:`Trajectory` with ``search``: the :class:`glep.bvp.deflation.SearchReport`
    (attempts, Newton iterations, failure reasons, and which rule stopped the search)."""

    def __init__(self, solutions, search):
        super().__init__(solutions)
        self.search = search


def find_problem_solutions(problem: ReducedProblem, guess=None, *, known: list | None = None,
                           max_solutions: int | None = None, max_attempts: int | None = None,
                           max_newton_iterations: int | None = None, modes=(1, 2, 3),
                           amplitudes=(1.0, 2.0, 4.0), shooting_momenta=None, morse: bool = True,
                           singular_tol: float | None = None, on_singular: str = "raise",
                           **search_kw) -> list[Trajectory]:
    r"""All solutions that deflation reaches from ``guess`` (see :func:`find_solutions`)."""
    from glep.bvp.deflation import deflation_search, perturbed_starts, shooting_starts

    unknown = set(search_kw) - DEFLATION_SEARCH_OPTIONS
    if unknown:
        raise InputError(f"unknown deflation option(s) {sorted(unknown)}; valid: {sorted(DEFLATION_SEARCH_OPTIONS)}")
    if on_singular not in ("raise", "none"):
        raise InputError(f"on_singular must be 'raise' or 'none', got {on_singular!r}")
    if morse and not problem.spec.symmetric:
        raise InputError(f"{problem.spec.label}: Morse indices need a variational (symmetric) boundary "
                         "condition; pass morse=False")
    known = list(known or [])
    if any(not isinstance(k, (Trajectory, PETSc.Vec)) for k in known) or any(
            isinstance(k, PETSc.Vec) and k.getSize() != problem.P.getSize()[1] for k in known):
        raise InputError("known must be a list of Trajectory (of any mesh: they are interpolated) or reduced "
                         "vectors of this problem")
    known_vecs = [_as_known(problem, k) for k in known]
    r0 = set_guess(problem, guess)
    starts = perturbed_starts(problem, r0, modes=modes, amplitudes=amplitudes)
    r0.destroy()
    if shooting_momenta is not None:
        starts += shooting_starts(problem, shooting_momenta)
    try:
        report = deflation_search(problem, starts, known_vecs, max_solutions=max_solutions,
                                  max_attempts=max_attempts, max_newton_iterations=max_newton_iterations,
                                  **search_kw)
    finally:
        for v in starts + known_vecs:
            v.destroy()
    sols = []
    for r, res in report.solutions:
        hr = None
        if morse:
            try:
                hr = hessian_report(problem, r, singular_tol=singular_tol)
            except SingularHessianError:
                if on_singular == "raise":
                    raise
        sols.append(_solution(problem, res, hr))
    return FoundSolutions(sort_solutions(sols), report)


def _as_known(problem: ReducedProblem, k) -> PETSc.Vec:
    """A known solution as a reduced vector of ``problem`` (a copy).

    A solution of another problem (another mesh, degree or partition) is interpolated and then polished
    by Newton into *this* discretisation's solution, so that deflation excludes the discrete solution
    itself rather than a point ``O(h^p)`` away from it.
    """
    v = set_guess(problem, k)
    if isinstance(k, Trajectory) and (k.fe is None or k.fe.problem is not problem):
        try:
            newton(problem, v)
        except SolverError:
            pass  # keep the interpolant: it still repels the search from that branch
    return v


def sort_solutions(sols: list[Trajectory]) -> list[Trajectory]:
    """Sort by action; actions equal to ``10⁻⁹`` (relative) are ordered by ``p(0)`` (lexicographic)."""
    import functools

    def cmp(a: Trajectory, b: Trajectory) -> int:
        scale = max(1.0, abs(a.action), abs(b.action))
        if abs(a.action - b.action) > 1e-9 * scale:
            return -1 if a.action < b.action else 1
        for x, y in zip(np.ravel(a.p0), np.ravel(b.p0)):
            if x != y:
                return -1 if x < y else 1
        return 0

    return sorted(sols, key=functools.cmp_to_key(cmp))


def find_solutions(system: LagrangianSystem, params: Mapping[str, np.ndarray], mesh, bc: BoundaryCondition, *,
                   guess=None, known: list | None = None, max_solutions: int | None = None,
                   max_attempts: int | None = None, max_newton_iterations: int | None = None,
                   modes=(1, 2, 3), amplitudes=(1.0, 2.0, 4.0), shooting_momenta=None, morse: bool = True,
                   singular_tol: float | None = None, on_singular: str = "raise", beta: float = 0.0,
                   degree: int = 1, quadrature: str = "gll", quadrature_degree: int | None = None,
                   assembler: str = "fe", comm: MPI.Comm | None = None, **search_kw) -> list[Trajectory]:
    r"""Every solution deflation finds from one guess, with Morse indices and actions, sorted by action.

    Deflated Newton (:mod:`glep.bvp.deflation`, Farrell–Birkisson–Funke) is run from ``guess``, from
    ``guess ± a e_c sin(kπ(t − t₀)/T)`` for ``k`` in ``modes``, ``a`` in ``amplitudes`` and every
    component ``c``, and optionally from shooting solutions; each new solution is deflated and the
    starts are tried again, until every start has been tried with every solution deflated or a budget
    runs out.  Distinct means ``H¹`` distance above ``distinct_tol`` (default
    ``10⁻⁶``, relative).  The same starts and the same collective operations on every rank: the same set
    on any number of ranks.

    Arguments
    ---------
    guess:
        As for :func:`solve_bvp` (default: the straight line between pinned ends).
    known:
        Solutions to exclude: :class:`Trajectory` (of any mesh; interpolated onto this one) or reduced
        vectors of this problem.
    max_solutions, max_attempts, max_newton_iterations:
        Stopping rule: at most this many new solutions, deflated Newton runs, or Newton iterations in total
        (``None``: no limit; the search still ends when a pass over all starts finds nothing new).
    modes, amplitudes:
        The sine perturbations of the guess (amplitudes in units of ``q``; ``modes=()`` keeps the guess
        alone).
    shooting_momenta:
        Optional initial momenta ``p₀`` (CBVP only): the discrete solutions that Störmer–Verlet shooting
        reaches from each are added as starts (:func:`glep.bvp.deflation.shooting_starts`).
    morse, singular_tol, on_singular:
        Compute each Morse index with :func:`glep.bvp.solvers.hessian_report`; a numerically singular
        Hessian raises :class:`glep.SingularHessianError` (``on_singular="raise"``) or leaves
        ``morse_index=None`` (``"none"``).
    search_kw:
        ``power``, ``shift`` (deflation operator), ``max_it`` (per attempt), ``distinct_tol``, ``rtol``,
        ``atol``, ``min_step`` (see :func:`glep.bvp.deflation.deflated_newton`).

    Returns
    -------
    list[Trajectory]
        Sorted by action, then by ``p(0)``; empty if nothing new was found.  Its attribute ``search``
        (:class:`glep.bvp.deflation.SearchReport`) tells how the search went and what stopped it.
    """
    if isinstance(bc, PFVP):
        raise InputError("find_solutions needs a single-stage boundary condition (not PFVP)")
    disc = make_discretisation(system, params, mesh, assembler=assembler, degree=degree, quadrature=quadrature,
                               quadrature_degree=quadrature_degree, beta=beta, comm=comm)
    problem = ReducedProblem(disc, bc)
    return find_problem_solutions(problem, guess, known=known, max_solutions=max_solutions,
                                  max_attempts=max_attempts, max_newton_iterations=max_newton_iterations,
                                  modes=modes, amplitudes=amplitudes, shooting_momenta=shooting_momenta,
                                  morse=morse, singular_tol=singular_tol,
                                  on_singular=on_singular, **search_kw)


def solve_bvp(system: LagrangianSystem, params: Mapping[str, np.ndarray], mesh, bc: BoundaryCondition, *,
              beta: float = 0.0, guess=None, method: str = "newton", degree: int = 1, quadrature: str = "gll",
              quadrature_degree: int | None = None, assembler: str = "fe", morse: bool = False,
              known: list | None = None, singular_tol: float | None = None, comm: MPI.Comm | None = None,
              solver: Solver | None = None, **solver_kw) -> Trajectory:
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
        descent, minima only) or ``"deflation"`` (the first solution not in
        ``known`` that :func:`find_solutions` reaches from ``guess``).
    degree, quadrature, quadrature_degree:
        The finite element (vector Lagrange ``P_degree``) and the quadrature
        (``"gll"``: Gauss–Lobatto, trapezoid for P1; ``"gauss"``).
    assembler:
        ``"fe"`` (UFL) or ``"vectorised"`` (NumPy discrete-Lagrangian blocks).
    morse:
        Also compute the Morse index (inertia of the action Hessian) and the
        smallest/largest Hessian eigenvalues; raises
        :class:`glep.SingularHessianError` when ``|λ_min| ≤ singular_tol``
        (default from the discretisation error, see
        :func:`glep.bvp.solvers.hessian_report`).
    solver:
        A solver object: :class:`~glep.bvp.solvers.Newton` (default), ``TrustRegion``, ``ResidualDescent``,
        ``GradientFlow`` or ``Deflation`` (:mod:`glep.bvp.solvers`), e.g.
        ``solver=Newton(rtol=1e-12, options={"snes_monitor": None})``.
    method, known, solver_kw:
        The keyword spelling of ``solver`` (``method="newton"``, ``rtol=``, ``atol=``, ``max_it=``,
        ``linesearch=``, ``options=`` PETSc options for this solve...), mapped by
        :func:`glep.bvp.solvers.solver_from_keywords`; not together with ``solver``.
        For a PFVP the free stage is solved by ``solver`` if it is a Newton method, else by ``Newton()``.
    """
    if solver is None:
        solver = solver_from_keywords(method, known=known, **solver_kw)
    elif solver_kw or method != "newton" or known is not None:
        raise InputError("pass either solver=<a solver object> or the keywords method=, rtol=, ... (not both)")
    disc = make_discretisation(system, params, mesh, assembler=assembler, degree=degree, quadrature=quadrature,
                               quadrature_degree=quadrature_degree, beta=0.0, comm=comm)
    pfvp = bc if isinstance(bc, PFVP) else None
    if pfvp is not None:
        free = ReducedProblem(disc, pfvp.free)
        fsol = solve_problem(free, guess, solver=solver if isinstance(solver, (Newton, TrustRegion)) else Newton())
        bc = CFVP(fsol.q[-1, 0], pT=fsol.pT[0])
        guess = fsol if guess is None else guess
    disc.set_beta(beta)
    problem = ReducedProblem(disc, bc)
    sol = solve_problem(problem, guess, solver=solver, morse=morse, singular_tol=singular_tol)
    # a PFVP's nudged stage is the CFVP of the free final state; the trajectory records the PFVP asked for
    return sol if pfvp is None else replace(sol, boundary=pfvp)


__all__ = ["FESolve", "solve_bvp", "solve_problem", "find_solutions", "find_problem_solutions",
           "sort_solutions", "make_discretisation", "set_guess", "gather_nodal"]
