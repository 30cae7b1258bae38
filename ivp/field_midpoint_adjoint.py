r"""The discrete adjoint of the implicit-midpoint field integrator (the ground truth), with checkpointing.

The forward pass of :func:`glep.ivp.field_stepping.midpoint_forward` solves, for ``k = 0 … N−1``,

    E_0 = p_0 + D₁L_d(q_0, q_1) = 0,      E_k = D₂L_d(q_{k−1}, q_k) + D₁L_d(q_k, q_{k+1}) = 0,

and its loss is ``C_h = Σ_k ℓ(q_k, q_{k+1}) + c_T(q_N)``.  With multipliers ``λ_k`` for ``E_k``
(``λ_N = 0``) the Lagrangian is ``λ_0·p_0 + Σ_k Φ_k + c_T(q_N)``, with the step functional

    Φ_k = λ_k · D₁L_d(q_k, q_{k+1}) + λ_{k+1} · D₂L_d(q_k, q_{k+1}) + ℓ(q_k, q_{k+1}),

and its stationarity in ``q_{k+1}`` is one transposed solve with the Newton matrix of step ``k``,
``J_k = ∂_{q₁}D₁L_d(q_k, q_{k+1})``:

    J_kᵀ λ_k = −[∂_{q₁}(λ_{k+1}·D₂L_d + ℓ)(q_k, q_{k+1}) + ∂_{q₀}Φ_{k+1} + δ_{k,N−1} ∂_q c_T(q_N)].

Then ``dC_h/dθ = Σ_k ∂_θΦ_k``, ``dC_h/dq₀ = ∂_{q₀}Φ_0``, ``dC_h/dp₀ = λ_0``, and, when ``p₀ = P(q₀)`` is the
Legendre map of the initial field (the NLS state is the field ``u₀ = a₀ + i b₀`` alone), the gradient with
respect to the initial field is ``dC_h/dq₀ + (∂P/∂q₀)ᵀ λ_0``.  Every vector is zero at Dirichlet dofs.

Reverse step ``k`` needs the positions ``q_k, q_{k+1}`` (``∂_{q₀}Φ_{k+1}`` is formed by the previous
reverse step and carried), so the adjoint dependencies of forward step ``k`` are its two end positions.
``checkpoints=s`` runs the binomial schedule of :mod:`glep.ivp.field_adjoint` (``s`` snapshots of ``(q, p)``).
"""

from __future__ import annotations

import time

import numpy as np

from glep.field_midpoint import check_midpoint_system
from glep.ivp.field_adjoint import FieldAdjointResult, adjoint_inputs, run_adjoint
from glep.ivp.field_stepping import uniform_times
from glep.parallel import collective


class _MidpointSweep:
    """Forward and reverse steps of the midpoint pass, with the loss and memory bookkeeping (schedule actions)."""

    def __init__(self, system, q0, p0, T: float, N: int, terminal: bool):
        self.sys, self.N, self.h = system, N, float(T) / N
        self.times = uniform_times(T, N)
        self.terminal = terminal
        self.q0 = system.check_state(q0, "q0").astype(float, copy=True)
        self.p0 = system.check_state(p0, "p0").astype(float, copy=True)
        self.state = (0, self.q0.copy(), self.p0.copy())
        self.loss, self.reached, self.steps, self.peak = 0.0, 0, 0, 0
        self.snapshots: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.deps: dict[int, np.ndarray] = {}
        self.lam1 = np.zeros(system.n_local)  # λ_{k+1}
        self.carry = np.zeros(system.n_local)  # ∂_{q₀}Φ_{k+1}
        self.theta: dict | None = None

    def _mid(self, k: int) -> float:
        return 0.5 * (self.times[k] + self.times[k + 1])

    def forward(self, n0: int, n1: int, write_ics: bool, write_deps: bool) -> None:
        k, q, p = self.state
        if k != n0:
            raise RuntimeError(f"checkpoint schedule out of step: at {k}, asked to advance from {n0}")
        if write_ics:
            self.snapshots[n0] = (q.copy(), p.copy())
        if write_deps:
            self.deps[n0] = q.copy()
        sys = self.sys
        for k in range(n0, n1):
            q, p, _ = sys.step(q, p, self.times[k], self.h, t_mid=self._mid(k))
            self.steps += 1
            if k + 1 > self.reached:
                self.reached = k + 1
                self.loss += sys.scalar(sys.ell) if sys.has_cost else 0.0
                if k + 1 == self.N and self.terminal:
                    self.loss += sys.terminal_value(q, self.times[-1])
            if write_deps:
                self.deps[k + 1] = q.copy()
        self.state = (n1, q, p)
        self.peak = max(self.peak, 2 * len(self.snapshots) + len(self.deps))

    def restore(self, n: int, delete: bool) -> None:
        q, p = self.snapshots.pop(n) if delete else self.snapshots[n]
        self.state = (n, q.copy(), p.copy())

    def reverse(self, n1: int, n0: int, clear: bool) -> None:
        sys = self.sys
        for k in range(n1 - 1, n0 - 1, -1):
            qa, qb = self.deps[k], self.deps[k + 1]
            rhs = self.carry.copy()
            if k == self.N - 1 and self.terminal:
                rhs += sys.terminal_gradient(qb, self.times[-1])
            sys.load_step(qa, qb, self._mid(k), self.h)
            sys.lamB.x.array[:] = self.lam1
            rhs += sys.vector(sys.adj_R1)
            lam = sys.transpose_solve(-rhs)
            sys.load_step(qa, qb, self._mid(k), self.h)
            sys.lamA.x.array[:] = lam
            sys.lamB.x.array[:] = self.lam1
            self.carry = sys.vector(sys.adj_R0)
            grads = sys.theta_vectors(sys.adj_theta)
            if self.theta is None:
                self.theta = grads
            else:
                for name, g in grads.items():
                    self.theta[name] = self.theta[name] + g
            self.lam1 = lam
        if clear:
            for j in range(n0, n1 + 1):
                self.deps.pop(j, None)

    def finish(self) -> tuple[dict, np.ndarray, np.ndarray]:
        dq0, dp0 = self.carry.copy(), self.lam1.copy()
        dq0[self.sys.bc_dofs] = 0.0
        dp0[self.sys.bc_dofs] = 0.0
        return self.sys.reduce_scalars(self.theta), dq0, dp0


def midpoint_adjoint(system, T: float, N: int, *, q0=None, p0=None, terminal: bool = True,
                     checkpoints: int | None = None, riesz: bool = True) -> FieldAdjointResult:
    r"""Discrete-adjoint gradient of ``C_h`` of :func:`glep.ivp.field_stepping.midpoint_forward` (``N`` steps).

    Arguments:
        system: a :class:`glep.field_midpoint.MidpointFieldSystem`.
        q0, p0: initial state (default: the system's).
        terminal: include the terminal cost.
        checkpoints: ``None`` stores every position; an integer ``s >= 1``: binomial schedule, ``s`` snapshots.
        riesz: also compute the Riesz representatives of the parameter-field gradients.

    Returns:
        a :class:`glep.ivp.field_adjoint.FieldAdjointResult` (``q0``, ``p0``: ``dC_h/dq₀``, ``dC_h/dp₀``);
        the gradient with respect to the initial *field* (``p₀`` its Legendre map) is
        :func:`initial_field_gradient` of them.
    """
    start = time.perf_counter()
    check_midpoint_system(system, "midpoint_adjoint")
    q0, p0 = adjoint_inputs(system, T, N, q0, p0, checkpoints)
    with collective(system.comm, "midpoint adjoint"):  # a bad state on one rank stops every rank
        sweep = _MidpointSweep(system, q0, p0, T, N, terminal)
    # working vectors: q, p, λ, the carried vector and the right-hand side
    return run_adjoint(sweep, N, checkpoints, riesz, working=5, start=start)


def initial_field_gradient(system, q0: np.ndarray, dq0: np.ndarray, dp0: np.ndarray) -> np.ndarray:
    r"""``dC/dq₀ + (∂P/∂q₀)ᵀ dC/dp₀``: the gradient with respect to the initial field when ``p₀ = P(q₀)``.

    ``P`` is the Legendre map of the system's initial velocity (:meth:`MidpointFieldSystem.legendre_map`;
    for NLS ``p₀ = ∫ (b₀ N, −a₀ N)``, independent of the velocity).  A dual vector on the state space.
    """
    return dq0 + system.legendre_transpose(q0, dp0)


__all__ = ["initial_field_gradient", "midpoint_adjoint"]
