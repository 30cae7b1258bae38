"""A learning problem: a system, its parameters, the free CIVP and a time grid."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from glep.ivp.adjoint import discrete_loss
from glep.ivp.integrators import Integrator, integrator_for
from glep.ivp.stepping import integrate

from glep.boundary import CIVP
from glep.errors import InputError
from glep.grid import TimeGrid
from glep.system import LagrangianSystem
from glep.trajectory import Trajectory


@dataclass
class FreeTrajectory:
    """The free (β = 0) CIVP trajectory with its discrete Lagrangian."""

    dl: object
    Q: np.ndarray
    P: np.ndarray
    q0: np.ndarray
    p0: np.ndarray
    v0: np.ndarray | None
    loss: float


@dataclass
class Problem:
    """What every estimator differentiates: ``C_h(θ)`` of the free CIVP.

    Parameters
    ----------
    system:
        The Lagrangian system (with its inputs, targets and cost).
    params:
        The parameter point θ (checked against ``system.parameters``).
    boundary:
        The free trajectory's initial data (a :class:`glep.CIVP`).
    grid:
        The time grid.
    integrator:
        An :class:`~glep.ivp.integrators.Integrator` or its name; default
        Störmer–Verlet for separable systems, implicit midpoint otherwise.
    """

    system: LagrangianSystem
    params: dict
    boundary: CIVP
    grid: TimeGrid
    integrator: Integrator | str | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.system, LagrangianSystem):
            raise InputError(f"system must be a LagrangianSystem, got {type(self.system).__name__}")
        if not isinstance(self.boundary, CIVP):
            raise InputError(f"boundary must be a CIVP (the free trajectory), got {type(self.boundary).__name__}")
        if not isinstance(self.grid, TimeGrid):
            raise InputError(f"grid must be a TimeGrid, got {type(self.grid).__name__}")
        self.theta = self.system.check_params(self.params)
        self.integrator = integrator_for(self.system, self.integrator)

    @classmethod
    def from_model(cls, model, steps: int = 400, T: float | None = None, integrator=None) -> Problem:
        """Build from a :class:`glep.models.Model` (``T`` defaults to the model's horizon)."""
        grid = TimeGrid(model.T if T is None else T, steps)
        return cls(model.system, model.params, model.boundary, grid, integrator, dict(model.info))

    @property
    def parameter_count(self) -> int:
        return int(sum(np.prod(s) if s else 1 for s in self.system.parameters.values()))

    def dl(self, beta: complex = 0.0, system: LagrangianSystem | None = None, theta=None):
        """The discrete Lagrangian at nudging ``beta`` (optionally of another system)."""
        return self.integrator.discrete_lagrangian(system or self.system, self.theta if theta is None else theta,
                                                   self.grid, beta)

    @cached_property
    def free(self) -> FreeTrajectory:
        q0, p0, v0 = self.boundary.states(self.system, self.theta)
        dl = self.dl(0.0)
        Q, P = integrate(dl, q0, p0)
        return FreeTrajectory(dl, Q, P, q0, p0, v0, discrete_loss(dl, Q))

    def free_trajectory(self) -> Trajectory:
        f = self.free
        return Trajectory(self.grid.times, f.Q, f.P, 0.0, "CIVP", dict(self.theta),
                          {"system": self.system.name, "integrator": self.integrator.name})

    def with_params(self, params) -> Problem:
        return Problem(self.system, params, self.boundary, self.grid, self.integrator, dict(self.meta))
