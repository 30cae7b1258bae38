"""The implicit step's pieces prepared once per ``θ`` against their generic definitions.

:meth:`glep.ivp.discrete.DiscreteLagrangian.d12_matrix` assembles ``D₁₂L_d`` from blocks prepared once
(the constant second derivatives of the kinetic and gyroscopic terms, the ``q``-independent Hessian entries
of the potentials) plus the ``q``-dependent entries; ``momenta`` uses the potentials' force kernels; the
inputs at the quadrature nodes are sampled once.  Each must equal the generic evaluation (Hessian actions
on the unit directions, ``system.gradient``, ``system.inputs_at``) to round-off, for every rule, signed
(mirrored) and non-uniform steps, real and complex states, and terms probed generically (a ``UFLTerm``).
"""

from __future__ import annotations

import numpy as np
import pytest

from glep.estimators.problem import Problem
from glep.ivp.discrete import GAUSS2, MIDPOINT, TRAPEZOID, AbstractDiscreteLagrangian, DiscreteLagrangian, StepMesh
from glep.models import FAMILIES

EPS = np.finfo(float).eps


def _dls(family: str, batch, seed: int, **kw):
    model = FAMILIES[family](batch=batch, seed=seed, **kw)
    pr = Problem.from_model(model, steps=40)
    times = np.sort(np.r_[0.0, np.random.default_rng(seed).uniform(0, pr.grid.T, 39), pr.grid.T])
    for rule in (MIDPOINT, GAUSS2, TRAPEZOID):
        dl = DiscreteLagrangian(pr.system, pr.theta, pr.grid, rule, fast=False)
        yield dl
        yield dl.mirrored()
        yield DiscreteLagrangian(pr.system, pr.theta, StepMesh.from_times(times), rule, fast=False)


def _states(dl, seed: int, complex_: bool):
    rng = np.random.default_rng(seed)
    B = max(dl.system.signals["u"].batch or 1, 1)
    q0, q1 = 0.3 * rng.standard_normal((2, B, dl.system.n))
    if complex_:
        q1 = q1 + 1e-20j * rng.standard_normal(q1.shape)
    return q0, q1


@pytest.mark.parametrize("family,kw", [("gyroscopic", {}), ("pendulum_chain", {}), ("hru_logcosh", {}),
                                       ("coupled_oscillators", {"n": 5})])
@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("complex_", [False, True])
def test_prepared_pieces_equal_the_generic_ones(family, kw, batch, seed, complex_):
    for dl in _dls(family, batch, seed, **kw):
        q0, q1 = _states(dl, seed, complex_)
        for k in (0, 7, dl.N - 1):
            got = dl.d12_matrix(k, q0, q1)
            want = AbstractDiscreteLagrangian.d12_matrix(dl, k, q0, q1)
            scale = np.max(np.abs(want))
            assert np.max(np.abs(got - want)) <= 64 * EPS * scale, (dl.rule.name, k)
            # momenta from the force kernels, against system.gradient at each quadrature node
            sys, th = dl.system, dl.theta
            _, tau, a = dl._step(k)
            d1 = d2 = 0.0
            for c, w, q, v, t, x in dl._nodes(k, q0, q1):
                x_generic = dl.inputs(t)
                assert all(np.array_equal(x[n], x_generic[n]) for n in x_generic)
                lq, lv = sys.gradient(q, v, th, x_generic, t)
                d1 = d1 + a * w * ((1.0 - c) * lq) - np.sign(tau) * w * lv
                d2 = d2 + a * w * (c * lq) + np.sign(tau) * w * lv
            for g, ref in zip(dl.momenta(k, q0, q1), (d1, d2)):
                assert np.max(np.abs(g - ref)) <= 16 * EPS * (np.max(np.abs(ref)) + np.max(np.abs(q1)) / a)


def test_generic_terms_are_probed():
    """A potential written as a ``UFLTerm`` has no Hessian entries: its block is probed per call."""
    pytest.importorskip("ufl")
    from glep import UFLTerm

    model = FAMILIES["gyroscopic"](n=4)
    sys = model.system
    extra = UFLTerm(sys.n, lambda q, v, th, x, t: -0.05 * (q[0] ** 4 + q[1] ** 2 * q[2] ** 2), {}, name="quartic")
    system = type(sys)(sys.n, list(sys.terms) + [extra], cost=sys.cost, signals=sys.signals, name="with UFL")
    pr = Problem(system, model.params, model.boundary, Problem.from_model(model, steps=20).grid)
    dl = DiscreteLagrangian(pr.system, pr.theta, pr.grid, MIDPOINT, fast=False)
    q0, q1 = _states(dl, 0, False)
    got, want = dl.d12_matrix(3, q0, q1), AbstractDiscreteLagrangian.d12_matrix(dl, 3, q0, q1)
    assert dl._d12_parts[2] == [extra]
    assert np.max(np.abs(got - want)) <= 64 * EPS * np.max(np.abs(want))


@pytest.mark.parametrize("family,kw", [("gyroscopic", {}), ("pendulum_chain", {}), ("hru_logcosh", {})])
@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("beta", [0.0, 0.3, 1e-3j])
def test_step_equations_are_momenta_and_solve_d12(family, kw, batch, beta):
    """One step's equations prepared once (``step_equations``: times, inputs, weights, ``(1 − c)q₀`` and the
    nudged cost at ``q₀``) give :meth:`momenta` and :meth:`solve_d12` bit for bit, on every rule, mirrored and
    non-uniform steps, free and nudged (real and complex β)."""
    for dl in _dls(family, batch, 0, **kw):
        dl = DiscreteLagrangian(dl.system, dl.theta, dl.mesh, dl.rule, beta=beta, fast=False)
        q0, q1 = _states(dl, 1, np.iscomplexobj(beta))
        r = np.random.default_rng(2).standard_normal(q0.shape)
        for k in (0, 7, dl.N - 1):
            momenta, solve = dl.step_equations(k, q0)
            for _ in range(2):  # the prepared data are reused across iterations
                for got, want in zip(momenta(q1), dl.momenta(k, q0, q1)):
                    assert np.array_equal(got, want), (dl.rule.name, k)
                assert np.array_equal(solve(q1, r), dl.solve_d12(k, q0, q1, r)), (dl.rule.name, k)
                q1 = q1 + 0.01
