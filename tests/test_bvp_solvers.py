"""Solvers of the bvp backend: action-gradient flow, residual descent, deflation, inertia."""

from __future__ import annotations

import numpy as np
import pytest

import glep
from glep import CBVP
from glep.bvp import make_discretisation, solve_bvp
from glep.reference import bratu_exact, bratu_system

ZERO = CBVP([0.0], [0.0])


@pytest.mark.parametrize("metric", ["L2", "H1"])
def test_gradient_flow_slides_off_the_upper_branch(metric):
    """Action descent started next to the index-1 solution ends at the minimum (lower branch)."""
    sys_, par = bratu_system(2.0)
    y, *_ = bratu_exact(2.0, "upper")
    sol = solve_bvp(sys_, par, (1.0, 32), ZERO, method="gradient-flow", metric=metric,
                    guess=lambda t: 0.9 * y(t)[None])
    assert sol.morse_index == 0
    assert sol.p0[0, 0] == pytest.approx(1.24821751776, rel=1e-3)
    # the action decreased from the start
    disc = make_discretisation(sys_, par, (1.0, 32))
    disc.u.interpolate(lambda X: 0.9 * y(X[0])[None])
    assert sol.action < disc.action()


def test_newton_converges_to_the_saddle_from_nearby():
    sys_, par = bratu_system(2.0)
    y, yp0, *_ = bratu_exact(2.0, "upper")
    sol = solve_bvp(sys_, par, (1.0, 32), ZERO, guess=lambda t: 0.9 * y(t)[None], morse=True,
                    degree=2, quadrature="gauss")
    assert sol.morse_index == 1
    assert sol.p0[0, 0] == pytest.approx(yp0, rel=1e-6)


# Perturbed user guesses: the search must not hinge on one chaotic deflated iteration.
BRATU_GUESSES = {
    "straight line": None,
    "+0.3 sin": lambda t: 0.3 * np.sin(np.pi * t)[None],
    "-0.3 sin": lambda t: -0.3 * np.sin(np.pi * t)[None],
    "0.5 sin 2": lambda t: 0.5 * np.sin(2 * np.pi * t)[None],
    "t(1-t)": lambda t: (0.8 * t * (1 - t))[None],
    "-1 sin 3": lambda t: -1.0 * np.sin(3 * np.pi * t)[None],
}


@pytest.mark.parametrize("name", sorted(BRATU_GUESSES, key=str))
def test_deflation_finds_both_bratu_branches(name):
    sys_, par = bratu_system(2.0)
    guess = BRATU_GUESSES[name]
    low = solve_bvp(sys_, par, (1.0, 32), ZERO, morse=True)
    up = solve_bvp(sys_, par, (1.0, 32), ZERO, method="deflation", known=[low], morse=True, guess=guess)
    assert low.morse_index == 0 and up.morse_index == 1
    # P1 + GLL on 32 elements: p(0) within O(h²) of the exact values
    h2 = (1.0 / 32) ** 2
    assert low.p0[0, 0] == pytest.approx(bratu_exact(2.0, "lower")[1], rel=h2)
    assert up.p0[0, 0] == pytest.approx(bratu_exact(2.0, "upper")[1], rel=2 * h2)
    with pytest.raises(glep.SolverError, match="deflation found no solution besides the 2 known"):
        solve_bvp(sys_, par, (1.0, 32), ZERO, method="deflation", known=[low, up], max_it=30, guess=guess)


def test_residual_descent_from_a_poor_guess():
    """Newton (bt line search) fails from a tall bump; Levenberg–Marquardt descent on ½‖F‖² succeeds."""
    sys_, par = bratu_system(2.0)
    guess = lambda t: 15.0 * np.sin(np.pi * t)[None]  # noqa: E731
    with pytest.raises(glep.SolverError):
        solve_bvp(sys_, par, (1.0, 32), ZERO, guess=guess)
    sol = solve_bvp(sys_, par, (1.0, 32), ZERO, method="residual-descent", guess=guess, morse=True)
    ref = solve_bvp(sys_, par, (1.0, 32), ZERO, guess=lambda t: 3.0 * np.sin(np.pi * t)[None])
    assert sol.morse_index == 1  # the saddle: unreachable by action descent
    assert np.max(np.abs(sol.q - ref.q)) < 1e-9


def test_trust_region_runs():
    sys_, par = bratu_system(2.0)
    sol = solve_bvp(sys_, par, (1.0, 32), ZERO, method="trust-region")
    assert sol.p0[0, 0] == pytest.approx(1.2482, rel=1e-3)


def test_newton_keeps_its_factorisation_between_solves():
    """A second solve of the same problem reuses the Jacobian matrix and the SNES (symbolic LU once);
    a different linear solver, a failed solve or ``release_solver`` drops them."""
    from glep.bvp import ReducedProblem, solve_problem

    sys_, par = bratu_system(2.0)
    y, yp0, *_ = bratu_exact(2.0, "upper")
    problem = ReducedProblem(make_discretisation(sys_, par, (1.0, 32), degree=2, quadrature="gauss"), ZERO)
    lower = solve_problem(problem)
    cache = problem._newton_cache
    assert cache is not None
    upper = solve_problem(problem, lambda t: 0.9 * y(t)[None])  # a different solution, same matrix
    assert problem._newton_cache["J"] is cache["J"] and problem._newton_cache["snes"] is cache["snes"]
    assert upper.p0[0, 0] == pytest.approx(yp0, rel=1e-6)
    assert lower.p0[0, 0] == pytest.approx(bratu_exact(2.0, "lower")[1], rel=1e-6)
    solve_problem(problem, lu_solver="petsc")
    assert problem._newton_cache["J"] is not cache["J"]
    with pytest.raises(glep.SolverError):
        solve_problem(problem, lambda t: 40.0 * np.sin(np.pi * t)[None], max_it=1, linesearch="basic")
    assert problem._newton_cache is None
    solve_problem(problem)
    problem.release_solver()
    assert problem._newton_cache is None


def test_solved_problems_and_their_systems_are_collected():
    """The kept SNES and the compiled-form cache hold no strong cycle: a solved problem, its mesh
    (and communicator) and its system are freed once unreferenced."""
    import gc
    import weakref

    from glep.bvp import ReducedProblem, solve_problem

    sys_, par = bratu_system(2.0)
    problem = ReducedProblem(make_discretisation(sys_, par, (1.0, 16), degree=2, quadrature="gauss"), ZERO)
    solve_problem(problem)
    assert problem._newton_cache is not None
    refs = [weakref.ref(problem), weakref.ref(problem.disc.mesh), weakref.ref(sys_)]
    del problem, sys_
    gc.collect()
    assert all(r() is None for r in refs)


def test_gradient_flow_reports_a_failed_pseudo_time_step():
    """A PETSc failure inside the TS is a SolverError naming the TS reason, not swallowed."""
    sys_, par = bratu_system(2.0)
    opts = {"snes_max_it": 1, "snes_linesearch_type": "basic", "ts_max_snes_failures": 1,
            "ts_pseudo_increment": 1e6, "ts_time_step": 1e4}
    with pytest.raises(glep.SolverError, match="action-gradient flow .* failed after 0 pseudo-time steps: "
                                               "DIVERGED_NONLINEAR_SOLVE"):
        solve_bvp(sys_, par, (1.0, 16), ZERO, method="gradient-flow", options=opts)


@pytest.mark.parametrize("linesearch", ["bt", "basic"])
@pytest.mark.parametrize("n_el", [64, 4096])
def test_newton_converges_at_the_round_off_floor(n_el, linesearch):
    """Tolerances below the residual's round-off floor (ε‖J‖‖r‖√dim) end as CONVERGED_ROUNDOFF within a few
    iterations of quadratic convergence, not at max_it: the floor is scaled to the problem (‖J‖ ~ 1/h)."""
    sys_, par = bratu_system(2.0)
    sol = solve_bvp(sys_, par, (1.0, n_el), ZERO, rtol=0.0, atol=1e-300, stol=0.0, max_it=40,
                    linesearch=linesearch)
    assert sol.report.reason == "CONVERGED_ROUNDOFF"
    assert sol.report.iterations <= 8
    ref = solve_bvp(sys_, par, (1.0, n_el), ZERO)
    assert np.max(np.abs(sol.q - ref.q)) < 1e-10
    # a solve that cannot reach the floor still fails with the SNES reason
    with pytest.raises(glep.SolverError, match="DIVERGED_MAX_IT"):
        solve_bvp(sys_, par, (1.0, n_el), ZERO, guess=lambda t: 3.0 * np.sin(np.pi * t)[None], max_it=1)
