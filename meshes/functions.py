r"""Trajectories as P1 functions on time meshes, and back.

A trajectory ``q(t) ∈ Rⁿ`` on a time mesh is a continuous piecewise-linear
(P1) function with ``n`` components: its degrees of freedom are the nodal
values ``q(t_j)``.  These helpers convert between such functions and the
NumPy arrays of the ``ivp`` backend (``times``, ``Q`` of shape
``(N+1, B, n)``), in parallel: nodal values are gathered on every rank in
time order.
"""

from __future__ import annotations

import dolfinx.fem
import dolfinx.mesh
import numpy as np

from glep.errors import InputError
from glep.meshes.time_meshes import check_time_mesh

__all__ = ["trajectory_space", "trajectory_function", "nodal_values", "transfer_trajectory"]


def trajectory_space(mesh: dolfinx.mesh.Mesh, n: int, degree: int = 1) -> dolfinx.fem.FunctionSpace:
    """The Lagrange space of ``n``-component trajectories on a time mesh."""
    check_time_mesh(mesh)
    return dolfinx.fem.functionspace(mesh, ("Lagrange", degree, (int(n),)))


def trajectory_function(mesh_or_space, times, Q, *, member: int = 0, name: str = "q") -> dolfinx.fem.Function:
    """The function interpolating nodal data ``(times, Q)`` piecewise linearly.

    Parameters
    ----------
    mesh_or_space:
        A time mesh (a P1 space with ``n`` components is created) or a
        Lagrange function space on one.
    times:
        Increasing sample times, shape ``(S,)``; they need not be the mesh
        vertices (the data are interpolated linearly in time).
    Q:
        Samples, shape ``(S, n)`` or ``(S, B, n)`` (then batch member
        ``member`` is used), e.g. ``Trajectory.q`` of a shooting solution.
    """
    times = np.asarray(times, dtype=float)
    Q = np.asarray(Q)
    if Q.ndim == 3:
        if not 0 <= member < Q.shape[1]:
            raise InputError(f"member must be in [0, {Q.shape[1]}), got {member}")
        Q = Q[:, member]
    if Q.ndim == 1:
        Q = Q[:, None]
    if Q.ndim != 2 or Q.shape[0] != times.shape[0]:
        raise InputError(f"Q must have shape (S, n) or (S, B, n) with S = len(times) = {times.shape[0]}, "
                         f"got {np.shape(Q)}")
    if np.any(np.diff(times) <= 0):
        raise InputError("times must be strictly increasing")
    n = Q.shape[1]
    if isinstance(mesh_or_space, dolfinx.mesh.Mesh):
        V = trajectory_space(mesh_or_space, n)
    else:
        V = mesh_or_space
        check_time_mesh(V.mesh)
    bs = V.dofmap.index_map_bs
    if bs != n:
        raise InputError(f"the function space has {bs} components per node, the data have n = {n}")
    t = V.tabulate_dof_coordinates()[:, 0]
    values = np.stack([np.interp(t, times, Q[:, i].real) for i in range(n)], axis=1)
    if np.iscomplexobj(Q):
        raise InputError("complex trajectories cannot be stored in a real function space")
    f = dolfinx.fem.Function(V, name=name)
    f.x.array[:] = values.reshape(-1)
    return f


def nodal_values(q: dolfinx.fem.Function) -> tuple[np.ndarray, np.ndarray]:
    """``(times, values)`` of a Lagrange function on a time mesh, gathered on every rank.

    Returns the sorted node times ``(S,)`` and values ``(S, n)`` (``n`` the
    block size; vertices for P1).
    """
    V = q.function_space
    check_time_mesh(V.mesh)
    bs = V.dofmap.index_map_bs
    owned = V.dofmap.index_map.size_local
    t = V.tabulate_dof_coordinates()[:owned, 0]
    vals = q.x.array.reshape(-1, bs)[:owned]
    comm = V.mesh.comm
    t = np.concatenate(comm.allgather(t))
    vals = np.concatenate(comm.allgather(vals))
    order = np.argsort(t, kind="stable")
    return t[order], vals[order]


def transfer_trajectory(q: dolfinx.fem.Function, target) -> dolfinx.fem.Function:
    """Interpolate a trajectory onto another time mesh (or space), e.g. after adaptation.

    Exact for P1 functions when the target mesh refines the source mesh.
    """
    degree = q.function_space.ufl_element().embedded_superdegree
    if degree != 1:
        raise InputError(f"transfer_trajectory handles P1 trajectories, got degree {degree}")
    t, vals = nodal_values(q)
    return trajectory_function(target, t, vals, name=q.name)
