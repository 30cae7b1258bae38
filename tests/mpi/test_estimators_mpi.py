"""Run with `mpirun -n 2`: the time-stepping estimators are rank-independent and still exact."""

import numpy as np
from mpi4py import MPI

from glep.estimators import Centred, Problem, adjoint, compare, echo, pfvp, rhel
from glep.estimators.cbvp import cbvp, cbvp_truth
from glep.models import coupled_oscillators

comm = MPI.COMM_WORLD


def test_exact_estimators_agree_across_ranks_and_with_the_adjoint():
    pr = Problem.from_model(coupled_oscillators(4), steps=200)
    truth = adjoint(pr)
    for fn in (pfvp, echo, rhel):
        est = fn(pr, Centred(1e-4))
        assert compare(est.theta, truth.theta)["relative_error"] <= 1e-6
        flat = est.flat()
        mine = comm.allgather(flat)
        assert all(np.array_equal(flat, other) for other in mine)


def test_cbvp_row_under_mpi():
    pr = Problem.from_model(coupled_oscillators(3, T=1.0), steps=100)
    assert compare(cbvp(pr, Centred(1e-4)).theta, cbvp_truth(pr).theta)["relative_error"] <= 1e-6
