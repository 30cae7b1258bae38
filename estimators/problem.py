"""A learning problem: a system, its parameters, the free CIVP and a time grid."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from glep.boundary import CFVP, CIVP
from glep.errors import InputError
from glep.grid import TimeGrid
from glep.ivp.adjoint import discrete_loss
from glep.ivp.discrete import Mirrored
from glep.ivp.integrators import Integrator, integrator_for
from glep.ivp.stepping import integrate
from glep.signals import check_signals
from glep.system import LagrangianSystem
from glep.trajectory import SolverReport, Trajectory


@dataclass
class FreePass:
    """The estimators' cache of the free (β = 0) pass: the :class:`~glep.Trajectory` as integrated, and its data.

    Not a second trajectory type: ``trajectory`` is the one trajectory type, in the direction it was
    integrated (for a CFVP the mirrored, backward-in-time reading: ``Q[k] = q(T − t_k)``,
    ``P[k] = −p(T − t_k)``; :meth:`Problem.free_trajectory` reads it forward in time).

    Attributes
    ----------
    dl:
        The discrete Lagrangian it was integrated with (mirrored for a CFVP).
    trajectory:
        The integrated trajectory, ``q`` and ``p`` of shape ``(N+1, B, n)``.
    q0, p0, v0:
        The integration's initial state (``v0``: the velocity, if the boundary condition gives one).
    loss:
        ``C_h`` of the free trajectory.
    sensitivities:
        ``(∂_θ q_N, d_θ π_N)`` once :func:`glep.estimators.contrast.forward_sensitivities` computed them.
    """

    dl: object
    trajectory: Trajectory
    q0: np.ndarray
    p0: np.ndarray
    v0: np.ndarray | None
    loss: float
    sensitivities: object = field(default=None, repr=False)

    @property
    def Q(self) -> np.ndarray:
        """Positions in integration order, ``(N+1, B, n)``."""
        return self.trajectory.q

    @property
    def P(self) -> np.ndarray:
        """Discrete momenta in integration order, ``(N+1, B, n)``."""
        return self.trajectory.p


@dataclass
class Problem:
    """What every estimator differentiates: ``C_h(θ)`` of the free trajectory.

    The free trajectory is a CIVP (integrated forward) or a CFVP (integrated
    backward from constant final data; its discrete Lagrangian is then the
    :class:`~glep.ivp.discrete.Mirrored` one and every engine runs unchanged).

    Parameters
    ----------
    system:
        The Lagrangian system (with its inputs, targets and cost).
    params:
        The parameter point θ (checked against ``system.parameters``).
    boundary:
        The free trajectory's data: a :class:`glep.CIVP` or a :class:`glep.CFVP`.
    grid:
        The time grid.
    integrator:
        An :class:`~glep.ivp.integrators.Integrator` or its name; default
        Störmer–Verlet for separable systems, implicit midpoint otherwise.

    Attributes
    ----------
    cache:
        Results shared by estimators and truths of this problem (e.g. the
        solved free FE CBVP of :mod:`glep.estimators.cbvp`), keyed by what
        computed them; a problem's parameters are fixed, so entries never go stale.
    """

    system: LagrangianSystem
    params: dict
    boundary: CIVP
    grid: TimeGrid
    integrator: Integrator | str | None = None
    meta: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        if not isinstance(self.system, LagrangianSystem):
            raise InputError(f"system must be a LagrangianSystem, got {type(self.system).__name__}")
        if not isinstance(self.boundary, (CIVP, CFVP)):
            raise InputError("boundary must be a CIVP or a CFVP (the free trajectory), "
                             f"got {type(self.boundary).__name__}")
        if not isinstance(self.grid, TimeGrid):
            raise InputError(f"grid must be a TimeGrid, got {type(self.grid).__name__}")
        self.theta = self.system.check_params(self.params)
        check_signals(self.system, self.grid.T)
        self.integrator = integrator_for(self.system, self.integrator)

    @classmethod
    def from_model(cls, model, steps: int = 400, T: float | None = None, integrator=None) -> Problem:
        """Build from a :class:`glep.models.Model` (``T`` defaults to the model's horizon).

        A shorter ``T`` uses the beginning of the model's signals; a longer one
        is refused (the signals are not defined past the model's horizon: build
        the model with the horizon you need).
        """
        if T is not None and T > model.T * (1 + 1e-12):
            raise InputError(f"T = {T:g} is past the model's horizon {model.T:g}, where its input and target "
                             "signals end; build the model with T (e.g. coupled_oscillators(T=...))")
        grid = TimeGrid(model.T if T is None else T, steps)
        return cls(model.system, model.params, model.boundary, grid, integrator, dict(model.info))

    @property
    def parameter_count(self) -> int:
        return int(sum(np.prod(s) if s else 1 for s in self.system.parameters.values()))

    @property
    def final_value(self) -> bool:
        """True for a CFVP: trajectories are integrated backward (mirrored)."""
        return isinstance(self.boundary, CFVP)

    @property
    def boundary_name(self) -> str:
        return type(self.boundary).__name__

    def base_dl(self, beta: complex = 0.0, system: LagrangianSystem | None = None, theta=None):
        """The (forward-time) discrete Lagrangian at nudging ``beta``."""
        th = self.theta if theta is None else theta
        return self.integrator.discrete_lagrangian(system or self.system, th, self.grid, beta)

    def dl(self, beta: complex = 0.0, system: LagrangianSystem | None = None, theta=None):
        """The discrete Lagrangian the free family is integrated with (mirrored for a CFVP)."""
        base = self.base_dl(beta, system, theta)
        return Mirrored(base) if self.final_value else base

    def terminal_gradient(self, q):
        """``∇c_T`` at the integration end (zero for a CFVP, whose final state is fixed)."""
        tc = self.system.terminal_cost
        return 0.0 if tc is None or self.final_value else tc.gradient(q)

    def require_civp(self, who: str) -> None:
        if self.final_value:
            raise InputError(f"{who} starts from the final state of a free CIVP; this problem's boundary is "
                             "a CFVP: use civp_contrast (the mirrored CIVP machinery handles CFVP)")

    @cached_property
    def reversibility_defect(self) -> float:
        """``system.reversibility_defect(θ)`` over the horizon (measured once per problem)."""
        return self.system.reversibility_defect(self.theta, T=self.grid.T)

    @cached_property
    def free(self) -> FreePass:
        """The free pass (integrated once per problem; backward, mirrored, for a CFVP)."""
        dl = self.dl(0.0)
        if self.final_value:
            qT, pT, vT = self.boundary.states(self.system, self.theta, self.grid.T)
            q0, p0, v0 = qT, -pT, vT  # the mirror starts at T with negated momentum
        else:
            q0, p0, v0 = self.boundary.states(self.system, self.theta)
        t0 = time.perf_counter()
        Q, P = integrate(dl, q0, p0)
        report = SolverReport("integrated", self.grid.N, (), time.perf_counter() - t0)
        traj = Trajectory(self.grid.times, Q, P, 0.0, self.boundary, dict(self.theta), self._meta(), report)
        return FreePass(dl, traj, q0, p0, v0, discrete_loss(dl, Q, terminal=not self.final_value))

    def _meta(self) -> dict:
        return {"system": self.system.name, "integrator": self.integrator.name}

    def free_trajectory(self) -> Trajectory:
        """The free trajectory forward in time (a CFVP's mirrored pass read backwards)."""
        t = self.free.trajectory
        if not self.final_value:
            return t
        return replace(t, times=self.grid.T - t.times[::-1], q=t.q[::-1], p=-t.p[::-1])

    def with_params(self, params) -> Problem:
        return Problem(self.system, params, self.boundary, self.grid, self.integrator, dict(self.meta))
