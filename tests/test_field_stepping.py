"""Leapfrog for field systems (glep.ivp.field_stepping) against exact solutions.

Orders are fitted on three meshes and must match what the discretisation gives:

* P1, lumped mass, vertex quadrature, Δt ∝ h: ``‖φ_h − φ‖_{L²} = O(h² + Δt²)``, order 2 in space–time;
* P2 on intervals with Gauss–Lobatto (Simpson) lumping: the spectral-element scheme, whose
  ``L²`` error is ``O(h³)`` (interpolation-limited; its dispersion error is ``O(h⁴)``), with Δt small
  enough (∝ h^{3/2}) that the ``O(Δt²)`` time error stays below it;
* time alone (fixed mesh, against a run with 16× smaller steps): order 2.

The solutions: the Klein–Gordon standing wave (1-D and 2-D), the sine-Gordon breather (m = ½) and
the moving kink (c = 0.2), the last two with their exact values imposed at the ends of the interval.
"""

import numpy as np
import pytest
import ufl
from dolfinx import mesh as dmesh
from mpi4py import MPI

from glep import field_models as fm
from glep.errors import InputError
from glep.field_system import FieldCost, FieldSystem
from glep.ivp import field_stepping as fs

COMM = MPI.COMM_WORLD
MU = 2.0


def slope(hs, errs):
    return float(np.polyfit(np.log(hs), np.log(errs), 1)[0])


def kg_1d(n, degree=1):
    msh = dmesh.create_unit_interval(COMM, n)
    return FieldSystem(fm.klein_gordon(mu=MU), msh, degree=degree, initial=(lambda x: np.sin(np.pi * x[0]), 0.0))


def kg_exact_1d(x, t):
    return ufl.sin(ufl.pi * x[0]) * ufl.cos(np.sqrt(np.pi**2 + MU) * t)


def test_kg_standing_wave_1d_p1_order_2():
    T, errs, hs = 0.6, [], []
    for n in (8, 16, 32):
        sys = kg_1d(n)
        fw = fs.forward(sys, T, 4 * n, loss=False)
        errs.append(sys.error_norm(fw.q, kg_exact_1d, T))
        hs.append(1.0 / n)
    assert slope(hs, errs) == pytest.approx(2.0, abs=0.15), errs


def test_kg_standing_wave_1d_p2_order_3():
    T, errs, hs = 0.6, [], []
    for n in (4, 8, 16):
        sys = kg_1d(n, degree=2)
        fw = fs.forward(sys, T, int(np.ceil(6 * n**1.5)), loss=False)
        errs.append(sys.error_norm(fw.q, kg_exact_1d, T))
        hs.append(1.0 / n)
    assert slope(hs, errs) == pytest.approx(3.0, abs=0.25), errs


def test_kg_standing_wave_2d_p1_order_2():
    T, errs, hs = 0.4, [], []
    omega = np.sqrt(2 * np.pi**2 + MU)
    for n in (4, 8, 16):
        msh = dmesh.create_unit_square(COMM, n, n)
        sys = FieldSystem(fm.klein_gordon(mu=MU), msh,
                          initial=(lambda x: np.sin(np.pi * x[0]) * np.sin(np.pi * x[1]), 0.0))
        fw = fs.forward(sys, T, 4 * n, loss=False)
        errs.append(sys.error_norm(fw.q, lambda x, t: ufl.sin(ufl.pi * x[0]) * ufl.sin(ufl.pi * x[1])
                                   * ufl.cos(omega * t), T))
        hs.append(1.0 / n)
    assert slope(hs, errs) == pytest.approx(2.0, abs=0.2), errs


def test_time_order_2():
    sys, T = kg_1d(16), 0.6
    ref = fs.forward(sys, T, 640, loss=False).q
    steps = (10, 20, 40)
    errs = [np.max(np.abs(fs.forward(sys, T, N, loss=False).q - ref)) for N in steps]
    assert slope(T / np.array(steps), errs) == pytest.approx(2.0, abs=0.1), errs


def _sg_system(n, L, exact, exact_t):
    msh = dmesh.create_interval(COMM, n, [-L, L])
    return FieldSystem(fm.sine_gordon(), msh, dirichlet=lambda x, t: exact(x[0], t),
                       initial=(lambda x: exact(x[0], 0.0), lambda x: exact_t(x[0])))


@pytest.mark.parametrize("case", ["breather", "kink"])
def test_sine_gordon_order_2(case):
    m, c = 0.5, 0.2
    s = np.sqrt(1 - m * m)
    g = np.sqrt(1 - c * c)
    if case == "breather":
        exact = lambda x, t: fm.sine_gordon_breather(x, t, m=m)  # noqa: E731
        exact_t = lambda x: -4.0 * m / np.cosh(m * x)  # noqa: E731
        uex = lambda x, t: -4 * ufl.atan(m / s * ufl.sin(s * t) / ufl.cosh(m * x[0]))  # noqa: E731
    else:
        exact = lambda x, t: fm.sine_gordon_kink(x, t, c=c)  # noqa: E731
        exact_t = lambda x: -2 * c / g / np.cosh(x / g)  # noqa: E731
        uex = lambda x, t: 4 * ufl.atan(ufl.exp((x[0] - c * t) / g))  # noqa: E731
    L, T, errs, hs = 10.0, 2.0, [], []
    for n in (40, 80, 160):
        sys = _sg_system(n, L, exact, exact_t)
        fw = fs.forward(sys, T, n, loss=False)
        errs.append(sys.error_norm(fw.q, uex, T))
        hs.append(2 * L / n)
    assert slope(hs, errs) == pytest.approx(2.0, abs=0.2), errs


def test_backward_and_echo_retrace_the_forward_pass():
    msh = dmesh.create_unit_square(COMM, 6, 5)
    sys = FieldSystem(fm.sine_gordon(kappa=lambda x: 1 + 0.5 * x[0]), msh,
                      source=lambda x, t: ufl.sin(3 * t) * x[1],
                      initial=(lambda x: np.sin(np.pi * x[0]) * x[1] * (1 - x[1]), lambda x: x[0] * (1 - x[0])))
    q0, p0 = sys.initial_state()
    fw = fs.forward(sys, 0.8, 40)
    for back in (fs.backward(sys, fw.q, fw.p, 0.8, 40), fs.echo(sys, fw.q, fw.p, 0.8, 40)):
        assert np.max(np.abs(back.q - q0)) < 1e-12 and np.max(np.abs(back.p - p0)) < 1e-12
    assert fs.retrace_error(sys, 0.8, 40) < 1e-12


def test_energy_is_conserved_to_second_order():
    sys = kg_1d(16)
    drift = []
    for N in (20, 40):
        seen = []
        fs.forward(sys, 1.0, N, loss=False, callback=lambda k, t, q, p, seen=seen: seen.append(fs.energy(sys, q, p, t)))
        drift.append(np.ptp(seen) / abs(seen[0]))
    assert drift[1] < drift[0] / 3.0, drift  # leapfrog energy error O(Δt²), bounded in time


def test_loss_is_trapezoid_sum():
    sys = FieldSystem(fm.klein_gordon(mu=MU), dmesh.create_unit_interval(COMM, 10),
                      cost=FieldCost(target=lambda x, t: 0.3 * x[0] * t, region=lambda x: x[0] <= 0.5 + 1e-12),
                      terminal_cost=FieldCost(target=0.1), initial=(lambda x: np.sin(np.pi * x[0]), 0.0))
    seen = []
    fw = fs.forward(sys, 0.5, 5, callback=lambda k, t, q, p: seen.append((t, q.copy())))
    c = [sys.cost_value(q, t) for t, q in seen]
    w = fs.trapezoid_weights(np.full(5, 0.1))
    assert fw.loss == pytest.approx(float(np.dot(w, c)) + sys.cost_value(seen[-1][1], 0.5, "terminal"), rel=1e-13)


def test_bad_input():
    msh = dmesh.create_unit_square(COMM, 2, 2)
    with pytest.raises(InputError, match="not separable"):
        FieldSystem(fm.nls(), msh)
    with pytest.raises(InputError, match="P2 with lumped mass needs an interval or quadrilateral"):
        FieldSystem(fm.wave(), msh, degree=2)
    with pytest.raises(InputError, match="degree must be 1 or 2"):
        FieldSystem(fm.wave(), msh, degree=3)
    with pytest.raises(InputError, match="dirichlet must be"):
        FieldSystem(fm.wave(), msh, dirichlet="fixed")
    with pytest.raises(InputError, match="theta names unknown parameters"):
        FieldSystem(fm.wave(), msh, theta={"c": 1.0})
    sys = FieldSystem(fm.wave(), msh)
    with pytest.raises(InputError, match="N .number of steps. must be an integer >= 1"):
        fs.forward(sys, 1.0, 0)
    with pytest.raises(InputError, match="T must be a positive finite number"):
        fs.forward(sys, -1.0, 4)
    with pytest.raises(InputError, match="real β"):
        fs.forward(sys, 1.0, 4, beta=1e-3j)
    with pytest.raises(InputError, match="q0 must be a local dof array"):
        fs.forward(sys, 1.0, 4, q0=np.zeros(3))


def test_non_separable_detected_symbolically():
    from glep.fields import FieldLagrangian, FieldParameter

    def gyro(phi, phi_t, grad_phi, theta, x, t):
        return 0.5 * theta["rho"] * phi_t**2 - 0.5 * ufl.inner(grad_phi, grad_phi)

    lag = FieldLagrangian(gyro, {"rho": FieldParameter("scalar", 1.0)})
    with pytest.raises(InputError, match=r"∂ℒ/∂φ_t depends on θ\['rho'\]"):
        FieldSystem(lag, dmesh.create_unit_interval(COMM, 4))
    ok = FieldLagrangian(lambda phi, phi_t, grad_phi, theta, x, t: 0.5 * (1 + x[0]) * phi_t**2 - phi**2)
    assert FieldSystem(ok, dmesh.create_unit_interval(COMM, 4)).ndofs == 5


def test_field_output(tmp_path):
    import h5py

    sys = kg_1d(8)
    with fs.VTXOutput(sys, tmp_path / "phi.bp", every=2) as out:
        fs.forward(sys, 0.2, 4, loss=False, callback=out)
    assert out.written == 3 and (tmp_path / "phi.bp").is_dir()
    from glep.ivp.field_adjoint import field_adjoint

    sysk = FieldSystem(fm.sine_gordon(kappa=lambda x: 1 + x[0]), dmesh.create_unit_interval(COMM, 8),
                       cost=FieldCost(target=0.1), initial=(lambda x: np.sin(np.pi * x[0]), 0.0))
    g = field_adjoint(sysk, 0.2, 4).theta["kappa"]
    qT = fs.forward(sysk, 0.2, 4).q
    path = fs.write_field_results(tmp_path / "res.h5", sysk, {"kappa": g, "lam": 0.5, "q0": qT}, {"T": 0.2},
                                  {"qT": qT})
    if COMM.rank == 0:
        with h5py.File(path) as f:
            assert f.attrs["glep_format"] == "glep-field-results/1"
            assert np.allclose(f["fields/qT"][()], sysk.gather(qT)) and float(f["gradients/lam"][()]) == 0.5
            assert np.allclose(f["gradients/kappa/dual"][()], sysk.gather(g.dual, "kappa"))
            assert np.allclose(f["gradients/kappa/riesz"][()], sysk.gather(g.riesz, "kappa"))
            assert "Riesz" in f["gradients/kappa"].attrs["label"] or "riesz" in f["gradients/kappa"].attrs["label"]
        assert not list(tmp_path.glob(".*.tmp"))


def test_nodal_evaluation_equals_vertex_quadrature_assembly():
    """Point-wise summands evaluated at the nodes (NumPy) equal the assembled vertex-quadrature forms."""
    from dolfinx import fem, la

    msh = dmesh.create_unit_square(COMM, 5, 4)
    sys = FieldSystem(fm.klein_gordon(mu=lambda x: 1 + x[0] * x[1], lam=0.8), msh, dirichlet=None,
                      source=lambda x, t: ufl.sin(x[0] + t),
                      cost=FieldCost(target=lambda x, t: x[0] * ufl.cos(t), region=lambda x: x[1] <= 0.5 + 1e-12))
    assert sys._nodal_force is not None and set(sys._nodal_theta) == {"mu", "lam"} and sys._K is None
    assert set(sys._cost_nodal) == {"running"}
    q, lam = sys.interpolate(lambda x: np.cos(2 * x[0]) + x[1]), sys.interpolate(lambda x: x[0] ** 2 - x[1])
    U = sys.U_ufl
    v = ufl.TestFunction(sys.V)
    sys._set_state(q, 0.3)
    sys.lam.x.array[:] = lam

    def vec(form, space):
        b = la.vector(space.dofmap.index_map, 1)
        fem.assemble_vector(b.array, fem.form(form))
        b.scatter_reverse(la.InsertMode.add)
        b.scatter_forward()
        return b.array

    dU = ufl.derivative(U, sys.u, v)
    assert np.allclose(sys.force(q, 0.3), vec(dU, sys.V), rtol=1e-12, atol=1e-13)
    assert np.allclose(sys.hessian_action(q, 0.3, lam), vec(ufl.derivative(dU, sys.u, sys.lam), sys.V),
                       rtol=1e-12, atol=1e-13)
    Q = sys.spaces["mu"]
    w = ufl.TestFunction(Q)
    g, gv = sys.theta_gradient(q, 0.3), sys.theta_vjp(q, 0.3, lam)
    sys._set_state(q, 0.3)
    assert np.allclose(g["mu"], vec(ufl.derivative(U, sys.params["mu"], w), Q), rtol=1e-12, atol=1e-13)
    assert np.allclose(gv["mu"], vec(ufl.derivative(ufl.derivative(U, sys.u, sys.lam), sys.params["mu"], w), Q),
                       rtol=1e-12, atol=1e-13)
    c, dc = sys.cost_value(q, 0.3), sys.cost_gradient(q, 0.3)
    sys._set_state(q, 0.3)
    assert c == pytest.approx(COMM.allreduce(fem.assemble_scalar(sys._cost_forms["running"][0])), rel=1e-12)
    assert np.allclose(dc, vec(ufl.derivative(sys._cost_ufl["running"], sys.u, v), sys.V), rtol=1e-12, atol=1e-13)
    lam_exact = COMM.allreduce(fem.assemble_scalar(fem.form(-0.25 * sys.u**4 * sys._dx)))
    assert COMM.allreduce(g["lam"]) == pytest.approx(lam_exact, rel=1e-12)


def _nls_initial(x):
    u = fm.nls_soliton(x[0], 0.0, eta=1.0, xi=0.5)
    return np.vstack([u.real, u.imag])


def _nls_exact(x, t):
    env = 1.0 / ufl.cosh(x[0] - t)
    phase = 0.5 * x[0] + 0.75 * t
    return ufl.as_vector([env * ufl.cos(phase), env * ufl.sin(phase)])


def test_nls_soliton_implicit_midpoint_order_2_and_conjugation_echo():
    """The non-separable NLS density (first order in time) with the variational midpoint rule and SNES."""
    from glep.field_system import MidpointFieldSystem

    T, errs, hs = 1.0, [], []
    for n in (100, 200, 400):
        sys = MidpointFieldSystem(fm.nls(g=2.0), dmesh.create_interval(COMM, n, [-15.0, 15.0]),
                                  initial=(_nls_initial, 0.0))
        fw = fs.midpoint_forward(sys, T, n // 5)
        errs.append(sys.error_norm(fw.q, _nls_exact, T))
        hs.append(30.0 / n)
    assert slope(hs, errs) == pytest.approx(2.0, abs=0.15), errs
    back = fs.midpoint_echo(sys, fw.q, fw.p, T, n // 5)  # conjugate, run forward, conjugate back
    q0, p0 = sys.initial_state()
    assert np.max(np.abs(back.q - q0)) < 1e-11 and np.max(np.abs(back.p - p0)) < 1e-11
    with pytest.raises(InputError, match="dirichlet must be 'zero' or None"):
        MidpointFieldSystem(fm.nls(), dmesh.create_unit_interval(COMM, 4), dirichlet=lambda x, t: 0 * x[0])
