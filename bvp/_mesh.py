"""Time meshes for the ``bvp`` backend: thin wrappers over :mod:`glep.meshes`.

A time mesh is a one-dimensional dolfinx interval mesh whose ``x``-coordinate
is the time ``t``; every function of :mod:`glep.bvp` that takes a ``mesh``
also accepts a ``(T, N)`` pair for ``N`` uniform elements on ``[0, T]``.
"""

from __future__ import annotations

import dolfinx
from mpi4py import MPI

import glep.meshes as gm
from glep.errors import InputError


def uniform(comm: MPI.Comm, T: float, N: int) -> dolfinx.mesh.Mesh:
    """``N`` equal elements on ``[0, T]`` (:func:`glep.meshes.uniform_time_mesh`)."""
    return gm.uniform_time_mesh(comm, T, N)


def graded(comm: MPI.Comm, T: float, N: int, *, ratio: float, end: str = "final") -> dolfinx.mesh.Mesh:
    """``N`` geometrically graded elements, small ones at ``end`` (:func:`glep.meshes.graded_time_mesh`)."""
    return gm.graded_time_mesh(comm, T, N, ratio=ratio, end=end)


def as_mesh(mesh_or_spec, comm: MPI.Comm | None = None) -> dolfinx.mesh.Mesh:
    """Accept a dolfinx mesh or a ``(T, N)`` pair."""
    if isinstance(mesh_or_spec, dolfinx.mesh.Mesh):
        return mesh_or_spec
    try:
        T, N = mesh_or_spec
    except (TypeError, ValueError) as exc:
        raise InputError("mesh must be a dolfinx interval mesh or a (T, N) pair") from exc
    return uniform(comm or MPI.COMM_WORLD, float(T), int(N))
