"""Nothing hidden: a failed estimator is a FAILED row with its reason, the run exits 1 and says so.

Failures are injected by replacing an estimator of ``ESTIMATORS`` with one that
raises (or returns a non-finite gradient), and occur for real with the CBVP
row on a batched problem.  Long CBVP solves report Newton progress.
"""

import numpy as np
import pytest

from glep.cli import main
from glep.errors import InputError, SolverError
from glep.estimators import ESTIMATORS, FunctionEstimator, compare_estimators, format_table
from glep.estimators.cbvp import NewtonProgress
from glep.estimators.compare import failure_summary
from glep.estimators.contrast import pfvp
from glep.estimators.output import RESULTS, load_report
from glep.estimators.problem import Problem
from glep.models import coupled_oscillators

BETAS = [1e-2, 1e-3]


@pytest.fixture(scope="module")
def problem():
    return Problem.from_model(coupled_oscillators(3, T=2.0), steps=60)


def _diverges(problem, nudge, progress=None):
    raise SolverError("SNES did not converge in 50 iterations\n(CBVP)", reason="DIVERGED_MAX_IT",
                      history=[1.0, 0.5])


def _nan_gradient(problem, nudge, progress=None):
    est = pfvp(problem, nudge)
    est.theta = {k: np.full_like(v, np.nan) for k, v in est.theta.items()}
    return est


def _fails_at_large_beta(problem, nudge, progress=None):
    if nudge.beta >= 1e-2:
        raise SolverError("left the basin at large β", reason="DIVERGED_LINE_SEARCH")
    return pfvp(problem, nudge)


@pytest.fixture
def broken(monkeypatch):
    """echo always fails, rhel returns NaN, pfvp fails at β = 1e-2 only."""
    for name, function in (("echo", _diverges), ("rhel", _nan_gradient), ("pfvp", _fails_at_large_beta)):
        monkeypatch.setitem(ESTIMATORS, name, FunctionEstimator(name, function, title=ESTIMATORS[name].label))


def test_failed_estimators_stay_in_the_report(problem, broken):
    rep = compare_estimators(problem, estimators=["civp-residual", "pfvp", "echo", "rhel"], betas=BETAS)
    rows = {r.name: r for r in rep.rows}
    assert [r.name for r in rep.rows] == ["civp-residual", "pfvp", "echo", "rhel"]
    assert [r.name for r in rep.failures] == ["echo", "rhel"]
    assert rows["echo"].reason.startswith("SolverError: SNES did not converge in 50 iterations (CBVP)")
    assert "\n" not in rows["echo"].reason and len(rows["echo"].reason) <= 100
    assert "\n" in rows["echo"].detail  # the full message is kept
    assert rows["rhel"].reason.startswith("SolverError: non-finite gradient for")
    assert np.isnan(rows["echo"].metrics["relative_error"])
    # pfvp: its sweep lost the β = 1e-2 points (one per nudge); the row itself is fine
    assert not rows["pfvp"].failed and rows["pfvp"].metrics["relative_error"] <= 1e-6
    assert [(p["nudge"], p["beta"]) for p in rows["pfvp"].point_failures] == [("one-sided", 1e-2),
                                                                              ("centred", 1e-2)]
    assert all(np.isnan(e[0]) and np.all(np.isfinite(e[1:])) for e in rows["pfvp"].errors.values())
    table = format_table(rep).splitlines()
    echo_line = next(line for line in table if line.startswith("echo"))
    assert "FAILED" in echo_line and "SolverError: SNES did not converge" in echo_line
    pfvp_line = next(line for line in table if line.startswith("PFVP"))
    assert "2 of 6 β points failed" in pfvp_line
    assert failure_summary(rep) == (
        f"2 of 4 estimators failed: echo ({rows['echo'].reason}), rhel ({rows['rhel'].reason})")


def test_failures_exit_1_with_a_summary_even_when_quiet(problem, broken, tmp_path, capsys):
    argv = ["compare", "--steps", "60", "--T", "2", "--n", "3", "--betas", *map(str, BETAS),
            "--estimators", "pfvp", "echo", "rhel", "--output", str(tmp_path), "--quiet"]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert "FAILED" in out and "SolverError: SNES did not converge" in out
    summary = [line for line in err.splitlines() if line.startswith("glep: 2 of 3 estimators failed: ")]
    assert len(summary) == 1 and "echo (SolverError: SNES did not converge" in summary[0], err
    assert "rhel (SolverError: non-finite gradient" in summary[0]
    assert "[glep]" not in err  # --quiet: no progress
    # saved, and shown again by glep report (which read the file fine: exit 0)
    back = load_report(tmp_path / RESULTS)
    assert [r.name for r in back.failures] == ["echo", "rhel"]
    assert back.failures[0].detail.startswith("SolverError: SNES did not converge")
    assert len(back.rows[0].point_failures) == 2
    assert main(["report", str(tmp_path / RESULTS)]) == 0
    out2, err2 = capsys.readouterr()
    assert out2 == out and summary[0] in err2.splitlines()


def test_cbvp_row_fails_on_a_batched_problem(tmp_path):
    batched = Problem.from_model(coupled_oscillators(3, T=2.0, batch=2), steps=20)
    rep = compare_estimators(batched, estimators=["pfvp", "cbvp"], betas=BETAS)
    assert [r.name for r in rep.failures] == ["cbvp"]
    assert rep.failures[0].label == "CBVP"
    assert rep.failures[0].reason.startswith("InputError: the finite-element backend solves one trajectory")


def test_bad_arguments_are_refused_before_any_work(problem):
    cases = [
        ({"betas": [1e-2, float("nan")]}, "betas and report_beta must be finite and > 0"),
        ({"betas": [1e-2, -1e-3]}, "betas and report_beta must be finite and > 0"),
        ({"report_beta": float("inf")}, "betas and report_beta must be finite and > 0"),
        ({"betas": []}, "betas must be a non-empty list of numbers"),
        ({"betas": ["abc"]}, "betas and report_beta must be numbers"),
        ({"nudges": ["sideways"]}, "nudge must be one of 'one-sided', 'centred', 'complex', got 'sideways'"),
        ({"nudges": "centred"}, "nudges must be a list of names, got 'centred'"),
        ({"report_nudge": "up"}, "nudge must be one of .* got 'up'"),
        ({"estimators": "pfvp"}, "estimators must be a list of names, got 'pfvp'"),
        ({"estimators": ["pfvp", "magic"]}, r"estimators: unknown \['magic'\]"),
    ]
    for kw, message in cases:
        with pytest.raises(InputError, match=message):
            compare_estimators(problem, **kw)


def test_newton_progress_reports_iterations_and_residuals(problem):
    messages = []
    monitor = NewtonProgress(messages.append, "test", every=0.0)  # every iteration
    from glep.estimators.cbvp import _setup, cbvp_gradient

    bc, mesh, guess = _setup(problem)
    cbvp_gradient(problem.system, problem.params, mesh, bc, 1e-3, guess=guess, monitor=monitor)
    assert messages and messages[0].startswith("test: Newton solve 1, iteration 0, residual ")
    assert monitor.solves == 3  # free, +β, −β (the nudged ones on their own assemblers: nothing to restore)
    assert any(m.startswith("test: Newton solve 3, iteration 1, residual ") for m in messages)
    quiet = NewtonProgress(messages.append, "never", every=float("inf"))
    cbvp_gradient(problem.system, problem.params, mesh, bc, 1e-3, guess=guess, monitor=quiet)
    assert quiet.solves == 3 and not any(m.startswith("never") for m in messages)
