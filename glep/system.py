r"""A Lagrangian system: the one definition every backend works from.

``L(q, v, θ, t) = Σ_i L_i(q, v, θ, t)`` is a sum of :class:`glep.terms.Term`
objects, with time-dependent inputs ``x(t)`` and targets ``y(t)`` held as named
:class:`glep.Signal` objects, a cost ``c(q, t)`` and an optional terminal cost
``c_T``.  The augmented Lagrangian is ``L_β = L + β c``.

The ``ivp`` backend evaluates the NumPy methods of the terms; the ``bvp``
backend assembles ``ufl_lagrangian`` on a time mesh; :class:`glep.UFLTerm`
derives all NumPy derivatives from a UFL expression, so users never write a
derivative by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from glep.costs import TerminalCost, TrackingCost
from glep.errors import InputError
from glep.signals import Signal, check_signals
from glep.terms import KineticTerm, Term, add_into
from glep.validation import check_params


def nudged(beta) -> bool:
    """Whether a nudging strength (a scalar, or one per batch member of shape ``(B, 1)``) is non-zero."""
    if isinstance(beta, (int, float, complex)):
        return beta != 0
    return bool(np.any(beta != 0))


def _add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _names(terms: list[Term]) -> str:
    return ", ".join(t.describe() for t in terms)


def _non_separable_reason(kinetic: list[KineticTerm], velocity_terms: list[Term]) -> str | None:
    r"""Why ``L`` is not of the separable form ``½vᵀM(θ)v − V(q, θ, x, t)``, or ``None`` if it is.

    Separable means: exactly one :class:`KineticTerm` (a position-independent
    mass) and no other term depending on the velocity.  The reason names the
    offending terms.
    """
    parts = []
    if velocity_terms:
        verb = "depends" if len(velocity_terms) == 1 else "depend"
        parts.append(f"{_names(velocity_terms)} {verb} on the velocity v")
    if not kinetic and velocity_terms:
        parts.append("it has no KineticTerm ½vᵀM(θ)v with a position-independent mass (if the kinetic energy has "
                     "that form, give it as one, e.g. glep.DiagonalMass, and the velocity-free rest as other terms)")
    elif not kinetic:
        parts.append("it has no KineticTerm (½vᵀM(θ)v with a position-independent mass, e.g. glep.DiagonalMass)")
    elif len(kinetic) > 1:
        parts.append(f"it has {len(kinetic)} KineticTerms ({_names(kinetic)}); merge them into one")
    return "; ".join(parts) or None


class LagrangianSystem:
    """A Lagrangian system with inputs, targets and a cost.

    Parameters
    ----------
    n:
        Number of degrees of freedom (the length of ``q``).
    terms:
        The summands of ``L``.
    cost:
        The instantaneous cost ``c(q, t)`` (optional).
    terminal_cost:
        The terminal cost ``c_T(q(T))`` (optional).
    signals:
        Named input and target signals read by the terms and the cost.
    name:
        A label used in reports.
    """

    def __init__(self, n: int, terms: Iterable[Term], *, cost: TrackingCost | None = None,
                 terminal_cost: TerminalCost | None = None,
                 signals: Mapping[str, Signal] | None = None, name: str = "system"):
        self.n = int(n)
        self.terms = list(terms)
        if not self.terms:
            raise InputError("terms must contain at least one term")
        for term in self.terms:
            if term.n != self.n:
                raise InputError(f"term {term.describe()} has n={term.n}, system has n={self.n}")
        self.cost = cost
        self.terminal_cost = terminal_cost
        self.signals = dict(signals or {})
        self.name = name
        params: dict[str, tuple] = {}
        for term in self.terms:
            for key, shape in term.parameters.items():
                if key in params:
                    raise InputError(f"parameter name {key!r} is used by two terms; give them distinct names")
                params[key] = tuple(shape)
        self.parameters = params
        needed = {s for term in self.terms for s in term.inputs}
        if cost is not None:
            needed |= set(cost.inputs)
        missing = needed - set(self.signals)
        if missing:
            raise InputError(f"signals is missing {sorted(missing)} (read by the terms or the cost)")
        dims = {k: s.dim for k, s in self.signals.items()}
        for term in self.terms:
            learn = getattr(term, "set_input_dims", None)  # terms that size their inputs from the signals
            if learn is not None:
                learn(dims)
        check_signals(self)
        kinetic = [t for t in self.terms if isinstance(t, KineticTerm)]
        self.kinetic: KineticTerm | None = kinetic[0] if len(kinetic) == 1 else None
        #: Terms other than the kinetic term that depend on the velocity (by ``depends_on_velocity``).
        self.velocity_terms: list[Term] = [t for t in self.terms
                                           if not isinstance(t, KineticTerm) and t.depends_on_velocity]
        self.non_separable_reason: str | None = _non_separable_reason(kinetic, self.velocity_terms)
        self.is_separable = self.non_separable_reason is None

    # -- parameters and signals --------------------------------------------
    def check_params(self, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate ``params`` against the declared parameter shapes and each term's own rules
        (a term's ``check_values(theta)``, e.g. positive masses)."""
        theta = check_params(params, self.parameters)
        for term in self.terms:
            check = getattr(term, "check_values", None)
            if check is not None:
                check(theta)
        return theta

    @property
    def batch(self) -> int | None:
        """Batch size implied by the signals (``None`` if unbatched)."""
        sizes = {s.batch for s in self.signals.values() if s.batch is not None}
        if len(sizes) > 1:
            raise InputError(f"signals have inconsistent batch sizes {sorted(sizes)}")
        return sizes.pop() if sizes else None

    def inputs_at(self, t: float) -> dict[str, np.ndarray]:
        """Every signal evaluated at ``t`` (arrays of shape ``(B or 1, m)``)."""
        return {k: s(t) for k, s in self.signals.items()}

    def with_signals(self, **signals: Signal) -> LagrangianSystem:
        """A copy with some signals replaced (e.g. new inputs for a batch)."""
        new = dict(self.signals)
        new.update(signals)
        return LagrangianSystem(self.n, self.terms, cost=self.cost, terminal_cost=self.terminal_cost,
                                signals=new, name=self.name)

    def time_reversed(self, T: float) -> LagrangianSystem:
        """The system replayed backwards on ``[0, T]``: every signal reversed, and every term
        that reads ``t`` itself replaced by its ``time_reversed(T)`` (``t → T − t``).

        For a time-reversible system this is the system the echo runs.

        Raises
        ------
        InputError
            A term reads ``t`` as a scalar (``explicit_time``) and cannot be reversed.
        """
        rev = {k: s.reversed(T) for k, s in self.signals.items()}
        return LagrangianSystem(self.n, [_reversed_term(term, T) for term in self.terms], cost=self.cost,
                                terminal_cost=self.terminal_cost, signals=rev, name=f"{self.name} (reversed)")

    # -- the Lagrangian and its derivatives ---------------------------------
    def lagrangian(self, q, v, theta, x, t, beta=0.0):
        """``L_β(q, v, θ, t)`` for a batch, shape ``(B,)``."""
        out = sum(term.lagrangian(q, v, theta, x, t) for term in self.terms)
        if nudged(beta) and self.cost is not None:
            b = np.reshape(beta, np.shape(beta)[:-1]) if np.ndim(beta) else beta  # (B, 1) -> (B,)
            out = out + b * self.cost.cost(q, x, t)
        return out

    def gradient(self, q, v, theta, x, t, beta=0.0):
        """``(∂_q L_β, ∂_v L_β)``, each ``(B, n)`` (zeros where a block vanishes)."""
        gq = gv = None
        for term in self.terms:
            a, b = term.gradient(q, v, theta, x, t)
            gq, gv = _add(gq, a), _add(gv, b)
        if nudged(beta) and self.cost is not None:
            gq = _add(gq, beta * self.cost.gradient(q, x, t))
        shape = np.broadcast_shapes(q.shape, v.shape)
        dtype = np.result_type(q, v, beta)
        gq = np.zeros(shape, dtype) if gq is None else np.broadcast_to(gq, shape)
        gv = np.zeros(shape, dtype) if gv is None else np.broadcast_to(gv, shape)
        return gq, gv

    def hessian_action(self, q, v, theta, x, t, dq, dv, beta=0.0):
        """Second-derivative action ``(L_qq dq + L_qv dv, L_vq dq + L_vv dv)`` of ``L_β``."""
        hq = hv = None
        for term in self.terms:
            a, b = term.hessian_action(q, v, theta, x, t, dq, dv)
            hq, hv = _add(hq, a), _add(hv, b)
        if nudged(beta) and self.cost is not None and dq is not None:
            hq = _add(hq, beta * self.cost.hessian_action(q, x, t, dq))
        ref = dq if dq is not None else dv
        hq = np.zeros_like(ref) if hq is None else hq
        hv = np.zeros_like(ref) if hv is None else hv
        return hq, hv

    def theta_gradient(self, q, v, theta, x, t):
        """``Σ_batch ∂_θ L`` as a dict (parameters a term does not read are absent)."""
        acc: dict[str, np.ndarray] = {}
        for term in self.terms:
            for k, g in term.theta_gradient(q, v, theta, x, t).items():
                add_into(acc, k, g)
        return acc

    def theta_vjp(self, q, v, theta, x, t, a, b):
        """``Σ_batch ∂_θ (∂_q L · a + ∂_v L · b)`` as a dict."""
        acc: dict[str, np.ndarray] = {}
        for term in self.terms:
            for k, g in term.theta_vjp(q, v, theta, x, t, a, b).items():
                add_into(acc, k, g)
        return acc

    def theta_jvp(self, q, v, theta, x, t, dtheta):
        """``(∂_θ∂_q L · δθ, ∂_θ∂_v L · δθ)`` with a leading tangent axis ``K``."""
        hq = hv = None
        for term in self.terms:
            a, b = term.theta_jvp(q, v, theta, x, t, dtheta)
            hq, hv = _add(hq, a), _add(hv, b)
        return hq, hv

    def cost_value(self, q, x, t):
        """``c(q, t)`` per batch member (zeros without a cost)."""
        if self.cost is None:
            return np.zeros(q.shape[:-1])
        return self.cost.cost(q, x, t)

    # -- structure ----------------------------------------------------------
    def ufl_lagrangian(self, q, v, theta, x, t, beta=0.0):
        """``L_β`` as a UFL expression (what the finite-element backend assembles)."""
        expr = sum(term.ufl_lagrangian(q, v, theta, x, t) for term in self.terms)
        if self.cost is not None and not (isinstance(beta, (int, float)) and beta == 0):
            expr = expr + beta * self.cost.ufl_cost(q, x, t)
        return expr

    def velocity_from_momentum(self, q, p, theta, x, t, *, rtol: float = 1e-13, maxiter: int = 30):
        """Invert the Legendre map ``p = ∂_v L(q, v)`` for ``v``.

        Explicit (``v = M⁻¹p``) for a separable system; otherwise the dense
        Newton of :mod:`glep._newton` with the exact ``∂_vv L`` (which must be invertible: a regular
        Lagrangian).
        """
        if self.is_separable:
            return self.kinetic.mass_solve(p, theta)
        from glep._newton import dense_newton, residual_test

        eye = np.broadcast_to(np.eye(self.n)[:, None, :], (self.n,) + np.shape(p))

        def residual(v):
            return self.gradient(q, v, theta, x, t)[1] - p, None

        def solve(v, r):
            Lvv = np.moveaxis(self.hessian_action(q, v, theta, x, t, None, eye)[1], 0, -1)
            return np.linalg.solve(Lvv, r[..., None])[..., 0]

        return dense_newton(residual, solve, np.zeros_like(p), converged=residual_test(rtol, p), maxiter=maxiter,
                            label="Legendre transform: p = ∂_v L(q, v) solved for v")

    def hamiltonian(self, q, p, theta, x, t, beta=0.0):
        """``H_β(q, p) = pᵀv − L_β(q, v)`` with ``v`` from the Legendre transform."""
        v = self.velocity_from_momentum(q, p, theta, x, t)
        return np.sum(p * v, axis=-1) - self.lagrangian(q, v, theta, x, t, beta)

    def reversibility_defect(self, theta, *, samples: int = 3, T: float = 1.0, seed: int = 0) -> float:
        r"""Largest relative ``|L(q, v) − L(q, −v)|`` over random states and times.

        Zero (to round-off) for a time-reversible system: the echo then
        retraces the forward trajectory.  Inputs enter through ``t`` and are
        replayed in reverse by the echo, so only the parity in ``v`` matters.
        """
        rng = np.random.default_rng(seed)
        worst = 0.0
        for t in np.linspace(0.0, T, samples):
            x = self.inputs_at(t)
            B = max([1] + [a.shape[0] for a in x.values()])
            q = rng.standard_normal((B, self.n))
            v = rng.standard_normal((B, self.n))
            lp = self.lagrangian(q, v, theta, x, t)
            lm = self.lagrangian(q, -v, theta, x, t)
            scale = np.maximum(np.abs(lp) + np.abs(lm), 1.0)
            worst = max(worst, float(np.max(np.abs(lp - lm) / scale)))
        return worst

    def is_time_reversible(self, theta, tol: float = 1e-12) -> bool:
        """Checked, not assumed: ``reversibility_defect(theta) <= tol``."""
        return self.reversibility_defect(theta) <= tol

    def __repr__(self) -> str:
        terms = ", ".join(t.describe() for t in self.terms)
        return f"LagrangianSystem({self.name!r}, n={self.n}, terms=[{terms}])"


def _reversed_term(term: Term, T: float) -> Term:
    """``term`` with its own time reversed (``t → T − t``); terms not reading ``t`` are unchanged."""
    reverse = getattr(term, "time_reversed", None)
    if reverse is not None:
        return reverse(T)
    if term.explicit_time:
        raise InputError(f"term {term.describe()} reads t itself and has no time_reversed(T): the echo cannot "
                         "replay it backwards; give its time dependence through an input Signal (or write it "
                         "as a glep.UFLTerm, which reverses its t)")
    return term


def position_force(system: LagrangianSystem, q, theta, x, t, beta=0.0):
    """``∂_q L_β`` of the velocity-independent terms (the force of a separable system)."""
    out, owned = None, False
    for term in system.terms:
        if not term.depends_on_velocity:
            g = term.gradient(q, None, theta, x, t)[0]
            if g is not None:
                owned = out is not None
                out = g if out is None else out + g
    if out is None:
        out, owned = np.zeros_like(q), True
    if nudged(beta) and system.cost is not None:
        dtype = np.result_type(out, q, beta)
        if not owned or out.shape != q.shape or out.dtype != dtype:
            out = np.broadcast_to(out, q.shape).astype(dtype)  # a private copy to add into
        system.cost.add_gradient(out, q, x, t, beta)
        return out
    return out if out.shape == q.shape else out + np.zeros_like(q)


def position_force_kernel(system: LagrangianSystem, theta, beta=0.0, activations: dict | None = None):
    """``(q, x, t) ↦ ∂_q L_β``: :func:`position_force` with everything that depends on ``θ`` and ``β``
    alone prepared once (each term's :meth:`~glep.terms.Term.force_kernel`), the same values to round-off
    (bit for bit unless a term adds itself into the running sum, :meth:`~glep.terms.Term.force_add_kernel`).

    The explicit stepping loops call it once per step.  With ``activations`` (``{i: A_i}``, ``A_i`` of shape
    ``(nodes, B, k_i)`` for terms ``system.terms[i]`` with an
    :meth:`~glep.terms.Term.activation_force_kernel`) the kernel is ``(q, x, t, j) ↦ ∂_q L_β`` and leaves
    term ``i``'s activation ``a_i(q)`` in ``A_i[j]`` (node ``j``), the same force bit for bit.
    """
    activations = activations or {}
    node = [0]  # the node being evaluated, for the recording kernels
    parts = []  # (kernel, whether its result is a new array of its own: Term.force_kernel_fresh)
    for i, term in enumerate(system.terms):
        if i in activations:
            kernel = None if term.depends_on_velocity else term.activation_force_kernel(theta)
            if kernel is None:
                raise InputError(f"term {i} ({term.describe()}) has no activation_force_kernel to record")
            parts.append((lambda q, x, t, kernel=kernel, A=activations[i]: kernel(q, x, t, A[node[0]]),
                          term.force_kernel_fresh, None))
        elif not term.depends_on_velocity:
            kernel = term.force_kernel(theta)
            parts.append((kernel, term.force_kernel_fresh, term.force_add_kernel(theta)) if kernel is not None
                         else (_gradient_kernel(term, theta), False, None))
    cost = system.cost if nudged(beta) and system.cost is not None else None

    adding = any(add is not None for _, _, add in parts)
    kernels = [kernel for kernel, _, _ in parts]

    def finish(out, owned, q, x, t):
        if out is None:
            out, owned = np.zeros_like(q), True
        if cost is not None:
            dtype = np.result_type(out, q, beta)
            if not owned or out.shape != q.shape or out.dtype != dtype:
                out = np.broadcast_to(out, q.shape).astype(dtype)
            cost.add_gradient(out, q, x, t, beta)
            return out
        return out if out.shape == q.shape else out + np.zeros_like(q)

    def force_plain(q, x, t):  # no term adds itself: the sum of the kernels' results
        out, owned = None, False
        for kernel in kernels:
            g = kernel(q, x, t)
            if g is None:
                continue
            if out is None:
                out = g
            elif owned and out.shape == q.shape and g.dtype == out.dtype:
                out += g  # our own sum: added in place (same values as out + g)
            else:
                out, owned = out + g, True
        return finish(out, owned, q, x, t)

    def force_adding(q, x, t):  # some terms add themselves into the sum: a first new array is ours to add into
        out, mine = None, False  # mine: out is our own array of q's shape
        for kernel, fresh, add in parts:
            if mine and add is not None and out.dtype == q.dtype:
                add(q, x, t, out)
                continue
            g = kernel(q, x, t)
            if g is None:
                continue
            if out is None:
                out, mine = g, fresh and g.shape == q.shape
            elif mine and g.dtype == out.dtype:
                out += g
            else:
                out = out + g
                mine = out.shape == q.shape
        return finish(out, mine, q, x, t)

    force = force_adding if adding else force_plain

    if not activations:
        return force

    def recording(q, x, t, j: int):
        node[0] = j
        return force(q, x, t)

    return recording


def _gradient_kernel(term: Term, theta):
    return lambda q, x, t: term.gradient(q, None, theta, x, t)[0]


def position_hessian_action(system: LagrangianSystem, q, theta, x, t, dq, beta=0.0):
    """``∂_qq L_β · dq`` of the velocity-independent terms."""
    out = None
    for term in system.terms:
        if not term.depends_on_velocity:
            out = _add(out, term.hessian_action(q, None, theta, x, t, dq, None)[0])
    if nudged(beta) and system.cost is not None:
        out = _add(out, beta * system.cost.hessian_action(q, x, t, dq))
    return np.zeros_like(dq) if out is None else out


def position_hessian_entries(system: LagrangianSystem, q, theta, x, t, beta=0.0):
    r"""Sparse ``∂_qq L_β`` of the velocity-independent terms as ``(rows, cols, values)``, or ``None``.

    ``values`` is a list of arrays, one per contributing term, each of shape
    ``(..., nnz_term)`` or ``(nnz_term,)`` (constant); ``rows``/``cols`` the
    matching list of index arrays.  ``None`` if some potential term has no
    :meth:`~glep.terms.PotentialTerm.potential_hessian_entries` (or a term
    is not a potential): callers fall back to Hessian actions.
    """
    rows, cols, vals = [], [], []
    for term in system.terms:
        if term.depends_on_velocity:
            continue
        get = getattr(term, "potential_hessian_entries", None)
        entries = get(q, theta, x, t) if get is not None else None
        if entries is None:
            return None
        r, c, v = entries
        rows.append(np.asarray(r, dtype=np.int64))
        cols.append(np.asarray(c, dtype=np.int64))
        vals.append(-np.asarray(v))
    if nudged(beta) and system.cost is not None:
        get = getattr(system.cost, "hessian_entries", None)
        if get is None:
            return None
        r, c, v = get()
        rows.append(np.asarray(r, dtype=np.int64))
        cols.append(np.asarray(c, dtype=np.int64))
        vals.append(beta * np.asarray(v))
    return rows, cols, vals


def position_theta_jvp(system: LagrangianSystem, q, theta, x, t, dtheta):
    """``(∂_θ ∂_q L) · δθ`` of the velocity-independent terms (leading tangent axis)."""
    out = None
    for term in system.terms:
        if not term.depends_on_velocity and term.parameters:
            out = _add(out, term.theta_jvp(q, None, theta, x, t, dtheta)[0])
    return out
