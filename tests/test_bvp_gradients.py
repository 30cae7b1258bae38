"""Discrete adjoint of the FE system and the CBVP contrast estimator (THEORY.md §2, §6)."""

from __future__ import annotations

import numpy as np
import pytest

from glep import CBVP, CIVP, DirichletNatural, Periodic
from glep.bvp import (
    ReducedProblem,
    adjoint_gradient,
    contrast_values,
    make_discretisation,
    solve_problem,
)
from glep.estimators.cbvp import cbvp_gradient, fe_adjoint_gradient
from glep.models import coupled_oscillators

T, N = 2.0, 40
MESH = (T, N)
TOL = {"rtol": 1e-12, "atol": 1e-13}


@pytest.fixture(scope="module")
def model():
    m = coupled_oscillators(3, T=T)
    bc = CBVP(np.array([0.1, 0.0, -0.1]), np.array([0.2, 0.1, 0.0]))
    return m, bc


def _dot(g, d):
    return sum(float(np.sum(g[k] * d[k])) for k in g)


def _loss(m, params, bc, assembler="fe"):
    return fe_adjoint_gradient(m.system, params, MESH, bc, assembler=assembler, **TOL)[1]


@pytest.mark.parametrize("bcname", ["CBVP", "CIVP-velocity", "DirichletNatural", "Periodic"])
def test_adjoint_taylor_test(model, bcname):
    """The FE adjoint gradient passes a Taylor test: remainder slope ≥ 1.9."""
    m, bc = model
    q0 = np.array([0.1, 0.0, -0.1])
    bc = {"CBVP": bc, "CIVP-velocity": CIVP(q0, v0=np.array([0.2, -0.1, 0.3])),
          "DirichletNatural": DirichletNatural(q0), "Periodic": Periodic()}[bcname]
    g, C0 = fe_adjoint_gradient(m.system, m.params, MESH, bc, **TOL)
    rng = np.random.default_rng(5)
    d = {k: rng.standard_normal(v.shape) for k, v in m.params.items()}
    eps = 1e-2 * 0.5 ** np.arange(4)
    rem = []
    for e in eps:
        Ce = _loss(m, {k: m.params[k] + e * d[k] for k in d}, bc)
        rem.append(abs(Ce - C0 - e * _dot(g, d)))
    slopes = np.diff(np.log(rem)) / np.diff(np.log(eps))
    assert np.min(slopes) > 1.9, (rem, slopes)


def test_adjoint_matches_central_differences_and_vectorised(model):
    m, bc = model
    g, _ = fe_adjoint_gradient(m.system, m.params, MESH, bc, **TOL)
    gv, _ = fe_adjoint_gradient(m.system, m.params, MESH, bc, assembler="vectorised", **TOL)
    for k in g:
        np.testing.assert_allclose(gv[k], g[k], rtol=1e-8, atol=1e-10)
    rng = np.random.default_rng(1)
    d = {k: rng.standard_normal(v.shape) for k, v in m.params.items()}
    e = 1e-5
    fd = (_loss(m, {k: m.params[k] + e * d[k] for k in d}, bc)
          - _loss(m, {k: m.params[k] - e * d[k] for k in d}, bc)) / (2 * e)
    assert _dot(g, d) == pytest.approx(fd, rel=1e-7)


@pytest.mark.parametrize("assembler", ["fe", "vectorised"])
def test_cbvp_contrast_matches_adjoint(model, assembler):
    m, bc = model
    g, _ = fe_adjoint_gradient(m.system, m.params, MESH, bc, assembler=assembler, **TOL)
    est = cbvp_gradient(m.system, m.params, MESH, bc, 1e-4, assembler=assembler, **TOL)
    flat_g = np.concatenate([g[k].ravel() for k in g])
    flat_e = np.concatenate([est[k].ravel() for k in g])
    assert np.linalg.norm(flat_e - flat_g) <= 1e-6 * np.linalg.norm(flat_g)


def test_contrast_bias_slopes(model):
    """One-sided bias O(β), centred O(β²): fitted log-log slopes ≈ 1 and ≈ 2."""
    m, bc = model
    disc = make_discretisation(m.system, m.params, MESH)
    problem = ReducedProblem(disc, bc)
    sol0 = solve_problem(problem, **TOL)
    truth = adjoint_gradient(problem).theta
    I0 = disc.theta_gradient()
    betas = 0.2 * 0.5 ** np.arange(4)
    vals = contrast_values(problem, sol0, list(betas) + list(-betas), **TOL)

    def err(est):
        return np.sqrt(sum(np.sum((est[k] - truth[k]) ** 2) for k in truth))

    one = [err({k: (vals[b][k] - I0[k]) / b for k in I0}) for b in betas]
    cen = [err({k: (vals[b][k] - vals[-b][k]) / (2 * b) for k in I0}) for b in betas]
    s1 = np.polyfit(np.log(betas), np.log(one), 1)[0]
    s2 = np.polyfit(np.log(betas), np.log(cen), 1)[0]
    assert s1 == pytest.approx(1.0, abs=0.1)
    assert s2 == pytest.approx(2.0, abs=0.1)


def test_beta_tangent_predicts_the_nudged_solution_to_second_order(model):
    """``r0 + β ∂r/∂β`` misses the nudged solution by O(β²): fitted slope 2 (the tangent is exact)."""
    from glep.bvp import beta_tangent

    m, bc = model
    problem = ReducedProblem(make_discretisation(m.system, m.params, MESH), bc)
    sol0 = solve_problem(problem, **TOL)
    tangent = beta_tangent(problem, sol0.fe.r)
    betas = 1e-2 * 0.5 ** np.arange(4)
    miss = []
    for b in betas:
        problem.disc.set_beta(b)
        nudged = solve_problem(problem, sol0, **TOL).fe.r
        nudged.axpy(-1.0, sol0.fe.r)
        nudged.axpy(-b, tangent)
        miss.append(nudged.norm())
    slopes = np.diff(np.log(miss)) / np.diff(np.log(betas))
    assert np.all(np.abs(slopes - 2.0) < 0.1), (miss, slopes)
