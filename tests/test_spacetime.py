"""Field equations on space-time meshes (glep.bvp.spacetime): exact solutions, the leapfrog identity, resonance.

* the linear wave sin(πx)cos(πt) as a CBVP on [0, 1] x [0, 1/√2] converges with order 2 (Q1) and 3 (Q2)
  in L²; the Klein–Gordon standing wave likewise; the sine-Gordon breather from perturbed guesses;
* the Q1 space-time CBVP with Gauss–Lobatto in time *is* the leapfrog trajectory of the spatial
  semi-discretisation assembled independently (scipy.sparse from dolfinx on the spatial mesh);
* CIVP, its final-value problem (PFVP) and a periodic-in-time problem solve what they should;
* the Morse index equals the count of negative eigenvalues of the Kronecker sum; a resonant T is an error.
"""

import dolfinx_solver  # noqa: F401  isort: skip

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse.linalg as spla
import ufl
from dolfinx import fem, mesh
from dolfinx.fem import petsc as fpetsc
from mpi4py import MPI

from glep.bvp import spacetime as st
from glep.bvp.spacetime_krylov import KrylovNewton
from glep.errors import InputError, SingularHessianError, SolverError
from glep.field_models import klein_gordon, klein_gordon_standing_wave, sine_gordon, sine_gordon_breather, wave
from glep.fields import FieldLagrangian

COMM = MPI.COMM_WORLD
T_WAVE = 1.0 / np.sqrt(2.0)  # non-resonant: kT is never an integer


def _slope(hs, errs):
    return float(np.polyfit(np.log(hs), np.log(errs), 1)[0])


def _standing(X):
    return klein_gordon_standing_wave(X[0], X[1])


@pytest.mark.parametrize("degree,ns,order", [(1, (8, 16, 32), 2.0), (2, (4, 8, 16), 3.0)])
def test_linear_wave_cbvp_converges(degree, ns, order):
    """sin(πx)cos(πt) as a CBVP: fitted L² order 2 for Q1 and 3 for Q2 (Gauss–Lobatto in time)."""
    errs = []
    for n in ns:
        m = st.spacetime_mesh(COMM, 1.0, T_WAVE, n, int(round(n * T_WAVE)))
        p = st.SpaceTimeProblem(wave(), m, st.SpaceTimeCBVP(_standing, _standing), degree=degree)
        sol = st.solve(p)
        assert sol.report.iterations == 1  # linear: one Newton step
        errs.append(p.l2_error(_standing))
    slope = _slope([1.0 / n for n in ns], errs)
    assert order - 0.2 < slope < order + 0.4, (errs, slope)


def test_triangles_converge():
    """The same CBVP on triangles with Gauss quadrature (no tensor rule): order 2."""
    errs = []
    ns = (8, 16)
    for n in ns:
        m = st.spacetime_mesh(COMM, 1.0, T_WAVE, n, int(round(n * T_WAVE)), cell="triangle")
        p = st.SpaceTimeProblem(wave(), m, st.SpaceTimeCBVP(_standing, _standing))
        assert p.quadrature == "gauss"
        st.solve(p)
        errs.append(p.l2_error(_standing))
    assert 1.8 < _slope([1.0 / n for n in ns], errs) < 2.4, errs


def test_klein_gordon_standing_wave():
    """sin(πx)cos(ωt), ω² = π² + μ, μ = 1: Q1 order 2 on a non-resonant horizon (ωT/π not an integer)."""
    mu = 1.0

    def exact(X):
        return klein_gordon_standing_wave(X[0], X[1], mu=mu)

    errs, ns = [], (8, 16)
    for n in ns:
        m = st.spacetime_mesh(COMM, 1.0, 0.6, n, n)
        p = st.SpaceTimeProblem(klein_gordon(mu=mu), m, st.SpaceTimeCBVP(exact, exact))
        st.solve(p)
        errs.append(p.l2_error(exact))
    assert 1.8 < _slope([1.0 / n for n in ns], errs) < 2.4, errs


def test_sine_gordon_breather_from_perturbed_guesses():
    """Nonlinear CBVP (exact breather on the whole boundary): Newton from several perturbed guesses reaches the
    same discrete solution (to Newton's tolerance), which converges to the breather with order 2."""
    def exact(X):
        return sine_gordon_breather(X[0], X[1])

    errs = []
    for n in (12, 24):
        m = st.spacetime_mesh(COMM, [(-4.0, 4.0)], 3.0, n, n)
        p = st.SpaceTimeProblem(sine_gordon(), m, st.SpaceTimeCBVP(exact, exact), dirichlet=exact)
        sols = []
        for amp, k in ((0.0, 1), (0.3, 1), (-0.5, 2), (0.8, 3)):
            def guess(X, amp=amp, k=k):
                return exact(X) + amp * np.sin(k * np.pi * (X[0] + 4.0) / 8.0) * np.sin(k * np.pi * X[1] / 3.0)

            st.solve(p, guess)
            sols.append(p.gather()[1].copy())
        scale = np.max(np.abs(sols[0]))
        for s in sols[1:]:
            assert np.max(np.abs(s - sols[0])) <= 1e-9 * scale
        errs.append(p.l2_error(exact))
    assert _slope([1 / 12, 1 / 24], errs) > 1.8, errs


# --------------------------------------------------------------------------- the leapfrog identity
def _spatial_operators(lag, n, kappa, quad_degree, lumped):
    """Mass matrix and ∇V(q) of the spatial semi-discretisation of ``lag`` on [0, 1] (P1), assembled by dolfinx."""
    sm = mesh.create_interval(COMM, n, [0.0, 1.0])
    V = fem.functionspace(sm, ("Lagrange", 1))
    K = fem.functionspace(sm, ("Lagrange", 1))
    theta = {"kappa": fem.Function(K)}
    theta["kappa"].interpolate(kappa)
    q = fem.Function(V)
    u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
    x = ufl.SpatialCoordinate(sm)
    md = {"quadrature_degree": quad_degree}
    if lumped:
        md = {"quadrature_rule": "GLL", "quadrature_degree": 1}
    dx = ufl.Measure("dx", sm, metadata=md)
    minus_V = lag(q, 0.0 * q, ufl.grad(q), theta, ufl.as_vector([x[0]]), 0.0) * dx
    grad_form = fem.form(-ufl.derivative(minus_V, q, v))
    Mf = fpetsc.assemble_matrix(fem.form(u * v * dx))
    Mf.assemble()
    ai, aj, av = Mf.getValuesCSR()
    import scipy.sparse as sp

    M = sp.csr_matrix((av, aj, ai), shape=Mf.getSize())
    coords = V.tabulate_dof_coordinates()[:, 0]

    def gradV(values):
        q.x.array[:] = values
        return fpetsc.assemble_vector(grad_form).array.copy()

    return M, gradV, coords


@pytest.mark.parametrize("quadrature", ["lobatto-time", "lobatto"])
def test_cbvp_equals_leapfrog(quadrature):
    """Q1 + Gauss–Lobatto in time = Störmer–Verlet with consistent ("lobatto-time") or lumped ("lobatto") mass.

    Sine-Gordon with a parameter field κ(x); the leapfrog starts from the CBVP's own φ(0) and its discrete
    momentum p(0) = −∂A/∂φ₀: q₁ = q₀ + h M⁻¹(p₀ − ½h∇V(q₀)), then M(q_{n+1} − 2q_n + q_{n−1}) = −h²∇V(q_n).
    """
    n, nt, T = 12, 24, 0.8  # h_t = h_x / 2.5: below the CFL limit 1/√3 of consistent-mass leapfrog

    def kappa(X):
        return 1.0 + 0.5 * X[0]

    lag = sine_gordon()
    m = st.spacetime_mesh(COMM, 1.0, T, n, nt)
    p = st.SpaceTimeProblem(lag, m, st.SpaceTimeCBVP(lambda X: 2.0 * np.sin(np.pi * X[0]),
                                                     lambda X: np.sin(2 * np.pi * X[0])),
                            params={"kappa": kappa}, quadrature=quadrature)
    st.solve(p)
    pts, vals = p.gather()
    phi = vals[:, 0].reshape(nt + 1, n + 1)  # sorted by (t, x)
    p0 = p.momenta()["0"].values
    x_st = p.V.tabulate_dof_coordinates()[: p.nloc, 0]
    on0 = p.end_dofs["0"]
    M, gradV, xs = _spatial_operators(lag, n, kappa, 4, quadrature == "lobatto")
    order = np.argsort(xs)
    p0_sp = np.zeros(n + 1)
    p0_sp[np.abs(np.sort(xs)[:, None] - x_st[on0][None, :]).argmin(axis=0)] = p0[on0]
    inner = np.arange(1, n)
    Mi = spla.splu(M[order][:, order][inner][:, inner].tocsc())
    h = T / nt
    qs = [phi[0]]

    def gv(qsorted):
        full = np.empty(n + 1)
        full[order] = qsorted
        return gv_sorted(full)

    def gv_sorted(full):
        return gradV(full)[order]

    q1 = phi[0].copy()
    q1[inner] += h * Mi.solve(p0_sp[inner] - 0.5 * h * gv(phi[0])[inner])
    qs.append(q1)
    for _ in range(nt - 1):
        qn, qm = qs[-1], qs[-2]
        nxt = qn.copy()
        nxt[inner] = 2 * qn[inner] - qm[inner] - h * h * Mi.solve(gv(qn)[inner])
        qs.append(nxt)
    leap = np.array(qs)
    assert np.max(np.abs(leap - phi)) <= 1e-10 * np.max(np.abs(phi))


# --------------------------------------------------------------------------- other conditions
def test_civp_and_its_final_value_problem():
    """CIVP (φ(0), π(0) given) marches the wave forward; the PFVP through its final state (φ(T), p(T)) returns
    the same trajectory (natural momentum condition at T, no condition at t = 0)."""
    n, nt, T = 16, 30, 0.6  # h_t/h_x = 0.32, below leapfrog's CFL limit 1/√3 (round-off is not amplified)
    m = st.spacetime_mesh(COMM, 1.0, T, n, nt)
    civp = st.SpaceTimeProblem(wave(), m, st.SpaceTimeCIVP(lambda X: np.sin(np.pi * X[0]), 0.0))
    st.solve(civp)
    ref = civp.gather()[1]
    assert civp.l2_error(_standing) < 2e-2  # φ(0) = sin πx, π(0) = 0 is the standing wave
    pf = civp.final_value_problem()
    st.solve(pf)
    assert np.max(np.abs(pf.gather()[1] - ref)) <= 1e-10 * np.max(np.abs(ref))


def _forced_wave(T):
    """ℒ = ½φ_t² − ½φ_x² + f φ with f = φ*_tt − φ*_xx for φ* = sin(πx)cos(2πt/T) (periodic with period T)."""
    w = 2 * np.pi / T

    def density(phi, phi_t, grad_phi, theta, x, t):
        f = (np.pi**2 - w**2) * ufl.sin(np.pi * x[0]) * ufl.cos(w * t)
        return 0.5 * phi_t**2 - 0.5 * ufl.inner(grad_phi, grad_phi) + f * phi

    return FieldLagrangian(density, name="forced wave"), (lambda X: np.sin(np.pi * X[0]) * np.cos(w * X[1]))


def test_periodic_in_time():
    """Periodic in time (t = T dofs identified with t = 0, no dolfinx_mpc): the forced standing wave, order 2."""
    T = 1.3  # 2π/T is not a multiple of π: the unforced periodic problem has only the zero solution
    lag, exact = _forced_wave(T)
    errs = []
    for n in (8, 16):
        m = st.spacetime_mesh(COMM, 1.0, T, n, n)
        p = st.SpaceTimeProblem(lag, m, st.SpaceTimePeriodic())
        st.solve(p)
        pts, vals = p.gather()
        first, last = vals[np.isclose(pts[:, 1], 0.0)], vals[np.isclose(pts[:, 1], T)]
        assert np.array_equal(first, last)
        errs.append(p.l2_error(exact))
    assert 1.8 < _slope([1 / 8, 1 / 16], errs) < 2.4, errs


# --------------------------------------------------------------------------- Morse index and resonance
def _p1_1d(N, h):
    """P1 stiffness, consistent and lumped mass on N uniform cells, interior dofs (dense; written by hand)."""
    K = (2 * np.eye(N - 1) - np.eye(N - 1, k=1) - np.eye(N - 1, k=-1)) / h
    M = h / 6 * (4 * np.eye(N - 1) + np.eye(N - 1, k=1) + np.eye(N - 1, k=-1))
    return K, M, h * np.eye(N - 1)


def test_morse_index_is_the_kronecker_count():
    """Q1, trapezoid in time, consistent mass in space: J = K_t⊗M_x − M_t⊗K_x, so the index is
    #{(j, k): ν_j² < ω_k²} of the 1-D pencils (Sylvester); it tends to Σ_k floor(kT) (c = L = 1)."""
    n, nt = 10, 7
    m = st.spacetime_mesh(COMM, 1.0, T_WAVE, n, nt)
    p = st.SpaceTimeProblem(wave(), m, st.SpaceTimeCBVP(_standing, _standing))
    sol = st.solve(p, morse=True)
    Kx, Mx, _ = _p1_1d(n, 1.0 / n)
    Kt, _, Mt = _p1_1d(nt, T_WAVE / nt)
    omega2 = sla.eigh(Kx, Mx, eigvals_only=True)
    nu2 = sla.eigh(Kt, Mt, eigvals_only=True)
    expected = int(np.sum(nu2[:, None] < omega2[None, :]))
    assert sol.hessian.index == expected
    continuum = sum(int(np.floor(k * T_WAVE)) for k in range(1, n))
    assert abs(expected - continuum) <= n  # the unresolved modes' dispersion changes a few floors
    assert sol.hessian.min_eigenvalue != 0.0


def test_resonant_horizon_is_an_error():
    """T = L = c = 1: every mode is resonant.  Lumped (CFL 1, exact dispersion) the Jacobian is singular and the
    solve fails; with a consistent mass it is nonsingular by O(h²) only, below the discretisation error."""
    m = st.spacetime_mesh(COMM, 1.0, 1.0, 8, 8)
    p = st.SpaceTimeProblem(wave(), m, st.SpaceTimeCBVP(_standing, _standing), quadrature="lobatto")
    with pytest.raises(SingularHessianError, match="singular"):
        st.solve(p)
    m = st.spacetime_mesh(COMM, 1.0, 1.0, 16, 16)
    p = st.SpaceTimeProblem(wave(), m, st.SpaceTimeCBVP(_standing, _standing))
    with pytest.raises(SingularHessianError, match="numerically singular") as info:
        st.solve(p, morse=True)
    # the k = 1 pair: ν² − ω² = −2(1 − cos πh)²/((2 + cos πh)h²) ≈ −π⁴h²/6 (docs/theory.md, section 8)
    assert info.value.min_eigenvalue == pytest.approx(-np.pi**4 / 6 / 16**2, rel=0.05)


def test_iterative_solver_through_options():
    """GMRES + additive Schwarz (LU blocks) through PETSc options: the same solution as MUMPS, its iterations."""
    m = st.spacetime_mesh(COMM, [(0.0, 1.0), (0.0, 1.0)], 1 / np.sqrt(3.0), 5, 4)  # (4, 4, 4) is discretely resonant

    def exact(X):
        return np.sin(np.pi * X[0]) * np.sin(np.pi * X[1]) * np.cos(np.sqrt(2) * np.pi * X[2])

    p = st.SpaceTimeProblem(wave(), m, st.SpaceTimeCBVP(exact, exact))
    st.solve(p)
    direct = p.gather()[1]
    opts = {"ksp_type": "gmres", "pc_type": "asm", "pc_asm_blocks": 4, "sub_pc_type": "lu",
            "ksp_rtol": 1e-12, "ksp_gmres_restart": 200, "ksp_max_it": 2000}
    p2 = st.SpaceTimeProblem(wave(), m, st.SpaceTimeCBVP(exact, exact))
    sol = st.solve(p2, solver=st.Newton(options=opts))
    assert sol.linear_iterations > 1
    assert np.max(np.abs(p2.gather()[1] - direct)) <= 1e-8
    # the default iterative solver: MINRES preconditioned by the elliptic companion K_t + K_x (CG + GAMG)
    p3 = st.SpaceTimeProblem(wave(), m, st.SpaceTimeCBVP(exact, exact))
    sol = st.solve(p3, solver=KrylovNewton())
    assert sol.linear_iterations > 1
    assert np.max(np.abs(p3.gather()[1] - direct)) <= 1e-8
    with pytest.raises(InputError, match="preconditioner must be"):
        KrylovNewton(preconditioner="ilu")
    few = KrylovNewton(options={"ksp_max_it": 2})
    with pytest.raises(SolverError, match="Krylov solver stopped first"):
        st.solve(st.SpaceTimeProblem(wave(), m, st.SpaceTimeCBVP(exact, exact)), solver=few)


# --------------------------------------------------------------------------- bad input
def test_bad_input():
    m = st.spacetime_mesh(COMM, 1.0, 0.5, 4, 4)
    with pytest.raises(InputError, match="extent"):
        st.spacetime_mesh(COMM, [(1.0, 0.0)], 1.0, 4, 4)
    with pytest.raises(InputError, match="cell must be one of"):
        st.spacetime_mesh(COMM, [(0, 1), (0, 1)], 1.0, 4, 4, cell="tetrahedron")
    with pytest.raises(InputError, match="condition must be"):
        st.SpaceTimeProblem(wave(), m, "CBVP")
    with pytest.raises(InputError, match="unknown parameter"):
        st.SpaceTimeProblem(wave(), m, st.SpaceTimeCBVP(), params={"mass": 1.0})
    with pytest.raises(InputError, match="quadrature must be one of"):
        st.SpaceTimeProblem(wave(), m, st.SpaceTimeCBVP(), quadrature="simpson")
    tri = st.spacetime_mesh(COMM, 1.0, 0.5, 4, 4, cell="triangle")
    with pytest.raises(InputError, match="tensor-product rule"):
        st.SpaceTimeProblem(wave(), tri, st.SpaceTimeCBVP(), quadrature="lobatto-time")
    with pytest.raises(InputError, match="phi0 must be a number or a function"):
        st.SpaceTimeProblem(wave(), m, st.SpaceTimeCBVP(phi0="sin"))
    p = st.SpaceTimeProblem(wave(), m, st.SpaceTimeCBVP())
    with pytest.raises(InputError, match="needs a cost"):
        p.set_beta(1e-3)
    with pytest.raises(InputError, match="Morse index needs a symmetric"):
        st.hessian_report(st.SpaceTimeProblem(wave(), m, st.SpaceTimeCIVP()))
