r"""PETSc solvers for whole-trajectory boundary-value problems.

* :func:`newton` — SNES ``newtonls`` with a line search on the *residual
  norm* (``bt`` by default, or ``basic``), never on the action, which is not
  bounded below at a saddle.  ``method="trust-region"`` (``newtontr``,
  dogleg between the Newton step and steepest descent of ``½‖F‖²``) is an
  alternative globalisation.
* :func:`residual_descent` — Levenberg–Marquardt descent on ``½‖F‖²`` for
  poor initial guesses (reaches saddles of the action, unlike action descent).
* :func:`gradient_flow` — the action-gradient flow ``M ∂_τ r = −F_r(r)``
  (``M`` the ``L²`` or ``H¹`` Gram matrix) with PETSc ``TS`` pseudo-transient
  continuation.  Descent on the action is only meaningful at a minimum: the
  end point's Hessian inertia is checked and a :class:`glep.SaddleError` is
  raised at a saddle.
* :func:`morse_index` / :func:`hessian_report` — number of negative
  eigenvalues of the reduced action Hessian from the inertia of a Cholesky
  (``LDLᵀ``) factorisation (MUMPS, or PETSc's own on one rank), trusted only
  when the smallest-magnitude eigenvalue of ``J_r v = λ M v`` (SLEPc,
  shift-and-invert) is clearly non-zero; otherwise
  :class:`glep.SingularHessianError`.

PETSc options are given per solve as a dict (``options={"snes_monitor": None, "ksp_type": "preonly"}``,
names without a prefix, ``None`` for a flag), as the dolfinx demos do: they are set under the problem's
own prefix ``glep_<id>_`` (``glep_<id>_flow_`` for the gradient flow's ``TS``) for the duration of the
solve and removed afterwards.  Process-wide defaults (:func:`set_default_petsc_options`) are how
``glep compare`` passes its ``-glep_*`` command-line options; a script that wants its own command-line
options calls :func:`use_command_line_options`.  Nothing is read from ``sys.argv`` at import time.

Deflation (several solutions) lives in :mod:`glep.bvp.deflation`.  Every
PETSc object a solver creates is destroyed on every path (``try/finally``).

Convergence is decided collectively (SNES reasons and norms are global); an
exception raised inside a callback on one rank is turned into a NaN residual
so that every rank's solver stops, and is then re-raised on every rank with
the failing rank's message.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields

import numpy as np
from mpi4py import MPI
from petsc4py import PETSc

from glep.errors import GlepError, InputError, SaddleError, SingularHessianError, SolverError
from glep.parallel import agree

_SNES_REASONS = {v: k for k, v in vars(PETSc.SNES.ConvergedReason).items()
                 if isinstance(v, int) and not k.startswith("_")}


def snes_reason_name(code: int) -> str:
    """The name of a SNES converged reason (``CONVERGED_FNORM_ABS``...), or the code itself."""
    return _SNES_REASONS.get(code, str(code))


def ts_reason_name(code: int) -> str:
    """The name of a TS converged reason (``DIVERGED_NONLINEAR_SOLVE``...), or the code itself."""
    names = {v: k for k, v in vars(PETSc.TS.ConvergedReason).items() if isinstance(v, int) and not k.startswith("_")}
    return names.get(code, str(code))


# -- collective error handling -------------------------------------------------------------
class _Guard:
    """Records an exception raised in a PETSc callback on this rank.

    A callback cannot raise through PETSc: :meth:`capture` records the exception (and poisons the
    output vector with NaN so that every rank's solver stops at its next norm), and :meth:`check`, called
    after the solve on every rank, raises it on every rank.
    """

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

    def residual_norm(self, problem, x: PETSc.Vec, out: PETSc.Vec) -> float:
        """``‖F_r(x)‖`` (``F_r`` written into ``out``), an error on any rank raised on every rank."""
        with self.capture(out):
            problem.residual(x, out)
        self.check()
        return out.norm()

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


# -- PETSc options ---------------------------------------------------------------------------
_DEFAULT_OPTIONS: dict[str, str | None] = {}


def set_default_petsc_options(options: Mapping[str, object] | None) -> dict[str, str | None]:
    """Set the PETSc options every finite-element solve of this process receives; return the previous ones.

    ``options`` maps option names *without* the ``glep_`` prefix (``{"snes_monitor": None,
    "ksp_type": "preonly"}``) to values (``None`` for a flag).  Each solve sets them under its problem's
    own prefix (``glep_<id>_``) for the duration of the solve, after the defaults and before the options
    given to that solve (which win).  ``glep compare`` passes its ``-glep_*`` command-line options this way.
    """
    global _DEFAULT_OPTIONS
    previous, _DEFAULT_OPTIONS = _DEFAULT_OPTIONS, _normalise_options(options)
    return previous


def use_command_line_options(argv: list[str] | None = None) -> dict[str, str | None]:
    """Give every solve the ``-glep_*`` options of the command line (``python run.py -glep_snes_monitor``).

    The one documented way for a script to take PETSc options from its command line (nothing is read
    at import time): parses ``argv`` (default ``sys.argv[1:]``) with :func:`glep.cli.command_line_petsc_options`
    and installs the result with :func:`set_default_petsc_options`.  Returns the options (prefix removed).
    """
    import sys

    from glep.cli import command_line_petsc_options

    options = command_line_petsc_options(sys.argv[1:] if argv is None else argv)
    set_default_petsc_options(options)
    return options


def _normalise_options(options: Mapping[str, object] | None) -> dict[str, str | None]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise InputError(f"PETSc options must be a dict of option name -> value (None for a flag), got {options!r}")
    return {str(k).lstrip("-"): (None if v is None else str(v)) for k, v in options.items()}


def environment_options() -> dict[str, str | None]:
    """The ``-glep_*`` options of the ``PETSC_OPTIONS`` environment variable (prefix removed).

    PETSc reads that variable at start-up into its global database, where the per-problem prefixes
    (``glep_<id>_``) would never see them; they are therefore given to every solve, below the process
    defaults and the solve's own options.  ``PETSC_OPTIONS="-glep_snes_monitor" mpirun …`` thus works
    on clusters where the command line of a job is hard to change.
    """
    import os
    import shlex

    from glep.cli import command_line_petsc_options

    text = os.environ.get("PETSC_OPTIONS", "")
    return command_line_petsc_options(shlex.split(text)) if "-glep_" in text else {}


def solve_options(options: Mapping[str, object] | None) -> dict[str, str | None]:
    """The options of one solve: ``PETSC_OPTIONS``'s ``-glep_*`` entries, then the process defaults, then
    ``options`` (each overriding the previous)."""
    return environment_options() | _DEFAULT_OPTIONS | _normalise_options(options)


@contextlib.contextmanager
def petsc_options(prefix: str, options: Mapping[str, object] | None, *, defaults: bool = True):
    """Insert ``options`` under ``prefix`` in the PETSc options database for a block.

    With ``defaults`` the process defaults (:func:`set_default_petsc_options`) come first and
    ``options`` override them (:func:`solve_options`).  Options already in the database under that name
    are left alone; every option inserted is removed on leaving the block, so nothing leaks into another
    problem's solves.
    """
    db = PETSc.Options()
    added = []
    for key, val in (solve_options(options) if defaults else _normalise_options(options)).items():
        full = prefix + key
        if not db.hasName(full):
            db.setValue(full, "" if val is None else val)
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
@dataclass(frozen=True)
class NewtonResult:
    """What a nonlinear solve reports (the solution itself is also left in the problem's state).

    Attributes
    ----------
    r:
        The reduced solution vector (the start vector, overwritten).
    reason:
        Why the solve stopped (a SNES converged-reason name, ``CONVERGED_ROUNDOFF``, ``TS_CONVERGED``...).
    iterations, linear_iterations:
        Nonlinear (Newton or pseudo-time) and linear iterations.
    history:
        ``‖F_r‖`` per iteration.
    wall_time:
        Seconds spent.
    morse_index, hessian_report:
        Set by the gradient flow, which checks the end point's inertia (``None`` otherwise).
    """

    r: PETSc.Vec
    reason: str
    iterations: int
    history: list
    wall_time: float
    linear_iterations: int = 0
    morse_index: int | None = None
    hessian_report: HessianReport | None = None


def newton(problem, r0: PETSc.Vec, *, method: str = "newton", linesearch: str = "bt", rtol: float = 1e-10,
           atol: float = 1e-12, stol: float = 1e-13, max_it: int = 50, options: dict | None = None,
           lu_solver: str | None = None, monitor=None) -> NewtonResult:
    r"""Solve ``F_r(r) = 0`` with PETSc SNES from ``r0`` (overwritten with the solution).

    Parameters
    ----------
    problem:
        A :class:`~glep.bvp.reduced.ReducedProblem`.
    method:
        ``"newton"`` (``newtonls``) or ``"trust-region"`` (``newtontr``,
        residual descent).
    linesearch:
        ``"bt"`` (backtracking on ``‖F‖²``) or ``"basic"`` (full steps).
    options:
        PETSc options for this solve, without prefix, e.g. ``{"snes_monitor": None}``; set under the
        problem's prefix ``problem.options_prefix`` (``glep_<id>_``) during the solve, after the
        process defaults (:func:`set_default_petsc_options`).

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
    options = solve_options(options)
    prefix = problem.options_prefix
    opts_key = tuple(sorted(options.items(), key=str))
    key = (lu_solver or "mumps", method, linesearch, opts_key)
    cache = problem._newton_cache
    if cache is not None and cache["key"] != key:
        problem.release_solver()
        cache = None
    if cache is not None:
        snes, J = cache["snes"], cache["J"]
        problem._newton_cache = None
        agree(lambda: problem.jacobian(r0, J), comm, "assembling the Jacobian")
        snes.cancelMonitor()
    else:
        snes, J = PETSc.SNES().create(comm), agree(lambda: problem.jacobian(r0), comm, "assembling the Jacobian")
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
        snes.setOptionsPrefix(prefix)
        snes.setFunction(fn, F)
        snes.setJacobian(jac, J)
        if method == "newton":
            snes.setType("newtonls")
            snes.getLineSearch().setType(linesearch)
        else:
            snes.setType("newtontr")
        snes.setTolerances(rtol=rtol, atol=atol, stol=stol, max_it=max_it)
        roundoff = _RoundoffTest(J, r0)
        snes.setConvergenceTest(roundoff)
        snes.setConvergenceHistory()
        configure_lu(snes.getKSP(), comm, lu_solver)
        if monitor is not None:
            snes.setMonitor(monitor)
        with petsc_options(prefix, options, defaults=False):  # already merged above
            snes.setFromOptions()
            snes.solve(None, r0)
        guard.check()
        reason = snes.getConvergedReason()
        hist = [float(h) for h in snes.getConvergenceHistory()[0]]
        its = snes.getIterationNumber()
        lits = snes.getLinearSolveIterations()
        reason_name = "CONVERGED_ROUNDOFF" if roundoff.at_floor else snes_reason_name(reason)
        if reason == PETSc.SNES.ConvergedReason.DIVERGED_LINE_SEARCH and hist and roundoff.below(
                hist[-1], r0.norm(PETSc.NormType.INFINITY)):
            reason, reason_name = 1, "CONVERGED_ROUNDOFF"  # no decrease possible below the floor
        converged = reason > 0
    finally:
        if converged and problem.reuse_factorization:
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


class _RoundoffTest:
    r"""SNES convergence test: PETSc's default, plus convergence at the residual's round-off floor.

    Evaluating ``F_r`` in floating point has an error of about ``ε ‖J‖ ‖r‖ √dim`` (each residual entry
    sums terms of size ``‖J‖‖r‖``; on fine time meshes ``‖J‖ ~ 1/h``).  Once ``‖F_r‖`` is below
    ``floor = 10³ ε ‖J‖_∞ max(‖r‖_∞, 1) √dim`` and an iteration no longer halves it, Newton has done all
    it can: the solve is converged at round-off (reported as ``CONVERGED_ROUNDOFF``) instead of
    iterating to ``max_it`` against an absolute tolerance below the floor.
    """

    def __init__(self, J: PETSc.Mat, r: PETSc.Vec):
        self.scale = 1e3 * np.finfo(float).eps * J.norm(PETSc.NormType.INFINITY) * np.sqrt(r.getSize())
        self.previous = np.inf
        self.at_floor = False

    def below(self, fnorm: float, xnorm: float = 1.0) -> bool:
        return bool(np.isfinite(fnorm) and fnorm <= self.scale * max(xnorm, 1.0))

    def __call__(self, snes: PETSc.SNES, its: int, norms: tuple[float, float, float]) -> int:
        xnorm, ynorm, fnorm = norms
        R = PETSc.SNES.ConvergedReason
        if its == 0:
            self.previous, self.at_floor, self.fnorm0 = np.inf, False, fnorm
        rtol, atol, stol, _ = snes.getTolerances()
        if not np.isfinite(fnorm):
            return R.DIVERGED_FNORM_NAN
        if fnorm <= atol:
            return R.CONVERGED_FNORM_ABS
        if its > 0 and fnorm <= rtol * self.fnorm0:
            return R.CONVERGED_FNORM_RELATIVE
        if its > 0 and ynorm <= stol * xnorm:
            return R.CONVERGED_SNORM_RELATIVE
        stalled = fnorm > 0.5 * self.previous
        self.previous = fnorm
        if its > 0 and stalled and self.below(fnorm, snes.getSolution().norm(PETSc.NormType.INFINITY)):
            self.at_floor = True
            return R.CONVERGED_FNORM_ABS
        return R.ITERATING


# -- inertia -----------------------------------------------------------------------------
def inertia(A: PETSc.Mat, comm: MPI.Comm, *, pivoting: bool = False) -> tuple[int, int, int]:
    """``(negative, zero, positive)`` eigenvalue counts of a symmetric matrix (LDLᵀ inertia).

    On one rank without ``pivoting``: PETSc's own Cholesky (nested dissection), fine for the banded
    Jacobians of time meshes.  Otherwise MUMPS ``LDLᵀ``, which pivots (``2 × 2`` blocks, needed by an
    indefinite space–time Hessian), with null-pivot detection (the zero count) and a sequential root
    (the count is then exact in parallel).
    """
    ksp = PETSc.KSP().create(comm)
    try:
        ksp.setOperators(A)
        ksp.setType("preonly")
        pc = ksp.getPC()
        pc.setType("cholesky")
        if comm.size == 1 and not pivoting:
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
    finally:
        ksp.destroy()
    return int(neg), int(zero), int(pos)


@dataclass(frozen=True)
class HessianReport:
    r"""Morse index of a stationary point with the numbers that make it trustworthy.

    Attributes
    ----------
    index:
        Number of negative eigenvalues of the reduced action Hessian ``J_r`` (LDLᵀ inertia).
    min_eigenvalue:
        ``λ_min``, the eigenvalue of smallest magnitude of ``J_r v = λ M v`` (``M`` the reduced ``L²``
        Gram matrix): the finite-element approximation of the Jacobi operator's eigenvalue, independent
        of ``h`` up to the discretisation error.
    max_eigenvalue:
        ``λ_max``, the eigenvalue of largest magnitude (``~ 1/h²``).
    ratio:
        ``|λ_min| / |λ_max|``.
    tolerance:
        The threshold that ``|λ_min|`` exceeded (see :func:`hessian_report`).
    """

    index: int
    min_eigenvalue: float
    max_eigenvalue: float
    ratio: float
    tolerance: float


def _cell_size(mesh) -> float:
    """Largest element length of an interval mesh (every rank)."""
    x = mesh.geometry.x[:, 0]
    cells = mesh.geometry.dofmaps[0] if hasattr(mesh.geometry, "dofmaps") else mesh.geometry.dofmap
    nloc = mesh.topology.index_map(mesh.topology.dim).size_local
    h = float(np.max(np.abs(np.diff(x[cells[:nloc]], axis=1)))) if nloc else 0.0
    return mesh.comm.allreduce(h, op=MPI.MAX)


def _eigenpair(A: PETSc.Mat, B: PETSc.Mat, comm: MPI.Comm, which: str) -> tuple[float, PETSc.Vec]:
    """One eigenpair of the symmetric-definite pencil ``A v = λ B v`` (SLEPc Krylov–Schur).

    ``which="smallest"``: smallest magnitude, by shift-and-invert at ``0`` (MUMPS LU of ``A``);
    ``which="largest"``: largest magnitude (LU of ``B``).
    """
    from slepc4py import SLEPc

    eps = SLEPc.EPS().create(comm)
    v = A.createVecRight()
    try:
        eps.setOperators(A, B)
        eps.setProblemType(SLEPc.EPS.ProblemType.GHEP)
        eps.setType(SLEPc.EPS.Type.KRYLOVSCHUR)
        eps.setDimensions(nev=1)
        st = eps.getST()
        if which == "smallest":
            eps.setTarget(0.0)
            eps.setWhichEigenpairs(SLEPc.EPS.Which.TARGET_MAGNITUDE)
            st.setType(SLEPc.ST.Type.SINVERT)
        else:
            eps.setWhichEigenpairs(SLEPc.EPS.Which.LARGEST_MAGNITUDE)
            st.setType(SLEPc.ST.Type.SHIFT)
        configure_lu(st.getKSP(), comm)
        eps.setTolerances(tol=1e-12 if which == "smallest" else 1e-8, max_it=2000)
        # a deterministic start vector: the same eigenvector sign and iterates on any number of ranks
        v0 = A.createVecRight()
        v0.array[:] = 1.0 + 0.5 * np.sin(np.arange(*v0.getOwnershipRange()))
        eps.setInitialSpace([v0])
        v0.destroy()
        eps.solve()
        if eps.getConverged() < 1:
            raise SolverError(f"SLEPc found no {which}-magnitude eigenvalue of the action Hessian",
                              reason=str(eps.getConvergedReason()))
        lam = eps.getEigenpair(0, v)
        return float(lam.real), v
    except Exception:
        v.destroy()
        raise
    finally:
        eps.destroy()


def default_singular_tol(problem, v: PETSc.Vec, J: PETSc.Mat, M: PETSc.Mat, lam_max: float) -> float:
    r"""Threshold below which ``|λ_min|`` cannot be told from zero on this mesh.

    The finite-element eigenvalues of ``−(m q')'`` with Lagrange ``P_p`` elements carry the relative error
    ``c_p (κh²)^p``, ``c_p = (p!/(2p)!)²/(2p+1)`` (``1/12`` for P1, ``1/720`` for P2: the Padé error of
    the discrete dispersion relation, Ainsworth 2004), where ``κ = vᵀKv/vᵀMv`` is the squared frequency
    of the eigenvector (``K`` the stiffness matrix) and ``h`` the largest element.  The eigenvalue near
    zero is a difference of a kinetic part ``≈ m κ`` and a potential part, so its absolute error is about
    ``c_p (κh²)^p m κ``; the effective mass ``m`` is estimated by ``max_i J_ii / K_ii``.  On the harmonic
    oscillator at resonance (exact eigenvalue 0) the discrete ``|λ_min|`` is within a factor 2 of this
    estimate for P1 and P2; the tolerance is four times it (variable coefficients, quadrature and graded
    meshes change the constant), plus the round-off floor ``10² ε |λ_max|`` (the backward error of the
    shift-and-invert solve, ``~ ε ‖M⁻¹J‖``).  A smaller ``|λ_min|`` may
    change sign with ``h``, ``p`` or the partition, so its sign (the index) is not trusted.
    """
    from math import factorial

    disc = problem.disc
    p = int(disc.degree)
    h = _cell_size(disc.mesh)
    K = problem.gram("H1").copy()
    K.axpy(-1.0, M)
    Kv, Mv = K.createVecLeft(), M.createVecLeft()
    dJ, dK = J.getDiagonal(), K.getDiagonal()
    try:
        K.mult(v, Kv)
        M.mult(v, Mv)
        kappa = max(v.dot(Kv) / v.dot(Mv), 0.0)
        kd = dK.array_r
        ratio = np.abs(dJ.array_r[kd > 0]) / kd[kd > 0]
        mass = comm_max(problem.comm, float(ratio.max()) if ratio.size else 0.0)
    finally:
        for obj in (K, Kv, Mv, dJ, dK):
            obj.destroy()
    c_p = (factorial(p) / factorial(2 * p)) ** 2 / (2 * p + 1)
    return 4.0 * c_p * (kappa * h * h) ** p * mass * kappa + 1e2 * np.finfo(float).eps * abs(lam_max)


def comm_max(comm: MPI.Comm, value: float) -> float:
    return float(comm.allreduce(value, op=MPI.MAX))


_CAUSES = "(a degenerate stationary point: resonance, a fold, or a continuous symmetry)"


def hessian_report(problem, r: PETSc.Vec | None = None, *, singular_tol: float | None = None) -> HessianReport:
    r"""Morse index of the stationary point ``r`` and the smallest and largest Hessian eigenvalues.

    The index is the negative inertia of ``J_r`` (LDLᵀ); by Sylvester's law it is also the number of
    negative eigenvalues of the pencil ``J_r v = λ M v`` (``M`` the reduced ``L²`` Gram matrix), whose
    smallest-magnitude eigenvalue ``λ_min`` (SLEPc, shift-and-invert at 0) approximates the Jacobi
    operator's eigenvalue independently of ``h``.  The index is trusted only if ``|λ_min|`` exceeds
    ``singular_tol`` (default :func:`default_singular_tol`, from the discretisation error of ``λ_min``).

    Raises
    ------
    glep.SingularHessianError
        If ``|λ_min| ≤ singular_tol`` or the factorisation finds a zero pivot: a conjugate point lies at or
        near ``T`` and the index is ambiguous.
    """
    if not problem.spec.symmetric:
        raise InputError(f"{problem.spec.label}: the Morse index needs a variational (symmetric) "
                         "boundary condition; initial/final-value problems are not stationary points "
                         "of a restricted action")
    if singular_tol is not None and not (np.isfinite(singular_tol) and singular_tol >= 0):
        raise InputError(f"singular_tol must be a finite number >= 0 (or None), got {singular_tol!r}")

    def tolerance(v, J, M, lam_max):
        return default_singular_tol(problem, v, J, M, lam_max)

    why = f"a conjugate point lies at or near the boundary T {_CAUSES}"
    return pencil_report(problem, r, singular_tol, tolerance=tolerance, label="", why=why,
                         hint=", or the mesh is too coarse to tell λ_min from 0 (refine it, or pass singular_tol)")


def pencil_report(problem, r: PETSc.Vec | None, singular_tol: float | None, *, tolerance, label: str, why: str,
                  hint: str = "", pivoting: bool = False) -> HessianReport:
    r"""The :class:`HessianReport` of ``J_r v = λ M v`` for any problem with ``jacobian``, ``gram``, ``comm``.

    Shared by the time-mesh problems (:func:`hessian_report`) and the space–time ones
    (:func:`glep.bvp.spacetime.hessian_report`): one LDLᵀ inertia (:func:`inertia`), the largest and the
    smallest-magnitude eigenpairs (:func:`_eigenpair`), and the threshold ``tolerance(v_min, J, M, λ_max)``
    (or ``singular_tol``) below which ``λ_min`` cannot be told from zero.  ``label`` prefixes the messages,
    ``why`` says what a singular Hessian means for this kind of problem.
    """
    comm = problem.comm
    J = agree(lambda: problem.jacobian(r), comm, "assembling the Jacobian")
    M = problem.gram("L2")
    vecs: list[PETSc.Vec] = []
    try:
        neg, zero, _ = inertia(J, comm, pivoting=pivoting)
        lam_max, vmax = _eigenpair(J, M, comm, "largest")
        vecs.append(vmax)
        if zero:
            raise SingularHessianError(
                f"{label}the action Hessian is singular ({zero} zero pivots): the Morse index ({neg} negative "
                f"eigenvalues) is ambiguous because {why}",
                min_eigenvalue=0.0, max_eigenvalue=lam_max, tolerance=float(singular_tol or 0.0), index=neg)
        lam_min, vmin = _eigenpair(J, M, comm, "smallest")
        vecs.append(vmin)
        tol = float(tolerance(vmin, J, M, lam_max) if singular_tol is None else singular_tol)
    finally:
        for obj in [J, *vecs]:
            obj.destroy()
    ratio = abs(lam_min) / abs(lam_max)
    if not abs(lam_min) > tol:
        raise SingularHessianError(
            f"{label}the action Hessian is numerically singular: its smallest eigenvalue λ_min = {lam_min:.3e} "
            f"(|λ_min|/|λ_max| = {ratio:.3e}) is below the tolerance {tol:.3e}, so the Morse index "
            f"({neg} negative eigenvalues) is ambiguous because {why}{hint}", min_eigenvalue=lam_min,
            max_eigenvalue=lam_max, tolerance=tol, index=neg)
    return HessianReport(int(neg), lam_min, lam_max, ratio, tol)


def morse_index(problem, r: PETSc.Vec | None = None, *, singular_tol: float | None = None) -> int:
    """Morse index (negative inertia of ``J_r``) of the stationary point ``r``; see :func:`hessian_report`.

    Only defined when test and trial spaces coincide (CBVP, periodic,
    Dirichlet–natural, Robin).  Raises :class:`glep.SingularHessianError` (a
    :class:`glep.SolverError`) if the Hessian is numerically singular (e.g.
    resonance, or a fold), since the index is then ambiguous.
    """
    return hessian_report(problem, r, singular_tol=singular_tol).index


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
    t0 = time.perf_counter()
    history: list[float] = []
    owned: list = []  # every PETSc object created here, destroyed on every path
    try:
        steps, failure = _run_flow(problem, r0, metric, dt, max_steps, rtol, atol, options, history, owned)
    finally:
        for obj in owned:
            obj.destroy()
    F = problem.create_vec()
    try:
        problem.residual(r0, F)
        fin = F.norm()
    finally:
        F.destroy()
    finite = bool(np.isfinite(fin))
    if failure is not None:
        raise SolverError(f"action-gradient flow ({metric} metric) failed after {steps} pseudo-time steps: "
                          f"{failure}" + ("" if finite else "; the state is no longer finite"),
                          reason=failure, history=history)
    index, hreport = None, None
    if finite:
        try:
            hreport = hessian_report(problem, r0)
            index = hreport.index
        except SolverError:
            index = None
    if index is None or index > 0:
        # Was the start already on a non-convex part? Report the inertia found.
        what = (f"Morse index {index}" if index is not None else "a singular or non-finite Hessian")
        raise SaddleError(
            f"action-gradient flow ({metric} metric) ended at a stationary point with {what} after {steps} "
            "pseudo-time steps: it is a saddle, not a minimum of the action (the trajectory passes a "
            "conjugate point, or the action is unbounded below). Descent on the action is only valid at "
            "a minimum; use method='newton' (residual-based), which converges to saddles too")
    if polish:
        pol = newton(problem, r0, rtol=rtol, atol=atol)
        history, steps = history + pol.history, steps + pol.iterations
    problem.lift(r0)
    return NewtonResult(r0, "TS_CONVERGED", steps, history, time.perf_counter() - t0, morse_index=index,
                        hessian_report=hreport)


def _run_flow(problem, r0, metric, dt, max_steps, rtol, atol, options, history, owned) -> tuple[int, str | None]:
    """The TS pseudo-transient solve of :func:`gradient_flow`; returns (steps, failure reason or None).

    Every PETSc object it creates is appended to ``owned`` (the caller destroys them).
    """
    comm = problem.comm
    guard = _Guard(comm)
    M = problem.gram(metric)
    J = agree(lambda: problem.jacobian(r0), comm, "assembling the Jacobian")
    owned.append(J)
    A = J.duplicate(copy=True)
    owned.append(A)
    F = problem.create_vec()
    owned.append(F)
    ts = PETSc.TS().create(comm)
    owned.append(ts)

    def ifunction(ts, t, x, xdot, f):
        with guard.capture(f):
            problem.residual(x, f)
            f.array[:] += (M * xdot).array_r

    def ijacobian(ts, t, x, xdot, shift, Amat, Pmat):
        with guard.capture():
            problem.jacobian(x, J)
            J.copy(Amat, structure=PETSc.Mat.Structure.DIFFERENT_NONZERO_PATTERN)
            Amat.axpy(shift, M, structure=PETSc.Mat.Structure.SUBSET_NONZERO_PATTERN)

    ts.setOptionsPrefix(problem.options_prefix + "flow_")
    ts.setType(PETSc.TS.Type.PSEUDO)
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
    Fm = problem.create_vec()
    owned.append(Fm)

    def mon(ts_, step, t, x):
        with guard.capture():
            problem.residual(x, Fm)
            history.append(Fm.norm())

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
    failure = None
    # the defaults under the problem's prefix (``-glep_flow_ts_monitor`` reaches ``glep_<id>_flow_ts_monitor``),
    # this solve's options under the TS's own prefix
    with petsc_options(problem.options_prefix, None), \
            petsc_options(problem.options_prefix + "flow_", options, defaults=False):
        ts.setFromOptions()
        try:
            ts.solve(r0)
        except PETSc.Error as exc:  # a failed pseudo-time step: reported below with the TS reason
            reason = ts_reason_name(ts.getConvergedReason())
            failure = f"{reason} (PETSc error {exc.ierr})"
    guard.check()
    steps = ts.getStepNumber()
    if failure is None and ts.getConvergedReason() < 0:
        failure = ts_reason_name(ts.getConvergedReason())
    return steps, failure


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
    t0 = time.perf_counter()
    F, g, d, trial, Ft = (problem.create_vec() for _ in range(5))
    ksp = PETSc.KSP().create(comm)
    configure_lu(ksp, comm)
    owned: list = [F, g, d, trial, Ft, ksp]

    def res(x, out):
        return guard.residual_norm(problem, x, out)

    try:
        f = res(r0, F)
        f0 = f
        history = [f]
        for _ in range(max_it):
            if f <= max(atol, rtol * f0):
                break
            J = agree(lambda: problem.jacobian(r0), comm, "assembling the Jacobian")
            owned.append(J)
            JtJ = J.transposeMatMult(J)
            owned.append(JtJ)
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
            for obj in (owned.pop(), owned.pop()):
                obj.destroy()
            if mu > 1e20:
                break
    finally:
        for obj in owned:
            obj.destroy()
    if not f <= max(atol, rtol * f0):
        raise SolverError("residual descent (Levenberg–Marquardt) stalled: a local minimum of ‖F‖ that is not "
                          "a solution, or too few iterations", reason="stalled", history=history)
    its = len(history) - 1
    pol = newton(problem, r0, rtol=1e-10, atol=atol)  # quadratic finish from the descended state
    problem.lift(r0)
    return NewtonResult(r0, "CONVERGED_RESIDUAL_DESCENT", its + pol.iterations, history + pol.history[1:],
                        time.perf_counter() - t0)


# -- solvers as objects -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _SNESNewton:
    """The settings shared by the SNES Newton methods (see :func:`newton`)."""

    rtol: float = 1e-10
    atol: float = 1e-12
    stol: float = 1e-13
    max_it: int = 50
    options: Mapping | None = None
    lu_solver: str | None = None
    monitor: Callable | None = None

    def _run(self, problem, r0: PETSc.Vec, method: str, linesearch: str = "bt") -> NewtonResult:
        return newton(problem, r0, method=method, linesearch=linesearch, rtol=self.rtol, atol=self.atol,
                      stol=self.stol, max_it=self.max_it, options=self.options, lu_solver=self.lu_solver,
                      monitor=self.monitor)


@dataclass(frozen=True)
class Newton(_SNESNewton):
    r"""Newton's method on ``F_r(r) = 0`` (PETSc SNES ``newtonls``), globalised by a line search on ``‖F_r‖²``.

    Attributes: ``rtol``, ``atol``, ``stol``, ``max_it`` (SNES tolerances), ``options`` (PETSc options for
    the solve, without prefix), ``lu_solver`` (``"mumps"`` by default), ``monitor`` (a SNES monitor),
    ``linesearch`` (``"bt"`` backtracking or ``"basic"`` full steps).  See :func:`newton`.
    """

    linesearch: str = "bt"

    def __post_init__(self):
        if self.linesearch not in ("bt", "basic"):
            raise InputError(f"linesearch must be 'bt' or 'basic', got {self.linesearch!r}")

    def solve(self, problem, r0: PETSc.Vec) -> NewtonResult:
        """Solve from ``r0`` (overwritten with the solution)."""
        return self._run(problem, r0, "newton", self.linesearch)


@dataclass(frozen=True)
class TrustRegion(_SNESNewton):
    r"""Newton's method with a trust region (SNES ``newtontr``: dogleg between the Newton step and steepest
    descent of ``½‖F_r‖²``).  Attributes as for :class:`Newton` (no line search)."""

    def solve(self, problem, r0: PETSc.Vec) -> NewtonResult:
        """Solve from ``r0`` (overwritten with the solution)."""
        return self._run(problem, r0, "trust-region")


@dataclass(frozen=True)
class ResidualDescent:
    r"""Levenberg–Marquardt descent on ``½‖F_r‖²`` then a Newton finish (:func:`residual_descent`).

    Attributes: ``mu`` (initial damping), ``rtol``, ``atol``, ``max_it``.
    """

    mu: float = 1.0
    rtol: float = 1e-10
    atol: float = 1e-12
    max_it: int = 200

    def solve(self, problem, r0: PETSc.Vec) -> NewtonResult:
        """Solve from ``r0`` (overwritten with the solution)."""
        return residual_descent(problem, r0, mu=self.mu, rtol=self.rtol, atol=self.atol, max_it=self.max_it)


@dataclass(frozen=True)
class GradientFlow:
    r"""Action descent ``M ∂_τ r = −F_r(r)`` (PETSc ``TSPSEUDO``), minima only (:func:`gradient_flow`).

    Attributes: ``metric`` (``"L2"`` or ``"H1"``), ``dt``, ``max_steps``, ``rtol``, ``atol``, ``polish``,
    ``options`` (PETSc options of the ``TS``, set under the problem's prefix followed by ``flow_``).
    """

    metric: str = "H1"
    dt: float = 1e-2
    max_steps: int = 500
    rtol: float = 1e-10
    atol: float = 1e-12
    polish: bool = True
    options: Mapping | None = None

    def __post_init__(self):
        if self.metric not in ("L2", "H1"):
            raise InputError(f"metric must be 'L2' or 'H1', got {self.metric!r}")

    def solve(self, problem, r0: PETSc.Vec) -> NewtonResult:
        """Descend from ``r0`` (overwritten with the minimum); :class:`glep.SaddleError` at a saddle."""
        return gradient_flow(problem, r0, metric=self.metric, dt=self.dt, max_steps=self.max_steps,
                             rtol=self.rtol, atol=self.atol, polish=self.polish, options=self.options)


@dataclass(frozen=True)
class Deflation:
    r"""The first solution not in ``known`` that deflated Newton reaches (:func:`glep.bvp.find_solutions`).

    Attributes: ``known`` (solutions to exclude), the starts (``modes``, ``amplitudes``,
    ``shooting_momenta``), the budget (``max_attempts``, ``max_newton_iterations``) and ``search``, the
    options of :func:`glep.bvp.deflation.deflation_search` (``power``, ``shift``, ``max_it``,
    ``distinct_tol``, ``rtol``, ``atol``, ``min_step``, ``polish``).
    """

    known: tuple = ()
    modes: tuple = (1, 2, 3)
    amplitudes: tuple = (1.0, 2.0, 4.0)
    shooting_momenta: object = None
    max_attempts: int | None = None
    max_newton_iterations: int | None = None
    search: Mapping = field(default_factory=dict)

    def __post_init__(self):
        unknown = set(self.search) - DEFLATION_SEARCH_OPTIONS
        if unknown:
            raise InputError(f"unknown deflation option(s) {sorted(unknown)}; "
                             f"valid: {sorted(DEFLATION_SEARCH_OPTIONS)}")


DEFLATION_SEARCH_OPTIONS = frozenset({"power", "shift", "max_it", "distinct_tol", "rtol", "atol", "min_step",
                                      "polish"})
_DEFLATION_FIELDS = ("modes", "amplitudes", "shooting_momenta", "max_attempts", "max_newton_iterations")

Solver = Newton | TrustRegion | ResidualDescent | GradientFlow | Deflation


def solver_from_keywords(method: str = "newton", *, known=None, metric: str = "H1", **kw) -> Solver:
    """The solver object that the keyword API (``method="newton"``, ``rtol=``...) of :func:`glep.bvp.solve_bvp`
    names: the one place where the keywords are mapped to :class:`Newton`, :class:`TrustRegion`,
    :class:`ResidualDescent`, :class:`GradientFlow` and :class:`Deflation`.

    Raises
    ------
    glep.InputError
        For an unknown method or a keyword the method does not take.
    """
    kinds = {"newton": Newton, "trust-region": TrustRegion, "residual-descent": ResidualDescent,
             "gradient-flow": GradientFlow, "deflation": Deflation}
    if method not in kinds:
        raise InputError(f"method must be one of {', '.join(repr(m) for m in kinds)}, got {method!r}")
    if method == "deflation":
        own = {k: kw.pop(k) for k in _DEFLATION_FIELDS if k in kw}
        return Deflation(known=tuple(known or ()), search=kw, **own)
    cls = kinds[method]
    if method == "gradient-flow":
        kw["metric"] = metric
    valid = {f.name for f in fields(cls)}
    unknown = set(kw) - valid
    if unknown:
        raise InputError(f"unknown option(s) {sorted(unknown)} for method={method!r}; valid: {sorted(valid)}")
    return cls(**kw)
