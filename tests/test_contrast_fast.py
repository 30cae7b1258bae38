"""The contrast ``Σ_j w_j ∂_θL(q_j)`` from the node activations the stepping pass already computed.

A term whose force and ``∂_θL`` share a node activation (``tanh(Wq + b)`` of :class:`glep.LogCoshLayer`)
has it recorded by the explicit stepping loops (:func:`glep.ivp.stepping.integrate`,
:func:`glep.ivp.hamiltonian.leapfrog`, ``activations=``) and the contrasts of the nudged families take
``∂_θL`` from it instead of recomputing it.  Checked here:

* the recording force is the plain force bit for bit and leaves exactly ``tanh(Wq + b)`` (real and
  complex states, with or without a batch), so the trajectories do not change;
* the recorded activations are those of the trajectory, node by node, to round-off (BLAS may order a
  product of another shape differently: a few ulp of each entry);
* the contrasts from them equal the recomputed ones to the round-off of that difference (a bound formed
  from the absolute values of the summands, not a fixed number), for the trapezoid weights of every node;
* every estimator's nudged family (echo, PFVP, CIVP, RHEL; centred, one-sided and complex-step nudges)
  no longer evaluates the layer's ``∂_θV`` from the positions (``potential_theta_gradient`` is made to
  fail), and its ``I(β)`` equals the recomputed contrast along the same trajectory;
* bad requests are refused with the reason.
"""

from __future__ import annotations

import numpy as np
import pytest

from glep.errors import InputError
from glep.estimators import contrast
from glep.estimators.contrast import CIVPContrast, Echo, PFVPContrast, nudged_family
from glep.estimators.nudging import Centred, ComplexStep, OneSided
from glep.estimators.problem import Problem
from glep.estimators.rhel import RHEL
from glep.ivp import integrate
from glep.ivp.discrete import trapezoid_node_sum
from glep.ivp.hamiltonian import leapfrog, theta_dH_sum
from glep.models import FAMILIES
from glep.potentials import LogCoshLayer
from glep.system import position_force_kernel

EPS = np.finfo(float).eps


def _problem(batch, seed, steps=120, n=6, hidden=5) -> Problem:
    return Problem.from_model(FAMILIES["hru_logcosh"](n=n, hidden=hidden, batch=batch, seed=seed, T=steps * 0.01),
                              steps=steps)


def _layer(problem: Problem) -> tuple[int, LogCoshLayer]:
    (i, term), = [(i, t) for i, t in enumerate(problem.system.terms) if isinstance(t, LogCoshLayer)]
    return i, term


def _contrast_bound(problem: Problem, Q) -> dict[str, tuple[float, float]]:
    """``c·ε·Σ_j w_j Σ_b |summand|`` of the layer's ``∂_θV`` (real and imaginary parts): the round-off of its
    contrast when each activation entry moves by a few ulp (``c = 16``: the reordered sums and products of two
    evaluations).  The imaginary part (a complex-step nudge) has its own scale, ``β`` times smaller."""
    W, b = problem.theta["W"], problem.theta["b"]
    w = problem.dl(0.0).node_weights()[:, None, None]
    s = np.tanh(Q @ W.T + b)
    sr, si, qr, qi = np.abs(s.real), np.abs(s.imag), np.abs(Q.real), np.abs(Q.imag)
    re = np.einsum("jbh,jbn->hn", w * sr, qr) + np.einsum("jbh,jbn->hn", w * si, qi)
    im = np.einsum("jbh,jbn->hn", w * si, qr) + np.einsum("jbh,jbn->hn", w * sr, qi)
    c = 16 * EPS
    return {"W": (c * re.max(), c * im.max()), "b": (c * float(np.sum(w * sr)), c * float(np.sum(w * si)))}


def _assert_close(got: dict, want: dict, bound: dict, what) -> None:
    """The layer's entries within ``bound``; the other terms' (no activation: the same code) exactly equal."""
    assert got.keys() == want.keys(), what
    for key in want:
        d = np.asarray(got[key]) - np.asarray(want[key])
        re, im = bound.get(key, (0.0, 0.0))
        assert np.max(np.abs(d.real)) <= re and np.max(np.abs(np.imag(d))) <= im, (what, key, d)


def _fail(*args):
    raise AssertionError("tanh(Wq + b) recomputed for the contrast")


@pytest.mark.parametrize("shape", [(5, 7), (1, 7), (64, 7)])
@pytest.mark.parametrize("dtype", [float, complex])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recording_force_is_the_force_bit_for_bit(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    layer = LogCoshLayer(shape[-1], 4)
    theta = {"W": rng.standard_normal((4, shape[-1])), "b": rng.standard_normal(4)}
    q = rng.standard_normal(shape).astype(dtype)
    if dtype is complex:
        q = q + 1e-20j * rng.standard_normal(shape)
    A = np.full((3,) + shape[:-1] + (4,), np.nan, dtype)
    F = layer.activation_force_kernel(theta)(q, None, 0.0, A[1])
    assert np.array_equal(F, layer.force_kernel(theta)(q, None, 0.0))
    assert np.array_equal(A[1], np.tanh(q @ theta["W"].T + theta["b"]))
    assert np.isnan(A[[0, 2]]).all()  # only its own node written
    got = layer.theta_gradient_from_activation(A[1], q, theta, None, 0.0)
    want = layer.theta_gradient(q, None, theta, None, 0.0)
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
    # a buffer of another dtype (complex, for a real state): the plain kernel, its activation stored
    Ac = np.empty(shape[:-1] + (4,), complex)
    F2 = layer.activation_force_kernel(theta)(np.real(q), None, 0.0, Ac)
    assert np.array_equal(F2, layer.force_kernel(theta)(np.real(q), None, 0.0))
    assert np.array_equal(Ac, np.tanh(np.real(q) @ theta["W"].T + theta["b"]))


@pytest.mark.parametrize("batch", [None, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("beta", [0.0, 0.05, 1e-20j])
def test_integrate_records_the_activations_of_its_trajectory(batch, seed, beta):
    pr = _problem(batch, seed)
    q0, p0, _ = pr.boundary.states(pr.system, pr.theta)
    dl = pr.dl(beta)
    i, _ = _layer(pr)
    for store in (False, "q", True):
        acts: dict = {}
        got = integrate(dl, q0, p0, store=store, activations=acts)
        want = integrate(dl, q0, p0, store=store)
        assert all(np.array_equal(a, b) for a, b in zip(got, want)), store  # the trajectory is unchanged
        assert list(acts) == [i]
    Q, _ = integrate(dl, q0, p0, store="q")
    A = acts[i]
    assert A.shape == Q.shape[:-1] + (5,) and A.dtype == Q.dtype
    ref = np.tanh(Q @ pr.theta["W"].T + pr.theta["b"])
    assert np.max(np.abs(A - ref)) <= 8 * EPS * np.max(np.abs(ref))
    # the contrast from them, against the recomputed one
    _assert_close(dl.theta_gradient_sum(Q, acts), dl.theta_gradient_sum(Q), _contrast_bound(pr, Q), beta)


def test_nothing_recorded_without_an_activation_or_on_the_implicit_path():
    pr = Problem.from_model(FAMILIES["pendulum_chain"](batch=2), steps=20)
    q0, p0, _ = pr.boundary.states(pr.system, pr.theta)
    acts: dict = {}
    integrate(pr.dl(0.0), q0, p0, store="q", activations=acts)
    assert acts == {}
    pr = Problem.from_model(FAMILIES["hru_logcosh"](batch=2), steps=20, integrator="midpoint")
    q0, p0, _ = pr.boundary.states(pr.system, pr.theta)
    assert not pr.dl(0.0).explicit
    integrate(pr.dl(0.0), q0, p0, store="q", activations=acts)
    assert acts == {}


@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("nudge", [Centred(1e-3), OneSided(1e-3), ComplexStep(1e-20)], ids=lambda n: n.label)
@pytest.mark.parametrize("mode", ["echo", "pfvp", "civp"])
def test_nudged_family_contrast_from_the_recorded_activations(batch, seed, nudge, mode, monkeypatch):
    pr = _problem(batch, seed)
    free = pr.free
    runs = []  # the stacked pass: its arguments and trajectory

    def spy(*a, **kw):
        runs.append((kw, integrate(*a, **kw)))
        return runs[-1][1]

    monkeypatch.setattr(contrast, "integrate", spy)
    if mode == "civp":
        args, kw = (free.q0, lambda b: free.p0), {}
    else:
        args = (free.Q[-1], lambda b: -free.P[-1])
        kw = {"system": pr.system.time_reversed(pr.grid.T)} if mode == "echo" else {"mirrored": True}
    with monkeypatch.context() as m:
        m.setattr(LogCoshLayer, "potential_theta_gradient", _fail)
        family = nudged_family(pr, nudge, *args, **kw)
    (options, (Q, p_end)), = runs
    assert options["store"] == "q" and list(options["activations"]) == [_layer(pr)[0]]
    # I(β) against the contrast recomputed along the same (stacked) trajectory, block by block
    plain = pr.base_dl(0.0, system=kw.get("system", pr.system))
    plain = plain.mirrored() if kw.get("mirrored") else plain
    B = free.q0.shape[0]
    for c, (beta, (I, qN, pN)) in enumerate(family.items()):
        blk = slice(c * B, (c + 1) * B)
        assert np.array_equal(Q[-1, blk], qN) and np.array_equal(p_end[blk], pN)
        _assert_close(I, plain.theta_gradient_sum(Q[:, blk]), _contrast_bound(pr, Q[:, blk]), (mode, beta))


@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("nudge", [Centred(1e-3), OneSided(1e-3), ComplexStep(1e-20)], ids=lambda n: n.label)
def test_estimators_do_not_recompute_the_activations(batch, nudge, monkeypatch):
    """Echo, PFVP, CIVP and RHEL run without the layer's ``∂_θV`` from positions (for the one-sided nudge
    the free contrast ``I₀`` of echo, PFVP and CIVP is the problem's free pass's, recomputed: not checked)."""
    pr = _problem(batch, 0)
    pr.free  # noqa: B018 (the free pass, integrated before the layer's ∂_θV is made to fail)
    ests = (RHEL(),) if nudge.needs_free else (Echo(), PFVPContrast(), CIVPContrast(), RHEL())
    want = {type(e).__name__: e.estimate(pr.with_params(pr.params), nudge).theta for e in ests}
    monkeypatch.setattr(LogCoshLayer, "potential_theta_gradient", _fail)
    for est in ests:
        g = est.estimate(pr.with_params(pr.params), nudge).theta
        assert all(np.array_equal(g[k], want[type(est).__name__][k]) for k in g), est.label  # deterministic
        assert np.all(np.isfinite(g["W"])) and np.any(g["W"] != 0), est.label


@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_leapfrog_dH_from_the_recorded_activations(batch, seed):
    pr = _problem(batch, seed)
    q0, p0, _ = pr.boundary.states(pr.system, pr.theta)
    acts: dict = {}
    Q, pT, dH = leapfrog(pr.system, pr.theta, pr.grid, q0, p0, 0.02, theta_dH=True, activations=acts)
    Q2, pT2, _ = leapfrog(pr.system, pr.theta, pr.grid, q0, p0, 0.02)
    assert np.array_equal(Q, Q2) and np.array_equal(pT[-1], pT2[-1])
    assert list(acts) == [_layer(pr)[0]]
    _assert_close(dH, theta_dH_sum(pr.system, pr.theta, pr.grid, Q), _contrast_bound(pr, Q), seed)


def test_activation_requests_refused_with_the_reason():
    pr = _problem(2, 0, steps=10)
    Q, _ = integrate(pr.dl(0.0), *pr.boundary.states(pr.system, pr.theta)[:2], store="q")
    i, layer = _layer(pr)
    with pytest.raises(InputError, match=r"term 1 \(QuadraticForm\) has no activation_force_kernel"):
        position_force_kernel(pr.system, pr.theta, 0.0, {1: np.empty((11, 2, 6))})
    with pytest.raises(InputError, match=r"activations of LogCoshLayer must have shape \(11, 2, 5\)"):
        trapezoid_node_sum([layer], pr.theta, Q, 0.01, {}, pr.grid.times, [np.empty((10, 2, 5))])
    with pytest.raises(NotImplementedError, match="has no node activation"):
        pr.system.terms[1].theta_gradient_from_activation(np.empty((2, 1)), Q[0], pr.theta, {}, 0.0)
