"""One generic test over every estimator object (as diffrax tests every solver with the same code).

Each exact estimator, on two model families, must match its own ground truth
at centred β = 1e-4 (THEORY.md §2: the identity is exact for the discrete
loss, the centred bias is O(β²) ≈ 1e-8), show the bias orders of its nudges
(fitted slopes 1 one-sided, 2 centred) and declare its loss and cost.  The
biased CIVP contrast says it is not exact and is off by the omitted R(T).
"""

import importlib.util

import numpy as np
import pytest

from glep import CBVP
from glep.errors import InputError
from glep.estimators import (
    ESTIMATORS,
    RHEL,
    AbstractEstimator,
    CBVPContrast,
    Centred,
    CIVPContrast,
    ComplexStep,
    DiscreteAdjoint,
    Echo,
    FEAdjoint,
    OneSided,
    PeriodicContrast,
    PFVPContrast,
    Problem,
    compare,
    compare_estimators,
)
from glep.estimators.metrics import fit_slope
from glep.ivp import StormerVerlet
from glep.models import coupled_oscillators, pendulum_chain

EXACT = [CIVPContrast(residual=True), PFVPContrast(), Echo(), RHEL(), CBVPContrast()]
#: nudging strengths of the slope fits: large enough for the bias to dominate round-off and the Newton
#: tolerance of the CBVP solves, small enough for the leading term of the bias to dominate
BETAS = 2e-2 * 0.5 ** np.arange(4)
FAMILIES = {"oscillators": lambda: coupled_oscillators(3, T=1.0), "pendulums": lambda: pendulum_chain(3, T=1.0)}


_NO_JAX = importlib.util.find_spec("jax") is None
#: every family on both paths: NumPy, and compiled (skipped, with the reason, without the extra)
_CASES = [pytest.param((family, backend), id=f"{family}-{backend}",
                       marks=pytest.mark.skipif(backend == "jax" and _NO_JAX,
                                                reason="the compiled path needs the optional extra JAX: "
                                                       "pip install 'glep[jax]'"))
          for family in FAMILIES for backend in ("numpy", "jax")]


@pytest.fixture(scope="module", params=_CASES)
def problem(request):
    family, backend = request.param
    return Problem.from_model(FAMILIES[family](), steps=100, integrator=StormerVerlet(backend=backend))


@pytest.fixture(scope="module")
def truths(problem):
    """Each ground truth computed once per problem."""
    return {t: t(problem) for t in {est.truth for est in EXACT}}


@pytest.mark.parametrize("est", EXACT, ids=lambda e: e.name)
def test_exact_estimator_matches_its_truth_with_the_bias_orders_of_its_nudges(problem, truths, est):
    assert isinstance(est, AbstractEstimator) and est.exact
    truth = truths[est.truth]
    nudge = Centred(1e-4)
    got = est(problem, nudge)
    assert compare(got.theta, truth.theta)["relative_error"] <= 1e-6
    # declared: the loss (the same as its truth's) and the cost in passes
    assert isinstance(est.loss, str) and "C_h" in est.loss
    assert got.loss == truth.loss
    assert got.passes == est.passes(problem, nudge) >= 2
    for kind, order, band in ((OneSided, 1, (0.9, 1.1)), (Centred, 2, (1.85, 2.15))):
        errors = [compare(est(problem, kind(b)).theta, truth.theta)["relative_error"] for b in BETAS]
        slope = fit_slope(BETAS, errors)
        assert band[0] <= slope <= band[1], (kind.__name__, errors, slope)
        assert kind(1.0).order == order


def test_biased_contrast_declares_itself_and_is_measurably_off(problem, truths):
    est = CIVPContrast()
    assert not est.exact and est.truth == DiscreteAdjoint()
    truth = truths[DiscreteAdjoint()]
    errors = [compare(est(problem, Centred(b)).theta, truth.theta)["relative_error"] for b in (1e-3, 1e-4)]
    # the omitted boundary residual R(T) is O(1) relative to the gradient and does not vanish with β
    assert min(errors) > 1e-2
    assert errors[1] == pytest.approx(errors[0], rel=1e-2)
    got = est(problem, Centred(1e-4))
    assert got.notes[0].startswith("biased") and got.passes == est.passes(problem, Centred(1e-4))


def test_residual_contrast_costs_a_pass_per_parameter(problem):
    nudge = OneSided(1e-3)
    assert CIVPContrast(residual=True).passes(problem, nudge) == 2 + problem.parameter_count
    assert CIVPContrast().passes(problem, nudge) == 2


def test_cbvp_truth_and_estimate_share_one_free_solve():
    pr = Problem.from_model(coupled_oscillators(3, T=1.0), steps=50)
    truth = FEAdjoint()(pr)
    free = dict(pr.cache)
    assert len(free) == 1
    CBVPContrast()(pr, Centred(1e-3))
    CBVPContrast()(pr, OneSided(1e-3))
    assert pr.cache == free and all(pr.cache[k] is free[k] for k in free)
    assert FEAdjoint()(pr).theta.keys() == truth.theta.keys()
    with pytest.raises(InputError, match="real β only"):
        CBVPContrast()(pr, ComplexStep(1e-8))


def test_fe_contrast_refuses_a_boundary_residual_before_solving():
    from glep import CIVP
    from glep.estimators.cbvp import cbvp_gradient

    m = coupled_oscillators(3, T=1.0)
    with pytest.raises(InputError, match="needs a residual-free boundary condition .* got CIVP"):
        cbvp_gradient(m.system, m.params, (1.0, 20), CIVP(np.zeros(3), v0=np.zeros(3)), 1e-4)
    with pytest.raises(InputError, match="nudge must be one of 'one-sided', 'centred', 'complex', got 'sideways'"):
        cbvp_gradient(m.system, m.params, (1.0, 20), CBVP(np.zeros(3), np.ones(3)), 1e-4, scheme="sideways")


def test_compare_takes_objects_and_registry_names():
    pr = Problem.from_model(coupled_oscillators(3, T=1.0), steps=50)
    rep = compare_estimators(pr, estimators=[PFVPContrast(), "echo", CIVPContrast()], betas=[1e-2, 1e-3])
    assert [r.name for r in rep.rows] == ["pfvp", "echo", "civp-contrast"]
    assert [r.exact for r in rep.rows] == [True, True, False]
    assert {name: type(e) for name, e in ESTIMATORS.items()} == {
        "civp-contrast": CIVPContrast, "civp-residual": CIVPContrast, "pfvp": PFVPContrast, "echo": Echo, "rhel": RHEL,
        "cbvp": CBVPContrast, "periodic": PeriodicContrast}
    with pytest.raises(InputError, match="neither estimator names nor estimator objects"):
        compare_estimators(pr, estimators=[PFVPContrast(), 3])
