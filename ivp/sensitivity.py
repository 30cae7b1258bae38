r"""Forward sensitivities ``∂_θ q_k``, ``d_θ p_k`` of a discrete trajectory.

Linearising a step ``p_k = −D₁L_d(q_k, q_{k+1}; θ)``, ``p_{k+1} =
D₂L_d(q_k, q_{k+1}; θ)`` along a tangent ``(δq, δp, δθ)`` gives

    δq_{k+1} = −D₁₂⁻¹ (δp_k + D₁₁ δq_k + ∂_θD₁ δθ),
    δp_{k+1} = D₂₁ δq_k + D₂₂ δq_{k+1} + ∂_θD₂ δθ.

Each tangent costs about one forward pass, so the ``P`` parameter tangents
the CIVP boundary residual needs cost ``∝ P`` — the reason the residual is
impractical and the echo is not.  Tangents are pushed in chunks of ``K`` at a
time (a leading axis on every array).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np


def parameter_directions(shapes: Mapping[str, tuple], chunk: int) -> Iterator[tuple[int, int, dict]]:
    """Yield ``(start, stop, dtheta)`` covering the flattened parameters in chunks.

    ``dtheta[name]`` has shape ``(K, *shape)`` and holds unit vectors for the
    flat indices ``start..stop-1`` (names not touched by the chunk are absent).
    """
    offsets, total = {}, 0
    for key, shape in shapes.items():
        size = int(np.prod(shape)) if shape else 1
        offsets[key] = (total, size, shape)
        total += size
    for start in range(0, total, chunk):
        stop = min(start + chunk, total)
        K = stop - start
        dtheta = {}
        for key, (off, size, shape) in offsets.items():
            lo, hi = max(start, off), min(stop, off + size)
            if lo >= hi:
                continue
            d = np.zeros((K, size))
            d[np.arange(lo - start, hi - start), np.arange(lo - off, hi - off)] = 1.0
            dtheta[key] = d.reshape((K,) + tuple(shape))
        yield start, stop, dtheta


def tangent_sweep(dl, Q, dq0, dp0, dtheta=None, *, store: bool = False):
    """Push tangents ``(δq₀, δp₀, δθ)`` (leading axis ``K``) along the stored trajectory ``Q``.

    Returns the final ``(δq_N, δp_N)``, or the whole histories of shape
    ``(N+1, K, B, n)`` when ``store`` is true.
    """
    if dl.explicit and not store and getattr(dl, "backend", "numpy") == "jax":
        from glep.ivp.compiled import tangent_sweep as compiled_sweep

        return compiled_sweep(dl, Q, dq0, dp0, dtheta)
    if dl.explicit:
        return _explicit_tangent_sweep(dl, Q, dq0, dp0, dtheta, store)
    dq, dp = dq0, dp0
    if store:
        DQ = np.empty((dl.N + 1,) + np.shape(dq), np.result_type(dq, dp, Q))
        DP = np.empty_like(DQ)
        DQ[0], DP[0] = dq, dp
    for k in range(dl.N):
        q0, q1 = Q[k], Q[k + 1]
        rhs = dp + dl.hessian_action(k, q0, q1, dq, None)[0]
        j1 = j2 = 0.0
        if dtheta:
            j1, j2 = dl.theta_jvp(k, q0, q1, dtheta)
            rhs = rhs + j1
        dq_next = -dl.solve_d12(k, q0, q1, rhs)
        dp = dl.hessian_action(k, q0, q1, dq, dq_next)[1] + j2
        dq = dq_next
        if store:
            DQ[k + 1], DP[k + 1] = dq, dp
    if store:
        return DQ, DP
    return dq, dp


def _explicit_tangent_sweep(dl, Q, dq0, dp0, dtheta, store):
    r"""Störmer–Verlet tangents: one force Hessian action and one θ-jvp per step.

    With ``v̄ = M⁻¹(p + (h/2)F(q₀))``, ``q₁ = q₀ + h v̄``, ``p₁ = M v̄ + (h/2)F(q₁)``:
    ``δv̄ = M⁻¹(δp + (h/2)δF₀ − δM v̄)``, ``δq₁ = δq₀ + h δv̄``,
    ``δp₁ = δM v̄ + M δv̄ + (h/2)δF₁`` with ``δF = ∂_qF δq + ∂_θF δθ``.
    """
    h, N = dl.h, dl.N
    kin = dl.system.kinetic

    def dforce(j_step, end, q, dq):
        out = dl.force_hessian_action(j_step, end, q, dq)
        if dtheta:
            jv = dl.force_theta_jvp(j_step, end, q, dtheta)
            if jv is not None:
                out = out + jv
        return out

    dq, dp = dq0, dp0
    if store:
        DQ = np.empty((N + 1,) + np.shape(dq), np.result_type(dq, dp, Q))
        DP = np.empty_like(DQ)
        DQ[0], DP[0] = dq, dp
    dF = dforce(0, 0, Q[0], dq)
    for k in range(N):
        vbar = (Q[k + 1] - Q[k]) / h
        dM_v = kin.mass_theta_jvp(vbar, dtheta) if dtheta else None
        r = dp + 0.5 * h * dF
        if dM_v is not None:
            r = r - dM_v
        dvbar = dl.mass_solve(r)
        dq = dq + h * dvbar
        dF = dforce(k, 1, Q[k + 1], dq)
        dp = dl.mass_apply(dvbar) + 0.5 * h * dF
        if dM_v is not None:
            dp = dp + dM_v
        if store:
            DQ[k + 1], DP[k + 1] = dq, dp
    if store:
        return DQ, DP
    return dq, dp


def final_sensitivities(dl, Q, *, v0=None, chunk: int = 64):
    """``∂_θ q_N`` and ``d_θ p_N`` for every flat parameter: arrays ``(P, B, n)``.

    ``v0`` is the fixed initial velocity when the initial momentum
    ``p₀ = ∂_v L(q₀, v₀, θ)`` depends on θ (``None`` if ``p₀`` is fixed).
    """
    sys = dl.system
    shapes = sys.parameters
    P = sum(int(np.prod(s)) if s else 1 for s in shapes.values())
    dqN = np.zeros((P,) + Q.shape[1:], dtype=Q.dtype)
    dpN = np.zeros_like(dqN)
    t0 = dl.node_time(0)
    x0 = dl.inputs(t0)
    sign = dl.direction  # mirrored (negative steps): p̃ = −∂_v L
    for start, stop, dtheta in parameter_directions(shapes, chunk):
        K = stop - start
        dq0 = np.zeros((K,) + Q.shape[1:], dtype=Q.dtype)
        dp0 = np.zeros_like(dq0)
        if v0 is not None:
            jv = sys.theta_jvp(Q[0], v0, dl.theta, x0, t0, dtheta)[1]
            if jv is not None:
                dp0 = dp0 + sign * jv
        dqN[start:stop], dpN[start:stop] = tangent_sweep(dl, Q, dq0, dp0, dtheta)
    return dqN, dpN


def unflatten(flat: np.ndarray, shapes: Mapping[str, tuple]) -> dict[str, np.ndarray]:
    """Split a flat parameter vector into a dict of arrays."""
    out, off = {}, 0
    for key, shape in shapes.items():
        size = int(np.prod(shape)) if shape else 1
        out[key] = flat[off:off + size].reshape(shape)
        off += size
    return out


def flatten(values: Mapping[str, np.ndarray], shapes: Mapping[str, tuple]) -> np.ndarray:
    """Concatenate a parameter dict into one flat vector (declared order)."""
    return np.concatenate([np.asarray(values[k]).reshape(-1) for k in shapes])
