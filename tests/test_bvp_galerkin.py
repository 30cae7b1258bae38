"""The vectorised Galerkin assembler (P_r, any quadrature) against the UFL path, and its convergence order.

:class:`glep.bvp.GalerkinAction` assembles the finite-element action of a
separable system from NumPy without compiling forms; it must give the same
residual, Jacobian, action, cost and parameter derivatives as
:class:`glep.bvp.FEAction` (same degree, same quadrature) to round-off, the
same solutions for every boundary condition, and the nodal order ``2r`` of a
Galerkin variational integrator with Gauss quadrature.
"""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI
from petsc4py import PETSc

import glep
from glep import CBVP, CIVP, Periodic, Robin
from glep.bvp import GalerkinAction, make_discretisation, solve_bvp
from glep.estimators.cbvp import cbvp_gradient, fe_adjoint_gradient
from glep.meshes import graded_time_mesh
from glep.models import coupled_oscillators

T, N, BETA = 2.0, 12, 0.3
CASES = [(1, "gauss"), (2, "gauss"), (3, "gauss"), (2, "gll"), (3, "gll")]


@pytest.fixture(scope="module")
def model():
    """Trainable masses, springs, couplings, an input drive, a quartic term and a tracking cost."""
    m = coupled_oscillators(3, T=T, anharmonic=0.3)
    theta = m.system.check_params(m.params)
    q0, p0, v0 = m.boundary.states(m.system, theta)
    return m, q0[0], v0[0]


def _rel(a, b):
    return float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(a))), 1e-300)


@pytest.mark.parametrize("grading", [None, 10.0])
@pytest.mark.parametrize("degree,quadrature", CASES)
def test_galerkin_assembles_the_fe_system(model, degree, quadrature, grading):
    m, *_ = model
    mesh = (T, N) if grading is None else graded_time_mesh(MPI.COMM_WORLD, T, N, ratio=grading, end="both")
    fe = make_discretisation(m.system, m.params, mesh, degree=degree, quadrature=quadrature, beta=BETA)
    ga = make_discretisation(m.system, m.params, fe.mesh, assembler="vectorised", degree=degree,
                             quadrature=quadrature, beta=BETA)
    assert isinstance(ga, GalerkinAction)
    rng = np.random.default_rng(degree)
    fe.u.x.array[:] = rng.standard_normal(fe.u.x.array.shape)
    ga.u.x.array[:] = fe.u.x.array
    vecs = [fe.u.x.petsc_vec.duplicate() for _ in range(2)]
    for method in ("residual", "cost_gradient"):
        getattr(fe, method)(vecs[0])
        getattr(ga, method)(vecs[1])
        assert (vecs[0] - vecs[1]).norm() <= 1e-12 * vecs[0].norm(), method
    d = {k: rng.standard_normal(v.shape) for k, v in m.params.items()}
    fe.theta_jvp(d, vecs[0])
    ga.theta_jvp(d, vecs[1])
    assert (vecs[0] - vecs[1]).norm() <= 1e-12 * vecs[0].norm()
    A1, A2 = fe.create_jacobian(), ga.create_jacobian()
    fe.jacobian(A1)
    ga.jacobian(A2)
    nrm = A1.norm()
    A1.axpy(-1.0, A2, structure=PETSc.Mat.Structure.DIFFERENT_NONZERO_PATTERN)
    assert A1.norm() <= 1e-12 * nrm
    assert ga.action() == pytest.approx(fe.action(), rel=1e-12)
    assert ga.cost() == pytest.approx(fe.cost(), rel=1e-12)
    lam = fe.u.x.petsc_vec.copy()
    for got, want in ((ga.theta_gradient(), fe.theta_gradient()), (ga.theta_vjp(lam), fe.theta_vjp(lam))):
        for k in want:
            assert _rel(want[k], got[k]) <= 1e-11, k


@pytest.mark.parametrize("bc_name", ["CBVP", "CIVP", "Periodic", "Robin"])
def test_galerkin_solutions_equal_the_fe_solutions(bc_name):
    m = coupled_oscillators(3, T=T)  # the default anharmonicity: Newton converges from the default guess
    q0, _, v0 = (a[0] for a in m.boundary.states(m.system, m.system.check_params(m.params)))
    K = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.5]])
    bc = {"CBVP": CBVP(q0, np.zeros(3)), "CIVP": CIVP(q0, v0=v0), "Periodic": Periodic(),
          "Robin": Robin(K, np.array([0.1, 0.2, 0.3]), q0, end="final")}[bc_name]
    sols = [solve_bvp(m.system, m.params, (T, N), bc, beta=BETA, degree=3, quadrature="gauss", assembler=a)
            for a in ("fe", "vectorised")]
    assert np.max(np.abs(sols[0].q - sols[1].q)) <= 1e-10
    assert np.max(np.abs(sols[0].p0 - sols[1].p0)) <= 1e-9
    assert np.max(np.abs(sols[0].pT - sols[1].pT)) <= 1e-9


def _oscillator_errors(degree: int, Ns) -> np.ndarray:
    """Error at the mesh vertices of the CBVP q'' = −ω² q (ω = 3, T = 2) against the closed form."""
    omega, T_, qa, qb = 3.0, 2.0, 1.0, -0.5
    system = glep.LagrangianSystem(1, [glep.DiagonalMass(1, None), glep.Harmonic(1, "k")])
    exact = (qb - qa * np.cos(omega * T_)) / np.sin(omega * T_)
    errs = []
    for n_el in Ns:
        sol = solve_bvp(system, {"k": np.array([omega**2])}, (T_, n_el), CBVP([qa], [qb]), degree=degree,
                        quadrature="gauss", assembler="vectorised", rtol=1e-14, atol=1e-15)
        t = sol.times[::degree]  # the mesh vertices (interior P_r nodes are only O(h^{r+1}))
        q = qa * np.cos(omega * t) + exact * np.sin(omega * t)
        errs.append(np.max(np.abs(sol.q[::degree, 0, 0] - q)))
    return np.array(errs)


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_nodal_superconvergence_order_2r(degree):
    """Galerkin variational integrators with Gauss quadrature: vertex error O(h^{2r}), fitted."""
    Ns = {1: np.array([32, 64, 128]), 2: np.array([8, 16, 32]), 3: np.array([8, 16, 32])}[degree]
    errs = _oscillator_errors(degree, Ns)
    slope = -np.polyfit(np.log(Ns), np.log(errs), 1)[0]
    assert abs(slope - 2 * degree) < 0.15, (errs, slope)


def test_cbvp_contrast_on_galerkin_equals_its_adjoint(model):
    m, q0, _ = model
    bc = CBVP(q0, np.zeros(3))
    kw = {"degree": 3, "quadrature": "gauss", "assembler": "vectorised", "rtol": 1e-13, "atol": 1e-14}
    truth, _ = fe_adjoint_gradient(m.system, m.params, (T, N), bc, **kw)
    est = cbvp_gradient(m.system, m.params, (T, N), bc, 1e-4, scheme="centred", **kw)
    flat = np.concatenate([np.ravel(truth[k]) for k in truth])
    err = np.concatenate([np.ravel(est[k] - truth[k]) for k in truth])
    assert np.linalg.norm(err) <= 1e-6 * np.linalg.norm(flat)


def test_galerkin_refuses_a_non_separable_system():
    n = 2
    gyro = glep.LagrangianSystem(n, [glep.DiagonalMass(n, None), glep.Gyroscopic(n, 0.5, np.array([[0, 1.0],
                                                                                                   [-1.0, 0]]))])
    with pytest.raises(glep.InputError, match=r"separable .*Gyroscopic.* depends on the velocity"):
        make_discretisation(gyro, {}, (1.0, 4), assembler="vectorised", degree=2, quadrature="gauss")


@pytest.mark.parametrize("degree,quadrature", [(1, "gll"), (2, "gauss"), (3, "gll")])
def test_galerkin_probe_fallback_and_p1(degree, quadrature):
    """A potential without sparse Hessian entries (Bratu's) takes the coloured-probe path; built
    directly, P1 + GLL is the trapezoid action too. Both equal the UFL path."""
    from glep.reference import bratu_system

    sys_, par = bratu_system(2.0)
    mesh = graded_time_mesh(MPI.COMM_WORLD, 1.0, N, ratio=10.0, end="both")
    fe = make_discretisation(sys_, par, mesh, degree=degree, quadrature=quadrature)
    ga = GalerkinAction(sys_, par, fe.mesh, degree=degree, quadrature=quadrature)
    fe.u.x.array[:] = np.random.default_rng(3).standard_normal(fe.u.x.array.shape)
    ga.u.x.array[:] = fe.u.x.array
    b1, b2 = fe.u.x.petsc_vec.duplicate(), fe.u.x.petsc_vec.duplicate()
    fe.residual(b1)
    ga.residual(b2)
    assert (b1 - b2).norm() <= 1e-12 * b1.norm()
    A1, A2 = fe.create_jacobian(), ga.create_jacobian()
    fe.jacobian(A1)
    ga.jacobian(A2)
    assert ga._colors is not None  # the probe path ran
    nrm = A1.norm()
    A1.axpy(-1.0, A2, structure=PETSc.Mat.Structure.DIFFERENT_NONZERO_PATTERN)
    assert A1.norm() <= 1e-12 * nrm
    assert ga.action() == pytest.approx(fe.action(), rel=1e-12)
