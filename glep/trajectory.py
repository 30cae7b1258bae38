"""Trajectories: one discrete solution type for every backend, with everything needed to re-analyse it.

A :class:`Trajectory` is the stationary point ``q`` of the discrete augmented
action ``A_β = Σ L_d + β c`` (time stepping, :mod:`glep.ivp`) or ``∫ L_β dt``
(finite elements, :mod:`glep.bvp`) under one boundary condition, on the nodes
``t_0 < … < t_N``.  Positions are always ``q[k, b, i]``: node ``k``, batch
member ``b`` (``B = 1`` for the finite-element backend, which solves one
trajectory at a time), degree of freedom ``i``.  The discrete momenta are
``p_k = −∂A_β/∂q_k`` seen from the right (``D₁L_d``) and ``∂A_β/∂q_k`` from the
left (``D₂L_d``), equal at interior nodes on a solution: the time-stepping
backend has them at every node, the finite-element backend only at the ends
(``p0``, ``pT``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SolverReport:
    """How the solver that produced a trajectory ended (frozen: set once, when it is made).

    Attributes
    ----------
    reason:
        Why it stopped (e.g. PETSc's ``CONVERGED_FNORM_RELATIVE``, or ``"integrated"`` for a marching pass).
    iterations:
        Nonlinear iterations (Newton steps, descent steps), or the steps of a marching pass (``"integrated"``).
    history:
        Residual norm at each iteration, the initial one first.
    wall_time:
        Seconds spent in the solve (``None`` if not measured).
    """

    reason: str
    iterations: int
    history: tuple[float, ...] = ()
    wall_time: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "history", tuple(float(np.real(h)) for h in self.history))


@dataclass(frozen=True)
class Trajectory:
    """Positions ``q`` (and momenta) on a time grid, with the problem and the solve that produced them.

    Every field is set when the trajectory is made (it is frozen).

    Attributes
    ----------
    times:
        Node times, shape ``(N+1,)``, increasing (identical on every MPI rank).
    q:
        Shape ``(N+1, B, n)``: node, batch, degree of freedom.
    p:
        Discrete momenta at every node, shape ``(N+1, B, n)``, or ``None`` for a backend that has them only at
        the ends (then ``end_momenta`` holds them).
    beta:
        The nudging strength this trajectory is stationary for.
    boundary:
        Its boundary condition: a :mod:`glep.boundary` object, or its name (``"CIVP"``, ``"PFVP"`` ...)
        for a trajectory read from a file.
    params:
        The parameters ``θ`` it was computed with.
    meta:
        Anything else (integrator, system name...), stored as HDF5 attributes.
    report:
        The :class:`SolverReport` of the solve that produced it (``None`` for data not made by a solver).
    action:
        ``A_β`` at the trajectory, if the backend computed it.
    morse_index:
        Negative inertia of the action Hessian (``None`` if not computed or not safely defined).
    end_momenta:
        ``(p(0), p(T))``, each ``(B, n)``, when ``p`` is ``None``.
    fe:
        Backend handles of a finite-element solve (:class:`glep.bvp.FESolve`: the reduced problem, its
        solution vector and the Hessian report); never saved.
    """

    times: np.ndarray
    q: np.ndarray
    p: np.ndarray | None = None
    beta: complex = 0.0
    boundary: Any = ""
    params: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    report: SolverReport | None = None
    action: float | None = None
    morse_index: int | None = None
    end_momenta: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    fe: Any = field(default=None, repr=False, compare=False)

    @property
    def T(self) -> float:
        return float(self.times[-1])

    @property
    def N(self) -> int:
        return len(self.times) - 1

    @property
    def boundary_name(self) -> str:
        """The boundary condition's name (``"CBVP"``, ``"CIVP"`` ...), as stored in HDF5."""
        b = self.boundary
        return b if isinstance(b, str) else type(b).__name__

    @property
    def p0(self) -> np.ndarray:
        """Discrete momentum at the first node, shape ``(B, n)``."""
        return self.p[0] if self.p is not None else self.end_momenta[0]

    @property
    def pT(self) -> np.ndarray:
        """Discrete momentum at the last node, shape ``(B, n)``."""
        return self.p[-1] if self.p is not None else self.end_momenta[1]

    def at(self, t: float) -> np.ndarray:
        """Piecewise-linear interpolation of the nodal positions at ``t``, shape ``(B, n)``."""
        q = np.asarray(self.q)
        flat = q.reshape(q.shape[0], -1)
        return np.array([np.interp(t, self.times, flat[:, j]) for j in range(flat.shape[1])]).reshape(q.shape[1:])

    def reversed(self) -> Trajectory:
        """Read backwards in time with flipped momenta (echo ↔ PFVP)."""
        ends = None if self.end_momenta is None else (-self.end_momenta[1], -self.end_momenta[0])
        return Trajectory(self.times[-1] - self.times[::-1], self.q[::-1].copy(),
                          None if self.p is None else -self.p[::-1].copy(), self.beta, self.boundary_name,
                          self.params, dict(self.meta), self.report, self.action, self.morse_index, ends)
