"""The small dense Newton of the implicit steps (:mod:`glep._newton`) against NumPy's own solve.

``dense_solve`` sends a single real or complex system to LAPACK's ``gesv`` directly and everything else to
NumPy's batched ``solve``: both are LU with partial pivoting, so they must agree to a backward-stable bound
(``n ε ‖J‖ ‖x‖`` in the residual), and a singular Jacobian must stop the Newton with a ``SolverError`` that says
so, never a number.
"""

from __future__ import annotations

import numpy as np
import pytest

from glep._newton import ROUND_OFF, dense_newton, dense_solve, residual_test
from glep.errors import SolverError

EPS = np.finfo(float).eps


def _system(rng, B: int, n: int, complex_: bool):
    J = rng.standard_normal((B, n, n)) + n * np.eye(n)
    r = rng.standard_normal((B, n))
    if complex_:
        J = J + 1j * rng.standard_normal((B, n, n))
        r = r + 1j * rng.standard_normal((B, n))
    return J, r


@pytest.mark.parametrize("B", [1, 4])
@pytest.mark.parametrize("n", [1, 7, 32])
@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_dense_solve_solves(B, n, complex_, seed):
    J, r = _system(np.random.default_rng(seed), B, n, complex_)
    x = dense_solve(J, r)
    assert x.shape == r.shape and x.dtype == np.result_type(J, r)
    residual = np.einsum("bij,bj->bi", J, x) - r
    bound = 8 * n * EPS * np.abs(J).max() * np.abs(x).max()
    assert np.abs(residual).max() <= bound
    want = np.linalg.solve(J, r[..., None])[..., 0]
    assert np.abs(x - want).max() <= 8 * n * EPS * np.linalg.cond(J).max() * np.abs(want).max()


def test_dense_solve_mixed_dtypes_and_tangent_axes():
    """A real Jacobian with a complex right-hand side, right-hand sides with a leading tangent axis (the
    forward sensitivities) and one system with several right-hand sides take NumPy's broadcasting solve."""
    J, r = _system(np.random.default_rng(2), 1, 5, False)
    rc = r + 1j * r[::-1]
    x = dense_solve(J, rc)
    assert np.allclose(np.einsum("bij,bj->bi", J, x), rc, rtol=0, atol=64 * EPS * np.abs(rc).max())
    R = np.random.default_rng(3).standard_normal((3, 1, 5))
    X = dense_solve(J, R)
    assert X.shape == R.shape
    assert np.allclose(np.einsum("bij,tbj->tbi", J, X), R, rtol=0, atol=64 * EPS * np.abs(R).max())
    R2 = R[:, 0]  # one system, three right-hand sides as rows: J broadcast over them, not the first row only
    X2 = dense_solve(J, R2)
    assert X2.shape == R2.shape and np.allclose(X2, X[:, 0], rtol=0, atol=64 * EPS * np.abs(X).max())


@pytest.mark.parametrize("B", [1, 3])
def test_a_singular_jacobian_is_reported_not_a_number(B):
    """``F(x) = A x − b`` with ``A`` singular (rank n − 1): the Newton names the singular Jacobian."""
    n = 4
    A = np.broadcast_to(np.diag([1.0, 2.0, 3.0, 0.0]), (B, n, n))
    b = np.ones((B, n))

    def residual(x):
        return np.einsum("bij,bj->bi", A, x) - b, None

    with pytest.raises(SolverError, match="test system: the Jacobian is singular") as info:
        dense_newton(residual, lambda x, r: dense_solve(A.copy(), r), np.zeros((B, n)),
                     converged=residual_test(1e-13, b), maxiter=10, label="test system")
    assert info.value.reason == "singular Jacobian" and info.value.history == [1.0]


@pytest.mark.parametrize("complex_", [False, True])
def test_newton_converges_on_a_cubic(complex_):
    """``F(x) = x³ + x − c`` per entry (diagonal Jacobian ``3x² + 1``): the Newton reaches the residual test,
    and its answer satisfies the equation to the test's tolerance; real and complex (complex step) data."""
    rng = np.random.default_rng(4)
    c = rng.standard_normal((2, 6)) + (1e-20j * rng.standard_normal((2, 6)) if complex_ else 0.0)

    def residual(x):
        return x**3 + x - c, x**3 + x

    def solve(x, r):
        J = np.zeros(x.shape + x.shape[-1:], x.dtype)
        J[..., range(6), range(6)] = 3 * x * x + 1
        return dense_solve(J, r)

    x = dense_newton(residual, solve, np.zeros_like(c), converged=residual_test(1e-13, c), maxiter=40, label="cubic")
    assert np.abs((x**3 + x - c).real).max() <= 1e-13 * (1 + np.abs(c).max())
    if complex_:  # the imaginary part: the derivative of the real root along Im c, c.imag / (3x² + 1),
        # to what the test on the imaginary residual leaves: |Im F| ≤ 10⁻¹³(max|Im(x³ + x)| + max|Im c|)
        slope = 3 * x.real**2 + 1
        want = c.imag / slope
        allowed = 1e-13 * (np.abs((x**3 + x).imag).max() + np.abs(c.imag).max()) / slope
        assert np.all(np.abs(x.imag - want) <= allowed + 16 * EPS * np.abs(want))


def test_the_round_off_floor_ends_the_iteration():
    """With a tolerance of zero the residual test cannot pass (except on an exact root): the Newton stops when
    its correction is at the rounding of ``x``, at a root to a few ulp — not after ``maxiter`` iterations."""
    c = np.random.default_rng(5).standard_normal((3, 6)) * 10
    calls = []

    def residual(x):
        calls.append(1)
        return x**3 + x - c, None

    def solve(x, r):
        return r / (3 * x * x + 1)  # the diagonal Jacobian, solved directly

    x = dense_newton(residual, solve, np.zeros_like(c), converged=residual_test(0.0, c), maxiter=60, label="cubic")
    # at the floor the last correction was within ROUND_OFF(1 + max|x|); what the residual can hold then is that
    # step times the slope, plus the rounding of evaluating x³ + x − c
    allowed = (3 * x * x + 1) * 2 * ROUND_OFF * (1 + np.abs(x).max()) + 4 * EPS * (np.abs(x**3) + np.abs(x) + np.abs(c))
    assert np.all(np.abs(x**3 + x - c) <= allowed)
    assert len(calls) < 60
