"""Field systems distributed over the ranks give the one-rank trajectories and gradients (≤ 1e-10).

Run with ``mpirun -n 2 python -m pytest tests/mpi/test_fields_mpi.py``.  Each rank also builds the
same problem on ``MPI.COMM_SELF`` (the one-rank computation) and compares it with the distributed
one, dof by dof after ordering by coordinates (the dof numbering differs between partitions).
"""

from __future__ import annotations

import glep  # noqa: F401  isort: skip

import numpy as np
import pytest
import ufl
from dolfinx import mesh as dmesh
from mpi4py import MPI

from glep import field_models as fm
from glep.errors import GlepError
from glep.estimators.field_estimators import field_civp, field_echo
from glep.field_system import FieldCost, FieldSystem
from glep.ivp import field_stepping as fs
from glep.ivp.field_adjoint import field_adjoint

pytestmark = pytest.mark.mpi

COMM = MPI.COMM_WORLD
T, N = 0.6, 24


def build(comm, dim):
    if dim == 1:
        msh = dmesh.create_interval(comm, 40, [-2.0, 2.0])
        lag = fm.sine_gordon(kappa=lambda x: 1.0 + 0.3 * np.sin(x[0]))
    else:
        msh = dmesh.create_rectangle(comm, [[0, 0], [1.0, 0.8]], [9, 7])
        lag = fm.klein_gordon(mu=lambda x: 1.0 + x[1], lam=0.7)
    return FieldSystem(lag, msh, dirichlet=lambda x, t: 0.1 * np.sin(2 * t) * x[0],
                       cost=FieldCost(target=lambda x, t: ufl.sin(x[0] + t), region=lambda x: x[0] >= -0.25),
                       terminal_cost=FieldCost(target=0.3),
                       initial=(lambda x: 2.0 * np.exp(-x[0] ** 2 - x[1] ** 2), lambda x: 0.5 * np.cos(x[0])))


def rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


@pytest.mark.parametrize("dim", [1, 2])
def test_distributed_equals_one_rank(dim):
    par, ser = build(COMM, dim), build(MPI.COMM_SELF, dim)
    assert ser.comm.size == 1 and par.ndofs == ser.ndofs
    fp, fsr = fs.forward(par, T, N), fs.forward(ser, T, N)
    assert rel(par.gather(fp.q), ser.gather(fsr.q)) <= 1e-10
    assert rel(par.gather(fp.p), ser.gather(fsr.p)) <= 1e-10
    assert fp.loss == pytest.approx(fsr.loss, rel=1e-10)
    makers = [lambda s: field_adjoint(s, T, N, checkpoints=4), lambda s: field_echo(s, T, N)]
    if dim == 1:  # one tangent pass per parameter dof
        makers.append(lambda s: field_civp(s, T, N))
    for make in makers:
        gp, gs = make(par), make(ser)
        for k, g in gs.theta.items():
            if isinstance(g, float):
                assert gp.theta[k] == pytest.approx(g, rel=1e-10)
            else:
                assert rel(par.gather(gp.theta[k].dual, k), ser.gather(g.dual, k)) <= 1e-10
                assert rel(par.gather(gp.theta[k].riesz, k), ser.gather(g.riesz, k)) <= 1e-9
        if not np.all(np.isnan(gs.q0)):  # CIVP gives no initial-state gradient
            assert rel(par.gather(gp.q0), ser.gather(gs.q0)) <= 1e-10
            assert rel(par.gather(gp.p0), ser.gather(gs.p0)) <= 1e-10


def test_bad_state_on_one_rank_raises_on_every_rank():
    sys = build(COMM, 1)
    q0 = np.zeros(sys.n_local + (1 if COMM.rank == 0 else 0))  # wrong on rank 0 only
    with pytest.raises(GlepError, match="q0 must be a local dof array"):
        fs.forward(sys, T, N, q0=q0)


def test_midpoint_nls_distributed_equals_one_rank():
    from glep.field_system import MidpointFieldSystem

    def initial(x):
        u = fm.nls_soliton(x[0], 0.0, eta=1.0, xi=0.5)
        return np.vstack([u.real, u.imag])

    runs = []
    for comm in (COMM, MPI.COMM_SELF):
        sys = MidpointFieldSystem(fm.nls(), dmesh.create_interval(comm, 60, [-12.0, 12.0]), initial=(initial, 0.0))
        fw = fs.midpoint_forward(sys, 0.5, 10)
        # gather component-wise by coordinates (blocked dofs: two values per node)
        n = sys.index_map.size_local
        X = np.concatenate(sys.comm.allgather(sys.V.tabulate_dof_coordinates()[:n, 0]))
        Q = np.concatenate(sys.comm.allgather(fw.q[:2 * n].reshape(-1, 2)))
        runs.append(Q[np.argsort(X)])
    assert rel(runs[0], runs[1]) <= 1e-10
