"""The bvp backend on a distributed time mesh.

Run with ``.venv/bin/mpirun -n 2 .venv/bin/python -m pytest tests/mpi -q``.  Each
test solves the same problem on ``COMM_WORLD`` (distributed) and on
``COMM_SELF`` (every rank alone) and compares; on one rank the tests still pass.
"""

from __future__ import annotations

import glep  # noqa: F401  isort: skip

import numpy as np
import pytest
from mpi4py import MPI

from glep import CBVP, CIVP, PFVP, Periodic, Robin
from glep.bvp import solve_bvp
from glep.errors import GlepError
from glep.estimators.cbvp import cbvp_gradient, fe_adjoint_gradient
from glep.meshes import uniform_time_mesh
from glep.models import coupled_oscillators
from glep.reference import bratu_system
from glep.signals import Signal

pytestmark = pytest.mark.mpi

WORLD, SELF = MPI.COMM_WORLD, MPI.COMM_SELF
T, N = 2.0, 40


@pytest.fixture(scope="module")
def model():
    m = coupled_oscillators(3, T=T)
    theta = m.system.check_params(m.params)
    q0, p0, v0 = m.boundary.states(m.system, theta)
    return m, q0[0], v0[0]


def _mesh_on(comm):
    return uniform_time_mesh(comm, T, N)


@pytest.mark.parametrize("bcname", ["CBVP", "CIVP", "PFVP", "Periodic", "Robin"])
@pytest.mark.parametrize("assembler", ["fe", "vectorised"])
def test_distributed_trajectory_equals_serial(model, bcname, assembler):
    m, q0, v0 = model
    K = np.diag([2.0, 1.0, 1.5])
    bc = {"CBVP": CBVP(q0, np.zeros(3)), "CIVP": CIVP(q0, v0=v0), "PFVP": PFVP(q0, v0=v0),
          "Periodic": Periodic(), "Robin": Robin(K, np.full(3, 0.1), q0)}[bcname]
    sols = [solve_bvp(m.system, m.params, _mesh_on(c), bc, beta=0.3, assembler=assembler, rtol=1e-13,
                      atol=1e-13) for c in (WORLD, SELF)]
    dist, ser = sols
    assert np.max(np.abs(dist.times - ser.times)) < 1e-14
    assert np.max(np.abs(dist.q - ser.q)) < 1e-10
    assert np.max(np.abs(dist.p0 - ser.p0)) < 1e-10
    assert np.max(np.abs(dist.pT - ser.pT)) < 1e-10
    # every rank holds the same gathered result
    assert np.max(np.abs(WORLD.bcast(dist.q, root=0) - dist.q)) == 0.0


def test_distributed_gradients_equal_serial(model):
    m, q0, v0 = model
    bc = CBVP(np.array([0.1, 0.0, -0.1]), np.array([0.2, 0.1, 0.0]))
    out = []
    for comm in (WORLD, SELF):
        g, loss = fe_adjoint_gradient(m.system, m.params, _mesh_on(comm), bc, rtol=1e-12, atol=1e-13)
        e = cbvp_gradient(m.system, m.params, _mesh_on(comm), bc, 1e-4, rtol=1e-12, atol=1e-13)
        out.append((g, loss, e))
    (g1, l1, e1), (g2, l2, e2) = out
    assert l1 == pytest.approx(l2, rel=1e-12)
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(e1[k], e2[k], rtol=1e-7, atol=1e-10)


def test_morse_index_in_parallel():
    sys_, par = bratu_system(2.0)
    for amp, index in ((0.33, 0), (2.9, 1)):
        sol = solve_bvp(sys_, par, uniform_time_mesh(WORLD, 1.0, 32), CBVP([0.0], [0.0]), morse=True,
                        guess=lambda t, a=amp: a * np.sin(np.pi * t)[None])
        assert sol.morse_index == index


def test_error_on_one_rank_stops_all_ranks(model):
    """A signal that fails only for late times (owned by the last rank) raises on every rank."""
    m, q0, v0 = model

    def bad(t):
        if t > 0.75 * T:
            raise ValueError("input signal undefined after 1.5 s")
        return np.array([np.sin(t)])

    system = m.system.with_signals(u=Signal.from_function(bad, 1))
    with pytest.raises(GlepError, match="undefined after 1.5 s"):
        solve_bvp(system, m.params, _mesh_on(WORLD), CBVP(q0, np.zeros(3)))
    # a divergence is detected collectively and reported on every rank
    sys_, par = bratu_system(5.0)
    with pytest.raises(glep.SolverError) as info:
        solve_bvp(sys_, par, uniform_time_mesh(WORLD, 1.0, 16), CBVP([0.0], [0.0]))
    reasons = WORLD.allgather(info.value.reason)
    assert len(set(reasons)) == 1
