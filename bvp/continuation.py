r"""Continuation in a scalar parameter and location of folds.

* :func:`natural_continuation` — solve for a sequence of values of a scalar
  parameter ``λ``, each Newton solve started from the secant extrapolation of
  the two previous solutions.  It stops (with :class:`glep.SolverError`) at a
  fold, beyond which the branch has no solution.
* :func:`functional_continuation` — the branch parameterised by a linear
  functional of the state, ``ℓ(q) = q_i(t*) = a``: for each ``a`` solve the
  *bordered* system

      F(q, λ) = 0,   ℓ(q) = a,

  for ``(q, λ)`` by Newton's method with block elimination
  (``J δ₁ = −F``, ``J δ₂ = −∂_λF``, ``δλ = (a − ℓ(q + δ₁))/ℓ(δ₂)``).  The
  bordered Jacobian stays regular at a simple fold, where ``J`` is singular,
  so the branch is followed *through* the fold, like pseudo-arclength
  continuation with ``a`` as arclength-like coordinate.
* :func:`locate_fold` — the fold is the extremum of ``λ(a)``; it is found by
  scanning ``a`` and then Brent's method on ``λ(a)``: since ``λ`` is
  quadratic in ``a`` there, ``λ_c`` is obtained to near machine precision
  (for the discrete problem; the mesh sets the distance to the exact fold).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from petsc4py import PETSc
from scipy.optimize import minimize_scalar

from glep.bvp.reduced import ReducedProblem
from glep.bvp.solve import solve_problem
from glep.bvp.solvers import Newton, Solver, configure_lu
from glep.errors import InputError, SolverError
from glep.trajectory import Trajectory


def _set_param(problem: ReducedProblem, name: str, value: float) -> None:
    theta = dict(problem.disc.theta)
    if name not in theta or np.shape(theta[name]) != ():
        raise InputError(f"continuation needs a scalar parameter; {name!r} has shape "
                         f"{np.shape(theta.get(name))}" if name in theta else f"unknown parameter {name!r}")
    theta[name] = np.array(float(value))
    problem.disc.set_params(theta)


def natural_continuation(problem: ReducedProblem, name: str, values, guess=None, **solver_kw) -> list[Trajectory]:
    """Solutions at each value of the scalar parameter ``name`` (secant predictor)."""
    sols: list[Trajectory] = []
    for lam in values:
        _set_param(problem, name, lam)
        if len(sols) >= 2:
            r = sols[-1].fe.r.copy()
            l1, l0 = sols[-1].meta["continuation_value"], sols[-2].meta["continuation_value"]
            r.axpy((lam - l1) / (l1 - l0), sols[-1].fe.r - sols[-2].fe.r)
            start = r
        elif sols:
            start = sols[-1].fe.r.copy()
        else:
            start = None
        sol = solve_problem(problem, guess if start is None else start, **solver_kw)
        sols.append(replace(sol, meta={**sol.meta, "continuation_parameter": name,
                                       "continuation_value": float(lam)}))
    return sols


@dataclass(frozen=True)
class Continuation:
    r"""Natural continuation in the scalar parameter ``name`` over ``values`` (:func:`natural_continuation`).

    Each solve (by ``solver``, default :class:`~glep.bvp.solvers.Newton`) starts from the secant
    extrapolation of the two previous solutions; it stops with :class:`glep.SolverError` at a fold.
    """

    name: str
    values: tuple
    solver: Solver = field(default_factory=Newton)

    def run(self, problem: ReducedProblem, guess=None) -> list[Trajectory]:
        """The solutions at ``values`` (each with ``meta["continuation_value"]`` set)."""
        return natural_continuation(problem, self.name, self.values, guess, solver=self.solver)


@dataclass(frozen=True)
class BranchPoint:
    """A point ``(a, λ)`` of a branch with its reduced state ``r``."""

    a: float
    lam: float
    r: PETSc.Vec
    iterations: int


class FunctionalContinuation:
    r"""Branch following in ``a = ℓ(q) = q_component(t*)`` with ``λ`` as unknown (see module docstring)."""

    def __init__(self, problem: ReducedProblem, name: str, t_star: float, component: int = 0):
        self.problem = problem
        self.name = name
        disc = problem.disc
        V = disc.V
        nown = V.dofmap.index_map.size_local
        tc = V.tabulate_dof_coordinates()[:nown, 0]
        comm = problem.comm
        dist = np.abs(tc - t_star)
        local_best = (float(dist.min()) if dist.size else np.inf, comm.rank)
        best = comm.allreduce(local_best, op=_MINLOC)
        e = disc.u.x.petsc_vec.duplicate()
        e.set(0.0)
        if comm.rank == best[1]:
            e.array[int(np.argmin(dist)) * problem.n + component] = 1.0
        self.ell = problem.create_vec()
        problem.P.multTranspose(e, self.ell)
        self.ell_const = problem.g.dot(e)
        self.ksp = PETSc.KSP().create(comm)
        configure_lu(self.ksp, comm)
        self.F = problem.create_vec()
        self.Fl = problem.create_vec()
        self.full = disc.u.x.petsc_vec.duplicate()

    def ell_of(self, r: PETSc.Vec) -> float:
        return self.ell.dot(r) + self.ell_const

    def solve(self, a: float, r: PETSc.Vec, lam: float, *, tol: float = 1e-11, max_it: int = 30) -> BranchPoint:
        """Newton on the bordered system from ``(r, λ)``; ``r`` is updated in place."""
        pb = self.problem
        d1, d2 = r.duplicate(), r.duplicate()
        hist = []
        for it in range(max_it):
            _set_param(pb, self.name, lam)
            pb.residual(r, self.F)
            res = max(self.F.norm(), abs(self.ell_of(r) - a))
            hist.append(res)
            if not np.isfinite(res):
                break
            if res <= tol:
                return BranchPoint(a, lam, r, it)
            pb.disc.theta_jvp({self.name: np.array(1.0)}, self.full)
            pb.Q.multTranspose(self.full, self.Fl)
            J = pb.jacobian(r)
            self.ksp.setOperators(J)
            self.ksp.solve(self.F, d1)
            self.ksp.solve(self.Fl, d2)
            J.destroy()
            d1.scale(-1.0)
            d2.scale(-1.0)
            denom = self.ell.dot(d2)
            dl = (a - self.ell_of(r) - self.ell.dot(d1)) / denom
            r.axpy(1.0, d1)
            r.axpy(dl, d2)
            lam += dl
        raise SolverError(f"bordered Newton did not converge at a = {a}", reason="max_it", history=hist)


def functional_continuation(problem: ReducedProblem, name: str, a_values, *, t_star: float, start: Trajectory,
                            lam0: float, component: int = 0) -> list[BranchPoint]:
    """Follow a branch through the values ``a_values`` of ``ℓ(q) = q_component(t*)``."""
    fc = FunctionalContinuation(problem, name, t_star, component)
    r = start.fe.r.copy()
    lam = float(lam0)
    out = []
    for a in a_values:
        pt = fc.solve(float(a), r, lam)
        lam = pt.lam
        out.append(BranchPoint(pt.a, pt.lam, r.copy(), pt.iterations))
    return out


def locate_fold(problem: ReducedProblem, name: str, *, t_star: float, start: Trajectory, lam0: float,
                a_values, component: int = 0, xtol: float = 1e-7) -> tuple[float, float]:
    r"""The fold ``(λ_c, a_c)``: maximum (or minimum) of ``λ(a)`` along the branch.

    ``a_values`` is a scan that must bracket the fold; the extremum of the
    scanned ``λ`` is refined by bounded Brent minimisation of ``∓λ(a)``.
    """
    pts = functional_continuation(problem, name, a_values, t_star=t_star, start=start, lam0=lam0,
                                  component=component)
    lams = np.array([p.lam for p in pts])
    i = int(np.argmax(np.abs(lams - lams[0])))
    if i in (0, len(pts) - 1):
        raise SolverError("the scan did not bracket a fold (λ(a) is monotone over a_values)", reason="no fold")
    sign = -1.0 if lams[i] > lams[0] else 1.0
    fc = FunctionalContinuation(problem, name, t_star, component)
    state = {"r": pts[i].r.copy(), "lam": pts[i].lam}

    def f(a):
        r = state["r"].copy()
        pt = fc.solve(float(a), r, state["lam"])
        return sign * pt.lam

    res = minimize_scalar(f, bounds=(pts[i - 1].a, pts[i + 1].a), method="bounded",
                          options={"xatol": xtol})
    return sign * float(res.fun), float(res.x)


_MINLOC = __import__("mpi4py").MPI.MINLOC

__all__ = ["Continuation", "natural_continuation", "functional_continuation", "locate_fold", "FunctionalContinuation",
           "BranchPoint"]
