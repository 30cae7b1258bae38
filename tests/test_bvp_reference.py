"""Reference suite of the bvp backend: closed-form Bratu, Troesch and harmonic-oscillator values (glep.reference).

Bratu (both branches, Morse indices, the fold), Troesch (stiff, graded mesh),
the harmonic oscillator (Morse index ⌊ωT/π⌋, action descent failing past the
first conjugate point) and h-convergence of the finite-element trajectories.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import ufl
from dolfinx import fem
from mpi4py import MPI

import glep
from glep import CBVP
from glep.bvp import (
    ReducedProblem,
    locate_fold,
    make_discretisation,
    natural_continuation,
    solve_bvp,
    solve_problem,
)
from glep.grid import TimeGrid
from glep.ivp.shooting import conjugate_points
from glep.meshes import graded_time_mesh
from glep.reference import (
    BRATU_FOLD,
    bratu_exact,
    bratu_exact_ufl,
    bratu_system,
    harmonic_system,
    troesch_system,
)

BRATU = {  # λ: [(y'(0), y(½)) lower, upper]
    1.0: [(0.549352728775, 0.1405392144), (10.8468990194, 4.09146724619)],
    2.0: [(1.24821751776, 0.328952421341), (8.26876318055, 2.89553126549)],
    3.0: [(2.31960225808, 0.640146696041), (6.10338129415, 1.97526697116)],
    3.5: [(3.70396703116, 1.08515894779), (4.30655083742, 1.29458547909)],
}
ZERO = CBVP([0.0], [0.0])


@pytest.mark.parametrize("lam", sorted(BRATU))
def test_bratu_both_branches_and_morse_indices(lam):
    sys_, par = bratu_system(lam)
    for branch, (yp0, ymid) in zip(("lower", "upper"), BRATU[lam]):
        # a nearby start selects the branch: a sine bump of the tabulated height
        sol = solve_bvp(sys_, par, (1.0, 32), ZERO, degree=2, quadrature="gauss", morse=True,
                        guess=lambda t, a=ymid: a * np.sin(np.pi * np.asarray(t))[None])
        assert sol.p0[0, 0] == pytest.approx(yp0, rel=2e-6)
        assert sol.at(0.5)[0] == pytest.approx(ymid, rel=2e-6)
        assert sol.morse_index == (0 if branch == "lower" else 1)


def test_bratu_morse_index_equals_discrete_conjugate_points():
    """P1 + GLL: the inertia of the FE Hessian is the discrete conjugate-point count of Störmer–Verlet."""
    sys_, par = bratu_system(2.0)
    for amp in (0.33, 2.9):
        sol = solve_bvp(sys_, par, (1.0, 64), ZERO, morse=True, guess=lambda t, a=amp: a * np.sin(np.pi * t)[None])
        count = conjugate_points(sys_, par, TimeGrid(1.0, 64), sol.q[0, 0], sol.p0[0])
        assert int(count[0]) == sol.morse_index


def test_bratu_fold_by_continuation():
    sys_, par = bratu_system(1.0)
    disc = make_discretisation(sys_, par, (1.0, 16), degree=3, quadrature="gauss")
    problem = ReducedProblem(disc, ZERO)
    start = solve_problem(problem)
    lam_c, a_c = locate_fold(problem, "lam", t_star=0.5, start=start, lam0=1.0,
                             a_values=np.linspace(0.15, 2.0, 12))
    assert abs(lam_c - BRATU_FOLD) < 5e-7 * BRATU_FOLD  # ≥ 6 significant digits
    th_c = 4.0 * 1.1996786402577  # θ_c/4 solves x tanh x = 1
    assert a_c == pytest.approx(2 * math.log(math.cosh(th_c / 4)), rel=1e-4)
    # natural continuation in λ follows the lower branch up to the fold and fails past it
    sols = natural_continuation(problem, "lam", [1.0, 2.0, 3.0, 3.5])
    assert [s.p0[0, 0] for s in sols] == pytest.approx([v[0][0] for v in BRATU.values()], rel=1e-6)
    with pytest.raises(glep.SolverError):
        natural_continuation(problem, "lam", [3.5, 3.53])


def test_troesch_uniform():
    ref = {1.0: (0.845202685309951, 1.34183786237), 5.0: (0.0457504614063187, 12.1004954508)}
    for lam, (p0, pT) in ref.items():
        sys_, par = troesch_system(lam)
        mesh = (1.0, 32) if lam == 1.0 else graded_time_mesh(MPI.COMM_WORLD, 1.0, 64, ratio=50.0, end="final")
        sol = solve_bvp(sys_, par, mesh, CBVP([0.0], [1.0]), degree=3, quadrature="gauss", morse=True)
        assert sol.p0[0, 0] == pytest.approx(p0, rel=1e-6)
        assert sol.pT[0, 0] == pytest.approx(pT, rel=1e-6)
        assert sol.morse_index == 0  # convex action


def test_troesch_lambda_10_newton_on_graded_mesh():
    """λ = 10: single shooting fails (pole at x ≈ 1.0013); Newton on a graded mesh needs no continuation."""
    sys_, par = troesch_system(10.0)
    mesh = graded_time_mesh(MPI.COMM_WORLD, 1.0, 64, ratio=200.0, end="final")
    sol = solve_bvp(sys_, par, mesh, CBVP([0.0], [1.0]), degree=3, quadrature="gauss")
    assert sol.p0[0, 0] == pytest.approx(3.58337784630814e-4, rel=1e-5)
    assert sol.pT[0, 0] == pytest.approx(148.406421156, rel=1e-6)
    assert sol.report.iterations < 20


@pytest.mark.parametrize("T", [2.0, 4.0, 7.0, 10.0])
def test_harmonic_morse_index(T):
    sys_, par = harmonic_system(1.0)
    N = int(40 * T)
    sol = solve_bvp(sys_, par, (T, N), CBVP([1.0], [0.5]), morse=True)
    assert sol.morse_index == math.floor(T / math.pi)
    assert int(conjugate_points(sys_, par, TimeGrid(T, N), [1.0], sol.p0[0])[0]) == sol.morse_index
    # exact solution q = a cos t + b sin t
    b = (0.5 - math.cos(T)) / math.sin(T)
    assert sol.p0[0, 0] == pytest.approx(b, rel=1e-3)


def test_action_descent_fails_with_saddle_error_past_the_conjugate_point():
    sys_, par = harmonic_system(1.0)
    sol = solve_bvp(sys_, par, (2.0, 40), CBVP([1.0], [0.5]), method="gradient-flow")
    assert sol.morse_index == 0
    with pytest.raises(glep.SaddleError, match="saddle"):
        solve_bvp(sys_, par, (4.0, 80), CBVP([1.0], [0.5]), method="gradient-flow")


def _bratu_errors(degree, Ns):
    sys_, par = bratu_system(1.0)
    y, _, _, th = bratu_exact(1.0)
    l2, nodal = [], []
    for N in Ns:
        sol = solve_bvp(sys_, par, (1.0, N), ZERO, degree=degree, quadrature="gauss")
        u = sol.fe.function
        t = ufl.SpatialCoordinate(u.function_space.mesh)[0]
        form = fem.form((u[0] - bratu_exact_ufl(th, t)) ** 2 * ufl.dx(metadata={"quadrature_degree": 12}))
        l2.append(math.sqrt(u.function_space.mesh.comm.allreduce(fem.assemble_scalar(form))))
        vert = np.isclose(sol.times * N, np.round(sol.times * N))
        nodal.append(np.max(np.abs(sol.q[vert, 0, 0] - y(sol.times[vert]))))
    h = 1.0 / np.asarray(Ns)
    return np.polyfit(np.log(h), np.log(l2), 1)[0], np.polyfit(np.log(h), np.log(nodal), 1)[0]


@pytest.mark.parametrize("degree", [1, 2])
def test_h_convergence(degree):
    s_l2, s_nodal = _bratu_errors(degree, [8, 16, 32, 64])
    assert s_l2 == pytest.approx(degree + 1, abs=0.1)  # L² error O(h^{p+1})
    assert s_nodal == pytest.approx(2 * degree, abs=0.1)  # nodal superconvergence O(h^{2p})


def test_pendulum_reference_below_the_first_conjugate_point():
    """ωT < π: one solution, a minimum; the SciPy shooting reference and the FE solution agree."""
    from glep.reference import pendulum_cbvp_reference, pendulum_system

    ref = pendulum_cbvp_reference(1.0, 2.0, 0.3, -0.5, scan=201)
    assert len(ref) == 1 and ref[0][1] == 0
    sys_, par = pendulum_system(1.0)
    sol = solve_bvp(sys_, par, (2.0, 16), CBVP([0.3], [-0.5]), degree=3, quadrature="gauss", morse=True)
    assert sol.morse_index == 0
    assert sol.p0[0, 0] == pytest.approx(ref[0][0], rel=1e-7)
