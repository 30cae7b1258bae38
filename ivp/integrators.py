"""Integrator descriptors: which discrete Lagrangian the ``ivp`` backend uses."""

from __future__ import annotations

from dataclasses import dataclass

from glep.errors import InputError
from glep.grid import TimeGrid
from glep.ivp.discrete import BACKENDS, GAUSS2, MIDPOINT, TRAPEZOID, DiscreteLagrangian, QuadratureRule
from glep.system import LagrangianSystem


@dataclass(frozen=True)
class Integrator:
    """A variational integrator: a quadrature rule for ``L_d`` (and whether the
    explicit Störmer–Verlet path may be used), and where its loops run: ``backend="numpy"``
    or ``"jax"`` (the jit-compiled loops of :mod:`glep.ivp.compiled`, explicit path only)."""

    rule: QuadratureRule = TRAPEZOID
    fast: bool = True
    name: str = "trapezoid"
    backend: str = "numpy"

    def discrete_lagrangian(self, system: LagrangianSystem, theta, grid: TimeGrid,
                            beta: complex = 0.0) -> DiscreteLagrangian:
        return DiscreteLagrangian(system, theta, grid, self.rule, beta, fast=self.fast, backend=self.backend)


def StormerVerlet(backend: str = "numpy") -> Integrator:
    """Störmer–Verlet: the trapezoid discrete Lagrangian of a separable system (explicit);
    ``backend="jax"`` runs it compiled (:mod:`glep.ivp.compiled`, the optional extra ``glep[jax]``)."""
    return Integrator(TRAPEZOID, True, "stormer-verlet", backend)


def ImplicitMidpoint() -> Integrator:
    """The midpoint variational integrator, for any Lagrangian (implicit, Newton per step)."""
    return Integrator(MIDPOINT, False, "midpoint")


def Trapezoidal() -> Integrator:
    """The trapezoid (Lobatto IIIA–IIIB) variational integrator for any Lagrangian."""
    return Integrator(TRAPEZOID, True, "trapezoid")


def Gauss2() -> Integrator:
    """Two-point Gauss quadrature with linear interpolation (implicit)."""
    return Integrator(GAUSS2, False, "gauss2")


INTEGRATORS = {"stormer-verlet": StormerVerlet, "midpoint": ImplicitMidpoint,
               "trapezoid": Trapezoidal, "gauss2": Gauss2}


def integrator_for(system: LagrangianSystem, name: str | Integrator | None = None) -> Integrator:
    """Resolve an integrator: by default Störmer–Verlet for a separable system
    (:attr:`~glep.system.LagrangianSystem.is_separable`), implicit midpoint otherwise;
    an explicit Störmer–Verlet request on a non-separable system is refused with the reason."""
    if isinstance(name, Integrator):
        integ = name
    elif name is None:
        integ = StormerVerlet() if system.is_separable else ImplicitMidpoint()
    else:
        if name not in INTEGRATORS:
            raise InputError(f"integrator must be one of {sorted(INTEGRATORS)}, got {name!r}")
        integ = INTEGRATORS[name]()
    if integ.name == "stormer-verlet" and not system.is_separable:
        raise InputError("integrator 'stormer-verlet' needs a separable Lagrangian ½vᵀMv − V(q, t); "
                         f"{system.name} is not separable: {system.non_separable_reason}. Use 'midpoint' "
                         "(the default for a non-separable system) or 'trapezoid'")
    if integ.backend not in BACKENDS:
        raise InputError(f"integrator backend must be one of {BACKENDS}, got {integ.backend!r}")
    if integ.backend == "jax":
        if integ.rule != TRAPEZOID or not integ.fast:
            raise InputError(f"backend='jax' compiles the explicit Störmer–Verlet loop; integrator {integ.name!r} "
                             "is implicit: use StormerVerlet(backend='jax') or backend='numpy'")
        from glep.ivp.compiled import check_supported

        check_supported(system)
    return integ
