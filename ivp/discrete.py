r"""Discrete Lagrangians: the variational integrators of the ``ivp`` backend.

A quadrature rule ``(c_i, w_i)`` on ``[0, 1]`` and linear interpolation of the
position over a step define

    L_d(q₀, q₁, k) = h Σ_i w_i L(q₀ + c_i (q₁ − q₀), (q₁ − q₀)/h, t_k + c_i h)
                     + β (h/2) (c(q₀, t_k) + c(q₁, t_{k+1}))

(the cost always enters with trapezoid weights, so that the discrete loss is
``C_h = Σ_k w_k c(q_k, t_k)`` whatever the rule).  The two-point Lobatto rule
(``TRAPEZOID``) gives Störmer–Verlet for a separable ``L = ½vᵀMv − V``; the
one-point Gauss rule (``MIDPOINT``) is the implicit midpoint variational
integrator for a general ``L``.

The discrete Euler–Lagrange equations are ``D₂L_d(q_{k−1}, q_k) +
D₁L_d(q_k, q_{k+1}) = 0`` and the discrete momenta ``p_k = −D₁L_d(q_k,
q_{k+1}) = D₂L_d(q_{k−1}, q_k)``.  Every engine of the backend (stepping,
adjoint, sensitivities) is written against the derivatives of ``L_d`` below,
so forward and backward integration share one implementation:
:class:`Mirrored` presents ``L̃_d(a, b, j) = L_d(b, a, N−1−j)``, whose forward
integration *is* the backward integration of ``L_d``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glep.errors import InputError
from glep.grid import TimeGrid
from glep.system import LagrangianSystem, nudged, position_force, position_hessian_action, position_theta_jvp


@dataclass(frozen=True)
class QuadratureRule:
    """Nodes ``c`` and weights ``w`` on ``[0, 1]``."""

    name: str
    nodes: tuple[float, ...]
    weights: tuple[float, ...]


TRAPEZOID = QuadratureRule("trapezoid (Lobatto 2)", (0.0, 1.0), (0.5, 0.5))


def _flat_inputs(X: dict, sel, B: int) -> dict:
    """Node inputs ``X[k][sel]`` broadcast to the batch and flattened to ``(nodes·B, m)``."""
    out = {}
    for k, a in X.items():
        a = a[sel]
        out[k] = np.broadcast_to(a, (a.shape[0], B, a.shape[-1])).reshape(a.shape[0] * B, a.shape[-1])
    return out


def trapezoid_node_sum(terms, theta, Q, h: float, X: dict, times: np.ndarray) -> dict:
    """``Σ_j w_j Σ_batch ∂_θL_i(q_j, t_j)`` for position-only terms, trapezoid weights.

    ``Q`` is ``(N+1, B, n)``, ``X`` the signals at the grid nodes
    ``(N+1, B or 1, m)`` and ``times`` the node times ``(N+1,)``, passed to the
    terms as one time per flattened batch member.  Terms return batch sums, so
    the interior nodes (weight ``h``) and the two ends (weight ``h/2``) are two
    calls per term.
    """
    N1, B, n = Q.shape
    acc: dict = {}
    if not terms:
        return acc
    groups = ((slice(1, N1 - 1), h), ([0, N1 - 1], 0.5 * h))
    for sel, weight in groups:
        qs = Q[sel].reshape(-1, n)
        if qs.size == 0:
            continue
        xs = _flat_inputs(X, sel, B)
        ts = np.repeat(np.asarray(times, dtype=float)[sel], B)
        for term in terms:
            for key, g in term.theta_gradient(qs, None, theta, xs, ts).items():
                acc[key] = acc.get(key, 0.0) + weight * g
    return acc
MIDPOINT = QuadratureRule("midpoint (Gauss 1)", (0.5,), (1.0,))
GAUSS2 = QuadratureRule("Gauss 2", (0.5 - np.sqrt(3) / 6, 0.5 + np.sqrt(3) / 6), (0.5, 0.5))


class DiscreteLagrangian:
    """``L_d`` of a system on a uniform grid, at a given ``θ`` and nudging ``β``.

    Parameters
    ----------
    system, theta, grid:
        The system, its (checked) parameters and the time grid.
    rule:
        The quadrature rule (``TRAPEZOID`` or ``MIDPOINT``...).
    beta:
        Nudging strength (real or complex, for complex-step nudging).
    fast:
        Use the explicit Störmer–Verlet formulas when the system is separable
        and the rule is the trapezoid (set ``False`` to force the generic
        implicit path, e.g. to test one against the other).
    """

    def __init__(self, system: LagrangianSystem, theta, grid: TimeGrid,
                 rule: QuadratureRule = TRAPEZOID, beta: complex = 0.0, fast: bool = True):
        self.system = system
        self.theta = theta
        self.grid = grid
        self.rule = rule
        self.beta = beta
        self.h = grid.h
        self.N = grid.N
        self.explicit = bool(fast and system.is_separable and rule == TRAPEZOID)
        self._c = np.asarray(rule.nodes)
        self._w = np.asarray(rule.weights)
        self._node_x: dict | None = None
        self._stacked_x: dict = {}

    # -- helpers -------------------------------------------------------------
    def time(self, k: int, c: float = 0.0) -> float:
        return (k + c) * self.h

    def inputs(self, t: float):
        return self.system.inputs_at(t)

    def all_node_inputs(self) -> dict:
        """Signals at every grid node, arrays ``(N+1, B or 1, m)`` (sampled once)."""
        if self._node_x is None:
            times = self.grid.times
            self._node_x = {k: s.sample(times) for k, s in self.system.signals.items()}
        return self._node_x

    def node_inputs(self, j: int):
        """Signals at grid node ``j``."""
        return {k: a[j] for k, a in self.all_node_inputs().items()}

    def _inputs_on_steps(self, c: float, B: int):
        """Signals at ``t_k + c h`` for every step, broadcast and flattened to ``(N·B, m)``."""
        key = (float(c), B)
        if key not in self._stacked_x:
            times = (np.arange(self.N) + c) * self.h
            X = {k: s.sample(times) for k, s in self.system.signals.items()}
            self._stacked_x[key] = _flat_inputs(X, slice(None), B)
        return self._stacked_x[key]

    def theta_gradient_sum(self, Q):
        """``Σ_k Σ_batch ∂_θ L_d(q_k, q_{k+1})`` along a stored trajectory (the contrast).

        Evaluated on all steps at once (the terms receive one time per step and
        batch member), unless a term needs a scalar ``t`` (``explicit_time``).
        """
        if any(term.explicit_time for term in self.system.terms):
            acc: dict = {}
            for k in range(self.N):
                for key, g in self.theta_gradient(k, Q[k], Q[k + 1]).items():
                    acc[key] = acc.get(key, 0.0) + g
            return acc
        N, h = self.N, self.h
        B, n = Q.shape[1], Q.shape[2]
        terms = [t for t in self.system.terms if t.parameters]
        if self.rule == TRAPEZOID:
            # Lobatto nodes are grid nodes: position-only terms once per node
            acc = trapezoid_node_sum([t for t in terms if not t.depends_on_velocity], self.theta, Q, h,
                                     self.all_node_inputs(), self.grid.times)
            terms = [t for t in terms if t.depends_on_velocity]
        else:
            acc = {}
        if not terms:
            return acc
        v = ((Q[1:] - Q[:-1]) / h).reshape(N * B, n)
        for c, w in zip(self._c, self._w):
            q = ((1.0 - c) * Q[:-1] + c * Q[1:]).reshape(N * B, n)
            x = self._inputs_on_steps(c, B)
            t = np.repeat((np.arange(N) + c) * h, B)
            for term in terms:
                for key, g in term.theta_gradient(q, v, self.theta, x, t).items():
                    acc[key] = acc.get(key, 0.0) + h * w * g
        return acc

    def theta_vjp_sum(self, Q, Lam):
        """``Σ_k Σ_batch ∂_θ (D₁L_d(q_k, q_{k+1})·λ_k + D₂L_d(q_k, q_{k+1})·λ_{k+1})`` along ``Q``.

        The adjoint's parameter gradient (up to sign).  ``theta_vjp`` is linear
        in its directions, so the quadrature weights ``h w_i`` go into them and
        every step is one batch member of a single call per quadrature node
        (one time per member), unless a term needs a scalar ``t``.
        """
        if any(term.explicit_time for term in self.system.terms):
            acc: dict = {}
            for k in range(self.N):
                for key, g in self.theta_vjp(k, Q[k], Q[k + 1], Lam[k], Lam[k + 1]).items():
                    acc[key] = acc.get(key, 0.0) + g
            return acc
        N, h = self.N, self.h
        B, n = Q.shape[1], Q.shape[2]
        v = ((Q[1:] - Q[:-1]) / h).reshape(N * B, n)
        b = ((Lam[1:] - Lam[:-1]) / h).reshape(N * B, n)
        acc = {}
        for c, w in zip(self._c, self._w):
            q = ((1.0 - c) * Q[:-1] + c * Q[1:]).reshape(N * B, n)
            a = ((1.0 - c) * Lam[:-1] + c * Lam[1:]).reshape(N * B, n)
            t = np.repeat((np.arange(N) + c) * h, B)
            x = self._inputs_on_steps(c, B)
            for key, g in self.system.theta_vjp(q, v, self.theta, x, t, h * w * a, h * w * b).items():
                acc[key] = acc.get(key, 0.0) + g
        return acc

    def _nodes(self, k, q0, q1):
        v = (q1 - q0) / self.h
        for c, w in zip(self._c, self._w):
            t = self.time(k, c)
            yield c, w, (1.0 - c) * q0 + c * q1, v, t, self.inputs(t)

    def _cost_terms(self, k):
        sys = self.system
        if sys.cost is None or not nudged(self.beta):
            return None
        return ((0, self.time(k), self.inputs(self.time(k))),
                (1, self.time(k + 1), self.inputs(self.time(k + 1))))

    # -- value and derivatives ----------------------------------------------
    def value(self, k, q0, q1):
        """``L_d(q₀, q₁, k)`` per batch member."""
        sys, th, h = self.system, self.theta, self.h
        out = 0.0
        for _c, w, q, v, t, x in self._nodes(k, q0, q1):
            out = out + h * w * sys.lagrangian(q, v, th, x, t)
        ct = self._cost_terms(k)
        if ct:
            for end, t, x in ct:
                out = out + self.beta * 0.5 * h * sys.cost.cost(q1 if end else q0, x, t)
        return out

    def momenta(self, k, q0, q1):
        """``(D₁L_d, D₂L_d)`` at step ``k``."""
        sys, th, h = self.system, self.theta, self.h
        d1 = d2 = 0.0
        for c, w, q, v, t, x in self._nodes(k, q0, q1):
            lq, lv = sys.gradient(q, v, th, x, t)
            d1 = d1 + h * w * ((1.0 - c) * lq) - w * lv
            d2 = d2 + h * w * (c * lq) + w * lv
        ct = self._cost_terms(k)
        if ct:
            (_, t0, x0), (_, t1, x1) = ct
            d1 = d1 + self.beta * 0.5 * h * sys.cost.gradient(q0, x0, t0)
            d2 = d2 + self.beta * 0.5 * h * sys.cost.gradient(q1, x1, t1)
        return d1, d2

    def hessian_action(self, k, q0, q1, dq0, dq1):
        """Second variation of ``L_d``: ``(∂(D₁L_d), ∂(D₂L_d))`` along ``(dq₀, dq₁)``.

        ``dq₀`` or ``dq₁`` may be ``None`` (zero); they may carry a leading
        tangent axis.
        """
        sys, th, h = self.system, self.theta, self.h
        ref = dq0 if dq0 is not None else dq1
        z = np.zeros_like(ref)
        a0 = z if dq0 is None else dq0
        a1 = z if dq1 is None else dq1
        dv = (a1 - a0) / h
        h1 = h2 = 0.0
        for c, w, q, v, t, x in self._nodes(k, q0, q1):
            hq, hv = sys.hessian_action(q, v, th, x, t, (1.0 - c) * a0 + c * a1, dv)
            h1 = h1 + h * w * ((1.0 - c) * hq) - w * hv
            h2 = h2 + h * w * (c * hq) + w * hv
        ct = self._cost_terms(k)
        if ct:
            (_, t0, x0), (_, t1, x1) = ct
            if dq0 is not None:
                h1 = h1 + self.beta * 0.5 * h * sys.cost.hessian_action(q0, x0, t0, dq0)
            if dq1 is not None:
                h2 = h2 + self.beta * 0.5 * h * sys.cost.hessian_action(q1, x1, t1, dq1)
        return h1 + z, h2 + z

    def theta_gradient(self, k, q0, q1):
        """``Σ_batch ∂_θ L_d(q₀, q₁, k)``: the summand of the contrast."""
        sys, th, h = self.system, self.theta, self.h
        acc = {}
        for _c, w, q, v, t, x in self._nodes(k, q0, q1):
            for key, g in sys.theta_gradient(q, v, th, x, t).items():
                acc[key] = acc.get(key, 0.0) + h * w * g
        return acc

    def theta_vjp(self, k, q0, q1, a0, a1):
        """``Σ_batch ∂_θ (D₁L_d · a₀ + D₂L_d · a₁)``."""
        sys, th, h = self.system, self.theta, self.h
        acc = {}
        for c, w, q, v, t, x in self._nodes(k, q0, q1):
            for key, g in sys.theta_vjp(q, v, th, x, t, (1.0 - c) * a0 + c * a1, (a1 - a0) / h).items():
                acc[key] = acc.get(key, 0.0) + h * w * g
        return acc

    def theta_jvp(self, k, q0, q1, dtheta):
        """``(∂_θ D₁L_d · δθ, ∂_θ D₂L_d · δθ)`` with a leading tangent axis."""
        sys, th, h = self.system, self.theta, self.h
        j1 = j2 = 0.0
        for c, w, q, v, t, x in self._nodes(k, q0, q1):
            hq, hv = sys.theta_jvp(q, v, th, x, t, dtheta)
            if hq is not None:
                j1 = j1 + h * w * (1.0 - c) * hq
                j2 = j2 + h * w * c * hq
            if hv is not None:
                j1 = j1 - w * hv
                j2 = j2 + w * hv
        return j1, j2

    # -- linear algebra with ∂D₁/∂q₁ (= D₁₂L_d) ------------------------------
    def d12_matrix(self, k, q0, q1):
        """Dense ``D₁₂L_d`` per batch member, shape ``(B, n, n)``."""
        n = self.system.n
        eye = np.broadcast_to(np.eye(n)[:, None, :], (n,) + np.shape(q0))
        cols, _ = self.hessian_action(k, q0, q1, None, eye)  # (n, B, n): column j
        return np.moveaxis(cols, 0, -1)

    def solve_d12(self, k, q0, q1, rhs, transpose: bool = False):
        """Solve ``D₁₂L_d X = rhs`` (or its transpose); ``rhs`` may carry a tangent axis."""
        if self.explicit:
            return -self.h * self.system.kinetic.mass_solve(rhs, self.theta)
        J = self.d12_matrix(k, q0, q1)
        if transpose:
            J = np.swapaxes(J, -1, -2)
        return np.linalg.solve(J, rhs[..., None])[..., 0]

    # -- explicit (separable, trapezoid) fast path --------------------------
    def force(self, k: int, end: int, q):
        """``∂_q L_β`` at grid node ``k + end`` (separable systems)."""
        j = k + end
        return position_force(self.system, q, self.theta, self.node_inputs(j), self.time(j), self.beta)

    def force_hessian_action(self, k: int, end: int, q, dq):
        j = k + end
        return position_hessian_action(self.system, q, self.theta, self.node_inputs(j), self.time(j), dq,
                                       self.beta)

    def force_theta_jvp(self, k: int, end: int, q, dtheta):
        """``∂_θ(∂_q L) · δθ`` of the velocity-independent terms at node ``k + end``."""
        j = k + end
        return position_theta_jvp(self.system, q, self.theta, self.node_inputs(j), self.time(j), dtheta)

    def mass_apply(self, v):
        return self.system.kinetic.mass_apply(v, self.theta)

    def mass_solve(self, p):
        return self.system.kinetic.mass_solve(p, self.theta)

    def node_weight(self, j: int) -> float:
        """Trapezoid weight of grid node ``j``."""
        return 0.5 * self.h if j in (0, self.N) else self.h

    def node_time(self, j: int) -> float:
        return j * self.h


class Mirrored:
    """``L̃_d(a, b, j) = L_d(b, a, N − 1 − j)``: integrating it forward is
    integrating ``L_d`` backward in time.

    Trajectories of the mirror are read backwards (``q̃_j = q_{N−j}``) and
    its momenta are the negated momenta of the original (``p̃_j = −p_{N−j}``).
    """

    def __init__(self, dl: DiscreteLagrangian):
        if isinstance(dl, Mirrored):
            raise InputError("cannot mirror a mirrored discrete Lagrangian")
        self.base = dl
        self.system, self.theta, self.grid = dl.system, dl.theta, dl.grid
        self.beta, self.h, self.N, self.explicit = dl.beta, dl.h, dl.N, dl.explicit

    def _k(self, j):
        return self.N - 1 - j

    def value(self, j, a, b):
        return self.base.value(self._k(j), b, a)

    def momenta(self, j, a, b):
        d1, d2 = self.base.momenta(self._k(j), b, a)
        return d2, d1

    def hessian_action(self, j, a, b, da, db):
        h1, h2 = self.base.hessian_action(self._k(j), b, a, db, da)
        return h2, h1

    def theta_gradient(self, j, a, b):
        return self.base.theta_gradient(self._k(j), b, a)

    def theta_gradient_sum(self, Q):
        return self.base.theta_gradient_sum(Q[::-1])

    def theta_vjp(self, j, a, b, a0, a1):
        return self.base.theta_vjp(self._k(j), b, a, a1, a0)

    def theta_vjp_sum(self, Q, Lam):
        return self.base.theta_vjp_sum(Q[::-1], Lam[::-1])

    def theta_jvp(self, j, a, b, dtheta):
        j1, j2 = self.base.theta_jvp(self._k(j), b, a, dtheta)
        return j2, j1

    def solve_d12(self, j, a, b, rhs, transpose: bool = False):
        # D̃₁₂(a, b) = ∂_a∂_b L_d(b, a) = (D₁₂L_d(b, a))ᵀ
        return self.base.solve_d12(self._k(j), b, a, rhs, transpose=not transpose)

    def d12_matrix(self, j, a, b):
        return np.swapaxes(self.base.d12_matrix(self._k(j), b, a), -1, -2)

    def force(self, j, end, q):
        return self.base.force(self._k(j), 1 - end, q)

    def force_hessian_action(self, j, end, q, dq):
        return self.base.force_hessian_action(self._k(j), 1 - end, q, dq)

    def force_theta_jvp(self, j, end, q, dtheta):
        return self.base.force_theta_jvp(self._k(j), 1 - end, q, dtheta)

    def node_inputs(self, j):
        return self.base.node_inputs(self.N - j)

    def all_node_inputs(self):
        return {k: a[::-1] for k, a in self.base.all_node_inputs().items()}

    def mass_apply(self, v):
        return self.base.mass_apply(v)

    def mass_solve(self, p):
        return self.base.mass_solve(p)

    def node_weight(self, j):
        return self.base.node_weight(self.N - j)

    def node_time(self, j):
        return self.base.node_time(self.N - j)

    def inputs(self, t):
        return self.base.inputs(t)
