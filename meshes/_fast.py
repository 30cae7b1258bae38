r"""Linear-time construction of distributed layered (time-slab) meshes.

A *layered* mesh is ``n_t`` copies of one layer of cells stacked in time: the
vertices are the points ``(s, t_k)`` of a fixed spatial vertex set
``s = 0 … n_v−1`` on each time plane ``k = 0 … n_t`` (global vertex index
``k n_v + s``), and layer ``k`` holds the cells of a reference layer (vertex
``s`` of plane 0 and ``n_v + s`` of plane 1) shifted by ``k n_v`` (global cell
index ``k n_c + c``).  Interval time meshes (``n_v = 1``), space–time
rectangles and 2+1-D boxes are layered.

Why not :func:`dolfinx.mesh.create_mesh`: dolfinx 0.11 reorders the owned
cells of every rank with the Gibbs–Poole–Stockmeyer algorithm, whose cost is
quadratic in the number of BFS levels; a path graph (a 1-D mesh) has one
level per cell, so a 10⁶-cell interval mesh spends ~20 s there (0.2 s at
10⁵), and thin space–time strips suffer likewise.  A layered mesh has an
optimal partition and ordering without any graph algorithm:

* rank ``r`` of ``P`` owns the layers ``[⌊r n_t/P⌋, ⌊(r+1) n_t/P⌋)`` (balanced,
  contiguous in time) and the vertices of their lower planes; the rank owning
  the last layer also owns the final plane;
* cells and vertices are numbered in time order, owned before ghosts (the
  ordering reverse Cuthill–McKee or GPS would find for a path, bandwidth 1);
* ghost cells (``GhostMode.shared_facet``) are the cells of the two
  neighbouring layers sharing a facet with an owned cell; none for
  ``GhostMode.none``.

Each rank computes only its own cells and the coordinates of its own planes,
builds the vertex and cell :class:`~dolfinx.common.IndexMap`\ s directly, and
hands them to the dolfinx ``Topology`` and ``Geometry`` constructors (P1
geometry: the geometry nodes are the vertices, with the vertex index map) —
what ``create_mesh`` builds after partitioning, reordering and numbering.  All
work is ``O(cells per rank)``; no rank ever holds the whole mesh.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import basix.ufl
import dolfinx.cpp as _cpp
import dolfinx.fem
import dolfinx.mesh
import numpy as np
import ufl
from mpi4py import MPI

from glep.errors import InputError

GhostMode = dolfinx.mesh.GhostMode
CellType = dolfinx.mesh.CellType

_NBX_TAG = 1202                      # dolfinx::MPI::tag::consensus_nbx, IndexMap's default
_FACET_VERTICES = {CellType.interval: 1, CellType.triangle: 2, CellType.quadrilateral: 2,
                   CellType.tetrahedron: 3, CellType.hexahedron: 4}

__all__ = ["LayerPattern", "interval_pattern", "rectangle_pattern", "box_pattern", "layer_bounds",
           "layered_mesh", "uniform_times", "scatter_plane_times"]


@dataclass(frozen=True)
class LayerPattern:
    """One layer of cells between time planes 0 and 1.

    Attributes
    ----------
    cell_type:
        The dolfinx cell type (P1 geometry).
    cells:
        ``(n_c, vertices per cell)`` int64: vertex ``s`` of plane 0 is ``s``,
        of plane 1 is ``n_v + s``; dolfinx (Basix) vertex order.
    space:
        ``(n_v, d)`` spatial coordinates of the plane vertices (``d = 0`` for
        a pure time mesh); time is appended as the last coordinate.
    """

    cell_type: CellType
    cells: np.ndarray
    space: np.ndarray

    @property
    def n_v(self) -> int:
        return self.space.shape[0]

    @property
    def n_c(self) -> int:
        return self.cells.shape[0]

    @property
    def gdim(self) -> int:
        return self.space.shape[1] + 1


def uniform_times(T: float, n: int, lo: int, hi: int) -> np.ndarray:
    """``t_k = k (T/n)`` for ``lo ≤ k < hi``, with ``t_n = T``: bit for bit ``np.linspace(0, T, n+1)[lo:hi]``."""
    t = np.arange(lo, hi, dtype=float) * (T / n) + 0.0
    if lo <= n < hi:
        t[n - lo] = T
    return t


def _axis(length: float, n: int) -> np.ndarray:
    return uniform_times(length, n, 0, n + 1)


def interval_pattern() -> LayerPattern:
    """The 1-D time mesh: one vertex per plane, the cell ``[t_k, t_{k+1}]``."""
    return LayerPattern(CellType.interval, np.array([[0, 1]], dtype=np.int64), np.empty((1, 0)))


def rectangle_pattern(L: float, nx: int, cell_type: CellType) -> LayerPattern:
    """One row of ``nx`` squares on ``[0, L]`` (triangles: two per square, diagonal "right" as dolfinx)."""
    nv = nx + 1
    ix = np.arange(nx, dtype=np.int64)
    v0, v1 = ix, ix + 1
    v2, v3 = v0 + nv, v1 + nv
    if cell_type == CellType.triangle:
        cells = np.stack([np.stack([v0, v1, v3], 1), np.stack([v0, v2, v3], 1)], 1).reshape(-1, 3)
    elif cell_type == CellType.quadrilateral:
        cells = np.stack([v0, v1, v2, v3], 1)
    else:
        raise InputError(f"cell_type must be triangle or quadrilateral for a space-time rectangle, got {cell_type}")
    return LayerPattern(cell_type, cells, _axis(L, nx)[:, None])


def box_pattern(Lx: float, Ly: float, nx: int, ny: int, cell_type: CellType) -> LayerPattern:
    """One layer of ``nx × ny`` cubes on ``[0, Lx] × [0, Ly]`` (tetrahedra: six per cube, as dolfinx)."""
    nv = (nx + 1) * (ny + 1)
    iy, ix = np.divmod(np.arange(nx * ny, dtype=np.int64), nx)
    v0 = iy * (nx + 1) + ix
    v1, v2 = v0 + 1, v0 + nx + 1
    v3 = v1 + nx + 1
    v4, v5, v6, v7 = v0 + nv, v1 + nv, v2 + nv, v3 + nv
    if cell_type == CellType.tetrahedron:
        tets = [(v0, v1, v3, v7), (v0, v1, v7, v5), (v0, v5, v7, v4),
                (v0, v3, v2, v7), (v0, v6, v4, v7), (v0, v2, v6, v7)]
        cells = np.stack([np.stack(t, 1) for t in tets], 1).reshape(-1, 4)
    elif cell_type == CellType.hexahedron:
        cells = np.stack([v0, v1, v2, v3, v4, v5, v6, v7], 1)
    else:
        raise InputError(f"cell_type must be tetrahedron or hexahedron for a space-time box, got {cell_type}")
    gy, gx = np.divmod(np.arange(nv), nx + 1)
    space = np.stack([_axis(Lx, nx)[gx], _axis(Ly, ny)[gy]], 1)
    return LayerPattern(cell_type, cells, space)


def layer_bounds(n_t: int, size: int) -> np.ndarray:
    """``b[r] = ⌊r n_t / P⌋``: rank ``r`` owns layers ``b[r] … b[r+1]−1``."""
    return (np.arange(size + 1, dtype=np.int64) * n_t) // size


def _ghost_layer_cells(pattern: LayerPattern, ghost_mode: GhostMode, upper_plane: bool) -> np.ndarray:
    """Reference cells with a facet on plane 1 (``upper_plane``) or plane 0: the ghosts across that plane."""
    if ghost_mode == GhostMode.none:
        return np.empty(0, dtype=np.int64)
    on_plane = (pattern.cells >= pattern.n_v) if upper_plane else (pattern.cells < pattern.n_v)
    return np.flatnonzero(on_plane.sum(axis=1) >= _FACET_VERTICES[pattern.cell_type])


def _local_cells(pattern: LayerPattern, n_t: int, k0: int, k1: int, ghost_mode: GhostMode, owner):
    """Global vertex lists, global indices and ghost owners of this rank's cells (owned first)."""
    nc = pattern.n_c
    layers = np.arange(k0, k1, dtype=np.int64)
    cells = [(layers[:, None, None] * pattern.n_v + pattern.cells[None]).reshape(-1, pattern.cells.shape[1])]
    index = [(layers[:, None] * nc + np.arange(nc)[None]).reshape(-1)]
    owners = []
    if k1 > k0:
        for k, upper in ((k0 - 1, True), (k1, False)):
            if 0 <= k < n_t:
                sel = _ghost_layer_cells(pattern, ghost_mode, upper)
                cells.append(pattern.cells[sel] + k * pattern.n_v)
                index.append(sel + k * nc)
                owners.append(np.full(sel.size, owner(k), dtype=np.int32))
    ghost_owners = np.concatenate(owners) if owners else np.empty(0, dtype=np.int32)
    return np.concatenate(cells), np.concatenate(index), ghost_owners


def _vertex_numbering(cells_g: np.ndarray, nv: int, n_t: int, k0: int, k1: int, owner):
    """Owned vertex range, ghost vertices (global, sorted) with owners, and the cells in local vertex indices.

    Owned: planes ``k0 … k1−1`` (and the final plane on the rank owning the last layer), local
    indices ``0 …`` in global order; ghosts: every other vertex of a local cell, after them.
    """
    lo_own = k0 * nv
    hi_own = (k1 + (1 if (k1 == n_t and k1 > k0) else 0)) * nv
    base = max(k0 - 1, 0) * nv                                  # local cells touch planes k0−1 … k1+1 only
    width = min(k1 + 2, n_t + 1) * nv - base if k1 > k0 else 0
    used = np.zeros(width, dtype=bool)
    used[cells_g.reshape(-1) - base] = True
    used[lo_own - base:hi_own - base] = False
    ghosts = np.flatnonzero(used).astype(np.int64) + base
    ghost_owners = owner(np.minimum(ghosts // nv, n_t - 1)).astype(np.int32)
    local = np.full(width, -1, dtype=np.int32)
    local[lo_own - base:hi_own - base] = np.arange(hi_own - lo_own, dtype=np.int32)
    local[ghosts - base] = np.arange(ghosts.size, dtype=np.int32) + (hi_own - lo_own)
    cells_l = local[cells_g - base] if cells_g.size else np.empty(cells_g.shape, dtype=np.int32)
    return lo_own, hi_own, ghosts, ghost_owners, np.ascontiguousarray(cells_l, dtype=np.int32)


def _coordinates(pattern: LayerPattern, nodes: np.ndarray, times: Callable[[int, int], np.ndarray]) -> np.ndarray:
    """``(len(nodes), gdim)``: spatial coordinates of each node's plane vertex, then its plane time."""
    plane, s = np.divmod(nodes, pattern.n_v)
    x = np.empty((nodes.size, pattern.gdim))
    if nodes.size:
        kmin = int(plane.min())
        t = np.asarray(times(kmin, int(plane.max()) + 1), dtype=float)
        x[:, :-1] = pattern.space[s]
        x[:, -1] = t[plane - kmin]
    return x


def layered_mesh(comm: MPI.Comm, pattern: LayerPattern, n_t: int, times: Callable[[int, int], np.ndarray],
                 ghost_mode: GhostMode = GhostMode.shared_facet) -> dolfinx.mesh.Mesh:
    """The distributed layered mesh of ``n_t`` layers (see module docstring). Collective.

    Arguments
    ---------
    comm:
        Communicator of the mesh.
    pattern:
        The reference layer.
    n_t:
        Number of layers (time cells), ``≥ 1``.
    times:
        ``times(lo, hi)`` returns the plane times ``t_lo … t_{hi−1}``; each
        rank asks only for the planes of its own and ghost cells.
    ghost_mode:
        Ghosting, as for :func:`dolfinx.mesh.create_mesh`.

    Returns
    -------
    A :class:`dolfinx.mesh.Mesh` whose local cells and vertices are in time order.
    """
    bounds = layer_bounds(n_t, comm.size)
    k0, k1 = int(bounds[comm.rank]), int(bounds[comm.rank + 1])

    def owner(k):
        return np.searchsorted(bounds, k, side="right") - 1

    cells_g, cell_index, cell_owners = _local_cells(pattern, n_t, k0, k1, ghost_mode, owner)
    n_own_c = (k1 - k0) * pattern.n_c
    lo_own, hi_own, ghosts, ghost_owners, cells_l = _vertex_numbering(cells_g, pattern.n_v, n_t, k0, k1, owner)

    vmap = _cpp.common.IndexMap(comm, hi_own - lo_own, ghosts, ghost_owners, _NBX_TAG)
    cmap = _cpp.common.IndexMap(comm, n_own_c, np.ascontiguousarray(cell_index[n_own_c:]), cell_owners, _NBX_TAG)
    topology = _cpp.mesh.Topology(pattern.cell_type, vmap, cmap, _cpp.graph.AdjacencyList_int32(cells_l),
                                  np.ascontiguousarray(cell_index, dtype=np.int64))
    # P1 geometry: the nodes are the vertices, with their numbering and index map
    nodes = np.concatenate([np.arange(lo_own, hi_own, dtype=np.int64), ghosts])
    element = basix.ufl.element("Lagrange", pattern.cell_type.name, 1, shape=(pattern.gdim,))
    cmap_el = dolfinx.fem.coordinate_element(element.basix_element)
    geometry = _cpp.mesh.Geometry_float64(vmap, cells_l, cmap_el._cpp_object, _coordinates(pattern, nodes, times),
                                          nodes)
    return dolfinx.mesh.Mesh(_cpp.mesh.Mesh_float64(comm, topology, geometry), ufl.Mesh(element))


def scatter_plane_times(comm: MPI.Comm, t: np.ndarray | None, N: int) -> Callable[[int, int], np.ndarray]:
    """Send every rank the plane times of its layers and their neighbours (``t``, ``N+1`` values, read on rank 0).

    Rank ``r`` receives ``t[max(k0−1, 0) : min(k1+2, N+1)]`` (``k0, k1`` its layer
    bounds), enough for its owned and ghost cells; ``O(N)`` data in total.  Returns the
    ``times(lo, hi)`` callback of :func:`layered_mesh`.
    """
    bounds = layer_bounds(N, comm.size)
    lo = np.maximum(bounds[:-1] - 1, 0)
    hi = np.minimum(bounds[1:] + 2, N + 1)
    counts = hi - lo
    if comm.size == 1:
        local = np.asarray(t, dtype=float)
    else:
        send = None
        if comm.rank == 0:
            send = [np.concatenate([t[a:b] for a, b in zip(lo, hi)]), (counts, np.cumsum(counts) - counts),
                    MPI.DOUBLE]
        local = np.empty(int(counts[comm.rank]), dtype=float)
        comm.Scatterv(send, local, root=0)
    offset = int(lo[comm.rank])
    return lambda a, b: local[a - offset:b - offset]


def _rows_sorted(a: np.ndarray, primary: np.ndarray | None = None) -> np.ndarray:
    """Permutation sorting the rows of ``a`` lexicographically (``primary`` first, then column 0, 1, …)."""
    keys = tuple(a[:, j] for j in range(a.shape[1] - 1, -1, -1))
    return np.lexsort(keys + (() if primary is None else (primary,)))


def detect_layers(x: np.ndarray, cells: np.ndarray, cell_type: CellType
                  ) -> tuple[LayerPattern, np.ndarray] | None:
    """Recognise a layered mesh in global arrays (as read from a file); ``None`` if it is not one.

    The mesh is layered in its last topological coordinate ``t = x[:, tdim−1]``
    when (i) the vertices lie on planes ``t_0 < … < t_{n_t}`` each holding the
    same spatial points ``x[:, :tdim−1]`` (exactly), (ii) coordinates beyond
    ``tdim`` are zero, (iii) every cell joins two consecutive planes, and
    (iv) every layer holds the same cells, shifted.  Cost: sorting, ``O(n log n)``.

    Arguments
    ---------
    x:
        ``(n, ≥ tdim)`` vertex coordinates (P1 geometry).
    cells:
        ``(n_cells, vertices per cell)`` vertex indices (rows of ``x``).
    cell_type:
        Cell type of every cell.

    Returns
    -------
    ``(pattern, plane_times)`` or ``None``.
    """
    if cell_type not in _FACET_VERTICES or x.ndim != 2 or cells.ndim != 2 or cells.shape[0] == 0:
        return None
    tdim = dolfinx.mesh.cell_dim(cell_type)
    if x.shape[1] < tdim or np.any(x[:, tdim:] != 0.0):
        return None
    t, space = x[:, tdim - 1], x[:, :tdim - 1]
    order = _rows_sorted(space[:, ::-1], primary=t)          # time, then the last spatial coordinate first
    ts = t[order]
    starts = np.flatnonzero(np.concatenate([[True], ts[1:] != ts[:-1]]))
    n_planes, n = starts.size, x.shape[0]
    nv = n // n_planes
    if n_planes < 2 or nv * n_planes != n or np.any(np.diff(starts) != nv):
        return None
    sp = space[order].reshape(n_planes, nv, tdim - 1)
    if not np.array_equal(sp, np.broadcast_to(sp[0], sp.shape)):
        return None
    if nv > 1 and not np.all(np.any(sp[0][1:] != sp[0][:-1], axis=1)):
        return None                                            # repeated spatial points
    new_id = np.empty(n, dtype=np.int64)
    new_id[order] = np.arange(n, dtype=np.int64)
    c = new_id[cells]
    plane = c // nv
    layer = plane.min(axis=1)
    n_t = n_planes - 1
    if np.any(plane.max(axis=1) != layer + 1) or np.any(np.bincount(layer, minlength=n_t) != cells.shape[0] // n_t):
        return None
    ref = c - layer[:, None] * nv
    ref = ref[_rows_sorted(ref, primary=layer)].reshape(n_t, -1, cells.shape[1])
    if not np.array_equal(ref, np.broadcast_to(ref[0], ref.shape)):
        return None
    return LayerPattern(cell_type, np.ascontiguousarray(ref[0]), np.ascontiguousarray(sp[0])), ts[starts]
