r"""Adaptive refinement and coarsening of time meshes driven by a per-cell indicator.

**Euler–Lagrange residual indicator.**  Let ``q_h`` be continuous and
piecewise linear on ``0 = t_0 < … < t_N = T`` (cells ``K_j = [t_j, t_{j+1}]``,
``h_j = t_{j+1} − t_j``, velocity ``v_j = (q_{j+1} − q_j)/h_j`` constant on
``K_j``).  The Euler–Lagrange residual of ``q_h`` is a distribution with

* an *interior* part on each cell, ``R = ∂_qL_β − d/dt ∂_vL_β``, evaluated at
  the two cell ends with the cell velocity (``d/dt ∂_vL`` is replaced by its
  cell average ``(∂_vL(q_{j+1}, v_j, t_{j+1}) − ∂_vL(q_j, v_j, t_j)) / h_j``,
  exact when ``∂_vL`` is affine in ``(q, t)`` on the cell, e.g. a constant
  mass);
* a *jump* part at each interior vertex, the momentum jump
  ``J_i = ∂_vL(q_i, v_i, t_i) − ∂_vL(q_i, v_{i−1}, t_i)``.

Tested against the hat function of vertex ``i`` the two parts sum to the
weak residual.  The indicator is the classical residual estimator

    η_j² = h_j² ‖R‖²_{L²(K_j)} + (h_j / 2) (|J_j|² + |J_{j+1}|²),

with ``‖R‖²_{L²(K_j)} ≈ (h_j/2)(|R(t_j)|² + |R(t_{j+1})|²)`` (trapezoid rule) and
no jump term at the two ends (Dirichlet ends, as for the CBVP).  It is large
where ``q`` curves strongly (``|q̈| ~ |∂_qL|/m``), i.e. where P1 interpolation
is poor.  It uses only ``system.gradient`` (NumPy), so it is generic in the
Lagrangian.

**Marking.**  :func:`refine_time_mesh` bisects the ``⌈fraction · N⌉`` cells
with the largest indicator; :func:`coarsen_time_mesh` removes the shared
vertex of adjacent pairs among the ``⌊fraction · N⌋`` cells with the smallest
indicator (greedy, in time order, pairs do not overlap).  Both gather the
indicator in time order on every rank and rebuild the mesh from its vertex
times, so the new mesh is distributed again by the partitioner.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import dolfinx.fem
import dolfinx.mesh
import numpy as np

from glep.errors import InputError
from glep.meshes.functions import nodal_values
from glep.meshes.time_meshes import (
    GhostMode,
    cell_time_positions,
    check_time_mesh,
    owned_cell_count,
    time_mesh_from_vertices,
    time_mesh_vertices,
)
from glep.system import LagrangianSystem

__all__ = ["el_residual_indicator", "el_residual_indicator_nodal", "indicator_in_time_order",
           "indicator_function", "refine_time_mesh", "coarsen_time_mesh"]


def _local_indicator(mesh: dolfinx.mesh.Mesh, indicator) -> np.ndarray:
    """Indicator per owned local cell, from an array or a DG0 function."""
    n_own = owned_cell_count(mesh)
    if isinstance(indicator, dolfinx.fem.Function):
        V = indicator.function_space
        if V.dofmap.index_map_bs != 1 or V.dofmap.list.shape[1] != 1:
            raise InputError("an indicator function must be scalar and piecewise constant (DG0)")
        dofs = V.dofmap.list[:n_own, 0]
        return np.asarray(indicator.x.array[dofs].real, dtype=float)
    ind = np.asarray(indicator, dtype=float)
    if ind.shape != (n_own,):
        raise InputError(f"indicator must have one value per owned cell, shape ({n_own},), got {ind.shape}")
    if not np.all(np.isfinite(ind)):
        raise InputError("indicator contains non-finite values")
    return ind


def indicator_in_time_order(mesh: dolfinx.mesh.Mesh, indicator, vertices: np.ndarray | None = None
                            ) -> np.ndarray:
    """Gather a per-owned-cell indicator (array or DG0 function) into time order, on every rank."""
    check_time_mesh(mesh)
    if vertices is None:
        vertices = time_mesh_vertices(mesh)
    ind = _local_indicator(mesh, indicator)
    pos = cell_time_positions(mesh, vertices)
    comm = mesh.comm
    all_pos = np.concatenate(comm.allgather(pos))
    all_ind = np.concatenate(comm.allgather(ind))
    N = vertices.size - 1
    if all_pos.size != N or np.unique(all_pos).size != N:
        raise InputError("the owned cells do not cover the time mesh exactly once")
    out = np.empty(N)
    out[all_pos] = all_ind
    return out


def indicator_function(mesh: dolfinx.mesh.Mesh, indicator, name: str = "indicator") -> dolfinx.fem.Function:
    """A DG0 function holding a per-owned-cell indicator (for output or marking)."""
    V = dolfinx.fem.functionspace(mesh, ("DG", 0))
    f = dolfinx.fem.Function(V, name=name)
    n_own = owned_cell_count(mesh)
    f.x.array[V.dofmap.list[:n_own, 0]] = _local_indicator(mesh, indicator)
    f.x.scatter_forward()
    return f


def el_residual_indicator_nodal(system: LagrangianSystem, params: Mapping[str, np.ndarray], times, Q, *,
                                beta: float = 0.0) -> np.ndarray:
    r"""Residual indicator ``η_j`` (module docstring) of the P1 trajectory through ``(times, Q)``.

    Parameters
    ----------
    system, params:
        The Lagrangian system and its parameters (only ``system.gradient`` is
        used).
    times:
        Strictly increasing node times ``(N+1,)`` (a non-uniform mesh is fine).
    Q:
        Nodal values ``(N+1, n)`` or ``(N+1, B, n)`` (batch members are summed
        in the squares).
    beta:
        Nudging strength (the residual of ``L_β = L + β c``).

    Returns
    -------
    numpy.ndarray
        ``η``, shape ``(N,)``, in time order.
    """
    theta = system.check_params(params)
    t = np.asarray(times, dtype=float)
    Q = np.asarray(Q)
    if Q.ndim == 2:
        Q = Q[:, None, :]
    if t.ndim != 1 or Q.ndim != 3 or Q.shape[0] != t.size or Q.shape[2] != system.n:
        raise InputError(f"Q must have shape (N+1, n) or (N+1, B, n) with N+1 = {t.size}, n = {system.n}; "
                         f"got {Q.shape}")
    h = np.diff(t)
    if np.any(h <= 0):
        raise InputError("times must be strictly increasing")
    N = h.size
    V = (Q[1:] - Q[:-1]) / h[:, None, None]                                   # (N, B, n)
    gq0 = np.empty_like(V)
    gq1 = np.empty_like(V)
    p0 = np.empty_like(V)
    p1 = np.empty_like(V)
    xs = [system.inputs_at(tk) for tk in t]
    for j in range(N):
        gq0[j], p0[j] = system.gradient(Q[j], V[j], theta, xs[j], t[j], beta)
        gq1[j], p1[j] = system.gradient(Q[j + 1], V[j], theta, xs[j + 1], t[j + 1], beta)
    dpdt = (p1 - p0) / h[:, None, None]
    R0 = np.sum(np.abs(gq0 - dpdt) ** 2, axis=(1, 2))
    R1 = np.sum(np.abs(gq1 - dpdt) ** 2, axis=(1, 2))
    interior = h**2 * 0.5 * h * (R0 + R1)
    jump = np.zeros(N + 1)
    jump[1:-1] = np.sum(np.abs(p0[1:] - p1[:-1]) ** 2, axis=(1, 2))
    eta2 = interior + 0.5 * h * (jump[:-1] + jump[1:])
    return np.sqrt(eta2)


def el_residual_indicator(system: LagrangianSystem, params: Mapping[str, np.ndarray],
                          q: dolfinx.fem.Function, *, beta: float = 0.0) -> np.ndarray:
    """:func:`el_residual_indicator_nodal` of a P1 trajectory function, per owned local cell.

    The result is ordered like the mesh's owned cells (the order
    :func:`refine_time_mesh` and :func:`indicator_function` expect).
    """
    mesh = q.function_space.mesh
    check_time_mesh(mesh)
    if q.function_space.ufl_element().embedded_superdegree != 1:
        raise InputError("el_residual_indicator needs a P1 trajectory")
    t, vals = nodal_values(q)
    vertices = time_mesh_vertices(mesh)
    if t.size != vertices.size or np.any(t != vertices):
        raise InputError("the trajectory's nodes are not the mesh vertices (is it P1 on this mesh?)")
    eta = el_residual_indicator_nodal(system, params, t, vals, beta=beta)
    return eta[cell_time_positions(mesh, vertices)]


def _check_fraction(fraction) -> float:
    f = float(fraction)
    if not (0.0 < f <= 1.0):
        raise InputError(f"fraction must be in (0, 1], got {fraction!r}")
    return f


def refine_time_mesh(mesh: dolfinx.mesh.Mesh, indicator, fraction: float, *,
                     ghost_mode: GhostMode = GhostMode.shared_facet) -> dolfinx.mesh.Mesh:
    """Bisect the ``⌈fraction · N⌉`` cells with the largest indicator.

    Parameters
    ----------
    mesh:
        A time mesh (possibly distributed).
    indicator:
        One value per owned local cell (array, in dolfinx's local cell order,
        e.g. from :func:`el_residual_indicator`) or a DG0 function.
    fraction:
        Fraction of cells to refine, in ``(0, 1]`` (ties broken toward
        earlier times).

    Returns
    -------
    dolfinx.mesh.Mesh
        A new mesh with ``N + ⌈fraction · N⌉`` cells on the same communicator.
    """
    f = _check_fraction(fraction)
    vertices = time_mesh_vertices(mesh)
    eta = indicator_in_time_order(mesh, indicator, vertices)
    N = eta.size
    order = np.argsort(-eta, kind="stable")
    marked = order[:math.ceil(f * N)]
    mids = 0.5 * (vertices[marked] + vertices[marked + 1])
    return time_mesh_from_vertices(mesh.comm, np.sort(np.concatenate([vertices, mids])), ghost_mode=ghost_mode)


def coarsen_time_mesh(mesh: dolfinx.mesh.Mesh, indicator, fraction: float, *,
                      ghost_mode: GhostMode = GhostMode.shared_facet) -> dolfinx.mesh.Mesh:
    """Merge adjacent pairs among the ``⌊fraction · N⌋`` cells with the smallest indicator.

    Scanning in time order, a marked cell and the next cell, if also marked
    and not already merged, become one cell (their shared vertex is removed).
    The end points are kept.  Returns a new mesh (unchanged vertex set if no
    adjacent pair is marked).
    """
    f = _check_fraction(fraction)
    vertices = time_mesh_vertices(mesh)
    eta = indicator_in_time_order(mesh, indicator, vertices)
    N = eta.size
    marked = np.zeros(N, dtype=bool)
    marked[np.argsort(eta, kind="stable")[:math.floor(f * N)]] = True
    keep = np.ones(N + 1, dtype=bool)
    j = 0
    while j < N - 1:
        if marked[j] and marked[j + 1]:
            keep[j + 1] = False
            j += 2
        else:
            j += 1
    return time_mesh_from_vertices(mesh.comm, vertices[keep], ghost_mode=ghost_mode)
