"""Broken time reversal: the echo becomes biased, PFVP by backward integration stays exact."""

import warnings

import numpy as np
import pytest

from glep.errors import NotReversibleError
from glep.estimators.contrast import echo, pfvp, retrace_error
from glep.estimators.ground_truth import adjoint
from glep.estimators.metrics import compare
from glep.estimators.problem import Problem
from glep.estimators.rhel import rhel
from glep.models import gyroscopic_oscillators


def _problem(gamma):
    return Problem.from_model(gyroscopic_oscillators(4, gamma=gamma), steps=200)


def test_echo_refuses_a_non_reversible_system_and_points_to_pfvp():
    pr = _problem(0.2)
    assert not pr.system.is_time_reversible(pr.theta)
    with pytest.raises(NotReversibleError, match="PFVP"):
        echo(pr)
    with pytest.raises(NotReversibleError, match="PFVP"):
        rhel(pr)


def test_echo_bias_grows_with_breaking_strength_while_pfvp_stays_exact():
    echo_err, retrace = [], []
    for gamma in (0.01, 0.05, 0.2):
        pr = _problem(gamma)
        truth = adjoint(pr)
        assert compare(pfvp(pr).theta, truth.theta)["relative_error"] <= 1e-6
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            est = echo(pr, allow_irreversible=True)
        assert any("not time-reversible" in str(x.message) for x in w)
        echo_err.append(compare(est.theta, truth.theta)["relative_error"])
        retrace.append(retrace_error(pr))
    assert echo_err[0] > 1e-4
    assert np.all(np.diff(echo_err) > 0), echo_err
    assert np.all(np.diff(retrace) > 0), retrace


def test_zero_gamma_is_reversible_and_echo_is_exact():
    pr = _problem(0.0)
    assert pr.system.is_time_reversible(pr.theta)
    assert compare(echo(pr).theta, adjoint(pr).theta)["relative_error"] <= 1e-6


def test_complex_step_through_the_implicit_integrator_reaches_round_off():
    from glep.estimators.nudging import ComplexStep

    pr = _problem(0.3)
    truth = adjoint(pr)
    for beta in (1e-8, 1e-20):
        assert compare(pfvp(pr, ComplexStep(beta)).theta, truth.theta)["relative_error"] <= 1e-11
