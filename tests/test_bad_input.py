"""Bad input gets a clear error naming the argument, never a silent wrong answer."""

import numpy as np
import pytest

import glep
from glep import CIVP, InputError, SolverError, TimeGrid
from glep.estimators.contrast import pfvp
from glep.estimators.nudging import Centred, ComplexStep, OneSided, nudge_from_name
from glep.estimators.problem import Problem
from glep.models import coupled_oscillators


@pytest.fixture
def model():
    return coupled_oscillators(3)


@pytest.mark.parametrize("T", [0.0, -1.0, float("nan"), float("inf")])
def test_non_positive_or_non_finite_horizon(T):
    with pytest.raises(InputError, match="T must be a finite number > 0"):
        TimeGrid(T, 10)


@pytest.mark.parametrize("N", [0, -3, 2.5, True])
def test_bad_step_count(N):
    with pytest.raises(InputError, match="N"):
        TimeGrid(1.0, N)


@pytest.mark.parametrize("cls", [OneSided, Centred, ComplexStep])
def test_zero_beta_is_refused(cls):
    with pytest.raises(InputError, match="beta must be non-zero"):
        cls(0.0)


def test_non_finite_beta_and_unknown_nudge():
    with pytest.raises(InputError, match="beta must be finite"):
        Centred(float("nan"))
    with pytest.raises(InputError, match="nudge must be one of"):
        nudge_from_name("sideways", 1e-3)


def test_initial_state_shape_mismatch(model):
    with pytest.raises(InputError, match=r"CIVP position must have shape \(3,\)"):
        Problem(model.system, model.params, CIVP(np.zeros(4), v0=np.zeros(3)), TimeGrid(1.0, 10)).free  # noqa: B018


def test_initial_state_non_finite(model):
    with pytest.raises(InputError, match="CIVP velocity contains non-finite"):
        Problem(model.system, model.params, CIVP(np.zeros(3), v0=[0, np.nan, 0]), TimeGrid(1.0, 10)).free  # noqa: B018


def test_civp_needs_exactly_one_of_velocity_and_momentum():
    with pytest.raises(InputError, match="exactly one of the velocity or the momentum"):
        CIVP(np.zeros(3))
    with pytest.raises(InputError, match="exactly one"):
        CIVP(np.zeros(3), v0=np.zeros(3), p0=np.zeros(3))


def test_parameter_shape_and_names(model):
    bad = dict(model.params, k=np.ones(5))
    with pytest.raises(InputError, match=r"params\['k'\] must have shape \(3,\)"):
        Problem(model.system, bad, model.boundary, TimeGrid(1.0, 10))
    with pytest.raises(InputError, match="missing parameter"):
        Problem(model.system, {"k": np.ones(3)}, model.boundary, TimeGrid(1.0, 10))
    with pytest.raises(InputError, match="unknown parameter"):
        Problem(model.system, dict(model.params, zz=1.0), model.boundary, TimeGrid(1.0, 10))
    with pytest.raises(InputError, match="non-finite"):
        Problem(model.system, dict(model.params, k=np.array([1.0, np.inf, 1.0])), model.boundary,
                TimeGrid(1.0, 10))


def test_signal_validation():
    with pytest.raises(InputError, match="samples must have shape"):
        glep.Signal.from_samples(np.zeros(5), 1.0)
    with pytest.raises(InputError, match="non-finite"):
        glep.Signal.from_samples(np.full((3, 1), np.nan), 1.0)


def test_missing_signal_and_duplicate_parameter_names():
    from glep import DiagonalMass, Harmonic, InputDrive, LagrangianSystem

    with pytest.raises(InputError, match=r"signals is missing \['u'\]"):
        LagrangianSystem(2, [DiagonalMass(2), InputDrive(2, 1, "u")])
    with pytest.raises(InputError, match="parameter name 'k' is used by two terms"):
        LagrangianSystem(2, [DiagonalMass(2), Harmonic(2, "k"), Harmonic(2, "k")])


def test_stormer_verlet_refuses_a_non_separable_system():
    from glep.models import gyroscopic_oscillators

    m = gyroscopic_oscillators(3, gamma=0.1)
    with pytest.raises(InputError, match="needs a separable Lagrangian"):
        Problem.from_model(m, steps=10, integrator="stormer-verlet")
    with pytest.raises(InputError, match="integrator must be one of"):
        Problem.from_model(m, steps=10, integrator="rk4")


class _Exponential(glep.FixedPotentialTerm):
    """V = −λ eᵠ: the midpoint equation has no root once λh² and p₀ are large."""

    def __init__(self, lam):
        super().__init__(1)
        self.lam = lam

    def potential(self, q, theta, x, t):
        return -self.lam * np.exp(q[..., 0])

    def potential_gradient(self, q, theta, x, t):
        return -self.lam * np.exp(q)

    def potential_hessian_action(self, q, theta, x, t, dq):
        return -self.lam * np.exp(q) * dq

    def ufl_potential(self, q, theta, x, t):
        import ufl

        return -self.lam * ufl.exp(q[0])


def test_diverging_implicit_step_raises_with_history():
    from glep import DiagonalMass, LagrangianSystem
    from glep.ivp.discrete import MIDPOINT, DiscreteLagrangian
    from glep.ivp.stepping import integrate

    sys_ = LagrangianSystem(1, [DiagonalMass(1, None), _Exponential(5.0)])
    dl = DiscreteLagrangian(sys_, {}, TimeGrid(5.0, 5), MIDPOINT)
    with pytest.raises(SolverError) as info:
        integrate(dl, np.array([[0.0]]), np.array([[20.0]]))
    assert "did not converge" in str(info.value)
    assert "last residual norms" in str(info.value)
    assert len(info.value.history) > 1


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the blow-up under test
def test_explicit_blow_up_is_reported_not_returned():
    from glep import DiagonalMass, LagrangianSystem, Quartic
    from glep.ivp.discrete import DiscreteLagrangian
    from glep.ivp.stepping import integrate

    sys_ = LagrangianSystem(1, [DiagonalMass(1, None), Quartic(1, -50.0)])
    dl = DiscreteLagrangian(sys_, {}, TimeGrid(50.0, 50))
    with pytest.raises(SolverError, match="non-finite"):
        integrate(dl, np.array([[3.0]]), np.array([[10.0]]))


def test_metrics_report_missing_groups(model):
    from glep.estimators.metrics import compare

    with pytest.raises(InputError, match="missing parameter group"):
        compare({"k": np.ones(3)}, {"k": np.ones(3), "J": np.ones(2)})


def test_pfvp_on_valid_problem_still_runs(model):
    pr = Problem.from_model(model, steps=20)
    assert set(pfvp(pr).theta) == set(model.system.parameters)


def test_horizon_past_the_models_signals_is_refused(model):
    with pytest.raises(InputError, match="past the model's horizon"):
        Problem.from_model(model, steps=10, T=2 * model.T)
    assert Problem.from_model(model, steps=10, T=0.5 * model.T).grid.T == 0.5 * model.T
