r"""Time stepping of a discrete Lagrangian in position–momentum form.

Given ``(q_k, p_k)`` a step solves ``p_k = −D₁L_d(q_k, q_{k+1})`` for
``q_{k+1}`` and sets ``p_{k+1} = D₂L_d(q_k, q_{k+1})``.  For a separable system
with the trapezoid rule this is Störmer–Verlet and is explicit (one force
evaluation per step); otherwise ``q_{k+1}`` comes from the small dense Newton
(:func:`glep._newton.dense_newton`) with the exact Jacobian ``D₁₂L_d``.
"""

from __future__ import annotations

import numpy as np

from glep._newton import dense_newton, residual_test
from glep.errors import SolverError


def explicit_step(dl, k, q0, p0, F0):
    """One Störmer–Verlet step; returns ``(q₁, p₁, F₁)`` (``F`` = force at the node)."""
    h = dl.h
    vbar = dl.mass_solve(p0 + 0.5 * h * F0)
    q1 = q0 + h * vbar
    F1 = dl.force(k, 1, q1)
    p1 = dl.mass_apply(vbar) + 0.5 * h * F1
    return q1, p1, F1


def implicit_step(dl, k, q0, p0, guess, *, rtol: float = 1e-13, maxiter: int = 40):
    """Solve ``D₁L_d(q₀, q₁) + p₀ = 0`` for ``q₁`` by the dense Newton of :mod:`glep._newton`
    (Jacobian ``D₁₂L_d``, the step's equations from ``dl.step_equations``); returns ``(q₁, p₁)`` with
    ``p₁ = D₂L_d(q₀, q₁)``."""
    momenta, solve = dl.step_equations(k, q0)
    last = [None, None]  # the last iterate evaluated and its D₂L_d: p₁ without another evaluation

    def residual(q1):
        d1, last[1] = momenta(q1)
        last[0] = q1
        return d1 + p0, d1

    q1 = dense_newton(residual, solve, guess, converged=residual_test(rtol, p0), maxiter=maxiter,
                      label=f"implicit variational step {k}")
    return q1, last[1] if last[0] is q1 else momenta(q1)[1]


def _in_place_loop(force, q, p, F, h: float, N: int, m=None, Q=None, P=None):
    """``N`` Störmer–Verlet steps with a diagonal mass ``m`` (``None``: ``M = I``) in place on ``q`` and ``p``
    (owned by the caller), writing ``q_k`` into ``Q[k]`` and ``p_k`` into ``P[k]`` when given (``k ≥ 1``):

        v̄ = (p + (h/2)F)/m,   q ← q + h v̄,   F ← F(q),   p ← m v̄ + (h/2)F,

    the operations of :func:`explicit_step` with the kernels of :class:`glep.kinetic.DiagonalMass`, in the
    same order (the same values bit for bit), into preallocated buffers.  Returns the final ``(q, p)``.
    """
    hh = 0.5 * h
    vbar, tmp = np.empty_like(q), np.empty_like(q)
    mv = None if m is None else np.empty_like(q)
    mul, add, div, isfinite = np.multiply, np.add, np.divide, np.isfinite
    for k in range(N):
        mul(hh, F, tmp)
        if m is None:
            add(p, tmp, vbar)
        else:
            add(p, tmp, tmp)
            div(tmp, m, vbar)
        mul(h, vbar, tmp)
        add(q, tmp, q)
        F = force(k + 1, q)
        mul(hh, F, tmp)
        if m is None:
            add(vbar, tmp, p)
        else:
            mul(m, vbar, mv)
            add(mv, tmp, p)
        if Q is not None:
            Q[k + 1] = q
        if P is not None:
            P[k + 1] = p
        if k & 63 == 63 and not isfinite(q).all():
            return q, p, k + 1
    return q, p, N


def _diagonal_mass(kinetic, solve, apply, q):
    """The diagonal of ``M`` when ``kinetic`` is a :class:`glep.kinetic.DiagonalMass` whose kernels
    ``(solve, apply)`` are ``p/m`` and ``m v`` (``M·1 = m`` exactly), in ``q``'s dtype; else ``None``."""
    from glep.kinetic import DiagonalMass

    if solve is apply or type(kinetic) is not DiagonalMass:
        return None
    m = np.asarray(apply(np.ones(q.shape[-1], q.dtype)))
    return m if m.shape == q.shape[-1:] and np.result_type(m, q) == q.dtype else None


def integrate(dl, q0, p0, *, store: bool | str = True, callback=None, activations: dict | None = None):
    """Integrate ``N`` steps from ``(q₀, p₀)``.

    Returns ``(Q, P)`` of shape ``(N+1, B, n)``; with ``store="q"`` only the
    positions are kept (``(Q, p_N)``), and with ``store=False`` only the final
    state ``(q_N, p_N)``.  An explicit discrete Lagrangian with ``backend="jax"``
    runs the compiled loop of :mod:`glep.ivp.compiled` (without a ``callback``).

    ``activations``: a dict that an explicit NumPy pass fills with the node
    activations its force kernels compute anyway (``{term index: a_i(q_j)}``,
    ``(N+1, B, k_i)``, e.g. ``tanh(Wq_j + b)`` of :class:`glep.LogCoshLayer`;
    :meth:`~glep.ivp.discrete.DiscreteLagrangian.activation_buffers`), for the
    contrast :meth:`~glep.ivp.discrete.DiscreteLagrangian.theta_gradient_sum`
    along ``Q`` to reuse; left empty on the other paths.
    """
    if getattr(dl, "backend", "numpy") == "jax" and dl.explicit and callback is None:
        from glep.ivp import compiled

        return compiled.integrate(dl, q0, p0, store=store)
    N = dl.N
    dtype = np.result_type(q0, p0, dl.beta)
    q = np.array(q0, dtype=dtype)
    p = np.array(p0, dtype=dtype)
    Q = np.empty((N + 1,) + q.shape, dtype) if store else None
    P = np.empty((N + 1,) + q.shape, dtype) if store is True else None

    def record(k, q, p):
        if Q is not None:
            Q[k] = q
        if P is not None:
            P[k] = p
        if callback is not None and k > 0:
            callback(k - 1)

    record(0, q, p)
    if dl.explicit:
        buffers = getattr(dl, "activation_buffers", None) if activations is not None else None
        acts = buffers(q.shape[:-1], dtype) if buffers is not None else None
        force, (solve, apply), h = dl.node_force(acts), dl.mass_kernels(), dl.h
        hh = 0.5 * h
        F = force(0, q)
        plain = Q is None and callback is None  # nothing to record per step
        # unit or diagonal masses and no callback: in place, on buffers, writing into Q and P (glep.kinetic
        # returns its identity for both kernels of unit masses)
        if callback is None and F.shape == q.shape and F.dtype == dtype:
            m = _diagonal_mass(dl.system.kinetic, solve, apply, q)
            if solve is apply or m is not None:
                q, p, done = _in_place_loop(force, q, p, F, h, N, m, Q, P)
                if done < N and Q is not None:  # stopped early: non-finite; the rest is not integrated
                    Q[done + 1:] = np.nan
                N = 0
        for k in range(N):  # explicit_step with the prepared kernels: the same operations, in order
            vbar = solve(p + hh * F)
            q = q + h * vbar
            F = force(k + 1, q)
            p = apply(vbar) + hh * F
            if not plain:
                record(k + 1, q, p)
            if k & 63 == 63 and not np.isfinite(q).all():
                break
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(p))):
            where = "" if Q is None else \
                f" at step {int(np.argmax(~np.isfinite(Q).reshape(len(Q), -1).all(1)))}"
            raise SolverError(f"trajectory became non-finite{where}; reduce the step size", reason="overflow")
        if acts:
            activations.update(acts)
    else:
        qprev = q
        for k in range(N):
            guess = 2 * q - qprev if k > 0 else q
            qprev = q
            q, p = implicit_step(dl, k, q, p, guess)
            record(k + 1, q, p)
    if Q is None:
        return q, p
    return (Q, P) if P is not None else (Q, p)
