"""Time meshes: grading, adaptation driven by the Euler–Lagrange residual, I/O."""

from __future__ import annotations

import glep  # noqa: F401  isort: skip

import h5py
import numpy as np
import pytest
from mpi4py import MPI

import glep.meshes as gm
from glep.ivp.shooting import shoot_cbvp

COMM = MPI.COMM_SELF


def _sizes(mesh):
    return np.diff(gm.time_mesh_vertices(mesh))


# -- construction ----------------------------------------------------------------------
def test_uniform_mesh_matches_time_grid():
    mesh = gm.uniform_time_mesh(COMM, 2.5, 40)
    assert mesh.topology.index_map(1).size_global == 40
    np.testing.assert_allclose(gm.time_mesh_vertices(mesh), glep.TimeGrid(2.5, 40).times, atol=1e-15)


@pytest.mark.parametrize("end", ["final", "initial", "both"])
@pytest.mark.parametrize("N,ratio", [(10, 5.0), (41, 100.0), (64, 1e4)])
def test_graded_mesh_reaches_ratio(end, N, ratio):
    T = 3.0
    mesh = gm.graded_time_mesh(COMM, T, N, ratio=ratio, end=end)
    t = gm.time_mesh_vertices(mesh)
    h = np.diff(t)
    assert h.size == N
    assert t[0] == 0.0 and t[-1] == T
    assert h.max() / h.min() == pytest.approx(ratio, rel=1e-10)
    q = (ratio) ** (1.0 / (N - 1 if end != "both" else (N - 1) // 2))
    if end == "initial":
        assert np.argmin(h) == 0
        np.testing.assert_allclose(h[1:] / h[:-1], q, rtol=1e-10)      # geometric
    elif end == "final":
        assert np.argmin(h) == N - 1
        np.testing.assert_allclose(h[:-1] / h[1:], q, rtol=1e-10)
    else:
        assert h[0] == pytest.approx(h.min()) and h[-1] == pytest.approx(h.min())
        np.testing.assert_allclose(h, h[::-1], rtol=1e-10)             # symmetric


def test_graded_mesh_input_errors():
    with pytest.raises(glep.InputError):
        gm.graded_time_mesh(COMM, 1.0, 10, ratio=0.5)
    with pytest.raises(glep.InputError):
        gm.graded_time_mesh(COMM, 1.0, 10, ratio=2.0, end="middle")
    with pytest.raises(glep.InputError):
        gm.graded_time_mesh(COMM, 1.0, 2, ratio=2.0, end="both")
    with pytest.raises(glep.InputError):
        gm.uniform_time_mesh(COMM, -1.0, 10)
    with pytest.raises(glep.InputError):
        gm.time_mesh_from_vertices(COMM, [0.0, 0.5, 0.4, 1.0])
    assert gm.graded_time_mesh(COMM, 1.0, 1, ratio=1.0).topology.index_map(1).size_global == 1


def test_space_time_mesh():
    mesh = gm.space_time_mesh(COMM, 2.0, 3.0, 4, 6)
    assert mesh.topology.dim == 2
    assert mesh.topology.index_map(2).size_global == 2 * 4 * 6     # triangles
    x = mesh.geometry.x
    np.testing.assert_allclose([x[:, 0].max(), x[:, 1].max()], [2.0, 3.0])
    with pytest.raises(glep.InputError):
        gm.refine_time_mesh(mesh, np.ones(48), 0.5)


def test_cell_time_positions_invert_local_order():
    mesh = gm.graded_time_mesh(COMM, 1.0, 30, ratio=7.0, end="initial")
    t = gm.time_mesh_vertices(mesh)
    pos = gm.cell_time_positions(mesh)
    nodes = mesh.geometry.dofmaps[0][:gm.owned_cell_count(mesh)]
    np.testing.assert_array_equal(mesh.geometry.x[nodes, 0].min(axis=1), t[pos])
    mid = 0.5 * (t[:-1] + t[1:])
    back = gm.indicator_in_time_order(mesh, mid[pos])
    np.testing.assert_array_equal(back, mid)
    dg0 = gm.indicator_function(mesh, mid[pos])
    np.testing.assert_array_equal(gm.indicator_in_time_order(mesh, dg0), mid)


# -- refinement and coarsening -------------------------------------------------------------
def test_refinement_concentrates_cells():
    mesh = gm.uniform_time_mesh(COMM, 1.0, 20)
    for _ in range(4):
        t = gm.time_mesh_vertices(mesh)
        mid = 0.5 * (t[:-1] + t[1:])
        eta = np.exp(-mid / 0.05)[gm.cell_time_positions(mesh)]       # a boundary layer at t = 0
        N = t.size - 1
        mesh = gm.refine_time_mesh(mesh, eta, 0.2)
        assert mesh.topology.index_map(1).size_global == N + int(np.ceil(0.2 * N))
    h = _sizes(mesh)
    t = gm.time_mesh_vertices(mesh)
    assert h[0] == pytest.approx(0.05 / 16)                               # four bisections of the first cell
    assert h[-1] == pytest.approx(0.05)                                   # untouched at the far end
    assert np.sum(t[:-1] < 0.2) > 0.6 * h.size                            # most cells in the layer
    assert np.all(np.diff(h) >= -1e-15)                                   # sizes grow away from the layer


def test_coarsening_merges_small_indicator_pairs():
    mesh = gm.uniform_time_mesh(COMM, 1.0, 20)
    t = gm.time_mesh_vertices(mesh)
    mid = 0.5 * (t[:-1] + t[1:])
    eta = np.where(np.abs(mid - 0.5) < 0.2, 1e-3, 1.0) + 1e-6 * mid     # small in the middle 8 cells
    coarse = gm.coarsen_time_mesh(mesh, eta[gm.cell_time_positions(mesh)], 0.4)
    tc = gm.time_mesh_vertices(coarse)
    assert tc.size - 1 == 16                                              # 8 marked cells → 4 pairs merged
    hc = np.diff(tc)
    assert np.all(np.isclose(hc, 0.05) | np.isclose(hc, 0.1))
    assert np.all(np.abs(0.5 * (tc[:-1] + tc[1:])[np.isclose(hc, 0.1)] - 0.5) < 0.2)
    assert tc[0] == 0.0 and tc[-1] == 1.0
    with pytest.raises(glep.InputError):
        gm.coarsen_time_mesh(mesh, eta[:5], 0.4)
    with pytest.raises(glep.InputError):
        gm.refine_time_mesh(mesh, eta, 0.0)


# -- Euler–Lagrange residual indicator ---------------------------------------------------------
def _oscillator(k):
    k = np.atleast_1d(np.asarray(k, float))
    n = k.size
    return glep.LagrangianSystem(n, [glep.DiagonalMass(n, None), glep.Harmonic(n, "k")]), {"k": k}


def test_el_indicator_free_particle_and_kink():
    system, params = _oscillator(0.0)                                     # L = ½ v²: straight lines solve EL
    t = np.linspace(0.0, 1.0, 11)
    line = (2.0 * t - 0.3)[:, None]
    np.testing.assert_allclose(gm.el_residual_indicator_nodal(system, params, t, line), 0.0, atol=1e-13)
    kink = np.abs(t - 0.5)[:, None]                                       # momentum jumps by 2 at t = 0.5
    eta = gm.el_residual_indicator_nodal(system, params, t, kink)
    expected = np.zeros(10)
    expected[4] = expected[5] = np.sqrt(0.5 * 0.1 * 2.0**2)
    np.testing.assert_allclose(eta, expected, atol=1e-13)


def test_el_indicator_scaling_for_oscillator():
    """For q = cos(ωt) on a uniform mesh: R = −ω²q, J ≈ −hω²q, so Σ η² → 2h²ω⁴ ∫q²."""
    omega = 3.0
    system, params = _oscillator(omega**2)
    ratios = []
    for N in (100, 400):
        t = np.linspace(0.0, 2.0, N + 1)
        q = np.cos(omega * t)[:, None]
        eta = gm.el_residual_indicator_nodal(system, params, t, q)
        h = t[1] - t[0]
        integral = 1.0 + np.sin(4 * omega) / (4 * omega)                  # ∫₀² cos²(ωt) dt
        ratios.append(np.sum(eta**2) / (2 * h**2 * omega**4 * integral))
    # the missing jump terms at the two (Dirichlet) ends make the defect O(h)
    assert abs(ratios[0] - 1.0) < 0.02 and abs(ratios[1] - 1.0) < 0.005
    assert abs(ratios[1] - 1.0) < abs(ratios[0] - 1.0) / 3


def test_el_indicator_of_function_matches_nodal_and_drives_adaptation():
    """Boundary layer q = e^{−t/ε} (L = ½v² + q²/2ε²): EL-driven refinement beats a uniform mesh."""
    eps = 0.02
    system, params = _oscillator(-1.0 / eps**2)

    def exact(t):
        return np.exp(-t / eps)

    mesh = gm.uniform_time_mesh(COMM, 1.0, 16)
    for _ in range(6):
        t = gm.time_mesh_vertices(mesh)
        q = gm.trajectory_function(mesh, t, exact(t)[:, None])
        eta = gm.el_residual_indicator(system, params, q)
        nodal = gm.el_residual_indicator_nodal(system, params, t, exact(t)[:, None])
        np.testing.assert_array_equal(eta, nodal[gm.cell_time_positions(mesh)])
        assert np.argmax(nodal) <= 1                                      # the layer dominates
        mesh = gm.refine_time_mesh(mesh, eta, 0.3)
    t = gm.time_mesh_vertices(mesh)
    N = t.size - 1
    fine = np.linspace(0.0, 1.0, 20001)

    def interp_error(nodes):
        return np.max(np.abs(np.interp(fine, nodes, exact(nodes)) - exact(fine)))

    adapted, uniform = interp_error(t), interp_error(np.linspace(0.0, 1.0, N + 1))
    assert adapted < uniform / 5
    assert np.sum(t < 5 * eps) > N / 3


def test_el_indicator_of_shooting_solution():
    """A shooting (Störmer–Verlet) CBVP solution has a small, smooth residual; a perturbed one does not."""
    system, params = _oscillator(4.0)
    grid = glep.TimeGrid(1.0, 50)
    traj = shoot_cbvp(system, params, grid, [0.0], [1.0])
    eta = gm.el_residual_indicator_nodal(system, params, grid.times, traj.q)
    bumped = traj.q.copy()
    bumped[25] += 5e-2
    eta_b = gm.el_residual_indicator_nodal(system, params, grid.times, bumped)
    assert np.argmax(eta_b - eta) in (24, 25)
    assert eta_b[24] > 10 * eta[24]


# -- trajectories as functions, I/O ----------------------------------------------------------
def test_trajectory_function_roundtrip_and_transfer():
    mesh = gm.graded_time_mesh(COMM, 2.0, 25, ratio=4.0, end="both")
    t = gm.time_mesh_vertices(mesh)
    Q = np.stack([np.sin(t), t**2, -t], axis=1)[:, None, :]               # (N+1, B=1, n=3)
    q = gm.trajectory_function(mesh, t, Q, name="q")
    tt, vals = gm.nodal_values(q)
    np.testing.assert_array_equal(tt, t)
    np.testing.assert_allclose(vals, Q[:, 0], atol=1e-15)
    fine = gm.refine_time_mesh(mesh, np.ones(gm.owned_cell_count(mesh)), 1.0)
    q2 = gm.transfer_trajectory(q, fine)
    t2, v2 = gm.nodal_values(q2)
    assert t2.size == 2 * 25 + 1
    np.testing.assert_allclose(v2[::2], Q[:, 0], atol=1e-15)              # old nodes kept exactly
    np.testing.assert_allclose(v2[1::2], 0.5 * (Q[1:, 0] + Q[:-1, 0]), atol=1e-14)  # P1 midpoints
    with pytest.raises(glep.InputError):
        gm.trajectory_function(mesh, t, Q[:-1])


def test_mesh_xdmf_roundtrip(tmp_path):
    mesh = gm.graded_time_mesh(COMM, 1.5, 33, ratio=20.0, end="final")
    path = tmp_path / "time_mesh.xdmf"
    gm.save_time_mesh(mesh, path)
    loaded = gm.load_time_mesh(COMM, path)
    assert loaded.topology.index_map(1).size_global == 33
    np.testing.assert_array_equal(gm.time_mesh_vertices(loaded), gm.time_mesh_vertices(mesh))
    with pytest.raises(glep.InputError):
        gm.load_time_mesh(COMM, tmp_path / "missing.xdmf")
    with pytest.raises(glep.InputError):
        gm.save_time_mesh(mesh, tmp_path / "mesh.h5")


def test_save_trajectory_xdmf_values(tmp_path):
    mesh = gm.graded_time_mesh(COMM, 1.0, 12, ratio=3.0, end="initial")
    t = gm.time_mesh_vertices(mesh)
    Q = np.stack([np.cos(t), np.exp(t)], axis=1)
    q0 = gm.trajectory_function(mesh, t, Q, name="q")
    q1 = gm.trajectory_function(mesh, t, 2 * Q, name="q")
    path = tmp_path / "traj.xdmf"
    gm.save_trajectory([q0, q1], path, times=[0.0, 0.5])
    with h5py.File(path.with_suffix(".h5"), "r") as f:
        x = f["Mesh/mesh/geometry"][:, 0]
        steps = sorted(f["Function/q"].keys(), key=float)
        assert len(steps) == 2
        for scale, key in zip((1.0, 2.0), steps):
            vals = f[f"Function/q/{key}"][:, :2]
            np.testing.assert_allclose(vals, scale * np.stack([np.cos(x), np.exp(x)], axis=1), atol=1e-14)


@pytest.mark.skipif(not __import__("dolfinx.io").io.has_adios2, reason="dolfinx without ADIOS2")
def test_save_trajectory_vtx(tmp_path):
    mesh = gm.uniform_time_mesh(COMM, 1.0, 8)
    q = gm.trajectory_function(mesh, np.array([0.0, 1.0]), np.array([[0.0], [1.0]]), name="q")
    path = tmp_path / "traj.bp"
    gm.save_trajectory(q, path, engine="vtx")
    assert path.is_dir() and any(p.stat().st_size > 0 for p in path.iterdir())
    with pytest.raises(glep.InputError):
        gm.save_trajectory(q, tmp_path / "traj.xdmf", engine="vtx")
    with pytest.raises(glep.InputError):
        gm.save_trajectory(q, path, engine="vtk")
