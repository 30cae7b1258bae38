"""Layered (time-slab) meshes built in linear time: same meshes as dolfinx's generators, time-ordered numbering.

Moderate sizes only; the build times at 10⁵–10⁶ cells are in ``benchmarks/bench_meshes.py``.
The reference ("old path") meshes are dolfinx's own: :func:`dolfinx.mesh.create_mesh` from the
same vertex times (what :func:`glep.meshes.time_mesh_from_vertices` used to call),
:func:`dolfinx.mesh.create_rectangle` and :func:`dolfinx.mesh.create_box`.
"""

from __future__ import annotations

import glep  # noqa: F401  isort: skip

import basix.ufl
import dolfinx.fem
import dolfinx.mesh
import h5py
import numpy as np
import pytest
import ufl
from mpi4py import MPI

import glep.meshes as gm
from glep.meshes import _fast

COMM = MPI.COMM_SELF
CT = dolfinx.mesh.CellType
EPS = np.finfo(float).eps


def _increasing_times(seed: int, N: int) -> np.ndarray:
    """Strictly increasing, irregular vertex times on [0, 1]."""
    h = np.random.default_rng(seed).uniform(0.1, 1.0, N)
    t = np.concatenate([[0.0], np.cumsum(h)])
    return t / t[-1]


def _dolfinx_time_mesh(t: np.ndarray) -> dolfinx.mesh.Mesh:
    """The previous construction: all cells to dolfinx.mesh.create_mesh (graph reordering)."""
    N = t.size - 1
    cells = np.stack([np.arange(N), np.arange(1, N + 1)], axis=1).astype(np.int64)
    domain = ufl.Mesh(basix.ufl.element("Lagrange", "interval", 1, shape=(1,)))
    return dolfinx.mesh.create_mesh(COMM, cells, domain, t[:, None].copy())


def _cell_coordinates(mesh: dolfinx.mesh.Mesh) -> np.ndarray:
    """``(owned cells, vertices, gdim)`` coordinates of the owned cells, in local order."""
    n = mesh.topology.index_map(mesh.topology.dim).size_local
    return mesh.geometry.x[mesh.geometry.dofmaps[0][:n]][:, :, :mesh.geometry.dim]


def _grid_cells(mesh: dolfinx.mesh.Mesh, steps: np.ndarray) -> np.ndarray:
    """Cells as sorted rows of lattice vertex ids (coordinates / steps), rows sorted: a canonical form.

    Asserts every coordinate is a lattice point to within rounding of the extent (``8 eps``).
    """
    x = _cell_coordinates(mesh)
    idx = np.rint(x / steps).astype(np.int64)
    np.testing.assert_allclose(x, idx * steps, rtol=0, atol=8 * EPS * np.max(idx * steps))
    n = idx.max(axis=(0, 1)) + 1
    ids = np.zeros(idx.shape[:2], dtype=np.int64)
    for d in range(idx.shape[2] - 1, -1, -1):
        ids = ids * n[d] + idx[:, :, d]
    rows = np.sort(ids, axis=1)
    return rows[np.lexsort(rows.T[::-1])]


def _canonical_cells(mesh: dolfinx.mesh.Mesh) -> list[tuple]:
    """The owned cells as sorted tuples of vertex coordinate tuples, sorted (exact comparison)."""
    return sorted(tuple(sorted(map(tuple, cell))) for cell in _cell_coordinates(mesh).tolist())


def _cell_volumes(mesh: dolfinx.mesh.Mesh) -> np.ndarray:
    """Volume of every owned cell (``∫ φ_K dx`` with ``φ_K`` the DG0 indicator), local order."""
    V = dolfinx.fem.functionspace(mesh, ("DG", 0))
    vec = dolfinx.fem.assemble_vector(dolfinx.fem.form(ufl.TestFunction(V) * ufl.dx))
    return vec.array[:mesh.topology.index_map(mesh.topology.dim).size_local].copy()


# -- interval time meshes --------------------------------------------------------------------------
@pytest.mark.parametrize("N", [1, 2, 7, 1000, 4097])
def test_uniform_vertices_are_linspace_bit_for_bit(N):
    T = 2.7
    mesh = gm.uniform_time_mesh(COMM, T, N)
    np.testing.assert_array_equal(gm.time_mesh_vertices(mesh), np.linspace(0.0, T, N + 1))
    np.testing.assert_array_equal(mesh.geometry.x[:, 0], np.linspace(0.0, T, N + 1))  # vertices in time order
    np.testing.assert_array_equal(gm.cell_time_positions(mesh), np.arange(N))          # cells in time order
    assert mesh.geometry.dim == 1


@pytest.mark.parametrize("seed", range(4))
def test_vertex_mesh_matches_dolfinx_create_mesh(seed):
    t = _increasing_times(seed, 300 + 37 * seed)
    new, old = gm.time_mesh_from_vertices(COMM, t), _dolfinx_time_mesh(t)
    np.testing.assert_array_equal(gm.time_mesh_vertices(new), t)
    np.testing.assert_array_equal(gm.cell_time_positions(new), np.arange(t.size - 1))
    a = np.sort(_cell_coordinates(new)[:, :, 0], axis=1)
    b = np.sort(_cell_coordinates(old)[:, :, 0], axis=1)
    np.testing.assert_array_equal(a, np.stack([t[:-1], t[1:]], axis=1))               # time order, locally
    np.testing.assert_array_equal(b[np.argsort(b[:, 0])], a)                           # the same cells
    np.testing.assert_allclose(_cell_volumes(new), np.diff(t), rtol=4 * EPS)


@pytest.mark.parametrize("end", ["final", "initial", "both"])
def test_graded_mesh_matches_graded_vertices(end):
    t = gm.graded_vertices(1.3, 257, 50.0, end)
    mesh = gm.graded_time_mesh(COMM, 1.3, 257, ratio=50.0, end=end)
    np.testing.assert_array_equal(gm.time_mesh_vertices(mesh), t)
    np.testing.assert_array_equal(gm.time_mesh_vertices(gm.time_mesh_from_vertices(COMM, t)), t)


@pytest.mark.parametrize("ghost_mode", list(dolfinx.mesh.GhostMode.__members__.values()))
def test_time_mesh_is_usable_by_dolfinx(ghost_mode):
    """Interior-facet (vertex) jumps, boundary terms and P1 interpolation on the built topology."""
    t = _increasing_times(11, 64)
    mesh = gm.time_mesh_from_vertices(COMM, t, ghost_mode=ghost_mode)
    V = dolfinx.fem.functionspace(mesh, ("Lagrange", 1))
    assert V.dofmap.index_map.size_global == t.size
    u = dolfinx.fem.Function(V)
    u.interpolate(lambda x: x[0] ** 2)
    x = ufl.SpatialCoordinate(mesh)[0]
    jump = dolfinx.fem.assemble_scalar(dolfinx.fem.form(ufl.jump(u.dx(0)) ** 2 * ufl.dS))
    ends = dolfinx.fem.assemble_scalar(dolfinx.fem.form(x * ufl.ds))
    h = np.diff(t)
    # u' = (t_{k+1} + t_k) on cell k, so the jump at t_k is t_{k+1} − t_{k−1}
    np.testing.assert_allclose(jump, np.sum((h[1:] + h[:-1]) ** 2), rtol=1e-13)
    assert ends == pytest.approx(1.0, abs=1e-15)                                    # t = 1 at the end, 0 at the start


# -- space-time rectangles and boxes ---------------------------------------------------------------
@pytest.mark.parametrize("cell_type", [CT.triangle, CT.quadrilateral])
@pytest.mark.parametrize("nx,nt", [(1, 1), (3, 17), (12, 5)])
def test_space_time_rectangle_matches_create_rectangle(cell_type, nx, nt):
    L, T = 2.0, 3.0
    mesh = gm.space_time_mesh(COMM, L, T, nx, nt, cell_type=cell_type)
    ref = dolfinx.mesh.create_rectangle(COMM, [np.array([0.0, 0.0]), np.array([L, T])], [nx, nt],
                                        cell_type=cell_type)
    steps = np.array([L / nx, T / nt])
    np.testing.assert_array_equal(_grid_cells(mesh, steps), _grid_cells(ref, steps))
    per_cell = L * T / (nx * nt) / (2 if cell_type == CT.triangle else 1)
    np.testing.assert_allclose(_cell_volumes(mesh), per_cell, rtol=1e-13)            # quality: no slivers
    layer_start = _cell_coordinates(mesh)[:, :, 1].min(axis=1)
    assert np.all(np.diff(layer_start) >= 0)                                          # cells in time order
    x = mesh.geometry.x
    assert x[:, 0].max() == L and x[:, 1].max() == T                                  # exact ends


@pytest.mark.parametrize("cell_type", [CT.tetrahedron, CT.hexahedron])
def test_space_time_box_matches_create_box(cell_type):
    Lx, Ly, T, nx, ny, nt = 1.0, 0.5, 2.0, 3, 2, 5
    mesh = gm.space_time_box_mesh(COMM, Lx, Ly, T, nx, ny, nt, cell_type=cell_type)
    ref = dolfinx.mesh.create_box(COMM, [np.zeros(3), np.array([Lx, Ly, T])], [nx, ny, nt], cell_type=cell_type)
    steps = np.array([Lx / nx, Ly / ny, T / nt])
    np.testing.assert_array_equal(_grid_cells(mesh, steps), _grid_cells(ref, steps))
    per_cell = Lx * Ly * T / (nx * ny * nt) / (6 if cell_type == CT.tetrahedron else 1)
    np.testing.assert_allclose(_cell_volumes(mesh), per_cell, rtol=1e-13)
    area = dolfinx.fem.assemble_scalar(dolfinx.fem.form(1.0 * ufl.ds(domain=mesh)))
    assert area == pytest.approx(2 * (Lx * Ly + Lx * T + Ly * T), rel=1e-13)


def test_bad_arguments_name_themselves():
    with pytest.raises(glep.InputError, match="ghost_mode must be a dolfinx.mesh.GhostMode"):
        gm.uniform_time_mesh(COMM, 1.0, 4, ghost_mode="shared_facet")
    with pytest.raises(glep.InputError, match="ghost_mode"):
        gm.time_mesh_from_vertices(COMM, [0.0, 1.0], ghost_mode=1)
    with pytest.raises(glep.InputError, match="cell_type must be .*triangle or quadrilateral"):
        gm.space_time_mesh(COMM, 1.0, 1.0, 2, 2, cell_type=CT.tetrahedron)
    with pytest.raises(glep.InputError, match="cell_type must be .*tetrahedron or hexahedron"):
        gm.space_time_box_mesh(COMM, 1.0, 1.0, 1.0, 2, 2, 2, cell_type=CT.triangle)
    with pytest.raises(glep.InputError, match=r"nt \(number of cells\) must be an integer >= 1"):
        gm.space_time_mesh(COMM, 1.0, 1.0, 2, 0)
    with pytest.raises(glep.InputError, match=r"ny \(number of cells\)"):
        gm.space_time_box_mesh(COMM, 1.0, 1.0, 1.0, 2, 2.0, 2)
    with pytest.raises(glep.InputError, match="Ly must be a finite number > 0"):
        gm.space_time_box_mesh(COMM, 1.0, -1.0, 1.0, 2, 2, 2)
    with pytest.raises(glep.InputError, match="strictly increasing"):
        gm.time_mesh_from_vertices(COMM, [0.0, 1.0, 1.0])
    with pytest.raises(glep.InputError, match=r"t \(vertex times\) must be a 1-d array of at least 2 numbers"):
        gm.time_mesh_from_vertices(COMM, [0.0])
    with pytest.raises(glep.InputError, match="must be an array of numbers, got list"):
        gm.time_mesh_from_vertices(COMM, [0.0, "later"])


# -- recognising layered meshes in files ---------------------------------------------------------------
def _layered_arrays(pattern: _fast.LayerPattern, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Global ``(x, cells)`` of a layered mesh, vertex ``k n_v + s``."""
    nv, nt = pattern.n_v, times.size - 1
    x = np.concatenate([np.tile(pattern.space, (nt + 1, 1)), np.repeat(times, nv)[:, None]], axis=1)
    cells = np.concatenate([pattern.cells + k * nv for k in range(nt)])
    return x, cells


@pytest.mark.parametrize("seed", range(3))
def test_detect_layers_undoes_any_row_order(seed):
    rng = np.random.default_rng(seed)
    pattern = _fast.rectangle_pattern(1.0, 4, CT.triangle)
    times = _increasing_times(seed, 9)
    x, cells = _layered_arrays(pattern, times)
    perm = rng.permutation(x.shape[0])                                      # shuffle vertex rows ...
    inv = np.empty_like(perm)
    inv[perm] = np.arange(perm.size)
    x, cells = x[perm], inv[cells][rng.permutation(cells.shape[0])]         # ... and cell rows
    x = np.concatenate([x, np.zeros((x.shape[0], 1))], axis=1)              # padded to 3 columns, as in files
    found_pattern, found_times = _fast.detect_layers(x, cells, CT.triangle)
    np.testing.assert_array_equal(found_times, times)
    np.testing.assert_array_equal(found_pattern.space, pattern.space)
    rows = np.sort(found_pattern.cells, axis=1)
    expected = np.sort(pattern.cells, axis=1)
    np.testing.assert_array_equal(rows[np.lexsort(rows.T[::-1])], expected[np.lexsort(expected.T[::-1])])


def test_detect_layers_rejects_meshes_that_are_not_stacks():
    pattern = _fast.rectangle_pattern(1.0, 3, CT.triangle)
    x, cells = _layered_arrays(pattern, np.linspace(0.0, 1.0, 5))
    assert _fast.detect_layers(x, cells, CT.triangle) is not None
    moved = x.copy()
    moved[5, 0] += 0.01                                                     # one vertex off the lattice
    assert _fast.detect_layers(moved, cells, CT.triangle) is None
    flipped = cells.copy()
    nv = pattern.n_v
    flipped[6:8] = [[nv + 0, nv + 1, 2 * nv + 0], [nv + 1, 2 * nv + 1, 2 * nv + 0]]   # other diagonal in layer 1
    assert _fast.detect_layers(x, flipped, CT.triangle) is None
    lifted = np.concatenate([x, np.full((x.shape[0], 1), 0.5)], axis=1)      # a surface in 3-D
    assert _fast.detect_layers(lifted, cells, CT.triangle) is None
    assert _fast.detect_layers(x[:, :1], cells[:, :2], CT.interval) is None  # vertices off one line per plane


@pytest.mark.parametrize("build", [
    lambda: gm.graded_time_mesh(COMM, 1.5, 2000, ratio=30.0, end="both"),
    lambda: gm.space_time_mesh(COMM, 1.0, 2.0, 7, 40),
    lambda: gm.space_time_mesh(COMM, 1.0, 2.0, 40, 3, cell_type=CT.quadrilateral),
    lambda: gm.space_time_box_mesh(COMM, 1.0, 1.0, 1.0, 2, 3, 4),
], ids=["graded", "rectangle-tri", "rectangle-quad", "box-tet"])
def test_xdmf_roundtrip_rebuilds_the_same_cells(tmp_path, build):
    mesh = build()
    path = tmp_path / "m.xdmf"
    gm.save_time_mesh(mesh, path)
    loaded = gm.load_time_mesh(COMM, path)
    tdim = mesh.topology.dim
    assert loaded.topology.dim == tdim and loaded.geometry.dim == mesh.geometry.dim
    assert loaded.topology.index_map(tdim).size_global == mesh.topology.index_map(tdim).size_global

    assert _canonical_cells(loaded) == _canonical_cells(mesh)               # exact coordinates, same cells
    with pytest.raises(glep.InputError, match="ghost_mode must be"):
        gm.load_time_mesh(COMM, path, ghost_mode="none")


def test_load_falls_back_to_dolfinx_for_other_meshes(tmp_path):
    """A mesh with crossed diagonals (midpoint vertices between planes) is not layered: read_mesh reads it."""
    mesh = dolfinx.mesh.create_rectangle(COMM, [np.zeros(2), np.ones(2)], [3, 4],
                                         diagonal=dolfinx.mesh.DiagonalType.crossed)
    path = tmp_path / "crossed.xdmf"
    gm.save_time_mesh(mesh, path)
    loaded = gm.load_time_mesh(COMM, path)
    assert loaded.topology.index_map(2).size_global == 4 * 3 * 4
    area = dolfinx.fem.assemble_scalar(dolfinx.fem.form(1.0 * ufl.dx(domain=loaded)))
    assert area == pytest.approx(1.0, rel=1e-13)


def test_load_reports_an_inconsistent_file(tmp_path):
    path = tmp_path / "broken.xdmf"
    gm.save_time_mesh(gm.uniform_time_mesh(COMM, 1.0, 10), path)
    with h5py.File(path.with_suffix(".h5"), "r+") as f:
        f["Mesh/mesh/topology"][3, 1] = 10**6                              # a vertex the geometry does not have
    with pytest.raises(glep.InputError, match="the mesh 'mesh' in the file is inconsistent"):
        gm.load_time_mesh(COMM, path)
