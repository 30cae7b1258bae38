r"""Nudging schemes: how ``d/dβ|₀`` of a β-family is estimated.

=============== ====================================== ============ ==========
scheme          formula                                bias         passes
=============== ====================================== ============ ==========
``OneSided``    ``(f(β) − f(0)) / β``                  ``O(β)``     1 (+free)
``Centred``     ``(f(β) − f(−β)) / 2β``                ``O(β²)``    2 (+free)
``ComplexStep`` ``Im f(iβ) / β``                       ``O(β²)``    1 (+free)
=============== ====================================== ============ ==========

The complex step needs the dynamics to be holomorphic in β (all built-in
terms are); it has no subtractive cancellation, so β can be tiny.  Inside the
library a nudge is always one of these objects; names (``"centred"``...)
exist only at the command-line/configuration boundary
(:data:`glep.estimators.registry.NUDGES`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

from glep.errors import InputError
from glep.validation import check_beta


def tree_map(fn, *trees):
    """Apply ``fn`` leaf-wise over dicts / tuples of arrays."""
    first = trees[0]
    if isinstance(first, dict):
        return {k: tree_map(fn, *(t[k] for t in trees)) for k in first}
    if isinstance(first, tuple):
        return tuple(tree_map(fn, *parts) for parts in zip(*trees))
    if first is None:
        return None
    return fn(*trees)


class Nudge(ABC):
    """A finite-difference (or complex-step) rule in β."""

    def __init__(self, beta: float):
        check_beta(beta, "beta")
        self.beta = float(beta)

    @property
    @abstractmethod
    def betas(self) -> list[complex]:
        """The β values at which nudged trajectories are needed."""

    #: Whether ``combine`` reads the free (β = 0) value.
    needs_free: bool = False

    @property
    @abstractmethod
    def order(self) -> int:
        """The power of β in the bias."""

    @abstractmethod
    def combine(self, values: dict, free) -> object:
        """``d/dβ`` from ``values[β]`` and the free value ``free`` (β = 0)."""

    def derivative(self, f: Callable[[complex], object], free=None):
        return self.combine({b: f(b) for b in self.betas}, free)

    @property
    def label(self) -> str:
        return f"{type(self).__name__}(β={self.beta:g})"


class OneSided(Nudge):
    """``(f(β) − f(0))/β`` — one nudged pass, bias ``O(β)``."""

    order = 1
    needs_free = True

    @property
    def betas(self):
        return [self.beta]

    def combine(self, values, free):
        b = self.beta
        return tree_map(lambda fb, f0: (fb - f0) / b, values[b], free)


class Centred(Nudge):
    """``(f(β) − f(−β))/2β`` — two nudged passes, bias ``O(β²)``."""

    order = 2

    @property
    def betas(self):
        return [self.beta, -self.beta]

    def combine(self, values, free):
        b = self.beta
        return tree_map(lambda fp, fm: (fp - fm) / (2 * b), values[b], values[-b])


class ComplexStep(Nudge):
    """``Im f(iβ)/β`` — one complex nudged pass, bias ``O(β²)``, no cancellation."""

    order = 2

    @property
    def betas(self):
        return [1j * self.beta]

    def combine(self, values, free):
        b = self.beta
        return tree_map(lambda f: np.imag(f) / b, values[1j * b])


#: nudging scheme name -> factory ``β -> Nudge`` (the names the command line and TOML files accept)
NUDGES: dict[str, Callable[[float], Nudge]] = {"one-sided": OneSided, "centred": Centred, "complex": ComplexStep}

#: other spellings accepted by :func:`nudge_from_name`
_NUDGE_ALIASES = {"onesided": "one-sided", "centered": "centred", "complex-step": "complex"}


def nudge_from_name(name: str, beta: float) -> Nudge:
    """The nudge named ``name`` (``"one-sided"``, ``"centred"`` (or ``"centered"``), ``"complex"``) at ``β``."""
    key = name.lower().replace("_", "-") if isinstance(name, str) else None
    key = _NUDGE_ALIASES.get(key, key)
    if key not in NUDGES:
        raise InputError(f"nudge must be one of {', '.join(repr(n) for n in NUDGES)}, got {name!r}")
    return NUDGES[key](beta)
