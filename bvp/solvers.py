r"""PETSc solvers for whole-trajectory boundary-value problems.

* :func:`newton` — SNES ``newtonls`` with a line search on the *residual
  norm* (``bt`` by default, or ``basic``), never on the action, which is not
  bounded below at a saddle.  ``method="trust-region"`` (``newtontr``,
  dogleg between the Newton step and steepest descent of ``½‖F‖²``) is an
  alternative globalisation.
* :func:`residual_descent` — Levenberg–Marquardt descent on ``½‖F‖²`` for
  poor initial guesses (reaches saddles of the action, unlike action descent).  Options pass through the
  PETSc options database with prefix ``glep_`` (``-glep_snes_monitor``,
  ``-glep_snes_linesearch_type basic``, ``-glep_ksp_type gmres``...).
* :func:`gradient_flow` — the action-gradient flow ``M ∂_τ r = −F_r(r)``
  (``M`` the ``L²`` or ``H¹`` Gram matrix) with PETSc ``TS`` pseudo-transient
  continuation.  Descent on the action is only meaningful at a minimum: the
  end point's Hessian inertia is checked and a :class:`glep.SaddleError` is
  raised at a saddle.
* :func:`deflated_newton` — Newton on the deflated residual
  ``m(r) F_r(r)``, ``m = Π_i (‖r − r_i‖^{−p} + σ)``, which cannot converge to
  the known solutions ``r_i``; the step is the Newton step of ``F_r`` scaled
  by ``1/(1 − ∇m·δ/m)`` (Sherman–Morrison).
* :func:`morse_index` — number of negative eigenvalues of the reduced action
  Hessian from the inertia of a Cholesky (``LDLᵀ``) factorisation (MUMPS,
  or PETSc's own on one rank).

Convergence is decided collectively (SNES reasons and norms are global); an
exception raised inside a callback on one rank is turned into a NaN residual
so that every rank's solver stops, and is then re-raised on every rank with
the failing rank's message.
"""

from __future__ import annotations

import contextlib
import time
import weakref

import numpy as np
from mpi4py import MPI
from petsc4py import PETSc

from glep.errors import GlepError, InputError, SaddleError, SolverError

_SNES_REASONS = {v: k for k, v in vars(PETSc.SNES.ConvergedReason).items()
                 if isinstance(v, int) and not k.startswith("_")}
_TS_REASONS = {v: k for k, v in vars(PETSc.TS.ConvergedReason).items()
               if isinstance(v, int) and not k.startswith("_")}


def snes_reason_name(code: int) -> str:
    return _SNES_REASONS.get(code, str(code))


# -- collective error handling -------------------------------------------------------------
class _Guard:
    """Records an exception raised in a PETSc callback on this rank."""

    def __init__(self, comm: MPI.Comm):
        self.comm = comm
        self.error: BaseException | None = None

    @contextlib.contextmanager
    def capture(self, poison: PETSc.Vec | None = None):
        try:
            yield
        except Exception as exc:  # noqa: BLE001  re-raised collectively by check()
            if self.error is None:
                self.error = exc
            if poison is not None:
                poison.set(np.nan)

    def check(self):
        """Raise on every rank if any rank recorded an error."""
        msgs = self.comm.allgather(None if self.error is None else f"{type(self.error).__name__}: {self.error}")
        bad = [(r, m) for r, m in enumerate(msgs) if m is not None]
        if bad:
            rank, msg = bad[0]
            err = self.error if isinstance(self.error, GlepError) else None
            text = f"error on rank {rank} of {self.comm.size}: {msg}"
            if err is not None and self.error is not None and self.comm.size == 1:
                raise self.error
            raise SolverError(text, reason="callback error")


def collective(comm: MPI.Comm, fn, *args, **kw):
    """Run ``fn`` on every rank; if it raises on any rank, raise on all ranks."""
    guard = _Guard(comm)
    out = None
    with guard.capture():
        out = fn(*args, **kw)
    msgs = comm.allgather(None if guard.error is None else f"{type(guard.error).__name__}: {guard.error}")
    bad = [(r, m) for r, m in enumerate(msgs) if m is not None]
    if bad:
        if guard.error is not None and comm.size == 1:
            raise guard.error
        rank, msg = bad[0]
        cls = type(guard.error) if isinstance(guard.error, GlepError) else GlepError
        try:
            exc = cls(f"error on rank {rank} of {comm.size}: {msg}")
        except TypeError:
            exc = GlepError(f"error on rank {rank} of {comm.size}: {msg}")
        raise exc
    return out


# -- options -----------------------------------------------------------------------------
def insert_command_line_options(argv: list[str] | None = None) -> list[str]:
    """Copy ``-glep_*`` options from the command line into the PETSc options database.

    dolfinx initialises PETSc without ``sys.argv``, so ``python run.py
    -glep_snes_monitor`` would otherwise be ignored (``PETSC_OPTIONS`` works
    either way).  Called once when :mod:`glep.bvp` is imported; returns the
    option names inserted.
    """
    import sys

    argv = sys.argv[1:] if argv is None else argv
    db = PETSc.Options()
    added = []
    for i, tok in enumerate(argv):
        if tok.startswith("-glep_"):
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            val = nxt if nxt is not None and not (nxt.startswith("-") and not _is_number(nxt)) else ""
            name = tok.lstrip("-")
            if not db.hasName(name):
                db.setValue(name, val)
                added.append(name)
    return added


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


insert_command_line_options()


@contextlib.contextmanager
def petsc_options(prefix: str, options: dict | None):
    """Temporarily insert ``options`` (without the prefix) in the PETSc options database."""
    db = PETSc.Options()
    added = []
    for key, val in (options or {}).items():
        full = prefix + key.lstrip("-")
        if not db.hasName(full):
            db.setValue(full, "" if val is None else str(val))
            added.append(full)
    try:
        yield
    finally:
        for full in added:
            db.delValue(full)


def configure_lu(ksp: PETSc.KSP, comm: MPI.Comm, solver: str | None = None) -> None:
    """Direct solve: ``preonly`` + LU (MUMPS by default; PETSc's own on one rank if asked)."""
    ksp.setType("preonly")
    pc = ksp.getPC()
    pc.setType("lu")
    pc.setFactorSolverType(solver or "mumps")


# -- Newton ------------------------------------------------------------------------------
class NewtonResult:
    """What a nonlinear solve reports (besides the solution in the problem's state)."""

    def __init__(self, r, reason, iterations, history, wall_time, linear_iterations=0):
        self.r = r
        self.reason = reason
        self.iterations = iterations
        self.history = history
        self.wall_time = wall_time
        self.linear_iterations = linear_iterations


def newton(problem, r0: PETSc.Vec, *, method: str = "newton", linesearch: str = "bt", rtol: float = 1e-10,
           atol: float = 1e-12, stol: float = 1e-13, max_it: int = 50, options: dict | None = None,
           lu_solver: str | None = None, monitor=None) -> NewtonResult:
    r"""Solve ``F_r(r) = 0`` with PETSc SNES from ``r0`` (overwritten with the solution).

    Parameters
    ----------
    problem:
        A :class:`~glep.bvp.problem.ReducedProblem`.
    method:
        ``"newton"`` (``newtonls``) or ``"trust-region"`` (``newtontr``,
        residual descent).
    linesearch:
        ``"bt"`` (backtracking on ``‖F‖²``) or ``"basic"`` (full steps).
    options:
        Extra PETSc options for the ``glep_`` prefix, e.g.
        ``{"snes_monitor": None}``; the options database wins over arguments.

    Raises
    ------
    glep.SolverError
        If SNES diverges (``reason`` = the SNES converged-reason name,
        ``history`` = residual norms).
    """
    comm = problem.comm
    guard = _Guard(comm)
    F = problem.create_vec()
    if method not in ("newton", "trust-region"):
        raise InputError(f"method must be 'newton' or 'trust-region', got {method!r}")
    # The SNES (with its KSP and symbolic factorisation) and the Jacobian matrix are kept on the
    # problem after a converged solve and reused by the next Newton solve with the same solver
    # choices: the nudged solves of an estimator, continuation steps and repeated solves pay the COO
    # preallocation and the symbolic LU once.  A failed solve drops them.
    opts_key = tuple(sorted((str(k), str(v)) for k, v in (options or {}).items()))
    key = (lu_solver or "mumps", method, linesearch, opts_key)
    cache = getattr(problem, "_newton_cache", None)
    if cache is not None and cache["key"] != key:
        problem.release_solver()
        cache = None
    if cache is not None:
        snes, J = cache["snes"], cache["J"]
        problem._newton_cache = None
        collective(comm, problem.jacobian, r0, J)
        snes.cancelMonitor()
    else:
        snes, J = PETSc.SNES().create(comm), collective(comm, problem.jacobian, r0)
    t0 = time.perf_counter()

    # The callbacks stay with the kept SNES: they hold the problem weakly, or problem -> SNES ->
    # callback -> problem would be a cycle through PETSc that Python cannot collect (every kept
    # problem, its mesh and its communicators would then live for ever).
    ref = weakref.ref(problem)

    def fn(snes, x, f):
        with guard.capture(f):
            ref().residual(x, f)

    def jac(snes, x, A, P):
        with guard.capture():
            ref().jacobian(x, A)

    converged = False
    try:
        snes.setOptionsPrefix("glep_")
        snes.setFunction(fn, F)
        snes.setJacobian(jac, J)
        if method == "newton":
            snes.setType("newtonls")
            snes.getLineSearch().setType(linesearch)
        else:
            snes.setType("newtontr")
        snes.setTolerances(rtol=rtol, atol=atol, stol=stol, max_it=max_it)
        snes.setConvergenceHistory()
        configure_lu(snes.getKSP(), comm, lu_solver)
        if monitor is not None:
            snes.setMonitor(monitor)
        with petsc_options("glep_", options):
            snes.setFromOptions()
            snes.solve(None, r0)
        guard.check()
        reason = snes.getConvergedReason()
        hist = [float(h) for h in snes.getConvergenceHistory()[0]]
        its = snes.getIterationNumber()
        lits = snes.getLinearSolveIterations()
        reason_name = snes_reason_name(reason)
        if reason == PETSc.SNES.ConvergedReason.DIVERGED_LINE_SEARCH and hist:
            # The residual cannot fall below its round-off floor ~ ε ‖J‖ ‖r‖ √dim: accept a line-search
            # failure there (fine meshes: ‖J‖ ~ 1/h) instead of reporting a spurious divergence.
            floor = 1e3 * np.finfo(float).eps * J.norm(PETSc.NormType.INFINITY) * max(
                r0.norm(PETSc.NormType.INFINITY), 1.0) * np.sqrt(r0.getSize())
            if np.isfinite(hist[-1]) and hist[-1] <= floor:
                reason, reason_name = 1, "CONVERGED_ROUNDOFF"
        converged = reason > 0
    finally:
        if converged and getattr(problem, "reuse_factorization", True):
            snes.cancelMonitor()  # a user monitor may hold references of its own
            problem._newton_cache = {"key": key, "snes": snes, "J": J}
        else:
            snes.destroy()
            J.destroy()
        F.destroy()
    if not converged:
        raise SolverError(f"SNES did not converge in {its} iterations ({problem.spec.label})",
                          reason=snes_reason_name(reason), history=hist)
    problem.lift(r0)
    return NewtonResult(r0, reason_name, its, hist, time.perf_counter() - t0, lits)


# -- inertia -----------------------------------------------------------------------------
def inertia(A: PETSc.Mat, comm: MPI.Comm) -> tuple[int, int, int]:
    """``(negative, zero, positive)`` eigenvalue counts of a symmetric matrix (LDLᵀ inertia)."""
    ksp = PETSc.KSP().create(comm)
    ksp.setOperators(A)
    ksp.setType("preonly")
    pc = ksp.getPC()
    pc.setType("cholesky")
    if comm.size == 1:
        pc.setFactorSolverType("petsc")
        pc.setFactorOrdering("nd")
    else:
        pc.setFactorSolverType("mumps")
        pc.setFactorSetUpSolverType()
        F = pc.getFactorMatrix()
        F.setMumpsIcntl(24, 1)  # null pivot detection (needed for the zero count)
        F.setMumpsIcntl(13, 1)  # sequential root: the inertia is then exact in parallel
    A.setOption(PETSc.Mat.Option.SYMMETRIC, True)
    ksp.setUp()
    neg, zero, pos = pc.getFactorMatrix().getInertia()
    ksp.destroy()
    return int(neg), int(zero), int(pos)


def morse_index(problem, r: PETSc.Vec | None = None) -> int:
    """Morse index (negative inertia of ``J_r``) of the stationary point ``r``.

    Only defined when test and trial spaces coincide (CBVP, periodic,
    Dirichlet–natural, Robin).  Raises :class:`glep.SolverError` if the
    Hessian is singular (e.g. resonance, or a fold).
    """
    if not problem.spec.symmetric:
        raise InputError(f"{problem.spec.label}: the Morse index needs a variational (symmetric) "
                         "boundary condition; initial/final-value problems are not stationary points "
                         "of a restricted action")
    J = problem.jacobian(r)
    neg, zero, _ = inertia(J, problem.comm)
    J.destroy()
    if zero:
        raise SolverError(f"the action Hessian is singular ({zero} zero pivots): the stationary point is "
                          "degenerate (conjugate point at T, resonance or a fold)", reason="singular")
    return neg


# -- action-gradient flow ------------------------------------------------------------------------------
def gradient_flow(problem, r0: PETSc.Vec, *, metric: str = "H1", dt: float = 1e-2, max_steps: int = 500,
                  rtol: float = 1e-10, atol: float = 1e-12, polish: bool = True,
                  options: dict | None = None) -> NewtonResult:
    r"""Action descent ``M ∂_τ r = −F_r(r)`` by pseudo-transient continuation (PETSc ``TSPSEUDO``).

    Along the flow ``dA/dτ = −F_rᵀ M⁻¹ F_r ≤ 0``: the action decreases, so
    the flow can only settle at a (local) minimum.  At the end the inertia of
    the reduced Hessian is checked; a negative eigenvalue means the end point
    is a saddle (possible only because pseudo-transient steps grow into
    Newton steps) or that the action has no minimum at all (e.g. a harmonic
    oscillator past its first conjugate point), and :class:`glep.SaddleError`
    is raised.

    Parameters
    ----------
    metric:
        ``"L2"`` or ``"H1"`` (Gram matrix of the flow's inner product).
    dt:
        Initial pseudo-time step (the step then grows as the residual falls).
    polish:
        Finish with a few Newton iterations once the flow has converged.
    """
    if not problem.spec.symmetric:
        raise InputError(f"{problem.spec.label}: action descent needs a variational boundary condition")
    comm = problem.comm
    guard = _Guard(comm)
    Mfull = problem.disc.metric(metric)
    M = Mfull.ptap(problem.P)
    J = collective(comm, problem.jacobian, r0)
    A = J.duplicate(copy=True)
    t0 = time.perf_counter()

    def ifunction(ts, t, x, xdot, f):
        with guard.capture(f):
            problem.residual(x, f)
            f.array[:] += (M * xdot).array_r

    def ijacobian(ts, t, x, xdot, shift, Amat, Pmat):
        with guard.capture():
            problem.jacobian(x, J)
            J.copy(Amat, structure=PETSc.Mat.Structure.DIFFERENT_NONZERO_PATTERN)
            Amat.axpy(shift, M, structure=PETSc.Mat.Structure.SUBSET_NONZERO_PATTERN)

    ts = PETSc.TS().create(comm)
    ts.setOptionsPrefix("glep_flow_")
    ts.setType(PETSc.TS.Type.PSEUDO)
    F = problem.create_vec()
    ts.setIFunction(ifunction, F)
    ts.setIJacobian(ijacobian, A)
    ts.setTimeStep(dt)
    ts.setMaxSteps(max_steps)
    ts.setMaxTime(1e30)
    ts.setExactFinalTime(PETSc.TS.ExactFinalTime.STEPOVER)
    ts.setTolerances(rtol=rtol, atol=atol)
    snes = ts.getSNES()
    snes.setType("newtonls")
    snes.getLineSearch().setType("basic")
    snes.setTolerances(max_it=10)
    configure_lu(snes.getKSP(), comm)
    history: list[float] = []

    def mon(ts_, step, t, x):
        with guard.capture():
            problem.residual(x, F)
            history.append(F.norm())

    ts.setMonitor(mon)
    fnorm0 = None

    def post(ts_):
        nonlocal fnorm0
        val = history[-1] if history else None
        if val is not None:
            fnorm0 = fnorm0 or max(val, 1e-300)
            if val <= max(atol, rtol * fnorm0) or not np.isfinite(val):
                ts_.setConvergedReason(PETSc.TS.ConvergedReason.CONVERGED_USER)

    ts.setPostStep(post)
    with petsc_options("glep_flow_", options):
        ts.setFromOptions()
        try:
            ts.solve(r0)
        except PETSc.Error:
            pass
    guard.check()
    steps = ts.getStepNumber()
    ts.destroy()
    A.destroy()
    problem.residual(r0, F)
    fin = F.norm()
    finite = np.isfinite(fin)
    index = None
    if finite:
        try:
            index = morse_index(problem, r0)
        except SolverError:
            index = None
    if index is None or index > 0 or not finite:
        # Was the start already on a non-convex part? Report the inertia found.
        what = (f"Morse index {index}" if index is not None else "a singular or non-finite Hessian")
        raise SaddleError(
            f"action-gradient flow ({metric} metric) ended at a stationary point with {what} after {steps} "
            "pseudo-time steps: it is a saddle, not a minimum of the action (the trajectory passes a "
            "conjugate point, or the action is unbounded below). Descent on the action is only valid at "
            "a minimum; use method='newton' (residual-based), which converges to saddles too")
    M.destroy()
    Mfull.destroy()
    J.destroy()
    res = NewtonResult(r0, "TS_CONVERGED", steps, history, time.perf_counter() - t0)
    if polish:
        pol = newton(problem, r0, rtol=rtol, atol=atol)
        res.history = history + pol.history
        res.iterations += pol.iterations
    problem.lift(r0)
    res.morse_index = index
    return res


# -- deflation -------------------------------------------------------------------------------------------
def deflated_newton(problem, r0: PETSc.Vec, known: list[PETSc.Vec], *, power: float = 2.0, shift: float = 1.0,
                    rtol: float = 1e-10, atol: float = 1e-12, max_it: int = 100,
                    linesearch: str = "basic") -> NewtonResult:
    r"""Newton's method on ``G(r) = m(r) F_r(r)`` with ``m = Π_i (‖r − r_i‖^{−p} + σ)``.

    The known solutions ``r_i`` are roots of ``F_r`` but not of ``G`` (``m``
    blows up there), so Newton is pushed to a *new* solution.  With
    ``δ = −J⁻¹F`` the deflated Newton step is ``τ δ``,
    ``τ = 1/(1 − ∇m·δ/m)``; a backtracking line search on ``‖G‖`` keeps it
    a residual descent (``linesearch="bt"``; the default ``"basic"`` takes full
    deflated steps, which is what lets deflation escape the basin of a known
    solution).  Convergence is declared on ``‖F_r‖`` itself.
    """
    comm = problem.comm
    guard = _Guard(comm)
    F = problem.create_vec()
    dx = problem.create_vec()
    trial = problem.create_vec()
    ksp = PETSc.KSP().create(comm)
    configure_lu(ksp, comm)
    t0 = time.perf_counter()

    Mfull = problem.disc.metric("H1")
    Mr = Mfull.ptap(problem.P)
    Md = problem.create_vec()

    def m_and_grad(x):
        # deflation in the H¹ norm ‖d‖² = dᵀ M d (mesh-independent, unlike the coefficient norm)
        m = 1.0
        terms = []
        for s in known:
            d = x.copy()
            d.axpy(-1.0, s)
            Mr.mult(d, Md)
            nrm = np.sqrt(max(d.dot(Md), 1e-300))
            terms.append((nrm, Md.copy()))
            m *= nrm ** (-power) + shift
        # ∇m = m Σ_i [−p ‖d_i‖^{−p−2} M d_i / (‖d_i‖^{−p} + σ)]
        grad = x.duplicate()
        grad.set(0.0)
        for nrm, Mdi in terms:
            grad.axpy(m * (-power * nrm ** (-power - 2)) / (nrm ** (-power) + shift), Mdi)
        return m, grad

    def gnorm(x):
        with guard.capture(F):
            problem.residual(x, F)
        return m_and_grad(x)[0] * F.norm(), F.norm()

    history = []
    x = r0
    g, f = gnorm(x)
    f0 = f
    for it in range(max_it):
        guard.check()
        history.append(f)
        if f <= max(atol, rtol * f0) and it > 0 or f <= atol:
            break
        J = problem.jacobian(x)
        ksp.setOperators(J)
        ksp.solve(F, dx)
        dx.scale(-1.0)
        m, gm = m_and_grad(x)
        denom = 1.0 - gm.dot(dx) / m
        tau = 1.0 / denom if abs(denom) > 1e-14 else 1.0
        step = tau
        for _ in range(30):
            x.copy(trial)
            trial.axpy(step, dx)
            g_new, f_new = gnorm(trial)
            if linesearch == "basic" and np.isfinite(g_new) and f_new < 1e3 * max(f, 1.0):
                break
            if np.isfinite(g_new) and g_new < (1.0 - 1e-4 * abs(step)) * g or abs(step) < 1e-8:
                break
            step *= 0.5
        trial.copy(x)
        g, f = g_new, f_new
        J.destroy()
    else:
        raise SolverError("deflated Newton did not converge", reason="max_it", history=history)
    guard.check()
    history.append(f)
    ksp.destroy()
    if not np.isfinite(f) or f > max(atol, rtol * f0) and f > atol:
        raise SolverError("deflated Newton did not converge", reason="diverged", history=history)
    problem.lift(x)
    return NewtonResult(x, "DEFLATED_CONVERGED", len(history) - 1, history, time.perf_counter() - t0)


# -- residual descent (Levenberg–Marquardt) -----------------------------------------------------------------
def residual_descent(problem, r0: PETSc.Vec, *, mu: float = 1.0, rtol: float = 1e-10, atol: float = 1e-12,
                     max_it: int = 200) -> NewtonResult:
    r"""Levenberg–Marquardt descent on ``φ(r) = ½‖F_r(r)‖²`` for poor initial guesses.

    Each step solves ``(J_rᵀJ_r + μ I) δ = −J_rᵀ F_r``: for large ``μ`` a short
    steepest-descent step on ``φ`` (not on the action, so saddles of the
    action are reachable), for ``μ → 0`` the Gauss–Newton (= Newton) step.
    ``μ`` shrinks after a successful step (``φ`` decreased) and grows after
    a rejected one, so the final iterations are Newton steps with quadratic
    convergence.
    """
    comm = problem.comm
    guard = _Guard(comm)
    F = problem.create_vec()
    g = problem.create_vec()
    d = problem.create_vec()
    trial = problem.create_vec()
    Ft = problem.create_vec()
    ksp = PETSc.KSP().create(comm)
    configure_lu(ksp, comm)
    t0 = time.perf_counter()

    def res(x, out):
        with guard.capture(out):
            problem.residual(x, out)
        guard.check()
        return out.norm()

    f = res(r0, F)
    f0 = f
    history = [f]
    for _ in range(max_it):
        if f <= max(atol, rtol * f0):
            break
        J = problem.jacobian(r0)
        JtJ = J.transposeMatMult(J)
        JtJ.shift(mu)
        J.multTranspose(F, g)
        ksp.setOperators(JtJ)
        ksp.solve(g, d)
        r0.copy(trial)
        trial.axpy(-1.0, d)
        ft = res(trial, Ft)
        if np.isfinite(ft) and ft < f:
            trial.copy(r0)
            Ft.copy(F)
            f = ft
            mu = max(mu / 5.0, 1e-14)
            history.append(f)
        else:
            mu *= 4.0
        J.destroy()
        JtJ.destroy()
        if mu > 1e20:
            break
    ksp.destroy()
    if not f <= max(atol, rtol * f0):
        raise SolverError("residual descent (Levenberg–Marquardt) stalled: a local minimum of ‖F‖ that is not "
                          "a solution, or too few iterations", reason="stalled", history=history)
    its = len(history) - 1
    pol = newton(problem, r0, rtol=1e-10, atol=atol)  # quadratic finish from the descended state
    problem.lift(r0)
    return NewtonResult(r0, "CONVERGED_RESIDUAL_DESCENT", its + pol.iterations, history + pol.history[1:],
                        time.perf_counter() - t0)
