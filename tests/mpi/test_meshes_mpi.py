"""Distributed time meshes.  Run with ``mpirun -n 2 python -m pytest tests/mpi/test_meshes_mpi.py``.

Every test also passes on one rank (then it checks nothing about distribution
beyond consistency with the serial construction).
"""

from __future__ import annotations

import glep  # noqa: F401  isort: skip

import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from mpi4py import MPI

import glep.meshes as gm

pytestmark = pytest.mark.mpi

COMM = MPI.COMM_WORLD


@pytest.fixture
def shared_dir():
    """A directory every rank sees, made by rank 0 (pytest's tmp_path is per process)."""
    path = Path(COMM.bcast(tempfile.mkdtemp(prefix="glep_mpi_") if COMM.rank == 0 else None, root=0))
    yield path
    COMM.barrier()
    if COMM.rank == 0:
        shutil.rmtree(path, ignore_errors=True)


def _owned_cell_ends(mesh):
    nodes = mesh.geometry.dofmaps[0][:gm.owned_cell_count(mesh)]
    return np.sort(mesh.geometry.x[nodes, 0], axis=1)


@pytest.mark.parametrize("end", ["final", "both"])
def test_graded_mesh_is_distributed_with_right_cells(end):
    N, T, ratio = 57, 2.0, 30.0
    mesh = gm.graded_time_mesh(COMM, T, N, ratio=ratio, end=end)
    assert mesh.comm.size == COMM.size
    imap = mesh.topology.index_map(1)
    assert imap.size_global == N
    owned = COMM.allgather(imap.size_local)
    assert sum(owned) == N
    if COMM.size > 1:
        assert all(k > 0 for k in owned)                       # really distributed
        assert max(owned) < N
    expected = gm.graded_vertices(T, N, ratio, end)
    # every owned cell is a cell of the expected mesh, and together they are all of them
    ends = _owned_cell_ends(mesh)
    pos = np.searchsorted(expected, ends[:, 0])
    np.testing.assert_array_equal(expected[pos], ends[:, 0])
    np.testing.assert_array_equal(expected[pos + 1], ends[:, 1])
    all_pos = np.sort(np.concatenate(COMM.allgather(pos)))
    np.testing.assert_array_equal(all_pos, np.arange(N))
    np.testing.assert_array_equal(gm.time_mesh_vertices(mesh), expected)
    h = np.diff(gm.time_mesh_vertices(mesh))
    assert h.max() / h.min() == pytest.approx(ratio, rel=1e-10)


def test_uniform_and_space_time_meshes_global_counts():
    mesh = gm.uniform_time_mesh(COMM, 1.0, 64)
    assert mesh.topology.index_map(1).size_global == 64
    np.testing.assert_allclose(gm.time_mesh_vertices(mesh), np.linspace(0.0, 1.0, 65), atol=1e-15)
    st = gm.space_time_mesh(COMM, 1.0, 2.0, 6, 10)
    assert st.topology.index_map(2).size_global == 2 * 6 * 10


def test_adaptation_is_partition_independent():
    """Refining/coarsening a distributed mesh gives the same vertex set as on one rank."""
    N = 40
    par = gm.graded_time_mesh(COMM, 1.0, N, ratio=5.0, end="initial")
    ser = gm.graded_time_mesh(MPI.COMM_SELF, 1.0, N, ratio=5.0, end="initial")
    t = gm.time_mesh_vertices(ser)
    mid = 0.5 * (t[:-1] + t[1:])
    eta = np.cos(7.0 * mid) ** 2                             # some indicator in time order
    for op, frac in ((gm.refine_time_mesh, 0.3), (gm.coarsen_time_mesh, 0.5)):
        a = op(par, eta[gm.cell_time_positions(par)], frac)
        b = op(ser, eta[gm.cell_time_positions(ser)], frac)
        assert a.topology.index_map(1).size_global == b.topology.index_map(1).size_global
        np.testing.assert_array_equal(gm.time_mesh_vertices(a), gm.time_mesh_vertices(b))
        if COMM.size > 1:
            assert a.topology.index_map(1).size_local < a.topology.index_map(1).size_global


def test_el_indicator_and_trajectory_functions_in_parallel():
    k = np.array([4.0, 9.0])
    system = glep.LagrangianSystem(2, [glep.DiagonalMass(2, None), glep.Harmonic(2, "k")])
    params = {"k": k}
    mesh = gm.graded_time_mesh(COMM, 1.5, 37, ratio=6.0, end="both")
    t = gm.time_mesh_vertices(mesh)
    Q = np.stack([np.sin(2.0 * t), np.cos(3.0 * t) + t], axis=1)
    q = gm.trajectory_function(mesh, t, Q)
    tt, vals = gm.nodal_values(q)
    np.testing.assert_array_equal(tt, t)
    np.testing.assert_allclose(vals, Q, atol=1e-15)
    eta_local = gm.el_residual_indicator(system, params, q)
    assert eta_local.shape == (gm.owned_cell_count(mesh),)
    serial = gm.el_residual_indicator_nodal(system, params, t, Q)
    np.testing.assert_allclose(gm.indicator_in_time_order(mesh, eta_local), serial, rtol=1e-14)


def test_xdmf_roundtrip_in_parallel(shared_dir):
    mesh = gm.graded_time_mesh(COMM, 3.0, 45, ratio=12.0, end="final")
    path = shared_dir / "par_mesh.xdmf"
    gm.save_time_mesh(mesh, path)
    COMM.barrier()
    loaded = gm.load_time_mesh(COMM, path)
    assert loaded.topology.index_map(1).size_global == 45
    np.testing.assert_array_equal(gm.time_mesh_vertices(loaded), gm.time_mesh_vertices(mesh))
    t = gm.time_mesh_vertices(mesh)
    q = gm.trajectory_function(mesh, t, np.sin(t)[:, None], name="q")
    gm.save_trajectory(q, shared_dir / "par_traj.xdmf", times=0.25)
    COMM.barrier()
    # rank 0 alone reads what was written collectively; the verdict is broadcast so
    # that a failure cannot leave the other ranks waiting in a later collective call
    error = None
    if COMM.rank == 0:
        try:
            alone = gm.load_time_mesh(MPI.COMM_SELF, path)
            np.testing.assert_array_equal(gm.time_mesh_vertices(alone), t)
            with h5py.File(shared_dir / "par_traj.h5", "r") as f:
                x = f["Mesh/mesh/geometry"][:, 0]
                (key,) = f["Function/q"].keys()
                vals = f[f"Function/q/{key}"][:, 0]
            assert x.size == 46
            np.testing.assert_allclose(vals, np.sin(x), atol=1e-15)
        except Exception as exc:  # noqa: BLE001
            error = repr(exc)
    error = COMM.bcast(error, root=0)
    assert error is None, error


def test_bad_vertices_raise_on_every_rank():
    with pytest.raises(glep.InputError):
        gm.time_mesh_from_vertices(COMM, [0.0, 0.5, 0.5, 1.0])
    COMM.barrier()
