r"""Time meshes for the finite-element backend.

Physical time is the ``x``-coordinate of a dolfinx interval mesh on ``[0, T]``
(for field equations, the ``y``-coordinate of a space–time rectangle).  Every
interval mesh here is built by :func:`time_mesh_from_vertices` from a sorted
list of vertex times with :func:`dolfinx.mesh.create_mesh`: rank 0 supplies
all cells and the partitioner distributes them, so the same code runs serially
and under ``mpirun``.

Graded meshes resolve boundary layers.  With ``N`` cells of lengths
``h_j = h_min r^{f_j}``, ``f_j ∈ [0, 1]`` linear in the distance (in cells)
from the layer, the lengths form a geometric sequence with common ratio
``r^{1/(N−1)}`` (one end) or ``r^{1/⌊(N−1)/2⌋}`` (both ends), and
``max h / min h = r`` exactly.

Because time meshes are one-dimensional, global information (the sorted
vertex times, the position of each cell in time order) is cheap to gather on
every rank; :func:`time_mesh_vertices` and :func:`cell_time_positions` do so
and are the bridge between dolfinx's local, partition-dependent cell numbering
and time order.
"""

from __future__ import annotations

import basix.ufl
import dolfinx.graph
import dolfinx.mesh
import numpy as np
import ufl
from mpi4py import MPI

from glep.errors import InputError
from glep.validation import check_positive

__all__ = ["time_mesh_from_vertices", "uniform_time_mesh", "graded_vertices", "graded_time_mesh",
           "space_time_mesh", "time_mesh_vertices", "cell_time_positions", "owned_cell_count",
           "check_time_mesh"]

GhostMode = dolfinx.mesh.GhostMode


def _check_cells(N, name: str = "N") -> int:
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or int(N) < 1:
        raise InputError(f"{name} (number of cells) must be an integer >= 1, got {N!r}")
    return int(N)


def _partitioner(comm: MPI.Comm, ghost_mode: GhostMode):
    if comm.size == 1:
        return None
    return dolfinx.mesh.create_cell_partitioner(dolfinx.graph.partitioner(), ghost_mode, 2)


def time_mesh_from_vertices(comm: MPI.Comm, t, *, ghost_mode: GhostMode = GhostMode.shared_facet
                            ) -> dolfinx.mesh.Mesh:
    """An interval mesh with vertices at the strictly increasing times ``t``.

    Parameters
    ----------
    comm:
        Communicator the mesh is distributed over.
    t:
        Vertex times, shape ``(N+1,)``, strictly increasing.  Only rank 0's
        array is used (the other ranks pass no cells to ``create_mesh``).
    ghost_mode:
        Ghosting of the distributed mesh (default: shared facets, as
        :func:`dolfinx.mesh.create_interval`).
    """
    error = None
    if comm.rank == 0:
        t = np.asarray(t, dtype=float)
        if t.ndim != 1 or t.size < 2:
            error = f"vertex times must be a 1-d array of at least 2 values, got shape {t.shape}"
        elif not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
            error = "vertex times must be finite and strictly increasing"
    error = comm.bcast(error, root=0)     # every rank raises together: no rank is left in create_mesh
    if error is not None:
        raise InputError(error)
    if comm.rank == 0:
        N = t.size - 1
        cells = np.stack([np.arange(N), np.arange(1, N + 1)], axis=1).astype(np.int64)
        x = t[:, None].copy()
    else:
        cells = np.empty((0, 2), dtype=np.int64)
        x = np.empty((0, 1), dtype=float)
    domain = ufl.Mesh(basix.ufl.element("Lagrange", "interval", 1, shape=(1,)))
    return dolfinx.mesh.create_mesh(comm, cells, domain, x, partitioner=_partitioner(comm, ghost_mode))


def uniform_time_mesh(comm: MPI.Comm, T: float, N: int, **kw) -> dolfinx.mesh.Mesh:
    """``N`` equal cells on ``[0, T]`` (``t_k = k T / N``, the nodes of :class:`glep.TimeGrid`)."""
    T = check_positive(T, "T")
    N = _check_cells(N)
    return time_mesh_from_vertices(comm, np.linspace(0.0, T, N + 1), **kw)


def graded_vertices(T: float, N: int, ratio: float, end: str = "final") -> np.ndarray:
    r"""Vertex times of a geometrically graded mesh (see module docstring).

    Parameters
    ----------
    T, N:
        Horizon and number of cells.
    ratio:
        ``max h / min h ≥ 1``, reached exactly.
    end:
        Where the smallest cells are: ``"final"`` (at ``T``), ``"initial"``
        (at 0) or ``"both"``.
    """
    T = check_positive(T, "T")
    N = _check_cells(N)
    ratio = float(ratio)
    if not np.isfinite(ratio) or ratio < 1.0:
        raise InputError(f"ratio (largest / smallest cell) must be a finite number >= 1, got {ratio!r}")
    j = np.arange(N)
    if end == "initial":
        d = j
    elif end == "final":
        d = N - 1 - j
    elif end == "both":
        d = np.minimum(j, N - 1 - j)
    else:
        raise InputError(f"end must be 'final', 'initial' or 'both', got {end!r}")
    dmax = int(d.max())
    if dmax == 0:
        if ratio != 1.0:
            need = 3 if end == "both" else 2
            raise InputError(f"a grading ratio {ratio} needs N >= {need} cells for end={end!r}, got N={N}")
        sizes = np.ones(N)
    else:
        sizes = ratio ** (d / dmax)
    t = np.concatenate([[0.0], np.cumsum(sizes)])
    t *= T / t[-1]
    t[-1] = T
    return t


def graded_time_mesh(comm: MPI.Comm, T: float, N: int, *, ratio: float, end: str = "final",
                     **kw) -> dolfinx.mesh.Mesh:
    """A time mesh geometrically graded toward a boundary layer at ``end`` (:func:`graded_vertices`)."""
    return time_mesh_from_vertices(comm, graded_vertices(T, N, ratio, end), **kw)


def space_time_mesh(comm: MPI.Comm, L: float, T: float, nx: int, nt: int, *,
                    cell_type: dolfinx.mesh.CellType = dolfinx.mesh.CellType.triangle,
                    ghost_mode: GhostMode = GhostMode.shared_facet) -> dolfinx.mesh.Mesh:
    """The rectangle ``[0, L] × [0, T]``: ``x`` is space, ``y`` is time (``nx × nt`` cells)."""
    L, T = check_positive(L, "L"), check_positive(T, "T")
    nx, nt = _check_cells(nx, "nx"), _check_cells(nt, "nt")
    return dolfinx.mesh.create_rectangle(comm, [np.array([0.0, 0.0]), np.array([L, T])], [nx, nt],
                                         cell_type=cell_type, ghost_mode=ghost_mode)


# -- global views of a distributed time mesh ---------------------------------------


def check_time_mesh(mesh: dolfinx.mesh.Mesh) -> None:
    """Raise :class:`InputError` unless ``mesh`` is an interval (time) mesh."""
    if mesh.topology.dim != 1:
        raise InputError(f"expected a time mesh (topological dimension 1), got dimension {mesh.topology.dim}")


def owned_cell_count(mesh: dolfinx.mesh.Mesh) -> int:
    """Number of cells owned by this rank."""
    return mesh.topology.index_map(mesh.topology.dim).size_local


def _owned_cell_ends(mesh: dolfinx.mesh.Mesh) -> tuple[np.ndarray, np.ndarray]:
    """``(t_left, t_right)`` of the owned local cells, in local order."""
    nodes = mesh.geometry.dofmaps[0][:owned_cell_count(mesh)]
    t = mesh.geometry.x[nodes, 0]
    return t.min(axis=1), t.max(axis=1)


def time_mesh_vertices(mesh: dolfinx.mesh.Mesh) -> np.ndarray:
    """Sorted vertex times of the whole (distributed) time mesh, identical on every rank."""
    check_time_mesh(mesh)
    left, right = _owned_cell_ends(mesh)
    local = np.concatenate([left, right])
    every = mesh.comm.allgather(local)
    return np.unique(np.concatenate(every))


def cell_time_positions(mesh: dolfinx.mesh.Mesh, vertices: np.ndarray | None = None) -> np.ndarray:
    """Index in time order (``0 … N−1``) of each owned local cell.

    ``values_in_time_order[cell_time_positions(mesh)]`` converts a per-cell
    array in time order to dolfinx's local cell order.
    """
    if vertices is None:
        vertices = time_mesh_vertices(mesh)
    left, _ = _owned_cell_ends(mesh)
    pos = np.searchsorted(vertices, left)
    if np.any(pos >= vertices.size - 1) or np.any(vertices[pos] != left):
        raise InputError("cell ends do not match the gathered vertex times (is this a time mesh?)")
    return pos
