r"""Terms: the building blocks of a Lagrangian.

A system's Lagrangian is a sum of terms, ``L(q, v, θ, t) = Σ_i L_i``.  Each
term knows, for a *batch* of states ``q, v`` of shape ``(B, n)``:

* its value and first derivatives ``(∂_q L_i, ∂_v L_i)``;
* the action of its Hessian on a direction (``hessian_action``);
* ``∂_θ L_i`` (summed over the batch: it is what the contrast integrates);
* the mixed derivatives ``∂_θ(∂_q L_i · a + ∂_v L_i · b)`` (reverse mode,
  used by the discrete adjoint) and ``(∂_θ ∂_q L_i) δθ`` (forward mode, used by
  the forward sensitivities of the CIVP boundary residual);
* its UFL expression (``ufl_lagrangian``), the single symbolic statement of
  the term from which the finite-element backend assembles the action and
  from which :class:`glep.UFLTerm` derives every derivative above.

Directions may carry extra leading axes (``dq`` of shape ``(K, B, n)``): the
forward sensitivities push ``K`` tangents at once.  Built-in terms therefore
write their Hessian and tangent actions with broadcasting.

Blocks that vanish identically are returned as ``None`` so that callers can
skip them (a potential has ``∂_v L = 0``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

import numpy as np

Array = np.ndarray
Params = Mapping[str, Array]
Inputs = Mapping[str, Array]


def array_namespace(*arrays):
    """The array namespace of the arguments: :mod:`numpy`, or :mod:`jax.numpy` when one is a JAX array.

    Built-in terms write their values and first derivatives once against this
    namespace (``xp.tanh``, ``xp.sum``...), so the NumPy path and the compiled
    path of :mod:`glep.ivp.compiled` (JAX tracers) execute the same definition.
    JAX is imported only when a JAX array is seen.
    """
    for a in arrays:
        if type(a) is not np.ndarray and type(a).__module__.startswith("jax"):
            import jax.numpy as jnp

            return jnp
    return np


def batch_sum(arr: Array, param_ndim: int) -> Array:
    """Sum every leading axis of ``arr`` except the trailing ``param_ndim``."""
    lead = arr.ndim - param_ndim
    return arr.sum(axis=tuple(range(lead))) if lead > 0 else arr


def add_into(acc: dict, key: str, value: Array) -> None:
    """``acc[key] += value`` creating the entry if needed."""
    if key in acc:
        acc[key] = acc[key] + value
    else:
        acc[key] = value


class Term(ABC):
    """A summand ``L_i(q, v, θ, t)`` of a Lagrangian (see module docstring)."""

    #: Trainable parameters this term reads, name -> shape.
    parameters: dict[str, tuple[int, ...]] = {}
    #: Names of the input signals this term reads.
    inputs: tuple[str, ...] = ()
    #: Whether the term depends on the velocity ``v``.  Assumed (the safe default) unless a
    #: subclass declares otherwise: :class:`PotentialTerm` sets it false, :class:`glep.UFLTerm`
    #: derives it from its expression.  A system is separable when its only velocity-dependent
    #: term is one :class:`KineticTerm`.
    depends_on_velocity: bool = True
    #: Whether the term reads ``t`` itself *and needs it as a scalar*: callers then evaluate it
    #: node by node, and the echo cannot replay it backwards.  Terms that do not read ``t``, or
    #: that accept an array of times (one per batch member, broadcasting against the batch
    #: axes, like :class:`glep.UFLTerm`), keep it false and are evaluated on many time nodes in
    #: one call with ``t`` the array of node times.
    explicit_time: bool = False
    #: Whether the term's second derivatives in ``(q, v)`` are constant (a quadratic form in ``(q, v)``
    #: plus terms linear in them, with coefficients depending on ``θ`` alone, not on ``q, v, x, t``):
    #: the implicit steps then assemble its blocks of the Jacobian ``D₁₂L_d`` once per ``θ``.
    hessian_constant: bool = False
    #: Whether the term's value, ``gradient``, ``theta_gradient`` (and, for a kinetic term,
    #: ``mass_apply``/``mass_solve``) are written against :func:`array_namespace`, so that the
    #: compiled path (:mod:`glep.ivp.compiled`, JAX) can run and differentiate them.
    array_api: bool = False

    def __init__(self, n: int):
        self.n = int(n)

    @abstractmethod
    def lagrangian(self, q: Array, v: Array, theta: Params, x: Inputs, t: float) -> Array:
        """Value of the term, shape ``(B,)``."""

    @abstractmethod
    def gradient(self, q, v, theta, x, t) -> tuple[Array | None, Array | None]:
        """``(∂_q L_i, ∂_v L_i)``, each ``(B, n)`` (or broadcastable to it) or ``None`` if zero."""

    @abstractmethod
    def hessian_action(self, q, v, theta, x, t, dq, dv) -> tuple[Array | None, Array | None]:
        """``(L_qq dq + L_qv dv, L_vq dq + L_vv dv)``; ``dq, dv`` may have extra leading axes."""

    @abstractmethod
    def theta_gradient(self, q, v, theta, x, t) -> dict[str, Array]:
        """``Σ_batch ∂_θ L_i`` for each parameter the term reads."""

    @abstractmethod
    def theta_vjp(self, q, v, theta, x, t, a, b) -> dict[str, Array]:
        """``Σ_batch ∂_θ (∂_q L_i · a + ∂_v L_i · b)``; ``a`` or ``b`` may be ``None``."""

    @abstractmethod
    def theta_jvp(self, q, v, theta, x, t, dtheta) -> tuple[Array | None, Array | None]:
        """``(∂_θ ∂_q L_i · δθ, ∂_θ ∂_v L_i · δθ)``.

        ``dtheta[name]`` has shape ``(K, *shape)``; the result has shape
        ``(K, B, n)`` (``None`` where zero).
        """

    @abstractmethod
    def ufl_lagrangian(self, q, v, theta, x, t):
        """The term as a UFL scalar expression of UFL ``q, v`` (shape ``(n,)``)."""

    def force_kernel(self, theta: Params):
        """Optional fast ``(q, x, t) ↦ ∂_q L_i`` with everything that depends on ``θ`` alone precomputed.

        The explicit (Störmer–Verlet) stepping loop calls it once per step; a kernel must return
        exactly (bit for bit) ``self.gradient(q, None, θ, x, t)[0]`` (so that a system's composed force is
        :func:`glep.system.position_force` bit for bit unless a term adds itself in with
        :meth:`force_add_kernel`).  ``None`` (the default): the loop calls :meth:`gradient`.
        """
        return None

    def force_add_kernel(self, theta: Params):
        """Optional ``(q, x, t, out) ↦ None`` adding ``∂_q L_i`` into ``out`` (``q``'s shape and dtype, the
        caller's running sum of the other terms' forces): the values of ``out + force_kernel(θ)(q, x, t)`` to
        round-off (the additions may be grouped differently), without the term's own array.  ``None`` (the
        default): the sum adds :meth:`force_kernel`'s result.
        """
        return None

    #: ``True`` when :meth:`force_kernel`'s (and :meth:`activation_force_kernel`'s) result is a new array at
    #: every call, kept nowhere else: the composed force of a system may then add the other terms into it in
    #: place (the same values as ``out + g``) instead of allocating a sum.  ``False`` (the default) is always safe.
    force_kernel_fresh: bool = False

    #: Width ``k`` of the node *activation* ``a(q, θ)`` (shape ``(B, k)``) that the term's force and its
    #: ``∂_θ L_i`` share (0: none); see :meth:`activation_force_kernel`.
    activation_width: int = 0

    def activation_force_kernel(self, theta: Params):
        """Optional ``(q, x, t, a) ↦ ∂_q L_i`` that also leaves the node activation ``a(q, θ)`` in ``a``.

        ``a`` is a preallocated ``(B, activation_width)`` array of ``q``'s dtype.  The stepping loops
        record ``a`` at every node when a contrast ``Σ_j w_j ∂_θ L_i(q_j)`` follows, and
        :meth:`theta_gradient_from_activation` then forms ``∂_θ L_i`` without recomputing it (e.g.
        ``tanh(Wq + b)`` of :class:`glep.LogCoshLayer`: the force ``−Wᵀa``, ``∂_W V = Σ a qᵀ``).  The force
        must equal :meth:`force_kernel`'s bit for bit.  ``None`` (the default): no activation.
        """
        return None

    def theta_gradient_from_activation(self, a, q, theta, x, t) -> dict[str, Array]:
        """``Σ_batch ∂_θ L_i`` at positions ``q`` from their activation ``a = a(q, θ)``: the values of
        :meth:`theta_gradient` (to round-off), without recomputing ``a``."""
        raise NotImplementedError(f"{self.describe()} has no node activation")

    def describe(self) -> str:
        return type(self).__name__


class PotentialTerm(Term):
    """A velocity-independent term ``L_i = −V(q, θ, t)``.

    Subclasses implement the potential ``V`` and its derivatives; this class
    supplies the signs and the zero velocity blocks.
    """

    depends_on_velocity = False

    @abstractmethod
    def potential(self, q, theta, x, t) -> Array: ...

    @abstractmethod
    def potential_gradient(self, q, theta, x, t) -> Array: ...

    @abstractmethod
    def potential_hessian_action(self, q, theta, x, t, dq) -> Array: ...

    @abstractmethod
    def potential_theta_gradient(self, q, theta, x, t) -> dict[str, Array]: ...

    @abstractmethod
    def potential_theta_vjp(self, q, theta, x, t, a) -> dict[str, Array]: ...

    @abstractmethod
    def potential_theta_jvp(self, q, theta, x, t, dtheta) -> Array | None: ...

    @abstractmethod
    def ufl_potential(self, q, theta, x, t): ...

    def potential_hessian_entries(self, q, theta, x, t) -> tuple[np.ndarray, np.ndarray, Array] | None:
        r"""Optional sparse ``∂²V/∂q²`` as ``(rows, cols, values)``.

        ``rows``/``cols`` are fixed integer arrays (repeated pairs add up);
        ``values`` has shape ``(..., nnz)`` over the leading axes of ``q``, or
        ``(nnz,)`` when the Hessian does not depend on ``q`` or ``t``.  The
        default ``None`` means "not available": assemblers then recover the
        Hessian from coloured :meth:`potential_hessian_action` probes.
        """
        return None

    # Term interface -------------------------------------------------------
    def lagrangian(self, q, v, theta, x, t):
        return -self.potential(q, theta, x, t)

    def gradient(self, q, v, theta, x, t):
        return -self.potential_gradient(q, theta, x, t), None

    def hessian_action(self, q, v, theta, x, t, dq, dv):
        if dq is None:
            return None, None
        return -self.potential_hessian_action(q, theta, x, t, dq), None

    def theta_gradient(self, q, v, theta, x, t):
        return {k: -g for k, g in self.potential_theta_gradient(q, theta, x, t).items()}

    def potential_theta_gradient_from_activation(self, a, q, theta, x, t) -> dict[str, Array]:
        """``Σ_batch ∂_θ V`` from the activation ``a = a(q, θ)`` (see :meth:`Term.activation_force_kernel`)."""
        raise NotImplementedError(f"{self.describe()} has no node activation")

    def theta_gradient_from_activation(self, a, q, theta, x, t):
        return {k: -g for k, g in self.potential_theta_gradient_from_activation(a, q, theta, x, t).items()}

    def theta_vjp(self, q, v, theta, x, t, a, b):
        if a is None or not self.parameters:
            return {}
        return {k: -g for k, g in self.potential_theta_vjp(q, theta, x, t, a).items()}

    def theta_jvp(self, q, v, theta, x, t, dtheta):
        if not self.parameters:
            return None, None
        out = self.potential_theta_jvp(q, theta, x, t, dtheta)
        return (None if out is None else -out), None

    def ufl_lagrangian(self, q, v, theta, x, t):
        return -self.ufl_potential(q, theta, x, t)


class FixedPotentialTerm(PotentialTerm):
    """A potential without trainable parameters: only ``V``, its gradient,
    Hessian action and UFL form need writing."""

    parameters: dict[str, tuple[int, ...]] = {}

    def potential_theta_gradient(self, q, theta, x, t):
        return {}

    def potential_theta_vjp(self, q, theta, x, t, a):
        return {}

    def potential_theta_jvp(self, q, theta, x, t, dtheta):
        return None


class KineticTerm(Term):
    r"""A kinetic energy ``½ vᵀ M(θ) v`` with a mass matrix independent of ``q``.

    Together with potential terms it makes a *separable* Lagrangian, for which
    the trapezoidal discrete Lagrangian is explicit (Störmer–Verlet).
    Subclasses implement ``mass_apply`` / ``mass_solve`` and the mass's
    parameter derivatives.
    """

    depends_on_velocity = True
    hessian_constant = True  # L_vv = M(θ), L_qv = 0

    @abstractmethod
    def mass_apply(self, v, theta) -> Array:
        """``M(θ) v`` (broadcast over leading axes)."""

    @abstractmethod
    def mass_solve(self, p, theta) -> Array:
        """``M(θ)⁻¹ p``."""

    def mass_kernels(self, theta: Params):
        """``(p ↦ M⁻¹p, v ↦ Mv)`` with ``θ`` fixed (the stepping loop's closures; default the methods)."""
        return (lambda p: self.mass_solve(p, theta)), (lambda v: self.mass_apply(v, theta))

    @abstractmethod
    def mass_theta_vjp(self, v, b) -> dict[str, Array]:
        """``Σ_batch ∂_θ (vᵀ M(θ) b)``."""

    @abstractmethod
    def mass_theta_jvp(self, v, dtheta) -> Array | None:
        """``(∂_θ M · δθ) v`` with a leading tangent axis."""

    def lagrangian(self, q, v, theta, x, t):
        return 0.5 * array_namespace(v).sum(v * self.mass_apply(v, theta), axis=-1)

    def gradient(self, q, v, theta, x, t):
        return None, self.mass_apply(v, theta)

    def hessian_action(self, q, v, theta, x, t, dq, dv):
        if dv is None:
            return None, None
        return None, self.mass_apply(dv, theta)

    def theta_gradient(self, q, v, theta, x, t):
        return {k: 0.5 * g for k, g in self.mass_theta_vjp(v, v).items()}

    def theta_vjp(self, q, v, theta, x, t, a, b):
        if b is None:
            return {}
        return self.mass_theta_vjp(v, b)

    def theta_jvp(self, q, v, theta, x, t, dtheta):
        return None, self.mass_theta_jvp(v, dtheta)
