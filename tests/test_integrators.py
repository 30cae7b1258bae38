"""Variational integrators: order, reversibility, forward/backward consistency."""

import numpy as np
import pytest

from glep.estimators.contrast import retrace_error
from glep.grid import TimeGrid
from glep.ivp.discrete import MIDPOINT, TRAPEZOID, DiscreteLagrangian, Mirrored
from glep.ivp.stepping import integrate
from glep.models import coupled_oscillators, hamiltonian_recurrent_unit, pendulum_chain
from helpers import problem


def _final_q(model, N, rule=TRAPEZOID, fast=True):
    th = model.system.check_params(model.params)
    q0, p0, _ = model.boundary.states(model.system, th)
    dl = DiscreteLagrangian(model.system, th, TimeGrid(model.T, N), rule, fast=fast)
    return integrate(dl, q0, p0, store=False)[0]


@pytest.mark.parametrize("rule,fast", [(TRAPEZOID, True), (MIDPOINT, False)])
def test_second_order_convergence(rule, fast):
    model = pendulum_chain(3, T=4.0)
    ref = _final_q(model, 3200, rule, fast)
    errs = [np.abs(_final_q(model, N, rule, fast) - ref).max() for N in (100, 200, 400)]
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(np.abs(orders - 2.0) < 0.15), orders


def test_explicit_and_generic_trapezoid_give_the_same_trajectory():
    model = coupled_oscillators(4)
    a = _final_q(model, 200, TRAPEZOID, True)
    b = _final_q(model, 200, TRAPEZOID, False)
    assert np.abs(a - b).max() < 1e-12


@pytest.mark.parametrize("family", ["coupled_oscillators", "hru_linear", "hru_logcosh", "pendulum_chain"])
def test_echo_retrace_error_at_ten_thousand_steps(family):
    pr = problem(family, steps=10_000)
    assert retrace_error(pr) <= 1e-10


def test_backward_integration_inverts_forward_for_any_system():
    from glep.models import gyroscopic_oscillators

    model = gyroscopic_oscillators(4, gamma=0.5)
    th = model.system.check_params(model.params)
    q0, p0, _ = model.boundary.states(model.system, th)
    grid = TimeGrid(model.T, 300)
    dl = DiscreteLagrangian(model.system, th, grid, MIDPOINT)
    Q, P = integrate(dl, q0, p0)
    Qb, Pb = integrate(Mirrored(dl), Q[-1], -P[-1])
    assert np.abs(Qb[::-1] - Q).max() < 1e-10
    assert np.abs(-Pb[::-1] - P).max() < 1e-10


def test_batched_integration_equals_individual_runs():
    model = hamiltonian_recurrent_unit(6, batch=4)
    th = model.system.check_params(model.params)
    q0, p0, _ = model.boundary.states(model.system, th)
    grid = TimeGrid(model.T, 100)
    Q, _ = integrate(DiscreteLagrangian(model.system, th, grid), q0, p0)
    from glep.signals import Signal

    for b in range(4):
        sig = {k: Signal(lambda t, s=s, b=b: s(t)[b:b + 1], s.dim, 1) for k, s in model.system.signals.items()}
        dlb = DiscreteLagrangian(model.system.with_signals(**sig), th, grid)
        Qb, _ = integrate(dlb, q0[b:b + 1], p0[b:b + 1])
        assert np.abs(Qb[:, 0] - Q[:, b]).max() < 1e-13


def test_energy_is_conserved_to_second_order_without_drive():
    from glep import CIVP, DiagonalMass, Harmonic, LagrangianSystem, Quartic

    sys_ = LagrangianSystem(2, [DiagonalMass(2, None), Harmonic(2, "k"), Quartic(2, 0.5)])
    th = {"k": np.array([1.0, 2.0])}
    q0, p0, _ = CIVP([1.0, 0.5], p0=[0.0, 0.3]).states(sys_, th)

    def drift(N):
        dl = DiscreteLagrangian(sys_, th, TimeGrid(20.0, N))
        Q, P = integrate(dl, q0, p0)
        E = 0.5 * np.sum(P**2, -1) + 0.5 * np.sum(th["k"] * Q**2, -1) + 0.125 * np.sum(Q**4, -1)
        return np.abs(E - E[0]).max()

    ratio = drift(400) / drift(800)
    assert 3.5 < ratio < 4.5
