"""Uniform time grids ``t_k = k T / N``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glep.errors import InputError
from glep.validation import check_positive


@dataclass(frozen=True)
class TimeGrid:
    """``N`` steps of size ``h = T / N`` on ``[0, T]``."""

    T: float
    N: int

    def __post_init__(self):
        object.__setattr__(self, "T", check_positive(self.T, "T"))
        if isinstance(self.N, bool) or int(self.N) != self.N or int(self.N) < 1:
            raise InputError(f"N (number of time steps) must be an integer >= 1, got {self.N!r}")
        object.__setattr__(self, "N", int(self.N))

    @property
    def h(self) -> float:
        return self.T / self.N

    @property
    def times(self) -> np.ndarray:
        return np.linspace(0.0, self.T, self.N + 1)

    def trapezoid_weights(self) -> np.ndarray:
        """Weights ``w_k`` of the discrete loss ``C_h = Σ_k w_k c(q_k, t_k)``."""
        w = np.full(self.N + 1, self.h)
        w[0] = w[-1] = 0.5 * self.h
        return w
