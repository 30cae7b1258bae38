r"""Estimators and ground truths as strategy objects (as diffrax's ``solver=`` and ``adjoint=``).

An estimator computes ``dC/dθ`` of one loss ``C`` from a
:class:`~glep.estimators.problem.Problem` and a nudging scheme
(:class:`~glep.estimators.nudging.Nudge`): every GLEP variant estimates

    dC/dθ = d/dβ|₀ I(β) + boundary residual,

with ``d/dβ|₀`` taken by the nudge (bias ``O(β^order)``).  It declares which
loss it differentiates (``loss``), whether the identity it uses is exact for
that loss (``exact``: the bias vanishes as ``β → 0``), its cost in forward
passes (``passes``) and the ground truth it is compared with (``truth``, the
discrete adjoint of the same discretisation of the same loss).

A ground truth computes the same gradient without nudging.  Both are frozen
dataclasses: equal configurations compare equal and can key a cache.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from glep.estimators.nudging import Centred, Nudge
from glep.estimators.problem import Problem
from glep.estimators.result import GradientEstimate

#: the type of a progress callback: receives one message
Progress = Callable[[str], None] | None


class AbstractTruth(ABC):
    """A ground truth: ``dC/dθ`` of one loss without nudging (a discrete adjoint)."""

    #: a short name (``"discrete adjoint"``, ``"FE discrete adjoint"``)
    name: ClassVar[str]
    #: the loss whose gradient it computes
    loss: ClassVar[str]

    @abstractmethod
    def __call__(self, problem: Problem, progress: Progress = None) -> GradientEstimate:
        """The gradient of :attr:`loss` at the problem's parameters (``progress`` receives long-solve messages)."""


class AbstractEstimator(ABC):
    """A gradient estimator: ``GradientEstimate`` of ``dC/dθ`` from a problem and a nudge.

    Attributes
    ----------
    name:
        Registry name (``"pfvp"``, ``"civp-residual"``...): the row of a report.
    label:
        The name its estimates carry (``"PFVP"``, ``"CIVP + residual"``...).
    loss:
        Which loss it differentiates (text).
    exact:
        Whether its identity is exact for that loss (bias ``O(β^order)`` of
        the nudge only); a biased estimator omits part of the gradient.
    truth:
        The ground truth it converges to (when exact).
    nudged_family:
        At finite β, the nudged family whose trajectories it uses (``"initial-value"``,
        ``"final-state"``, ``"cbvp"``; :mod:`glep.estimators.finite`): its contrast approximates
        ``∇J`` of that family, ``J = mean over β′ of C_h(s_β′)`` (``None``: no finite-β objective).
    exact_at_finite_beta:
        Whether that is exact at every finite β (a residual-free family, or the residual
        integrated over β′), not only as β → 0.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    loss: ClassVar[str] = "C_h of the free CIVP trajectory"
    exact: ClassVar[bool] = True
    nudged_family: ClassVar[str | None] = None
    exact_at_finite_beta: ClassVar[bool] = False

    @property
    def truth(self) -> AbstractTruth:
        from glep.estimators.ground_truth import DiscreteAdjoint

        return DiscreteAdjoint()

    def passes(self, problem: Problem, nudge: Nudge) -> float:
        """Cost in forward passes (one trajectory of ``N`` steps; a tangent direction counts as one).

        Default: the free trajectory plus one nudged pass per β of the nudge.
        """
        return 1 + len(nudge.betas)

    def accepts(self, nudge: Nudge) -> bool:
        """Whether this estimator can use ``nudge`` (every scheme by default)."""
        return True

    @abstractmethod
    def estimate(self, problem: Problem, nudge: Nudge, progress: Progress = None) -> GradientEstimate:
        """The estimate at the given nudge (``progress`` receives long-solve messages)."""

    def __call__(self, problem: Problem, nudge: Nudge | None = None, progress: Progress = None) -> GradientEstimate:
        """:meth:`estimate` with the default nudge ``Centred(1e-4)``."""
        return self.estimate(problem, nudge or Centred(1e-4), progress)


@dataclass(frozen=True)
class FunctionTruth(AbstractTruth):
    """A ground truth given as a function ``(problem, progress=None) -> GradientEstimate``."""

    function: Callable
    name: ClassVar[str] = "function"
    loss: ClassVar[str] = "the function's"

    def __call__(self, problem: Problem, progress: Progress = None) -> GradientEstimate:
        return self.function(problem, progress=progress)


@dataclass(frozen=True, eq=False)
class FunctionEstimator(AbstractEstimator):
    """An estimator given as a function ``(problem, nudge, progress=None) -> GradientEstimate``.

    ``is_exact`` says whether it is exact; ``truth_function`` is its ground truth
    (``None``: the discrete adjoint of the free trajectory); ``title`` the label of
    its rows (default: ``key``).
    """

    key: str
    function: Callable
    is_exact: bool = True
    truth_function: Callable | None = None
    title: str | None = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.key

    @property
    def label(self) -> str:  # type: ignore[override]
        return self.title or self.key

    @property
    def exact(self) -> bool:  # type: ignore[override]
        return self.is_exact

    @property
    def truth(self) -> AbstractTruth:
        return super().truth if self.truth_function is None else FunctionTruth(self.truth_function)

    def estimate(self, problem: Problem, nudge: Nudge, progress: Progress = None) -> GradientEstimate:
        return self.function(problem, nudge, progress=progress)
