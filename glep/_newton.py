r"""One small dense Newton for the per-step implicit solves (batched).

Solves ``F(x) = 0`` for a batch of small independent systems (a variational
step ``D₁L_d(q₀, q₁) + p₀ = 0`` for ``q₁``, the Legendre map ``∂_vL(q, v) = p``
for ``v``) with the exact Jacobian, supplied as a solve ``δx = J(x)⁻¹ r``:

    x ← x − J(x)⁻¹ F(x).

It stops when the residual is within its tolerance (:func:`residual_test`),
or when the Newton correction falls to the rounding of ``x``
(``‖δx‖_∞ ≤ round_off · (1 + ‖x‖_∞)``, ``round_off ≈ 4.5 ε``): the round-off
floor, where nothing more can be gained in floating point.  Otherwise (too many
iterations, a non-finite residual) it raises :class:`~glep.errors.SolverError`
naming the residual and carrying the history.

The outer Newton of shooting (:mod:`glep.ivp.shooting`) is of a different
kind — a damped Newton on the whole shooting map, with a line search and a
measured noise floor of a residual accumulated over many steps — and stays
separate; problems living in PETSc use SNES.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from glep.errors import SolverError

#: a Newton correction below this multiple of ``1 + ‖x‖_∞`` is at the rounding of ``x``
ROUND_OFF = 1e-15


def residual_test(rtol: float, reference) -> Callable[[np.ndarray], bool]:
    r"""``max|F| ≤ rtol (1 + max|reference|)``.

    For complex data (complex-step nudging) the real and imaginary parts are
    tested separately: the imaginary part carries an ``O(β)`` perturbation that
    a tolerance on the whole residual cannot resolve, so it is measured against
    ``max|Im other| + max|Im reference|`` (``other``: the other summand of ``F``,
    passed to the test by :func:`dense_newton` from the residual's evaluation, or ``None``).
    """
    reference = np.asarray(reference)
    # the reference's scales, once (the test runs at every Newton iteration)
    tol = rtol * (1.0 + float(np.abs(reference).max(initial=0.0)))
    real_tol = rtol * (1.0 + float(np.abs(np.real(reference)).max(initial=0.0)))
    ref_imag = float(np.abs(np.imag(reference)).max(initial=0.0))

    def test(r, other=None) -> bool:
        if not np.iscomplexobj(r):
            return float(np.abs(r).max()) <= tol
        re_ok = float(np.abs(r.real).max()) <= real_tol
        im_terms = 0.0 if other is None else float(np.abs(np.imag(other)).max())
        return re_ok and float(np.abs(r.imag).max()) <= rtol * (im_terms + ref_imag)

    return test


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
        ``(r, other) ↦ bool``, e.g. :func:`residual_test`.
    maxiter, label:
        Iteration limit; what is solved (for the error message).

    Returns
    -------
    numpy.ndarray
        The solution ``x``.

    Raises
    ------
    SolverError
        No convergence in ``maxiter`` iterations or a non-finite residual;
        ``.history`` holds ``max|F|`` per iteration.
    """
    x = np.array(x0, copy=True)
    history: list[float] = []
    dx = np.zeros_like(x)
    for _ in range(maxiter):
        r, other = residual(x)
        norm = float(np.abs(r).max())
        history.append(norm)
        if not np.isfinite(norm):
            raise SolverError(f"{label} did not converge: the residual is not finite", reason="Newton", history=history)
        if converged(r, other):
            return x
        dx = solve(x, r)
        x = x - dx
        if float(np.abs(dx).max()) <= ROUND_OFF * (1.0 + float(np.abs(x).max())):
            return x  # the correction is at the rounding of x: the round-off floor
    step, floor = float(np.max(np.abs(dx))), ROUND_OFF * (1.0 + float(np.max(np.abs(x))))
    raise SolverError(f"{label} did not converge in {maxiter} Newton iterations (max|F| = {history[-1]:.3e}; "
                      f"last correction {step:.3e}, above the rounding of x, {floor:.3e})", reason="Newton",
                      history=history)
