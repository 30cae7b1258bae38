"""The CBVP row of `glep compare`: its own loss, its own ground truth (FE discrete adjoint)."""

import numpy as np
import pytest

from glep.errors import InputError
from glep.estimators import Centred, ComplexStep, Problem, compare, compare_estimators, format_table
from glep.estimators.cbvp import cbvp, cbvp_truth
from glep.estimators.ground_truth import adjoint
from glep.models import coupled_oscillators


@pytest.fixture(scope="module")
def problem():
    return Problem.from_model(coupled_oscillators(3, T=1.0), steps=100)


def test_cbvp_contrast_matches_fe_adjoint(problem):
    truth = cbvp_truth(problem)
    assert "Morse index 0" in truth.notes[0]
    est = cbvp(problem, Centred(1e-4))
    assert compare(est.theta, truth.theta)["relative_error"] <= 1e-6
    # a different loss: pinning q(T) changes the gradient
    assert compare(truth.theta, adjoint(problem).theta)["relative_error"] > 1e-3


def test_cbvp_row_states_its_loss(problem):
    rep = compare_estimators(problem, estimators=["pfvp", "cbvp"], betas=[1e-2, 1e-3, 1e-4])
    row = {r.name: r for r in rep.rows}["cbvp"]
    assert row.metrics["relative_error"] <= 1e-6
    assert 1.8 < row.slopes["centred"] < 2.2 and 0.9 < row.slopes["one-sided"] < 1.1
    table = format_table(rep)
    assert "differentiates C_h of the CBVP trajectory" in table
    assert table.count("ground truth") == 1 and "truth: FE discrete adjoint" in table


def test_cbvp_refuses_complex_step_and_batches(problem):
    with pytest.raises(InputError, match="real β only"):
        cbvp(problem, ComplexStep(1e-8))
    batched = Problem.from_model(coupled_oscillators(3, T=2.0, batch=2), steps=20)
    with pytest.raises(InputError, match="one trajectory at a time"):
        cbvp(batched)
    assert np.isfinite(problem.free.loss)


def test_an_ill_conditioned_cbvp_row_says_why_and_where_it_meets_the_tolerance():
    """The default `glep compare` system (4 oscillators, T = 10) pins its ends near a conjugate point.

    Its Jacobi operator's smallest eigenvalue is ~6e-3, so the centred β² bias at β = 1e-4 is above
    1e-6; the note names the eigenvalue and the β at which the fitted bias meets 1e-6, and an
    estimate at that β does meet it (the prediction of the fitted slope, not a tolerance loosened).
    """
    from glep.estimators.compare import EXACT_TOL

    pr = Problem.from_model(coupled_oscillators(4, T=10.0, seed=0), steps=400)
    rep = compare_estimators(pr, estimators=["cbvp"], betas=[1e-3, 3e-4, 1e-4])
    row = rep.rows[0]
    assert row.metrics["relative_error"] > EXACT_TOL
    table = format_table(rep)
    assert "smallest Jacobi eigenvalue" in table and "fitted slope" in table
    beta = float(table.split("reaches 1e-06 at β ≈ ")[1].split(";")[0].split()[0])
    est = cbvp(pr, Centred(beta))
    assert compare(est.theta, cbvp_truth(pr).theta)["relative_error"] <= 1.5 * EXACT_TOL


def test_the_periodic_row_of_glep_compare_runs_when_asked_for():
    """`glep compare --estimators periodic`: its own loss and truth, exact (≤ 1e-6 at centred β = 1e-4);
    not among the default rows (it solves another boundary problem); an autonomous system (whose periodic
    trajectories are not isolated: any time shift is one) is a FAILED row with that reason, not a number."""
    from glep.estimators.cbvp import PERIODIC_LOSS
    from glep.estimators.registry import DEFAULT_ESTIMATORS

    assert "periodic" not in DEFAULT_ESTIMATORS
    driven = Problem.from_model(coupled_oscillators(3, T=3.0, seed=1), steps=60)
    row = compare_estimators(driven, estimators=["periodic"], betas=[1e-3, 1e-4]).rows[0]
    assert not row.failed and row.loss == PERIODIC_LOSS
    assert row.metrics["relative_error"] <= 1e-6
    from glep import CIVP, LagrangianSystem, Signal, TrackingCost
    from glep.grid import TimeGrid
    from glep.kinetic import DiagonalMass
    from glep.potentials import Harmonic

    chain = LagrangianSystem(3, [DiagonalMass(3, None), Harmonic(3, "k")], cost=TrackingCost(3, [0]),
                             signals={"y": Signal.constant([0.1])})
    undriven = Problem(chain, {"k": np.array([1.0, 2.0, 3.0])}, CIVP(np.full(3, 0.1), p0=np.zeros(3)),
                       TimeGrid(3.0, 40))
    row = compare_estimators(undriven, estimators=["periodic"], betas=[1e-4]).rows[0]
    assert row.failed and "needs a driven system: the system is autonomous" in row.detail, row.detail
