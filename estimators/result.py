"""The result of a gradient estimator."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class GradientEstimate:
    """A gradient of the discrete loss with respect to θ (and the initial state).

    Attributes
    ----------
    name:
        Estimator name (``"PFVP"``, ``"echo"``, ``"adjoint"``...).
    theta:
        ``dC/dθ`` per parameter.
    q0, p0:
        ``dC/dq(0)`` and ``dC/dp(0)`` where the estimator provides them.
    passes:
        Cost in forward-pass units (one pass = one trajectory of ``N`` steps;
        a tangent direction counts as one pass).
    wall_time:
        Seconds spent (including the free trajectory).
    loss:
        Which loss is differentiated.
    """

    name: str
    theta: dict[str, np.ndarray]
    q0: np.ndarray | None = None
    p0: np.ndarray | None = None
    passes: float = 0.0
    wall_time: float = 0.0
    nudge: str = ""
    beta: float = 0.0
    loss: str = "C_h of the free CIVP trajectory"
    notes: list[str] = field(default_factory=list)

    def flat(self, keys=None) -> np.ndarray:
        keys = list(self.theta) if keys is None else keys
        return np.concatenate([np.asarray(self.theta[k], dtype=float).ravel() for k in keys])
