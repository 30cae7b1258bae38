"""The two field backends agree on 2 ranks as on one (tests/test_field_backends_agree.py, distributed).

Run with ``.venv/bin/mpirun -n 2 .venv/bin/python -m pytest -q -p no:cacheprovider
tests/mpi/test_field_backends_agree_mpi.py``.  The space-time mesh and the spatial mesh of FieldSystem (the
same ``SpaceTimeMesh.spatial``) are partitioned independently; every comparison is made on gathered arrays
sorted by coordinates, so it does not depend on the partition.  Tolerances as in the serial test (1e-10 on
states, 1e-8 on gradients); the distributed results also equal each rank's serial (``COMM_SELF``) ones.
"""

from __future__ import annotations

import glep  # noqa: F401  isort: skip

import numpy as np
import pytest
from field_backends_case import make_case, relative, trajectory
from mpi4py import MPI

from glep.bvp import spacetime as st
from glep.bvp.solvers import Newton
from glep.bvp.spacetime_gradients import adjoint_gradient, pfvp_contrast_gradient
from glep.estimators.field_estimators import field_echo, field_pfvp
from glep.estimators.nudging import Centred
from glep.ivp.field_adjoint import field_adjoint
from glep.ivp.field_stepping import forward

pytestmark = pytest.mark.mpi
WORLD, SELF = MPI.COMM_WORLD, MPI.COMM_SELF
TIGHT = Newton(rtol=1e-14, atol=1e-14)
STATE_TOL, GRAD_TOL = 1e-10, 1e-8


def _run(comm):
    case = make_case(comm)
    sol = st.solve(case.civp, solver=TIGHT)
    sys = case.system
    fw = forward(sys, case.T, case.N, store=True)
    out = {"phi": trajectory(case).copy(), "leap": np.array([sys.gather(q) for q in fw.stored]),
           "loss_st": case.civp.loss(), "loss_ts": fw.loss}
    fe = adjoint_gradient(case.civp, sol)
    ts = field_adjoint(sys, case.T, case.N)
    out["adj_st"] = (fe.dual["mu"], float(fe.dual["lam"]), fe.riesz["mu"])
    out["adj_ts"] = (sys.gather(ts.theta["mu"].dual, "mu"), ts.theta["lam"], sys.gather(ts.theta["mu"].riesz, "mu"))
    stc = pfvp_contrast_gradient(case.civp, sol, 0.2, solver=TIGHT)
    out["pfvp_st"] = (stc.dual["mu"], float(stc.dual["lam"]))
    for fn in (field_pfvp, field_echo):
        est = fn(sys, case.T, case.N, Centred(0.2))
        out[fn.__name__] = (sys.gather(est.theta["mu"].dual, "mu"), est.theta["lam"])
    return out


@pytest.fixture(scope="module")
def runs():
    return _run(WORLD), _run(SELF)


def test_distributed_backends_agree(runs):
    world, _ = runs
    assert np.max(np.abs(world["phi"] - world["leap"])) <= STATE_TOL * np.max(np.abs(world["leap"]))
    assert abs(world["loss_st"] - world["loss_ts"]) <= STATE_TOL * abs(world["loss_ts"])
    (g_st, l_st, r_st), (g_ts, l_ts, r_ts) = world["adj_st"], world["adj_ts"]
    assert relative(g_st, g_ts) <= GRAD_TOL and relative(r_st, r_ts) <= GRAD_TOL
    assert abs(l_st - l_ts) <= GRAD_TOL * abs(l_ts)
    for name in ("field_pfvp", "field_echo"):
        g, lam = world[name]
        assert relative(world["pfvp_st"][0], g) <= GRAD_TOL, name
        assert abs(world["pfvp_st"][1] - lam) <= GRAD_TOL * abs(lam), name


def test_distributed_equals_serial(runs):
    world, serial = runs
    assert np.max(np.abs(world["phi"] - serial["phi"])) <= STATE_TOL * np.max(np.abs(serial["phi"]))
    assert np.max(np.abs(world["leap"] - serial["leap"])) <= STATE_TOL * np.max(np.abs(serial["leap"]))
    for key in ("adj_st", "adj_ts", "pfvp_st", "field_pfvp"):
        assert relative(world[key][0], serial[key][0]) <= GRAD_TOL, key
        assert abs(world[key][1] - serial[key][1]) <= GRAD_TOL * abs(serial[key][1]), key
