r"""One small dense Newton for the per-step implicit solves (batched).

Solves ``F(x) = 0`` for a batch of small independent systems (a variational
step ``D₁L_d(q₀, q₁) + p₀ = 0`` for ``q₁``, the Legendre map ``∂_vL(q, v) = p``
for ``v``) with the exact Jacobian, supplied as a solve ``δx = J(x)⁻¹ r``:

    x ← x − J(x)⁻¹ F(x).

It stops when the residual is within its tolerance (:func:`residual_test`),
or when the Newton correction falls to the rounding of ``x``
(``‖δx‖_∞ ≤ round_off · (1 + ‖x‖_∞)``, ``round_off ≈ 4.5 ε``): the round-off
floor, where nothing more can be gained in floating point.  Otherwise (too many
iterations, a non-finite residual, a singular Jacobian) it raises :class:`~glep.errors.SolverError`
naming the residual and carrying the history.

The outer Newton of shooting (:mod:`glep.ivp.shooting`) is of a different
kind — a damped Newton on the whole shooting map, with a line search and a
measured noise floor of a residual accumulated over many steps — and stays
separate; problems living in PETSc use SNES.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

from glep.errors import SolverError

#: a Newton correction below this multiple of ``1 + ‖x‖_∞`` is at the rounding of ``x``
ROUND_OFF = 1e-15


def _max_abs(a: np.ndarray) -> float:
    """``max|a|`` (0 for an empty array)."""
    return float(abs(a).max()) if a.size else 0.0


def residual_test(rtol: float, reference) -> Callable[[np.ndarray], bool]:
    r"""``max|F| ≤ rtol (1 + max|reference|)``.

    For complex data (complex-step nudging) the real and imaginary parts are
    tested separately: the imaginary part carries an ``O(β)`` perturbation that
    a tolerance on the whole residual cannot resolve, so it is measured against
    ``max|Im other| + max|Im reference|`` (``other``: the other summand of ``F``,
    passed to the test by :func:`dense_newton` from the residual's evaluation, or ``None``).  ``norm``:
    ``max|F|`` when the caller has it already.
    """
    reference = np.asarray(reference)
    # the reference's scales, once (the test runs at every Newton iteration)
    tol = rtol * (1.0 + _max_abs(reference))
    if not np.iscomplexobj(reference):
        real_tol, ref_imag = tol, 0.0
    else:
        real_tol, ref_imag = rtol * (1.0 + _max_abs(reference.real)), _max_abs(reference.imag)

    def test(r, other=None, norm: float | None = None) -> bool:
        if not np.iscomplexobj(r):
            return (float(np.abs(r).max()) if norm is None else norm) <= tol
        re_ok = float(np.abs(r.real).max()) <= real_tol
        im_terms = 0.0 if other is None else float(np.abs(np.imag(other)).max())
        return re_ok and float(np.abs(r.imag).max()) <= rtol * (im_terms + ref_imag)

    return test


@functools.cache
def _gesv(char: str):
    """LAPACK's ``gesv`` (LU with partial pivoting, then the two triangular solves) for float64 (``"d"``) and
    complex128 (``"D"``), else ``None`` (scipy.linalg loaded on first use)."""
    if char not in "dD":
        return None
    from scipy.linalg import lapack

    return lapack.dgesv if char == "d" else lapack.zgesv


def dense_solve(J: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    r"""``x = J⁻¹ rhs`` per batch member: ``J`` of shape ``(B, n, n)``, ``rhs`` ``(…, B, n)``.

    NumPy's batched ``solve``; a single system (``B = 1``, one right-hand side, both float64 or both
    complex128) goes to LAPACK's ``gesv`` directly — the same factorisation, without the gufunc's set-up,
    which dominates at the sizes of one implicit step.  A singular ``J`` raises
    :class:`numpy.linalg.LinAlgError` either way.
    """
    one = J.shape[0] == 1 and rhs.shape[:-1] == (1,) and rhs.dtype == J.dtype
    gesv = _gesv(J.dtype.char) if one else None
    if gesv is not None:
        _, _, x, info = gesv(J[0], rhs[0])
        if info > 0:
            raise np.linalg.LinAlgError("Singular matrix")
        return x[None]
    return np.linalg.solve(J, rhs[..., None])[..., 0]


def dense_newton(residual: Callable, solve: Callable, x0: np.ndarray, *, converged: Callable, maxiter: int,
                 label: str) -> np.ndarray:
    r"""Newton's method on a batch of small dense systems.

    Arguments
    ---------
    residual:
        ``x ↦ (F(x), other)``: the residual, shape like ``x`` (``(B, n)``), and
        the summand passed on to ``converged`` (or ``None``).
    solve:
        ``(x, r) ↦ J(x)⁻¹ r`` with the exact Jacobian (batched).
    x0:
        Starting point (copied).
    converged:
        ``(r, other, max|r|) ↦ bool``, e.g. :func:`residual_test`.
    maxiter, label:
        Iteration limit; what is solved (for the error message).

    Returns
    -------
    numpy.ndarray
        The solution ``x``.

    Raises
    ------
    SolverError
        No convergence in ``maxiter`` iterations, a non-finite residual or a singular Jacobian;
        ``.history`` holds ``max|F|`` per iteration.
    """
    x = np.array(x0, copy=True)
    history: list[float] = []
    dx = np.zeros_like(x)
    bound = _max_abs(x)  # an upper bound of max|x| (exact where the round-off test needs it)
    for _ in range(maxiter):
        r, other = residual(x)
        norm = float(abs(r).max())
        history.append(norm)
        if not math.isfinite(norm):
            raise SolverError(f"{label} did not converge: the residual is not finite", reason="Newton", history=history)
        if converged(r, other, norm):
            return x
        try:
            dx = solve(x, r)
        except np.linalg.LinAlgError as exc:
            raise SolverError(f"{label}: the Jacobian is singular ({exc})", reason="singular Jacobian",
                              history=history) from None
        x = x - dx
        step = float(abs(dx).max())
        bound += step  # max|x − δx| ≤ max|x| + max|δx|
        if step <= ROUND_OFF * (1.0 + bound):  # only then can it be at the rounding of x: test exactly
            bound = _max_abs(x)
            if step <= ROUND_OFF * (1.0 + bound):
                return x  # the correction is at the rounding of x: the round-off floor
    step, floor = float(np.max(np.abs(dx))), ROUND_OFF * (1.0 + float(np.max(np.abs(x))))
    raise SolverError(f"{label} did not converge in {maxiter} Newton iterations (max|F| = {history[-1]:.3e}; "
                      f"last correction {step:.3e}, above the rounding of x, {floor:.3e})", reason="Newton",
                      history=history)
