"""Finite nudging on a field model (issue 12): which field estimator is exactly ∇J at finite β.

Derivation (docs/theory.md §8): integrating the GLEP identity over β′ along a nudge's segment gives
``(I(b) − I(a))/(b − a) = ∇J − mean_{[a,b]}(R_β′(T) − R_β′(0))``, ``J = mean_{[a,b]} C_h(s_β′)``.

* The space-time CBVP (both ends pinned, θ-independent) has no residual at any β′: its contrast *is* ∇J
  (glep.estimators.finite_fields.SpaceTimeFamily: nudged Newton solves by continuation in β′, FE adjoint of
  the nudged system at each Gauss–Legendre node).  Asserted ≤ 1e-6 at β = 0.1, 0.5, 1, one-sided and centred,
  after asserting the quadrature's doubling estimate ≤ QUAD = 1e-8; likewise periodic in time at β = 1.
* The time-stepped PFVP and echo (field_pfvp, field_echo) keep the t = 0 term R_β′(0) (their nudged
  trajectories start at t = 0 from θ-dependent states when β′ ≠ 0): their distance to ∇J of their family
  (FieldFinalStateFamily) has fitted order 1 (one-sided) and 2 (centred) in β, within ±0.15 as in
  tests/test_finite_nudge.py.

The truths are checked on their own: ∇J against central differences of J (ε = 1e-4: error ~1e-8, compared at
1e-6), the reverse mode of a leapfrog pass against glep.field_adjoint, and the final-state family at β′ = 0
against the free trajectory's adjoint gradient (1e-10: the same discrete quantity).
"""

import numpy as np
import pytest
import ufl
from field_backends_case import make_case, mu, phi0, target_np
from mpi4py import MPI

from glep.bvp import spacetime as st
from glep.bvp.solvers import Newton
from glep.bvp.spacetime_gradients import adjoint_gradient
from glep.errors import InputError
from glep.estimators.field_estimators import field_echo, field_pfvp
from glep.estimators.finite import FAMILY_BUILDERS, free_energy
from glep.estimators.finite_fields import (
    FieldFinalStateFamily,
    FieldProblem,
    SpaceTimeFamily,
    field_family_for,
    gathered,
    pass_adjoint,
    spacetime_contrast,
)
from glep.estimators.metrics import fit_slope
from glep.estimators.nudging import Centred, ComplexStep, OneSided
from glep.field_models import klein_gordon
from glep.fields import FieldLagrangian
from glep.ivp.field_adjoint import field_adjoint
from glep.ivp.field_stepping import forward, uniform_times
from glep.ivp.sensitivity import flatten

COMM = MPI.COMM_WORLD
QUAD = 1e-8
EXACT_BETAS = [0.1, 0.5, 1.0]
ORDER_BETAS = [0.2, 0.1, 0.05, 0.025]
TIGHT = Newton(rtol=1e-13, atol=1e-13)


def rel(a: dict, b: dict) -> float:
    keys = sorted(b)
    fa = np.concatenate([np.ravel(a[k]) for k in keys])
    fb = np.concatenate([np.ravel(b[k]) for k in keys])
    return float(np.linalg.norm(fa - fb) / np.linalg.norm(fb))


def converged(fe):
    assert fe.gradient_error <= QUAD, f"quadrature not converged: {fe.gradient_error:.1e} with {fe.nodes} nodes"
    return fe.gradient


# -- the space-time CBVP: exact at finite β ---------------------------------------------------------------
def cbvp(params=None):
    """Nonlinear Klein–Gordon CBVP (parameter field μ, scalar λ), tracking cost over space-time."""
    m = st.spacetime_mesh(COMM, 1.0, 0.6, 8, 12)
    p = st.SpaceTimeProblem(klein_gordon(), m, st.SpaceTimeCBVP(phi0, lambda X: 0.5 * np.sin(2 * np.pi * X[0])),
                            params=params or {"mu": mu, "lam": 0.8}, cost=st.tracking_cost(target_np))
    return p, st.solve(p, solver=TIGHT)


@pytest.fixture(scope="module")
def st_family():
    p, sol = cbvp()
    return SpaceTimeFamily(p, sol)


@pytest.mark.parametrize("scheme", [OneSided, Centred])
@pytest.mark.parametrize("beta", EXACT_BETAS)
def test_spacetime_cbvp_contrast_is_grad_J(st_family, scheme, beta):
    nudge = scheme(beta)
    truth = converged(free_energy(st_family, nudge, rtol=QUAD))
    assert rel(spacetime_contrast(st_family, nudge), truth) <= 1e-6


def _forced_klein_gordon(T: float) -> FieldLagrangian:
    """Klein–Gordon with the μ field, λ and a time-periodic source ``f φ``, ``f = sin(πx) cos(2πt/T)``."""
    base = klein_gordon()

    def density(phi, phi_t, grad_phi, theta, x, t):
        return base.density(phi, phi_t, grad_phi, theta, x, t) + \
            ufl.sin(np.pi * x[0]) * ufl.cos(2 * np.pi * t / T) * phi

    return FieldLagrangian(density, base.parameters, name="forced klein-gordon", separable=True)


@pytest.mark.parametrize("scheme", [OneSided, Centred])
def test_spacetime_periodic_contrast_is_grad_J(scheme):
    """Periodic in time is residual-free too (the two ends' momentum terms cancel): exact at β = 1."""
    T = 1.3
    m = st.spacetime_mesh(COMM, 1.0, T, 8, 12)
    p = st.SpaceTimeProblem(_forced_klein_gordon(T), m, st.SpaceTimePeriodic(), params={"mu": mu, "lam": 0.8},
                            cost=st.tracking_cost(target_np))
    fam = SpaceTimeFamily(p, st.solve(p, solver=TIGHT))
    assert fam.name == "space-time Periodic"
    truth = converged(free_energy(fam, scheme(1.0), rtol=QUAD))
    assert rel(spacetime_contrast(fam, scheme(1.0)), truth) <= 1e-6
    fam.release()


def test_spacetime_contrast_is_not_grad_C_at_finite_beta(st_family):
    """…while at β = 1 it is far from ∇C (the adjoint of the free CBVP)."""
    gC = adjoint_gradient(st_family.problem, st_family.solution).dual
    assert rel(spacetime_contrast(st_family, OneSided(1.0)), gC) > 1e-2


def test_spacetime_grad_J_matches_central_differences_of_J():
    """A fixed 8-node rule: J(θ) and ∇J the same quadrature, so this checks the nudged FE adjoints."""
    nudge = OneSided(0.5)
    p, sol = cbvp()
    fam = SpaceTimeFamily(p, sol)
    g = free_energy(fam, nudge, rtol=1e-3, nodes=4, max_nodes=8).gradient
    eps = 1e-4
    d = 0.5 + 0.3 * np.cos(3.0 * p.field_coordinates("mu")[:, 0])  # a direction of the field μ, and of λ
    values = []
    for s in (1, -1):
        q, qs = cbvp({"mu": p.params()["mu"] + s * eps * d, "lam": 0.8 + s * eps * 0.7})
        values.append(free_energy(SpaceTimeFamily(q, qs), nudge, rtol=1e-3, nodes=4, max_nodes=8).value)
    fd = (values[0] - values[1]) / (2 * eps)
    ad = float(g["mu"] @ d + 0.7 * g["lam"])
    assert abs(fd - ad) <= 1e-6 * np.linalg.norm(flatten(g, fam.parameters))


# -- the time-stepped PFVP / echo family: not exact, with the order of the scheme ----------------------------
@pytest.fixture(scope="module")
def ts_case():
    case = make_case(COMM)
    return case, FieldFinalStateFamily(FieldProblem(case.system, case.T, case.N))


def test_pass_adjoint_is_field_adjoint(ts_case):
    """The reverse mode of a forward pass (terminal cost included) equals glep.field_adjoint."""
    case, _ = ts_case
    sys = case.system
    fw = forward(sys, case.T, case.N, store=True)
    times = uniform_times(case.T, case.N)
    theta, qbar, pbar = pass_adjoint(sys, fw.stored, times, np.diff(times), terminal=True)
    ref = field_adjoint(sys, case.T, case.N)
    assert rel(gathered(sys, ref.theta),
               {"mu": sys.gather(theta["mu"], "mu"), "lam": np.asarray(theta["lam"])}) <= 1e-10
    assert np.linalg.norm(sys.gather(pbar - ref.p0)) <= 1e-10 * np.linalg.norm(sys.gather(ref.p0))  # p̄ = dC/dp₀
    # dC/dq₀ of field_adjoint is zero at Dirichlet dofs, as the reverse mode's q̄ there must be ignored
    inner = sys.gather(np.where(sys.free, 1.0, 0.0)) > 0
    assert np.linalg.norm((sys.gather(qbar) - sys.gather(ref.q0))[inner]) <= 1e-10 * np.linalg.norm(sys.gather(ref.q0))


def test_final_state_family_at_zero_is_grad_C(ts_case):
    """β′ = 0: the backward pass retraces the free one, so d_θC is the free CIVP's adjoint gradient."""
    case, fam = ts_case
    loss, grad = fam.loss_gradient(0.0)
    ref = field_adjoint(case.system, case.T, case.N)
    assert abs(loss - ref.loss) <= 1e-12 * abs(ref.loss)
    assert rel(grad, gathered(case.system, ref.theta)) <= 1e-10


def test_final_state_grad_J_matches_central_differences_of_J(ts_case):
    case, fam = ts_case
    sys = case.system
    nudge = Centred(0.5)
    g = free_energy(fam, nudge, rtol=1e-3, nodes=4, max_nodes=8).gradient
    base = sys.parameter_values()
    nodes = sys.V.tabulate_dof_coordinates()[:, 0]  # μ is P1 on the state mesh: the same nodes
    d = 0.5 + 0.3 * np.cos(3.0 * nodes)
    values, eps = [], 1e-4
    try:
        for s in (1, -1):
            sys.set_parameter("mu", base["mu"] + s * eps * d)
            sys.set_parameter("lam", base["lam"] + s * eps * 0.7)
            other = FieldFinalStateFamily(FieldProblem(sys, case.T, case.N))  # the free pass at the new θ
            values.append(free_energy(other, nudge, rtol=1e-3, nodes=4, max_nodes=8).value)
    finally:
        sys.set_parameter("mu", base["mu"])
        sys.set_parameter("lam", base["lam"])
    fd = (values[0] - values[1]) / (2 * eps)
    ad = float(g["mu"] @ sys.gather(d, "mu") + 0.7 * g["lam"])
    assert abs(fd - ad) <= 1e-6 * np.linalg.norm(flatten(g, fam.parameters))


@pytest.mark.parametrize("estimator", [field_pfvp, field_echo], ids=["pfvp", "echo"])
@pytest.mark.parametrize("scheme, order", [(OneSided, 1), (Centred, 2)])
def test_field_pfvp_and_echo_differ_from_grad_J_at_the_order_of_the_scheme(ts_case, estimator, scheme, order):
    case, fam = ts_case
    sys = case.system
    errs = []
    for b in ORDER_BETAS:
        truth = converged(free_energy(fam, scheme(b), rtol=QUAD))
        errs.append(rel(gathered(sys, estimator(sys, case.T, case.N, scheme(b)).theta), truth))
    assert errs[0] > 1e-4  # measurably not exact at finite β
    assert abs(fit_slope(ORDER_BETAS, errs, ceiling=1.0) - order) <= 0.15


# -- registration and bad input ---------------------------------------------------------------------------------
def test_field_families_are_registered(st_family, ts_case):
    case, _ = ts_case
    assert {"spacetime", "field-final-state"} <= set(FAMILY_BUILDERS)
    assert isinstance(field_family_for(FieldProblem(case.system, case.T, case.N), field_echo), FieldFinalStateFamily)
    assert isinstance(field_family_for(st.SpaceTimeSolution(st_family.problem, st_family.solution.r, None, 0),
                                       "spacetime_contrast"), SpaceTimeFamily)
    with pytest.raises(InputError, match="no nudged family is known for the field estimator 'field_civp'"):
        field_family_for(None, "field_civp")
    with pytest.raises(InputError, match="built from a SpaceTimeSolution"):
        FAMILY_BUILDERS["spacetime"](case.system)
    with pytest.raises(InputError, match="needs a FieldProblem"):
        FAMILY_BUILDERS["field-final-state"](case.system)


def test_bad_input(st_family, ts_case):
    _, fam = ts_case
    with pytest.raises(InputError, match="nudges with real β′ only"):
        free_energy(fam, ComplexStep(0.1))
    with pytest.raises(InputError, match="nudges with real β′ only"):
        st_family.loss_gradient(0.1j)
    with pytest.raises(InputError, match="needs a real nudge"):
        spacetime_contrast(st_family, ComplexStep(0.1))
    with pytest.raises(InputError, match="needs N \\+ 1 stored positions"):
        pass_adjoint(ts_case[0].system, [], uniform_times(1.0, 2), np.full(2, 0.5))
    case = make_case(COMM, terminal=False)
    st.solve(case.civp)
    with pytest.raises(InputError, match="residual-free condition"):
        SpaceTimeFamily(case.civp, None)
    case.civp.set_beta(0.1)
    with pytest.raises(InputError, match="pass nudged=True"):
        adjoint_gradient(case.civp)
    with pytest.raises(InputError, match="starts from the free problem"):
        SpaceTimeFamily(st.SpaceTimeProblem(case.civp.lagrangian, case.stmesh, st.SpaceTimeCBVP(),
                                            cost=st.tracking_cost(0.0), beta=0.1), None)


def test_field_heb_differs_from_grad_J_at_the_order_of_the_scheme():
    """HEB (a terminal cost only: the error injected at T) is the final-state family's contrast, so at finite β
    it descends neither C nor J_β exactly: its distance to ∇J_β has the order of the nudging scheme."""
    from dolfinx import mesh as dmesh
    from field_backends_case import LAM, N_T, N_X, T_END, phidot0, terminal_target

    from glep.estimators.field_objects import FieldHEB
    from glep.field_system import FieldCost, FieldSystem

    sys = FieldSystem(klein_gordon(), dmesh.create_interval(COMM, N_X, [0.0, 1.0]), theta={"mu": mu, "lam": LAM},
                      initial=(phi0, phidot0), terminal_cost=FieldCost(target=lambda x, t: terminal_target(x)))
    problem = FieldProblem(sys, T_END, N_T)
    fam = FieldFinalStateFamily(problem)
    for scheme, order in ((OneSided, 1), (Centred, 2)):
        errs = []
        for b in ORDER_BETAS:
            truth = converged(free_energy(fam, scheme(b), rtol=QUAD))
            errs.append(rel(FieldHEB().estimate(problem, scheme(b)).theta, truth))
        assert errs[0] > 1e-4  # measurably not exact at finite β
        assert abs(fit_slope(ORDER_BETAS, errs, ceiling=1.0) - order) <= 0.15, errs
