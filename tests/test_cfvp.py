"""CFVP: constant final data, backward integration; the mirror of CIVP (THEORY.md §3)."""

import numpy as np
import pytest

from glep import CFVP, InputError
from glep.estimators.contrast import civp_contrast, pfvp
from glep.estimators.ground_truth import adjoint, finite_differences
from glep.estimators.metrics import compare
from glep.estimators.nudging import Centred
from glep.estimators.problem import Problem
from glep.ivp.sensitivity import flatten
from glep.models import coupled_oscillators, gyroscopic_oscillators


def _cfvp(model, steps=200, **kw):
    rng = np.random.default_rng(3)
    n = model.system.n
    bc = CFVP(0.2 * rng.standard_normal(n), vT=0.3 * rng.standard_normal(n))
    return Problem(model.system, model.params, bc, model_grid(model, steps), **kw)


def model_grid(model, steps):
    from glep import TimeGrid

    return TimeGrid(model.T, steps)


@pytest.mark.parametrize("model", [coupled_oscillators(4), gyroscopic_oscillators(3, gamma=0.3)],
                         ids=["oscillators", "gyroscopic"])
def test_cfvp_adjoint_is_certified_and_residual_estimator_is_exact(model):
    pr = _cfvp(model)
    truth = adjoint(pr)
    g = flatten(truth.theta, pr.system.parameters)
    D, fd = finite_differences(pr, directions=2, eps=1e-6)
    np.testing.assert_allclose(D @ g, fd, rtol=1e-6)
    assert compare(civp_contrast(pr, Centred(1e-4), residual=True).theta, truth.theta)["relative_error"] <= 1e-6
    assert compare(civp_contrast(pr, Centred(1e-4)).theta, truth.theta)["relative_error"] > 1e-2


def test_cfvp_free_trajectory_ends_at_the_given_state():
    pr = _cfvp(coupled_oscillators(3))
    tr = pr.free_trajectory()
    qT, pT, _ = pr.boundary.states(pr.system, pr.theta, pr.grid.T)
    np.testing.assert_allclose(tr.q[-1], qT, atol=1e-14)
    np.testing.assert_allclose(tr.p[-1], pT, atol=1e-14)


def test_pfvp_is_refused_on_a_cfvp_problem():
    with pytest.raises(InputError, match="CFVP"):
        pfvp(_cfvp(coupled_oscillators(3), steps=20))
