"""Honest Morse indices: the harmonic oscillator CBVP at and near resonance.

For ``L = ½q'² − ½ω²q²`` with both ends fixed the Jacobi operator ``−d²/dt² − ω²``
has eigenvalues ``μ_j = (jπ/T)² − ω²``; the Morse index is ``⌊ωT/π⌋`` and the
Hessian is singular exactly when ``ωT/π`` is an integer (a conjugate point at ``T``).
"""

from __future__ import annotations

import math

import pytest

import glep
from glep import CBVP
from glep.bvp import solve_bvp
from glep.reference import harmonic_system

SINGULAR = "ambiguous because a conjugate point lies at or near the boundary"


def _solve(T, degree=1, per_unit=40, **kw):
    system, params = harmonic_system(1.0)
    N = int(per_unit * T)
    return solve_bvp(system, params, (T, N), CBVP([1.0], [0.5]), morse=True, degree=degree,
                     quadrature="gll" if degree == 1 else "gauss", **kw)


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("degree", [1, 2])
def test_resonance_is_reported_as_ambiguous(k, degree):
    with pytest.raises(glep.SingularHessianError, match=SINGULAR) as info:
        _solve(k * math.pi, degree)
    err = info.value
    assert isinstance(err, glep.SolverError)  # existing ``except SolverError`` still catches it
    assert abs(err.min_eigenvalue) <= err.tolerance
    if degree == 1:
        # the discrete eigenvalue is the discretisation error of the exact 0; the tolerance (4× its
        # estimate, bvp.solvers.default_singular_tol) is sharp to within that factor and 2.  (For P2 the
        # error ~ 5e-10 is below the round-off floor 10² ε |λ_max| of the tolerance.)
        assert err.tolerance / 8 <= abs(err.min_eigenvalue)
    assert err.index in (k - 1, k)  # the count itself: which one depends on the discretisation


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("offset", [-0.02, 0.02])
def test_near_resonance_gives_the_index_and_a_small_eigenvalue(k, offset):
    T = (k + offset) * math.pi
    mu = (k * math.pi / T) ** 2 - 1.0  # the Jacobi eigenvalue nearest to zero
    for degree in (1, 2):
        sol = _solve(T, degree)
        assert sol.morse_index == math.floor(T / math.pi)
        # λ_min approximates μ_k within the discretisation error estimate used as the tolerance
        assert abs(sol.fe.hessian.min_eigenvalue - mu) < sol.fe.hessian.tolerance
        assert abs(sol.fe.hessian.min_eigenvalue) > sol.fe.hessian.tolerance
        ratio = abs(sol.fe.hessian.min_eigenvalue / sol.fe.hessian.max_eigenvalue)
        assert sol.fe.hessian.ratio == pytest.approx(ratio)
        assert 0.0 < sol.fe.hessian.ratio < 1e-3


def test_the_tolerance_is_user_settable_and_checked():
    # a tolerance below the discrete eigenvalue returns the (discretisation-dependent) index
    sol = _solve(2 * math.pi, 1, singular_tol=1e-9)
    assert sol.morse_index in (1, 2) and sol.fe.hessian.tolerance == 1e-9
    # far from resonance a large tolerance makes any index ambiguous
    with pytest.raises(glep.SingularHessianError, match=SINGULAR):
        _solve(2.0, 1, singular_tol=10.0)
    with pytest.raises(glep.InputError, match="singular_tol must be a finite number"):
        _solve(2.0, 1, singular_tol=-1.0)


def test_gradient_flow_and_morse_report_agree():
    system, params = harmonic_system(1.0)
    sol = solve_bvp(system, params, (2.0, 80), CBVP([1.0], [0.5]), method="gradient-flow")
    assert sol.morse_index == 0
    assert sol.fe.hessian.min_eigenvalue == pytest.approx((math.pi / 2.0) ** 2 - 1.0, rel=1e-3)
