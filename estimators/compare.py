r"""Comparison reports: every estimator against the discrete adjoint, across β.

For each estimator (an :class:`~glep.estimators.base.AbstractEstimator`, or
its name in :data:`~glep.estimators.registry.ESTIMATORS`) and each nudging
scheme the relative error to the estimator's ground truth (the discrete
adjoint of the loss it differentiates) is measured over a range of β; the
bias slope is fitted on the log–log curve above the round-off floor.  The table reports the metrics at a
reference β (centred, 1e-4 by default), the fitted slopes, the cost in
forward passes and the wall time.

Nothing is dropped: an estimator that fails (no convergence, a non-finite
gradient, not applicable to the problem) is a row with status ``"failed"``
and a one-line reason, and a failed β point of a sweep is a NaN counted in
its row; :func:`failure_summary` states the failures in one line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from glep.errors import GlepError, InputError, SolverError
from glep.estimators.base import AbstractEstimator
from glep.estimators.ground_truth import DiscreteAdjoint
from glep.estimators.metrics import compare, fit_slope
from glep.estimators.problem import Problem
from glep.estimators.registry import DEFAULT_ESTIMATORS, ESTIMATORS, nudge_from_name
from glep.estimators.result import GradientEstimate

#: what counts as an estimator failing (a FAILED row) rather than a bug of glep (a traceback): glep's own
#: errors, floating-point and linear-algebra failures, and PETSc errors (``petsc4py.PETSc.Error`` is a
#: RuntimeError), memory exhaustion
FAILURES = (GlepError, ArithmeticError, np.linalg.LinAlgError, RuntimeError, MemoryError)


@dataclass
class Row:
    """One estimator of a report.

    ``status`` is ``"ok"`` or ``"failed"``; a failed row has NaN metrics and
    its ``reason`` (one short line; ``detail`` is the full message).
    ``point_failures`` lists the β points of the sweep that failed
    (``{"nudge", "beta", "reason"}``): they are NaN in ``errors``.
    """

    name: str
    label: str
    exact: bool
    metrics: dict
    slopes: dict
    errors: dict
    passes: float
    wall_time: float
    loss: str
    notes: list = field(default_factory=list)
    status: str = "ok"
    reason: str = ""
    detail: str = ""
    point_failures: list = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status == "failed"


@dataclass
class Report:
    """The outcome of :func:`compare_estimators`."""

    problem_name: str
    betas: np.ndarray
    nudges: list[str]
    report_nudge: str
    report_beta: float
    truth: GradientEstimate
    forward_time: float
    rows: list[Row]
    estimates: dict = field(default_factory=dict)
    run_id: str = ""  # set when written by glep.estimators.output.write_results (or read back)

    @property
    def failures(self) -> list[Row]:
        """The rows whose estimator failed."""
        return [r for r in self.rows if r.failed]


def short_reason(exc: BaseException, limit: int = 100) -> str:
    """``"Type: message"`` on one line, cut to ``limit`` characters."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def failure_summary(report: Report) -> str | None:
    """``"2 of 7 estimators failed: cbvp (SolverError: ...), ..."``, or None if none failed."""
    bad = report.failures
    if not bad:
        return None
    what = ", ".join(f"{r.name} ({r.reason})" for r in bad)
    return f"{len(bad)} of {len(report.rows)} estimator{'s' if len(report.rows) != 1 else ''} failed: {what}"


def _names(value, what: str) -> list:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InputError(f"{what} must be a list of names, got {value!r}")
    if not value:
        raise InputError(f"{what} must not be empty")
    return [v for i, v in enumerate(value) if v not in value[:i]]


def _estimators(value) -> list[AbstractEstimator]:
    """Estimator objects from a list of objects and registry names (repeated names dropped)."""
    items = _names(value, "estimators")
    odd = [e for e in items if not isinstance(e, str | AbstractEstimator)]
    if odd:
        raise InputError(f"estimators: {odd!r} are neither estimator names nor estimator objects "
                         "(glep.estimators.base.AbstractEstimator)")
    unknown = [e for e in items if isinstance(e, str) and e not in ESTIMATORS]
    if unknown:
        raise InputError(f"estimators: unknown {unknown}; choose from {sorted(ESTIMATORS)}")
    out: dict[str, AbstractEstimator] = {}
    for e in items:
        est = ESTIMATORS[e] if isinstance(e, str) else e
        out.setdefault(est.name, est)
    return list(out.values())


def _check_inputs(estimators, betas, nudges, report_nudge, report_beta) -> tuple[list, np.ndarray, list]:
    """Every argument of :func:`compare_estimators` checked before any work starts."""
    return _estimators(estimators), *_check_nudging(betas, nudges, report_nudge, report_beta)


def _check_nudging(betas, nudges, report_nudge, report_beta) -> tuple[np.ndarray, list]:
    """The β grid (distinct, decreasing) and the nudge names of a comparison, checked (:class:`InputError`)."""
    nudges = _names(nudges, "nudges")
    for n in [*nudges, report_nudge]:
        nudge_from_name(n, 1.0)  # raises InputError naming the valid choices
    if isinstance(betas, str) or not isinstance(betas, Sequence | np.ndarray) or not len(betas):
        raise InputError(f"betas must be a non-empty list of numbers, got {betas!r}")
    try:
        values = np.asarray([*betas, report_beta], dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"betas and report_beta must be numbers, got {list(betas)!r}, {report_beta!r}") from exc
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise InputError(f"betas and report_beta must be finite and > 0 (signs are handled by the nudging "
                         f"scheme), got {list(betas)!r}, {report_beta!r}")
    return np.asarray(sorted(set(values.tolist()), reverse=True)), nudges


def _finite(est: GradientEstimate) -> GradientEstimate:
    bad = [k for k, v in est.theta.items() if not np.all(np.isfinite(v))]
    if bad:
        raise SolverError(f"non-finite gradient for {bad} ({est.nudge} β = {est.beta:g})")
    return est


def _sweep(est: AbstractEstimator, problem, row_truth, betas, nudges, say, progress) -> tuple[dict, list]:
    """Relative errors over β for every nudge the estimator accepts; failed points are NaN and listed."""
    name = est.name
    errors: dict[str, list[float]] = {}
    point_failures = []
    for nudge_name in nudges:
        if not est.accepts(nudge_from_name(nudge_name, 1.0)):
            continue  # e.g. the FE backend nudges with real β only
        errs = []
        for b in betas:
            try:
                got = _finite(est(problem, nudge_from_name(nudge_name, b), progress=progress))
            except FAILURES as exc:  # e.g. a large nudge can leave the basin of the solution
                reason = short_reason(exc)
                say(f"{name}: {nudge_name} β = {b:g} failed ({reason})")
                point_failures.append({"nudge": nudge_name, "beta": float(b), "reason": reason})
                errs.append(float("nan"))
                continue
            errs.append(compare(got.theta, row_truth.theta)["relative_error"])
        errors[nudge_name] = errs
    return errors, point_failures


def _failed_row(est: AbstractEstimator, exc: BaseException, errors: dict, point_failures: list) -> Row:
    nan = float("nan")
    metrics = {"cosine": nan, "norm_ratio": nan, "relative_error": nan, "sign_agreement": nan,
               "cosine_per_group": {}}
    return Row(est.name, est.label, est.exact, metrics, {}, errors, nan, nan, "", [], status="failed",
               reason=short_reason(exc), detail=f"{type(exc).__name__}: {exc}", point_failures=point_failures)


def compare_estimators(problem: Problem, *, estimators: Sequence[str | AbstractEstimator] = DEFAULT_ESTIMATORS,
                       betas: Sequence[float] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5),
                       nudges: Sequence[str] = ("one-sided", "centred"), report_nudge: str = "centred",
                       report_beta: float = 1e-4, progress: Callable[[str], None] | None = None) -> Report:
    """Run every estimator for every nudge and β; compare each with its ground truth.

    ``estimators`` lists estimator objects and/or names registered in
    :data:`~glep.estimators.registry.ESTIMATORS`; ``nudges`` and
    ``report_nudge`` name nudging schemes (:data:`~glep.estimators.registry.NUDGES`).
    The report's truth is the discrete adjoint of the free trajectory; an
    estimator of another loss (e.g. :class:`~glep.estimators.cbvp.CBVP`) is
    compared with its own truth, named in its row's notes.

    An estimator that fails (a solver that does not converge, a non-finite
    gradient, an estimator that does not apply to this problem) stays in the
    report as a row with ``status == "failed"`` and its reason; a failed β
    point of a sweep is NaN and listed in its row's ``point_failures``.
    Errors in the arguments raise :class:`~glep.errors.InputError` before any
    work starts.
    """
    estimators, betas, nudges = _check_inputs(estimators, betas, nudges, report_nudge, report_beta)
    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    problem.free  # noqa: B018  (the free trajectory, timed)
    forward_time = time.perf_counter() - t0
    say(f"free trajectory: loss C_h = {problem.free.loss:.6g} ({forward_time:.3f} s)")
    shared = DiscreteAdjoint()
    truth = shared(problem)
    say(f"discrete adjoint ({truth.wall_time:.3f} s)")
    truths = {shared: truth}
    rows, estimates = [], {}
    for est in estimators:
        name = est.name
        tell = (lambda msg, name=name: say(f"{name}: {msg}")) if progress else None
        errors, point_failures = {}, []
        try:
            if est.truth not in truths:
                truths[est.truth] = est.truth(problem, progress=tell)
            row_truth = truths[est.truth]
            errors, point_failures = _sweep(est, problem, row_truth, betas, nudges, say, tell)
            # timed on its own, with nothing cached from the truth and the sweep above (but the free trajectory)
            problem.free.sensitivities = None
            problem.cache.clear()
            ref = _finite(est(problem, nudge_from_name(report_nudge, report_beta), progress=tell))
        except FAILURES as exc:
            rows.append(_failed_row(est, exc, errors, point_failures))
            say(f"{name}: FAILED ({rows[-1].reason})")
            continue
        slopes = {k: fit_slope(betas, v) for k, v in errors.items()}
        metrics = compare(ref.theta, row_truth.theta)
        biased = any(n.startswith("biased") for n in ref.notes)
        notes = list(ref.notes) + ([] if est.truth == shared else list(row_truth.notes))
        rows.append(Row(name, ref.name, est.exact and not biased, metrics, slopes, errors, ref.passes,
                        ref.wall_time, ref.loss, notes, point_failures=point_failures))
        estimates[name] = ref
        say(f"{ref.name}: relative error {metrics['relative_error']:.2e} ({ref.wall_time:.3f} s)")
    return Report(problem.system.name, betas, list(nudges), report_nudge, report_beta, truth, forward_time,
                  rows, estimates)


#: the relative error an exact row is expected to reach at the report's β (centred β = 1e-4)
EXACT_TOL = 1e-6


def _bias_note(report: Report, r: Row) -> str:
    r"""Why an exact row is above :data:`EXACT_TOL` at the report's β, if its bias slope says so.

    An exact estimator's error at finite β is its nudging bias ``e(β) ≈ C β^s`` (``s`` the fitted
    slope of its scheme); a large ``C`` (an ill-conditioned problem: e.g. a boundary-value problem
    near a conjugate point, whose Jacobi operator has a small eigenvalue) puts it above the tolerance
    at ``β = 10⁻⁴``.  The note gives the fitted slope and the β at which ``C β^s`` meets the tolerance.
    """
    err = r.metrics.get("relative_error", float("nan"))
    slope = r.slopes.get(report.report_nudge, float("nan"))
    if not (r.exact and np.isfinite(err) and err > EXACT_TOL):
        return ""
    if not (np.isfinite(slope) and slope > 0.5):
        return f"; above {EXACT_TOL:g} at β = {report.report_beta:g} with no β bias slope to explain it"
    beta = report.report_beta * (EXACT_TOL / err) ** (1.0 / slope)
    return (f"; above {EXACT_TOL:g} at β = {report.report_beta:g}: its {report.report_nudge} β bias "
            f"(fitted slope {slope:.2f}) reaches {EXACT_TOL:g} at β ≈ {beta:.1e}")


def _note(report: Report, r: Row) -> str:
    if r.failed:
        note = r.reason
    else:
        note = "exact" if r.exact else (r.notes[0] if r.notes else "biased")
        if r.loss != report.truth.loss:
            truth = r.notes[-1].removeprefix("ground truth: ") if r.notes else "its own"
            note += f"; differentiates {r.loss}; truth: {truth}"
        note += _bias_note(report, r)
    if r.point_failures:
        total = sum(len(v) for v in r.errors.values()) or len(r.point_failures)
        note += f"; {len(r.point_failures)} of {total} β points failed (gaps in the curves)"
    return note


def format_table(report: Report) -> str:
    """A plain-text table, one row per estimator (a failed estimator: ``FAILED`` and its reason)."""
    head = (f"{'estimator':<18}{'cosine':>10}{'rel. error':>12}{'norm ratio':>12}{'sign agr.':>10}"
            + "".join(f"{'slope ' + n:>18}" for n in report.nudges)
            + f"{'passes':>9}{'time/fwd':>10}{'wall [s]':>10}  note")
    lines = [f"{report.problem_name}: gradients of C_h vs the discrete adjoint "
             f"(metrics at {report.report_nudge} β = {report.report_beta:g})", head, "-" * len(head)]
    truth = report.truth
    blank = "".join(f"{'':>18}" for _ in report.nudges)
    if truth.wall_time:
        tf = (truth.wall_time + report.forward_time) / report.forward_time if report.forward_time > 0 else float("nan")
        lines.append(f"{'discrete adjoint':<18}{1.0:>10.6f}{0.0:>12.2e}{1.0:>12.6f}{1.0:>10.3f}{blank}"
                     f"{truth.passes:>9.0f}{tf:>10.1f}{truth.wall_time:>10.3f}  ground truth")
    for r in report.rows:
        if r.failed:
            lines.append(f"{r.label:<18}{'FAILED':>10}{'':>34}{blank}{'':>29}  {_note(report, r)}")
            continue
        m = r.metrics
        slopes = "".join(f"{r.slopes.get(n, float('nan')):>18.2f}" for n in report.nudges)
        # every row reuses the shared free trajectory: count it in the cost
        tf = (r.wall_time + report.forward_time) / report.forward_time if report.forward_time > 0 else float("nan")
        lines.append(f"{r.label:<18}{m['cosine']:>10.6f}{m['relative_error']:>12.2e}{m['norm_ratio']:>12.6f}"
                     f"{m['sign_agreement']:>10.3f}{slopes}{r.passes:>9.0f}{tf:>10.1f}{r.wall_time:>10.3f}"
                     f"  {_note(report, r)}")
    lines.append(f"loss differentiated by every row unless noted: {report.truth.loss}; "
                 "passes = trajectories of N steps (a tangent direction counts as one); time/fwd = wall time "
                 "including the free trajectory, in units of one free trajectory")
    return "\n".join(lines)
