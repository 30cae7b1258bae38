"""The discrete adjoint of the field leapfrog (glep.ivp.field_adjoint): the ground truth.

Certified by Taylor tests (remainder ``C(θ + εd) − C(θ) − ε⟨∇C, d⟩`` of fitted slope 2) in random
directions for a parameter field, a scalar parameter and the initial state ``(q₀, p₀)``, on 1-D
and 2-D meshes with running and terminal costs; binomial checkpointing must give the same gradient
(to round-off) with fewer stored vectors.
"""

import numpy as np
import pytest
import ufl
from dolfinx import mesh as dmesh
from mpi4py import MPI

from glep import field_models as fm
from glep.errors import InputError
from glep.field_system import FieldCost, FieldSystem
from glep.ivp import field_stepping as fs
from glep.ivp.field_adjoint import field_adjoint

COMM = MPI.COMM_WORLD
T, N = 0.6, 24


def sg_1d(**kw):
    msh = dmesh.create_interval(COMM, 12, [-1.0, 2.0])
    return FieldSystem(fm.sine_gordon(kappa=lambda x: 1.0 + 0.3 * x[0]), msh, dirichlet=None,
                       cost=FieldCost(target=lambda x, t: 0.5 * ufl.sin(x[0] + t), region=lambda x: x[0] >= 0.0),
                       terminal_cost=FieldCost(target=0.2),
                       initial=(lambda x: 1.5 * np.exp(-x[0] ** 2), lambda x: 0.4 * x[0]), **kw)


def kg_2d(**kw):
    msh = dmesh.create_rectangle(COMM, [[0, 0], [1.0, 0.8]], [5, 4])
    return FieldSystem(fm.klein_gordon(mu=lambda x: 1.0 + x[1], lam=0.7), msh,
                       cost=FieldCost(target=lambda x, t: x[0] * t),
                       source=lambda x, t: ufl.cos(2 * t) * x[0],
                       initial=(lambda x: 2 * np.sin(np.pi * x[0]) * np.sin(np.pi * x[1] / 0.8), 0.0), **kw)


def sg_dg0_exact():
    """Assembled (not node-wise) force, Hessian and θ-derivatives: a DG0 field and UFL-estimated quadrature."""
    msh = dmesh.create_unit_square(COMM, 4, 3)
    return FieldSystem(fm.sine_gordon(kappa=lambda x: 1.0 + x[0], element=("DG", 0)), msh, quadrature="exact",
                       cost=FieldCost(target=lambda x, t: x[1] * t), terminal_cost=FieldCost(target=0.5),
                       initial=(lambda x: 3 * np.sin(np.pi * x[0]) * np.sin(np.pi * x[1]), 0.0))


def loss(sys, q0=None, p0=None):
    return fs.forward(sys, T, N, q0=q0, p0=p0).loss


def taylor_slope(f, c0, dc, eps=(1e-2, 5e-3, 2.5e-3)):
    rem = [abs(f(e) - c0 - e * dc) for e in eps]
    return float(np.polyfit(np.log(eps), np.log(rem), 1)[0]), rem


@pytest.mark.parametrize("make, field, scalar", [(sg_1d, "kappa", None), (kg_2d, "mu", "lam"),
                                                 (sg_dg0_exact, "kappa", None)])
def test_taylor_parameters_and_initial_state(make, field, scalar):
    sys = make()
    rng = np.random.default_rng(3 + COMM.rank)
    adj = field_adjoint(sys, T, N)
    assert adj.loss == pytest.approx(loss(sys), rel=1e-13)
    base = sys.params[field].x.array.copy()
    d = rng.uniform(-1, 1, base.size)
    sys.set_parameter(field, d)
    d = sys.params[field].x.array.copy()  # ghost-consistent
    sys.set_parameter(field, base)
    n = sys.spaces[field].dofmap.index_map.size_local
    dc = COMM.allreduce(float(np.dot(adj.theta[field].dual, d[:n])), op=MPI.SUM)

    def f(e):
        sys.set_parameter(field, base + e * d)
        try:
            return loss(sys)
        finally:
            sys.set_parameter(field, base)

    s, rem = taylor_slope(f, adj.loss, dc)
    assert s > 1.9, rem
    if scalar is not None:
        v = float(sys.params[scalar].value)

        def fs_(e):
            sys.set_parameter(scalar, v + e)
            try:
                return loss(sys)
            finally:
                sys.set_parameter(scalar, v)

        s, rem = taylor_slope(fs_, adj.loss, adj.theta[scalar])
        assert s > 1.9, rem
    q0, p0 = sys.initial_state()
    for which in ("q0", "p0"):
        dq = sys.interpolate(lambda x: np.cos(3 * x[0]) + x[1] ** 2)
        dq[~sys.free] = 0.0
        g = getattr(adj, which)
        dc = sys.dot(g, dq)
        f = (lambda e, dq=dq: loss(sys, q0=q0 + e * dq, p0=p0)) if which == "q0" else \
            (lambda e, dq=dq: loss(sys, q0=q0, p0=p0 + e * dq))
        s, rem = taylor_slope(f, adj.loss, dc)
        assert s > 1.9, (which, rem)


def test_riesz_representative_solves_the_mass_system():
    sys = sg_1d()
    g = field_adjoint(sys, T, N).theta["kappa"]
    import dolfinx.fem.petsc as fpetsc
    from dolfinx import fem

    Q = sys.spaces["kappa"]
    A = fpetsc.assemble_matrix(fem.form(ufl.TrialFunction(Q) * ufl.TestFunction(Q) * ufl.dx))
    A.assemble()
    x, b = A.createVecRight(), A.createVecRight()
    x.array[:] = g.riesz
    A.mult(x, b)
    assert np.max(np.abs(b.array - g.dual)) < 1e-10 * np.max(np.abs(g.dual))
    assert "dual" in g.label and "riesz" in g.label


@pytest.mark.parametrize("snaps", [1, 3, 7])
def test_checkpointing_gives_the_same_gradient(snaps):
    sys = kg_2d()
    full = field_adjoint(sys, T, N)
    ck = field_adjoint(sys, T, N, checkpoints=snaps)
    assert ck.loss == pytest.approx(full.loss, rel=1e-14)
    for k in ("mu",):
        assert np.allclose(ck.theta[k].dual, full.theta[k].dual, rtol=1e-12, atol=1e-14)
    assert ck.theta["lam"] == pytest.approx(full.theta["lam"], rel=1e-12)
    assert np.allclose(ck.q0, full.q0, rtol=1e-12, atol=1e-14) and np.allclose(ck.p0, full.p0, rtol=1e-12, atol=1e-14)
    assert ck.memory["peak_vectors"] < full.memory["peak_vectors"]
    assert ck.memory["forward_steps"] > full.memory["forward_steps"] == N


def test_bad_checkpoints():
    sys = sg_1d()
    with pytest.raises(InputError, match="checkpoints must be None"):
        field_adjoint(sys, T, N, checkpoints=0)
