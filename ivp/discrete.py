r"""Discrete Lagrangians: the variational integrators of the ``ivp`` backend.

A quadrature rule ``(c_i, w_i)`` on ``[0, 1]`` and linear interpolation of the
position over a step of *signed* duration ``τ_k`` starting at ``t_k`` define

    L_d(q₀, q₁; t_k, τ_k) = |τ_k| Σ_i w_i L(q₀ + c_i (q₁ − q₀), (q₁ − q₀)/τ_k, t_k + c_i τ_k)
                            + β (|τ_k|/2) (c(q₀, t_k) + c(q₁, t_k + τ_k))

(the cost always enters with trapezoid weights, so that the discrete loss is
``C_h = Σ_k w_k c(q_k, t_k)`` whatever the rule).  The two-point Lobatto rule
(``TRAPEZOID``) gives Störmer–Verlet for a separable ``L = ½vᵀMv − V``; the
one-point Gauss rule (``MIDPOINT``) is the implicit midpoint variational
integrator for a general ``L``; ``GAUSS2`` (two Gauss points) integrates the
Lagrangian of the linear interpolant more accurately but stays of order 2: the
linear interpolation of the position caps the order (a Galerkin integrator of
higher order needs a higher-degree interpolant, as the ``bvp`` backend's P_r).

The discrete Euler–Lagrange equations are ``D₂L_d(q_{k−1}, q_k) +
D₁L_d(q_k, q_{k+1}) = 0`` and the discrete momenta ``p_k = −D₁L_d(q_k,
q_{k+1}) = D₂L_d(q_{k−1}, q_k)``.  Every engine of the backend (stepping,
adjoint, sensitivities, shooting) is written against the protocol
:class:`AbstractDiscreteLagrangian`, and every discretisation is the one class
:class:`DiscreteLagrangian` on a :class:`StepMesh` (arrays of step start times
and signed step sizes):

* a uniform grid, a non-uniform mesh: ``StepMesh.from_times``;
* a shooting segment: the same steps sliced, :meth:`DiscreteLagrangian.segment`;
* the mirrored (backward) form ``L̃_d(a, b, j) = L_d(b, a, N−1−j)``: the same
  discrete Lagrangian on the reversed nodes with negative steps ``τ̃_j =
  −τ_{N−1−j}`` and the reflected rule ``c ↦ 1 − c`` (substitute ``c ↦ 1 − c``
  in the formula above), :meth:`DiscreteLagrangian.mirrored`; integrating it
  forward *is* integrating ``L_d`` backward, with momenta ``p̃_j = −p_{N−j}``;
* the finite-element cell form (P1 in time, Gauss–Lobatto): the trapezoid
  discrete Lagrangian on independent cells ``StepMesh.cells(t0, h)``, every
  cell one batch member (step index ``k`` an index array or slice).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from glep._newton import dense_solve
from glep.errors import InputError
from glep.grid import TimeGrid
from glep.system import (
    LagrangianSystem,
    nudged,
    position_force_kernel,
    position_hessian_action,
    position_theta_jvp,
)
from glep.terms import KineticTerm


@dataclass(frozen=True)
class QuadratureRule:
    """Nodes ``c`` and weights ``w`` on ``[0, 1]``."""

    name: str
    nodes: tuple[float, ...]
    weights: tuple[float, ...]

    def reflected(self) -> QuadratureRule:
        """The rule under ``c ↦ 1 − c`` (itself for the symmetric rules of this module)."""
        return QuadratureRule(self.name, tuple(1.0 - c for c in reversed(self.nodes)), tuple(reversed(self.weights)))


#: where the explicit stepping, adjoint and sensitivities run (see :class:`DiscreteLagrangian`)
BACKENDS = ("numpy", "jax")

TRAPEZOID = QuadratureRule("trapezoid (Lobatto 2)", (0.0, 1.0), (0.5, 0.5))
MIDPOINT = QuadratureRule("midpoint (Gauss 1)", (0.5,), (1.0,))
GAUSS2 = QuadratureRule("Gauss 2", (0.5 - np.sqrt(3) / 6, 0.5 + np.sqrt(3) / 6), (0.5, 0.5))


def _flat_inputs(X: dict, sel, B: int) -> dict:
    """Node inputs ``X[k][sel]`` broadcast to the batch and flattened to ``(nodes·B, m)``."""
    out = {}
    for k, a in X.items():
        a = a[sel]
        out[k] = np.broadcast_to(a, (a.shape[0], B, a.shape[-1])).reshape(a.shape[0] * B, a.shape[-1])
    return out


def trapezoid_node_sum(terms, theta, Q, h: float, X: dict, times: np.ndarray, activations=None) -> dict:
    """``Σ_j w_j Σ_batch ∂_θL_i(q_j, t_j)`` for position-only terms, trapezoid weights.

    ``Q`` is ``(N+1, B, n)``, ``X`` the signals at the grid nodes
    ``(N+1, B or 1, m)`` and ``times`` the node times ``(N+1,)``, passed to the
    terms as one time per flattened batch member.  Terms return batch sums, so
    the interior nodes (weight ``h``) and the two ends (weight ``h/2``) are two
    calls per term.  ``activations`` (one entry per term, ``None`` or the term's
    node activations ``a(q_j)`` of shape ``(N+1, B, k)`` recorded by the stepping
    pass, :meth:`glep.terms.Term.activation_force_kernel`): those terms form
    ``∂_θL_i`` from them instead of recomputing them.
    """
    N1, B, n = Q.shape
    acc: dict = {}
    if not terms:
        return acc
    acts = [None] * len(terms) if activations is None else list(activations)
    for term, A in zip(terms, acts):
        if A is not None and np.shape(A) != (N1, B, term.activation_width):
            raise InputError(f"activations of {term.describe()} must have shape {(N1, B, term.activation_width)} "
                             f"(nodes, batch, activation_width), got {np.shape(A)}")
    groups = ((slice(1, N1 - 1), h), ([0, N1 - 1], 0.5 * h))
    for sel, weight in groups:
        qs = Q[sel].reshape(-1, n)
        if qs.size == 0:
            continue
        xs = _flat_inputs(X, sel, B)
        ts = np.repeat(np.asarray(times, dtype=float)[sel], B)
        for term, A in zip(terms, acts):
            grads = term.theta_gradient(qs, None, theta, xs, ts) if A is None else \
                term.theta_gradient_from_activation(A[sel].reshape(len(qs), -1), qs, theta, xs, ts)
            for key, g in grads.items():
                acc[key] = acc.get(key, 0.0) + weight * g
    return acc


def activation_buffers(system, theta, N: int, batch_shape: tuple, dtype) -> dict[int, np.ndarray]:
    """Empty node activations ``{i: (N+1, *batch_shape, k_i)}`` of the trainable potential terms
    ``system.terms[i]`` whose force and ``∂_θL`` share one (:meth:`glep.terms.Term.activation_force_kernel`,
    e.g. ``tanh(Wq + b)`` of :class:`glep.LogCoshLayer`); empty when no term has one."""
    return {i: np.empty((N + 1, *batch_shape, t.activation_width), dtype) for i, t in enumerate(system.terms)
            if t.parameters and not t.depends_on_velocity and t.activation_width
            and t.activation_force_kernel(theta) is not None}


def _progression(index: np.ndarray) -> slice | None:
    """``index`` (distinct, increasing by a constant step, e.g. a diagonal's flat indices) as a slice, else ``None``."""
    if len(index) < 2:
        return slice(int(index[0]), int(index[0]) + 1) if len(index) else None
    step = int(index[1] - index[0])
    if step <= 0 or not np.array_equal(index, index[0] + step * np.arange(len(index))):
        return None
    return slice(int(index[0]), int(index[-1]) + 1, step)


def _add(acc: dict, grads: dict, weight=1.0) -> None:
    for key, g in grads.items():
        acc[key] = acc.get(key, 0.0) + weight * g


@dataclass(frozen=True)
class StepMesh:
    r"""Steps ``k = 0 … N−1`` of signed size ``τ_k`` starting at ``t_k``.

    ``nodes`` (``t_0 … t_N``, with ``t_{k+1} = t_k + τ_k``) is set when the
    steps form a chain (a trajectory); independent cells (the finite-element
    form, where the steps are the elements of a distributed mesh) have
    ``nodes = None``.
    """

    starts: np.ndarray
    steps: np.ndarray
    nodes: np.ndarray | None = None

    @classmethod
    def from_grid(cls, grid: TimeGrid) -> StepMesh:
        times = grid.times
        return cls(times[:-1], np.full(grid.N, grid.h), times)

    @classmethod
    def from_times(cls, times) -> StepMesh:
        """A chain through the strictly monotone node times ``t_0 … t_N`` (a non-uniform mesh)."""
        t = np.asarray(times, dtype=float)
        d = np.diff(t) if t.ndim == 1 else np.zeros(0)
        if t.ndim != 1 or t.size < 2 or not np.all(np.isfinite(t)) or not (np.all(d > 0) or np.all(d < 0)):
            raise InputError(f"times must be a strictly monotone finite 1-D array of >= 2 nodes, got {times!r}")
        return cls(t[:-1], d, t)

    @classmethod
    def cells(cls, t0, h) -> StepMesh:
        """Independent cells ``[t0_k, t0_k + h_k]`` (``h_k > 0``)."""
        t0, h = np.asarray(t0, dtype=float), np.asarray(h, dtype=float)
        if t0.shape != h.shape or t0.ndim != 1 or not np.all(h > 0):
            raise InputError(f"cells need 1-D t0 and h > 0 of one shape, got {t0.shape} and {h.shape}")
        return cls(t0, h, None)

    @property
    def N(self) -> int:
        return len(self.steps)

    def sub(self, k0: int, k1: int) -> StepMesh:
        """Steps ``k0 … k1−1`` (re-indexed from 0)."""
        nodes = None if self.nodes is None else self.nodes[k0:k1 + 1]
        return StepMesh(self.starts[k0:k1], self.steps[k0:k1], nodes)

    def reversed(self) -> StepMesh:
        """The chain run backwards: nodes reversed, steps negated."""
        if self.nodes is None:
            raise InputError("only a chain of steps (not independent cells) can be reversed")
        nodes = self.nodes[::-1].copy()
        return StepMesh(nodes[:-1], -self.steps[::-1], nodes)


class AbstractDiscreteLagrangian(ABC):
    r"""The discrete-Lagrangian protocol every engine of the backend is written against.

    A discrete Lagrangian on steps ``k`` (start time ``t_k``, signed size
    ``τ_k``; arrays, so non-uniform meshes, shooting segments and the cells of a
    finite-element mesh are all covered) at parameters ``θ`` and nudging ``β``:

    * ``value(k, q₀, q₁)``: ``L_d(q₀, q₁; t_k, τ_k)`` per batch member;
    * ``momenta(k, q₀, q₁)``: the slot derivatives ``(D₁L_d, D₂L_d)``;
    * ``hessian_action(k, q₀, q₁, δq₀, δq₁)``: the second variation
      ``(D₁₁δq₀ + D₁₂δq₁, D₂₁δq₀ + D₂₂δq₁)`` (``None`` = zero direction;
      directions may carry a leading tangent axis);
    * ``theta_gradient(k, q₀, q₁)``: ``Σ_batch ∂_θL_d``;
    * ``theta_vjp(k, q₀, q₁, a₀, a₁)``: ``Σ_batch ∂_θ(D₁L_d·a₀ + D₂L_d·a₁)``;
    * ``theta_jvp(k, q₀, q₁, δθ)``: ``(∂_θD₁L_d·δθ, ∂_θD₂L_d·δθ)``;
    * ``d12_matrix`` / ``solve_d12``: ``D₁₂L_d = ∂²L_d/∂q₀∂q₁`` and solves
      with it (or its transpose), the Jacobian of the step map;
    * ``step_equations(k, q₀)``: the two above as functions of ``q₁`` for one
      step (default: ``momenta`` and ``solve_d12``; an implementation may
      prepare the step's data once for all iterations of the implicit step);
    * the sums along a stored chain ``Q`` (``theta_gradient_sum``,
      ``theta_vjp_sum``): ``Σ_k`` of the two θ-derivatives above;
    * ``segment(k0, k1)`` and ``mirrored()``: the same discrete Lagrangian on
      a sub-range of steps, and on the reversed chain (backward integration).

    ``k`` is a step index (states ``(B, n)``, every member on step ``k``) or
    an index array / slice (states ``(m, n)``, member ``i`` on step
    ``k[i]``: the cell layout).  Implementations with ``explicit = True``
    (separable ``½vᵀMv − V`` with the trapezoid rule) also provide the
    Störmer–Verlet pieces ``force``, ``force_hessian_action``,
    ``force_theta_jvp``, ``mass_apply``, ``mass_solve`` and the node data
    ``node_time``, ``node_weight``, ``node_inputs``, ``all_node_inputs``.

    **A field system** (a distributed state on a spatial mesh, next issue)
    implements the same protocol with ``q`` the rank's owned (+ ghost) degrees of
    freedom: ``value`` and the θ-derivatives are local sums (over the rank's
    cells) that the engines reduce with an ``Allreduce`` over the mesh
    communicator; ``momenta`` and ``hessian_action`` are assembled vectors
    (owned entries after a ghost update, as a PETSc ``Vec``), ``solve_d12`` a
    distributed linear solve (KSP with ``D₁₂`` as a PETSc ``Mat``), and
    ``d12_matrix`` may raise (dense matrices are for small ``n`` only).
    """

    system: LagrangianSystem
    theta: dict
    beta: complex
    N: int
    explicit: bool

    @abstractmethod
    def value(self, k, q0, q1): ...

    @abstractmethod
    def momenta(self, k, q0, q1): ...

    @abstractmethod
    def hessian_action(self, k, q0, q1, dq0, dq1): ...

    @abstractmethod
    def theta_gradient(self, k, q0, q1) -> dict: ...

    @abstractmethod
    def theta_vjp(self, k, q0, q1, a0, a1) -> dict: ...

    @abstractmethod
    def theta_jvp(self, k, q0, q1, dtheta): ...

    @abstractmethod
    def theta_gradient_sum(self, Q) -> dict: ...

    @abstractmethod
    def theta_vjp_sum(self, Q, Lam) -> dict: ...

    @abstractmethod
    def segment(self, k0: int, k1: int) -> AbstractDiscreteLagrangian: ...

    @abstractmethod
    def mirrored(self) -> AbstractDiscreteLagrangian: ...

    def d12_matrix(self, k, q0, q1):
        """Dense ``D₁₂L_d`` per batch member, shape ``(B, n, n)`` (column ``j`` = ``D₁₂ e_j``)."""
        n = q0.shape[-1]
        eye = np.broadcast_to(np.eye(n)[:, None, :], (n,) + np.shape(q0))
        cols, _ = self.hessian_action(k, q0, q1, None, eye)
        return np.moveaxis(cols, 0, -1)

    def solve_d12(self, k, q0, q1, rhs, transpose: bool = False):
        """Solve ``D₁₂L_d X = rhs`` (or its transpose); ``rhs`` may carry a tangent axis."""
        J = self.d12_matrix(k, q0, q1)
        if transpose:
            J = np.swapaxes(J, -1, -2)
        return dense_solve(J, rhs)

    def step_equations(self, k, q0):
        """The equations of one implicit step with ``q₀`` fixed: ``q₁ ↦ (D₁L_d, D₂L_d)`` and
        ``(q₁, r) ↦ D₁₂L_d(q₀, q₁)⁻¹ r`` (:func:`glep.ivp.stepping.implicit_step` solves the first's
        ``D₁L_d + p₀ = 0`` with the second).  Here :meth:`momenta` and :meth:`solve_d12` at ``(k, q₀)``;
        implementations may prepare the step's data (times, inputs, weights) once for all Newton iterations
        and keep what they computed for the last ``q₁`` they were given (by identity): a new point is a new
        array, never one modified in place."""
        return (lambda q1: self.momenta(k, q0, q1)), (lambda q1, r: self.solve_d12(k, q0, q1, r))


class DiscreteLagrangian(AbstractDiscreteLagrangian):
    """``L_d`` of a system on a :class:`StepMesh` (or a uniform grid), at a given ``θ`` and nudging ``β``.

    Parameters
    ----------
    system, theta:
        The system and its (checked) parameters.
    grid:
        A :class:`~glep.grid.TimeGrid` (uniform steps) or a :class:`StepMesh`
        (non-uniform, reversed, a segment, or independent cells).
    rule:
        The quadrature rule (``TRAPEZOID``, ``MIDPOINT``, ``GAUSS2``...).
    beta:
        Nudging strength (real or complex, for complex-step nudging).
    fast:
        Use the explicit Störmer–Verlet formulas when the system is separable,
        the rule is the trapezoid and the steps are uniform (set ``False`` to
        force the generic implicit path, e.g. to test one against the other).
    sampler:
        ``t ↦ {signal: values}`` for an array of times (one per batch member);
        needed for the cell layout (default: ``system.inputs_at`` at a scalar ``t``).
    backend:
        ``"numpy"`` (default) or ``"jax"``: where :func:`glep.ivp.stepping.integrate`, the adjoint and
        the sensitivities of an explicit discrete Lagrangian run (``"jax"``: the jit-compiled
        loops of :mod:`glep.ivp.compiled`, an optional extra); the generic (implicit) path is NumPy.
    """

    def __init__(self, system: LagrangianSystem, theta, grid: TimeGrid | StepMesh,
                 rule: QuadratureRule = TRAPEZOID, beta: complex = 0.0, fast: bool = True,
                 sampler: Callable[[np.ndarray], dict] | None = None, backend: str = "numpy"):
        if isinstance(grid, TimeGrid):
            self.grid, mesh = grid, StepMesh.from_grid(grid)
        elif isinstance(grid, StepMesh):
            self.grid, mesh = None, grid
        else:
            raise InputError(f"grid must be a TimeGrid or a StepMesh, got {type(grid).__name__}")
        self.system, self.theta, self.rule, self.beta = system, theta, rule, beta
        self.mesh, self.N, self.fast, self.sampler = mesh, mesh.N, fast, sampler
        sizes = np.abs(mesh.steps)
        uniform = mesh.N > 0 and bool(np.all(sizes == sizes[0]))
        #: step magnitudes ``|τ_k|``: a float on a uniform mesh, else an array
        self.h = float(sizes[0]) if uniform else sizes
        self.direction = 1.0 if mesh.N == 0 or mesh.steps[0] > 0 else -1.0
        self.explicit = bool(fast and system.is_separable and rule == TRAPEZOID and uniform
                             and mesh.nodes is not None)
        self._c = np.asarray(rule.nodes)
        self._w = np.asarray(rule.weights)
        self._node_x: dict | None = None
        self._stacked_x: dict = {}
        self._step_x: dict = {}
        self._force_kernel = None
        self._d12_parts = None
        self._d12_const: tuple = (None, None)
        self._rule_at: tuple = (None, None)
        self._gradient = None
        if backend not in BACKENDS:
            raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend

    # -- the same discrete Lagrangian on other steps --------------------------
    def segment(self, k0: int, k1: int) -> DiscreteLagrangian:
        """Steps ``k0 … k1−1``, re-indexed from 0 (a shooting segment)."""
        return DiscreteLagrangian(self.system, self.theta, self.mesh.sub(k0, k1), self.rule, self.beta,
                                  self.fast, self.sampler, self.backend)

    def mirrored(self) -> DiscreteLagrangian:
        """``L̃_d(a, b, j) = L_d(b, a, N−1−j)``: reversed chain, negative steps, reflected rule."""
        return DiscreteLagrangian(self.system, self.theta, self.mesh.reversed(), self.rule.reflected(),
                                  self.beta, self.fast, self.sampler, self.backend)

    # -- steps and inputs -----------------------------------------------------
    def _step(self, k):
        """``(t_k, τ_k, |τ_k|)``; for an index array, ``τ`` and ``|τ|`` are columns ``(m, 1)``."""
        t, tau = self.mesh.starts[k], self.mesh.steps[k]
        if np.ndim(tau):
            tau = tau[:, None]
        return t, tau, np.abs(tau)

    def time(self, k, c: float = 0.0):
        """``t_k + c τ_k`` (an array for an index array ``k``)."""
        return self.mesh.starts[k] + c * self.mesh.steps[k]

    def inputs(self, t):
        if self.sampler is not None:
            return self.sampler(np.atleast_1d(t))
        return self.system.inputs_at(t)

    def _nodes(self, k, q0, q1):
        if self.sampler is None and isinstance(k, (int, np.integer)):  # one step: its inputs sampled once
            t, tau = self.mesh.starts[k], self.mesh.steps[k]
            v = (q1 - q0) / tau
            for c, w in zip(self._c, self._w):
                yield c, w, (1.0 - c) * q0 + c * q1, v, t + c * tau, self._step_inputs(c, k)
            return
        t, tau, _ = self._step(k)
        v = (q1 - q0) / tau
        for c, w in zip(self._c, self._w):
            tc = self.time(k, c)
            yield c, w, (1.0 - c) * q0 + c * q1, v, tc, self.inputs(tc)

    def _step_inputs(self, c: float, k: int) -> dict:
        """The signals at ``t_k + c τ_k`` (the values of :meth:`inputs`), sampled once for every step."""
        X = self._step_x.get(c)
        if X is None:
            times = self.time(slice(None), c)
            X = self._step_x[c] = {name: s.sample(times) for name, s in self.system.signals.items()}
        return {name: a[k] for name, a in X.items()}

    def _end_inputs(self, k):
        """``((t₀, x₀), (t₁, x₁))`` at the two ends of step ``k`` when the cost is nudged, else ``None``."""
        if self.system.cost is None or not nudged(self.beta):
            return None
        t0, t1 = self.time(k), self.time(k, 1.0)
        return (t0, self.inputs(t0)), (t1, self.inputs(t1))

    # -- value and derivatives ----------------------------------------------
    def value(self, k, q0, q1):
        """``L_d(q₀, q₁; t_k, τ_k)`` per batch member."""
        sys, th = self.system, self.theta
        a = self._step(k)[2]
        a = a[:, 0] if np.ndim(a) else a
        out = 0.0
        for _c, w, q, v, t, x in self._nodes(k, q0, q1):
            out = out + a * w * sys.lagrangian(q, v, th, x, t)
        ends = self._end_inputs(k)
        if ends:
            for qe, (t, x) in zip((q0, q1), ends):
                out = out + self.beta * 0.5 * a * sys.cost.cost(qe, x, t)
        return out

    def momenta(self, k, q0, q1):
        """``(D₁L_d, D₂L_d)`` at step ``k``."""
        sys, th = self.system, self.theta
        _, tau, a = self._step(k)
        s = np.sign(tau)
        d1 = d2 = None
        gradient = self._step_gradient() if isinstance(k, (int, np.integer)) else sys.gradient
        for c, w, q, v, t, x in self._nodes(k, q0, q1):
            lq, lv = gradient(q, v, th, x, t)
            sv = (s * w) * lv  # the weights multiplied first: one product per array
            e1, e2 = (a * w * (1.0 - c)) * lq - sv, (a * w * c) * lq + sv
            d1, d2 = (e1, e2) if d1 is None else (d1 + e1, d2 + e2)
        ends = self._end_inputs(k)
        if ends:
            (t0, x0), (t1, x1) = ends
            d1 = d1 + self.beta * 0.5 * a * sys.cost.gradient(q0, x0, t0)
            d2 = d2 + self.beta * 0.5 * a * sys.cost.gradient(q1, x1, t1)
        return d1, d2

    def _step_gradient(self):
        """``(q, v, θ, x, t) ↦ (∂_q L, ∂_v L)`` of the system (the values of ``system.gradient`` to round-off) with
        the potential terms' force kernels prepared once (:func:`glep.system.position_force_kernel`), the
        velocity terms' gradients added."""
        if self._gradient is None:
            kernel = position_force_kernel(self.system, self.theta, 0.0)
            vel = [t for t in self.system.terms if t.depends_on_velocity]

            def gradient(q, v, th, x, t):
                lq, lv = kernel(q, x, t), None
                for term in vel:
                    gq, gv = term.gradient(q, v, th, x, t)
                    if gq is not None:
                        lq = lq + gq
                    if gv is not None:
                        lv = gv if lv is None else lv + gv
                return lq, np.zeros_like(lq) if lv is None else lv

            self._gradient = gradient
        return self._gradient

    def hessian_action(self, k, q0, q1, dq0, dq1):
        """Second variation of ``L_d``: ``(∂(D₁L_d), ∂(D₂L_d))`` along ``(dq₀, dq₁)``.

        ``dq₀`` or ``dq₁`` may be ``None`` (zero); they may carry a leading
        tangent axis.
        """
        sys, th = self.system, self.theta
        _, tau, a = self._step(k)
        s = np.sign(tau)
        ref = dq0 if dq0 is not None else dq1
        z = np.zeros_like(ref)
        a0 = z if dq0 is None else dq0
        a1 = z if dq1 is None else dq1
        dv = (a1 - a0) / tau
        h1 = h2 = 0.0
        for c, w, q, v, t, x in self._nodes(k, q0, q1):
            hq, hv = sys.hessian_action(q, v, th, x, t, (1.0 - c) * a0 + c * a1, dv)
            h1 = h1 + a * w * ((1.0 - c) * hq) - s * w * hv
            h2 = h2 + a * w * (c * hq) + s * w * hv
        ends = self._end_inputs(k)
        if ends:
            (t0, x0), (t1, x1) = ends
            if dq0 is not None:
                h1 = h1 + self.beta * 0.5 * a * sys.cost.hessian_action(q0, x0, t0, dq0)
            if dq1 is not None:
                h2 = h2 + self.beta * 0.5 * a * sys.cost.hessian_action(q1, x1, t1, dq1)
        return h1 + z, h2 + z

    def theta_gradient(self, k, q0, q1):
        """``Σ_batch ∂_θ L_d(q₀, q₁; t_k, τ_k)``: the summand of the contrast.

        Terms return batch sums, so with one step per member (an index array
        ``k``) the members are grouped by equal ``|τ_k|`` (to 12 digits).
        """
        if np.ndim(self.mesh.steps[k]) == 0:
            return self._theta_gradient_group(k, q0, q1, abs(float(self.mesh.steps[k])))
        a = np.abs(self.mesh.steps[k])
        keys = np.round(a / max(float(np.max(a, initial=0.0)), 1e-300), 12)
        acc: dict = {}
        idx = np.arange(len(self.mesh.steps))[k]
        for key in np.unique(keys):
            sel = keys == key
            _add(acc, self._theta_gradient_group(idx[sel], q0[sel], q1[sel], float(a[sel][0])))
        return acc

    def _theta_gradient_group(self, k, q0, q1, a: float) -> dict:
        acc: dict = {}
        for _c, w, q, v, t, x in self._nodes(k, q0, q1):
            _add(acc, self.system.theta_gradient(q, v, self.theta, x, t), a * w)
        return acc

    def theta_vjp(self, k, q0, q1, a0, a1):
        """``Σ_batch ∂_θ (D₁L_d · a₀ + D₂L_d · a₁)`` (weights ``|τ_k| w_i`` go into the directions)."""
        _, tau, a = self._step(k)
        acc: dict = {}
        for c, w, q, v, t, x in self._nodes(k, q0, q1):
            _add(acc, self.system.theta_vjp(q, v, self.theta, x, t, a * w * ((1.0 - c) * a0 + c * a1),
                                            a * w * ((a1 - a0) / tau)))
        return acc

    def theta_jvp(self, k, q0, q1, dtheta):
        """``(∂_θ D₁L_d · δθ, ∂_θ D₂L_d · δθ)`` with a leading tangent axis."""
        _, tau, a = self._step(k)
        s = np.sign(tau)
        j1 = j2 = 0.0
        for c, w, q, v, t, x in self._nodes(k, q0, q1):
            hq, hv = self.system.theta_jvp(q, v, self.theta, x, t, dtheta)
            if hq is not None:
                j1 = j1 + a * w * (1.0 - c) * hq
                j2 = j2 + a * w * c * hq
            if hv is not None:
                j1 = j1 - s * w * hv
                j2 = j2 + s * w * hv
        return j1, j2

    # -- the Jacobian D₁₂L_d of an implicit step, assembled from its parts ----
    def _prepare_d12(self):
        r"""The parts of ``D₁₂L_d = Σ_i w_i [|τ| c_i(1−c_i) L_qq(q_i) + s(1−c_i) L_qv − s c_i L_vq − L_vv/|τ|]``
        (``s = sign τ``) that are prepared once per ``θ``:

        * the constant blocks ``(H_qq, H_qv, H_vq, H_vv)`` (``n × n``, column ``j`` the response to ``e_j``)
          of the terms with :attr:`~glep.terms.Term.hessian_constant` and of the potential terms whose
          :meth:`~glep.terms.PotentialTerm.potential_hessian_entries` do not depend on ``q`` or ``t``;
        * the potential terms with ``q``-dependent entries: ``(term, flat indices, unique)``;
        * the remaining terms, whose blocks are probed with :meth:`~glep.terms.Term.hessian_action` per call.
        """
        n, th = self.system.n, self.theta
        eye = np.eye(n)[:, None, :]  # n directions on a batch of one
        zq, zv, zx = np.zeros((1, n)), np.zeros((1, n)), self.inputs(self.time(0, 0.5)) if self.N else {}
        Hqq, Hqv, Hvq, Hvv = (np.zeros((n, n)) for _ in range(4))
        entries, generic = [], []

        def cols(a):  # (n, 1, n) responses to e_j -> matrix with column j
            return np.zeros((n, n)) if a is None else np.broadcast_to(a, (n, 1, n))[:, 0, :].T

        for term in self.system.terms:
            if term.hessian_constant:
                hq, hv = term.hessian_action(zq, zv, th, zx, 0.0, eye, None)
                Hqq += cols(hq)
                Hvq += cols(hv)
                hq, hv = term.hessian_action(zq, zv, th, zx, 0.0, None, eye)
                Hqv += cols(hq)
                Hvv += cols(hv)
                continue
            entries_of = None if term.depends_on_velocity else getattr(term, "potential_hessian_entries", None)
            got = None if entries_of is None else entries_of(zq, th, zx, 0.0)
            if got is None:
                generic.append(term)
                continue
            rows, cols_, vals = got
            flat = np.asarray(rows) * n + np.asarray(cols_)
            if np.ndim(vals) == 1:  # independent of q and t: −∇²V once
                np.add.at(Hqq.reshape(-1), flat, -np.asarray(vals))
            else:
                entries.append((term, _progression(flat) or flat, len(np.unique(flat)) == len(flat)))
        return (Hqq, Hqv, Hvq, Hvv), entries, generic

    def d12_matrix(self, k, q0, q1):
        """Dense ``D₁₂L_d`` per batch member, ``(B, n, n)`` (column ``j`` = ``D₁₂ e_j``): the blocks constant
        in ``θ`` prepared once (:meth:`_prepare_d12`), the ``q``-dependent Hessian entries scattered in, the
        other terms probed with their Hessian actions (the generic :meth:`AbstractDiscreteLagrangian.d12_matrix`
        for the cell layout)."""
        if not isinstance(k, (int, np.integer)) or np.ndim(q0) != 2:
            return super().d12_matrix(k, q0, q1)
        _, tau, a = self._step(k)
        return self._d12_assemble(a, tau, q0, q1, lambda: self._nodes(k, q0, q1))

    def _d12_assemble(self, a, tau, q0, q1, nodes: Callable):
        """``D₁₂L_d`` of a step of size ``a = |τ|`` from the prepared parts and, when some term's block
        depends on the state, the step's quadrature ``nodes()`` (``(c, w, q, v, t, x)`` per node)."""
        if self._d12_parts is None:
            self._d12_parts = self._prepare_d12()
        (Hqq, Hqv, Hvq, Hvv), entries, generic = self._d12_parts
        sg = 1.0 if tau > 0 else -1.0
        c, w = self._c, self._w
        key, C = self._d12_const
        if key != (a, sg):  # the constant part for this step size (once on a uniform mesh)
            C = (np.sum(w * a * c * (1.0 - c)) * Hqq + sg * np.sum(w * (1.0 - c)) * Hqv - sg * np.sum(w * c) * Hvq
                 - np.sum(w) / a * Hvv)
            self._d12_const = ((a, sg), C)
        B, n = q0.shape
        J = np.empty((B, n, n), np.result_type(q0, q1, C))
        J[...] = C
        if not (entries or generic):
            return J
        Jf = J.reshape(B, n * n)
        for ci, wi, q, v, t, x in nodes():
            f = a * wi * ci * (1.0 - ci)
            for term, flat, unique in entries:
                vals = term.potential_hessian_entries(q, self.theta, x, t)[2]
                if unique:  # a slice (e.g. the diagonal, stride n + 1) is a view: subtracted in place
                    Jf[:, flat] -= f * vals
                else:
                    np.add.at(Jf, (slice(None), flat), -f * vals)
            if generic:
                eye = np.broadcast_to(np.eye(n)[:, None, :], (n, B, n))
                for term in generic:
                    hq, hv = term.hessian_action(q, v, self.theta, x, t, ci * eye, eye / tau)
                    h1 = 0.0
                    if hq is not None:
                        h1 = h1 + a * wi * (1.0 - ci) * hq
                    if hv is not None:
                        h1 = h1 - sg * wi * hv
                    J += np.moveaxis(np.broadcast_to(h1, (n, B, n)), 0, -1)
        return J

    def _step_rule(self, tau) -> tuple:
        """``|τ|`` and the rule's nodes ``(c, w, |τ|w(1 − c), |τ|wc, sign(τ)w)`` for a step of signed size ``τ``,
        as :meth:`momenta` forms them (kept for the last step size: once on a uniform mesh)."""
        key, rule = self._rule_at
        if key != tau:
            a, s = np.abs(tau), np.sign(tau)
            rule = (a, [(c, w, a * w * (1.0 - c), a * w * c, s * w) for c, w in zip(self._c, self._w)])
            self._rule_at = (tau, rule)
        return rule

    def step_equations(self, k, q0):
        """:meth:`AbstractDiscreteLagrangian.step_equations` with the step's data prepared once for all Newton
        iterations: its size and sign, each node's time, inputs, weights and ``(1 − c)q₀``, the nudged cost's
        gradient at ``q₀`` (the same operations as :meth:`momenta` and :meth:`d12_matrix`, bit for bit)."""
        if self.sampler is not None or not isinstance(k, (int, np.integer)) or np.ndim(q0) != 2:
            return super().step_equations(k, q0)
        sys, th = self.system, self.theta
        tau, t0 = self.mesh.steps[k], self.mesh.starts[k]
        a, rule = self._step_rule(tau)
        gradient = self._step_gradient()
        nodes = [(c, w, (1.0 - c) * q0, t0 + c * tau, self._step_inputs(c, k), f1, f2, sw) for c, w, f1, f2, sw in rule]
        ends = self._end_inputs(k)
        if ends:
            (te0, xe0), (te1, xe1) = ends
            cost0 = self.beta * 0.5 * a * sys.cost.gradient(q0, xe0, te0)
        state: list = [None, None]  # the last q₁ and its velocity

        def velocity(q1):
            if state[0] is not q1:
                state[0], state[1] = q1, (q1 - q0) / tau
            return state[1]

        def momenta(q1):
            v, d1, d2 = velocity(q1), None, None
            for c, _w, q0c, t, x, f1, f2, sw in nodes:
                lq, lv = gradient(q0c + c * q1, v, th, x, t)
                sv = sw * lv
                e1, e2 = f1 * lq - sv, f2 * lq + sv
                d1, d2 = (e1, e2) if d1 is None else (d1 + e1, d2 + e2)
            if ends:
                d1 = d1 + cost0
                d2 = d2 + self.beta * 0.5 * a * sys.cost.gradient(q1, xe1, te1)
            return d1, d2

        def node_states(q1):
            v = velocity(q1)
            return [(c, w, q0c + c * q1, v, t, x) for c, w, q0c, t, x, *_ in nodes]

        def solve(q1, r):
            return dense_solve(self._d12_assemble(a, tau, q0, q1, lambda: node_states(q1)), r)

        return momenta, solve

    def solve_d12(self, k, q0, q1, rhs, transpose: bool = False):
        """Solve ``D₁₂L_d X = rhs`` (or its transpose); ``D₁₂ = −M/|τ|`` on the explicit path."""
        if self.explicit:
            return -self.h * self.system.kinetic.mass_solve(rhs, self.theta)
        return super().solve_d12(k, q0, q1, rhs, transpose)

    # -- sums along a stored chain ------------------------------------------
    def _chain(self) -> np.ndarray:
        if self.mesh.nodes is None:
            raise InputError("node data need a chain of steps (a StepMesh with nodes), not independent cells")
        return self.mesh.nodes

    def all_node_inputs(self) -> dict:
        """Signals at every node, arrays ``(N+1, B or 1, m)`` (sampled once)."""
        if self._node_x is None:
            times = self._chain()
            self._node_x = {k: s.sample(times) for k, s in self.system.signals.items()}
        return self._node_x

    def node_inputs(self, j: int):
        """Signals at node ``j``."""
        return {k: a[j] for k, a in self.all_node_inputs().items()}

    def node_time(self, j: int) -> float:
        return float(self._chain()[j])

    def node_weights(self) -> np.ndarray:
        """Trapezoid weights ``w_j = (|τ_{j−1}| + |τ_j|)/2`` of all nodes, shape ``(N+1,)`` (computed once)."""
        if getattr(self, "_node_w", None) is None:
            a = np.abs(self.mesh.steps)
            w = np.zeros(self.N + 1)
            w[1:] += 0.5 * a
            w[:-1] += 0.5 * a
            self._node_w = w
        return self._node_w

    def node_weight(self, j: int) -> float:
        """Trapezoid weight ``(|τ_{j−1}| + |τ_j|)/2`` of node ``j``."""
        return float(self.node_weights()[j])

    def _inputs_on_steps(self, c: float, B: int):
        """Signals at ``t_k + c τ_k`` for every step, broadcast and flattened to ``(N·B, m)``."""
        key = (float(c), B)
        if key not in self._stacked_x:
            times = self.time(slice(None), c)
            X = {k: s.sample(times) for k, s in self.system.signals.items()}
            self._stacked_x[key] = _flat_inputs(X, slice(None), B)
        return self._stacked_x[key]

    def _scalar_time_terms(self) -> bool:
        return any(term.explicit_time for term in self.system.terms)

    def theta_gradient_sum(self, Q, activations: dict | None = None):
        """``Σ_k Σ_batch ∂_θ L_d(q_k, q_{k+1})`` along a stored chain (the contrast).

        Evaluated on all steps at once (the terms receive one time per step and
        batch member), unless a term needs a scalar ``t`` (``explicit_time``)
        or the steps are not uniform.  ``activations``: the node activations the
        stepping pass recorded along ``Q`` (:func:`glep.ivp.stepping.integrate`),
        ``{term index: (N+1, B, k)}``; with the trapezoid rule those terms take
        ``∂_θL`` from them (the same values to round-off, without recomputing them).
        """
        N = self.N
        if self._scalar_time_terms() or not isinstance(self.h, float):
            acc: dict = {}
            for k in range(N):
                _add(acc, self.theta_gradient(k, Q[k], Q[k + 1]))
            return acc
        h, tau = self.h, self.mesh.steps[:, None, None]
        B, n = Q.shape[1], Q.shape[2]
        terms = [t for t in self.system.terms if t.parameters]
        acc = {}
        if self.rule == TRAPEZOID:
            # Lobatto nodes are grid nodes: position-only terms once per node
            acts = activations or {}
            pots = [(i, t) for i, t in enumerate(self.system.terms) if t.parameters and not t.depends_on_velocity]
            acc = trapezoid_node_sum([t for _, t in pots], self.theta, Q, h, self.all_node_inputs(), self._chain(),
                                     [acts.get(i) for i, _ in pots])
            terms = [t for t in terms if t.depends_on_velocity]
        if not terms:
            return acc
        v = ((Q[1:] - Q[:-1]) / tau).reshape(N * B, n)
        # ½vᵀM(θ)v reads v alone, the same at every quadrature node: one evaluation, weight h·Σw (for the
        # two-node rules h·½ + h·½, the same sum bit for bit); the positions are interpolated only if read
        for term in [t for t in terms if isinstance(t, KineticTerm)]:
            _add(acc, term.theta_gradient(None, v, self.theta, None, None), h * float(np.sum(self._w)))
        terms = [t for t in terms if not isinstance(t, KineticTerm)]
        for c, w in zip(self._c, self._w) if terms else ():
            q = ((1.0 - c) * Q[:-1] + c * Q[1:]).reshape(N * B, n)
            x = self._inputs_on_steps(c, B)
            t = np.repeat(self.time(slice(None), c), B)
            for term in terms:
                _add(acc, term.theta_gradient(q, v, self.theta, x, t), h * w)
        return acc

    def theta_vjp_sum(self, Q, Lam):
        """``Σ_k Σ_batch ∂_θ (D₁L_d(q_k, q_{k+1})·λ_k + D₂L_d(q_k, q_{k+1})·λ_{k+1})`` along ``Q``.

        The adjoint's parameter gradient (up to sign).  ``theta_vjp`` is linear
        in its directions, so the quadrature weights ``|τ_k| w_i`` go into them
        and every step is one batch member of a single call per quadrature node
        (one time per member), unless a term needs a scalar ``t``.
        """
        N = self.N
        if self._scalar_time_terms():
            acc: dict = {}
            for k in range(N):
                _add(acc, self.theta_vjp(k, Q[k], Q[k + 1], Lam[k], Lam[k + 1]))
            return acc
        B, n = Q.shape[1], Q.shape[2]
        tau = self.mesh.steps[:, None, None]
        a = np.abs(tau)
        v = ((Q[1:] - Q[:-1]) / tau).reshape(N * B, n)
        b = (a * (Lam[1:] - Lam[:-1]) / tau)
        acc = {}
        for c, w in zip(self._c, self._w):
            q = ((1.0 - c) * Q[:-1] + c * Q[1:]).reshape(N * B, n)
            lam = (a * ((1.0 - c) * Lam[:-1] + c * Lam[1:])).reshape(N * B, n)
            t = np.repeat(self.time(slice(None), c), B)
            x = self._inputs_on_steps(c, B)
            _add(acc, self.system.theta_vjp(q, v, self.theta, x, t, w * lam, w * b.reshape(N * B, n)))
        return acc

    # -- explicit (separable, trapezoid) Störmer–Verlet pieces ---------------
    def force(self, k: int, end: int, q):
        """``∂_q L_β`` at node ``k + end`` (separable systems): the kernel of :meth:`node_force` that the
        stepping loops call (the terms' force kernels, :func:`glep.system.position_force` to round-off)."""
        return self.node_force()(k + end, q)

    def node_force(self, activations: dict | None = None):
        """``(j, q) ↦ ∂_q L_β`` at node ``j``: :meth:`force` with the terms' kernels prepared once
        (:func:`glep.system.position_force_kernel`) and the node inputs sampled once.

        With ``activations`` (from :meth:`activation_buffers`) the kernel also leaves each such term's
        activation at node ``j`` in ``activations[i][j]`` (a new kernel, not cached)."""
        if activations:
            return self._node_kernel(position_force_kernel(self.system, self.theta, self.beta, activations), True)
        if self._force_kernel is None:
            self._force_kernel = self._node_kernel(position_force_kernel(self.system, self.theta, self.beta))
        return self._force_kernel

    def _node_kernel(self, kernel, indexed: bool = False):
        X = self.all_node_inputs()
        items, times = list(X.items()), self._chain().tolist()

        def force(j: int, q):
            return kernel(q, {name: a[j] for name, a in items}, times[j])  # a new dict per node: callers may keep it

        def recording(j: int, q):
            return kernel(q, {name: a[j] for name, a in items}, times[j], j)

        return recording if indexed else force

    def activation_buffers(self, batch_shape: tuple, dtype) -> dict[int, np.ndarray]:
        """:func:`activation_buffers` of this system along the ``N + 1`` nodes, to record along a trajectory
        for :meth:`theta_gradient_sum`."""
        return activation_buffers(self.system, self.theta, self.N, batch_shape, dtype)

    def mass_kernels(self):
        """``(p ↦ M⁻¹p, v ↦ Mv)`` at this ``θ`` (:meth:`glep.terms.KineticTerm.mass_kernels`)."""
        return self.system.kinetic.mass_kernels(self.theta)

    def force_hessian_action(self, k: int, end: int, q, dq):
        j = k + end
        return position_hessian_action(self.system, q, self.theta, self.node_inputs(j), self.node_time(j), dq,
                                       self.beta)

    def force_theta_jvp(self, k: int, end: int, q, dtheta):
        """``∂_θ(∂_q L) · δθ`` of the velocity-independent terms at node ``k + end``."""
        j = k + end
        return position_theta_jvp(self.system, q, self.theta, self.node_inputs(j), self.node_time(j), dtheta)

    def mass_apply(self, v):
        return self.system.kinetic.mass_apply(v, self.theta)

    def mass_solve(self, p):
        return self.system.kinetic.mass_solve(p, self.theta)


def Mirrored(dl: DiscreteLagrangian) -> DiscreteLagrangian:  # noqa: N802 (kept name: it was a class)
    """``dl.mirrored()``: ``L̃_d(a, b, j) = L_d(b, a, N − 1 − j)``, whose forward integration is the
    backward integration of ``L_d`` (trajectories read backwards, ``q̃_j = q_{N−j}``, momenta negated,
    ``p̃_j = −p_{N−j}``)."""
    return dl.mirrored()
