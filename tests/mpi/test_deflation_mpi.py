"""Deflation and Morse indices on a distributed time mesh: the same set, the same numbers as one rank.

Run with ``.venv/bin/mpirun -n 2 .venv/bin/python -m pytest -q -p no:cacheprovider tests/mpi/test_deflation_mpi.py``;
each test solves on ``COMM_WORLD`` (distributed) and on ``COMM_SELF`` (every rank alone) and compares.
"""

from __future__ import annotations

import glep  # noqa: F401  isort: skip

import math

import numpy as np
import pytest
from mpi4py import MPI

from glep import CBVP, SingularHessianError
from glep.bvp import find_solutions, solve_bvp
from glep.meshes import uniform_time_mesh
from glep.reference import bratu_system, harmonic_system, pendulum_cbvp_reference, pendulum_system

pytestmark = pytest.mark.mpi

WORLD, SELF = MPI.COMM_WORLD, MPI.COMM_SELF
ZERO = CBVP([0.0], [0.0])
BRATU_GUESSES = [
    None,
    lambda t: 0.3 * np.sin(np.pi * t)[None],
    lambda t: -0.3 * np.sin(np.pi * t)[None],
    lambda t: 0.5 * np.sin(2 * np.pi * t)[None],
    lambda t: (0.8 * t * (1 - t))[None],
]


def _summary(sols):
    return [(s.morse_index, s.p0[0, 0], s.action) for s in sols]


@pytest.mark.parametrize("which", range(len(BRATU_GUESSES)))
def test_bratu_branches_from_perturbed_guesses(which):
    system, params = bratu_system(2.0)
    out = {}
    for name, comm in (("world", WORLD), ("self", SELF)):
        out[name] = find_solutions(system, params, uniform_time_mesh(comm, 1.0, 32), ZERO,
                                   guess=BRATU_GUESSES[which])
    assert [s.morse_index for s in out["world"]] == [s.morse_index for s in out["self"]] == [0, 1]
    for w, s in zip(out["world"], out["self"]):
        assert w.p0[0, 0] == pytest.approx(s.p0[0, 0], rel=1e-9)
        assert w.fe.hessian.min_eigenvalue == pytest.approx(s.fe.hessian.min_eigenvalue, rel=1e-8)


def test_pendulum_same_set_on_every_partition():
    T, a, b = 8.0, 0.3, -0.5
    ref = pendulum_cbvp_reference(1.0, T, a, b, scan=2001)
    system, params = pendulum_system(1.0)
    sols = find_solutions(system, params, uniform_time_mesh(WORLD, T, 30), CBVP([a], [b]), degree=2,
                          quadrature="gauss")
    assert len(sols) == len(ref) >= 5
    by_slope = sorted(sols, key=lambda s: s.p0[0, 0])
    for sol, (s, index, _) in zip(by_slope, ref):
        assert sol.morse_index == index
        assert sol.p0[0, 0] == pytest.approx(s, abs=1e-4)  # P2, h = 8/30: error ~ 1e-5 (tests/test_deflation.py)
    # every rank holds the same list
    gathered = WORLD.allgather(_summary(sols))
    assert all(g == gathered[0] for g in gathered)


def test_harmonic_resonance_and_near_resonance():
    system, params = harmonic_system(1.0)
    T = 2 * math.pi
    with pytest.raises(SingularHessianError, match="conjugate point lies at or near the boundary"):
        solve_bvp(system, params, uniform_time_mesh(WORLD, T, 250), CBVP([1.0], [0.5]), morse=True)
    T = 2.02 * math.pi
    sols = [solve_bvp(system, params, uniform_time_mesh(comm, T, 250), CBVP([1.0], [0.5]), morse=True)
            for comm in (WORLD, SELF)]
    assert sols[0].morse_index == sols[1].morse_index == 2
    assert sols[0].fe.hessian.min_eigenvalue == pytest.approx(sols[1].fe.hessian.min_eigenvalue, rel=1e-8)
    assert sols[0].fe.hessian.ratio == pytest.approx(sols[1].fe.hessian.ratio, rel=1e-6)
