"""The bvp backend: FE action vs the ivp discrete Lagrangian, every boundary condition, both assemblers.

With P1 elements and two-point Gauss–Lobatto quadrature the finite-element
action *is* the trapezoid discrete action (Störmer–Verlet), so whole-trajectory
solutions must coincide with the ivp backend's time stepping to solver tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI
from petsc4py import PETSc

import glep
from glep import CBVP, CFVP, CIVP, PFVP, DirichletNatural, Periodic, Robin
from glep.bvp import (
    ReducedProblem,
    make_discretisation,
    solve_bvp,
)
from glep.grid import TimeGrid
from glep.ivp.discrete import TRAPEZOID, DiscreteLagrangian, Mirrored
from glep.ivp.shooting import shoot_cbvp
from glep.ivp.stepping import integrate
from glep.meshes import graded_time_mesh
from glep.models import coupled_oscillators

T, N, BETA = 2.0, 40, 0.3


@pytest.fixture(scope="module")
def model():
    m = coupled_oscillators(3, T=T)
    theta = m.system.check_params(m.params)
    q0, p0, v0 = m.boundary.states(m.system, theta)
    return m, theta, q0[0], p0[0], v0[0]


def _dl(m, theta, beta=BETA):
    return DiscreteLagrangian(m.system, theta, TimeGrid(T, N), TRAPEZOID, beta=beta)


def _is_ivp_trajectory(m, theta, sol, tol=1e-9):
    """An FE (P1 + GLL) solution must be a Störmer–Verlet trajectory from its own (q0, p0)."""
    Q, P = integrate(_dl(m, theta), sol.q[0], sol.p0)
    assert np.max(np.abs(Q - sol.q)) < tol
    assert np.max(np.abs(P[-1] - sol.pT)) < tol


@pytest.mark.parametrize("assembler", ["fe", "vectorised"])
def test_civp_whole_trajectory_equals_stormer_verlet(model, assembler):
    m, theta, q0, p0, v0 = model
    Q, P = integrate(_dl(m, theta), q0[None], p0[None])
    sol = solve_bvp(m.system, m.params, (T, N), CIVP(q0, v0=v0), beta=BETA, assembler=assembler)
    assert sol.times.shape == (N + 1,) and sol.q.shape == (N + 1, 1, 3) and sol.pT.shape == (1, 3)
    assert np.max(np.abs(sol.q - Q)) < 1e-9
    assert np.max(np.abs(sol.pT - P[-1])) < 1e-9


def test_gll_and_vertex_quadrature_give_the_trapezoid_action(model):
    m, theta, *_ = model

    def f(t):
        t = np.asarray(t)
        return np.stack([np.sin(3 * t), 0.5 * np.cos(2 * t), t**2 - 1.0])

    vals = {}
    for quad in ("gll", "vertex", "gauss"):
        disc = make_discretisation(m.system, m.params, (T, N), quadrature=quad, beta=BETA)
        disc.u.interpolate(lambda X: f(X[0]))
        vals[quad] = disc.action()
    Q = f(np.linspace(0.0, T, N + 1)).T
    dl = _dl(m, theta)
    ref = sum(float(dl.value(k, Q[k][None], Q[k + 1][None])[0]) for k in range(N))
    assert vals["gll"] == pytest.approx(ref, rel=1e-13)
    assert vals["vertex"] == pytest.approx(ref, rel=1e-13)
    assert abs(vals["gauss"] - ref) > 1e-8 * abs(ref)  # a different (Galerkin) action


@pytest.mark.parametrize("chunk", [None, 7])
@pytest.mark.parametrize("grading", [None, 20.0])
def test_fe_and_vectorised_assemble_the_same_system(model, grading, chunk):
    """Uniform mesh (node-form fast path) and graded mesh (element form, grouped h) agree with UFL;
    ``chunk = 7`` splits the node form into chunks of 7 nodes (boundaries inside the mesh)."""
    m, theta, *_ = model
    mesh = (T, N) if grading is None else graded_time_mesh(MPI.COMM_WORLD, T, N, ratio=grading, end="both")
    fe = make_discretisation(m.system, m.params, mesh, beta=BETA)
    ve = make_discretisation(m.system, m.params, fe.mesh, assembler="vectorised", beta=BETA)
    if chunk is not None:
        ve.chunk_nodes = chunk
    rng = np.random.default_rng(0)
    fe.u.x.array[:] = rng.standard_normal(fe.u.x.array.shape)
    ve.u.x.array[:] = fe.u.x.array
    b1, b2 = fe.u.x.petsc_vec.duplicate(), fe.u.x.petsc_vec.duplicate()
    fe.residual(b1)
    ve.residual(b2)
    assert (b1 - b2).norm() < 1e-12 * b1.norm()
    A1, A2 = fe.create_jacobian(), ve.create_jacobian()
    fe.jacobian(A1)
    ve.jacobian(A2)
    nrm = A1.norm()
    A1.axpy(-1.0, A2, structure=PETSc.Mat.Structure.DIFFERENT_NONZERO_PATTERN)
    assert A1.norm() < 1e-12 * nrm
    assert fe.action() == pytest.approx(ve.action(), rel=1e-13)
    assert fe.cost() == pytest.approx(ve.cost(), rel=1e-13)
    g1, g2 = fe.theta_gradient(), ve.theta_gradient()
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-12, atol=1e-12)
    lam = fe.u.x.petsc_vec.copy()
    v1, v2 = fe.theta_vjp(lam), ve.theta_vjp(lam)
    for k in v1:
        np.testing.assert_allclose(v1[k], v2[k], rtol=1e-11, atol=1e-11)


def test_cbvp_matches_shooting(model):
    m, theta, q0, p0, v0 = model
    qT = np.array([0.2, -0.1, 0.05])
    shot = shoot_cbvp(m.system, m.params, TimeGrid(T, N), q0, qT, beta=BETA)
    for assembler in ("fe", "vectorised"):
        sol = solve_bvp(m.system, m.params, (T, N), CBVP(q0, qT), beta=BETA, assembler=assembler)
        assert np.max(np.abs(sol.q - shot.q)) < 1e-9
        assert np.max(np.abs(sol.p0 - shot.p0)) < 1e-9


def test_pfvp_equals_backward_integration_and_echo(model):
    m, theta, q0, p0, v0 = model
    Q, P = integrate(_dl(m, theta, 0.0), q0[None], p0[None])
    Qb, Pb = integrate(Mirrored(_dl(m, theta)), Q[-1], -P[-1])  # backward from the free final state
    sol = solve_bvp(m.system, m.params, (T, N), PFVP(q0, v0=v0), beta=BETA)
    assert sol.boundary_name == "PFVP" and sol.beta == BETA
    assert np.max(np.abs(sol.q - Qb[::-1])) < 1e-9
    assert np.max(np.abs(sol.p0 + Pb[-1])) < 1e-9
    # the echo: flip the momentum, run the time-reversed system forward (reversible L)
    assert m.system.is_time_reversible(theta)
    rev = m.system.time_reversed(T)
    Qe, Pe = integrate(DiscreteLagrangian(rev, theta, TimeGrid(T, N), TRAPEZOID, beta=BETA), Q[-1], -P[-1])
    assert np.max(np.abs(sol.q - Qe[::-1])) < 1e-9


def test_cfvp_and_natural_conditions(model):
    m, theta, q0, p0, v0 = model
    sol = solve_bvp(m.system, m.params, (T, N), CFVP(q0, vT=v0), beta=BETA)
    np.testing.assert_allclose(sol.q[-1, 0], q0, atol=1e-14)
    np.testing.assert_allclose(sol.pT[0], theta["m"] * v0, atol=1e-9)
    _is_ivp_trajectory(m, theta, sol)
    sol = solve_bvp(m.system, m.params, (T, N), DirichletNatural(q0), beta=BETA)
    assert np.max(np.abs(sol.pT)) < 1e-10
    _is_ivp_trajectory(m, theta, sol)
    sol = solve_bvp(m.system, m.params, (T, N), Periodic(), beta=BETA)
    np.testing.assert_allclose(sol.q[0, 0], sol.q[-1, 0], atol=1e-14)
    np.testing.assert_allclose(sol.p0, sol.pT, atol=1e-9)
    _is_ivp_trajectory(m, theta, sol)


@pytest.mark.parametrize("end", ["final", "initial"])
def test_robin(model, end):
    m, theta, q0, p0, v0 = model
    K = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.5]])
    b = np.array([0.1, 0.2, 0.3])
    for assembler in ("fe", "vectorised"):
        sol = solve_bvp(m.system, m.params, (T, N), Robin(K, b, q0, end=end), beta=BETA, assembler=assembler)
        if end == "final":
            np.testing.assert_allclose(sol.pT[0], -K @ (sol.q[-1, 0] - b), atol=1e-9)
            np.testing.assert_allclose(sol.q[0, 0], q0, atol=1e-14)
        else:
            np.testing.assert_allclose(sol.p0[0], -K @ (sol.q[0, 0] - b), atol=1e-9)
            np.testing.assert_allclose(sol.q[-1, 0], q0, atol=1e-14)
        _is_ivp_trajectory(m, theta, sol)


def test_p2_gauss_is_a_higher_order_galerkin_integrator(model):
    """P2 + Gauss converges to the exact flow faster than P1 + GLL (Störmer–Verlet)."""
    m, theta, q0, p0, v0 = model
    ref = solve_bvp(m.system, m.params, (T, 160), CBVP(q0, np.zeros(3)), degree=3, quadrature="gauss")
    e1 = solve_bvp(m.system, m.params, (T, 20), CBVP(q0, np.zeros(3)))
    e2 = solve_bvp(m.system, m.params, (T, 20), CBVP(q0, np.zeros(3)), degree=2, quadrature="gauss")
    err1 = np.max(np.abs(e1.p0 - ref.p0))
    err2 = np.max(np.abs(e2.p0 - ref.p0))
    assert err2 < 0.05 * err1


def test_solver_errors_carry_reason_and_history():
    from glep.reference import bratu_system

    sys_, par = bratu_system(5.0)  # beyond the fold: no solution
    with pytest.raises(glep.SolverError) as info:
        solve_bvp(sys_, par, (1.0, 16), CBVP([0.0], [0.0]))
    assert info.value.reason.startswith("DIVERGED")
    assert len(info.value.history) >= 2
    # options pass through the PETSc options database with the glep_ prefix
    sys_, par = bratu_system(1.0)
    with pytest.raises(glep.SolverError) as info:
        solve_bvp(sys_, par, (1.0, 16), CBVP([0.0], [0.0]), options={"snes_max_it": 1})
    assert info.value.reason == "DIVERGED_MAX_IT"
    sol = solve_bvp(sys_, par, (1.0, 16), CBVP([0.0], [0.0]), options={"snes_linesearch_type": "basic"})
    assert sol.report.reason.startswith("CONVERGED")


def test_bad_input():
    from glep.reference import bratu_system

    sys_, par = bratu_system(1.0)
    with pytest.raises(glep.InputError):
        solve_bvp(sys_, par, (1.0, 8), CBVP([0.0, 1.0], [0.0]))
    with pytest.raises(glep.InputError):
        solve_bvp(sys_, par, (1.0, 8), CBVP([0.0], [0.0]), quadrature="simpson")
    with pytest.raises(glep.InputError):
        solve_bvp(sys_, par, (1.0, 8), CBVP([0.0], [0.0]), assembler="vectorised", degree=0)
    disc = make_discretisation(sys_, par, (1.0, 8))
    pb = ReducedProblem(disc, CIVP([0.0], p0=[1.0]))
    with pytest.raises(glep.InputError):
        glep.bvp.morse_index(pb)


def test_forms_are_compiled_once_per_system_and_discretisation(model):
    """A second assembler of the same system, degree and quadrature (any mesh) reuses the compiled forms."""
    m, *_ = model
    a = make_discretisation(m.system, m.params, (T, N), beta=BETA)
    b = make_discretisation(m.system, m.params, (T, 2 * N), beta=BETA)
    c = make_discretisation(m.system, m.params, (T, N), degree=2, quadrature="gauss", beta=BETA)
    assert a._template is b._template and c._template is not a._template
    a.form("residual")
    assert b._template._compiled["residual"] is a._template._compiled["residual"]
    # the shared compiled form acts on each assembler's own mesh, trajectory and constants
    for disc in (a, b):
        disc.u.interpolate(lambda X: np.stack([np.sin(X[0]), X[0], np.cos(X[0])]))
    ra, rb = (d.u.x.petsc_vec.duplicate() for d in (a, b))
    a.residual(ra)
    b.set_beta(0.0)
    b.residual(rb)
    ref = make_discretisation(m.system, m.params, (T, 2 * N), beta=0.0)
    ref.u.x.array[:] = b.u.x.array
    rr = ref.u.x.petsc_vec.duplicate()
    ref.residual(rr)
    assert (rb - rr).norm() <= 1e-14 * rr.norm()
    assert ra.getSize() != rb.getSize()
