"""The ground truth is itself certified: Taylor test and finite differences (THEORY.md §6.1)."""

import numpy as np
import pytest

from glep.estimators.ground_truth import adjoint, finite_differences, taylor_test
from glep.estimators.problem import Problem
from glep.ivp.adjoint import adjoint_gradient
from glep.ivp.integrators import ImplicitMidpoint, Trapezoidal
from glep.ivp.sensitivity import flatten
from glep.models import coupled_oscillators, gyroscopic_oscillators
from helpers import problem


@pytest.mark.parametrize("family", ["coupled_oscillators", "hru_logcosh", "pendulum_chain"])
def test_taylor_remainder_slope_is_two(family):
    pr = problem(family, steps=150)
    g = adjoint(pr).theta
    _, rem, slopes = taylor_test(pr, g, eps0=1e-2, steps=5)
    assert np.all(slopes >= 1.9), slopes


@pytest.mark.parametrize("family", ["coupled_oscillators", "hru_linear"])
def test_adjoint_matches_central_differences_in_random_directions(family):
    pr = problem(family, steps=150)
    g = flatten(adjoint(pr).theta, pr.system.parameters)
    D, fd = finite_differences(pr, directions=3, eps=1e-6)
    np.testing.assert_allclose(D @ g, fd, rtol=1e-6, atol=1e-9 * np.abs(fd).max())


def test_generic_recursion_equals_stormer_verlet_fast_path():
    pr = problem("coupled_oscillators", steps=150)
    f = pr.free
    fast = adjoint_gradient(f.dl, f.Q, v0=f.v0)
    slow = adjoint_gradient(f.dl, f.Q, v0=f.v0, generic=True)
    for k in fast.theta:
        np.testing.assert_allclose(slow.theta[k], fast.theta[k], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(slow.q0, fast.q0, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("integrator", [ImplicitMidpoint(), Trapezoidal()])
def test_implicit_integrators_adjoint_vs_differences(integrator):
    model = gyroscopic_oscillators(3, gamma=0.3)
    pr = Problem.from_model(model, steps=120, integrator=integrator)
    g = flatten(adjoint(pr).theta, pr.system.parameters)
    D, fd = finite_differences(pr, directions=2, eps=1e-6)
    np.testing.assert_allclose(D @ g, fd, rtol=1e-6)


def test_initial_state_gradient_vs_differences():
    model = coupled_oscillators(3)
    pr = Problem.from_model(model, steps=150)
    truth = adjoint(pr)
    q0, p0, _ = pr.boundary.states(pr.system, pr.theta)
    from glep.boundary import CIVP

    eps = 1e-6
    for which, grad in (("q", truth.q0), ("p", truth.p0)):
        d = np.zeros_like(q0)
        d[0, 1] = 1.0
        losses = []
        for s in (1, -1):
            qq, pp = (q0 + s * eps * d, p0) if which == "q" else (q0, p0 + s * eps * d)
            losses.append(Problem(pr.system, pr.params, CIVP(qq, p0=pp), pr.grid).free.loss)
        assert abs((losses[0] - losses[1]) / (2 * eps) - grad[0, 1]) <= 1e-6 * max(1.0, abs(grad[0, 1]))
