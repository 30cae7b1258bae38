"""Node-wise DG0 parameter fields (through the vertex-rule matrix B) on 2 ranks = 1 rank (≤ 1e-10).

Run with ``mpirun -n 2``: the leapfrog trajectory, the discrete adjoint and the echo of a 2-D
sine-Gordon field with a DG0 coupling κ (its force and θ-derivatives are node-wise, mapped by B),
computed distributed and on ``COMM_SELF``, compared after ordering by dof coordinates; and every
node-wise kernel equals the assembled UFL form on the distributed mesh (tests/test_field_kernels.py).
"""

from __future__ import annotations

import glep  # noqa: F401  isort: skip

import numpy as np
import pytest
import ufl
from dolfinx import mesh as dmesh
from mpi4py import MPI

from glep import field_models as fm
from glep.estimators.field_estimators import field_echo
from glep.estimators.nudging import Centred
from glep.field_system import FieldCost, FieldSystem
from glep.ivp import field_stepping as fs
from glep.ivp.field_adjoint import field_adjoint

pytestmark = pytest.mark.mpi

COMM = MPI.COMM_WORLD
T, N = 0.3, 12


def build(comm):
    msh = dmesh.create_rectangle(comm, [[0, 0], [1.0, 0.8]], [9, 7])
    return FieldSystem(fm.sine_gordon(kappa=lambda x: 1.0 + x[0] * x[1], element=("DG", 0)), msh,
                       cost=FieldCost(target=lambda x, t: 0.3 * ufl.sin(x[0] + t)), terminal_cost=FieldCost(0.2),
                       initial=(lambda x: 2.0 * np.sin(np.pi * x[0]) * np.sin(np.pi * x[1] / 0.8), 0.0))


def rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def test_dg0_trajectory_adjoint_and_echo_distributed_equal_one_rank():
    out = []
    for comm in (COMM, MPI.COMM_SELF):
        sys = build(comm)
        assert "kappa" in sys._lumped
        fw = fs.forward(sys, T, N)
        adj = field_adjoint(sys, T, N)
        # β = 1e-3: the centred difference amplifies the round-off of the summation order (which differs
        # between partitions) by 1/2β; at β = 1e-4 the echo's q0 differed by 1.1e-10 between 1 and 2 ranks
        est = field_echo(sys, T, N, Centred(1e-3))
        out.append({"q": sys.gather(fw.q), "adj": sys.gather(adj.theta["kappa"].dual, "kappa"),
                    "echo": sys.gather(est.theta["kappa"].dual, "kappa"), "q0": sys.gather(est.q0)})
    for key in out[0]:
        assert rel(out[0][key], out[1][key]) <= 1e-10, key
    sys = build(COMM)
    est, adj = field_echo(sys, T, N, Centred(1e-4)), field_adjoint(sys, T, N)
    assert rel(sys.gather(est.theta["kappa"].dual, "kappa"), sys.gather(adj.theta["kappa"].dual, "kappa")) <= 1e-6


def test_kernels_equal_assembled_forms_distributed():
    from tests.test_field_kernels import test_lumped_parameter_kernels_equal_the_assembled_forms as check

    check(0)
