r"""RHEL in Hamiltonian form (Pourcel & Ernoult 2025; THEORY.md §5).

One forward leapfrog pass, then two echoes from ``(q_T, −p_T)`` integrating
``H − εc`` with inputs and targets reversed.  Three passes, whatever the number
of parameters:

    dC/dθ  ≈ −d/dε Σ_k h ∂_θH(Φᵉ(ε)),
    dC/dΦ(0) = Σ_x d/dε Φᵉ_T(ε),   Σ_x(q, p) = (p, q).

When the free CIVP fixes the velocity ``v(0)`` (so ``p(0) = M(θ)v(0)``), the
chain rule adds ``(∂_θ p(0))ᵀ dC/dp(0)``: the PFVP ``t = 0`` term.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from glep.errors import InputError, NotReversibleError
from glep.estimators.base import AbstractEstimator
from glep.estimators.contrast import _complete
from glep.estimators.nudging import Centred, Nudge
from glep.estimators.problem import Problem
from glep.estimators.result import GradientEstimate
from glep.ivp.hamiltonian import leapfrog, theta_dH_sum
from glep.terms import add_into


def rhel(problem: Problem, nudge: Nudge | None = None, *, tol: float = 1e-12) -> GradientEstimate:
    """RHEL gradient of ``C_h`` with respect to θ and the initial phase-space state."""
    nudge = nudge or Centred(1e-4)
    problem.require_civp("rhel")
    sys, theta = problem.system, problem.theta
    defect = problem.reversibility_defect
    if defect > tol:
        raise NotReversibleError(f"rhel: {sys.name} is not time-reversible (defect {defect:.2e}); "
                                 "use PFVP (backward integration) instead")
    if not sys.is_separable:
        raise InputError("rhel uses the leapfrog (Störmer–Verlet) of a separable Hamiltonian ½pᵀM⁻¹p + V(q, t); "
                         f"{sys.name} is not separable: {sys.non_separable_reason}. Use pfvp (or echo) with the "
                         "'midpoint' integrator instead")
    if problem.integrator.name not in ("stormer-verlet", "trapezoid"):
        raise InputError(f"rhel differentiates the Störmer–Verlet C_h, but this problem uses the integrator "
                         f"{problem.integrator.name!r}; build it with integrator='stormer-verlet' (the default for "
                         f"the separable {sys.name})")
    t0 = time.perf_counter()
    q0, p0, v0 = problem.boundary.states(sys, theta)
    run = _compiled_echoes if getattr(problem.integrator, "backend", "numpy") == "jax" else _leapfrog_echoes
    values, dH0 = run(problem, nudge, q0, p0)
    ddH, dqe, dpe = nudge.combine(values, (dH0, q0, -p0))
    grad = {k: -g for k, g in ddH.items()}
    dq0, dp0 = np.real(dpe), np.real(dqe)
    if v0 is not None:
        for key, g in sys.theta_vjp(q0, v0, theta, sys.inputs_at(0.0), 0.0, None, dp0).items():
            add_into(grad, key, g)
    return GradientEstimate("RHEL", _complete(problem, grad), q0=dq0, p0=dp0, passes=1 + len(nudge.betas),
                            wall_time=time.perf_counter() - t0, nudge=nudge.label, beta=nudge.beta,
                            notes=["exact: Hamiltonian leapfrog echo, 3 passes"])


def _leapfrog_echoes(problem: Problem, nudge: Nudge, q0, p0):
    """The free leapfrog and both echoes (one batched leapfrog: ε is one value per batch member)."""
    sys, theta, grid = problem.system, problem.theta, problem.grid
    Q, pT, dH0 = leapfrog(sys, theta, grid, q0, p0, 0.0, theta_dH=nudge.needs_free, store_momenta=False)
    qT = Q[-1]
    rev = sys.time_reversed(grid.T)
    tc = sys.terminal_cost
    eps, B = nudge.betas, qT.shape[0]
    stacked = rev.with_signals(**{k: s.tiled(len(eps)) for k, s in rev.signals.items()}) if len(eps) > 1 else rev
    eps_arr = np.concatenate([np.full((B, 1), e) for e in eps]) if len(eps) > 1 else eps[0]
    start_p = np.concatenate([-pT + (0.0 if tc is None else e * tc.gradient(qT)) for e in eps])
    acts: dict = {}  # the node activations of the forces (tanh(Wq + b)), reused by the contrasts
    Qe, pe, _ = leapfrog(stacked, theta, grid, np.concatenate([qT] * len(eps)), start_p, eps_arr,
                         store_momenta=False, activations=acts)
    blocks = [slice(i * B, (i + 1) * B) for i in range(len(eps))]
    values = {e: (theta_dH_sum(rev, theta, grid, Qe[:, blk], {i: A[:, blk] for i, A in acts.items()}),
                  Qe[-1, blk], pe[blk]) for e, blk in zip(eps, blocks)}
    return values, dH0


def _compiled_echoes(problem: Problem, nudge: Nudge, q0, p0):
    r"""The same three passes on the compiled path (:mod:`glep.ivp.compiled`): the leapfrog of ``H − εc``
    is Störmer–Verlet of ``L + εc``, and ``Σ_k h ∂_θH = −Σ_k ∂_θL_d`` is summed inside the scan, so
    no trajectory is stored."""
    from glep.ivp.compiled import nudged_family
    from glep.ivp.stepping import integrate

    sys, grid = problem.system, problem.grid
    dl = problem.base_dl(0.0)
    if nudge.needs_free:
        (I0, qT, pT), = nudged_family(dl, [q0], [p0], [0.0])
        dH0 = {k: -g for k, g in I0.items()}
    else:
        (qT, pT), dH0 = integrate(dl, q0, p0, store=False), None
    tc, eps = sys.terminal_cost, nudge.betas
    starts = [-pT + (0.0 if tc is None else e * tc.gradient(qT)) for e in eps]
    out = nudged_family(problem.base_dl(0.0, system=sys.time_reversed(grid.T)), [qT] * len(eps), starts, eps)
    return {e: ({k: -g for k, g in I.items()}, qe, pe) for e, (I, qe, pe) in zip(eps, out)}, dH0


@dataclass(frozen=True)
class RHEL(AbstractEstimator):
    """RHEL (leapfrog echo of the Hamiltonian): :func:`rhel` as an object (exact, reversible separable systems)."""

    name: ClassVar[str] = "rhel"
    label: ClassVar[str] = "RHEL"
    nudged_family: ClassVar[str] = "final-state"  # the PFVP trajectories (reversible systems)

    def estimate(self, problem: Problem, nudge: Nudge, progress=None) -> GradientEstimate:
        return rhel(problem, nudge)
