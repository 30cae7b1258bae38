r"""Newton with a Krylov linear solver for space–time problems too large for a direct factorisation (2+1-D).

The space–time Jacobian of a wave-like density is symmetric and *indefinite*: for the wave with the
CBVP it is ``J = K_t ⊗ M_x − M_t ⊗ K_x`` (Kronecker form of the ``Q1`` discretisation), with
eigenvalues ``ν_j² − ω_k²`` that cluster at zero near resonant pairs of temporal and spatial
frequencies.  Multigrid or incomplete factorisations of ``J`` itself fail (they need definiteness).
The default here is MINRES preconditioned by the **elliptic companion**

    P = K_t + K_x     (the space–time Laplacian, ``∫∫ ∂_tu ∂_tv + ∇_xu·∇_xv``, reduced like ``J``),

symmetric positive definite and spectrally close to ``|J|`` (``P⁻¹J`` has eigenvalues
``(ν² − ω²)/(ν² + ω²) ∈ [−1, 1]``).  ``P⁻¹`` is applied by an inner conjugate-gradient solve with
algebraic multigrid (PETSc ``PCKSP``: CG + ``GAMG`` to relative tolerance 1e-10, so that the
preconditioner is linear to that accuracy, as MINRES requires).  Measured on the 2+1-D wave CBVP with
smooth data (``benchmarks/bench_spacetime.py``) the MINRES iterations stay nearly constant as the mesh
grows (5, 13, 13, 14 for ``n = 8, 16, 32, 48``), whereas a *single* GAMG cycle as preconditioner lets
them grow from 209 to 14 610 between ``n = 8`` and ``32``: the near-resonant eigenvalues of ``P⁻¹J``
approach zero as the mesh is refined, and only an accurate ``P⁻¹`` keeps rough components out of the
Krylov space.  The counts are reported (``SpaceTimeSolution.linear_iterations``: outer iterations).
Any PETSc ``KSP``/``PC`` can be chosen through ``options`` (set under the problem's prefix; the inner
solver's options carry the extra prefix ``ksp_``), and ``preconditioner="jacobian"`` preconditions with
``J`` itself (e.g. additive Schwarz with LU blocks).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

from petsc4py import PETSc

from glep.bvp.solvers import NewtonResult, _Guard, petsc_options, snes_reason_name, solve_options
from glep.errors import InputError, SolverError
from glep.parallel import agree

DEFAULT_OPTIONS = {"ksp_type": "minres", "ksp_rtol": 1e-10, "ksp_max_it": 5000, "pc_type": "ksp",
                   "ksp_ksp_type": "cg", "ksp_pc_type": "gamg", "ksp_ksp_rtol": 1e-10}


@dataclass(frozen=True)
class KrylovNewton:
    """Newton (SNES ``newtonls``) with an iterative linear solve (see the module docstring).

    Attributes:
        preconditioner: ``"elliptic"`` (the SPD companion ``K_t + K_x``) or ``"jacobian"`` (``J`` itself).
        options: PETSc options without prefix, over :data:`DEFAULT_OPTIONS` (MINRES, ``P⁻¹`` by CG + GAMG).
        rtol, atol, max_it: SNES tolerances.
    """

    preconditioner: str = "elliptic"
    options: Mapping | None = None
    rtol: float = 1e-9
    atol: float = 1e-11
    max_it: int = 20

    def __post_init__(self):
        if self.preconditioner not in ("elliptic", "jacobian"):
            raise InputError(f"preconditioner must be 'elliptic' or 'jacobian', got {self.preconditioner!r}")

    def solve(self, problem, r0: PETSc.Vec) -> NewtonResult:
        """Solve ``F_r(r) = 0`` from ``r0`` (overwritten); :class:`glep.SolverError` if SNES or the KSP fails."""
        comm = problem.comm
        guard = _Guard(comm)
        F = problem.create_vec()
        J = agree(lambda: problem.jacobian(r0), comm, "assembling the Jacobian")
        Pm = J
        if self.preconditioner == "elliptic":
            Pm = problem.gram("t").copy()
            Pm.axpy(1.0, problem.gram("x"))
            Pm.setOption(PETSc.Mat.Option.SPD, True)
        ref = weakref.ref(problem)

        def fn(snes, x, f):
            with guard.capture(f):
                ref().residual(x, f)

        def jac(snes, x, A, P):
            with guard.capture():
                ref().jacobian(x, A)

        snes = PETSc.SNES().create(comm)
        t0 = time.perf_counter()
        prefix = problem.options_prefix
        try:
            snes.setOptionsPrefix(prefix)
            snes.setFunction(fn, F)
            snes.setJacobian(jac, J, Pm)
            snes.setType("newtonls")
            snes.getLineSearch().setType("basic")
            snes.setTolerances(rtol=self.rtol, atol=self.atol, max_it=self.max_it)
            snes.setConvergenceHistory()
            with petsc_options(prefix, DEFAULT_OPTIONS | solve_options(self.options), defaults=False):
                snes.setFromOptions()
                snes.solve(None, r0)
            guard.check()
            reason = snes.getConvergedReason()
            its, lits = snes.getIterationNumber(), snes.getLinearSolveIterations()
            hist = [float(h) for h in snes.getConvergenceHistory()[0]]
            ksp = snes.getKSP()
            kreason, ktype = ksp.getConvergedReason(), ksp.getType()
        finally:
            snes.destroy()
            J.destroy()
            if Pm is not J:
                Pm.destroy()
            F.destroy()
        if reason <= 0:
            raise SolverError(f"space-time {problem.spec.label}: Newton with {ktype} did not converge in {its} "
                              f"iterations ({lits} Krylov iterations; last KSP reason {kreason}: a negative reason "
                              "means the Krylov solver stopped first — raise ksp_max_it or change the preconditioner)",
                              reason=snes_reason_name(reason), history=hist)
        problem.lift(r0)
        return NewtonResult(r0, snes_reason_name(reason), its, hist, time.perf_counter() - t0, lits)


__all__ = ["DEFAULT_OPTIONS", "KrylovNewton"]
