"""One field problem posed to both field backends (time stepping and space-time), for the agreement tests.

Klein–Gordon ``ℒ = ½φ_t² − ½φ_x² − ½μ(x)φ² − ¼λφ⁴`` on ``[0, 1]`` (``φ = 0`` on the boundary) with a
parameter field ``μ`` (P1) and a scalar ``λ``; a running tracking cost over time and a terminal cost.

* time stepping: :class:`glep.FieldSystem` (P1, nodal quadrature: vertex rule, lumped mass), leapfrog
  with ``N`` steps of ``T/N``;
* space–time: :class:`glep.SpaceTimeProblem` (Q1 on ``n × N`` cells, ``quadrature="lobatto"``: Gauss–Lobatto
  in time *and* space, end slices included), on the spatial mesh of the same space–time mesh.

For Q1 the Lobatto (vertex) rule samples ``∂_tφ_h`` at the nodes, where it is the difference quotient
``(q_{n+1} − q_n)/h``, and the rest of ``ℒ`` at the nodes of the slices ``t_n``: the space–time action is
``Σ_n L_d(q_n, q_{n+1})`` with the trapezoid discrete Lagrangian of ``L_h = ½q̇ᵀMq̇ + U(q)`` with the lumped
mass ``M = diag(∫N_i)`` and the vertex-rule ``U``, which is what the leapfrog integrates.  The losses
agree likewise (running cost: trapezoid in time × vertex rule; terminal cost: vertex rule on ``t = T``).
Shared by ``tests/test_field_backends_agree.py`` and ``tests/mpi/test_field_backends_agree_mpi.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import ufl
from mpi4py import MPI

from glep.bvp import spacetime as st
from glep.field_models import klein_gordon
from glep.field_system import FieldCost, FieldSystem

#: a small case: 8 cells, 12 steps (h_t/h_x = 0.4, below the lumped leapfrog's CFL limit 1)
N_X, N_T, T_END = 8, 12, 0.6
LAM = 0.8  # the φ⁴ coupling: the problem is nonlinear


def mu(X):
    return 1.0 + 0.5 * np.sin(np.pi * X[0])


def phi0(X):
    return 0.9 * np.sin(np.pi * X[0])


def phidot0(X):
    return 0.4 * np.sin(2.0 * np.pi * X[0])


def target_np(X):
    """The running target ``y(x, t)`` (NumPy, points ``(x, t)``)."""
    return 0.3 * np.sin(np.pi * X[0]) * np.cos(2.0 * X[1])


def target_ufl(x, t):
    return 0.3 * ufl.sin(np.pi * x[0]) * ufl.cos(2.0 * t)


def terminal_target(x):
    return 0.2 * ufl.sin(2.0 * np.pi * x[0])


@dataclass
class Case:
    """Both discretisations of one problem."""

    stmesh: st.SpaceTimeMesh
    system: FieldSystem
    civp: st.SpaceTimeProblem
    T: float
    N: int


def make_case(comm: MPI.Comm = MPI.COMM_WORLD, *, lam: float = LAM, terminal: bool = True,
              n: int = N_X, N: int = N_T, T: float = T_END) -> Case:
    """The time-stepped system and the space-time CIVP of the same Klein–Gordon problem."""
    lag = klein_gordon()
    m = st.spacetime_mesh(comm, 1.0, T, n, N)
    system = FieldSystem(lag, m.spatial, theta={"mu": mu, "lam": lam}, initial=(phi0, phidot0),
                         cost=FieldCost(target=target_ufl),
                         terminal_cost=FieldCost(target=lambda x, t: terminal_target(x)) if terminal else None)

    def terminal_cost(phi, x):
        return 0.5 * (phi - terminal_target(x)) ** 2

    civp = st.SpaceTimeProblem(lag, m, st.SpaceTimeCIVP(phi0, phidot0), params={"mu": mu, "lam": lam},
                               quadrature="lobatto", cost=st.tracking_cost(target_np),
                               terminal_cost=terminal_cost if terminal else None)
    return Case(m, system, civp, T, N)


def trajectory(case: Case) -> np.ndarray:
    """The space-time solution as an ``(N + 1, n + 1)`` array: rows are times, columns sorted by ``x``."""
    _, vals = case.civp.gather()
    return vals[:, 0].reshape(case.N + 1, -1)


def relative(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))
