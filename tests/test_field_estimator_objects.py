"""One generic test over every field estimator object (glep.estimators.field_objects).

Each estimator must agree with its ground truth (the discrete adjoint of the same time stepping) to
≤ 1e-6 relative at centred β = 1e-4 (bias O(β²) ≈ 1e-8 plus round-off / β ≈ 1e-12: THEORY §6), for the
parameters and, where it gives them, the initial state, on problems whose parameters are perturbed at random
(two seeds), and must declare its properties (name, label, loss, exactness, cost in passes, truth).
"""

import numpy as np
import pytest
import ufl
from dolfinx import mesh as dmesh
from mpi4py import MPI

import glep
from glep import field_models as fm
from glep.errors import InputError
from glep.estimators.field_objects import (
    FIELD_ESTIMATORS,
    AbstractFieldEstimator,
    AbstractFieldTruth,
    FieldEcho,
    FieldHEB,
    FieldProblem,
    FieldRHEL,
    KerrHEB,
    relative_state_error,
)
from glep.estimators.heb import ModeProblem
from glep.estimators.metrics import compare
from glep.estimators.nudging import Centred, ComplexStep, OneSided
from glep.field_families import nls_problem
from glep.field_system import FieldCost, FieldSystem

COMM = MPI.COMM_WORLD
TOL = 1e-6


def sine_gordon_running(seed: int) -> FieldProblem:
    """Sine-Gordon on [-2, 2] with a time-varying boundary input, a running and a terminal read-out."""
    a = 0.3 + 0.1 * np.random.default_rng(seed).random()
    msh = dmesh.create_interval(COMM, 12, [-2.0, 2.0])
    sys = FieldSystem(fm.sine_gordon(kappa=lambda x: 1.0 + a * np.sin(x[0])), msh,
                      dirichlet=lambda x, t: 0.1 * np.sin(2 * t) * x[0],
                      cost=FieldCost(target=lambda x, t: ufl.sin(x[0] + t), region=lambda x: x[0] >= -0.5),
                      terminal_cost=FieldCost(target=0.3, region=lambda x: x[0] <= 1.0),
                      initial=(lambda x: 2.0 * np.exp(-x[0] ** 2), lambda x: 0.5 * np.cos(x[0])))
    return FieldProblem(sys, 0.8, 24)


def phi4_terminal(seed: int) -> FieldProblem:
    """φ⁴ Klein–Gordon (mass field + scalar coupling) driven by a source, with a terminal read-out only."""
    a = 0.2 + 0.2 * np.random.default_rng(seed).random()
    msh = dmesh.create_interval(COMM, 12, [0.0, 1.0])
    sys = FieldSystem(fm.klein_gordon(mu=lambda x: 1.0 + a * x[0], lam=0.7), msh, dirichlet=None,
                      source=lambda x, t: ufl.cos(2 * t) * x[0],
                      terminal_cost=FieldCost(target=lambda x, t: 0.2 * x[0], region=lambda x: x[0] >= 0.5),
                      initial=(lambda x: np.cos(np.pi * x[0]), lambda x: x[0]))
    return FieldProblem(sys, 0.6, 20)


def phi4_terminal_2d(seed: int) -> FieldProblem:
    """The same φ⁴ problem on a 2-D rectangle (P1 mass field, scalar coupling), terminal read-out only."""
    a = 0.2 + 0.2 * np.random.default_rng(seed).random()
    msh = dmesh.create_rectangle(COMM, [[0.0, 0.0], [1.0, 0.8]], [5, 4])
    sys = FieldSystem(fm.klein_gordon(mu=lambda x: 1.0 + a * x[0] * x[1], lam=0.7), msh, dirichlet=None,
                      source=lambda x, t: ufl.cos(2 * t) * x[0],
                      terminal_cost=FieldCost(target=lambda x, t: 0.2 * x[1], region=lambda x: x[0] >= 0.5),
                      initial=(lambda x: np.cos(np.pi * x[0]) * np.sin(np.pi * x[1] / 0.8), lambda x: x[1]))
    return FieldProblem(sys, 0.5, 16)


def kerr(seed: int) -> ModeProblem:
    """The 2 × 2 Kerr cavity array of estimators/heb.py with random inputs (complex modes)."""
    rng = np.random.default_rng(seed)
    array = glep.kerr_cavity_array(2, 2, J=2.0, g=-1.0, kappa=1.0, inputs=(0, 1), outputs=(3,))
    cost = glep.IntensityCost(array, 0.1 * rng.random((2, 1)))
    return ModeProblem(array, cost, np.full(4, 0.3) + 0.1 * rng.random(4), array.input_state(rng.random((2, 2))),
                       T=2.0, steps=40)


def nls_terminal(seed: int) -> FieldProblem:
    """The NLS family of ``glep compare --system nls`` (implicit midpoint, complex field), a seeded V(x)."""
    return nls_problem(n=16, T=0.3, steps=6, seed=seed)


# every estimator with every problem it applies to, 1-D and 2-D
# (HEB: terminal cost only; the midpoint rule: echo and HEB)
CASES = [(e, p) for e in FIELD_ESTIMATORS.values() for p in (sine_gordon_running, phi4_terminal, phi4_terminal_2d)
         if not (isinstance(e, FieldHEB) and p is sine_gordon_running)] + [(KerrHEB(), kerr)] + [
    (FIELD_ESTIMATORS[name], nls_terminal) for name in ("echo", "heb")]


def test_the_midpoint_rule_takes_only_the_echo_and_heb():
    """PFVP by backward integration, RHEL's leapfrog and the CIVP tangents are refused for NLS, naming the way."""
    problem = nls_terminal(0)
    for name in ("pfvp", "rhel", "civp-residual"):
        with pytest.raises(InputError, match="not available for a glep.MidpointFieldSystem .* use 'echo'"):
            FIELD_ESTIMATORS[name](problem, Centred(1e-4))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("est", "make"), CASES, ids=[f"{e.name}-{p.__name__}" for e, p in CASES])
def test_every_field_estimator_matches_its_truth(est, make, seed):
    problem = make(seed)
    truth = est.truth(problem)
    got = est(problem, Centred(1e-4))
    err = compare(got.theta, truth.theta)["relative_error"]
    assert err <= TOL, (est.name, err)
    state = relative_state_error(got, truth)
    if est.initial_state and isinstance(problem, FieldProblem):
        assert set(state) == {"q0", "p0"} and max(state.values()) <= TOL, state
    assert got.passes == est.passes(problem, Centred(1e-4))


@pytest.mark.parametrize("est", [*FIELD_ESTIMATORS.values(), KerrHEB()], ids=lambda e: e.name)
def test_every_field_estimator_declares_its_properties(est):
    assert isinstance(est, AbstractFieldEstimator)
    assert est.name and est.label and est.loss and est.exact is True
    assert isinstance(est.truth, AbstractFieldTruth) and est.truth.loss == est.loss
    assert est.accepts(Centred(1e-3)) and est.accepts(OneSided(1e-3)) and not est.accepts(ComplexStep(1e-3))
    assert est == type(est)() and hash(est) == hash(type(est)())  # frozen: equal configurations, one cache key


def test_rhel_is_the_echo_for_a_separable_field():
    """Documented: RHEL's Hamiltonian read-out is the echo's computation, number for number."""
    problem = sine_gordon_running(0)
    a, b = FieldRHEL()(problem), FieldEcho()(problem)
    for k in a.theta:
        np.testing.assert_array_equal(a.theta[k], b.theta[k])
    np.testing.assert_array_equal(a.q0, b.q0)


def test_heb_refuses_a_running_cost_and_needs_a_terminal_one():
    with pytest.raises(InputError, match="HEB takes a terminal cost only"):
        FieldHEB()(sine_gordon_running(0))
    msh = dmesh.create_interval(COMM, 6, [0.0, 1.0])
    sys = FieldSystem(fm.wave(), msh, initial=(lambda x: np.sin(np.pi * x[0]), 0.0))
    with pytest.raises(InputError, match="HEB needs a terminal cost"):
        FieldHEB()(FieldProblem(sys, 0.5, 10))


def test_bad_problems_and_nudges():
    problem = phi4_terminal(0)
    with pytest.raises(InputError, match="nudge must be a real glep Nudge"):
        FieldEcho()(problem, ComplexStep(1e-8))
    with pytest.raises(InputError, match="problem must be a glep.FieldProblem"):
        FieldEcho()(kerr(0))
    with pytest.raises(InputError, match="problem must be a glep.ModeProblem"):
        KerrHEB()(problem)
    with pytest.raises(InputError, match="N must be an integer >= 1"):
        FieldProblem(problem.system, 1.0, 0)
    with pytest.raises(InputError, match="T must be a finite number > 0"):
        FieldProblem(problem.system, float("nan"), 10)
    with pytest.raises(InputError, match="system must be a glep.FieldSystem"):
        FieldProblem("wave", 1.0, 10)


def test_compare_field_estimators_rows_and_refusals():
    """The report has one row per estimator; a refused problem is a failed row; bad arguments are refused."""
    from glep.estimators.field_objects import FieldPFVP, compare_field_estimators

    problem = sine_gordon_running(0)
    report = compare_field_estimators(problem, [FieldPFVP(), FieldHEB()], betas=[1e-3])
    assert [(r.name, r.status) for r in report.rows] == [("pfvp", "ok"), ("heb", "failed")]
    assert report.rows[0].metrics["relative_error"] <= TOL
    assert "HEB takes a terminal cost only" in report.rows[1].reason
    with pytest.raises(InputError, match="are not field estimator objects"):
        compare_field_estimators(problem, ["pfvp"])
    with pytest.raises(InputError, match="betas and report_beta must be finite and > 0"):
        compare_field_estimators(problem, [FieldPFVP()], betas=[-1e-3])
    with pytest.raises(InputError, match="nudge must be one of .one-sided., .centred., .complex., got .sideways."):
        compare_field_estimators(problem, [FieldPFVP()], nudges=["sideways"])
