"""NLS on 2 ranks = 1 rank (≤ 1e-10): the midpoint trajectory, the discrete adjoint and the conjugation echo.

Run with ``mpirun -n 2``: each quantity is computed on the distributed mesh and on a copy of the mesh on
every rank alone (``COMM_SELF``), gathered by dof coordinates (the numbering differs) and compared.
"""

import numpy as np
import pytest
import ufl
from dolfinx import mesh as dmesh
from mpi4py import MPI

from glep import field_models as fm
from glep.errors import GlepError
from glep.estimators.field_nls import nls_echo
from glep.field_midpoint import MidpointFieldSystem
from glep.field_system import FieldCost
from glep.ivp import field_stepping as fs
from glep.ivp.field_midpoint_adjoint import midpoint_adjoint

COMM = MPI.COMM_WORLD
T, N = 0.3, 6


def build(comm, dim):
    if dim == 1:
        def initial(x):
            u = fm.nls_soliton(x[0], 0.0, eta=1.0, xi=0.5)
            return np.vstack([u.real, u.imag])

        msh = dmesh.create_interval(comm, 40, [-8.0, 8.0])
        lag = fm.nls(g=2.0, potential=lambda x: 0.1 * np.cos(x[0]))
    else:
        def initial(x):
            env = np.exp(-8 * ((x[0] - 0.5) ** 2 + (x[1] - 0.5) ** 2))
            return np.vstack([2 * env * np.cos(3 * x[0]), 2 * env * np.sin(3 * x[0])])

        msh = dmesh.create_unit_square(comm, 6, 6)
        lag = fm.nls(g=1.5, potential=lambda x: 1.0 + x[1], element=("DG", 0))
    target = lambda x, t: ufl.as_vector([0.3 * ufl.exp(-x[0] ** 2) * ufl.cos(t), 0.1])  # noqa: E731
    return MidpointFieldSystem(lag, msh, initial=(initial, 0.0), cost=FieldCost(target=target),
                               terminal_cost=FieldCost(target=target, weight=2.0))


def rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


@pytest.mark.parametrize("dim", [1, 2])
def test_nls_trajectory_adjoint_and_echo_distributed_equal_one_rank(dim):
    out = []
    for comm in (COMM, MPI.COMM_SELF):
        sys = build(comm, dim)
        fw = fs.midpoint_forward(sys, T, N)
        adj = midpoint_adjoint(sys, T, N, checkpoints=2)
        est = nls_echo(sys, T, N)
        out.append({"q": sys.gather(fw.q), "loss": fw.loss, "V": sys.gather(adj.theta["V"].dual, "V"),
                    "Vr": sys.gather(adj.theta["V"].riesz, "V"), "g": adj.theta["g"], "q0": sys.gather(adj.q0),
                    "p0": sys.gather(adj.p0), "eV": sys.gather(est.theta["V"].dual, "V"), "eg": est.theta["g"],
                    "eq0": sys.gather(est.q0), "ef0": sys.gather(est.field0)})
    par, ser = out
    for key in par:
        assert rel(np.atleast_1d(par[key]), np.atleast_1d(ser[key])) <= 1e-10, key


def test_bad_state_on_one_rank_raises_on_every_rank():
    sys = build(COMM, 1)
    q0 = np.zeros(sys.n_local + (1 if COMM.rank == 0 else 0))
    with pytest.raises(GlepError, match="q0 must be a real local dof array"):
        fs.midpoint_forward(sys, T, N, q0=q0, p0=np.zeros(sys.n_local))
    with pytest.raises(GlepError, match="q0 must be a real local dof array"):
        midpoint_adjoint(sys, T, N, q0=q0, p0=np.zeros(sys.n_local))
