"""THEORY.md §4/§6: every exact estimator equals the discrete adjoint of the same integrator."""

import numpy as np
import pytest

from glep.estimators.contrast import civp_contrast, echo, pfvp
from glep.estimators.ground_truth import adjoint
from glep.estimators.metrics import compare, fit_slope
from glep.estimators.nudging import Centred, ComplexStep, OneSided
from glep.estimators.rhel import rhel
from helpers import REVERSIBLE, problem

EXACT = {
    "civp-residual": lambda pr, nu: civp_contrast(pr, nu, residual=True),
    "pfvp": pfvp,
    "echo": echo,
    "rhel": rhel,
}


@pytest.fixture(scope="module", params=REVERSIBLE)
def case(request):
    pr = problem(request.param, steps=200)
    return pr, adjoint(pr)


@pytest.mark.parametrize("name", list(EXACT))
def test_exact_estimators_match_adjoint_at_centred_beta_1e_4(case, name):
    pr, truth = case
    est = EXACT[name](pr, Centred(1e-4))
    assert compare(est.theta, truth.theta)["relative_error"] <= 1e-6


@pytest.mark.parametrize("name", ["pfvp", "echo", "rhel"])
def test_initial_state_gradients_match_adjoint(case, name):
    pr, truth = case
    est = EXACT[name](pr, Centred(1e-4))
    for got, want in ((est.q0, truth.q0), (est.p0, truth.p0)):
        assert np.linalg.norm(got - want) <= 1e-6 * np.linalg.norm(want)


@pytest.mark.parametrize("name", ["pfvp", "civp-residual"])
def test_complex_step_is_exact_to_round_off(case, name):
    pr, truth = case
    est = EXACT[name](pr, ComplexStep(1e-20))
    assert compare(est.theta, truth.theta)["relative_error"] <= 1e-10


def _errors(pr, truth, fn, nudge_cls, betas):
    return [compare(fn(pr, nudge_cls(b)).theta, truth.theta)["relative_error"] for b in betas]


@pytest.mark.parametrize("name", ["pfvp", "echo", "rhel", "civp-residual"])
def test_bias_slopes_one_sided_1_centred_2(case, name):
    pr, truth = case
    betas = [1e-1, 3e-2, 1e-2, 3e-3, 1e-3]
    s1 = fit_slope(betas, _errors(pr, truth, EXACT[name], OneSided, betas))
    s2 = fit_slope(betas, _errors(pr, truth, EXACT[name], Centred, betas))
    assert 0.9 <= s1 <= 1.1
    assert 1.85 <= s2 <= 2.15


def test_civp_contrast_alone_is_measurably_biased(case):
    pr, truth = case
    m = compare(civp_contrast(pr, Centred(1e-4)).theta, truth.theta)
    assert m["relative_error"] > 0.05
    # and the bias does not shrink with β: it is not a nudging error
    m2 = compare(civp_contrast(pr, Centred(1e-6)).theta, truth.theta)
    assert abs(m2["relative_error"] - m["relative_error"]) < 1e-3


def test_pfvp_t0_term_is_needed_for_trainable_masses_with_fixed_velocity():
    pr = problem("coupled_oscillators", steps=200)
    assert pr.free.v0 is not None and "m" in pr.system.parameters
    truth = adjoint(pr)
    est = pfvp(pr)
    assert compare(est.theta, truth.theta)["relative_error"] <= 1e-6
    # without the t = 0 term the mass gradient would be off by (∂_m p0)ᵀ ∂_β q0 = v0 ⊙ dC/dp0
    without = est.theta["m"] - pr.free.v0[0] * est.p0[0]
    assert np.linalg.norm(without - truth.theta["m"]) > 1e-3 * np.linalg.norm(truth.theta["m"])


def test_terminal_cost_impulse_nudge():
    pr = problem("coupled_oscillators", steps=200, terminal=True)
    truth = adjoint(pr)
    for name, fn in EXACT.items():
        assert compare(fn(pr, Centred(1e-4)).theta, truth.theta)["relative_error"] <= 1e-6, name


def test_batched_gradient_is_sum_of_members():
    from glep.estimators.problem import Problem
    from glep.models import hamiltonian_recurrent_unit

    model = hamiltonian_recurrent_unit(5, hidden=3, batch=3)
    pr = Problem.from_model(model, steps=100)
    g = echo(pr).theta
    total = None
    for b in range(3):
        sig = {k: s for k, s in model.system.signals.items()}
        from glep.signals import Signal

        one = {k: Signal(lambda t, s=s, b=b: s(t)[b:b + 1], s.dim, 1) for k, s in sig.items()}
        prb = Problem(model.system.with_signals(**one), model.params, model.boundary, pr.grid)
        gb = adjoint(prb).theta
        total = gb if total is None else {k: total[k] + gb[k] for k in gb}
    assert compare(g, total)["relative_error"] <= 1e-6


def test_fit_slope_uses_the_asymptotic_range():
    """Saturated points (relative error > 0.1), failed solves and the round-off plateau are left out;
    a β-independent bias keeps its slope 0."""
    betas = np.array([1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6])
    errors = np.minimum(0.5, 4e4 * betas**2) + 1e-13  # c β², saturated at large β, round-off floor below
    errors[0] = np.nan  # a nudged solve that failed
    assert fit_slope(betas, errors) == pytest.approx(2.0, abs=1e-3)
    assert fit_slope(betas, np.full(6, 1.06)) == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(fit_slope(betas[:1], [0.01]))
