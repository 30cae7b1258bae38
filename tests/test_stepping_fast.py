"""The in-place Störmer–Verlet loop of :func:`glep.ivp.stepping.integrate` against the step by step
definition, for every built-in family, batched and unbatched.

With unit or diagonal masses and no callback, ``integrate`` runs the steps in place on preallocated
buffers (writing the recorded states into the trajectory arrays); it performs the operations of
:func:`glep.ivp.stepping.explicit_step` in the same order, so the trajectory must be the one of ``N``
calls of ``explicit_step`` *bit for bit* (final state, ``store="q"`` and ``store=True``), at two parameter
points, nudged or not, real and complex (a complex-step nudge).
"""

from __future__ import annotations

import numpy as np
import pytest

from glep.estimators.problem import Problem
from glep.ivp import integrate, stepping
from glep.ivp.stepping import _diagonal_mass, explicit_step
from glep.kinetic import DiagonalMass
from glep.models import FAMILIES

EPS = np.finfo(float).eps


def _by_explicit_steps(dl, q0, p0):
    """``(Q, P)``: ``N`` calls of ``explicit_step``, recorded."""
    dtype = np.result_type(q0, p0, dl.beta)
    q, p = np.array(q0, dtype), np.array(p0, dtype)
    F = dl.force(0, 0, q)
    Q, P = [q], [p]
    for k in range(dl.N):
        q, p, F = explicit_step(dl, k, q, p, F)
        Q.append(q), P.append(p)
    return np.stack(Q), np.stack(P)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("variant", [0, 1])
def test_in_place_loop_is_explicit_step_bit_for_bit(family, batch, variant, monkeypatch):
    used = []  # the masses the in-place loop ran with (it must run for every explicit family)
    loop = stepping._in_place_loop
    monkeypatch.setattr(stepping, "_in_place_loop", lambda *a: used.append(a[6]) or loop(*a))
    model = FAMILIES[family](batch=batch, seed=variant)
    rng = np.random.default_rng(variant)
    params = {k: v * (1.0 + 0.1 * variant * rng.uniform(-1, 1, np.shape(v))) for k, v in model.params.items()}
    base = Problem.from_model(model, steps=150)
    pr = Problem(model.system, params, model.boundary, base.grid, base.integrator)
    q0, p0, _ = pr.boundary.states(pr.system, pr.theta)
    for beta in (0.0, 0.05, 1e-20j):
        dl = pr.dl(beta)
        qN, pN = integrate(dl, q0, p0, store=False)
        Q, pq = integrate(dl, q0, p0, store="q")
        QQ, PP = integrate(dl, q0, p0, store=True)
        assert np.array_equal(qN, Q[-1]) and np.array_equal(pN, pq), (family, beta)
        assert np.array_equal(Q, QQ) and np.array_equal(pN, PP[-1]), (family, beta)
        if dl.explicit:
            Qe, Pe = _by_explicit_steps(dl, q0, p0)
            assert np.array_equal(QQ, Qe) and np.array_equal(PP, Pe), (family, beta)
    explicit = pr.dl(0.0).explicit
    assert len(used) == (9 if explicit else 0), (family, len(used))
    assert all((m is None) == ("m" not in pr.theta) for m in used), family


@pytest.mark.parametrize("family", ["coupled_oscillators", "pendulum_chain", "hru_logcosh"])
def test_diagonal_mass_detected(family):
    """The fast path sees the masses of every explicit built-in family (unit masses: the identity kernels)."""
    pr = Problem.from_model(FAMILIES[family](batch=2), steps=10)
    dl = pr.dl(0.0)
    solve, apply = dl.mass_kernels()
    q = np.zeros((2, pr.system.n))
    m = _diagonal_mass(pr.system.kinetic, solve, apply, q)
    assert isinstance(pr.system.kinetic, DiagonalMass)
    if solve is apply:
        assert m is None
    else:
        assert m is not None and np.array_equal(m, pr.theta.get("m", m)), (m, pr.theta.get("m"))
        assert _diagonal_mass(pr.system.kinetic, solve, apply, q.astype(np.float32)) is None  # would change the dtype


@pytest.mark.parametrize("edges", [[(i, i + 1) for i in range(6)], [(0, 1), (0, 2), (0, 3), (4, 0), (5, 6)],
                                   [(i, (i + 1) % 7) for i in range(7)] + [(2, 5), (5, 2), (6, 0)]])
@pytest.mark.parametrize("shape", [(7,), (3, 7), (300, 7)])
def test_spring_force_kernel(edges, shape):
    """``SpringCoupling.force_kernel`` (gather/scatter per group of edges) is ``−Dᵀ(J ∘ Dq)``: bit for bit on a
    chain (the same two numbers added per node), to round-off on any graph (stars, rings, repeated edges),
    real and complex, unbatched, batched and at the batch sizes where the product is sparse."""
    from glep.potentials import SpringCoupling

    rng = np.random.default_rng(len(edges) + len(shape))
    term = SpringCoupling(7, edges, "J")
    theta = {"J": 0.5 + rng.random(len(edges))}
    kernel = term.force_kernel(theta)
    chain = edges == [(i, i + 1) for i in range(6)]
    for q in (rng.standard_normal(shape), rng.standard_normal(shape) + 1e-20j * rng.standard_normal(shape)):
        want = -term.potential_gradient(q, theta, None, 0.0)
        got = kernel(q, None, 0.0)
        assert got.shape == want.shape and got.dtype == want.dtype
        if chain:
            assert np.array_equal(got, want)
        else:
            assert np.max(np.abs(got - want)) <= 8 * np.finfo(float).eps * np.max(np.abs(want))
        # the same force added into a running sum (force_add_kernel): that sum plus the force, to round-off
        base = rng.standard_normal(shape).astype(q.dtype)
        out = base.copy()
        term.force_add_kernel(theta)(q, None, 0.0, out)
        i, j = np.asarray(edges).T
        edge = np.abs(theta["J"] * (q[..., i] - q[..., j]))  # |f_e|: each edge's summand at both its ends
        scale = np.abs(base).astype(float)
        np.add.at(scale.reshape(-1, 7), (slice(None), i), edge.reshape(-1, len(edges)))
        np.add.at(scale.reshape(-1, 7), (slice(None), j), edge.reshape(-1, len(edges)))
        assert np.all(np.abs(out - (base + want)) <= 4 * np.finfo(float).eps * scale)
    assert term.force_add_kernel({"J": theta["J"] + 0j}) is None  # complex J: no add kernel (dtype of the sum)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the blow-up under test
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_non_finite_reported_with_its_step():
    """A step size far beyond stability: the in-place loop stops and the error names the first bad step."""
    from glep.errors import SolverError

    model = FAMILIES["coupled_oscillators"](n=4, anharmonic=5.0, T=400.0)
    pr = Problem.from_model(model, steps=100)
    q0, p0, _ = pr.boundary.states(pr.system, pr.theta)
    for store in (False, "q", True):
        with pytest.raises(SolverError, match="trajectory became non-finite" + ("" if store is False else
                                                                                 r" at step [1-9]\d*;")):
            integrate(pr.dl(0.0), 10 * q0 + 3.0, p0, store=store)


@pytest.mark.parametrize("family,kw", [("coupled_oscillators", {"batch": 3}), ("pendulum_chain", {}),
                                       ("gyroscopic", {"batch": 2}), ("hru_logcosh", {"batch": 2})])
def test_contrast_sum_kinetic_once(family, kw):
    """``theta_gradient_sum`` evaluates ``½vᵀM(θ)v``'s θ-derivative once per step (it reads ``v`` alone):
    the mass entry equals the two-node trapezoid sum ``h/2·g + h/2·g`` bit for bit, and every entry the
    step-by-step sum ``Σ_k ∂_θL_d(q_k, q_{k+1})`` to round-off."""
    pr = Problem.from_model(FAMILIES[family](**kw), steps=60)
    free = pr.free
    dl, Q = free.dl, free.Q
    got = dl.theta_gradient_sum(Q)
    want: dict = {}
    for k in range(dl.N):
        for key, g in dl.theta_gradient(k, Q[k], Q[k + 1]).items():
            want[key] = want.get(key, 0.0) + g
    assert set(got) == set(want)
    for key in want:
        scale = np.max(np.abs(want[key]))
        assert np.max(np.abs(got[key] - want[key])) <= 64 * dl.N * np.finfo(float).eps * scale, key
    if "m" in pr.theta:
        v = ((Q[1:] - Q[:-1]) / dl.h).reshape(-1, pr.system.n)
        g = pr.system.kinetic.theta_gradient(None, v, pr.theta, None, None)["m"]
        assert np.array_equal(got["m"], (0.0 + 0.5 * dl.h * g) + 0.5 * dl.h * g)


@pytest.mark.parametrize("family,kw", [("coupled_oscillators", {"batch": 3}), ("pendulum_chain", {}),
                                       ("hru_logcosh", {"batch": 2}), ("hru_linear", {})])
def test_leapfrog_in_place_bit_for_bit(family, kw):
    """RHEL's leapfrog runs in place (unit or diagonal masses): the same ``Q``, ``P`` as the kick–drift–kick
    written out, nudged (real and complex ε) or not."""
    from glep.ivp.hamiltonian import leapfrog
    from glep.system import position_force_kernel

    pr = Problem.from_model(FAMILIES[family](**kw), steps=80)
    sys_, th, grid = pr.system, pr.theta, pr.grid
    q0, p0, _ = pr.boundary.states(sys_, th)
    X = {k: s.sample(grid.times) for k, s in sys_.signals.items()}
    solve, _ = sys_.kinetic.mass_kernels(th)
    for eps in (0.0, 0.3, 1e-20j):
        Q, P, _ = leapfrog(sys_, th, grid, q0, p0, eps)
        kernel = position_force_kernel(sys_, th, eps)
        q, p = np.array(q0, np.result_type(q0, eps)), np.array(p0, np.result_type(p0, eps))
        F = kernel(q, {k: a[0] for k, a in X.items()}, 0.0)
        for k in range(grid.N):
            ph = p + 0.5 * grid.h * F
            q = q + grid.h * solve(ph)
            F = kernel(q, {name: a[k + 1] for name, a in X.items()}, grid.times[k + 1])
            p = ph + 0.5 * grid.h * F
            assert np.array_equal(Q[k + 1], q) and np.array_equal(P[k + 1], p), (family, eps, k)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("batch", [None, 3])
def test_fresh_force_kernels_return_new_arrays(family, batch):
    """A term declaring ``force_kernel_fresh`` returns at every call a new array that shares memory with
    nothing it was given nor with its previous result (the composed force adds the other terms into it).
    The composed kernel is :func:`glep.system.position_force` bit for bit when no term adds itself into the
    sum (``force_add_kernel``), else to the rounding of the sum (``4ε Σ_i |∂_q L_i|``), free and nudged,
    real and complex."""
    from glep.system import position_force, position_force_kernel

    pr = Problem.from_model(FAMILIES[family](batch=batch), steps=20)
    sys_, th = pr.system, pr.theta
    rng = np.random.default_rng(7)
    q0 = rng.standard_normal((batch or 1, sys_.n))
    x = {k: s.sample(np.array([0.3]))[0] for k, s in sys_.signals.items()}
    potentials = [t for t in sys_.terms if not t.depends_on_velocity]
    adds = any(t.force_add_kernel(th) is not None for t in potentials)
    for q in (q0, q0 + 1e-20j * rng.standard_normal(q0.shape)):
        for term in potentials:
            kernel = term.force_kernel(th)
            if kernel is None or not term.force_kernel_fresh:
                continue
            g1, g2 = kernel(q, x, 0.3), kernel(q, x, 0.3)
            assert np.array_equal(g1, g2) and not np.shares_memory(g1, g2), term.describe()
            assert not np.shares_memory(g1, q) and not any(np.shares_memory(g1, a) for a in x.values())
        parts = [t.gradient(q, None, th, x, 0.3)[0] for t in potentials]
        for beta in (0.0, 0.05):
            got = position_force_kernel(sys_, th, beta)(q, x, 0.3)
            want = position_force(sys_, q, th, x, 0.3, beta)
            if not adds:
                assert np.array_equal(got, want), (family, beta)
                continue
            summands = parts + [want - position_force(sys_, q, th, x, 0.3)]  # the nudge's own summand
            for part in (np.real, np.imag):  # each part to the rounding of its own sum
                bound = 4 * EPS * sum(np.abs(part(g)) for g in summands)
                assert np.all(np.abs(part(got) - part(want)) <= bound), (family, beta, part.__name__)
