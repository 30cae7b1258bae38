r"""The discrete adjoint of a variational integrator: the ground truth.

The discrete trajectory solves ``E(q, θ) = 0`` with

    E₀ = p_init + D₁L_d(q₀, q₁),    E_k = D₂L_d(q_{k−1}, q_k) + D₁L_d(q_k, q_{k+1}),

and ``q₀ = q_init``.  The loss ``C_h = Σ_j w_j c(q_j, t_j) (+ c_T(q_N))`` has
gradient ``dC_h/dθ = −Σ_k λ_kᵀ ∂E_k/∂θ`` where ``(∂E/∂q)ᵀ λ = ∂C_h/∂q``.  The
Jacobian is block-banded, and ``λ`` follows from a backward recursion, for
``j = N, …, 1``:

    D₁₂(j−1)ᵀ λ_{j−1} = g_j − D₂₂(j−1) λ_j − D₁₁(j) λ_j − D₁₂(j) λ_{j+1},

with ``λ_N = λ_{N+1} = 0``.  Because ``Σ_k λ_k·E_k`` pairs ``(λ_k, λ_{k+1})``
with ``(D₁L_d, D₂L_d)`` of step ``k``, the parameter gradient is
``−Σ_k ∂_θ(D₁L_d·λ_k + D₂L_d·λ_{k+1})`` — exactly ``theta_vjp`` of the
discrete Lagrangian.  The initial-state gradient is ``dC/dp_init = −λ₀`` and
``dC/dq_init = g₀ − D₁₁(0)λ₀ − D₁₂(0)λ₁``.

For Störmer–Verlet the recursion is explicit and needs one Hessian-vector
product per step (``_explicit_adjoint``); the generic path works for any rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glep.system import position_hessian_action
from glep.terms import add_into


@dataclass
class AdjointResult:
    """Gradients of the discrete loss from the discrete adjoint."""

    theta: dict[str, np.ndarray]
    q0: np.ndarray
    p0: np.ndarray
    loss: float


def loss_gradient_nodes(dl, Q, terminal: bool):
    """``g_j = w_j ∇c(q_j, t_j)`` (+ ``∇c_T`` at the final node) and the loss ``C_h``."""
    sys = dl.system
    N = dl.N
    G = np.zeros_like(Q)
    loss = 0.0
    if sys.cost is not None:
        # all nodes at once: signals are stacked along a leading time axis
        X = dl.all_node_inputs()
        w = np.full((N + 1, 1, 1), dl.h)
        w[0] = w[-1] = 0.5 * dl.h
        G = w * sys.cost.gradient(Q, X, None)
        loss = float(np.sum(w[:, :, 0] * sys.cost.cost(Q, X, None).real))
    if terminal and sys.terminal_cost is not None:
        G[N] = G[N] + sys.terminal_cost.gradient(Q[N])
        loss += float(np.sum(sys.terminal_cost.cost(Q[N]).real))
    return G, loss


def discrete_loss(dl, Q, terminal: bool = True) -> float:
    """The discrete loss ``C_h`` of a stored trajectory (summed over the batch)."""
    sys = dl.system
    loss = 0.0
    if sys.cost is not None:
        c = sys.cost.cost(Q, dl.all_node_inputs(), None).real  # (N+1, B)
        loss = dl.h * float(c[1:-1].sum() + 0.5 * (c[0].sum() + c[-1].sum()))
    if terminal and sys.terminal_cost is not None:
        loss += float(np.sum(sys.terminal_cost.cost(Q[-1]).real))
    return loss


def _generic_adjoint(dl, Q, G):
    N = dl.N
    lam = np.zeros_like(Q)
    for j in range(N, 0, -1):
        r = G[j].copy()
        if j < N:
            r -= dl.hessian_action(j, Q[j], Q[j + 1], lam[j], lam[j + 1])[0]
            r -= dl.hessian_action(j - 1, Q[j - 1], Q[j], None, lam[j])[1]
        lam[j - 1] = dl.solve_d12(j - 1, Q[j - 1], Q[j], r, transpose=True)
    mu = G[0] - dl.hessian_action(0, Q[0], Q[1], lam[0], lam[1])[0]
    theta: dict[str, np.ndarray] = {}
    for key, g in dl.theta_vjp_sum(Q, lam).items():  # every step in one call per term and quadrature node
        add_into(theta, key, -g)
    return lam, mu, theta


def _potential_theta_vjp(dl, terms, Q, lam, acc: dict) -> None:
    r"""Add ``−Σ_{j<N} w_j Σ_batch ∂_θ(∂_q L_i(q_j, t_j)·λ_j)`` of velocity-free terms into ``acc``.

    ``theta_vjp`` is linear in its direction, so the trapezoid weights go into
    ``w_j λ_j`` and every node ``j < N`` (``λ_N = 0``) is one batch member of a
    single call per term, with one time per member.  Terms that need a scalar
    ``t`` (``explicit_time``) are called node by node.
    """
    N, th = dl.N, dl.theta
    B, n = Q.shape[1], Q.shape[2]
    scalar = [term for term in terms if term.explicit_time]
    for j in range(N):
        for term in scalar:
            for key, g in term.theta_vjp(Q[j], None, th, dl.node_inputs(j), dl.node_time(j), lam[j], None).items():
                add_into(acc, key, -dl.node_weight(j) * g)
    batched = [term for term in terms if not term.explicit_time]
    if not batched or N == 0:
        return
    w = dl.node_weights()[:N]
    times = np.repeat(np.array([dl.node_time(j) for j in range(N)], dtype=float), B)
    x = {k: np.broadcast_to(a[:N], (N, B, a.shape[-1])).reshape(N * B, a.shape[-1])
         for k, a in dl.all_node_inputs().items()}
    q = Q[:N].reshape(N * B, n)
    a = (w[:, None, None] * lam[:N]).reshape(N * B, n)
    for term in batched:
        for key, g in term.theta_vjp(q, None, th, x, times, a, None).items():
            add_into(acc, key, -g)


def _explicit_adjoint(dl, Q, G):
    """Störmer–Verlet: ``D₁₂ = −M/h``, ``D₁₁(j) + D₂₂(j−1) = 2M/h + h ∂²_q L``."""
    N, h = dl.N, dl.h
    sys = dl.system
    lam = np.zeros_like(Q)
    lam[N - 1] = -h * dl.mass_solve(G[N])
    for j in range(N - 1, 0, -1):
        Hl = dl.force_hessian_action(j, 0, Q[j], lam[j])
        r = G[j] - 2.0 / h * dl.mass_apply(lam[j]) - h * Hl + dl.mass_apply(lam[j + 1]) / h
        lam[j - 1] = -h * dl.mass_solve(r)
    mu = G[0] - (dl.mass_apply(lam[0]) / h + 0.5 * h * dl.force_hessian_action(0, 0, Q[0], lam[0])
                 - dl.mass_apply(lam[1]) / h)
    theta: dict[str, np.ndarray] = {}
    potentials = [term for term in sys.terms if not term.depends_on_velocity and term.parameters]
    _potential_theta_vjp(dl, potentials, Q, lam, theta)
    kin = sys.kinetic
    for k in range(N):
        vbar = (Q[k + 1] - Q[k]) / h
        for key, g in kin.mass_theta_vjp(vbar, lam[k + 1] - lam[k]).items():
            add_into(theta, key, -g)
    return lam, mu, theta


def adjoint_gradient(dl, Q, *, v0=None, terminal: bool = True, generic: bool = False) -> AdjointResult:
    """Discrete-adjoint gradient of ``C_h`` for a forward (CIVP-type) trajectory ``Q``.

    Parameters
    ----------
    dl:
        The discrete Lagrangian (or its :meth:`~glep.ivp.discrete.DiscreteLagrangian.mirrored`
        form for final-value problems) at β = 0.
    Q:
        The stored trajectory, shape ``(N+1, B, n)``.
    v0:
        The initial velocity when the boundary condition fixes the velocity
        (then ``p_init = ∂_v L(q₀, v₀, θ, t₀)`` depends on θ and contributes
        ``−∂_θ(∂_v L · λ₀)``); ``None`` when the momentum is fixed.
    terminal:
        Include the terminal cost at the final node.
    generic:
        Force the generic recursion even for Störmer–Verlet (for testing).
    """
    G, loss = loss_gradient_nodes(dl, Q, terminal)
    if dl.explicit and not generic and getattr(dl, "backend", "numpy") == "jax":
        from glep.ivp.compiled import explicit_adjoint

        lam0, mu, theta = explicit_adjoint(dl, Q, G)  # the same recursion as a compiled reverse scan
        lam = lam0[None]
    elif dl.explicit and not generic:
        lam, mu, theta = _explicit_adjoint(dl, Q, G)
    else:
        lam, mu, theta = _generic_adjoint(dl, Q, G)
    dp0 = -lam[0]
    if v0 is not None:
        t0 = dl.node_time(0)
        sign = dl.direction  # mirrored (negative steps): p̃ = −∂_v L
        sys = dl.system
        for key, g in sys.theta_vjp(Q[0], v0, dl.theta, dl.inputs(t0), t0, None, lam[0]).items():
            add_into(theta, key, -sign * g)
    full = {}
    for key, shape in dl.system.parameters.items():
        g = theta.get(key)
        full[key] = np.zeros(shape) if g is None else np.real_if_close(np.asarray(g))
    return AdjointResult(full, mu, dp0, loss)


__all__ = ["AdjointResult", "adjoint_gradient", "discrete_loss", "loss_gradient_nodes",
           "position_hessian_action"]
