"""Every hand-written NumPy derivative against the UFL-derived generic path.

Each built-in term is compared with :func:`glep.ufl_term.ufl_reference` (its
own ``ufl_lagrangian`` differentiated by ``ufl.diff`` and evaluated by
compiled DOLFINx expressions) at random batched states; a user-defined
:class:`glep.UFLTerm` is checked against finite differences of itself and used
in a system whose discrete-adjoint gradient is checked against finite
differences of the loss and against PFVP.

All kernels share one batch capacity (B = 3 states, K ≤ 2 tangents, n = 4), so
a cold run compiles about fifty small kernels (FFCx caches them on disk).
"""

from __future__ import annotations

import numpy as np
import pytest
import ufl

import glep
from glep.estimators.contrast import pfvp
from glep.estimators.ground_truth import adjoint, finite_differences
from glep.estimators.nudging import Centred, ComplexStep
from glep.estimators.problem import Problem
from glep.ivp.integrators import ImplicitMidpoint
from glep.ivp.sensitivity import flatten
from glep.ufl_term import UFLTerm, ufl_reference

N_DOF = 4
BATCH = 3
K = 2
RTOL = 1e-12
T_EVAL = 0.37


def _antisymmetric(rng, n):
    R = rng.standard_normal((n, n))
    return R - R.T


def _cases():
    rng = np.random.default_rng(7)
    n = N_DOF
    return {
        "DiagonalMass(trainable)": glep.DiagonalMass(n, "m"),
        "DiagonalMass(fixed)": glep.DiagonalMass(n, None, masses=1.0 + rng.random(n)),
        "Harmonic": glep.Harmonic(n, "k"),
        "SpringCoupling": glep.SpringCoupling(n, [(0, 1), (1, 2), (3, 0)], "J"),
        "Quartic": glep.Quartic(n, 0.3),
        "QuadraticForm": glep.QuadraticForm(n, "A"),
        "InputDrive": glep.InputDrive(n, 2, "u", "B"),
        "LogCoshLayer": glep.LogCoshLayer(n, 3, "W", "b"),
        "Pendulum": glep.Pendulum(n, "w"),
        "Gyroscopic": glep.Gyroscopic(n, 0.7, _antisymmetric(rng, n)),
    }


CASES = _cases()
_REFS: dict[str, UFLTerm] = {}


def _ref(name: str) -> UFLTerm:
    if name not in _REFS:
        _REFS[name] = ufl_reference(CASES[name])
    return _REFS[name]


def _point(term, seed: int, input_batch: int = BATCH):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((BATCH, term.n))
    v = rng.standard_normal((BATCH, term.n))
    theta = {k: rng.standard_normal(s) for k, s in term.parameters.items()}
    x = {k: rng.standard_normal((input_batch, getattr(term, "m", 1))) for k in term.inputs}
    return q, v, theta, x


def _close(got, want, what: str, rtol: float = RTOL):
    """Compare arrays (``None`` means an identically zero block).

    A fast path may return a block that broadcasts against the batch (e.g. an
    input force of shape ``(1, n)``); UFLTerm always returns the full batch.
    """
    if got is None and want is None:
        return
    ref = want if want is not None else got
    got = np.zeros_like(ref) if got is None else np.asarray(got)
    want = np.zeros_like(ref) if want is None else np.asarray(want)
    try:
        full = np.broadcast_shapes(got.shape, want.shape)
    except ValueError:
        raise AssertionError(f"{what}: shapes {got.shape} and {want.shape} do not broadcast") from None
    assert full == got.shape, f"{what}: UFL block {got.shape} smaller than the fast path's {want.shape}"
    scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
    err = float(np.max(np.abs(got - want), initial=0.0))
    assert err <= rtol * scale, f"{what}: max abs error {err:.3e} (scale {scale:.3e})"


def _close_dict(got: dict, want: dict, term, what: str, rtol: float = RTOL):
    for key in set(got) | set(want):
        shape = term.parameters[key]
        _close(got.get(key, np.zeros(shape)), want.get(key, np.zeros(shape)), f"{what}[{key}]", rtol)


# -- built-in terms vs their UFL expression ----------------------------------
@pytest.mark.parametrize("name", list(CASES))
def test_structure_matches_ufl(name):
    term, ref = CASES[name], _ref(name)
    assert ref.n == term.n
    assert ref.parameters == {k: tuple(s) for k, s in term.parameters.items()}
    assert ref.inputs == tuple(term.inputs)
    assert ref.depends_on_velocity == term.depends_on_velocity
    assert not ref.reads_time  # the built-in terms read time only through their input signals


@pytest.mark.parametrize("name", list(CASES))
def test_value_and_gradient(name):
    term, ref = CASES[name], _ref(name)
    q, v, theta, x = _point(term, 1)
    _close(ref.lagrangian(q, v, theta, x, T_EVAL), term.lagrangian(q, v, theta, x, T_EVAL), "lagrangian")
    (gq, gv), (wq, wv) = ref.gradient(q, v, theta, x, T_EVAL), term.gradient(q, v, theta, x, T_EVAL)
    _close(gq, wq, "dL/dq")
    _close(gv, wv, "dL/dv")
    # a block the UFL expression proves zero must be None in the fast path too (and vice versa)
    assert (gq is None) == (wq is None) and (gv is None) == (wv is None)


@pytest.mark.parametrize("name", list(CASES))
def test_hessian_action(name):
    term, ref = CASES[name], _ref(name)
    q, v, theta, x = _point(term, 2)
    rng = np.random.default_rng(3)
    dq, dv = rng.standard_normal((2, BATCH, term.n))
    dQ, dV = rng.standard_normal((2, K, BATCH, term.n))
    for label, a, b in [("dq,dv", dq, dv), ("dq", dq, None), ("dv", None, dv), ("K-batched", dQ, dV)]:
        got = ref.hessian_action(q, v, theta, x, T_EVAL, a, b)
        want = term.hessian_action(q, v, theta, x, T_EVAL, a, b)
        _close(got[0], want[0], f"hessian_action[{label}] q-block")
        _close(got[1], want[1], f"hessian_action[{label}] v-block")


def _has_entries(term) -> bool:
    if not isinstance(term, glep.PotentialTerm):
        return False
    q, _, theta, x = _point(term, 0)
    return term.potential_hessian_entries(q, theta, x, T_EVAL) is not None


POTENTIALS_WITH_ENTRIES = [name for name, term in CASES.items() if _has_entries(term)]


def test_hessian_entries_cover_the_sparse_builtins():
    assert {"Harmonic", "SpringCoupling", "Quartic", "QuadraticForm", "InputDrive", "Pendulum"} <= set(
        POTENTIALS_WITH_ENTRIES)


@pytest.mark.parametrize("name", POTENTIALS_WITH_ENTRIES)
def test_hessian_entries(name):
    """Sparse ``∂²V/∂q²`` entries, summed into dense matrices, act like the UFL Hessian."""
    term, ref = CASES[name], _ref(name)
    q, v, theta, x = _point(term, 4)
    rows, cols, vals = term.potential_hessian_entries(q, theta, x, T_EVAL)
    vals = np.broadcast_to(np.asarray(vals), (BATCH, len(rows)))
    H = np.zeros((BATCH, term.n, term.n))
    for b in range(BATCH):
        np.add.at(H[b], (rows, cols), vals[b])
    dq = np.random.default_rng(5).standard_normal((BATCH, term.n))
    want = ref.hessian_action(q, v, theta, x, T_EVAL, dq, None)[0]
    _close(want, -np.einsum("bij,bj->bi", H, dq), f"{name} Hessian entries")


def test_system_hessian_entries_include_the_nudge():
    n = N_DOF
    sys_ = glep.LagrangianSystem(n, [glep.DiagonalMass(n, None), CASES["Harmonic"], CASES["Quartic"]],
                                 cost=glep.TrackingCost(n, [1, 3]), signals={"y": glep.Signal.constant(np.zeros(2))})
    rng = np.random.default_rng(6)
    q = rng.standard_normal((BATCH, n))
    theta = {k: rng.standard_normal(s) for k, s in sys_.parameters.items()}
    x = {"y": rng.standard_normal((BATCH, 2))}
    rows, cols, vals = glep.system.position_hessian_entries(sys_, q, theta, x, T_EVAL, 0.3)
    H = np.zeros((BATCH, n, n))
    for r, c, v in zip(rows, cols, vals):
        v = np.broadcast_to(v, (BATCH, len(r)))
        for b in range(BATCH):
            np.add.at(H[b], (r, c), v[b])
    dq = np.random.default_rng(7).standard_normal((BATCH, n))
    want = glep.system.position_hessian_action(sys_, q, theta, x, T_EVAL, dq, 0.3)
    _close(np.einsum("bij,bj->bi", H, dq), want, "system Hessian entries")
    with_ufl = glep.LagrangianSystem(n, [glep.DiagonalMass(n, None), _ref("Harmonic")])
    assert with_ufl.is_separable  # a velocity-free UFLTerm is a potential
    assert glep.system.position_hessian_entries(with_ufl, q, theta, x, T_EVAL) is None


@pytest.mark.parametrize("name", list(CASES))
def test_theta_gradient_and_vjp(name):
    term, ref = CASES[name], _ref(name)
    q, v, theta, x = _point(term, 4)
    _close_dict(ref.theta_gradient(q, v, theta, x, T_EVAL), term.theta_gradient(q, v, theta, x, T_EVAL),
                term, "theta_gradient")
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((2, BATCH, term.n))
    for label, aa, bb in [("a,b", a, b), ("a", a, None), ("b", None, b)]:
        _close_dict(ref.theta_vjp(q, v, theta, x, T_EVAL, aa, bb),
                    term.theta_vjp(q, v, theta, x, T_EVAL, aa, bb), term, f"theta_vjp[{label}]")


@pytest.mark.parametrize("name", list(CASES))
def test_theta_jvp(name):
    term, ref = CASES[name], _ref(name)
    q, v, theta, x = _point(term, 6)
    rng = np.random.default_rng(8)
    full = {k: rng.standard_normal((K,) + tuple(s)) for k, s in term.parameters.items()}
    subsets = [full] + ([{k: full[k]} for k in full] if len(full) > 1 else [])
    for dtheta in subsets:
        got = ref.theta_jvp(q, v, theta, x, T_EVAL, dtheta)
        want = term.theta_jvp(q, v, theta, x, T_EVAL, dtheta)
        _close(got[0], want[0], f"theta_jvp{sorted(dtheta)} q-block")
        _close(got[1], want[1], f"theta_jvp{sorted(dtheta)} v-block")


@pytest.mark.parametrize("name", list(CASES))
def test_complex_arguments(name):
    """Complex-step evaluation: the holomorphic extension matches the NumPy paths."""
    term, ref = CASES[name], _ref(name)
    q, v, theta, x = _point(term, 9)
    rng = np.random.default_rng(10)
    qc = q + 1e-3j * rng.standard_normal(q.shape)
    vc = v + 1e-3j * rng.standard_normal(v.shape)
    got = ref.lagrangian(qc, vc, theta, x, T_EVAL)
    assert np.iscomplexobj(got)
    _close(got, term.lagrangian(qc, vc, theta, x, T_EVAL), "complex lagrangian")
    (gq, gv), (wq, wv) = ref.gradient(qc, vc, theta, x, T_EVAL), term.gradient(qc, vc, theta, x, T_EVAL)
    _close(gq, wq, "complex dL/dq")
    _close(gv, wv, "complex dL/dv")


def test_inputs_broadcast_and_lazy_dimensions():
    """Inputs with batch 1 broadcast; input dimensions may be learnt at the first call."""
    term = CASES["InputDrive"]
    lazy = UFLTerm(term.n, term.ufl_lagrangian, term.parameters, inputs=("u",))
    q, v, theta, x = _point(term, 11, input_batch=1)
    _close(lazy.gradient(q, v, theta, x, 0.0)[0], term.gradient(q, v, theta, x, 0.0)[0], "dL/dq (x batch 1)")
    assert lazy.input_dims == {"u": 2}
    _close_dict(lazy.theta_gradient(q, v, theta, x, 0.0), term.theta_gradient(q, v, theta, x, 0.0), term,
                "theta_gradient (x batch 1)")


# -- the tracking cost vs its UFL expression ------------------------------------
def test_tracking_cost_vs_ufl():
    n = N_DOF
    cost = glep.TrackingCost(n, [1, 3], "y")
    ref = ufl_reference(cost)
    rng = np.random.default_rng(12)
    q = rng.standard_normal((BATCH, n))
    for yb in (BATCH, 1):
        x = {"y": rng.standard_normal((yb, 2))}
        _close(ref.lagrangian(q, None, {}, x, T_EVAL), cost.cost(q, x, T_EVAL), "cost")
        gq, gv = ref.gradient(q, None, {}, x, T_EVAL)
        assert gv is None
        _close(gq, cost.gradient(q, x, T_EVAL), "cost gradient")
        for dq in (rng.standard_normal((BATCH, n)), rng.standard_normal((K, BATCH, n))):
            hq, hv = ref.hessian_action(q, None, {}, x, T_EVAL, dq, None)
            assert hv is None
            _close(hq, cost.hessian_action(q, x, T_EVAL, dq), "cost hessian_action")


# -- a user-defined term ----------------------------------------------------------
USER_N = 3
USER_PARAMS = {"m": (3,), "a": (), "k": (3,), "J": (2,), "b": (3,)}


def _user_lagrangian(q, v, th, x, t):
    """½ Σ m_i v_i² + ½ a q₀² v₀² − Σ k_i (1 − cos q_i) − ½ Σ J_e (q_e − q_{e+1})² + u(t) cos(t) b·q."""
    kinetic = 0.5 * ufl.dot(th["m"], ufl.elem_mult(v, v)) + 0.5 * th["a"] * q[0] ** 2 * v[0] ** 2
    gravity = sum(th["k"][i] * (1.0 - ufl.cos(q[i])) for i in range(USER_N))
    springs = 0.5 * sum(th["J"][e] * (q[e] - q[e + 1]) ** 2 for e in range(USER_N - 1))
    drive = x["u"][0] * ufl.cos(t) * ufl.dot(th["b"], q)
    return kinetic - gravity - springs + drive


def _user_theta():
    return {"m": np.array([1.0, 1.3, 0.8]), "a": np.array(0.6), "k": np.array([1.0, 0.7, 1.2]),
            "J": np.array([0.5, 0.4]), "b": np.array([0.8, -0.2, 0.1])}


@pytest.fixture(scope="module")
def user_term():
    return UFLTerm(USER_N, _user_lagrangian, USER_PARAMS, {"u": 1}, name="user")


def test_user_term_structure(user_term):
    assert user_term.depends_on_velocity
    assert user_term.inputs == ("u",)
    assert user_term.parameters["a"] == ()
    with pytest.raises(glep.InputError, match="depends_on_velocity=False"):
        UFLTerm(USER_N, _user_lagrangian, USER_PARAMS, {"u": 1}, depends_on_velocity=False)
    with pytest.raises(glep.InputError, match="reads parameter"):
        user_term.gradient(np.zeros((1, 3)), np.zeros((1, 3)), {"m": np.ones(3)}, {"u": np.zeros((1, 1))}, 0.0)


def test_user_term_against_finite_differences(user_term):
    """The UFL-derived derivatives of a user term agree with central differences of its own values."""
    rng = np.random.default_rng(13)
    term, th = user_term, _user_theta()
    q, v = rng.standard_normal((2, BATCH, USER_N))
    x = {"u": rng.standard_normal((BATCH, 1))}
    t, eps = 0.4, 1e-6
    dq, dv = rng.standard_normal((2, BATCH, USER_N))

    def L(qq, vv, tt=th):
        return term.lagrangian(qq, vv, tt, x, t)

    def G(qq, vv, tt=th):
        return term.gradient(qq, vv, tt, x, t)

    gq, gv = G(q, v)
    _close(np.sum(gq * dq + gv * dv, -1), (L(q + eps * dq, v + eps * dv) - L(q - eps * dq, v - eps * dv)) / (2 * eps),
           "directional gradient", rtol=1e-8)
    hq, hv = term.hessian_action(q, v, th, x, t, dq, dv)
    (pq, pv), (mq, mv) = G(q + eps * dq, v + eps * dv), G(q - eps * dq, v - eps * dv)
    _close(hq, (pq - mq) / (2 * eps), "hessian q-block", rtol=1e-8)
    _close(hv, (pv - mv) / (2 * eps), "hessian v-block", rtol=1e-8)

    dth = {k: rng.standard_normal(s) for k, s in USER_PARAMS.items()}
    plus = {k: th[k] + eps * dth[k] for k in th}
    minus = {k: th[k] - eps * dth[k] for k in th}
    tg = term.theta_gradient(q, v, th, x, t)
    _close(sum(np.sum(tg[k] * dth[k]) for k in th), np.sum(L(q, v, plus) - L(q, v, minus)) / (2 * eps),
           "theta_gradient", rtol=1e-8)
    a, b = rng.standard_normal((2, BATCH, USER_N))
    vjp = term.theta_vjp(q, v, th, x, t, a, b)
    (pq, pv), (mq, mv) = G(q, v, plus), G(q, v, minus)
    fd = np.sum((pq - mq) * a + (pv - mv) * b) / (2 * eps)
    _close(sum(np.sum(vjp[k] * dth[k]) for k in th), fd, "theta_vjp", rtol=1e-8)
    jq, jv = term.theta_jvp(q, v, th, x, t, {k: np.stack([dth[k], -dth[k]]) for k in th})
    _close(jq[0], (pq - mq) / (2 * eps), "theta_jvp q-block", rtol=1e-8)
    _close(jv[1], -(pv - mv) / (2 * eps), "theta_jvp v-block", rtol=1e-8)


def _user_problem(term, velocity: bool) -> Problem:
    B, T = 2, 2.0
    u = glep.Signal.from_function(lambda t: np.array([[np.sin(2.0 * t)], [np.cos(1.5 * t)]]), 1, batch=B)
    y = glep.Signal.from_function(lambda t: 0.4 * np.array([[np.sin(t)], [np.cos(t)]]), 1, batch=B)
    system = glep.LagrangianSystem(USER_N, [term], cost=glep.TrackingCost(USER_N, [2], "y"),
                                   signals={"u": u, "y": y}, name="user UFL system")
    rng = np.random.default_rng(14)
    q0 = 0.4 * rng.standard_normal((B, USER_N))
    w0 = 0.3 * rng.standard_normal((B, USER_N))
    boundary = glep.CIVP(q0, v0=w0) if velocity else glep.CIVP(q0, p0=w0)
    return Problem(system, _user_theta(), boundary, glep.TimeGrid(T, 40), integrator=ImplicitMidpoint())


@pytest.mark.parametrize("velocity", [False, True], ids=["p0", "v0"])
def test_user_term_adjoint_fd_and_pfvp(user_term, velocity):
    problem = _user_problem(user_term, velocity)
    shapes = problem.system.parameters
    g_adj = flatten(adjoint(problem).theta, shapes)
    D, fd = finite_differences(problem, directions=3, eps=1e-6, seed=15)
    scale = max(1e-3, float(np.max(np.abs(fd))))
    assert np.max(np.abs(D @ g_adj - fd)) <= 1e-6 * scale, (D @ g_adj, fd)
    g_pfvp = flatten(pfvp(problem, Centred(1e-4)).theta, shapes)
    gscale = float(np.max(np.abs(g_adj)))
    assert np.max(np.abs(g_pfvp - g_adj)) <= 1e-6 * gscale, np.max(np.abs(g_pfvp - g_adj)) / gscale


def test_user_term_complex_step_pfvp(user_term):
    """Complex-step nudging evaluates the holomorphic extension of the UFL expression."""
    problem = _user_problem(user_term, velocity=True)
    shapes = problem.system.parameters
    g_adj = flatten(adjoint(problem).theta, shapes)
    g_cs = flatten(pfvp(problem, ComplexStep(1e-6)).theta, shapes)
    assert np.max(np.abs(g_cs - g_adj)) <= 1e-7 * float(np.max(np.abs(g_adj)))


def test_non_holomorphic_term_rejects_complex():
    def lag(q, v, th, x, t):
        return 0.5 * ufl.dot(v, v) - th["k"] * abs(q[0])

    term = UFLTerm(2, lag, {"k": ()})
    q, v = np.array([[0.3, -0.2]]), np.array([[0.1, 0.4]])
    theta = {"k": np.array(2.0)}
    _close(term.gradient(q, v, theta, {}, 0.0)[0], np.array([[-2.0, 0.0]]), "dL/dq of -k|q0|")
    with pytest.raises(glep.InputError, match="complex-step is not supported by UFLTerm"):
        term.gradient(q + 1e-20j, v, theta, {}, 0.0)


def test_inner_is_extended_holomorphically():
    """``ufl.inner`` conjugates in complex mode; UFLTerm evaluates the holomorphic extension instead."""
    def lag(q, v, th, x, t):
        return 0.5 * ufl.inner(v, v) - 0.5 * th["k"] * ufl.inner(q, q)

    term = UFLTerm(2, lag, {"k": ()})
    rng = np.random.default_rng(16)
    q, v = rng.standard_normal((2, BATCH, 2)) + 1e-3j * rng.standard_normal((2, BATCH, 2))
    gq, gv = term.gradient(q, v, {"k": np.array(1.5)}, {}, 0.0)
    _close(gq, -1.5 * q, "dL/dq (complex)")
    _close(gv, v, "dL/dv (complex)")
    with pytest.raises(glep.InputError, match="t must be real"):
        term.gradient(q, v, {"k": np.array(1.5)}, {}, 1j)


def test_spring_coupling_sparse_path_equals_dense():
    """Large batches take the sparse incidence product: same values as the dense formula."""
    term = glep.SpringCoupling(5, [(0, 1), (1, 2), (3, 0), (4, 2)], "J")
    rng = np.random.default_rng(11)
    q, a = rng.standard_normal((2, 40_000, 5))  # 40 000 rows × |D| = 20: above the dense threshold
    theta = {"J": rng.standard_normal(4)}
    D, J = term.D, theta["J"]
    _close(term.potential_gradient(q, theta, {}, 0.0), (J * (q @ D.T)) @ D, "gradient")
    _close(term.potential_hessian_action(q, theta, {}, 0.0, a), (J * (a @ D.T)) @ D, "Hessian action")
    _close(term.potential_theta_vjp(q, theta, {}, 0.0, a)["J"], np.sum((q @ D.T) * (a @ D.T), axis=0), "θ-vjp",
           rtol=1e-10)
    dJ = rng.standard_normal((2, 4))
    _close(term.potential_theta_jvp(q, theta, {}, 0.0, {"J": dJ}), (dJ[:, None, :] * (q @ D.T)[None]) @ D, "θ-jvp")
