"""The two field backends agree on 2 ranks as on one (tests/test_field_backends_agree.py, distributed).

Run with ``.venv/bin/mpirun -n 2 .venv/bin/python -m pytest -q -p no:cacheprovider
tests/mpi/test_field_backends_agree_mpi.py``.  The space-time mesh and the spatial mesh of FieldSystem (the
same ``SpaceTimeMesh.spatial``) are partitioned independently; every comparison is made on gathered arrays
sorted by coordinates, so it does not depend on the partition.  Tolerances as in the serial test (1e-10 on
states, 1e-8 on gradients); the distributed results also equal each rank's serial (``COMM_SELF``) ones.
The finite-β field families (tests/test_finite_nudge_fields.py) are checked distributed as well.
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


# -- finite nudging of field models, distributed (tests/test_finite_nudge_fields.py) ------------------------------
def _finite(comm):
    from field_backends_case import mu, phi0, target_np

    from glep.estimators.finite import free_energy
    from glep.estimators.finite_fields import (
        FieldFinalStateFamily,
        FieldProblem,
        SpaceTimeFamily,
        gathered,
        spacetime_contrast,
    )
    from glep.estimators.nudging import OneSided
    from glep.field_models import klein_gordon

    m = st.spacetime_mesh(comm, 1.0, 0.6, 8, 12)
    p = st.SpaceTimeProblem(klein_gordon(), m, st.SpaceTimeCBVP(phi0, lambda X: 0.5 * np.sin(2 * np.pi * X[0])),
                            params={"mu": mu, "lam": 0.8}, cost=st.tracking_cost(target_np))
    fam = SpaceTimeFamily(p, st.solve(p, solver=TIGHT))
    nudge = OneSided(0.5)
    fe = free_energy(fam, nudge, rtol=1e-8)
    out = {"J": fe.gradient, "contrast": spacetime_contrast(fam, nudge), "quad": fe.gradient_error}
    case = make_case(comm)
    ff = FieldFinalStateFamily(FieldProblem(case.system, case.T, case.N))
    out["pfvp0"] = ff.loss_gradient(0.0)[1]
    out["adjoint"] = gathered(case.system, field_adjoint(case.system, case.T, case.N).theta)
    out["pfvp_half"] = ff.loss_gradient(0.5)[1]
    return out


def _flat(g):
    return np.concatenate([np.ravel(g[k]) for k in sorted(g)])


def test_finite_field_families_distributed():
    """On 2 ranks: the space-time CBVP contrast is ∇J, the final-state family at β′ = 0 is the free adjoint
    gradient, and every family value equals the serial one."""
    world, serial = _finite(WORLD), _finite(SELF)
    assert world["quad"] <= 1e-8
    assert relative(_flat(world["contrast"]), _flat(world["J"])) <= 1e-6
    assert relative(_flat(world["pfvp0"]), _flat(world["adjoint"])) <= 1e-10
    for key in ("J", "pfvp_half"):
        assert relative(_flat(world[key]), _flat(serial[key])) <= 1e-8, key
