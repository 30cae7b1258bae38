r"""Deflation: several distinct solutions of one boundary-value problem (Farrell–Birkisson–Funke 2015).

Given known solutions ``r_1, …, r_k`` of ``F_r(r) = 0``, the *deflated* residual

    G(r) = m(r) F_r(r),      m(r) = Π_i (‖r − r_i‖_{H¹}^{−p} + σ),

has the same roots as ``F_r`` except the ``r_i`` (``m → ∞`` there faster than ``F_r → 0`` for
``p ≥ 1``), and ``G → σᵏ F_r`` far from them (the shift ``σ`` keeps Newton from creeping to infinity,
where ``G`` would otherwise vanish).  The Newton step of ``G`` follows from the Newton step
``δ = −J⁻¹F`` of ``F_r`` by Sherman–Morrison (FBF, eq. 3.4):

    δ_G = τ δ,     τ = 1 / (1 − ⟨∇m, δ⟩ / m),     ∇m / m = −Σ_i p ‖d_i‖^{−p−2} M d_i / (‖d_i‖^{−p} + σ),

with ``d_i = r − r_i`` and ``M`` the ``H¹`` Gram matrix (a mesh-independent norm).  ``δ_G`` is a descent
direction of ``‖G‖``: ``d/dα ‖G(r + αδ_G)‖ = −‖G‖`` at ``α = 0``, so :func:`deflated_newton` damps it by
backtracking (Armijo) on ``‖G‖`` and finishes with undeflated SNES Newton once ``‖F_r‖`` is small
(quadratic convergence to the new root, which deflation no longer needs to protect).

One deflated iteration from one guess is a chaotic map: which solution it reaches, if any, can change
with rounding.  :func:`deflation_search` therefore runs it from *several* deterministic starting
points (:func:`perturbed_starts`: the guess and the guess plus sine modes ``a sin(kπ(t − t₀)/T)`` of a
few amplitudes and both signs), deflating every new solution and restarting from every start until a
whole pass finds nothing new, or a user budget (solutions, attempts, Newton iterations) runs out.
Optionally (:func:`shooting_starts`) the shooting backend adds the discrete CBVP solutions that
Störmer–Verlet single shooting reaches from a scan of initial momenta.  All
operations are collective and the starts are the same on any number of ranks, so the set found does
not depend on the partition.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from petsc4py import PETSc

from glep.bvp.solvers import NewtonResult, _Guard, configure_lu, newton
from glep.errors import InputError, SolverError
from glep.parallel import agree


class DeflationOperator:
    r"""``m(r) = Π_i (‖r − r_i‖^{−p} + σ)`` in the reduced ``H¹`` norm, with ``∇m / m``.

    Arguments
    ---------
    problem:
        The :class:`~glep.bvp.reduced.ReducedProblem` (its ``H¹`` Gram matrix ``PᵀMP`` is formed once).
    known:
        Reduced vectors of the solutions to deflate (copied).
    power, shift:
        ``p ≥ 1`` and ``σ > 0``.
    """

    def __init__(self, problem, known: list[PETSc.Vec], power: float = 2.0, shift: float = 1.0):
        if not (np.isfinite(power) and power >= 1.0):
            raise InputError(f"deflation power must be a finite number >= 1, got {power!r}")
        if not (np.isfinite(shift) and shift > 0.0):
            raise InputError(f"deflation shift must be a finite number > 0, got {shift!r}")
        self.power, self.shift = float(power), float(shift)
        self.M = problem.gram("H1")  # shared with the problem: not destroyed here
        self.known = [k.copy() for k in known]
        self._d = problem.create_vec()
        self._Md = problem.create_vec()

    def add(self, r: PETSc.Vec) -> None:
        self.known.append(r.copy())

    def norm(self, x: PETSc.Vec, y: PETSc.Vec) -> float:
        """``‖x − y‖_{H¹}``."""
        x.copy(self._d)
        self._d.axpy(-1.0, y)
        self.M.mult(self._d, self._Md)
        return float(np.sqrt(max(self._d.dot(self._Md), 0.0)))

    def size(self, x: PETSc.Vec) -> float:
        """``‖x‖_{H¹}``."""
        self.M.mult(x, self._Md)
        return float(np.sqrt(max(x.dot(self._Md), 0.0)))

    def value(self, x: PETSc.Vec) -> float:
        m = np.float64(1.0)
        with np.errstate(over="ignore", divide="ignore"):
            for s in self.known:
                m *= np.float64(self.norm(x, s)) ** -self.power + self.shift  # +inf at a known solution
        return float(m)

    def log_gradient_dot(self, x: PETSc.Vec, v: PETSc.Vec) -> float:
        r"""``⟨∇m, v⟩ / m = −Σ_i p ‖d_i‖^{−p−2} (M d_i)·v / (‖d_i‖^{−p} + σ)``."""
        out = 0.0
        p = self.power
        for s in self.known:
            nrm = max(self.norm(x, s), 1e-150)  # leaves M d_i in self._Md
            # p ‖d‖^{−p−2} / (‖d‖^{−p} + σ) = p / (‖d‖² (1 + σ‖d‖^p)): no overflow near r_i
            out -= p * self._Md.dot(v) / (nrm * nrm * (1.0 + self.shift * nrm ** p))
        return out

    def destroy(self) -> None:
        for obj in [self._d, self._Md, *self.known]:
            obj.destroy()
        self.known = []


def deflated_newton(problem, r0: PETSc.Vec, known: list[PETSc.Vec] | DeflationOperator, *, power: float = 2.0,
                    shift: float = 1.0, rtol: float = 1e-8, atol: float = 1e-12, fscale: float | None = None,
                    max_it: int = 60, min_step: float = 2.0 ** -12, polish: bool = True) -> NewtonResult:
    r"""One deflated Newton solve from ``r0`` (overwritten): damped Newton on ``G = m F_r``.

    Each iteration takes the deflated Newton step ``τ δ`` (module docstring), backtracking (quadratic
    model, factor in ``[1/10, 1/2]``) until Armijo's condition ``‖G(r + αδ_G)‖ ≤ (1 − 10⁻⁴α) ‖G(r)‖``
    holds.  Converged when
    ``‖F_r‖ ≤ max(atol, rtol·fscale)`` (``fscale`` defaults to ``‖F_r(r0)‖``; :func:`deflation_search`
    passes the largest residual of its starts); then ``polish`` runs SNES Newton on ``F_r`` itself to full
    accuracy.

    Arguments
    ---------
    known:
        Reduced vectors of the solutions to deflate, or a :class:`DeflationOperator`.
    max_it, min_step:
        Iteration limit, and the smallest step fraction ``α`` before the attempt is declared stalled.

    Returns
    -------
    NewtonResult
        ``reason`` ``"DEFLATED_CONVERGED"``; ``history`` the norms ``‖F_r‖``.

    Raises
    ------
    glep.SolverError
        ``reason`` ``"max_it"``, ``"line search"`` (no decrease of ``‖G‖``), ``"singular Jacobian"`` or
        ``"non-finite"``.  Every PETSc object created here is destroyed on every path.
    """
    comm = problem.comm
    guard = _Guard(comm)
    own_op = not isinstance(known, DeflationOperator)
    op = DeflationOperator(problem, list(known), power, shift) if own_op else known
    F, dx, trial, Ft = (problem.create_vec() for _ in range(4))
    ksp = PETSc.KSP().create(comm)
    configure_lu(ksp, comm)
    J = None
    t0 = time.perf_counter()

    def residual(x, out) -> float:
        return guard.residual_norm(problem, x, out)

    history: list[float] = []
    try:
        f = residual(r0, F)
        tol = max(atol, rtol * (f if fscale is None else fscale))
        history.append(f)
        g = op.value(r0) * f
        for _ in range(max_it):
            if not np.isfinite(g):
                raise SolverError("deflated Newton: non-finite residual", reason="non-finite", history=history)
            if f <= tol:
                break
            J = agree(partial(problem.jacobian, r0, J), comm, "assembling the Jacobian")
            ksp.setOperators(J)
            try:
                ksp.solve(F, dx)
                failed = ksp.getConvergedReason() < 0
            except PETSc.Error:  # a zero pivot in the factorisation (every rank raises)
                failed = True
            if failed or not np.isfinite(dx.norm()):
                raise SolverError("deflated Newton: the Jacobian is singular at an iterate",
                                  reason="singular Jacobian", history=history)
            dx.scale(-1.0)
            denom = 1.0 - op.log_gradient_dot(r0, dx)
            dx.scale(1.0 / denom if abs(denom) > 1e-12 else 1.0)
            alpha = 1.0
            while True:
                r0.copy(trial)
                trial.axpy(alpha, dx)
                ft = residual(trial, Ft)
                gt = op.value(trial) * ft
                if np.isfinite(gt) and gt <= (1.0 - 1e-4 * alpha) * g:
                    break
                alpha = _backtrack(alpha, g, gt)
                if alpha < min_step:
                    raise SolverError("deflated Newton: the line search found no decrease of the deflated "
                                      "residual ‖G‖", reason="line search", history=history)
            trial.copy(r0)
            Ft.copy(F)
            f, g = ft, gt
            history.append(f)
        else:
            raise SolverError(f"deflated Newton did not converge in {max_it} iterations", reason="max_it",
                              history=history)
    finally:
        for obj in (F, dx, trial, Ft, ksp) + ((J,) if J is not None else ()):
            obj.destroy()
        if own_op:
            op.destroy()
    its = len(history) - 1
    if polish:
        pol = newton(problem, r0)
        history += pol.history[1:]
        its += pol.iterations
    problem.lift(r0)
    return NewtonResult(r0, "DEFLATED_CONVERGED", its, history, time.perf_counter() - t0)


def _backtrack(alpha: float, g0: float, g: float) -> float:
    r"""Next step fraction: minimiser of the quadratic model of ``φ(α) = ½‖G(r + αδ_G)‖²`` through
    ``φ(0)``, ``φ'(0) = −‖G‖²`` and ``φ(α)``, kept in ``[α/10, α/2]`` (Dennis–Schnabel backtracking)."""
    if not np.isfinite(g):
        return 0.1 * alpha
    phi0, phi, dphi0 = 0.5 * g0 * g0, 0.5 * g * g, -g0 * g0
    curv = phi - phi0 - dphi0 * alpha
    new = -dphi0 * alpha * alpha / (2.0 * curv) if curv > 0 else 0.5 * alpha
    return float(min(max(new, 0.1 * alpha), 0.5 * alpha))


def sine_mode(problem, k: int, component: int) -> PETSc.Vec:
    r"""Reduced vector of ``e_c sin(kπ(t − t₀)/(T − t₀))`` (zero at pinned ends)."""
    from glep.bvp.solve import set_guess

    n, t0, T = problem.n, problem.t0, problem.T

    def mode(t):
        t = np.asarray(t, dtype=float)
        out = np.zeros((n,) + t.shape)
        out[component] = np.sin(k * np.pi * (t - t0) / (T - t0))
        return out

    return set_guess(problem, mode)


def perturbed_starts(problem, r0: PETSc.Vec, *, modes=(1, 2, 3), amplitudes=(1.0, 2.0, 4.0)) -> list[PETSc.Vec]:
    r"""Deterministic starting points: ``r0`` and ``r0 ± a e_c sin(kπ(t − t₀)/T)`` for every component ``c``.

    Ordered by amplitude, then mode, then component, ``+`` before ``−``: small perturbations first.
    """
    modes = tuple(int(k) for k in modes)
    amplitudes = tuple(float(a) for a in amplitudes)
    if any(k < 1 for k in modes):
        raise InputError(f"modes must be positive integers, got {modes}")
    if any(not (np.isfinite(a) and a > 0) for a in amplitudes):
        raise InputError(f"amplitudes must be finite positive numbers, got {amplitudes}")
    starts = [r0.copy()]
    basis = {(k, c): sine_mode(problem, k, c) for k in modes for c in range(problem.n)}
    try:
        for a in sorted(amplitudes):
            for k in modes:
                for c in range(problem.n):
                    for sign in (1.0, -1.0):
                        x = r0.copy()
                        x.axpy(sign * a, basis[k, c])
                        starts.append(x)
    finally:
        for v in basis.values():
            v.destroy()
    return starts


def shooting_starts(problem, momenta, *, steps: int = 400, maxiter: int = 30) -> list[PETSc.Vec]:
    r"""Starting points from the shooting backend: discrete CBVP solutions found from a scan of ``p₀``.

    The same CBVP is discretised by Störmer–Verlet on ``steps`` uniform steps (:mod:`glep.ivp`).  For one
    degree of freedom the scan is a shooting scan: ``q_N(p₀) − q_T`` is evaluated for every ``p₀`` in
    ``momenta`` at once (one batched integration), each sign change between neighbours is refined by
    Brent's method, and the trajectory of each root is a start.  For ``n > 1`` every ``p₀`` (shape
    ``(n,)``) is the initial guess of single-shooting Newton (:func:`glep.ivp.shooting.shoot_cbvp`), and
    failed shots are skipped.  Each trajectory is interpolated onto the mesh.  NumPy on every rank with
    the same data: the same starts on any number of ranks.
    """
    from glep.grid import TimeGrid

    spec = problem.spec
    if set(spec.trial_fixed) != {"0", "T"} or spec.periodic:
        raise InputError(f"shooting starts need a CBVP (both ends pinned), got {spec.label}")
    n = problem.n
    p0s = [np.broadcast_to(np.asarray(p, dtype=float), (n,)) for p in momenta]
    if not p0s or any(not np.all(np.isfinite(p)) for p in p0s):
        raise InputError("shooting_momenta must be a non-empty list of finite momenta")
    grid = TimeGrid(problem.T - problem.t0, int(steps))
    q0, qT = spec.trial_fixed["0"], spec.trial_fixed["T"]
    if n == 1:
        trajectories = _scan_roots(problem, grid, q0, qT, np.sort([float(p[0]) for p in p0s]))
    else:
        trajectories = _shots(problem, grid, q0, qT, p0s, maxiter)
    return [_interpolated(problem, grid, q) for q in trajectories]


def _scan_roots(problem, grid, q0, qT, scan: np.ndarray) -> list[np.ndarray]:
    """Störmer–Verlet trajectories ``(N+1, n)`` whose ``q_N`` hits ``q_T``, one per sign change of the scan."""
    from scipy.optimize import brentq

    from glep.ivp.discrete import TRAPEZOID, DiscreteLagrangian
    from glep.ivp.stepping import integrate

    disc = problem.disc
    dl = DiscreteLagrangian(disc.system, disc.theta, grid, TRAPEZOID, disc.beta)

    def end(p0: np.ndarray) -> np.ndarray:
        try:
            qN, _ = integrate(dl, np.full((len(p0), 1), q0[0]), p0[:, None], store=False)
        except SolverError:  # overflow: no bracket there
            return np.full(len(p0), np.nan)
        return np.asarray(qN)[:, 0] - qT[0]

    miss = end(scan)
    out = []
    for i in np.flatnonzero(np.isfinite(miss[:-1]) & np.isfinite(miss[1:]) & (np.sign(miss[:-1]) != np.sign(miss[1:]))):
        root = brentq(lambda s: float(end(np.array([s]))[0]), scan[i], scan[i + 1], xtol=1e-13)
        Q, _ = integrate(dl, np.full((1, 1), q0[0]), np.full((1, 1), root))
        out.append(np.asarray(Q)[:, 0, :])
    return out


def _shots(problem, grid, q0, qT, p0s, maxiter) -> list[np.ndarray]:
    from glep.ivp.shooting import shoot_cbvp

    disc = problem.disc
    out, seen = [], []
    for p0 in p0s:
        try:
            traj = shoot_cbvp(disc.system, disc.theta, grid, q0, qT, p0_guess=p0, maxiter=maxiter, beta=disc.beta)
        except SolverError:
            continue
        p = np.asarray(traj.p[0, 0]).real
        if any(np.max(np.abs(p - s)) < 1e-8 for s in seen):
            continue
        seen.append(p)
        out.append(np.asarray(traj.q)[:, 0, :].real)
    return out


def _interpolated(problem, grid, q: np.ndarray) -> PETSc.Vec:
    from glep.bvp.solve import set_guess

    ts = grid.times + problem.t0
    return set_guess(problem, lambda t: np.stack([np.interp(t, ts, q[:, i]) for i in range(q.shape[1])]))


@dataclass
class SearchReport:
    """What :func:`deflation_search` did: solutions (reduced vectors + solver reports) and its budget use."""

    solutions: list = field(default_factory=list)  # (PETSc.Vec, NewtonResult)
    starts: int = 0
    attempts: int = 0
    newton_iterations: int = 0
    passes: int = 0
    failures: dict = field(default_factory=dict)  # reason -> count
    stopped_by: str = "exhausted"


def deflation_search(problem, starts: list[PETSc.Vec], known: list[PETSc.Vec] = (), *,
                     max_solutions: int | None = None, max_attempts: int | None = None,
                     max_newton_iterations: int | None = None, power: float = 2.0, shift: float = 1.0,
                     max_it: int = 60, distinct_tol: float = 1e-6, **newton_kw) -> SearchReport:
    r"""Distinct solutions of ``F_r = 0`` reachable from ``starts`` by deflated Newton.

    Passes over the starts in order; each attempt deflates the ``known`` solutions and all found so far.
    A converged attempt whose ``H¹`` distance to a known or found solution is below
    ``distinct_tol · max(1, ‖r‖_{H¹})`` is a duplicate (counted as a failure).  After a new solution every
    start is tried again with it deflated (a start is re-run only if solutions were added since its last
    attempt, which would otherwise repeat exactly); the search stops when every start has been tried
    with every solution deflated (``stopped_by="exhausted"``) or a budget is spent: ``max_solutions`` new
    solutions, ``max_attempts`` deflated Newton runs, or ``max_newton_iterations`` iterations in total.

    Returns
    -------
    SearchReport
        ``solutions``: ``(r, NewtonResult)`` in the order found (the caller owns the vectors).
    """
    for name, val in (("max_solutions", max_solutions), ("max_attempts", max_attempts),
                      ("max_newton_iterations", max_newton_iterations)):
        if val is not None and (not isinstance(val, (int, np.integer)) or val < 1):
            raise InputError(f"{name} must be a positive integer or None, got {val!r}")
    op = DeflationOperator(problem, list(known), power, shift)
    report = SearchReport()
    # convergence scale: the largest start residual (the guess itself may already be a known solution)
    fscale = max(_residual_norm(problem, x) for x in starts)
    report.starts = len(starts)
    tried_with = [-1] * len(starts)  # number of deflated solutions when each start was last tried
    try:
        while any(t < len(op.known) for t in tried_with):
            report.passes += 1
            for i, start in enumerate(starts):
                if tried_with[i] == len(op.known):
                    continue  # nothing new deflated since this start last failed or succeeded
                stop = _budget_spent(report, max_solutions, max_attempts, max_newton_iterations)
                if stop:
                    report.stopped_by = stop
                    return report
                tried_with[i] = len(op.known)
                x = start.copy()
                report.attempts += 1
                try:
                    res = deflated_newton(problem, x, op, max_it=max_it, fscale=fscale, **newton_kw)
                except SolverError as exc:
                    report.newton_iterations += max(len(exc.history) - 1, 0)
                    report.failures[str(exc.reason)] = report.failures.get(str(exc.reason), 0) + 1
                    x.destroy()
                    continue
                report.newton_iterations += res.iterations
                scale = max(1.0, op.size(x))
                if any(op.norm(x, s) <= distinct_tol * scale for s in op.known):
                    report.failures["duplicate"] = report.failures.get("duplicate", 0) + 1
                    x.destroy()
                    continue
                op.add(x)
                report.solutions.append((x, res))
        return report
    finally:
        op.destroy()


def _residual_norm(problem, x: PETSc.Vec) -> float:
    F = problem.create_vec()
    try:
        agree(lambda: problem.residual(x, F), problem.comm, "assembling the residual")
        return float(F.norm())
    finally:
        F.destroy()


def _budget_spent(report: SearchReport, max_solutions, max_attempts, max_newton_iterations) -> str | None:
    if max_solutions is not None and len(report.solutions) >= max_solutions:
        return "max_solutions"
    if max_attempts is not None and report.attempts >= max_attempts:
        return "max_attempts"
    if max_newton_iterations is not None and report.newton_iterations >= max_newton_iterations:
        return "max_newton_iterations"
    return None


__all__ = ["DeflationOperator", "deflated_newton", "perturbed_starts", "shooting_starts", "sine_mode",
           "deflation_search",
           "SearchReport"]
