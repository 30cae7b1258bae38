"""Distributed layered meshes.  Run with ``mpirun -n 2 python -m pytest tests/mpi/test_meshes_scale_mpi.py``.

Every cell is owned exactly once, the partition is balanced and contiguous in time, the ghosts
are exactly the cells of other ranks sharing a facet with an owned cell, and the
global mesh is the one-rank mesh.  On one rank the tests still pass (trivial partition).
"""

from __future__ import annotations

import glep  # noqa: F401  isort: skip

import shutil
import tempfile
from pathlib import Path

import dolfinx.cpp
import dolfinx.fem
import dolfinx.mesh
import numpy as np
import pytest
import ufl
from mpi4py import MPI

import glep.meshes as gm

pytestmark = pytest.mark.mpi

COMM = MPI.COMM_WORLD
CT = dolfinx.mesh.CellType
GM = dolfinx.mesh.GhostMode
FACET_VERTICES = {CT.interval: 1, CT.triangle: 2, CT.quadrilateral: 2, CT.tetrahedron: 3, CT.hexahedron: 4}


@pytest.fixture
def shared_dir():
    """A directory every rank sees, made by rank 0."""
    path = Path(COMM.bcast(tempfile.mkdtemp(prefix="glep_mpi_scale_") if COMM.rank == 0 else None, root=0))
    yield path
    COMM.barrier()
    if COMM.rank == 0:
        shutil.rmtree(path, ignore_errors=True)


def _cells(mesh: dolfinx.mesh.Mesh, owned: bool = True) -> np.ndarray:
    """Global vertex indices of the owned (or ghost) cells, ``(cells, vertices)``."""
    tdim = mesh.topology.dim
    n_own = mesh.topology.index_map(tdim).size_local
    n_vertices = dolfinx.cpp.mesh.cell_num_vertices(mesh.topology.cell_type)
    c2v = mesh.topology.connectivity(tdim, 0).array.reshape(-1, n_vertices)
    local = c2v[:n_own] if owned else c2v[n_own:]
    return mesh.topology.index_map(0).local_to_global(local.ravel()).reshape(local.shape)


def _cell_coordinates(mesh: dolfinx.mesh.Mesh) -> np.ndarray:
    n = mesh.topology.index_map(mesh.topology.dim).size_local
    return mesh.geometry.x[mesh.geometry.dofmaps[0][:n]][:, :, :mesh.geometry.dim]


def _global_cells(mesh: dolfinx.mesh.Mesh) -> list[tuple] | None:
    """All owned cells of all ranks as sorted coordinate tuples, sorted, on rank 0 (``None`` elsewhere)."""
    mine = [tuple(sorted(map(tuple, c))) for c in _cell_coordinates(mesh).tolist()]
    every = mesh.comm.gather(mine, root=0)
    return sorted(c for part in every for c in part) if mesh.comm.rank == 0 else None


def _assert_same_global_mesh(mesh: dolfinx.mesh.Mesh, serial: dolfinx.mesh.Mesh) -> None:
    """The distributed mesh has exactly the cells (exact coordinates) of the one-rank mesh; verdict on every rank."""
    mine = _global_cells(mesh)
    error = None
    if COMM.rank == 0 and mine != _global_cells(serial):
        error = "the distributed mesh differs from the one-rank mesh"
    error = COMM.bcast(error, root=0)
    assert error is None, error


def _time_blocks(mesh: dolfinx.mesh.Mesh) -> list[tuple[float, float, int]]:
    """``(earliest, latest time, owned cells)`` of each rank's owned cells, on every rank."""
    x = _cell_coordinates(mesh)[:, :, -1]
    lo, hi = (float(x.min()), float(x.max())) if x.size else (np.inf, -np.inf)
    return COMM.allgather((lo, hi, x.shape[0]))


def _assert_contiguous_balanced(mesh: dolfinx.mesh.Mesh, layer_cells: int, n_layers: int) -> None:
    blocks = _time_blocks(mesh)
    counts = [b[2] for b in blocks]
    assert sum(counts) == layer_cells * n_layers
    assert max(counts) - min(counts) <= layer_cells                   # balanced to one time layer
    filled = [b for b in blocks if b[2] > 0]
    for (_, hi, _), (lo, _, _) in zip(filled[:-1], filled[1:]):
        assert hi <= lo                                               # rank r's layers all precede rank r+1's


def _assert_ghosts_exact(mesh: dolfinx.mesh.Mesh, ghost_mode: GM) -> None:
    """Ghost cells = the cells owned elsewhere that share a facet with an owned cell (none for GhostMode.none)."""
    owned, ghosts = _cells(mesh, True), _cells(mesh, False)
    need = FACET_VERTICES[mesh.topology.cell_type] if ghost_mode == GM.shared_facet else None
    every = COMM.allgather(owned)
    others = np.concatenate([c for r, c in enumerate(every) if r != COMM.rank] or [owned[:0]])
    mine = set(owned.ravel().tolist())
    if need is None:
        expected = others[:0]
    else:
        shared = np.isin(others, list(mine)).sum(axis=1)
        expected = others[shared >= need]
    as_set = {tuple(sorted(c)) for c in expected.tolist()}
    assert {tuple(sorted(c)) for c in ghosts.tolist()} == as_set
    assert len(as_set) == ghosts.shape[0]                             # no duplicate ghosts


# -- time meshes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("N", [1, 2, 3, 101, 4000])
def test_time_mesh_partition(N):
    t = gm.graded_vertices(2.0, N, 1.0 if N < 3 else 9.0, "both")
    mesh = gm.time_mesh_from_vertices(COMM, t)
    imap = mesh.topology.index_map(1)
    assert imap.size_global == N
    _assert_contiguous_balanced(mesh, 1, N)
    positions = np.sort(np.concatenate(COMM.allgather(gm.cell_time_positions(mesh))))
    np.testing.assert_array_equal(positions, np.arange(N))           # every cell owned exactly once
    k0 = (COMM.rank * N) // COMM.size
    np.testing.assert_array_equal(gm.cell_time_positions(mesh), k0 + np.arange(imap.size_local))
    np.testing.assert_array_equal(gm.time_mesh_vertices(mesh), t)
    _assert_same_global_mesh(mesh, gm.time_mesh_from_vertices(MPI.COMM_SELF, t))


@pytest.mark.parametrize("ghost_mode", [GM.none, GM.shared_facet])
def test_time_mesh_ghosts_and_assembly(ghost_mode):
    N = 57
    mesh = gm.uniform_time_mesh(COMM, 1.0, N, ghost_mode=ghost_mode)
    _assert_ghosts_exact(mesh, ghost_mode)
    V = dolfinx.fem.functionspace(mesh, ("Lagrange", 1))
    assert V.dofmap.index_map.size_global == N + 1
    u = dolfinx.fem.Function(V)
    u.interpolate(lambda x: np.sin(3.0 * x[0]))
    value = COMM.allreduce(dolfinx.fem.assemble_scalar(dolfinx.fem.form(u.dx(0) * ufl.dx)))
    assert value == pytest.approx(np.sin(3.0), rel=1e-13)             # ∫ u' = u(1) − u(0) for P1 interpolant
    if ghost_mode != GM.none:
        jumps = COMM.allreduce(dolfinx.fem.assemble_scalar(dolfinx.fem.form(ufl.jump(u.dx(0)) ** 2 * ufl.dS)))
        serial = gm.uniform_time_mesh(MPI.COMM_SELF, 1.0, N)
        us = dolfinx.fem.Function(dolfinx.fem.functionspace(serial, ("Lagrange", 1)))
        us.interpolate(lambda x: np.sin(3.0 * x[0]))
        ref = dolfinx.fem.assemble_scalar(dolfinx.fem.form(ufl.jump(us.dx(0)) ** 2 * ufl.dS))
        assert jumps == pytest.approx(ref, rel=1e-12)


def test_rank_zero_vertices_are_used():
    """Only rank 0's vertex times count (other ranks may pass anything, e.g. None)."""
    t = np.linspace(0.0, 1.0, 11) ** 2
    mesh = gm.time_mesh_from_vertices(COMM, t if COMM.rank == 0 else None)
    np.testing.assert_array_equal(gm.time_mesh_vertices(mesh), t)


# -- space-time meshes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("ghost_mode", [GM.none, GM.shared_facet])
@pytest.mark.parametrize("cell_type,nx,nt", [(CT.triangle, 4, 9), (CT.quadrilateral, 3, 2), (CT.triangle, 5, 1)])
def test_space_time_rectangle_distributed(cell_type, nx, nt, ghost_mode):
    L, T = 1.5, 2.0
    mesh = gm.space_time_mesh(COMM, L, T, nx, nt, cell_type=cell_type, ghost_mode=ghost_mode)
    per_layer = nx * (2 if cell_type == CT.triangle else 1)
    _assert_contiguous_balanced(mesh, per_layer, nt)
    _assert_ghosts_exact(mesh, ghost_mode)
    _assert_same_global_mesh(mesh, gm.space_time_mesh(MPI.COMM_SELF, L, T, nx, nt, cell_type=cell_type))
    x = ufl.SpatialCoordinate(mesh)
    area = COMM.allreduce(dolfinx.fem.assemble_scalar(dolfinx.fem.form(x[0] * x[1] * ufl.dx)))
    assert area == pytest.approx((L * T) ** 2 / 4, rel=1e-13)
    edge = COMM.allreduce(dolfinx.fem.assemble_scalar(dolfinx.fem.form(x[1] * ufl.ds)))
    assert edge == pytest.approx(L * T + T**2, rel=1e-13)             # top edge L·T, two sides T²/2 each
    if ghost_mode == GM.shared_facet:                                  # interior facets across the rank boundary
        serial = gm.space_time_mesh(MPI.COMM_SELF, L, T, nx, nt, cell_type=cell_type)
        xs = ufl.SpatialCoordinate(serial)
        inner = COMM.allreduce(dolfinx.fem.assemble_scalar(dolfinx.fem.form(ufl.avg(x[0] * x[1]) * ufl.dS)))
        ref = dolfinx.fem.assemble_scalar(dolfinx.fem.form(ufl.avg(xs[0] * xs[1]) * ufl.dS))
        assert inner == pytest.approx(ref, rel=1e-13)


@pytest.mark.parametrize("cell_type", [CT.tetrahedron, CT.hexahedron])
def test_space_time_box_distributed(cell_type):
    args = (1.0, 0.5, 2.0, 2, 3, 5)
    mesh = gm.space_time_box_mesh(COMM, *args, cell_type=cell_type, ghost_mode=GM.shared_facet)
    _assert_contiguous_balanced(mesh, 2 * 3 * (6 if cell_type == CT.tetrahedron else 1), 5)
    _assert_ghosts_exact(mesh, GM.shared_facet)
    _assert_same_global_mesh(mesh, gm.space_time_box_mesh(MPI.COMM_SELF, *args, cell_type=cell_type))
    volume = COMM.allreduce(dolfinx.fem.assemble_scalar(dolfinx.fem.form(1.0 * ufl.dx(domain=mesh))))
    assert volume == pytest.approx(1.0, rel=1e-13)


# -- I/O across rank counts -----------------------------------------------------------------------------------
@pytest.mark.parametrize("build,per_layer,n_layers", [
    (lambda comm: gm.graded_time_mesh(comm, 3.0, 3001, ratio=12.0, end="final"), 1, 3001),
    (lambda comm: gm.space_time_mesh(comm, 1.0, 2.0, 6, 31), 12, 31),
], ids=["time", "space-time"])
def test_write_on_p_read_on_q(shared_dir, build, per_layer, n_layers):
    """Written on all ranks and read on all ranks; written by rank 0 alone and read on all ranks."""
    serial = build(MPI.COMM_SELF)
    par_path, one_path = shared_dir / "par.xdmf", shared_dir / "one.xdmf"
    gm.save_time_mesh(build(COMM), par_path)
    if COMM.rank == 0:
        gm.save_time_mesh(serial, one_path)
    COMM.barrier()
    for path in (par_path, one_path):
        loaded = gm.load_time_mesh(COMM, path)
        _assert_contiguous_balanced(loaded, per_layer, n_layers)
        _assert_ghosts_exact(loaded, GM.shared_facet)
        _assert_same_global_mesh(loaded, serial)
