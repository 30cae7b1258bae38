"""Trajectories: a discrete solution with everything needed to re-analyse it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Trajectory:
    """Positions ``q`` and discrete momenta ``p`` on a time grid.

    Attributes
    ----------
    times:
        Grid times, shape ``(N+1,)``.
    q, p:
        Shape ``(N+1, B, n)``: time, batch, degree of freedom.
    beta:
        The nudging strength this trajectory is stationary for.
    boundary:
        Name of its boundary condition (``"CIVP"``, ``"PFVP"``...).
    params:
        The parameters ``θ`` it was computed with.
    meta:
        Anything else (integrator, system name...), stored as HDF5 attributes.
    """

    times: np.ndarray
    q: np.ndarray
    p: np.ndarray
    beta: complex = 0.0
    boundary: str = ""
    params: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def T(self) -> float:
        return float(self.times[-1])

    @property
    def N(self) -> int:
        return len(self.times) - 1

    def reversed(self) -> Trajectory:
        """Read backwards in time with flipped momenta (echo ↔ PFVP)."""
        return Trajectory(self.times[-1] - self.times[::-1], self.q[::-1].copy(), -self.p[::-1].copy(),
                          self.beta, self.boundary, self.params, dict(self.meta))
