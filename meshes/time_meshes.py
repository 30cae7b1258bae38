r"""Time meshes for the finite-element backend.

Physical time is the ``x``-coordinate of a dolfinx interval mesh on ``[0, T]``
(for field equations, the last coordinate of a space–time rectangle
``[0, L] × [0, T]`` or box ``[0, L_x] × [0, L_y] × [0, T]``).  Every mesh here
is a stack of time layers built in linear time by
:func:`glep.meshes._fast.layered_mesh`: rank ``r`` of ``P`` owns the layers
(time cells) ``⌊r N/P⌋ … ⌊(r+1) N/P⌋ − 1`` — a balanced partition contiguous in
time — computes only its own cells and plane coordinates, and numbers cells
and vertices in time order.  (:func:`dolfinx.mesh.create_mesh` and
:func:`dolfinx.mesh.create_interval` reorder cells with Gibbs–Poole–Stockmeyer,
quadratic in the number of cells of a 1-D mesh: ~25 s at 10⁶ cells.)  The
same code runs serially and under ``mpirun``.

Graded meshes resolve boundary layers.  With ``N`` cells of lengths
``h_j = h_min r^{f_j}``, ``f_j ∈ [0, 1]`` linear in the distance (in cells)
from the layer, the lengths form a geometric sequence with common ratio
``r^{1/(N−1)}`` (one end) or ``r^{1/⌊(N−1)/2⌋}`` (both ends), and
``max h / min h = r`` exactly.

Because time meshes are one-dimensional, global information (the sorted
vertex times, the position of each cell in time order) is cheap to gather on
every rank; :func:`time_mesh_vertices` and :func:`cell_time_positions` do so
and are the bridge between dolfinx's local cell numbering and time order.
"""

from __future__ import annotations

import dolfinx.mesh
import numpy as np
from mpi4py import MPI

from glep.errors import InputError
from glep.meshes._fast import (
    box_pattern,
    interval_pattern,
    layered_mesh,
    rectangle_pattern,
    scatter_plane_times,
    uniform_times,
)
from glep.validation import check_positive

__all__ = ["time_mesh_from_vertices", "uniform_time_mesh", "graded_vertices", "graded_time_mesh",
           "space_time_mesh", "space_time_box_mesh", "time_mesh_vertices", "cell_time_positions",
           "owned_cell_count", "check_time_mesh"]

GhostMode = dolfinx.mesh.GhostMode
CellType = dolfinx.mesh.CellType


def _check_cells(N, name: str = "N") -> int:
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or int(N) < 1:
        raise InputError(f"{name} (number of cells) must be an integer >= 1, got {N!r}")
    return int(N)


def _check_ghost_mode(ghost_mode) -> GhostMode:
    if not isinstance(ghost_mode, GhostMode):
        raise InputError(f"ghost_mode must be a dolfinx.mesh.GhostMode (none or shared_facet), "
                         f"got {ghost_mode!r}")
    return ghost_mode


def _check_cell_type(cell_type, allowed: tuple[CellType, ...]) -> CellType:
    if cell_type not in allowed:
        names = " or ".join(c.name for c in allowed)
        raise InputError(f"cell_type must be dolfinx.mesh.CellType.{names}, got {cell_type!r}")
    return cell_type


def time_mesh_from_vertices(comm: MPI.Comm, t, *, ghost_mode: GhostMode = GhostMode.shared_facet
                            ) -> dolfinx.mesh.Mesh:
    """An interval mesh with vertices at the strictly increasing times ``t``.

    Parameters
    ----------
    comm:
        Communicator the mesh is distributed over.
    t:
        Vertex times, shape ``(N+1,)``, strictly increasing.  Only rank 0's
        array is used: each rank receives the times of its own block of cells.
    ghost_mode:
        Ghosting of the distributed mesh (default: shared facets, as
        :func:`dolfinx.mesh.create_interval`).

    Returns
    -------
    The mesh; rank ``r`` owns cells ``⌊r N/P⌋ … ⌊(r+1) N/P⌋ − 1`` in time order.
    """
    ghost_mode = _check_ghost_mode(ghost_mode)
    error, N = None, None
    if comm.rank == 0:
        try:
            t = np.asarray(t, dtype=float)
        except (TypeError, ValueError):
            error = f"t (vertex times) must be an array of numbers, got {type(t).__name__}"
        else:
            if t.ndim != 1 or t.size < 2:
                error = f"t (vertex times) must be a 1-d array of at least 2 numbers, got shape {t.shape}"
            elif not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
                error = "t (vertex times) must be finite and strictly increasing"
            else:
                N = t.size - 1
    error, N = comm.bcast((error, N), root=0)     # every rank raises together: no rank is left waiting
    if error is not None:
        raise InputError(error)
    return layered_mesh(comm, interval_pattern(), N, scatter_plane_times(comm, t, N), ghost_mode)


def uniform_time_mesh(comm: MPI.Comm, T: float, N: int, *, ghost_mode: GhostMode = GhostMode.shared_facet
                      ) -> dolfinx.mesh.Mesh:
    """``N`` equal cells on ``[0, T]`` (``t_k = k T / N``, the nodes of :class:`glep.TimeGrid`).

    The vertex times are bit for bit ``np.linspace(0, T, N + 1)``; every rank
    computes only those of its own cells.
    """
    T = check_positive(T, "T")
    N = _check_cells(N)
    ghost_mode = _check_ghost_mode(ghost_mode)
    return layered_mesh(comm, interval_pattern(), N, lambda a, b: uniform_times(T, N, a, b), ghost_mode)


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
                     ghost_mode: GhostMode = GhostMode.shared_facet) -> dolfinx.mesh.Mesh:
    """A time mesh geometrically graded toward a boundary layer at ``end`` (:func:`graded_vertices`).

    Every rank evaluates :func:`graded_vertices` (a cumulative sum, ``O(N)``
    NumPy work) and keeps the times of its own cells: no communication.
    """
    ghost_mode = _check_ghost_mode(ghost_mode)
    t = graded_vertices(T, N, ratio, end)
    return layered_mesh(comm, interval_pattern(), t.size - 1, lambda a, b: t[a:b], ghost_mode)


def space_time_mesh(comm: MPI.Comm, L: float, T: float, nx: int, nt: int, *,
                    cell_type: CellType = CellType.triangle,
                    ghost_mode: GhostMode = GhostMode.shared_facet) -> dolfinx.mesh.Mesh:
    """The rectangle ``[0, L] × [0, T]``: ``x`` is space, ``y`` is time (``nx × nt`` squares).

    Parameters
    ----------
    L, T:
        Length of the spatial interval and time horizon.
    nx, nt:
        Number of cells in space and in time.
    cell_type:
        ``triangle`` (two per square, diagonal from ``(x_i, t_k)`` to
        ``(x_{i+1}, t_{k+1})``, as :func:`dolfinx.mesh.create_rectangle`) or
        ``quadrilateral``.
    ghost_mode:
        Ghosting of the distributed mesh.

    Returns
    -------
    The mesh; rank ``r`` owns the time rows ``⌊r nt/P⌋ … ⌊(r+1) nt/P⌋ − 1``.
    Coordinates are ``x_i = i (L/nx)``, ``t_k = k (T/nt)`` with exact ends ``L``, ``T``.
    """
    L, T = check_positive(L, "L"), check_positive(T, "T")
    nx, nt = _check_cells(nx, "nx"), _check_cells(nt, "nt")
    cell_type = _check_cell_type(cell_type, (CellType.triangle, CellType.quadrilateral))
    ghost_mode = _check_ghost_mode(ghost_mode)
    return layered_mesh(comm, rectangle_pattern(L, nx, cell_type), nt, lambda a, b: uniform_times(T, nt, a, b),
                        ghost_mode)


def space_time_box_mesh(comm: MPI.Comm, Lx: float, Ly: float, T: float, nx: int, ny: int, nt: int, *,
                        cell_type: CellType = CellType.tetrahedron,
                        ghost_mode: GhostMode = GhostMode.shared_facet) -> dolfinx.mesh.Mesh:
    """The box ``[0, Lx] × [0, Ly] × [0, T]`` for 2+1-D fields: ``z`` is time (``nx × ny × nt`` cubes).

    Parameters
    ----------
    Lx, Ly, T:
        Extent of the spatial rectangle and time horizon.
    nx, ny, nt:
        Number of cells along ``x``, ``y`` and time.
    cell_type:
        ``tetrahedron`` (six per cube, as :func:`dolfinx.mesh.create_box`) or
        ``hexahedron``.
    ghost_mode:
        Ghosting of the distributed mesh.

    Returns
    -------
    The mesh; rank ``r`` owns the time layers ``⌊r nt/P⌋ … ⌊(r+1) nt/P⌋ − 1``.
    """
    Lx, Ly, T = check_positive(Lx, "Lx"), check_positive(Ly, "Ly"), check_positive(T, "T")
    nx, ny, nt = _check_cells(nx, "nx"), _check_cells(ny, "ny"), _check_cells(nt, "nt")
    cell_type = _check_cell_type(cell_type, (CellType.tetrahedron, CellType.hexahedron))
    ghost_mode = _check_ghost_mode(ghost_mode)
    return layered_mesh(comm, box_pattern(Lx, Ly, nx, ny, cell_type), nt,
                        lambda a, b: uniform_times(T, nt, a, b), ghost_mode)


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
