"""Single and multiple shooting for the CBVP, discrete Jacobi fields, conjugate points.

Reference systems from :mod:`glep.reference` (Bratu, Troesch, harmonic oscillator); reference values
from their closed forms.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.linalg import eigvalsh_tridiagonal

import glep
from glep.ivp.discrete import MIDPOINT, TRAPEZOID, DiscreteLagrangian
from glep.ivp.shooting import conjugate_points, jacobi_determinants, shoot_cbvp, tangent_sweep
from glep.ivp.stepping import integrate
from glep.reference import bratu_system, harmonic_system, troesch_system

bratu = bratu_system        # L = ½q'² − λeᵠ (Bratu: y'' + λeʸ = 0)
oscillator = harmonic_system  # L = Σ ½q_i'² − ½ω_i²q_i²


BRATU = {1.0: (0.549352728775, 0.1405392144, 10.8468990194, 4.09146724619),
         3.0: (2.31960225808, 0.640146696041, 6.10338129415, 1.97526697116)}


# -- harmonic oscillator -----------------------------------------------------------
def test_harmonic_cbvp_matches_discrete_closed_form():
    """Störmer–Verlet solves q_{k+1} − 2q_k + q_{k−1} = −(ωh)² q_k exactly by
    sin/cos of Ω with cos(Ωh) = 1 − (ωh)²/2, so the discrete CBVP solution is
    known in closed form to round-off; the continuous one up to O(h²)."""
    omega, T, q0, qT = 1.7, 4.0, 0.3, -0.8      # ωT/π ≈ 2.16: not a minimum, still solvable
    system, params = oscillator(omega)
    errs = []
    for N in (100, 200):
        grid = glep.TimeGrid(T, N)
        traj = shoot_cbvp(system, params, grid, [q0], [qT])
        t, h = grid.times, grid.h
        Om = math.acos(1.0 - 0.5 * (omega * h) ** 2) / h
        discrete = (q0 * np.sin(Om * (T - t)) + qT * np.sin(Om * t)) / np.sin(Om * T)
        np.testing.assert_allclose(traj.q[:, 0, 0], discrete, rtol=0, atol=1e-12)
        exact = (q0 * np.sin(omega * (T - t)) + qT * np.sin(omega * t)) / np.sin(omega * T)
        errs.append(np.max(np.abs(traj.q[:, 0, 0] - exact)))
        assert traj.q.shape == (N + 1, 1, 1) and traj.p.shape == (N + 1, 1, 1)
        assert traj.boundary_name == "CBVP" and isinstance(traj.boundary, glep.CBVP)
        assert traj.meta["iterations"] == traj.report.iterations <= 3  # linear: one Newton step (plus a check)
    assert 3.6 < errs[0] / errs[1] < 4.4            # second order in h
    p_exact = omega * (qT - q0 * np.cos(omega * T)) / np.sin(omega * T)
    assert abs(traj.p[0, 0, 0] - p_exact) < 2e-3 * abs(p_exact)


@pytest.mark.parametrize("omega,T", [(1.0, 2.0), (1.0, 4.0), (2.0, 4.0), (3.0, 10.0), (0.5, 30.0)])
def test_conjugate_points_harmonic(omega, T):
    """Jacobi field δq = sin(Ωt)/Ω: one conjugate point per multiple of π/Ω in (0, T)."""
    system, params = oscillator(omega)
    N = 400
    count = conjugate_points(system, params, glep.TimeGrid(T, N), [0.2], [0.5])
    assert count.shape == (1,)
    assert count[0] == math.floor(omega * T / math.pi)


def test_conjugate_points_several_dofs_and_batch():
    """Decoupled oscillators: det δq = Π_i sin(Ω_i t)/Ω_i changes sign at each zero of each factor."""
    omegas = np.array([1.0, 1.9, 3.3])
    system, params = oscillator(omegas)
    T = 4.0
    q0 = np.zeros((2, 3))
    p0 = np.ones((2, 3))
    count = conjugate_points(system, params, glep.TimeGrid(T, 800), q0, p0)
    expected = sum(math.floor(w * T / math.pi) for w in omegas)
    assert list(count) == [expected, expected]


# -- Bratu ---------------------------------------------------------------------------
def test_bratu_lower_branch_second_order():
    """y'(0) = p₀ of the discrete CBVP → reference value with error ∝ h²."""
    system, params = bratu(1.0)
    slope, ymid = BRATU[1.0][0], BRATU[1.0][1]
    errs = []
    for N in (40, 80, 160):
        traj = shoot_cbvp(system, params, glep.TimeGrid(1.0, N), [0.0], [0.0])
        assert traj.meta["residual_history"][-1] <= 1e-12
        errs.append(abs(traj.p[0, 0, 0] - slope))
        assert abs(traj.q[N // 2, 0, 0] - ymid) < 1e-3
        assert abs(traj.q[-1, 0, 0]) <= 1e-12
    rates = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    np.testing.assert_allclose(rates, 2.0, atol=0.05)
    assert errs[-1] < 1e-5


@pytest.mark.parametrize("lam", [1.0, 3.0])
def test_bratu_branches_and_morse_index(lam):
    """Both branches by choosing p0_guess; Morse index 0 (lower) and 1 (upper),
    checked against the eigenvalues of the Hessian of the discrete action."""
    system, params = bratu(lam)
    N = 400
    grid = glep.TimeGrid(1.0, N)
    lower_slope, _, upper_slope, upper_mid = BRATU[lam]
    for guess, slope, index in ((0.0, lower_slope, 0), (upper_slope + 1.0, upper_slope, 1)):
        traj = shoot_cbvp(system, params, grid, [0.0], [0.0], p0_guess=[guess])
        assert abs(traj.p[0, 0, 0] - slope) < 5e-5 * slope * (1 + slope**2)
        count = conjugate_points(system, params, grid, [0.0], traj.p[0])
        assert count[0] == index
        # Hessian of Σ L_d with q₀, q_N fixed: tridiagonal in the interior nodes
        dl = DiscreteLagrangian(system, params, grid)
        Q = traj.q
        one = np.ones((1, 1))
        diag = np.zeros(N - 1)
        off = np.zeros(N - 2)
        for k in range(N):
            d1_dq0, d2_dq0 = dl.hessian_action(k, Q[k], Q[k + 1], one, None)
            _, d2_dq1 = dl.hessian_action(k, Q[k], Q[k + 1], None, one)
            if k >= 1:
                diag[k - 1] += d1_dq0[0, 0]          # D₁₁ L_d(q_k, q_{k+1})
            if k <= N - 2:
                diag[k] += d2_dq1[0, 0]              # D₂₂ L_d(q_k, q_{k+1})
            if 1 <= k <= N - 2:
                off[k - 1] = d2_dq0[0, 0]            # D₂₁ L_d
        assert int(np.sum(eigvalsh_tridiagonal(diag, off) < 0)) == index
    assert abs(traj.q[N // 2, 0, 0] - upper_mid) < 1e-3 * upper_mid


def test_bratu_beyond_fold_raises_with_history():
    """No solution: the stall is far above the round-off floor and is reported with both numbers."""
    system, params = bratu(4.0)                       # λ > λ_c ≈ 3.5138: no solution
    floor_msg = r"the residual max\|F\| = \S+ is above its round-off floor \S+"
    with pytest.raises(glep.SolverError, match="line search found no decrease of the residual; " + floor_msg) as info:
        shoot_cbvp(system, params, glep.TimeGrid(1.0, 100), [0.0], [0.0], maxiter=30)
    assert len(info.value.history) >= 2
    assert min(info.value.history) > 1e-3
    with pytest.raises(glep.SolverError, match="no convergence in 4 Newton iterations; " + floor_msg):
        shoot_cbvp(system, params, glep.TimeGrid(1.0, 100), [0.0], [0.0], maxiter=4)


def _saddle():
    """``L = ½|v|² − ½ qᵀAq`` with one unstable direction (rate 1) and one oscillation (ω = 2):
    ``‖∂q_N/∂p₀‖ ~ sinh(T)`` amplifies the step round-off, so at ``T = 12`` the residual's floor
    (~1e-11) lies above the default ``tol · scale`` (~3e-12)."""
    c, s = np.cos(0.3), np.sin(0.3)
    R = np.array([[c, -s], [s, c]])
    system = glep.LagrangianSystem(2, [glep.DiagonalMass(2, None), glep.QuadraticForm(2, "A")], name="saddle")
    return system, {"A": R @ np.diag([-1.0, 4.0]) @ R.T}


def _ends(seed):
    rng = np.random.default_rng(seed)
    return np.array([1.0, -0.5]) + 0.1 * rng.standard_normal(2), np.array([0.5, 0.3]) + 0.1 * rng.standard_normal(2)


def _check_converged(traj, qT, tol=1e-12):
    meta = traj.meta
    res = meta["residual_history"][-1]
    assert np.max(np.abs(traj.q[-1] - qT)) <= res  # the end mismatch is one block of the residual
    if meta["converged"] == "residual":
        assert res <= tol * (1 + np.max(np.abs(traj.q[0])) + np.max(np.abs(qT)))
    else:
        assert meta["converged"] in ("round-off floor", "round-off step")
        assert np.isfinite(meta["residual_floor"]) and res <= 10 * meta["residual_floor"]


@pytest.mark.parametrize("segments", [1, 3])
def test_shooting_stops_at_its_round_off_floor(segments):
    """A residual at its round-off floor (above tol · scale) is convergence, not a line-search failure:
    every perturbed variant succeeds, alone and as one batch."""
    system, params = _saddle()
    grid = glep.TimeGrid(12.0, 1000)
    ends = [_ends(seed) for seed in range(6)]
    for q0, qT in ends:
        _check_converged(shoot_cbvp(system, params, grid, q0, qT, segments=segments), qT)
    Q0, QT = np.array([e[0] for e in ends]), np.array([e[1] for e in ends])
    batch = shoot_cbvp(system, params, grid, Q0, QT, segments=segments)
    scale = 1 + np.max(np.abs(Q0)) + np.max(np.abs(QT))
    allowed = max(1e-12 * scale, 10 * (batch.meta["residual_floor"] or 0.0))
    assert np.max(np.abs(batch.q[-1] - QT)) <= allowed


def test_shooting_floor_is_measured_not_assumed():
    """The floor grows with the flow's amplification: a longer horizon has a larger floor."""
    system, params = _saddle()
    floors = []
    for T in (8.0, 14.0):
        q0, qT = _ends(0)
        traj = shoot_cbvp(system, params, glep.TimeGrid(T, 1000), q0, qT, tol=1e-16)  # below any floor
        _check_converged(traj, qT, tol=1e-16)
        floors.append(traj.meta["residual_floor"])
    assert floors[1] > 10 * floors[0]


# -- multiple shooting -----------------------------------------------------------------
def _nonlinear_chain(n=3):
    edges = [(i, i + 1) for i in range(n - 1)]
    terms = [glep.DiagonalMass(n, "m"), glep.Pendulum(n, "w"), glep.SpringCoupling(n, edges, "J"),
             glep.Quartic(n, 0.3)]
    system = glep.LagrangianSystem(n, terms, name="chain")
    rng = np.random.default_rng(3)
    params = {"m": 1.0 + 0.3 * rng.random(n), "w": 1.0 + rng.random(n), "J": 0.5 + 0.5 * rng.random(n - 1)}
    return system, params


@pytest.mark.parametrize("rule", [TRAPEZOID, MIDPOINT], ids=["trapezoid", "midpoint"])
def test_multiple_shooting_agrees_with_single(rule):
    system, params = _nonlinear_chain(3)
    grid = glep.TimeGrid(1.5, 90 if rule is TRAPEZOID else 45)  # before the first conjugate point
    rng = np.random.default_rng(0)
    q0, qT = 0.5 * rng.standard_normal((2, 3)), 0.5 * rng.standard_normal((2, 3))  # batch of 2 problems
    single = shoot_cbvp(system, params, grid, q0, qT, integrator_rule=rule)
    assert single.q.shape == (grid.N + 1, 2, 3)
    np.testing.assert_allclose(single.q[0], q0, atol=0)
    np.testing.assert_allclose(single.q[-1], qT, atol=1e-12)
    for segments in (2, 7):                            # 7 does not divide N: uneven segments
        multi = shoot_cbvp(system, params, grid, q0, qT, integrator_rule=rule, segments=segments)
        assert np.max(np.abs(multi.q - single.q)) <= 1e-10
        assert np.max(np.abs(multi.p - single.p)) <= 1e-10
    # the solution satisfies the discrete Euler–Lagrange equations at every interior node
    dl = DiscreteLagrangian(system, params, grid, rule)
    for k in range(1, grid.N):
        _, d2 = dl.momenta(k - 1, single.q[k - 1], single.q[k])
        d1, _ = dl.momenta(k, single.q[k], single.q[k + 1])
        assert np.max(np.abs(d2 + d1)) < 1e-11


def test_multiple_shooting_rescues_troesch():
    """Troesch λ = 5: single shooting from the straight line overflows, multiple shooting converges."""
    system, params = troesch_system(5.0)
    grid = glep.TimeGrid(1.0, 400)
    with np.errstate(over="ignore", invalid="ignore"):
        with pytest.raises(glep.SolverError):
            shoot_cbvp(system, params, grid, [0.0], [1.0])
        traj = shoot_cbvp(system, params, grid, [0.0], [1.0], segments=20)
    assert abs(traj.p[0, 0, 0] - 0.0457504614063187) < 2e-5
    assert abs(traj.p[-1, 0, 0] - 12.1004954508) < 2e-3 * 12.1   # O(h²) with a large constant at x = 1
    assert abs(traj.q[-1, 0, 0] - 1.0) < 1e-12


def test_nudged_cbvp_keeps_ends():
    """beta nudges the interior (L_β = L + βc) while both ends stay pinned."""
    n = 2
    cost = glep.TrackingCost(n, [1], "y")
    y = glep.Signal.from_samples(np.ones((5, 1)), 1.0, "y")
    system = glep.LagrangianSystem(n, [glep.DiagonalMass(n, None), glep.Harmonic(n, "k")], cost=cost,
                                   signals={"y": y})
    params = {"k": np.array([1.0, 2.0])}
    grid = glep.TimeGrid(1.0, 50)
    free = shoot_cbvp(system, params, grid, [0.0, 0.0], [0.1, 0.2])
    nudged = shoot_cbvp(system, params, grid, [0.0, 0.0], [0.1, 0.2], beta=0.5)
    assert nudged.beta == 0.5
    np.testing.assert_allclose(nudged.q[-1], free.q[-1], atol=1e-12)
    assert np.max(np.abs(nudged.q[:, 0, 1] - free.q[:, 0, 1])) > 1e-3
    # complex-step nudging: Im q(iβ)/β = ∂_β q, also with multiple shooting
    b = 1e-20
    cs = shoot_cbvp(system, params, grid, [0.0, 0.0], [0.1, 0.2], beta=1j * b, segments=3)
    plus = shoot_cbvp(system, params, grid, [0.0, 0.0], [0.1, 0.2], beta=1e-5)
    minus = shoot_cbvp(system, params, grid, [0.0, 0.0], [0.1, 0.2], beta=-1e-5)
    fd = (plus.q - minus.q) / 2e-5
    assert cs.q.dtype == np.complex128
    assert np.max(np.abs(cs.q.imag / b - fd)) < 1e-8 * np.max(np.abs(fd))
    np.testing.assert_allclose(cs.q.real, free.q, atol=1e-13)


# -- tangent sweep ----------------------------------------------------------------------
@pytest.mark.parametrize("rule", [TRAPEZOID, MIDPOINT], ids=["trapezoid", "midpoint"])
def test_tangent_sweep_matches_finite_differences(rule):
    system, params = _nonlinear_chain(3)
    grid = glep.TimeGrid(1.5, 30)
    rng = np.random.default_rng(1)
    q0, p0 = 0.4 * rng.standard_normal((2, 3)), 0.4 * rng.standard_normal((2, 3))
    dq0, dp0 = rng.standard_normal((2, 2, 3)), rng.standard_normal((2, 2, 3))  # K = 2 tangents
    dth = {k: rng.standard_normal((2,) + v.shape) for k, v in params.items()}

    def run(eps, k):
        th = {key: v + eps * dth[key][k] for key, v in params.items()}
        dl = DiscreteLagrangian(system, th, grid, rule)
        return integrate(dl, q0 + eps * dq0[k], p0 + eps * dp0[k])

    dl = DiscreteLagrangian(system, params, grid, rule)
    Q, _ = integrate(dl, q0, p0)
    DQ, DP = tangent_sweep(dl, Q, dq0, dp0, dth, store=True)
    dqN, dpN = tangent_sweep(dl, Q, dq0, dp0, dth)
    np.testing.assert_array_equal(dqN, DQ[-1])
    eps = 1e-5
    for k in range(2):
        (Qp, Pp), (Qm, Pm) = run(eps, k), run(-eps, k)
        fd_q, fd_p = (Qp - Qm) / (2 * eps), (Pp - Pm) / (2 * eps)
        scale = 1.0 + np.max(np.abs(fd_q)) + np.max(np.abs(fd_p))
        assert np.max(np.abs(DQ[:, k] - fd_q)) < 1e-7 * scale
        assert np.max(np.abs(DP[:, k] - fd_p)) < 1e-7 * scale
    # without dtheta: only the state tangent
    dq_state, _ = tangent_sweep(dl, Q, dq0, dp0)
    assert np.max(np.abs(dq_state - dqN)) > 1e-3


def test_jacobi_determinant_of_oscillator():
    """δq₀ = 0, δp₀ = 1 gives δq₁ = h and then δq_k = h sin(Ω t_k) / sin(Ω h), cos(Ωh) = 1 − (ωh)²/2."""
    omega = 2.0
    system, params = oscillator(omega)
    grid = glep.TimeGrid(3.0, 600)
    dl = DiscreteLagrangian(system, params, grid)
    Q, _ = integrate(dl, np.zeros((1, 1)), np.ones((1, 1)))
    det = jacobi_determinants(dl, Q)[:, 0]
    h = grid.h
    Om = math.acos(1.0 - 0.5 * (omega * h) ** 2) / h
    np.testing.assert_allclose(det, h * np.sin(Om * grid.times) / np.sin(Om * h), rtol=0, atol=1e-12)
    np.testing.assert_allclose(det, np.sin(omega * grid.times) / omega, atol=2e-5)      # O(h²) to the ODE


def test_input_errors():
    system, params = bratu(1.0)
    grid = glep.TimeGrid(1.0, 10)
    with pytest.raises(glep.InputError):
        shoot_cbvp(system, params, grid, [0.0, 1.0], [0.0])
    with pytest.raises(glep.InputError):
        shoot_cbvp(system, params, grid, [0.0], [0.0], segments=11)
    with pytest.raises(glep.InputError):
        shoot_cbvp(system, params, grid, [0.0], [0.0], segments=0)


# -- agreement with the finite-element backend (THEORY.md §4) -----------------------------
def test_shooting_agrees_with_p1_fe_cbvp():
    """P1 elements with Gauss–Lobatto quadrature assemble the trapezoid discrete action:
    the FE CBVP solution and the Störmer–Verlet shooting solution coincide to solver tolerance."""
    api = pytest.importorskip("glep.bvp.solve")
    from mpi4py import MPI

    import glep.meshes as gm

    system, params = _nonlinear_chain(3)
    rng = np.random.default_rng(0)
    q0, qT = 0.5 * rng.standard_normal(3), 0.5 * rng.standard_normal(3)
    N, T = 32, 1.5
    traj = shoot_cbvp(system, params, glep.TimeGrid(T, N), q0, qT)
    sol = api.solve_bvp(system, params, gm.uniform_time_mesh(MPI.COMM_SELF, T, N), glep.CBVP(q0, qT))
    np.testing.assert_allclose(sol.times, glep.TimeGrid(T, N).times, atol=1e-14)
    assert sol.q.shape == traj.q.shape and sol.pT.shape == traj.pT.shape  # one trajectory type, B = 1
    assert np.max(np.abs(sol.q - traj.q)) < 1e-10
    assert np.max(np.abs(sol.p0 - traj.p0)) < 1e-9
    assert np.max(np.abs(sol.pT - traj.pT)) < 1e-9
