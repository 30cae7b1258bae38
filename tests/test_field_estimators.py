"""PFVP and echo on field systems match the discrete adjoint (glep.estimators.field_estimators).

At centred β = 1e-4 the relative error must be ≤ 1e-6 (THEORY §6) on a 1-D and a 2-D field, for a
parameter field, a scalar parameter and the initial state; the one-sided error must fall like β.
"""

import numpy as np
import pytest
import ufl
from dolfinx import mesh as dmesh
from mpi4py import MPI

from glep import field_models as fm
from glep.errors import InputError
from glep.estimators.field_estimators import field_civp, field_echo, field_pfvp, relative_error
from glep.estimators.nudging import ComplexStep, OneSided
from glep.field_system import FieldCost, FieldSystem
from glep.ivp.field_adjoint import field_adjoint

COMM = MPI.COMM_WORLD
T, N = 0.8, 32


def sg_1d():
    msh = dmesh.create_interval(COMM, 16, [-2.0, 2.0])
    return FieldSystem(fm.sine_gordon(kappa=lambda x: 1.0 + 0.3 * np.sin(x[0])), msh,
                       dirichlet=lambda x, t: 0.1 * np.sin(2 * t) * x[0],
                       cost=FieldCost(target=lambda x, t: ufl.sin(x[0] + t), region=lambda x: x[0] >= -0.5),
                       terminal_cost=FieldCost(target=0.3, region=lambda x: x[0] <= 1.0),
                       initial=(lambda x: 2.0 * np.exp(-x[0] ** 2), lambda x: 0.5 * np.cos(x[0])))


def kg_2d():
    msh = dmesh.create_rectangle(COMM, [[0, 0], [1.0, 0.8]], [6, 5])
    return FieldSystem(fm.klein_gordon(mu=lambda x: 1.0 + x[1], lam=0.7), msh, dirichlet=None,
                       cost=FieldCost(target=lambda x, t: x[0] * t), source=lambda x, t: ufl.cos(2 * t) * x[0],
                       initial=(lambda x: 2 * np.cos(np.pi * x[0]) * np.sin(np.pi * x[1] / 0.8), lambda x: x[1]))


@pytest.mark.parametrize("make", [sg_1d, kg_2d])
def test_pfvp_and_echo_match_the_adjoint(make):
    sys = make()
    truth = field_adjoint(sys, T, N)
    for est in (field_pfvp(sys, T, N), field_echo(sys, T, N)):
        err = relative_error(sys, est, truth)
        assert max(err.values()) <= 1e-6, (est.name, err)
        assert est.loss == pytest.approx(truth.loss, rel=1e-13) and est.passes == 3
    # the Riesz representatives agree as well (the same linear map of the dual vectors)
    for k, g in truth.theta.items():
        if hasattr(g, "riesz"):
            e = field_echo(sys, T, N).theta[k]
            assert np.max(np.abs(e.riesz - g.riesz)) <= 1e-6 * np.max(np.abs(g.riesz))


@pytest.mark.parametrize("make", [sg_1d, kg_2d])
def test_civp_needs_its_residual(make):
    """CIVP + R(T) (forward tangents, one pass per parameter dof) is exact; the contrast alone is not."""
    sys = make()
    truth = field_adjoint(sys, T, N)
    exact = field_civp(sys, T, N)
    err = relative_error(sys, exact, truth)
    assert set(err) == set(truth.theta) and max(err.values()) <= 1e-6, err
    n_par = sum(sys.spaces[k].dofmap.index_map.size_global if k in sys.spaces else 1 for k in truth.theta)
    assert exact.passes == 3 + n_par
    biased = relative_error(sys, field_civp(sys, T, N, residual=False), truth)
    assert max(biased.values()) > 1e-2, biased


def test_one_sided_error_is_first_order():
    sys = kg_2d()
    truth = field_adjoint(sys, T, N)
    betas = np.array([1e-2, 5e-3, 2.5e-3])
    errs = [max(relative_error(sys, field_echo(sys, T, N, OneSided(b)), truth).values()) for b in betas]
    assert np.polyfit(np.log(betas), np.log(errs), 1)[0] == pytest.approx(1.0, abs=0.15), errs


def test_bad_nudges():
    sys = kg_2d()
    with pytest.raises(InputError, match="real β"):
        field_echo(sys, T, N, ComplexStep(1e-8))
    with pytest.raises(InputError, match="nudge must be a glep Nudge"):
        field_pfvp(sys, T, N, 1e-4)
