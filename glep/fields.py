r"""Field Lagrangians: one density ``ℒ(φ, ∂_tφ, ∇φ; θ, x, t)`` in UFL for both backends.

A field system on a spatial domain ``Ω ⊂ ℝᵈ`` has the action

    A[φ] = ∫₀ᵀ ∫_Ω ℒ(φ, ∂_tφ, ∇φ; θ, x, t) dx dt        (+ β ∫₀ᵀ ∫_Ω c dx dt when nudged).

The density is stated once, as a Python function returning a UFL expression,
and each backend discretises the same statement:

* ``glep.ivp`` (time stepping): finite elements in space, ``φ_h(x, t) = Σ_i
  q_i(t) N_i(x)``, give an ODE Lagrangian ``L_h(q, q̇) = ∫_Ω ℒ(φ_h, φ̇_h,
  ∇φ_h) dx`` on a distributed spatial mesh, integrated by a variational
  integrator in time;
* ``glep.bvp`` (space–time): the whole trajectory is one function on a
  ``(d+1)``-dimensional mesh whose *last* coordinate is time, and the action is
  the integral of the density over that mesh, with ``∂_tφ`` the last component
  of the space–time gradient and ``∇φ`` the first ``d``.

Complex fields ``ψ = a + i b`` are given as two real components (``components
= 2``); time reversal is then complex conjugation (``b ↦ −b``), which the model
states through :attr:`FieldLagrangian.reversal`.

The callable's signature is fixed (every argument by keyword)::

    density(phi, phi_t, grad_phi, theta, x, t) -> UFL scalar

``phi`` and ``phi_t`` are UFL scalars (``components = 1``) or vectors of length
``components``; ``grad_phi`` is a vector of length ``d`` (or a
``components × d`` matrix); ``theta`` maps each parameter name to a UFL
expression (a constant for a scalar parameter, a finite-element function for a
parameter field); ``x`` is the vector of spatial coordinates and ``t`` the time
(a constant when time stepping, a coordinate on a space–time mesh).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from glep.errors import InputError

#: ``density(phi, phi_t, grad_phi, theta, x, t) -> UFL scalar``
Density = Callable[..., object]
#: a value of a parameter field: ``f(x) -> values`` with ``x`` of shape ``(3, npoints)`` (dolfinx's
#: interpolation convention) returning ``(npoints,)``
FieldValue = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class FieldParameter:
    """A trainable parameter of a field Lagrangian.

    Arguments:
        kind: ``"scalar"`` (one number, a UFL constant) or ``"field"`` (a
            finite-element function ``θ(x)`` on the spatial mesh, whose gradient
            comes back as a dual vector and as its Riesz representative).
        value: the default value: a number, or for a field a number or a
            function of the coordinates (dolfinx interpolation convention).
        element: the finite element of a parameter field, ``(family, degree)``
            (``("P", 1)`` continuous piecewise linear, ``("DG", 0)`` piecewise constant).
    """

    kind: Literal["scalar", "field"]
    value: float | FieldValue
    element: tuple[str, int] = ("P", 1)

    def __post_init__(self):
        if self.kind not in ("scalar", "field"):
            raise InputError(f"FieldParameter kind must be 'scalar' or 'field', got {self.kind!r}")
        if self.kind == "scalar" and not isinstance(self.value, (int, float, np.floating, np.integer)):
            raise InputError(f"a scalar FieldParameter needs a number as value, got {type(self.value).__name__}")
        if not (isinstance(self.value, (int, float, np.floating, np.integer)) or callable(self.value)):
            raise InputError("FieldParameter value must be a number or a function of the coordinates, "
                             f"got {type(self.value).__name__}")
        fam, deg = self.element
        if fam not in ("P", "DG") or isinstance(deg, bool) or not isinstance(deg, int) or deg < 0 or \
                (fam == "P" and deg < 1):
            raise InputError(f"FieldParameter element must be ('P', k>=1) or ('DG', k>=0), got {self.element!r}")


@dataclass(frozen=True)
class FieldLagrangian:
    r"""The density ``ℒ(φ, ∂_tφ, ∇φ; θ, x, t)`` of a field system (see the module docstring).

    Arguments:
        density: ``density(phi, phi_t, grad_phi, theta, x, t)`` returning a UFL scalar.
        parameters: name -> :class:`FieldParameter`.
        components: number of real field components (2 for one complex field).
        name: a short name for reports.
        reversal: signs applied to ``(φ, ∂_tφ)`` components by time reversal, as
            ``(position_signs, velocity_signs)``; ``None`` is the mechanical
            reversal ``(φ, φ_t) ↦ (φ, −φ_t)``.  For a complex field given as
            ``(a, b)`` with a first-order Lagrangian, conjugation is ``b ↦ −b``.
        separable: ``True`` when ``ℒ = ½ ρ(x) |∂_tφ|² − W(φ, ∇φ; θ, x, t)`` with
            ``ρ`` independent of ``θ`` (leapfrog with a lumped mass is then
            explicit); ``None`` lets the backend detect it symbolically.
    """

    density: Density
    parameters: Mapping[str, FieldParameter] = field(default_factory=dict)
    components: int = 1
    name: str = "field"
    reversal: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    separable: bool | None = None

    def __post_init__(self):
        if not callable(self.density):
            raise InputError(f"density must be a function (phi, phi_t, grad_phi, theta, x, t) -> UFL, "
                             f"got {type(self.density).__name__}")
        if isinstance(self.components, bool) or not isinstance(self.components, int) or self.components < 1:
            raise InputError(f"components must be an integer >= 1, got {self.components!r}")
        for key, par in dict(self.parameters).items():
            if not isinstance(key, str) or not key.isidentifier():
                raise InputError(f"parameter names must be identifiers, got {key!r}")
            if not isinstance(par, FieldParameter):
                raise InputError(f"parameter {key!r} must be a FieldParameter, got {type(par).__name__}")
        if self.reversal is not None:
            pos, vel = self.reversal
            if len(pos) != self.components or len(vel) != self.components or \
                    any(s not in (1, -1) for s in (*pos, *vel)):
                raise InputError(f"reversal must be two tuples of {self.components} signs (+1/-1), "
                                 f"got {self.reversal!r}")

    def __call__(self, phi, phi_t, grad_phi, theta, x, t):
        """The UFL density (see the module docstring for the arguments)."""
        return self.density(phi=phi, phi_t=phi_t, grad_phi=grad_phi, theta=theta, x=x, t=t)

    @property
    def field_parameters(self) -> dict[str, FieldParameter]:
        return {k: p for k, p in self.parameters.items() if p.kind == "field"}

    @property
    def scalar_parameters(self) -> dict[str, FieldParameter]:
        return {k: p for k, p in self.parameters.items() if p.kind == "scalar"}

    @property
    def reversal_signs(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """``(position_signs, velocity_signs)`` of time reversal (mechanical by default)."""
        if self.reversal is None:
            return (1,) * self.components, (-1,) * self.components
        return self.reversal


__all__ = ["Density", "FieldLagrangian", "FieldParameter", "FieldValue"]
