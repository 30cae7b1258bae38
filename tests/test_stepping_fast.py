"""The in-place Störmer–Verlet loop of :func:`glep.ivp.stepping.integrate` (``store=False``) against the step
by step definition, for every built-in family, batched and unbatched.

With unit or diagonal masses and nothing to record, ``integrate`` runs the steps in place on preallocated
buffers; it performs the operations of :func:`glep.ivp.stepping.explicit_step` in the same order, so the
final state must be the one of ``N`` calls of ``explicit_step`` *bit for bit* (and the one of the recording
loop, ``store="q"``), at two parameter points, nudged or not, real and complex (a complex-step nudge).
"""

from __future__ import annotations

import numpy as np
import pytest

from glep.estimators.problem import Problem
from glep.ivp import integrate, stepping
from glep.ivp.stepping import _diagonal_mass, explicit_step
from glep.kinetic import DiagonalMass
from glep.models import FAMILIES


def _by_explicit_steps(dl, q0, p0):
    dtype = np.result_type(q0, p0, dl.beta)
    q, p = np.array(q0, dtype), np.array(p0, dtype)
    F = dl.force(0, 0, q)
    for k in range(dl.N):
        q, p, F = explicit_step(dl, k, q, p, F)
    return q, p


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("variant", [0, 1])
def test_in_place_loop_is_explicit_step_bit_for_bit(family, batch, variant, monkeypatch):
    used = []  # the masses the in-place loop ran with (it must run for every explicit family)
    loop = stepping._in_place_loop
    monkeypatch.setattr(stepping, "_in_place_loop", lambda *a: used.append(a[-1]) or loop(*a))
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
        assert np.array_equal(qN, Q[-1]) and np.array_equal(pN, pq), (family, beta)
        if dl.explicit:
            qe, pe = _by_explicit_steps(dl, q0, p0)
            assert np.array_equal(qN, qe) and np.array_equal(pN, pe), (family, beta)
    explicit = pr.dl(0.0).explicit
    assert len(used) == (3 if explicit else 0), (family, len(used))
    assert all((m is None) == ("m" not in pr.theta) for m in used), family


@pytest.mark.parametrize("family", ["coupled_oscillators", "pendulum_chain", "hru_logcosh"])
def test_diagonal_mass_detected(family):
    """The fast path sees the masses of every explicit built-in family (unit masses: the identity kernels)."""
    pr = Problem.from_model(FAMILIES[family](batch=2), steps=10)
    dl = pr.dl(0.0)
    solve, apply = dl.mass_kernels()
    q = np.zeros((2, pr.system.n))
    m = _diagonal_mass(dl, solve, apply, q)
    assert isinstance(pr.system.kinetic, DiagonalMass)
    if solve is apply:
        assert m is None
    else:
        assert m is not None and np.array_equal(m, pr.theta.get("m", m)), (m, pr.theta.get("m"))
        assert _diagonal_mass(dl, solve, apply, q.astype(np.float32)) is None  # would change the dtype
