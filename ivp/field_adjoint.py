r"""The discrete adjoint of the field leapfrog (the ground truth), with binomial checkpointing.

The leapfrog of :mod:`glep.ivp.field_stepping` (uniform step ``h``, lumped
diagonal mass ``M``, ``F = ∂_qU``, ``H = ∂²_qU``) is the discrete
Euler–Lagrange system of the trapezoid discrete Lagrangian, so its adjoint is
the ODE recursion of :mod:`glep.ivp.adjoint` (``_explicit_adjoint``) with
assembled vectors: with ``G_j = w_j ∂_q c(q_j, t_j)`` (``+ ∂_q c_T`` at ``j = N``),
``λ_N = λ_{N+1} = 0`` and, for ``j = N, …, 1``,

    r_j = G_j − (2/h) M λ_j − h H(q_j) λ_j + (1/h) M λ_{j+1},      λ_{j−1} = −h M⁻¹ r_j,

the gradients of ``C_h = Σ_j w_j c(q_j, t_j) + c_T(q_N)`` are

    dC_h/dθ  = −Σ_{j<N} w_j ∂_θ(F(q_j, t_j) · λ_j)      (a dual vector per parameter field; scalars summed),
    dC_h/dq₀ = G₀ − [M λ₀/h + (h/2) H(q₀) λ₀ − M λ₁/h],    dC_h/dp₀ = −λ₀,

with every vector zero at Dirichlet dofs (they are not unknowns).  Reverse
step ``n`` (``n = N−1 … 0``) forms ``r_{n+1}`` and ``λ_n``: it needs the one
position ``q_{n+1}``, the *adjoint dependency* of forward step ``n``.

Storage: ``checkpoints=None`` keeps every position (``N + 1`` state vectors);
``checkpoints=s`` runs the binomial schedule of Stumm & Walther
(``checkpoint_schedules.MultistageCheckpointSchedule``, s snapshots of
``(q, p)`` in memory), which recomputes forward steps from the snapshots:
``O(s)`` stored vectors for ``O(N log N / log s)``-ish extra steps.  The report
(:class:`FieldAdjointResult.memory`) counts the peak number of stored state
vectors and forward steps taken; the echo (:mod:`glep.estimators.field_estimators`)
needs a constant number of vectors whatever ``N``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from mpi4py import MPI

from glep.errors import InputError
from glep.field_system import FieldSystem
from glep.ivp.field_stepping import trapezoid_weights, uniform_times


@dataclass
class FieldAdjointResult:
    """Gradients of ``C_h`` from the discrete adjoint.

    Attributes:
        theta: parameter name -> float (scalar) or :class:`FieldGradient` (dual vector + Riesz representative).
        q0: ``dC_h/dq₀``, a dual vector on the state space (local array, zero at Dirichlet dofs).
        p0: ``dC_h/dp₀`` (local array).
        loss: ``C_h``.
        memory: ``{"peak_vectors", "peak_bytes" (all ranks), "forward_steps", "checkpoints"}``.
        wall_time: seconds.
    """

    theta: dict
    q0: np.ndarray
    p0: np.ndarray
    loss: float
    memory: dict = field(default_factory=dict)
    wall_time: float = 0.0


class _Sweep:
    """Forward steps and reverse (adjoint) steps of one problem, with the bookkeeping of the loss and memory."""

    def __init__(self, system: FieldSystem, q0, p0, T: float, N: int, terminal: bool):
        self.sys, self.N, self.h = system, N, float(T) / N
        self.times = uniform_times(T, N)
        self.w = trapezoid_weights(np.full(N, self.h))
        self.terminal = terminal
        self.q0 = system.check_state(q0, "q0").astype(float, copy=True)
        self.p0 = system.check_state(p0, "p0").astype(float, copy=True)
        self.state = (0, self.q0.copy(), self.p0.copy(), None)
        self.loss, self.reached, self.steps = 0.0, 0, 0
        self.loss += self._node_loss(0, self.q0)
        self.snapshots: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.deps: dict[int, np.ndarray] = {}
        self.peak = 0
        # adjoint state
        self.lam1 = np.zeros(system.n_local)  # λ_{n+1}
        self.lam2 = np.zeros(system.n_local)  # λ_{n+2}
        self.theta: dict | None = None

    def _node_loss(self, k: int, q) -> float:
        c = self.w[k] * self.sys.cost_value(q, self.times[k]) if self.sys.has_cost else 0.0
        if k == self.N and self.terminal:
            c += self.sys.cost_value(q, self.times[k], "terminal")
        return c

    def _count(self) -> None:
        self.peak = max(self.peak, 2 * len(self.snapshots) + len(self.deps))

    def forward(self, n0: int, n1: int, write_ics: bool, write_deps: bool) -> None:
        k, q, p, F = self.state
        if k != n0:
            raise RuntimeError(f"checkpoint schedule out of step: at {k}, asked to advance from {n0}")
        if write_ics:
            self.snapshots[n0] = (q.copy(), p.copy())
        sys, h, minv = self.sys, self.h, self.sys.minv
        if F is None:
            F = sys.force(q, self.times[k])
        for k in range(n0, n1):
            p = p + 0.5 * h * F
            q = q + h * minv * p
            sys.impose(q, self.times[k + 1])
            F = sys.force(q, self.times[k + 1])
            p = p + 0.5 * h * F
            self.steps += 1
            if k + 1 > self.reached:
                self.reached = k + 1
                self.loss += self._node_loss(k + 1, q)
            if write_deps:
                self.deps[k + 1] = q.copy()
        self.state = (n1, q, p, F)
        self._count()

    def restore(self, n: int, delete: bool) -> None:
        q, p = self.snapshots.pop(n) if delete else self.snapshots[n]
        self.state = (n, q.copy(), p.copy(), None)

    def _g(self, j: int, q) -> np.ndarray:
        sys = self.sys
        G = self.w[j] * sys.cost_gradient(q, self.times[j]) if sys.has_cost else np.zeros(sys.n_local)
        if j == self.N and self.terminal and sys.has_terminal_cost:
            G = G + sys.cost_gradient(q, self.times[j], "terminal")
        return G

    def _theta_term(self, j: int, q, lam) -> None:
        grads = self.sys.theta_vjp(q, self.times[j], lam)
        if self.theta is None:
            self.theta = {k: -self.w[j] * g for k, g in grads.items()}
        else:
            for k, g in grads.items():
                self.theta[k] = self.theta[k] - self.w[j] * g

    def reverse(self, n1: int, n0: int, clear: bool) -> None:
        sys, h, m, minv = self.sys, self.h, self.sys.m, self.sys.minv
        for n in range(n1 - 1, n0 - 1, -1):
            j = n + 1
            q = self.deps[j]
            r = self._g(j, q)
            if j < self.N:
                r = r - (2.0 / h) * m * self.lam1 - h * sys.hessian_action(q, self.times[j], self.lam1) \
                    + m * self.lam2 / h
                self._theta_term(j, q, self.lam1)
            lam0 = -h * minv * r
            self.lam2, self.lam1 = self.lam1, lam0
            if clear:
                del self.deps[j]

    def finish(self) -> tuple[dict, np.ndarray, np.ndarray]:
        sys, h, m = self.sys, self.h, self.sys.m
        q0, lam0, lam1 = self.q0, self.lam1, self.lam2
        self._theta_term(0, q0, lam0)
        mu = self._g(0, q0) - (m * lam0 / h + 0.5 * h * sys.hessian_action(q0, self.times[0], lam0) - m * lam1 / h)
        mu[sys.bc_dofs] = 0.0
        dp0 = -lam0
        dp0[sys.bc_dofs] = 0.0
        return sys.reduce_scalars(self.theta), mu, dp0


def _run_schedule(sweep: _Sweep, N: int, checkpoints: int | None) -> None:
    if checkpoints is None:
        sweep.forward(0, N, False, True)
        sweep.reverse(N, 0, True)
        return
    from checkpoint_schedules import (  # noqa: PLC0415
        Copy,
        EndForward,
        EndReverse,
        Forward,
        Move,
        MultistageCheckpointSchedule,
        Reverse,
    )

    for action in MultistageCheckpointSchedule(N, checkpoints, 0):
        if isinstance(action, Forward):
            sweep.forward(action.n0, action.n1, action.write_ics, action.write_adj_deps)
        elif isinstance(action, Reverse):
            sweep.reverse(action.n1, action.n0, action.clear_adj_deps)
        elif isinstance(action, (Copy, Move)):
            sweep.restore(action.n, isinstance(action, Move))
        elif isinstance(action, EndReverse):
            break
        elif not isinstance(action, EndForward):
            raise RuntimeError(f"unexpected checkpoint action {action!r}")


def field_adjoint(system: FieldSystem, T: float, N: int, *, q0=None, p0=None, terminal: bool = True,
                  checkpoints: int | None = None, riesz: bool = True) -> FieldAdjointResult:
    r"""Discrete-adjoint gradient of ``C_h`` of the forward leapfrog pass (``N`` steps of ``T/N``).

    Arguments:
        q0, p0: initial state (default: the system's).
        terminal: include the terminal cost.
        checkpoints: ``None`` stores every position; an integer ``s >= 1`` uses a binomial
            schedule with ``s`` snapshots of ``(q, p)``.
        riesz: also compute the Riesz representatives of the parameter-field gradients.
    """
    start = time.perf_counter()
    q0, p0 = adjoint_inputs(system, T, N, q0, p0, checkpoints)
    sweep = _Sweep(system, q0, p0, T, N, terminal)
    return run_adjoint(sweep, N, checkpoints, riesz, working=4, start=start)  # working: q, p, F, λ


def adjoint_inputs(system, T: float, N: int, q0, p0, checkpoints) -> tuple[np.ndarray, np.ndarray]:
    """Check ``T``, ``N`` and ``checkpoints`` and complete ``(q0, p0)`` with the system's initial state."""
    uniform_times(T, N)
    if checkpoints is not None and (isinstance(checkpoints, bool) or not isinstance(checkpoints, int)
                                    or checkpoints < 1):
        raise InputError(f"checkpoints must be None (store every step) or an integer >= 1, got {checkpoints!r}")
    if q0 is None or p0 is None:
        qi, pi = system.initial_state()
        q0 = qi if q0 is None else q0
        p0 = pi if p0 is None else p0
    return q0, p0


def run_adjoint(sweep, N: int, checkpoints, riesz: bool, *, working: int, start: float) -> FieldAdjointResult:
    """Run a sweep's forward/reverse schedule and label its result (``working``: vectors besides the stored ones).

    ``sweep.finish()`` returns ``(θ-derivatives, dC/dq₀, dC/dp₀)``; the memory record counts the stored
    vectors of the schedule plus ``working``.
    """
    system = sweep.sys
    _run_schedule(sweep, N, None if checkpoints is None or checkpoints >= N else checkpoints)
    theta, dq0, dp0 = sweep.finish()
    vec_bytes = system.comm.allreduce(system.n_local * 8, op=MPI.SUM)
    peak = sweep.peak + working
    memory = {"peak_vectors": peak, "peak_bytes": peak * vec_bytes, "forward_steps": sweep.steps,
              "checkpoints": checkpoints}
    return FieldAdjointResult(system.labelled_gradients(theta, riesz), dq0, dp0, sweep.loss, memory,
                              time.perf_counter() - start)


def final_sensitivities(system: FieldSystem, T: float, N: int, name: str, direction, *, q0=None, p0=None
                        ) -> tuple[np.ndarray, np.ndarray]:
    r"""Forward tangent ``(∂_θ q_N · δθ, ∂_θ p_N · δθ)`` of the leapfrog, for one parameter direction.

    The linearised kick–drift–kick steps (``H = ∂²_qU``, ``J = ∂_θF · δθ``), stepped with the primal:

        δp_{k+½} = δp_k + (h/2)(H(q_k)δq_k + J(q_k)),   δq_{k+1} = δq_k + h M⁻¹ δp_{k+½},
        δp_{k+1} = δp_{k+½} + (h/2)(H(q_{k+1})δq_{k+1} + J(q_{k+1})).

    One pass per direction: the boundary residual of the CIVP contrast costs one pass per parameter dof.
    """
    if q0 is None or p0 is None:
        qi, pi = system.initial_state()
        q0 = qi if q0 is None else q0
        p0 = pi if p0 is None else p0
    times = uniform_times(T, N)
    h, minv = float(T) / N, system.minv
    q, p = np.array(q0, dtype=float), np.array(p0, dtype=float)
    dq, dp = np.zeros_like(q), np.zeros_like(p)

    def kicks(q, t, dq):
        return system.force(q, t), system.hessian_action(q, t, dq) + system.theta_force_jvp(q, t, name, direction)

    F, dF = kicks(q, times[0], dq)
    for k in range(N):
        p = p + 0.5 * h * F
        dp = dp + 0.5 * h * dF
        q = q + h * minv * p
        dq = dq + h * minv * dp
        system.impose(q, times[k + 1])
        F, dF = kicks(q, times[k + 1], dq)
        p = p + 0.5 * h * F
        dp = dp + 0.5 * h * dF
    return dq, dp


__all__ = ["FieldAdjointResult", "field_adjoint", "final_sensitivities"]
