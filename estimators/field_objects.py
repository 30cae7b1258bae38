r"""Field estimators as strategy objects (as :mod:`glep.estimators.base` for ODE systems), and their comparison.

A :class:`FieldProblem` is a :class:`~glep.field_system.FieldSystem` with a horizon ``T`` and ``N``
leapfrog steps; the loss is the discrete ``C_h = Σ_j w_j c(q_j, t_j) + c_T(q_N)`` of the free pass.
Every estimator below reads ``dC_h/dθ`` (and, where it can, ``dC_h/dq₀``, ``dC_h/dp₀``) from nudged passes,
by the discrete GLEP identity of :mod:`glep.estimators.field_estimators`

    dC_h/dθ = d/dβ|₀ Σ_k w_k ∂_θU(q^β_k, t_k),   dC_h/dq₀ = −d/dβ|₀ p^β(0),   dC_h/dp₀ = d/dβ|₀ q^β(0),

with ``d/dβ`` taken by a real :class:`~glep.estimators.nudging.Nudge`, and is compared with the discrete
adjoint of the same leapfrog (:class:`FieldAdjoint`, the ground truth of every one of them):

==========================  =================================================================================
:class:`FieldPFVP`          backward integration of the nudged system from the free final state
:class:`FieldEcho`          the same passes as echoes: flip the momentum at ``T``, run forward, flip back
:class:`FieldRHEL`          RHEL's Hamiltonian read-out (``∂_θH = −∂_θL``, ``Σ_x(q, p) = (p, q)``): for a
                            separable field with the mechanical reversal this is *the same computation* as
                            the echo (the same arithmetic, the same numbers), listed for the comparison
:class:`FieldCIVPResidual`  nudged CIVP passes plus the boundary residual ``R(T)`` from forward tangents
                            (one pass per parameter dof; no initial-state gradient)
:class:`FieldHEB`           the HEB protocol for a terminal cost: the error ``−β∇c_T(q_N)`` injected as an
                            impulse on the momentum at ``T``, time reversal, echo, time reversal, read-out of
                            ``dC/dq₀``, ``dC/dp₀`` and the parameter fields (``∫∂_θU`` along the echo: the
                            parameters are static fields here, not dynamical modes as in the cavity array);
                            a running cost is refused
:class:`KerrHEB`            HEB of the Kerr cavity array (:mod:`glep.estimators.heb`; its problem is a
                            :class:`~glep.estimators.heb.ModeProblem`, its truth :class:`KerrAdjoint`)
==========================  =================================================================================

Results are :class:`~glep.estimators.result.GradientEstimate`\ s whose ``theta`` holds, per parameter, the
dual vector of a parameter field (gathered over ranks and ordered by dof coordinates, so identical on any
number of ranks) or a scalar's derivative as a length-1 array; ``q0`` and ``p0`` are gathered the same way
(``None`` where the estimator does not provide them).  :func:`compare_field_estimators` sweeps β like
:func:`glep.estimators.compare.compare_estimators` and returns the same :class:`~glep.estimators.compare.Report`
(table, ``results.h5``).

Objects are frozen dataclasses; this module loads no finite-element library until an estimate is computed.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from glep.errors import InputError
from glep.estimators.nudging import Centred, ComplexStep, Nudge, OneSided
from glep.estimators.result import GradientEstimate

#: a progress callback (receives one message), or None
Progress = Callable[[str], None] | None

LOSS = "C_h of the free leapfrog pass"


@dataclass(frozen=True, eq=False)
class FieldProblem:
    """A learning problem on a field: the system, the horizon ``T`` and the number ``N`` of leapfrog steps.

    Arguments:
        system: a :class:`glep.field_system.FieldSystem` (its parameters, cost, sources, initial state).
        T: horizon ``T > 0``.
        N: number of steps ``N >= 1`` (uniform, ``h = T/N``).
        checkpoints: snapshots of the adjoint's binomial schedule (``None``: store every step).
    """

    system: object
    T: float
    N: int
    checkpoints: int | None = None

    def __post_init__(self):
        from glep.field_midpoint import MidpointFieldSystem  # noqa: PLC0415 (dolfinx loads with the first problem)
        from glep.field_system import FieldSystem  # noqa: PLC0415

        if not isinstance(self.system, FieldSystem | MidpointFieldSystem):
            raise InputError(f"system must be a glep.FieldSystem (leapfrog) or a glep.MidpointFieldSystem "
                             f"(implicit midpoint), got {type(self.system).__name__}")
        if isinstance(self.T, bool) or not isinstance(self.T, (int, float)) or not np.isfinite(self.T) or self.T <= 0:
            raise InputError(f"T must be a finite number > 0, got {self.T!r}")
        if isinstance(self.N, bool) or not isinstance(self.N, (int, np.integer)) or self.N < 1:
            raise InputError(f"N must be an integer >= 1, got {self.N!r}")
        object.__setattr__(self, "T", float(self.T))
        object.__setattr__(self, "N", int(self.N))

    @property
    def name(self) -> str:
        return f"{self.system.lagrangian.name} field ({self.system.ndofs} dofs, N = {self.N}, T = {self.T:g})"

    @property
    def midpoint(self) -> bool:
        """Whether the system is stepped by the implicit midpoint rule (a non-separable density: NLS)."""
        from glep.field_midpoint import MidpointFieldSystem  # noqa: PLC0415

        return isinstance(self.system, MidpointFieldSystem)

    @property
    def parameter_count(self) -> int:
        """Trainable numbers: every dof of every parameter field, plus the scalars."""
        s = self.system
        return sum(s.spaces[k].dofmap.index_map.size_global if k in s.spaces else 1
                   for k in s.lagrangian.parameters)


def _gather_theta(system, theta: dict) -> dict[str, np.ndarray]:
    """Parameter gradients as global arrays (fields: dual vectors gathered in dof-coordinate order)."""
    out = {}
    for k, g in theta.items():
        if system.lagrangian.parameters[k].kind == "field":
            out[k] = system.gather(g.dual, space=k)
        else:
            out[k] = np.array([float(g)])
    return out


def _gather_state(system, a) -> np.ndarray | None:
    return None if a is None or np.all(np.isnan(a)) else system.gather(a)


def as_estimate(problem: FieldProblem, result, name: str, *, passes: float, nudge: str = "", beta: float = 0.0,
                notes: Sequence[str] = ()) -> GradientEstimate:
    """A field result (:class:`~glep.estimators.field_estimators.FieldEstimate` or
    :class:`~glep.ivp.field_adjoint.FieldAdjointResult`) as a rank-independent :class:`GradientEstimate`."""
    s = problem.system
    return GradientEstimate(name, _gather_theta(s, result.theta), _gather_state(s, result.q0),
                            _gather_state(s, result.p0), passes=float(passes), wall_time=result.wall_time,
                            nudge=nudge, beta=beta, loss=LOSS, notes=list(notes))


# -- ground truths --------------------------------------------------------------------------------------------
class AbstractFieldTruth(ABC):
    """A ground truth of a field (or mode) problem: the gradient without nudging (a discrete adjoint)."""

    name: ClassVar[str]
    loss: ClassVar[str]

    @abstractmethod
    def __call__(self, problem, progress: Progress = None) -> GradientEstimate:
        """The gradient of :attr:`loss` at the problem's parameters."""


@dataclass(frozen=True)
class FieldAdjoint(AbstractFieldTruth):
    """The discrete adjoint of the field leapfrog (:func:`glep.ivp.field_adjoint.field_adjoint`): 2 passes."""

    name: ClassVar[str] = "discrete adjoint"
    loss: ClassVar[str] = LOSS

    def __call__(self, problem: FieldProblem, progress: Progress = None) -> GradientEstimate:
        if problem.midpoint:
            from glep.ivp.field_midpoint_adjoint import midpoint_adjoint as adjoint  # noqa: PLC0415
        else:
            from glep.ivp.field_adjoint import field_adjoint as adjoint  # noqa: PLC0415

        res = adjoint(problem.system, problem.T, problem.N, checkpoints=problem.checkpoints, riesz=False)
        steps = res.memory.get("forward_steps", problem.N)
        rule = "implicit midpoint" if problem.midpoint else "leapfrog"
        return as_estimate(problem, res, "discrete adjoint", passes=1 + steps / problem.N,
                           notes=[f"ground truth: discrete adjoint of the {rule}"])


# -- estimators -----------------------------------------------------------------------------------------------
class AbstractFieldEstimator(ABC):
    """A gradient estimator of a field problem: the field counterpart of
    :class:`~glep.estimators.base.AbstractEstimator` (same attributes: ``name``, ``label``, ``loss``,
    ``exact``, ``passes``, ``truth``; ``estimate(problem, nudge)``)."""

    name: ClassVar[str]
    label: ClassVar[str]
    loss: ClassVar[str] = LOSS
    exact: ClassVar[bool] = True
    #: whether it returns the initial-state gradient (``q0``, ``p0``; for :class:`KerrHEB` the evaluation
    #: field's ``Ψ(0)``, in ``theta``)
    initial_state: ClassVar[bool] = True
    #: whether it runs on a :class:`glep.MidpointFieldSystem` (the conjugation echo of a complex field)
    midpoint: ClassVar[bool] = False

    @property
    def truth(self) -> AbstractFieldTruth:
        return FieldAdjoint()

    def passes(self, problem, nudge: Nudge) -> float:
        """Cost in forward passes of ``N`` steps: the free pass plus one per β."""
        return 1 + len(nudge.betas)

    def accepts(self, nudge: Nudge) -> bool:
        """Real nudges only (``Centred``, ``OneSided``): the field passes are real."""
        return isinstance(nudge, Nudge) and not isinstance(nudge, ComplexStep)

    def check(self, problem, nudge: Nudge) -> None:
        """Raise :class:`InputError` for a problem or nudge this estimator cannot take (before any work)."""
        if not isinstance(problem, FieldProblem):
            raise InputError(f"{self.label}: problem must be a glep.FieldProblem, got {type(problem).__name__}")
        if problem.midpoint and not self.midpoint:
            raise InputError(f"{self.label}: not available for a glep.MidpointFieldSystem (implicit midpoint, e.g. "
                             "NLS): its backward pass is the conjugation echo — use 'echo' (or 'heb' with a "
                             "terminal cost only)")
        if not self.accepts(nudge):
            raise InputError(f"{self.label}: nudge must be a real glep Nudge (Centred or OneSided), got {nudge!r}")

    @abstractmethod
    def _run(self, problem, nudge: Nudge) -> GradientEstimate:
        """The estimate (arguments checked)."""

    def estimate(self, problem, nudge: Nudge, progress: Progress = None) -> GradientEstimate:
        """The estimate at the given nudge."""
        self.check(problem, nudge)
        return self._run(problem, nudge)

    def __call__(self, problem, nudge: Nudge | None = None, progress: Progress = None) -> GradientEstimate:
        """:meth:`estimate` with the default nudge ``Centred(1e-4)``."""
        return self.estimate(problem, nudge or Centred(1e-4), progress)


class _EchoFamily(AbstractFieldEstimator):
    echo: ClassVar[bool] = True
    note: ClassVar[str] = ""

    def _run(self, problem: FieldProblem, nudge: Nudge) -> GradientEstimate:
        if problem.midpoint:  # the conjugation echo of the midpoint rule (estimators/field_nls.py)
            from glep.estimators.field_nls import nls_echo  # noqa: PLC0415

            res = nls_echo(problem.system, problem.T, problem.N, nudge, riesz=False)
        else:
            from glep.estimators.field_estimators import field_pfvp  # noqa: PLC0415

            res = field_pfvp(problem.system, problem.T, problem.N, nudge, echo=self.echo, riesz=False)
        return as_estimate(problem, res, self.label, passes=res.passes, nudge=nudge.label, beta=nudge.beta,
                           notes=[self.note])


@dataclass(frozen=True)
class FieldPFVP(_EchoFamily):
    """PFVP: nudged passes integrated backward from the free final state (exact)."""

    name: ClassVar[str] = "pfvp"
    label: ClassVar[str] = "PFVP"
    echo: ClassVar[bool] = False
    note: ClassVar[str] = "exact: backward integration from the free final state"


@dataclass(frozen=True)
class FieldEcho(_EchoFamily):
    """The echo: PFVP's passes run forward in time after a momentum flip (needs the mechanical reversal)."""

    name: ClassVar[str] = "echo"
    label: ClassVar[str] = "echo"
    note: ClassVar[str] = "exact (time-reversible separable density): forward passes only"
    midpoint: ClassVar[bool] = True


@dataclass(frozen=True)
class FieldRHEL(_EchoFamily):
    """RHEL in Hamiltonian read-out; for separable fields the same computation as :class:`FieldEcho`."""

    name: ClassVar[str] = "rhel"
    label: ClassVar[str] = "RHEL"
    note: ClassVar[str] = "exact; for a separable field the same computation as the echo (∂_θH = −∂_θL)"


@dataclass(frozen=True)
class FieldCIVPResidual(AbstractFieldEstimator):
    """Nudged CIVP passes plus the boundary residual ``R(T)`` from forward tangents (one pass per parameter dof)."""

    name: ClassVar[str] = "civp-residual"
    label: ClassVar[str] = "CIVP + residual"
    initial_state: ClassVar[bool] = False

    def passes(self, problem: FieldProblem, nudge: Nudge) -> float:
        return 1 + len(nudge.betas) + problem.parameter_count

    def _run(self, problem: FieldProblem, nudge: Nudge) -> GradientEstimate:
        from glep.estimators.field_estimators import field_civp  # noqa: PLC0415

        res = field_civp(problem.system, problem.T, problem.N, nudge, residual=True, riesz=False)
        return as_estimate(problem, res, self.label, passes=res.passes, nudge=nudge.label, beta=nudge.beta,
                           notes=["exact: contrast + R(T) from forward tangents (cost ∝ parameter dofs)"])


@dataclass(frozen=True)
class FieldHEB(_EchoFamily):
    """Hamiltonian Echo Backpropagation on a field with a terminal cost only (see the module docstring)."""

    name: ClassVar[str] = "heb"
    label: ClassVar[str] = "HEB"
    note: ClassVar[str] = "exact: error injected as a momentum impulse at T, echo, read-out at t = 0"
    midpoint: ClassVar[bool] = True

    def check(self, problem, nudge: Nudge) -> None:
        super().check(problem, nudge)
        s = problem.system
        if s.has_cost:
            raise InputError("HEB takes a terminal cost only (the error injected at T): this system has a running "
                             "cost (FieldSystem(cost=...)); use the echo, PFVP or RHEL, or move the read-out to "
                             "terminal_cost")
        if not s.has_terminal_cost:
            raise InputError("HEB needs a terminal cost (FieldSystem(terminal_cost=...)): there is no error to "
                             "inject at T")


# -- the Kerr cavity array (complex modes) --------------------------------------------------------------------
@dataclass(frozen=True)
class KerrAdjoint(AbstractFieldTruth):
    """The discrete adjoint of the Strang map of a :class:`~glep.estimators.heb.ModeProblem`."""

    name: ClassVar[str] = "discrete adjoint"
    loss: ClassVar[str] = "C of the final state of the Strang map"

    def __call__(self, problem, progress: Progress = None) -> GradientEstimate:
        from glep.estimators.heb import mode_adjoint  # noqa: PLC0415

        return mode_adjoint(problem).as_estimate()


@dataclass(frozen=True)
class KerrHEB(AbstractFieldEstimator):
    """HEB of the Kerr cavity array (:func:`glep.estimators.heb.heb`, ``η = β``): exact for the Strang map."""

    name: ClassVar[str] = "heb"
    label: ClassVar[str] = "HEB"
    loss: ClassVar[str] = "C of the final state of the Strang map"

    @property
    def truth(self) -> AbstractFieldTruth:
        return KerrAdjoint()

    def accepts(self, nudge: Nudge) -> bool:
        return isinstance(nudge, Centred | OneSided)

    def check(self, problem, nudge: Nudge) -> None:
        from glep.estimators.heb import ModeProblem  # noqa: PLC0415

        if not isinstance(problem, ModeProblem):
            raise InputError(f"KerrHEB: problem must be a glep.ModeProblem, got {type(problem).__name__}")
        if not self.accepts(nudge):
            raise InputError(f"KerrHEB: nudge must be Centred or OneSided (η = β), got {nudge!r}")

    def _run(self, problem, nudge: Nudge) -> GradientEstimate:
        from glep.estimators.heb import heb  # noqa: PLC0415

        scheme = "centred" if isinstance(nudge, Centred) else "one-sided"
        est = heb(problem, nudge.beta, scheme).as_estimate()
        est.nudge = nudge.label
        return est


#: field estimator name -> object (the rows of ``glep compare --system`` for a field, in this order)
FIELD_ESTIMATORS: dict[str, AbstractFieldEstimator] = {e.name: e for e in (
    FieldCIVPResidual(), FieldPFVP(), FieldEcho(), FieldRHEL(), FieldHEB())}


# -- comparison -----------------------------------------------------------------------------------------------
def relative_state_error(est: GradientEstimate, truth: GradientEstimate) -> dict[str, float]:
    """``‖g − g*‖/‖g*‖`` of ``q0`` and ``p0`` where both are given (global arrays)."""
    out = {}
    for k in ("q0", "p0"):
        a, b = getattr(est, k), getattr(truth, k)
        if a is None or b is None:
            continue
        nb = float(np.linalg.norm(b))
        out[k] = float(np.linalg.norm(a - b) / nb) if nb > 0 else float(np.linalg.norm(a))
    return out


def _forward_time(problem) -> float:
    """Seconds of one free forward pass (the unit of the table's ``time/fwd``)."""
    t0 = time.perf_counter()
    if isinstance(problem, FieldProblem):
        from glep.ivp.field_stepping import forward, midpoint_forward  # noqa: PLC0415

        (midpoint_forward if problem.midpoint else forward)(problem.system, problem.T, problem.N)
    else:
        problem.final_state()
    return time.perf_counter() - t0


def compare_field_estimators(problem, estimators: Sequence[AbstractFieldEstimator], *,
                             betas: Sequence[float] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5),
                             nudges: Sequence[str] = ("one-sided", "centred"), report_nudge: str = "centred",
                             report_beta: float = 1e-4, progress: Progress = None, name: str | None = None):
    """Every estimator for every nudge and β against its ground truth: a :class:`~glep.estimators.compare.Report`.

    The same rules as :func:`~glep.estimators.compare.compare_estimators`: arguments are checked before any
    work, a failing estimator is a ``"failed"`` row with its reason, a failed β point is NaN.  The table's
    relative error is over the parameters (``theta``); the initial-state errors go to each row's notes.
    """
    from glep.estimators.compare import (  # noqa: PLC0415
        FAILURES,
        Report,
        Row,
        _check_nudging,
        _failed_row,
        _finite,
        _names,
        short_reason,
    )
    from glep.estimators.metrics import compare, fit_slope  # noqa: PLC0415
    from glep.estimators.registry import nudge_from_name  # noqa: PLC0415

    odd = [e for e in _names(estimators, "estimators") if not isinstance(e, AbstractFieldEstimator)]
    if odd:
        raise InputError(f"estimators: {odd!r} are not field estimator objects (glep.AbstractFieldEstimator; "
                         f"by name: glep.estimators.registry.FIELD_ESTIMATORS)")
    estimators = _names(estimators, "estimators")
    betas, nudges = _check_nudging(betas, nudges, report_nudge, report_beta)
    say = progress or (lambda msg: None)
    truths, rows, estimates = {}, [], {}
    forward_time = _forward_time(problem)
    say(f"free pass: {forward_time:.3f} s")
    for est in estimators:
        errors, point_failures = {}, []
        try:
            est.check(problem, nudge_from_name(report_nudge, report_beta))  # refuses before any pass
            if est.truth not in truths:
                truths[est.truth] = est.truth(problem)
                say(f"{est.truth.name} ({truths[est.truth].wall_time:.3f} s)")
            truth = truths[est.truth]
            for nudge_name in nudges:
                if not est.accepts(nudge_from_name(nudge_name, 1.0)):
                    continue
                errs = []
                for b in betas:
                    try:
                        got = _finite(est(problem, nudge_from_name(nudge_name, b)))
                        errs.append(compare(got.theta, truth.theta)["relative_error"])
                    except FAILURES as exc:
                        point_failures.append({"nudge": nudge_name, "beta": float(b), "reason": short_reason(exc)})
                        errs.append(float("nan"))
                errors[nudge_name] = errs
            ref = _finite(est(problem, nudge_from_name(report_nudge, report_beta)))
        except FAILURES as exc:
            rows.append(_failed_row(est, exc, errors, point_failures))
            say(f"{est.name}: FAILED ({rows[-1].reason})")
            continue
        state = relative_state_error(ref, truth)
        notes = list(ref.notes) + [f"initial state: {', '.join(f'{k} {v:.1e}' for k, v in state.items())}"
                                   if state else "no initial-state gradient"]
        rows.append(Row(est.name, est.label, est.exact, compare(ref.theta, truth.theta),
                        {k: fit_slope(betas, v) for k, v in errors.items()}, errors, ref.passes, ref.wall_time,
                        truth.loss, notes, point_failures=point_failures))
        estimates[est.name] = ref
        say(f"{est.label}: relative error {rows[-1].metrics['relative_error']:.2e} ({ref.wall_time:.3f} s)")
    truth = next(iter(truths.values())) if truths else GradientEstimate("discrete adjoint", {}, loss=LOSS)
    return Report(name or getattr(problem, "name", type(problem).__name__), betas, list(nudges), report_nudge,
                  report_beta, truth, forward_time, rows, estimates)


__all__ = ["FIELD_ESTIMATORS", "AbstractFieldEstimator", "AbstractFieldTruth", "FieldAdjoint",
           "FieldCIVPResidual", "FieldEcho", "FieldHEB", "FieldPFVP", "FieldProblem", "FieldRHEL", "KerrAdjoint",
           "KerrHEB", "as_estimate", "compare_field_estimators", "relative_state_error"]
