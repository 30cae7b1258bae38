"""Finite nudging (glep.estimators.finite): which estimator is exactly ∇J at finite β, and for which J.

Derivation (docs/theory.md §8): integrating the GLEP identity over β′ gives, for the segment
``[a, b]`` of a nudge (one-sided ``[0, β]``, centred ``[−β, β]``),

    (I(b) − I(a))/(b − a) = ∇J − mean_{[a,b]} (R_β′(T) − R_β′(0)),   J = mean_{[a,b]} C_h(s_β′).

Tolerances: the truth ∇J is a Gauss–Legendre quadrature whose doubling error estimate is asserted
below QUAD (1e-8, two orders under the 1e-6 of the comparison) before any comparison; central
finite differences of J with step ε have error O(ε²) + O(u/ε) ≈ 1e-8 at ε = 1e-4, so they are
compared at 1e-6; fitted orders in β are asserted within ±0.15 of the derived order (as
tests/test_identities.py does for the bias of the β → 0 estimators).
"""

import numpy as np
import pytest

from glep import CFVP, DirichletNatural, InputError, Periodic, SolverError
from glep.estimators.base import FunctionEstimator
from glep.estimators.cbvp import CBVPContrast, contrast_gradient, solve_free
from glep.estimators.contrast import CIVPContrast, Echo, PFVPContrast, civp_contrast, pfvp
from glep.estimators.finite import (
    FinalStateFamily,
    FreeEnergyGradient,
    InitialValueFamily,
    IntegratedResidual,
    QuadratureError,
    ReducedFamily,
    family_for,
    finite_beta_rows,
    free_energy,
    integrated_residual,
    segment,
)
from glep.estimators.ground_truth import adjoint
from glep.estimators.metrics import compare, fit_slope
from glep.estimators.nudging import Centred, ComplexStep, OneSided
from glep.estimators.problem import Problem
from glep.estimators.rhel import RHEL
from glep.grid import TimeGrid
from glep.ivp.sensitivity import flatten, unflatten
from glep.models import FAMILIES
from helpers import problem

#: the two built-in families of the exactness claims (short horizon: no conjugate point for |β| ≤ 1)
CASES = ["coupled_oscillators", "hru_logcosh"]
EXACT_BETAS = [0.1, 0.5, 1.0]
QUAD = 1e-8
ORDER_BETAS = [0.2, 0.1, 0.05, 0.025]


def small(family: str, steps: int = 60, **kw) -> Problem:
    return problem(family, steps=steps, n=3, T=2.0, **kw)


def cfvp_problem() -> Problem:
    model = FAMILIES["coupled_oscillators"](n=3, T=2.0)
    rng = np.random.default_rng(3)
    bc = CFVP(0.2 * rng.standard_normal(3), vT=0.3 * rng.standard_normal(3))
    return Problem(model.system, model.params, bc, TimeGrid(2.0, 60))


def rel(a, b) -> float:
    return compare(a, b)["relative_error"]


def converged(fe):
    assert fe.gradient_error <= QUAD, f"quadrature not converged: {fe.gradient_error:.1e} with {fe.nodes} nodes"
    return fe.gradient


@pytest.fixture(scope="module", params=CASES)
def ivp_case(request):
    return small(request.param)


# -- the quadrature and the truth itself ---------------------------------------------------------------
def test_gauss_legendre_doubling_error_falls_geometrically(ivp_case):
    """Analytic in β′: the GL error falls like ρ^(−2m), so each doubling shrinks it by a growing factor
    (faster than any algebraic rate, whose factor would stay constant)."""
    errors = [free_energy(InitialValueFamily(ivp_case), OneSided(1.0), rtol=0.5, nodes=m, max_nodes=2 * m)
              .gradient_error for m in (1, 2, 4)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] / errors[1] < errors[1] / errors[0]


@pytest.mark.parametrize("family", [InitialValueFamily, FinalStateFamily])
@pytest.mark.parametrize("nudge", [OneSided(0.5), Centred(0.5), ComplexStep(0.5)], ids=lambda n: n.label)
def test_grad_J_matches_central_differences_of_J(family, nudge):
    """∇J (quadrature of nudged adjoints) vs central differences of J (quadrature of nudged losses).

    A fixed rule (8 nodes: the first doubling, converged at the loose rtol) makes J(θ) and ∇J the
    same quadrature, so the comparison tests the adjoints and the PFVP chain through q_N(θ), π_N(θ).
    """
    pr = small("coupled_oscillators", terminal=True)
    shapes = pr.system.parameters

    def fe(p):
        return free_energy(family(p), nudge, rtol=1e-3, nodes=4, max_nodes=8)

    g = flatten(fe(pr).gradient, shapes)
    rng = np.random.default_rng(1)
    th, eps = flatten(pr.theta, shapes), 1e-4
    for _ in range(2):
        d = rng.standard_normal(th.size)
        d /= np.linalg.norm(d)
        plus, minus = (fe(pr.with_params(unflatten(th + s * eps * d, shapes))).value for s in (1, -1))
        assert abs((plus - minus) / (2 * eps) - g @ d) <= 1e-6 * np.linalg.norm(g)


@pytest.mark.parametrize("scheme, order", [(OneSided, 1), (Centred, 2)])
def test_J_tends_to_C_with_the_order_of_the_scheme(ivp_case, scheme, order):
    C, gC = ivp_case.free.loss, adjoint(ivp_case).theta
    fes = [free_energy(InitialValueFamily(ivp_case), scheme(b), rtol=QUAD) for b in ORDER_BETAS]
    dJ = [abs(fe.value - C) / abs(C) for fe in fes]
    dG = [rel(converged(fe), gC) for fe in fes]
    assert abs(fit_slope(ORDER_BETAS, dJ, ceiling=1.0) - order) <= 0.15
    assert abs(fit_slope(ORDER_BETAS, dG, ceiling=1.0) - order) <= 0.15


# -- exact at finite β ------------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", [OneSided, Centred])
@pytest.mark.parametrize("beta", EXACT_BETAS)
def test_civp_with_integrated_residual_is_grad_J(ivp_case, scheme, beta):
    nudge = scheme(beta)
    truth = converged(free_energy(InitialValueFamily(ivp_case), nudge, rtol=QUAD))
    assert rel(integrated_residual(ivp_case, nudge, rtol=QUAD).theta, truth) <= 1e-6


@pytest.mark.parametrize("scheme", [OneSided, Centred])
@pytest.mark.parametrize("beta", EXACT_BETAS)
def test_pfvp_with_its_t0_residual_integrated_is_grad_J(ivp_case, scheme, beta):
    """The PFVP difference to ∇J is exactly the t = 0 residual: integrated over β′ it vanishes."""
    nudge = scheme(beta)
    truth = converged(free_energy(FinalStateFamily(ivp_case), nudge, rtol=QUAD))
    assert rel(IntegratedResidual(final_state=True, rtol=QUAD)(ivp_case, nudge).theta, truth) <= 1e-6


@pytest.mark.parametrize("beta", EXACT_BETAS)
def test_cfvp_with_integrated_residual_is_grad_J(beta):
    pr = cfvp_problem()
    for nudge in (OneSided(beta), Centred(beta)):
        truth = converged(free_energy(InitialValueFamily(pr), nudge, rtol=QUAD))
        assert rel(IntegratedResidual(rtol=QUAD)(pr, nudge).theta, truth) <= 1e-6


@pytest.mark.parametrize("final_state, family", [(False, InitialValueFamily), (True, FinalStateFamily)])
def test_integrated_residual_with_a_terminal_cost_is_grad_J(final_state, family):
    pr = small("coupled_oscillators", terminal=True)
    nudge = OneSided(0.5)
    est = integrated_residual(pr, nudge, final_state=final_state, rtol=QUAD)
    assert rel(est.theta, converged(free_energy(family(pr), nudge, rtol=QUAD))) <= 1e-6


@pytest.fixture(scope="module", params=CASES)
def cbvp_case(request):
    pr = small(request.param, steps=50)
    est = CBVPContrast()
    return pr, est, family_for(pr, est)


@pytest.mark.parametrize("scheme", [OneSided, Centred])
@pytest.mark.parametrize("beta", EXACT_BETAS)
def test_cbvp_contrast_is_grad_J_at_any_beta(cbvp_case, scheme, beta):
    """Residual-free: the FE CBVP contrast equals ∇J of the CBVP family (FE nudged adjoints)."""
    pr, est, family = cbvp_case
    truth = converged(free_energy(family, scheme(beta), rtol=QUAD))
    assert rel(est(pr, scheme(beta)).theta, truth) <= 1e-6


@pytest.mark.parametrize("bc", [DirichletNatural(0.1 * np.ones(3)), Periodic()], ids=["dirichlet-natural", "periodic"])
def test_any_residual_free_reduced_problem_is_a_family(bc):
    """The hook for field models: ReducedFamily takes any residual-free glep.bvp.ReducedProblem."""
    model = FAMILIES["coupled_oscillators"](n=3, T=2.0)
    free = solve_free(model.system, model.params, (2.0, 50), bc)
    family = ReducedFamily(free.problem, free.solution, type(bc).__name__)
    for nudge in (OneSided(0.5), Centred(1.0)):
        assert rel(contrast_gradient(free, nudge), converged(free_energy(family, nudge, rtol=QUAD))) <= 1e-6
    family.release()


def test_cbvp_contrast_is_far_from_grad_C_at_finite_beta(cbvp_case):
    """…while it is not ∇C: the two truths differ, by O(β) one-sided."""
    pr, est, _ = cbvp_case
    gC = est.truth(pr).theta
    errs = [rel(est(pr, OneSided(b)).theta, gC) for b in ORDER_BETAS]
    assert errs[0] > 1e-2
    assert abs(fit_slope(ORDER_BETAS, errs, ceiling=1.0) - 1) <= 0.15


@pytest.mark.parametrize("seed", [1, 2])
def test_exactness_at_other_parameter_points_and_signals(seed):
    """Other random masses, springs, couplings, drive and target: every exact variant stays exact."""
    pr = small("coupled_oscillators", steps=50, seed=seed)
    nudge = OneSided(0.5)
    for est in (CBVPContrast(), IntegratedResidual(rtol=QUAD), IntegratedResidual(final_state=True, rtol=QUAD)):
        family = family_for(pr, est)
        assert rel(est(pr, nudge).theta, converged(free_energy(family, nudge, rtol=QUAD))) <= 1e-6
        family.release()


# -- not exact at finite β: the measured difference and its order ---------------------------------------
NOT_EXACT = {
    "civp + residual": (lambda pr, nu: civp_contrast(pr, nu, residual=True), InitialValueFamily),
    "pfvp": (pfvp, FinalStateFamily),
    "echo": (lambda pr, nu: Echo()(pr, nu), FinalStateFamily),
    "rhel": (lambda pr, nu: RHEL()(pr, nu), FinalStateFamily),
}


@pytest.mark.parametrize("name", list(NOT_EXACT))
@pytest.mark.parametrize("scheme, order", [(OneSided, 1), (Centred, 2)])
def test_non_exact_estimators_differ_from_grad_J_at_the_order_of_the_scheme(ivp_case, name, scheme, order):
    """Free-trajectory residual (CIVP) or the t = 0 term (PFVP, echo, RHEL): exact only as β → 0."""
    fn, family = NOT_EXACT[name]
    errs = [rel(fn(ivp_case, scheme(b)).theta, converged(free_energy(family(ivp_case), scheme(b), rtol=QUAD)))
            for b in ORDER_BETAS]
    assert errs[0] > 1e-4  # measurably not exact at finite β
    assert abs(fit_slope(ORDER_BETAS, errs, ceiling=1.0) - order) <= 0.15


@pytest.mark.parametrize("scheme, order", [(OneSided, 1), (Centred, 2)])
def test_cfvp_with_the_free_residual_differs_from_grad_J_at_the_order_of_the_scheme(scheme, order):
    pr = cfvp_problem()
    errs = [rel(civp_contrast(pr, scheme(b), residual=True).theta,
                converged(free_energy(InitialValueFamily(pr), scheme(b), rtol=QUAD))) for b in ORDER_BETAS]
    assert errs[0] > 1e-4
    assert abs(fit_slope(ORDER_BETAS, errs, ceiling=1.0) - order) <= 0.15


def test_civp_contrast_without_residual_does_not_converge_to_grad_J(ivp_case):
    errs = [rel(civp_contrast(ivp_case, OneSided(b)).theta, converged(free_energy(InitialValueFamily(ivp_case),
                                                                                     OneSided(b), rtol=QUAD)))
            for b in ORDER_BETAS]
    assert min(errs) > 1e-2 and abs(fit_slope(ORDER_BETAS, errs, ceiling=10.0)) <= 0.3


# -- declarations, rows, truths -----------------------------------------------------------------------------
def test_estimators_declare_their_finite_beta_objective():
    assert CBVPContrast.exact_at_finite_beta and IntegratedResidual.exact_at_finite_beta
    for est in (CIVPContrast(), CIVPContrast(residual=True), PFVPContrast(), Echo(), RHEL()):
        assert not est.exact_at_finite_beta
    assert IntegratedResidual().nudged_family == "initial-value"
    assert IntegratedResidual(final_state=True).nudged_family == PFVPContrast.nudged_family == "final-state"
    assert {CIVPContrast.nudged_family, PFVPContrast.nudged_family, CBVPContrast.nudged_family} == \
        {"initial-value", "final-state", "cbvp"}


def test_finite_beta_rows_report_both_truths():
    pr = small("coupled_oscillators")
    rows = finite_beta_rows(pr, [IntegratedResidual(), PFVPContrast()], [OneSided(0.5), ComplexStep(0.5)])
    assert [(r.estimator, r.nudge) for r in rows] == [("CIVP + integrated residual", "OneSided"),
                                                      ("PFVP", "OneSided"), ("PFVP", "ComplexStep")]
    exact, pf = rows[0], rows[1]
    assert exact.exact_declared and exact.to_J["relative_error"] <= 1e-6 < exact.to_C["relative_error"]
    assert not pf.exact_declared and pf.to_J["relative_error"] > 1e-3


def test_free_energy_gradient_truth_object():
    pr = small("hru_logcosh")
    est = FreeEnergyGradient(Centred(0.5))(pr)
    assert rel(integrated_residual(pr, Centred(0.5)).theta, est.theta) <= 1e-6
    assert "J^sym_β" in est.loss and "quadrature error" in est.notes[0]


# -- bad input and ambiguous answers ----------------------------------------------------------------------------
def test_bad_input_is_refused_with_a_message():
    pr = small("coupled_oscillators")
    with pytest.raises(InputError, match="nudge must be OneSided, Centred or ComplexStep"):
        segment(0.1)
    with pytest.raises(InputError, match="rtol must be in"):
        free_energy(InitialValueFamily(pr), OneSided(0.1), rtol=0.0)
    with pytest.raises(InputError, match="nodes must be an integer"):
        free_energy(InitialValueFamily(pr), OneSided(0.1), nodes=0)
    with pytest.raises(InputError, match="max_nodes an integer >= 2 nodes"):
        free_energy(InitialValueFamily(pr), OneSided(0.1), nodes=8, max_nodes=8.0)
    with pytest.raises(InputError, match="family must be a NudgedFamily"):
        free_energy(pr, OneSided(0.1))
    with pytest.raises(InputError, match="integrated residual needs a real nudge"):
        integrated_residual(pr, ComplexStep(0.1))
    with pytest.raises(InputError, match="declares no nudged family"):
        family_for(pr, FunctionEstimator("f", lambda *a, **k: None))
    with pytest.raises(InputError, match="PFVP family starts from the final state of a free CIVP"):
        FinalStateFamily(cfvp_problem())
    with pytest.raises(InputError, match="integrated residual starts from the final state of a free CIVP"):
        integrated_residual(cfvp_problem(), OneSided(0.1), final_state=True)
    with pytest.raises(InputError, match="family must be one of"):
        FreeEnergyGradient(OneSided(0.1), family="nope")(pr)


def test_unconverged_quadrature_is_an_error_not_a_number():
    pr = small("coupled_oscillators")
    with pytest.raises(QuadratureError, match="did not converge with 4 nodes"):
        free_energy(InitialValueFamily(pr), OneSided(1.0), rtol=1e-14, nodes=2, max_nodes=4)


def test_fe_family_refuses_complex_beta_and_a_conjugate_point_on_the_way(cbvp_case):
    pr, _, family = cbvp_case
    with pytest.raises(InputError, match="nudges with real β′ only"):
        free_energy(family, ComplexStep(0.1))
    before = family.loss_gradient(0.3)[0]
    family.release()  # frees the kept factorisation and solutions; still answers, from the free solution
    # two Newton solves from different guesses, each to rtol 1e-10 on the residual: the loss agrees to ~1e-10
    assert family.loss_gradient(0.3)[0] == pytest.approx(before, rel=1e-8)
    longer = problem("hru_linear", steps=80, n=3, T=4.0)  # Morse index 2 at β′ = 0, 3 for β′ ≲ −0.3
    with pytest.raises(SolverError, match="changes Morse index from 2 at β′ = 0 to 3"):
        free_energy(family_for(longer, CBVPContrast()), Centred(1.0))
