r"""Comparison reports: every estimator against the discrete adjoint, across β.

For each estimator and each nudging scheme the relative error to the discrete
adjoint is measured over a range of β; the bias slope is fitted on the
log–log curve above the round-off floor.  The table reports the metrics at a
reference β (centred, 1e-4 by default), the fitted slopes, the cost in
forward passes and the wall time.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from glep.errors import GlepError, InputError, SolverError
from glep.estimators.contrast import civp_contrast, echo, pfvp
from glep.estimators.ground_truth import adjoint
from glep.estimators.metrics import compare, fit_slope
from glep.estimators.nudging import nudge_from_name
from glep.estimators.problem import Problem
from glep.estimators.result import GradientEstimate
from glep.estimators.rhel import rhel


def _echo_measured(problem, nudge):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return echo(problem, nudge, allow_irreversible=True)


def _cbvp(problem, nudge):
    from glep.estimators.cbvp import cbvp

    return cbvp(problem, nudge)


def _cbvp_truth(problem):
    from glep.estimators.cbvp import cbvp_truth

    return cbvp_truth(problem)


#: name -> (function(problem, nudge) -> GradientEstimate, is exact, its ground truth or None for the
#: discrete adjoint of the free CIVP)
ESTIMATORS: dict[str, tuple[Callable, bool, Callable | None]] = {
    "civp-contrast": (lambda pr, nu: civp_contrast(pr, nu), False, None),
    "civp-residual": (lambda pr, nu: civp_contrast(pr, nu, residual=True), True, None),
    "pfvp": (pfvp, True, None),
    "echo": (_echo_measured, True, None),
    "rhel": (rhel, True, None),
    "cbvp": (_cbvp, True, _cbvp_truth),
}


@dataclass
class Row:
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


def compare_estimators(problem: Problem, *, estimators: Sequence[str] = tuple(ESTIMATORS),
                       betas: Sequence[float] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5),
                       nudges: Sequence[str] = ("one-sided", "centred"), report_nudge: str = "centred",
                       report_beta: float = 1e-4, progress: Callable[[str], None] | None = None) -> Report:
    """Run every estimator for every nudge and β; compare with the discrete adjoint."""
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown:
        raise InputError(f"estimators: unknown {unknown}; choose from {sorted(ESTIMATORS)}")
    betas = np.asarray(sorted(set(float(b) for b in betas) | {float(report_beta)}, reverse=True))
    if np.any(betas <= 0):
        raise InputError("betas must be > 0 (signs are handled by the nudging scheme)")
    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    problem.free  # noqa: B018  (the free trajectory, timed)
    forward_time = time.perf_counter() - t0
    say(f"free trajectory: loss C_h = {problem.free.loss:.6g} ({forward_time:.3f} s)")
    truth = adjoint(problem)
    say(f"discrete adjoint ({truth.wall_time:.3f} s)")
    rows, estimates = [], {}
    for name in estimators:
        fn, exact, truth_fn = ESTIMATORS[name]
        errors: dict[str, list[float]] = {}
        try:
            row_truth = truth if truth_fn is None else truth_fn(problem)
            for nudge_name in nudges:
                if name == "cbvp" and nudge_name == "complex":
                    continue  # the FE backend nudges with real β only
                errs = []
                for b in betas:
                    try:
                        est = fn(problem, nudge_from_name(nudge_name, b))
                    except SolverError as exc:  # a large nudge can leave the basin of the solution
                        say(f"{name}: {nudge_name} β = {b:g} failed ({str(exc)[:80]}...)")
                        errs.append(float("nan"))
                        continue
                    errs.append(compare(est.theta, row_truth.theta)["relative_error"])
                errors[nudge_name] = errs
            # timed on its own, with nothing cached from the sweep above
            problem.free.__dict__.pop("_sensitivities", None)
            ref = fn(problem, nudge_from_name(report_nudge, report_beta))
        except GlepError as exc:
            say(f"{name}: skipped ({exc})")
            continue
        slopes = {k: fit_slope(betas, v) for k, v in errors.items()}
        metrics = compare(ref.theta, row_truth.theta)
        biased = any(n.startswith("biased") for n in ref.notes)
        notes = list(ref.notes) + ([] if truth_fn is None else list(row_truth.notes))
        rows.append(Row(name, ref.name, exact and not biased, metrics, slopes, errors, ref.passes,
                        ref.wall_time, ref.loss, notes))
        estimates[name] = ref
        say(f"{ref.name}: relative error {metrics['relative_error']:.2e} ({ref.wall_time:.3f} s)")
    return Report(problem.system.name, betas, list(nudges), report_nudge, report_beta, truth, forward_time,
                  rows, estimates)


def format_table(report: Report) -> str:
    """A plain-text table, one row per estimator."""
    head = (f"{'estimator':<18}{'cosine':>10}{'rel. error':>12}{'norm ratio':>12}{'sign agr.':>10}"
            + "".join(f"{'slope ' + n:>18}" for n in report.nudges)
            + f"{'passes':>9}{'time/fwd':>10}{'wall [s]':>10}  note")
    lines = [f"{report.problem_name}: gradients of C_h vs the discrete adjoint "
             f"(metrics at {report.report_nudge} β = {report.report_beta:g})", head, "-" * len(head)]
    truth = report.truth
    if truth.wall_time:
        tf = (truth.wall_time + report.forward_time) / report.forward_time if report.forward_time > 0 else float("nan")
        blank = "".join(f"{'':>18}" for _ in report.nudges)
        lines.append(f"{'discrete adjoint':<18}{1.0:>10.6f}{0.0:>12.2e}{1.0:>12.6f}{1.0:>10.3f}{blank}"
                     f"{truth.passes:>9.0f}{tf:>10.1f}{truth.wall_time:>10.3f}  ground truth")
    for r in report.rows:
        m = r.metrics
        slopes = "".join(f"{r.slopes.get(n, float('nan')):>18.2f}" for n in report.nudges)
        # every row reuses the shared free trajectory: count it in the cost
        tf = (r.wall_time + report.forward_time) / report.forward_time if report.forward_time > 0 else float("nan")
        note = "exact" if r.exact else (r.notes[0] if r.notes else "biased")
        if r.loss != report.truth.loss:
            note += f"; differentiates {r.loss}; truth: {r.notes[-1]}"
        lines.append(f"{r.label:<18}{m['cosine']:>10.6f}{m['relative_error']:>12.2e}{m['norm_ratio']:>12.6f}"
                     f"{m['sign_agreement']:>10.3f}{slopes}{r.passes:>9.0f}{tf:>10.1f}{r.wall_time:>10.3f}  {note}")
    lines.append(f"loss differentiated by every row unless noted: {report.truth.loss}; "
                 "passes = trajectories of N steps (a tangent direction counts as one); time/fwd = wall time "
                 "including the free trajectory, in units of one free trajectory")
    return "\n".join(lines)
