"""The vectorised Galerkin assembler (P3 + Gauss) on a distributed time mesh equals one rank.

Run with ``.venv/bin/mpirun -n 2 .venv/bin/python -m pytest tests/mpi -q``.
"""

from __future__ import annotations

import glep  # noqa: F401  isort: skip

import numpy as np
import pytest
from mpi4py import MPI

from glep import CBVP, Periodic, Robin
from glep.bvp import GalerkinAction, make_discretisation, solve_bvp
from glep.estimators.cbvp import cbvp_gradient, fe_adjoint_gradient
from glep.meshes import uniform_time_mesh
from glep.models import coupled_oscillators

pytestmark = pytest.mark.mpi

WORLD, SELF = MPI.COMM_WORLD, MPI.COMM_SELF
T, N = 2.0, 16
P3 = {"degree": 3, "quadrature": "gauss", "assembler": "vectorised"}


@pytest.fixture(scope="module")
def model():
    m = coupled_oscillators(3, T=T)
    theta = m.system.check_params(m.params)
    q0, p0, v0 = m.boundary.states(m.system, theta)
    return m, q0[0]


@pytest.mark.parametrize("bcname", ["CBVP", "Periodic", "Robin"])
def test_distributed_galerkin_trajectory_equals_serial(model, bcname):
    m, q0 = model
    bc = {"CBVP": CBVP(q0, np.zeros(3)), "Periodic": Periodic(),
          "Robin": Robin(np.diag([2.0, 1.0, 1.5]), np.full(3, 0.1), q0)}[bcname]
    dist, ser = (solve_bvp(m.system, m.params, uniform_time_mesh(c, T, N), bc, beta=0.3, rtol=1e-13, atol=1e-13,
                           **P3) for c in (WORLD, SELF))
    assert np.max(np.abs(dist.times - ser.times)) < 1e-14
    assert np.max(np.abs(dist.q - ser.q)) < 1e-10
    assert np.max(np.abs(dist.p0 - ser.p0)) < 1e-10
    assert np.max(np.abs(dist.pT - ser.pT)) < 1e-10


def test_distributed_galerkin_gradients_equal_serial(model):
    m, q0 = model
    bc = CBVP(q0, np.zeros(3))
    out = []
    for comm in (WORLD, SELF):
        mesh = uniform_time_mesh(comm, T, N)
        assert isinstance(make_discretisation(m.system, m.params, mesh, **P3), GalerkinAction)
        g, _ = fe_adjoint_gradient(m.system, m.params, mesh, bc, rtol=1e-12, atol=1e-13, **P3)
        e = cbvp_gradient(m.system, m.params, mesh, bc, 1e-4, rtol=1e-12, atol=1e-13, **P3)
        out.append((g, e))
    (g1, e1), (g2, e2) = out
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(e1[k], e2[k], rtol=1e-7, atol=1e-10)
