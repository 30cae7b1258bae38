r"""One conformance test for every implementation of the discrete-Lagrangian protocol.

Every discretisation of the backends is :class:`~glep.ivp.discrete.DiscreteLagrangian`
on some steps: Störmer–Verlet (explicit trapezoid), the implicit trapezoid,
midpoint and Gauss2 rules, the mirrored (backward) form, a shooting segment, a
non-uniform mesh and the finite-element cell form.  Each is checked against the
protocol's mathematics (:class:`~glep.ivp.discrete.AbstractDiscreteLagrangian`):

* slot derivatives ``D₁L_d, D₂L_d`` and Hessian actions against the complex
  step (``Im f(x + iεd)/ε`` with ``ε = 10⁻²⁰``: exact to round-off, no
  cancellation, so the tolerance is a few hundred ulps of the values);
* ``∂_θL_d``, the θ-vjp and the θ-jvp against central differences in θ
  (``ε = 10⁻⁵``: truncation ``O(ε²) ≈ 10⁻¹⁰``, round-off ``O(u/ε) ≈ 10⁻¹¹``
  relative, so a tolerance ``10⁻⁷`` of the scale cannot be met by a wrong formula);
* the discrete Euler–Lagrange equations ``D₂L_d(q_{k−1}, q_k) + D₁L_d(q_k,
  q_{k+1}) = 0`` along an integrated trajectory (to the step solver's tolerance);
* the order of convergence of each integrator, fitted on a smooth input-free
  system and asserted within ±0.15.  Gauss2 here interpolates the position
  *linearly* over a step, and a Galerkin discrete Lagrangian with degree-``s``
  interpolation has order at most ``2s`` whatever the quadrature (Marsden &
  West 2001, §2.6; Hall & Leok 2015): its order is 2, as measured.
"""

from __future__ import annotations

import numpy as np
import pytest

from glep import DiagonalMass, Harmonic, LagrangianSystem, Quartic
from glep.grid import TimeGrid
from glep.ivp import AbstractDiscreteLagrangian, Mirrored, StepMesh
from glep.ivp.discrete import GAUSS2, MIDPOINT, TRAPEZOID, DiscreteLagrangian
from glep.ivp.stepping import integrate
from glep.models import coupled_oscillators, gyroscopic_oscillators

T, N, BETA = 2.0, 12, 0.3
_SEP = coupled_oscillators(3, T=T)  # separable: Störmer–Verlet
_GYRO = gyroscopic_oscillators(3, gamma=0.4, T=T)  # velocity-dependent (non-separable): implicit rules
_TIMES = T * np.linspace(0.0, 1.0, N + 1) ** 1.3  # a non-uniform mesh


def _theta(model):
    return model.system.check_params(model.params)


def _cells(system, theta):
    from glep.bvp.vectorised import cell_discrete_lagrangian

    return cell_discrete_lagrangian(system, theta, _TIMES[:-1], np.diff(_TIMES), BETA)


#: name -> (model, factory θ ↦ discrete Lagrangian, layout)
IMPLEMENTATIONS = {
    "stormer-verlet": (_SEP, lambda th: DiscreteLagrangian(_SEP.system, th, TimeGrid(T, N), TRAPEZOID, BETA), "chain"),
    "trapezoid": (_GYRO, lambda th: DiscreteLagrangian(_GYRO.system, th, TimeGrid(T, N), TRAPEZOID, BETA), "chain"),
    "midpoint": (_GYRO, lambda th: DiscreteLagrangian(_GYRO.system, th, TimeGrid(T, N), MIDPOINT, BETA), "chain"),
    "gauss2": (_GYRO, lambda th: DiscreteLagrangian(_GYRO.system, th, TimeGrid(T, N), GAUSS2, BETA), "chain"),
    "mirrored": (_GYRO, lambda th: Mirrored(DiscreteLagrangian(_GYRO.system, th, TimeGrid(T, N), GAUSS2, BETA)),
                 "chain"),
    "mirrored-sv": (_SEP, lambda th: Mirrored(DiscreteLagrangian(_SEP.system, th, TimeGrid(T, N), TRAPEZOID, BETA)),
                    "chain"),
    "segment": (_GYRO, lambda th: DiscreteLagrangian(_GYRO.system, th, TimeGrid(T, N), MIDPOINT, BETA).segment(3, 9),
                "chain"),
    "non-uniform": (_GYRO, lambda th: DiscreteLagrangian(_GYRO.system, th, StepMesh.from_times(_TIMES), MIDPOINT,
                                                         BETA), "chain"),
    "fe-cells": (_GYRO, lambda th: _cells(_GYRO.system, th), "cells"),
}
NAMES = list(IMPLEMENTATIONS)


def _setup(name, seed=0):
    """``(dl, k, q0, q1, directions)``: a step (or every cell) at random states."""
    model, make, layout = IMPLEMENTATIONS[name]
    dl = make(_theta(model))
    rng = np.random.default_rng(seed)
    n = model.system.n
    if layout == "cells":
        k, shape = np.arange(dl.N), (dl.N, n)
    else:
        k, shape = dl.N // 2, (2, n)
    q0, q1, d0, d1, a0, a1 = (0.3 * rng.standard_normal(shape) for _ in range(6))
    return model, make, dl, k, q0, q1, (d0, d1, a0, a1)


def _theta_direction(model, seed=1):
    rng = np.random.default_rng(seed)
    return {key: rng.standard_normal(np.shape(v)) for key, v in _theta(model).items()}


def _central(make, model, dtheta, f, eps=1e-5):
    """``(f(θ + εδθ) − f(θ − εδθ)) / 2ε`` with ``f`` a function of the discrete Lagrangian."""
    th = _theta(model)
    plus = make({key: v + eps * dtheta[key] for key, v in th.items()})
    minus = make({key: v - eps * dtheta[key] for key, v in th.items()})
    return (f(plus) - f(minus)) / (2 * eps)


def _close(got, want, rtol):
    got, want = np.asarray(got), np.asarray(want)
    scale = 1.0 + float(np.max(np.abs(want)))
    assert float(np.max(np.abs(got - want))) <= rtol * scale, (np.max(np.abs(got - want)), scale)


def _pair(grads: dict, dtheta: dict) -> float:
    return float(sum(np.sum(np.real(g) * dtheta[key]) for key, g in grads.items()))


@pytest.mark.parametrize("name", NAMES)
def test_one_class_implements_the_protocol(name):
    model, make, _ = IMPLEMENTATIONS[name]
    dl = make(_theta(model))
    assert isinstance(dl, AbstractDiscreteLagrangian) and type(dl) is DiscreteLagrangian


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", NAMES)
def test_slot_derivatives_and_hessian_actions_match_the_complex_step(name, seed):
    _, _, dl, k, q0, q1, (d0, d1, _, _) = _setup(name, seed)
    eps = 1e-20
    D1, D2 = dl.momenta(k, q0, q1)
    cs = np.imag(dl.value(k, q0 + 1j * eps * d0, q1 + 1j * eps * d1)) / eps
    _close(np.sum(D1 * d0 + D2 * d1, axis=-1), cs, 1e-12)
    H1, H2 = dl.hessian_action(k, q0, q1, d0, d1)
    C1, C2 = (np.imag(m) / eps for m in dl.momenta(k, q0 + 1j * eps * d0, q1 + 1j * eps * d1))
    _close(H1, C1, 1e-12)
    _close(H2, C2, 1e-12)
    # one direction absent (None) is the zero direction; a leading tangent axis is carried
    G1, G2 = dl.hessian_action(k, q0, q1, None, np.stack([d1, d0]))
    Z1, Z2 = dl.hessian_action(k, q0, q1, np.zeros_like(d1), d1)
    _close(G1[0], Z1, 1e-14)
    _close(G2[0], Z2, 1e-14)
    # D₁₂ as a matrix and its solves
    J = dl.d12_matrix(k, q0, q1)
    _close(np.einsum("bij,bj->bi", J, d1), dl.hessian_action(k, q0, q1, None, d1)[0], 1e-13)
    x = dl.solve_d12(k, q0, q1, d0)
    _close(np.einsum("bij,bj->bi", J, x), d0, 1e-11)
    xt = dl.solve_d12(k, q0, q1, d0, transpose=True)
    _close(np.einsum("bji,bj->bi", J, xt), d0, 1e-11)
    # one step's equations (what the implicit step iterates on): the slot derivatives and the solve
    momenta, solve = dl.step_equations(k, q0)
    for got, want in zip(momenta(q1), (D1, D2)):
        _close(got, want, 1e-15)
    _close(solve(q1, d0), x, 1e-15)


@pytest.mark.parametrize("name", NAMES)
def test_theta_derivatives_match_central_differences(name):
    model, make, dl, k, q0, q1, (d0, _, a0, a1) = _setup(name)
    dth = _theta_direction(model)
    # ∂_θ L_d · δθ
    want = _central(make, model, dth, lambda d: np.sum(d.value(k, q0, q1)))
    _close(_pair(dl.theta_gradient(k, q0, q1), dth), want, 1e-7)
    # θ-vjp: ∂_θ(D₁·a₀ + D₂·a₁) · δθ
    want = _central(make, model, dth, lambda d: sum(np.sum(D * a) for D, a in zip(d.momenta(k, q0, q1), (a0, a1))))
    _close(_pair(dl.theta_vjp(k, q0, q1, a0, a1), dth), want, 1e-7)
    # θ-jvp: (∂_θD₁ · δθ, ∂_θD₂ · δθ), with a leading tangent axis
    J1, J2 = dl.theta_jvp(k, q0, q1, {key: v[None] for key, v in dth.items()})
    W1 = _central(make, model, dth, lambda d: d.momenta(k, q0, q1)[0])
    W2 = _central(make, model, dth, lambda d: d.momenta(k, q0, q1)[1])
    _close(J1[0], W1, 1e-7)
    _close(J2[0], W2, 1e-7)


def _trajectory(name):
    model, make, _ = IMPLEMENTATIONS[name]
    dl = make(_theta(model))
    rng = np.random.default_rng(3)
    n = model.system.n
    q0, p0 = 0.2 * rng.standard_normal((2, n)), 0.2 * rng.standard_normal((2, n))
    Q, P = integrate(dl, q0, p0)
    return dl, Q, P


CHAINS = [name for name in NAMES if IMPLEMENTATIONS[name][2] == "chain"]


@pytest.mark.parametrize("name", CHAINS)
def test_discrete_euler_lagrange_equations_hold_along_an_integrated_trajectory(name):
    dl, Q, P = _trajectory(name)
    D1, D2 = zip(*(dl.momenta(k, Q[k], Q[k + 1]) for k in range(dl.N)))
    D1, D2 = np.array(D1), np.array(D2)
    scale = 1.0 + float(np.max(np.abs(P)))
    tol = 10 * 1e-13 * scale  # each step is solved to 1e-13 (1 + |p|) (or exactly: Störmer–Verlet)
    assert np.max(np.abs(D2[:-1] + D1[1:])) <= tol
    assert np.max(np.abs(P[:-1] + D1)) <= tol and np.max(np.abs(P[1:] - D2)) <= tol


@pytest.mark.parametrize("name", CHAINS)
def test_sums_along_a_chain_are_the_sums_of_the_steps(name):
    dl, Q, _ = _trajectory(name)
    rng = np.random.default_rng(4)
    Lam = rng.standard_normal(Q.shape)
    for got, parts in ((dl.theta_gradient_sum(Q), [dl.theta_gradient(k, Q[k], Q[k + 1]) for k in range(dl.N)]),
                       (dl.theta_vjp_sum(Q, Lam),
                        [dl.theta_vjp(k, Q[k], Q[k + 1], Lam[k], Lam[k + 1]) for k in range(dl.N)])):
        for key in got:
            _close(got[key], sum(p[key] for p in parts if key in p), 1e-12)


def test_the_fe_cell_form_is_the_trapezoid_chain_on_the_same_mesh():
    """The cells of a P1 time mesh, evaluated all at once, give the trapezoid chain's values, and the
    trapezoid trajectory on that mesh solves the cell form's Euler–Lagrange equations."""
    th = _theta(_GYRO)
    cells = _cells(_GYRO.system, th)
    chain = DiscreteLagrangian(_GYRO.system, th, StepMesh.from_times(_TIMES), TRAPEZOID, BETA)
    rng = np.random.default_rng(5)
    Q, P = integrate(chain, 0.2 * rng.standard_normal((1, 3)), 0.2 * rng.standard_normal((1, 3)))
    k = np.arange(cells.N)
    _close(cells.value(k, Q[:-1, 0], Q[1:, 0]), [chain.value(j, Q[j], Q[j + 1])[0] for j in k], 1e-14)
    D1, D2 = cells.momenta(k, Q[:-1, 0], Q[1:, 0])
    assert np.max(np.abs(D2[:-1] + D1[1:])) <= 1e-12 * (1.0 + np.max(np.abs(P)))
    # the cell form's batch sums over cells of different sizes
    dth = _theta_direction(_GYRO)
    want = sum(_pair(chain.theta_gradient(j, Q[j], Q[j + 1]), dth) for j in k)
    _close(_pair(cells.theta_gradient(k, Q[:-1, 0], Q[1:, 0]), dth), want, 1e-12)


def test_a_segment_is_the_same_discrete_lagrangian_on_a_sub_range():
    th = _theta(_GYRO)
    dl = DiscreteLagrangian(_GYRO.system, th, TimeGrid(T, N), MIDPOINT, BETA)
    rng = np.random.default_rng(6)
    Q, P = integrate(dl, 0.2 * rng.standard_normal((2, 3)), 0.2 * rng.standard_normal((2, 3)))
    Qs, Ps = integrate(dl.segment(3, 9), Q[3], P[3])
    _close(Qs, Q[3:10], 1e-13)
    _close(Ps, P[3:10], 1e-13)


@pytest.mark.parametrize("rule", [TRAPEZOID, MIDPOINT, GAUSS2])
def test_mirrored_integration_retraces_the_forward_trajectory(rule):
    th = _theta(_GYRO)
    dl = DiscreteLagrangian(_GYRO.system, th, TimeGrid(T, N), rule)
    rng = np.random.default_rng(7)
    Q, P = integrate(dl, 0.2 * rng.standard_normal((2, 3)), 0.2 * rng.standard_normal((2, 3)))
    Qb, Pb = integrate(dl.mirrored(), Q[-1], -P[-1])
    _close(Qb[::-1], Q, 1e-12)
    _close(-Pb[::-1], P, 1e-12)


# -- order of convergence --------------------------------------------------------------
_SMOOTH = LagrangianSystem(2, [DiagonalMass(2, "m"), Harmonic(2, "k"), Quartic(2, 0.5)])
_SMOOTH_THETA = _SMOOTH.check_params({"k": np.array([1.0, 2.0]), "m": np.array([1.0, 1.3])})


@pytest.mark.parametrize("rule,fast,order", [(TRAPEZOID, True, 2.0), (TRAPEZOID, False, 2.0),
                                             (MIDPOINT, False, 2.0), (GAUSS2, False, 2.0)],
                         ids=["stormer-verlet", "trapezoid", "midpoint", "gauss2"])
def test_order_of_convergence(rule, fast, order):
    q0, p0 = np.array([[1.0, 0.5]]), np.array([[0.0, 0.3]])

    def final(steps):
        dl = DiscreteLagrangian(_SMOOTH, _SMOOTH_THETA, TimeGrid(T, steps), rule, fast=fast)
        assert dl.explicit == fast
        return integrate(dl, q0, p0, store=False)[0]

    ref = final(1280)  # its error is (1280/80)² = 256 times below the finest error fitted
    steps = np.array([20, 40, 80])
    errs = np.array([np.max(np.abs(final(s) - ref)) for s in steps])
    slope = -np.polyfit(np.log(steps), np.log(errs), 1)[0]
    assert abs(slope - order) <= 0.15, (slope, errs)


def test_bad_meshes_are_refused_with_the_reason():
    from glep.errors import InputError

    with pytest.raises(InputError, match="times must be a strictly monotone finite 1-D array"):
        StepMesh.from_times([0.0, 1.0, 0.5])
    with pytest.raises(InputError, match="cells need 1-D t0 and h > 0"):
        StepMesh.cells([0.0, 1.0], [0.5, -0.5])
    with pytest.raises(InputError, match="grid must be a TimeGrid or a StepMesh, got list"):
        DiscreteLagrangian(_GYRO.system, _theta(_GYRO), [0.0, 1.0])
    cells = _cells(_GYRO.system, _theta(_GYRO))
    with pytest.raises(InputError, match="only a chain of steps"):
        cells.mirrored()
    with pytest.raises(InputError, match="node data need a chain of steps"):
        cells.node_time(0)


def test_a_failed_implicit_step_names_the_step_and_keeps_the_history():
    from glep.errors import SolverError

    dl = DiscreteLagrangian(_GYRO.system, _theta(_GYRO), TimeGrid(T, N), MIDPOINT)
    q0 = np.zeros((1, 3))
    with pytest.raises(SolverError, match=r"implicit variational step 0 did not converge in 1 Newton iterations"):
        from glep.ivp.stepping import implicit_step

        implicit_step(dl, 0, q0, np.ones((1, 3)), q0, maxiter=1)
