r"""Boundary conditions of the nudged trajectories (THEORY.md §3).

Each boundary condition says what it holds fixed and which boundary residual
``R(t) = (d_β p)ᵀ ∂_θ s − (d_θ p)ᵀ ∂_β s`` its estimator must add to the
contrast.  ``R`` vanishes at an end where the condition pins a Lagrangian
subspace of phase space that moves neither with ``β`` nor with ``θ``.

========== ============================== ==================================
condition  held fixed                     residual the estimator needs
========== ============================== ==================================
CIVP       ``q(0)``, ``v(0)`` or ``p(0)`` ``R(T)`` (forward sensitivities)
PFVP       final state of the free CIVP   ``−R(0)``, only for a θ-dependent
                                          kinetic term with ``v(0)`` fixed
CFVP       ``q(T)``, ``v(T)`` or ``p(T)`` ``−R(0)`` (backward sensitivities)
CBVP       ``q(0)``, ``q(T)``             none
Periodic   ``q(0)=q(T)``, ``p(0)=p(T)``   none
DirNatural ``q(0)``, ``p(T) = 0``         none
Robin      ``p = −K(q − b)`` at one end   none (``K = Kᵀ``, θ-independent)
========== ============================== ==================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glep.errors import InputError
from glep.validation import as_finite_array


def _state(value, name, n, batch):
    arr = as_finite_array(value, name)
    if arr.ndim == 1:
        if arr.shape != (n,):
            raise InputError(f"{name} must have shape ({n},) or (B, {n}), got {arr.shape}")
        arr = np.broadcast_to(arr, ((batch or 1), n)).copy()
    elif arr.ndim == 2:
        if arr.shape[1] != n or (batch is not None and arr.shape[0] != batch):
            want = f"({batch}, {n})" if batch is not None else f"(B, {n})"
            raise InputError(f"{name} must have shape ({n},) or {want}, got {arr.shape}")
    else:
        raise InputError(f"{name} must have shape ({n},) or (B, {n}), got {arr.shape}")
    return arr


class BoundaryCondition:
    """Base class: what is fixed, and which residual the estimator needs."""

    #: ``"none"``, ``"final"`` (R(T)), ``"initial"`` (R(0)) or ``"initial-kinetic"``.
    residual: str = "none"

    @property
    def name(self) -> str:
        return type(self).__name__


@dataclass
class _EndData:
    q: np.ndarray
    v: np.ndarray | None = None
    p: np.ndarray | None = None

    def check(self, label: str):
        if (self.v is None) == (self.p is None):
            raise InputError(f"{label}: give exactly one of the velocity or the momentum")


class CIVP(BoundaryCondition):
    """Constant initial-value problem: ``q(0)`` and ``v(0)`` (or ``p(0)``) fixed.

    Parameters
    ----------
    q0:
        Initial position, shape ``(n,)`` or ``(B, n)``.
    v0, p0:
        Exactly one: the initial velocity (then ``p(0) = ∂_v L(q0, v0, θ, 0)``
        depends on θ when the kinetic term does) or the initial momentum.
    """

    residual = "final"

    def __init__(self, q0, v0=None, p0=None):
        self.data = _EndData(q0, v0, p0)
        self.data.check("CIVP")

    def states(self, system, theta):
        """``(q0, p0, v0)`` as ``(B, n)`` arrays (``v0`` None if ``p0`` was given)."""
        return end_states(self.data, system, theta, t=0.0, label="CIVP")


class PFVP(BoundaryCondition):
    """Parametric final-value problem: final ``q(T)``, ``p(T)`` of the free CIVP.

    The nudged trajectories are integrated backward from the free final state
    (which depends on θ but not on β).  For a time-reversible system this is
    the echo.  The only residual is ``−R(0) = (∂_θ∂_v L(q0, v0))ᵀ ∂_β q(0)``,
    non-zero when the free CIVP fixes the velocity and the kinetic term
    depends on θ.
    """

    residual = "initial-kinetic"

    def __init__(self, q0, v0=None, p0=None):
        self.free = CIVP(q0, v0, p0)


class CFVP(BoundaryCondition):
    """Constant final-value problem: ``q(T)``, ``v(T)`` (or ``p(T)``) fixed."""

    residual = "initial"

    def __init__(self, qT, vT=None, pT=None):
        self.data = _EndData(qT, vT, pT)
        self.data.check("CFVP")

    def states(self, system, theta, T):
        return end_states(self.data, system, theta, t=T, label="CFVP")


class CBVP(BoundaryCondition):
    """Constant boundary-value problem: ``q(0)`` and ``q(T)`` fixed (no residual)."""

    residual = "none"

    def __init__(self, q0, qT):
        self.q0, self.qT = q0, qT


class Periodic(BoundaryCondition):
    """``q(0) = q(T)``, ``p(0) = p(T)`` (the two ends cancel: no residual)."""

    residual = "none"


class DirichletNatural(BoundaryCondition):
    """``q(0)`` fixed and the natural condition ``p(T) = 0`` (no residual)."""

    residual = "none"

    def __init__(self, q0):
        self.q0 = q0


class Robin(BoundaryCondition):
    """Symmetric Robin end ``p = −K (q − b)`` (``K = Kᵀ``, θ-independent), other end fixed.

    Parameters
    ----------
    K, b:
        Stiffness (symmetric ``n × n``) and rest position of the Robin end.
    end:
        ``"final"`` (Robin at ``T``, ``q(0) = q0`` fixed) or ``"initial"``.
    q_fixed:
        Position held at the other end.
    """

    residual = "none"

    def __init__(self, K, b, q_fixed, end: str = "final"):
        K = as_finite_array(K, "K", ndim=2)
        if not np.allclose(K, K.T):
            raise InputError("K must be symmetric for a residual-free Robin end")
        if end not in ("final", "initial"):
            raise InputError(f"end must be 'final' or 'initial', got {end!r}")
        self.K, self.b, self.q_fixed, self.end = K, b, q_fixed, end


def end_states(data: _EndData, system, theta, t: float, label: str):
    batch = system.batch
    q = _state(data.q, f"{label} position", system.n, batch)
    if data.p is not None:
        p = _state(data.p, f"{label} momentum", system.n, batch)
        p, q = np.broadcast_arrays(p, q)
        return q.copy(), p.copy(), None
    v = _state(data.v, f"{label} velocity", system.n, batch)
    q, v = (a.copy() for a in np.broadcast_arrays(q, v))
    x = system.inputs_at(t)
    _, p = system.gradient(q, v, theta, x, t)
    return q, np.array(p), v
