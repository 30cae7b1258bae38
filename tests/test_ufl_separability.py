"""A :class:`glep.UFLTerm` is classified by what its expression reads, and evaluated on many nodes at once.

* A UFLTerm whose ``∂_v L`` vanishes symbolically is a potential ``L = −V(q, θ, x, t)``: with one
  kinetic term the system is separable, Störmer–Verlet is the default integrator and RHEL runs.  Its
  gradients (discrete adjoint, RHEL, echo, PFVP) equal those of the same system written with built-in
  terms (:class:`glep.Pendulum` + :class:`glep.InputDrive` reading the drive as a signal) to round-off,
  which also checks that the echo replays the term's own ``t`` backwards (``t → T − t``).
* A UFLTerm reading ``v`` makes the system non-separable, and every refusal names it.
* ``t`` is a per-point field of the batch mesh: a batch of time nodes in one call equals the node-by-node
  evaluation to round-off (values, Hessian actions, θ-derivatives), and so do the trajectory sums of
  ``∂_θ L_d`` and ``∂_θ H`` against their node-by-node fallback.
"""

from __future__ import annotations

import numpy as np
import pytest
import ufl

import glep
from glep.estimators.contrast import echo, pfvp
from glep.estimators.ground_truth import adjoint
from glep.estimators.nudging import Centred, ComplexStep
from glep.estimators.problem import Problem
from glep.estimators.rhel import rhel
from glep.ivp.discrete import MIDPOINT, TRAPEZOID, DiscreteLagrangian
from glep.ivp.hamiltonian import leapfrog, theta_dH_sum
from glep.ivp.integrators import integrator_for
from glep.ivp.sensitivity import flatten
from glep.ivp.stepping import integrate

N_DOF = 2
AMP, OMEGA = 0.3, 1.7
PARAMS = {"m": np.array([1.0, 1.3]), "w": np.array([1.0, 0.7]), "B": np.array([[1.0], [0.5]])}
#: Same arithmetic up to the order of a few additions and libm's cos: round-off, amplified by 1/β = 1e4
#: in the nudged estimators.
GRAD_RTOL = 1e-10
#: One batch of nodes against one node at a time: the same kernel on the same numbers.
EVAL_RTOL = 1e-13
STEPS = 200
BETA = 1e-4
#: A real centred nudge divides round-off (≲ one ulp per step along the trajectory) by β.
REAL_NUDGE_RTOL = STEPS * np.finfo(float).eps / BETA


def _driven_potential(q, v, th, x, t):
    """``L = −Σ w_i (1 − cos q_i) + A cos(ω t) Σ B_i q_i``: velocity-free, reads ``t`` itself."""
    w, B = th["w"], th["B"]
    gravity = sum(w[i] * (1.0 - ufl.cos(q[i])) for i in range(N_DOF))
    return -gravity + AMP * ufl.cos(OMEGA * t) * sum(B[i, 0] * q[i] for i in range(N_DOF))


def _position_mass(q, v, th, x, t):
    """``L = ½ (1 + a q₀²) v·v − ½ k q·q``: reads ``v`` with a position-dependent mass (even in ``v``)."""
    return 0.5 * (1.0 + th["a"] * q[0] ** 2) * ufl.dot(v, v) - 0.5 * th["k"] * ufl.dot(q, q)


def _target() -> dict[str, glep.Signal]:
    return {"y": glep.Signal.from_function(lambda t: np.array([0.2 * np.sin(t)]), 1)}


def _systems() -> dict[str, glep.LagrangianSystem]:
    cost = glep.TrackingCost(N_DOF, [0], "y")
    drive = glep.Signal.from_function(lambda t: np.array([AMP * np.cos(OMEGA * t)]), 1)
    builtin = glep.LagrangianSystem(
        N_DOF, [glep.DiagonalMass(N_DOF, "m"), glep.Pendulum(N_DOF, "w"), glep.InputDrive(N_DOF, 1, "u", "B")],
        cost=cost, signals={"u": drive, **_target()}, name="built-in")
    term = glep.UFLTerm(N_DOF, _driven_potential, {"w": (N_DOF,), "B": (N_DOF, 1)}, name="driven")
    ufl_sys = glep.LagrangianSystem(N_DOF, [glep.DiagonalMass(N_DOF, "m"), term], cost=cost, signals=_target(),
                                    name="UFL")
    return {"built-in": builtin, "UFL": ufl_sys}


SYSTEMS = _systems()


def _problem(name: str, seed: int, steps: int = STEPS) -> Problem:
    rng = np.random.default_rng(seed)
    q0 = 0.4 * rng.standard_normal((2, N_DOF))
    v0 = 0.3 * rng.standard_normal((2, N_DOF))
    return Problem(SYSTEMS[name], PARAMS, glep.CIVP(q0, v0=v0), glep.TimeGrid(2.0, steps))


def _rel(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got - want))) / max(float(np.max(np.abs(want))), 1e-300)


# -- classification ------------------------------------------------------------
def test_velocity_free_ufl_term_is_a_separable_potential():
    sys_ = SYSTEMS["UFL"]
    term = sys_.terms[1]
    assert not term.depends_on_velocity and term.reads_time
    assert sys_.is_separable and sys_.non_separable_reason is None and sys_.velocity_terms == []
    assert integrator_for(sys_).name == "stormer-verlet"
    assert integrator_for(sys_, "stormer-verlet").name == "stormer-verlet"
    pr = _problem("UFL", 0, steps=20)
    assert pr.integrator.name == "stormer-verlet" and pr.dl(0.0).explicit


def test_input_dimensions_are_learnt_from_the_signals():
    """A UFLTerm given input names only is classified at system construction (dims from the signals)."""
    def lag(q, v, th, x, t):
        return ufl.dot(q, th["B"] * x["u"])

    term = glep.UFLTerm(N_DOF, lag, {"B": (N_DOF, 3)}, inputs=("u",), name="lazy drive")
    with pytest.raises(glep.InputError, match=r"give the input dimensions .* \['u'\]"):
        _ = term.depends_on_velocity
    u = glep.Signal.constant(np.ones(3))
    sys_ = glep.LagrangianSystem(N_DOF, [glep.DiagonalMass(N_DOF, None), term], signals={"u": u})
    assert term.input_dims == {"u": 3} and sys_.is_separable
    with pytest.raises(glep.InputError, match=r"UFLTerm 'bad shapes': expr\(q, v, theta, x, t\) failed for q, v of "
                                              r"shape \(2,\), parameters \{'B': \(2, 3\)\}, inputs \{'u': \(2,\)\}"):
        glep.UFLTerm(N_DOF, lag, {"B": (N_DOF, 3)}, inputs={"u": 2}, name="bad shapes")
    wrong = glep.UFLTerm(N_DOF, lambda q, v, th, x, t: x["u"][0] * q[0], inputs={"u": 2}, name="declared 2")
    with pytest.raises(glep.InputError, match="'declared 2' reads input 'u' of dimension 2, but the signal 'u' has "
                                              "dimension 3"):
        glep.LagrangianSystem(N_DOF, [glep.DiagonalMass(N_DOF, None), wrong], signals={"u": u})


def test_velocity_dependent_ufl_term_is_named_by_every_refusal():
    term = glep.UFLTerm(N_DOF, _position_mass, {"a": (), "k": ()}, name="position mass")
    sys_ = glep.LagrangianSystem(N_DOF, [term], cost=glep.TrackingCost(N_DOF, [0], "y"), signals=_target(),
                                 name="pm")
    assert term.depends_on_velocity and not term.reads_time
    assert not sys_.is_separable and sys_.velocity_terms == [term]
    reason = sys_.non_separable_reason
    assert "UFLTerm(position mass) depends on the velocity v" in reason and "no KineticTerm" in reason
    assert integrator_for(sys_).name == "midpoint"
    with pytest.raises(glep.InputError, match=r"'stormer-verlet' needs a separable .* UFLTerm\(position mass\) "
                                              r"depends on the velocity v.*Use 'midpoint'"):
        integrator_for(sys_, "stormer-verlet")
    params = {"a": np.array(0.5), "k": np.array(1.2)}
    pr = Problem(sys_, params, glep.CIVP(np.array([[0.3, -0.1]]), p0=np.array([[0.2, 0.1]])),
                 glep.TimeGrid(1.0, 20))
    assert pr.reversibility_defect <= 1e-12  # so that the refusal is about separability, not reversibility
    with pytest.raises(glep.InputError, match=r"rhel uses the leapfrog .* pm is not separable: UFLTerm\(position "
                                              r"mass\) depends on the velocity v.*Use pfvp \(or echo\) with the "
                                              r"'midpoint' integrator"):
        rhel(pr, Centred(1e-4))
    with pytest.raises(glep.InputError, match=r"RHEL's leapfrog .* UFLTerm\(position mass\) depends on the velocity"):
        leapfrog(sys_, params, pr.grid, np.zeros((1, N_DOF)), np.zeros((1, N_DOF)))
    # the suggested alternative works and agrees with the adjoint
    g_pfvp = flatten(pfvp(pr, Centred(1e-4)).theta, sys_.parameters)
    g_adj = flatten(adjoint(pr).theta, sys_.parameters)
    assert _rel(g_pfvp, g_adj) <= 1e-6


def test_velocity_terms_beside_a_kinetic_term_and_two_kinetic_terms():
    gyro = glep.Gyroscopic(N_DOF, 0.5, np.array([[0.0, 1.0], [-1.0, 0.0]]))
    sys_ = glep.LagrangianSystem(N_DOF, [glep.DiagonalMass(N_DOF, None), gyro])
    assert sys_.non_separable_reason == f"{gyro.describe()} depends on the velocity v"
    two = glep.LagrangianSystem(N_DOF, [glep.DiagonalMass(N_DOF, None), glep.DiagonalMass(N_DOF, "m")])
    assert "it has 2 KineticTerms (DiagonalMass, DiagonalMass); merge them into one" == two.non_separable_reason
    none = glep.LagrangianSystem(N_DOF, [glep.Harmonic(N_DOF, "k")])
    assert none.non_separable_reason == ("it has no KineticTerm (½vᵀM(θ)v with a position-independent mass, "
                                         "e.g. glep.DiagonalMass)")


def test_rhel_on_stormer_verlet_only():
    pr = Problem(SYSTEMS["UFL"], PARAMS, glep.CIVP(np.zeros((1, N_DOF)), p0=np.ones((1, N_DOF))),
                 glep.TimeGrid(1.0, 10), integrator="midpoint")
    with pytest.raises(glep.InputError, match="rhel differentiates the Störmer–Verlet C_h, but this problem uses the "
                                              "integrator 'midpoint'"):
        rhel(pr, Centred(1e-4))


# -- same gradients as the built-in terms --------------------------------------------
ESTIMATORS = {
    "adjoint": adjoint,
    # complex-step nudging has no cancellation: exact to round-off, so GRAD_RTOL applies
    "rhel": lambda pr: rhel(pr, ComplexStep(1e-20)),
    "echo": lambda pr: echo(pr, ComplexStep(1e-20)),
    "pfvp": lambda pr: pfvp(pr, ComplexStep(1e-20)),
    "rhel (real β)": lambda pr: rhel(pr, Centred(BETA)),
    "echo (real β)": lambda pr: echo(pr, Centred(BETA)),
}


@pytest.fixture(scope="module", params=[0, 1], ids=["seed0", "seed1"])
def problems(request):
    return {name: _problem(name, request.param) for name in SYSTEMS}


def test_same_free_trajectory(problems):
    a, b = problems["built-in"].free, problems["UFL"].free
    assert _rel(b.Q, a.Q) <= EVAL_RTOL * 10 and _rel(b.P, a.P) <= EVAL_RTOL * 10
    assert abs(b.loss - a.loss) <= 1e-12 * abs(a.loss)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_gradients_equal_the_builtin_system(problems, name):
    """Adjoint, RHEL, echo and PFVP of the UFL system equal those of the built-in one; the nudged
    estimators also equal the adjoint (complex step: to round-off; real β: to its O(β²) bias)."""
    real = "real" in name
    want = ESTIMATORS[name](problems["built-in"])
    got = ESTIMATORS[name](problems["UFL"])
    for key in PARAMS:
        rtol = REAL_NUDGE_RTOL if real else GRAD_RTOL
        assert _rel(got.theta[key], want.theta[key]) <= rtol, (key, got.theta[key], want.theta[key])
    if name != "adjoint":
        truth = adjoint(problems["UFL"])
        assert _rel(flatten(got.theta, PARAMS), flatten(truth.theta, PARAMS)) <= (1e-6 if real else GRAD_RTOL)
        assert _rel(got.q0, truth.q0) <= (1e-6 if real else GRAD_RTOL)


def test_time_reversed_term_reads_T_minus_t():
    term = SYSTEMS["UFL"].terms[1]
    T = 2.0
    rev = term.time_reversed(T)
    assert rev is not term and rev.reads_time and term.time_reversed(T) is rev  # cached
    rng = np.random.default_rng(3)
    q = rng.standard_normal((4, N_DOF))
    t = np.array([0.0, 0.3, 1.1, 2.0])
    np.testing.assert_allclose(rev.lagrangian(q, None, PARAMS, {}, t), term.lagrangian(q, None, PARAMS, {}, T - t),
                               rtol=EVAL_RTOL, atol=EVAL_RTOL)
    still = glep.UFLTerm(N_DOF, lambda q, v, th, x, t: -ufl.dot(q, q), name="static")
    assert not still.reads_time and still.time_reversed(T) is still


class _ScalarClock(glep.FixedPotentialTerm):
    """``V = t q₀``, written for a scalar ``t`` only."""

    explicit_time = True

    def potential(self, q, theta, x, t):
        return float(t) * q[..., 0]

    def potential_gradient(self, q, theta, x, t):
        return np.zeros_like(q)

    def potential_hessian_action(self, q, theta, x, t, dq):
        return np.zeros_like(dq)

    def ufl_potential(self, q, theta, x, t):
        return t * q[0]


def test_a_scalar_time_term_cannot_be_replayed_backwards():
    sys_ = glep.LagrangianSystem(1, [glep.DiagonalMass(1, None), _ScalarClock(1)])
    assert sys_.is_separable
    with pytest.raises(glep.InputError, match=r"_ScalarClock reads t itself and has no time_reversed\(T\)"):
        sys_.time_reversed(1.0)


# -- one kernel call for many time nodes ------------------------------------------------
def _time_dependent_with_velocity(q, v, th, x, t):
    """Reads every argument: ``½ m v·v (1 + ¼ sin t) − k (1 − cos q₀) + x_u · q cos(2t) + c t² q₁ v₀``."""
    kin = 0.5 * ufl.dot(th["m"], ufl.elem_mult(v, v)) * (1.0 + 0.25 * ufl.sin(t))
    drive = ufl.cos(2.0 * t) * ufl.dot(x["u"], q)
    return kin - th["k"] * (1.0 - ufl.cos(q[0])) + drive + th["c"] * t ** 2 * q[1] * v[0]


VECTORISED_TERMS = {
    "potential": lambda: glep.UFLTerm(N_DOF, _driven_potential, {"w": (N_DOF,), "B": (N_DOF, 1)}, name="p"),
    "with velocity": lambda: glep.UFLTerm(N_DOF, _time_dependent_with_velocity,
                                          {"m": (N_DOF,), "k": (), "c": ()}, {"u": N_DOF}, name="v"),
}


@pytest.mark.parametrize("kind", list(VECTORISED_TERMS))
def test_batch_of_time_nodes_equals_node_by_node(kind):
    term = VECTORISED_TERMS[kind]()
    rng = np.random.default_rng(21)
    M, K = 6, 2
    times = np.sort(rng.uniform(0.0, 3.0, M))
    q, v, dq, dv, a, b = rng.standard_normal((6, M, N_DOF))
    x = {k: rng.standard_normal((M, N_DOF)) for k in term.inputs}
    theta = {k: rng.standard_normal(s) for k, s in term.parameters.items()}
    vv = v if term.depends_on_velocity else None
    dQ = rng.standard_normal((K, M, N_DOF))
    dtheta = {k: rng.standard_normal((K,) + s) for k, s in term.parameters.items()}

    def node(j):
        return q[j:j + 1], None if vv is None else vv[j:j + 1], theta, {k: x[k][j:j + 1] for k in x}, times[j]

    def close(got, want, what):
        assert got is not None and want is not None, what
        scale = max(1.0, float(np.max(np.abs(want))))
        assert float(np.max(np.abs(np.asarray(got) - want))) <= EVAL_RTOL * scale, what

    batch = (q, vv, theta, x, times)
    close(term.lagrangian(*batch), np.concatenate([term.lagrangian(*node(j)) for j in range(M)]), "lagrangian")
    gq, gv = term.gradient(*batch)
    per = [term.gradient(*node(j)) for j in range(M)]
    close(gq, np.concatenate([p[0] for p in per]), "dL/dq")
    if gv is not None:
        close(gv, np.concatenate([p[1] for p in per]), "dL/dv")
    hq, hv = term.hessian_action(*batch, dQ, None if vv is None else dv)
    per = [term.hessian_action(*node(j), dQ[:, j:j + 1], None if vv is None else dv[j:j + 1]) for j in range(M)]
    close(hq, np.concatenate([p[0] for p in per], axis=1), "Hessian action q-block")
    if hv is not None:
        close(hv, np.concatenate([p[1] for p in per], axis=1), "Hessian action v-block")
    tg = term.theta_gradient(*batch)
    tv = term.theta_vjp(*batch, a, None if vv is None else b)
    for key in term.parameters:
        close(tg[key], sum(term.theta_gradient(*node(j))[key] for j in range(M)), f"theta_gradient[{key}]")
        close(tv[key], sum(term.theta_vjp(*node(j), a[j:j + 1], None if vv is None else b[j:j + 1])[key]
                           for j in range(M)), f"theta_vjp[{key}]")
    jq, jv = term.theta_jvp(*batch, dtheta)
    per = [term.theta_jvp(*node(j), dtheta) for j in range(M)]
    close(jq, np.concatenate([p[0] for p in per], axis=1), "theta_jvp q-block")
    if jv is not None:
        close(jv, np.concatenate([p[1] for p in per], axis=1), "theta_jvp v-block")
    # a scalar time broadcasts over the batch; a missing or mis-shaped one is refused
    close(term.lagrangian(q, vv, theta, x, 0.7), term.lagrangian(q, vv, theta, x, np.full(M, 0.7)), "scalar t")
    with pytest.raises(glep.InputError, match=r"UFLTerm '[pv]' reads t: give the time"):
        term.lagrangian(q, vv, theta, x, None)
    with pytest.raises(glep.InputError, match="batch shapes do not broadcast"):
        term.lagrangian(q, vv, theta, x, times[:3])


class _NodeByNode(glep.UFLTerm):
    """The same term, declared to need a scalar ``t``: the callers' node-by-node fallback."""

    explicit_time = True


def _node_by_node_system(system: glep.LagrangianSystem) -> glep.LagrangianSystem:
    terms = [_NodeByNode(t.n, t.ufl_lagrangian, t.parameters, dict(t.input_dims), name=t.label)
             if isinstance(t, glep.UFLTerm) else t for t in system.terms]
    return glep.LagrangianSystem(system.n, terms, cost=system.cost, signals=system.signals, name="node by node")


@pytest.mark.parametrize("rule", [TRAPEZOID, MIDPOINT], ids=["trapezoid", "midpoint"])
@pytest.mark.parametrize("kind", list(VECTORISED_TERMS))
def test_trajectory_sums_equal_the_node_by_node_fallback(rule, kind):
    term = VECTORISED_TERMS[kind]()
    u = glep.Signal.from_function(lambda t: np.array([np.sin(t), np.cos(3 * t)]), N_DOF)
    terms = [term] if term.depends_on_velocity else [glep.DiagonalMass(N_DOF, "mass"), term]
    fast = glep.LagrangianSystem(N_DOF, terms, signals={"u": u})
    slow = _node_by_node_system(fast)
    rng = np.random.default_rng(22)
    theta = {k: 0.5 + rng.random(s) for k, s in fast.parameters.items()}
    grid = glep.TimeGrid(1.5, 30)
    Q = 0.5 * rng.standard_normal((grid.N + 1, 2, N_DOF))
    got = DiscreteLagrangian(fast, theta, grid, rule).theta_gradient_sum(Q)
    want = DiscreteLagrangian(slow, theta, grid, rule).theta_gradient_sum(Q)
    assert set(got) == set(want) == set(theta)
    for key in theta:
        assert _rel(got[key], want[key]) <= EVAL_RTOL, key
    if fast.is_separable:
        got, want = theta_dH_sum(fast, theta, grid, Q), theta_dH_sum(slow, theta, grid, Q)
        for key in theta:
            assert _rel(got[key], want[key]) <= EVAL_RTOL, key


def test_forward_integration_vectorised_problem_matches_builtin():
    """Störmer–Verlet with the UFL potential: the same trajectory as the built-in terms, step for step."""
    grid = glep.TimeGrid(2.0, 50)
    th = SYSTEMS["built-in"].check_params(PARAMS)
    q0, p0 = np.array([[0.2, -0.4]]), np.array([[0.1, 0.3]])
    Qa, _ = integrate(DiscreteLagrangian(SYSTEMS["built-in"], th, grid), q0, p0)
    Qb, _ = integrate(DiscreteLagrangian(SYSTEMS["UFL"], th, grid), q0, p0)
    assert _rel(Qb, Qa) <= 10 * EVAL_RTOL


@pytest.mark.parametrize("kind", list(VECTORISED_TERMS))
def test_direct_kernel_packing_equals_expression_eval(kind):
    """Kernels are fed by packing the NumPy inputs directly; the packing reproduces ``Expression.eval``
    (checked when each kernel is built: no fallback), here again with broadcast batch axes."""
    term = VECTORISED_TERMS[kind]()
    rng = np.random.default_rng(23)
    M, K = 3, 2
    q, v = rng.standard_normal((2, M, N_DOF))
    x = {k: rng.standard_normal((1, N_DOF)) for k in term.inputs}  # one input row for the whole batch
    theta = {k: rng.standard_normal(s) for k, s in term.parameters.items()}
    vv = v if term.depends_on_velocity else None
    times = rng.uniform(0.0, 2.0, M)
    dtheta = {k: rng.standard_normal((K,) + s) for k, s in term.parameters.items()}
    for shift in (0.0, 1e-3j):  # real and complex (complex-step) kernels
        qc = q + shift
        term.hessian_action(qc, vv, theta, x, times, rng.standard_normal((K, M, N_DOF)), None if vv is None else v)
        term.theta_vjp(qc, vv, theta, x, times, q, None if vv is None else v)
        term.theta_jvp(qc, vv, theta, x, times, dtheta)
        term.gradient(qc, vv, theta, x, times)
    assert term.stats["eval_fallbacks"] == 0 and term.stats["compiles"] >= 6
    lead = (K, M)
    fields = {"q": q, "v": v, "t": times, "dq": rng.standard_normal(lead + (N_DOF,)), "dv": v, "a": q, "b": v}
    fields.update({"x:" + k: a for k, a in x.items()})
    fields.update({"dth:" + k: d.reshape((K, 1) + d.shape[1:]) for k, d in dtheta.items()})
    checked = 0
    for ctx in term._contexts.values():
        for group, kernel in ctx.kernels.items():
            if kernel is None or ctx.capacity < K * M:
                continue
            f = fields if ctx.dtype == np.float64 else {k: a + 0.1j for k, a in fields.items()}
            direct = kernel.run(ctx, lead, K * M, f, theta)
            via_eval = kernel.run_eval(ctx, lead, K * M, f, theta)
            np.testing.assert_allclose(direct, via_eval, rtol=EVAL_RTOL, atol=0, err_msg=group)
            checked += 1
    assert checked >= 6  # grad, hess, theta, jvp in real and complex (a velocity-free term: some vanish)


def test_bvp_vectorised_assembler_reads_the_node_times():
    """The NumPy (vectorised) finite-element assembler passes arrays of node times: with the UFL potential
    it assembles the same residual, Jacobian and action as the UFL forms."""
    from glep.bvp.solve import make_discretisation

    sys_, th = SYSTEMS["UFL"], PARAMS
    kept, out = [], []
    for kind in ("fe", "vectorised"):
        d = make_discretisation(sys_, th, (2.0, 20), assembler=kind)
        kept.append(d)
        d.u.x.array[:] = 0.3 * np.random.default_rng(25).standard_normal(d.u.x.array.shape)
        b = d.u.x.petsc_vec.duplicate()
        d.residual(b)
        A = d.create_jacobian()
        d.jacobian(A)
        out.append((b.array.copy(), A.convert("dense").getDenseArray().copy(), d.action()))
        b.destroy()
        A.destroy()
    (r1, J1, a1), (r2, J2, a2) = out
    assert np.linalg.norm(r2 - r1) <= 1e-12 * np.linalg.norm(r1)
    assert np.linalg.norm(J2 - J1) <= 1e-12 * np.linalg.norm(J1)
    assert abs(a2 - a1) <= 1e-12 * abs(a1)


@pytest.mark.slow
def test_benchmark_script_runs(capsys):
    """``benchmarks/bench_ufl_term.py`` (short grid): both systems separable, same trajectories and gradients."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_ufl_term.py"
    spec = importlib.util.spec_from_file_location("bench_ufl_term", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--steps", "100", "--repeats", "1"])
    text = capsys.readouterr().out
    assert "RHEL refused" not in text
    assert text.count("stormer-verlet") == 2
    assert "UFL θ-sum (one call for all nodes)" in text and "UFL θ-sum (node by node)" in text
    assert "max |q_UFL − q_built-in| = " in text and "rel. diff of RHEL gradients (w) = " in text
    for line in text.splitlines():
        if line.startswith(("max |q_UFL", "rel. diff of RHEL")):
            assert all(float(v.split(";")[0]) <= 1e-10 for v in line.split("= ")[1:]), line


@pytest.mark.parametrize("boundary", ["CIVP", "CFVP"])
def test_explicit_adjoint_sums_all_nodes_in_one_call(boundary):
    """The Störmer–Verlet adjoint's ``∂_θ`` of the potentials: one call for all nodes equals node by node
    (forward and mirrored, i.e. final-value, trajectories)."""
    rng = np.random.default_rng(26)
    q, v = 0.4 * rng.standard_normal((2, 2, N_DOF))
    bc = glep.CIVP(q, v0=v) if boundary == "CIVP" else glep.CFVP(q, vT=v)
    grid = glep.TimeGrid(2.0, 60)
    fast = Problem(SYSTEMS["UFL"], PARAMS, bc, grid)
    slow = Problem(_node_by_node_system(SYSTEMS["UFL"]), PARAMS, bc, grid)
    assert fast.integrator.name == slow.integrator.name == "stormer-verlet"
    got, want = adjoint(fast), adjoint(slow)
    for key in PARAMS:
        assert _rel(got.theta[key], want.theta[key]) <= EVAL_RTOL * 10, key


@pytest.mark.parametrize("boundary", ["CIVP", "CFVP"])
@pytest.mark.parametrize("integrator", ["midpoint", "gauss2"])
def test_generic_adjoint_sums_all_steps_in_one_call(boundary, integrator):
    """The generic adjoint's ``Σ_k ∂_θ(D₁L_d·λ_k + D₂L_d·λ_{k+1})``: one call per quadrature node for all
    steps equals step by step, for a velocity- and time-dependent UFLTerm (forward and mirrored)."""
    term = VECTORISED_TERMS["with velocity"]()
    u = glep.Signal.from_function(lambda t: np.array([np.sin(t), np.cos(3 * t)]), N_DOF)
    fast_sys = glep.LagrangianSystem(N_DOF, [term], cost=glep.TrackingCost(N_DOF, [1], "y"),
                                     signals={"u": u, **_target()})
    slow_sys = _node_by_node_system(fast_sys)
    theta = {"m": np.array([1.0, 1.4]), "k": np.array(0.8), "c": np.array(0.3)}
    rng = np.random.default_rng(27)
    q, v = 0.3 * rng.standard_normal((2, 2, N_DOF))
    bc = glep.CIVP(q, v0=v) if boundary == "CIVP" else glep.CFVP(q, vT=v)
    grid = glep.TimeGrid(1.5, 40)
    got = adjoint(Problem(fast_sys, theta, bc, grid, integrator=integrator))
    want = adjoint(Problem(slow_sys, theta, bc, grid, integrator=integrator))
    for key in theta:
        assert _rel(got.theta[key], want.theta[key]) <= EVAL_RTOL * 10, key
