"""Deflation enumerates every solution of a fixed-end pendulum from one straight-line guess.

The reference set is established independently of the finite-element backend
(:func:`glep.reference.pendulum_cbvp_reference`: a scan of 2001 initial slopes
with SciPy's DOP853 at ``rtol = 1e-12``, Brent's method on ``q(T; s) − b``, and the
Morse index as the number of zeros of the Jacobi field in ``(0, T)``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import glep
from glep import CBVP
from glep.bvp import find_solutions, solve_bvp
from glep.reference import bratu_exact, bratu_system, pendulum_cbvp_reference, pendulum_system

OMEGA, T, A, B = 1.0, 8.0, 0.3, -0.5  # generic ends (not symmetric): no degenerate solution
N, DEGREE = 30, 2  # P2 + Gauss: the discrete momentum p(0) converges as h^(2p) = h⁴


@pytest.fixture(scope="module")
def reference():
    ref = pendulum_cbvp_reference(OMEGA, T, A, B, scan=2001)
    assert len(ref) >= 5
    # non-degenerate: the Jacobi field y(T) (y(0) = 0, y'(0) = 1) is far from zero for each solution
    assert min(abs(yT) for _, _, yT in ref) > 0.5
    return ref


@pytest.fixture(scope="module")
def found():
    system, params = pendulum_system(OMEGA)
    return find_solutions(system, params, (T, N), CBVP([A], [B]), degree=DEGREE, quadrature="gauss")


def _nearest(ref, p0):
    return min(range(len(ref)), key=lambda i: abs(ref[i][0] - p0))


def test_pendulum_every_solution_with_its_morse_index(reference, found):
    assert len(found) == len(reference)  # nothing spurious, nothing missing
    matched = sorted(_nearest(reference, s.p0[0, 0]) for s in found)
    assert matched == list(range(len(reference)))  # a one-to-one match
    spacing = min(np.diff(sorted(r[0] for r in reference)))
    for sol in found:
        s, index, _ = reference[_nearest(reference, sol.p0[0, 0])]
        assert abs(sol.p0[0, 0] - s) < 1e-2 * spacing
        assert sol.morse_index == index
        assert sol.fe.hessian.ratio > 0 and abs(sol.fe.hessian.min_eigenvalue) > sol.fe.hessian.tolerance
    # sorted by action
    actions = [s.action for s in found]
    assert actions == sorted(actions)


#: perturbations of the straight-line guess (none of them one of the starts the search derives itself):
#: a rounding-level change, tilts of the interior, a bump and a coarser mesh must all give the same set
PERTURBED = {
    "rounding": (lambda t: 1e-12 * np.sin(3.0 * t), N),
    "tilt up": (lambda t: 0.05 * t * (T - t) / T**2, N),
    "tilt down": (lambda t: -0.05 * t * (T - t) / T**2, N),
    "bump": (lambda t: 0.2 * np.exp(-((t - 0.3 * T) ** 2)), N),
    "other mesh": (lambda t: 0.0 * t, N + 4),
}


@pytest.mark.parametrize("variant", sorted(PERTURBED))
def test_pendulum_set_is_the_same_from_perturbed_guesses(reference, variant):
    """Deflation must not hinge on one chaotic iteration: every perturbed start finds the whole reference set."""
    bump, n_el = PERTURBED[variant]
    system, params = pendulum_system(OMEGA)
    line = lambda t: (A + (B - A) * np.asarray(t) / T + bump(np.asarray(t)))[None]  # noqa: E731
    sols = find_solutions(system, params, (T, n_el), CBVP([A], [B]), guess=line, degree=DEGREE, quadrature="gauss")
    assert len(sols) == len(reference)
    assert sorted(_nearest(reference, s.p0[0, 0]) for s in sols) == list(range(len(reference)))
    assert [s.morse_index for s in sols] == [reference[_nearest(reference, s.p0[0, 0])][1] for s in sols]


def test_pendulum_solutions_converge_at_the_method_order(reference, found):
    """Each found solution is the discretisation of its reference: the p(0) error falls by 2^(2p) = 16
    when h is halved (Newton on the finer mesh from the coarse solution)."""
    system, params = pendulum_system(OMEGA)
    for sol in found:
        s = reference[_nearest(reference, sol.p0[0, 0])][0]
        fine = solve_bvp(system, params, (T, 2 * N), CBVP([A], [B]), degree=DEGREE, quadrature="gauss",
                         guess=lambda t, x=sol: np.interp(t, x.times, x.q[:, 0, 0])[None])
        order = math.log2(abs(sol.p0[0, 0] - s) / abs(fine.p0[0, 0] - s))
        assert order == pytest.approx(2 * DEGREE, abs=0.5)


def test_stopping_rules_and_bad_input():
    system, params = bratu_system(2.0)
    zero = CBVP([0.0], [0.0])
    one = find_solutions(system, params, (1.0, 16), zero, max_solutions=1)
    assert len(one) == 1
    both = find_solutions(system, params, (1.0, 16), zero)
    assert [s.morse_index for s in both] == [0, 1]  # sorted by action: the minimum first
    assert both[0].p0[0, 0] == pytest.approx(bratu_exact(2.0, "lower")[1], rel=1e-2)
    assert both.search.stopped_by == "exhausted" and both.search.attempts >= both.search.starts
    # the known solutions are excluded, also when the guess is one of them
    none = find_solutions(system, params, (1.0, 16), zero, known=both, guess=both[1])
    assert none == [] and none.search.failures
    assert find_solutions(system, params, (1.0, 16), zero, max_newton_iterations=1).search.stopped_by == (
        "max_newton_iterations")
    assert len(find_solutions(system, params, (1.0, 16), zero, max_attempts=1)) <= 1
    with pytest.raises(glep.InputError, match="max_solutions must be a positive integer"):
        find_solutions(system, params, (1.0, 16), zero, max_solutions=0)
    with pytest.raises(glep.InputError, match="amplitudes must be finite positive"):
        find_solutions(system, params, (1.0, 16), zero, amplitudes=(-1.0,))
    with pytest.raises(glep.InputError, match="deflation power"):
        find_solutions(system, params, (1.0, 16), zero, power=0.5)
    with pytest.raises(glep.InputError, match=r"unknown deflation option\(s\) \['linesearch'\]"):
        find_solutions(system, params, (1.0, 16), zero, linesearch="bt")
    with pytest.raises(glep.InputError, match="on_singular must be"):
        find_solutions(system, params, (1.0, 16), zero, on_singular="warn")


def test_shooting_starts_complete_the_set(reference):
    """The straight line alone reaches only part of the set; Störmer–Verlet shooting from a scan of
    initial momenta supplies starts in every basin."""
    system, params = pendulum_system(OMEGA)
    kw = dict(degree=DEGREE, quadrature="gauss", modes=())
    alone = find_solutions(system, params, (T, N), CBVP([A], [B]), **kw)
    assert 0 < len(alone) < len(reference)
    scan = np.linspace(-2.0, 2.0, 41)  # initial slopes; the separatrix is at ±2 cos(a/2) = ±1.9775
    shot = find_solutions(system, params, (T, N), CBVP([A], [B]), shooting_momenta=scan, **kw)
    assert sorted(s.morse_index for s in shot) == sorted(r[1] for r in reference)
    assert sorted(_nearest(reference, s.p0[0, 0]) for s in shot) == list(range(len(reference)))
    with pytest.raises(glep.InputError, match="shooting starts need a CBVP"):
        find_solutions(system, params, (T, N), glep.DirichletNatural([A]), shooting_momenta=[0.0], morse=False)


def test_known_solutions_from_another_mesh_are_excluded():
    """A known solution computed on another discretisation (P2 + Gauss, another mesh object) is
    accepted (interpolated and polished onto this P1 mesh) and excluded: only the other branch is new."""
    system, params = bratu_system(2.0)
    zero = CBVP([0.0], [0.0])
    lower = solve_bvp(system, params, (1.0, 8), zero, degree=2, quadrature="gauss")
    others = find_solutions(system, params, (1.0, 16), zero, known=[lower])
    assert [s.morse_index for s in others] == [1]
    assert others[0].p0[0, 0] == pytest.approx(bratu_exact(2.0, "upper")[1], rel=1e-2)
