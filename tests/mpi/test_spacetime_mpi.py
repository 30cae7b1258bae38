"""Space-time solves distributed over MPI ranks give the serial solution and gradients (≤ 1e-10).

Run with ``.venv/bin/mpirun -n 2 .venv/bin/python -m pytest -q -p no:cacheprovider tests/mpi/test_spacetime_mpi.py``.
Each test solves the same problem on ``COMM_WORLD`` (distributed) and on ``COMM_SELF`` (every rank alone) and
compares the gathered values, sorted by coordinates (independent of the partition); on one rank they still pass.
"""

from __future__ import annotations

import glep  # noqa: F401  isort: skip

import numpy as np
import pytest
from mpi4py import MPI

from glep.bvp import spacetime as st
from glep.bvp.spacetime_gradients import adjoint_gradient, contrast_gradient, pfvp_contrast_gradient
from glep.errors import GlepError
from glep.field_models import klein_gordon, wave

pytestmark = pytest.mark.mpi
WORLD, SELF = MPI.COMM_WORLD, MPI.COMM_SELF


def _problem(comm, condition=None, d=1, lag=None, params=None, nt=10):
    T = 0.7 if d == 1 else 0.5
    extent = 1.0 if d == 1 else [(0.0, 1.0), (0.0, 1.0)]
    m = st.spacetime_mesh(comm, extent, T, 12 if d == 1 else 4, nt if d == 1 else 4)

    def phi0(X):
        return np.sin(np.pi * X[0]) * (np.sin(np.pi * X[1]) if d == 2 else 1.0)

    region = [(0.2, 0.8), (0.3, T)] if d == 1 else [(0.25, 0.75), (0.0, 1.0), (0.2, T)]
    cost = st.tracking_cost(lambda X: 0.3 * phi0(X) * X[d], region=region)
    condition = condition or st.SpaceTimeCBVP(phi0, lambda X: 0.5 * phi0(X))
    return st.SpaceTimeProblem(lag or wave(), m, condition, cost=cost,
                               params=params or {"kappa": lambda X: 1.0 + 0.3 * np.sin(np.pi * X[0])})


def _close(a, b, tol=1e-10):
    return np.max(np.abs(a - b)) <= tol * max(1.0, np.max(np.abs(b)))


@pytest.mark.parametrize("d", [1, 2])
def test_cbvp_solution_and_gradients_match_serial(d):
    out = {}
    for name, comm in (("world", WORLD), ("self", SELF)):
        p = _problem(comm, d=d)
        sol = st.solve(p)
        values = p.gather()[1]
        adj = adjoint_gradient(p, sol)
        con = contrast_gradient(p, sol, 1e-4)
        out[name] = (values, adj, con)
    (vw, aw, cw), (vs, as_, cs) = out["world"], out["self"]
    assert _close(vw, vs)
    assert _close(aw.flat(), as_.flat())
    assert _close(aw.riesz["kappa"], as_.riesz["kappa"])
    assert _close(cw.flat(), cs.flat())
    assert abs(aw.loss - as_.loss) <= 1e-12 * abs(as_.loss)


def test_nonlinear_periodic_and_pfvp_match_serial():
    """φ⁴ CBVP (Newton), a CIVP with its PFVP contrast, and a periodic problem: distributed = serial."""
    kg = dict(lag=klein_gordon(mu=1.0, lam=0.5), params={"mu": lambda X: 1.0 + X[0], "lam": 0.5})
    res = {}
    for name, comm in (("world", WORLD), ("self", SELF)):
        p = _problem(comm, **kg)
        st.solve(p, lambda X: 0.1 * np.sin(np.pi * X[0]))
        civp = _problem(comm, st.SpaceTimeCIVP(lambda X: np.sin(np.pi * X[0]), 0.0), nt=24)
        sol = st.solve(civp)
        pf = pfvp_contrast_gradient(civp, sol, 1e-4)
        per = _problem(comm, st.SpaceTimePeriodic(), lag=klein_gordon(mu=1.0, lam=0.5),
                       params={"mu": 1.0, "lam": 0.5})
        st.solve(per, lambda X: 0.2 * np.sin(np.pi * X[0]))
        res[name] = (p.gather()[1], civp.gather()[1], pf.flat(), per.gather()[1])
    for a, b in zip(res["world"], res["self"]):
        assert _close(a, b)


def test_error_on_one_rank_stops_every_rank():
    """A user function that fails on one rank only raises on every rank (no hang)."""
    def bad(X):
        if WORLD.rank == WORLD.size - 1:
            raise ValueError("boom on the last rank")
        return np.zeros(X.shape[1])

    with pytest.raises(GlepError, match="boom|rank"):
        _problem(WORLD, st.SpaceTimeCBVP(bad, 0.0))
