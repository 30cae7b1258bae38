"""The compiled (JAX) path of glep.ivp.compiled against the NumPy path, estimator by estimator.

Every estimator of the time-stepping backend runs on both paths (``StormerVerlet(backend=...)``) on the
built-in families, batched and unbatched, at two parameter points; trajectories, contrasts, the discrete
adjoint, complex-step and tangent results agree to 1e-12 (relative), finite-difference nudges to the
round-off of the contrast amplified by 1/β.  Skipped, with the reason, when the optional extra is absent.
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="the compiled path needs the optional extra JAX: pip install 'glep[jax]'")

from glep.errors import InputError  # noqa: E402
from glep.estimators.contrast import civp_contrast, echo, nudged_family, pfvp  # noqa: E402
from glep.estimators.ground_truth import adjoint  # noqa: E402
from glep.estimators.nudging import Centred, ComplexStep, OneSided  # noqa: E402
from glep.estimators.problem import Problem  # noqa: E402
from glep.estimators.rhel import rhel  # noqa: E402
from glep.ivp import ImplicitMidpoint, StormerVerlet, integrate  # noqa: E402
from glep.ivp.integrators import Integrator, integrator_for  # noqa: E402
from glep.ivp.sensitivity import final_sensitivities  # noqa: E402
from glep.models import FAMILIES, gyroscopic_oscillators  # noqa: E402
from glep.terms import Term  # noqa: E402

TIGHT = 1e-12  # quantities without a 1/β: trajectories, contrasts, adjoint, complex step, tangents
BETA = 1e-3
LOOSE = 64 * np.finfo(float).eps / BETA  # a finite-difference nudge divides the round-off by β

CASES = [("hru_logcosh", {"batch": 3, "hidden": 5}), ("hru_linear", {}),
         ("coupled_oscillators", {"n": 4, "batch": 2, "terminal": True}), ("pendulum_chain", {"batch": 2})]


_MODELS: dict = {}


def _problems(family, kw, variant, steps=120):
    """The family's problem on both paths; ``variant`` perturbs the parameters (same system, so the
    compiled loops are traced once per family)."""
    key = (family, tuple(sorted(kw.items())))
    if key not in _MODELS:
        _MODELS[key] = FAMILIES[family](**kw)
    model = _MODELS[key]
    rng = np.random.default_rng(variant)
    params = {k: v * (1.0 + (0.05 * rng.uniform(-1, 1, np.shape(v)) if variant else 0.0))
              for k, v in model.params.items()}
    return [Problem(model.system, params, model.boundary, Problem.from_model(model, steps=steps).grid,
                    StormerVerlet(backend=b)) for b in ("numpy", "jax")]


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-300))


def _grad_rel(e1, e2) -> float:
    scale = max(float(np.max(np.abs(g))) for g in e1.theta.values())
    err = max(float(np.max(np.abs(e1.theta[k] - e2.theta[k]))) for k in e1.theta) / scale
    for a, b in ((e1.q0, e2.q0), (e1.p0, e2.p0)):
        if a is not None:
            err = max(err, _rel(a, b))
    return err


@pytest.mark.parametrize("family,kw", CASES)
def test_trajectories_equal(family, kw, seed=0):
    ref, comp = _problems(family, kw, seed)
    assert comp.dl(0.0).backend == "jax"
    q0, p0, _ = ref.boundary.states(ref.system, ref.theta)
    for store in (True, "q", False):
        a, b = integrate(ref.dl(0.0), q0, p0, store=store), integrate(comp.dl(0.0), q0, p0, store=store)
        assert _rel(a[0], b[0]) <= TIGHT and _rel(a[1], b[1]) <= TIGHT
    # backward integration (the mirrored discrete Lagrangian) and a nudged trajectory
    qN, pN = integrate(ref.dl(0.0), q0, p0, store=False)
    a = integrate(ref.dl(0.0).mirrored(), qN, -pN)
    b = integrate(comp.dl(0.0).mirrored(), qN, -pN)
    assert _rel(a[0], b[0]) <= TIGHT and _rel(a[1], b[1]) <= TIGHT
    a, b = integrate(ref.dl(0.3), q0, p0), integrate(comp.dl(0.3), q0, p0)
    assert _rel(a[0], b[0]) <= TIGHT
    assert ref.free.loss == pytest.approx(comp.free.loss, rel=TIGHT)


@pytest.mark.parametrize("family,kw", CASES)
def test_nudged_family_values_equal(family, kw):
    """The per-β values the nudges combine: contrast I(β) and end state, echo and backward."""
    ref, comp = _problems(family, kw, 0)
    q0, p0, _ = ref.boundary.states(ref.system, ref.theta)
    for mirrored in (False, True):
        a = nudged_family(ref, Centred(BETA), q0, lambda b: p0, mirrored=mirrored)
        b = nudged_family(comp, Centred(BETA), q0, lambda b: p0, mirrored=mirrored)
        for beta in a:
            (Ia, qa, pa), (Ib, qb, pb) = a[beta], b[beta]
            assert set(Ia) == set(Ib)
            assert max(_rel(Ia[k], Ib[k]) for k in Ia) <= TIGHT
            assert _rel(qa, qb) <= TIGHT and _rel(pa, pb) <= TIGHT


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("family,kw", CASES)
def test_estimators_equal(family, kw, seed):
    ref, comp = _problems(family, kw, seed)
    nudges = ((ComplexStep(BETA), TIGHT), (Centred(BETA), LOOSE), (OneSided(BETA), LOOSE))
    for nudge, tol in nudges if seed == 0 else nudges[1:2]:
        for estimator in (echo, rhel, pfvp):
            e1, e2 = estimator(ref, nudge), estimator(comp, nudge)
            assert _grad_rel(e1, e2) <= tol, (estimator.__name__, nudge.label)
    assert _grad_rel(adjoint(ref), adjoint(comp)) <= TIGHT
    assert _grad_rel(civp_contrast(ref, ComplexStep(BETA), residual=True),
                     civp_contrast(comp, ComplexStep(BETA), residual=True)) <= TIGHT
    # the compiled estimate is the gradient: against the adjoint to the nudge's O(β²) bias
    truth = adjoint(ref)
    assert _grad_rel(truth, echo(comp, ComplexStep(BETA))) <= 1e-5


def test_sensitivities_equal():
    ref, comp = _problems("coupled_oscillators", {"n": 3, "batch": 2}, 0, steps=60)
    a = final_sensitivities(ref.free.dl, ref.free.Q, v0=ref.free.v0, chunk=7)
    b = final_sensitivities(comp.free.dl, comp.free.Q, v0=comp.free.v0, chunk=7)
    assert _rel(a[0], b[0]) <= TIGHT and _rel(a[1], b[1]) <= TIGHT


def test_echo_keeps_no_trajectory():
    """On the compiled path the echo's free pass keeps only its end state (memory independent of N)."""
    _, comp = _problems(*CASES[0], 0)
    echo(comp, Centred(BETA))
    rhel(comp, OneSided(BETA))
    assert "free" not in comp.__dict__


def test_float64_is_local():
    """The compiled path computes in float64 without switching JAX's global default."""
    import jax.numpy as jnp

    before = jnp.ones(1).dtype
    _, comp = _problems("hru_linear", {}, 0, steps=20)
    assert comp.free.Q.dtype == np.float64
    assert jnp.ones(1).dtype == before


class _OpaqueTerm(Term):
    """A term written with NumPy only (``array_api`` false): the compiled path must refuse it."""

    depends_on_velocity = False

    def lagrangian(self, q, v, theta, x, t):
        return -0.5 * np.sum(q * q, axis=-1)

    def gradient(self, q, v, theta, x, t):
        return -q, None

    def hessian_action(self, q, v, theta, x, t, dq, dv):
        return -dq, None

    def theta_gradient(self, q, v, theta, x, t):
        return {}

    def theta_vjp(self, q, v, theta, x, t, a, b):
        return {}

    def theta_jvp(self, q, v, theta, x, t, dtheta):
        return None, None

    def ufl_lagrangian(self, q, v, theta, x, t):
        raise NotImplementedError


def test_refusals_name_the_reason():
    gyro = gyroscopic_oscillators(3, 0.2)
    with pytest.raises(InputError, match="not separable"):
        integrator_for(gyro.system, StormerVerlet(backend="jax"))
    model = FAMILIES["hru_linear"]()
    with pytest.raises(InputError, match="implicit"):
        integrator_for(model.system, Integrator(ImplicitMidpoint().rule, False, "midpoint", "jax"))
    with pytest.raises(InputError, match="backend must be one of"):
        integrator_for(model.system, StormerVerlet(backend="torch"))
    from glep.system import LagrangianSystem

    opaque = LagrangianSystem(2, [model.system.terms[0].__class__(2, None), _OpaqueTerm(2)])
    with pytest.raises(InputError, match="array namespace"):
        integrator_for(opaque, StormerVerlet(backend="jax"))


def test_blocks_equal(monkeypatch):
    """The compiled loops run in blocks of steps (inputs sampled block by block): several blocks and a
    remainder give the NumPy path's results."""
    from glep.ivp import compiled

    monkeypatch.setattr(compiled, "BLOCK", 50)
    ref, comp = _problems(*CASES[0], 0)
    q0, p0, _ = ref.boundary.states(ref.system, ref.theta)
    a, b = integrate(ref.dl(0.0), q0, p0), integrate(comp.dl(0.0), q0, p0)
    assert _rel(a[0], b[0]) <= TIGHT and _rel(a[1], b[1]) <= TIGHT
    e1, e2 = echo(ref, ComplexStep(BETA)), echo(comp, ComplexStep(BETA))
    assert _grad_rel(e1, e2) <= TIGHT


def test_final_value_problem_equal():
    """A CFVP: the free pass integrated backward (the mirrored discrete Lagrangian) on both paths."""
    from glep import CFVP

    model = FAMILIES["coupled_oscillators"](n=3, T=1.0, batch=2)
    rng = np.random.default_rng(3)
    bc = CFVP(0.2 * rng.standard_normal(3), vT=0.3 * rng.standard_normal(3))
    grid = Problem.from_model(model, steps=80).grid
    ref, comp = (Problem(model.system, model.params, bc, grid, StormerVerlet(backend=b)) for b in ("numpy", "jax"))
    assert comp.free.loss == pytest.approx(ref.free.loss, rel=TIGHT)
    assert _grad_rel(adjoint(ref), adjoint(comp)) <= TIGHT
    assert _grad_rel(civp_contrast(ref, ComplexStep(BETA), residual=True),
                     civp_contrast(comp, ComplexStep(BETA), residual=True)) <= TIGHT
