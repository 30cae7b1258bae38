"""Boundary point terms on the NumPy assemblers: room at both ends whatever the coupling pattern.

A Robin end adds ``±K`` (and a terminal cost ``β ∂²c_T``) to the Jacobian at an
end node after the COO assembly, so the two end blocks must be preallocated as
full ``n × n`` blocks even when the interior pattern is tridiagonal: a chain of
``n = 40`` oscillators with a ``K`` coupling oscillators ``0`` and ``39`` must
give the FE assembler's solution (the same discrete equations, P1 + trapezoid)
to solver round-off.  The tests also pass under ``mpirun -n 2`` (distributed meshes).
"""

from __future__ import annotations

import glep  # noqa: F401  isort: skip

import numpy as np
import pytest
from mpi4py import MPI

from glep import Robin
from glep.bvp import make_discretisation, solve_bvp
from glep.grid import TimeGrid
from glep.ivp.discrete import TRAPEZOID, DiscreteLagrangian
from glep.ivp.stepping import integrate
from glep.models import coupled_oscillators, gyroscopic_oscillators
from glep.potentials import SpringCoupling

n, T, N, BETA = 40, 1.0, 40, 0.3
#: Newton stops at ``‖F‖ ≤ 1e-10 ‖F₀‖`` (SNES rtol) with ``‖F₀‖ = O(1)``; both assemblers solve the
#: same equations, so their solutions agree to that tolerance.
TOL = 1e-10


def _robin_K(seed: int) -> np.ndarray:
    """``2 I`` plus couplings outside the chain's tridiagonal pattern (``0 ↔ 39`` and one random pair)."""
    rng = np.random.default_rng(seed)
    K = 2.0 * np.eye(n)
    i, j = rng.choice(np.arange(2, n - 2), size=2, replace=False)
    for a, b, c in ((0, n - 1, 0.3), (i, j, 0.2 * rng.uniform(0.5, 1.0))):
        K[a, b] = K[b, a] = c
    return K


def _robin_holds(sol, K, b, end, terminal=None):
    """``p(0) = −K (q(0) − b)`` or ``p(T) = −K (q(T) − b) − β ∇c_T(q(T))`` (natural condition of the point terms)."""
    if end == "initial":
        np.testing.assert_allclose(sol.p0[0], -K @ (sol.q[0, 0] - b), atol=1e-9)
    else:
        tc = 0.0 if terminal is None else BETA * terminal.gradient(sol.q[-1])[0]
        np.testing.assert_allclose(sol.pT[0], -K @ (sol.q[-1, 0] - b) - tc, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("end", ["initial", "final"])
def test_robin_n40_off_pattern_vectorised_equals_fe(end, seed):
    m = coupled_oscillators(n, T=T, terminal=True)  # the final end also carries a terminal cost
    theta = m.system.check_params(m.params)
    q0 = m.boundary.states(m.system, theta)[0][0]
    K = _robin_K(seed)
    b = 0.1 * np.random.default_rng(seed).standard_normal(n)
    sols = {a: solve_bvp(m.system, m.params, (T, N), Robin(K, b, q0, end=end), beta=BETA, assembler=a)
            for a in ("fe", "vectorised")}
    for sol in sols.values():
        _robin_holds(sol, K, b, end, m.system.terminal_cost)
    assert np.max(np.abs(sols["fe"].q - sols["vectorised"].q)) <= TOL
    assert np.max(np.abs(sols["fe"].p0 - sols["vectorised"].p0)) <= TOL


@pytest.mark.parametrize("end", ["initial", "final"])
def test_robin_n40_off_pattern_galerkin_equals_fe(end):
    """The same for P2 + Gauss–Lobatto (:class:`~glep.bvp.galerkin.GalerkinAction` vs UFL)."""
    m = coupled_oscillators(n, T=T, terminal=True)
    theta = m.system.check_params(m.params)
    q0 = m.boundary.states(m.system, theta)[0][0]
    K, b = _robin_K(0), 0.1 * np.ones(n)
    sols = {a: solve_bvp(m.system, m.params, (T, N // 2), Robin(K, b, q0, end=end), beta=BETA, assembler=a,
                         degree=2) for a in ("fe", "vectorised")}
    for sol in sols.values():
        _robin_holds(sol, K, b, end, m.system.terminal_cost)
    assert np.max(np.abs(sols["fe"].q - sols["vectorised"].q)) <= TOL


@pytest.mark.parametrize("end", ["initial", "final"])
def test_robin_n40_off_pattern_non_separable(end):
    """Gyroscopic chain (element-block path of the vectorised assembler): a trapezoid trajectory
    that satisfies the Robin end (compared with the ivp backend, the same discrete equations)."""
    m = gyroscopic_oscillators(n, T=T)
    theta = m.system.check_params(m.params)
    q0 = m.boundary.states(m.system, theta)[0][0]
    K, b = _robin_K(0), 0.1 * np.ones(n)
    sol = solve_bvp(m.system, m.params, (T, N), Robin(K, b, q0, end=end), beta=BETA, assembler="vectorised")
    _robin_holds(sol, K, b, end)
    dl = DiscreteLagrangian(m.system, theta, TimeGrid(T, N), TRAPEZOID, beta=BETA)
    Q, P = integrate(dl, sol.q[0], sol.p0)
    assert np.max(np.abs(Q - sol.q)) < 1e-9
    np.testing.assert_allclose(P[-1], sol.pT, atol=1e-9)


@pytest.mark.parametrize("degree", [1, 2])
def test_coupling_zero_at_construction_keeps_its_place(degree):
    """An entry that vanishes at the construction θ (a spring ``J = 0`` between oscillators 0 and 39)
    is still in the pattern when ``set_params`` switches it on: the Jacobians agree with FE."""
    base = coupled_oscillators(n, T=T)
    extra = SpringCoupling(n, [(0, n - 1)], "J_far")
    system = glep.LagrangianSystem(n, base.system.terms + [extra], cost=base.system.cost,
                                   signals=base.system.signals, name="chain with a far spring")
    params = dict(base.params, J_far=np.zeros(1))
    fe = make_discretisation(system, params, (T, 8), beta=BETA, degree=degree, comm=MPI.COMM_SELF)
    discs = {"fe": fe, "vectorised": make_discretisation(system, params, fe.mesh, assembler="vectorised",
                                                         beta=BETA, degree=degree)}
    rng = np.random.default_rng(3)
    state = 0.2 * rng.standard_normal(discs["fe"].u.x.array.size)
    mats = {}
    for a, disc in discs.items():
        disc.set_params(dict(params, J_far=np.array([0.7])))
        disc.u.x.array[:] = state
        A = disc.create_jacobian()
        disc.jacobian(A)
        mats[a] = A.convert("dense").getDenseArray().copy()
        A.destroy()
    scale = np.max(np.abs(mats["fe"]))
    h = T / 8
    assert abs(mats["fe"][0, n - 1]) > 0.5 * 0.7 * h / 6  # the far spring is present: J times a GLL weight ≥ h/6
    assert np.max(np.abs(mats["fe"] - mats["vectorised"])) <= 1e-12 * scale
