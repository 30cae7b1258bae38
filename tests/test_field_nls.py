"""The NLS field on the implicit-midpoint integrator: its discrete adjoint (ground truth) and the conjugation echo.

The adjoint (glep.ivp.field_midpoint_adjoint) is certified by Taylor tests (remainder
``C(θ + εd) − C(θ) − ε⟨∇C, d⟩`` of fitted slope 2) in random directions for the potential field
``V``, the scalar ``g`` and the initial field ``u₀ = a₀ + i b₀``, on 1-D (``V`` ∈ P1) and 2-D
(``V`` ∈ DG0) meshes with running and terminal costs; binomial checkpointing gives the same
gradient.  The echo (estimators/field_nls.py) matches the adjoint to ≤ 1e-6 relative at centred
β = 1e-4 (bias O(β²) ≈ 1e-8 relative, Newton tolerance 1e-12) for several perturbed problems.
"""

import numpy as np
import pytest
import ufl
from dolfinx import mesh as dmesh
from mpi4py import MPI

from glep import field_models as fm
from glep.errors import InputError
from glep.estimators.field_nls import nls_echo
from glep.estimators.nudging import Centred, ComplexStep
from glep.field_midpoint import MidpointFieldSystem
from glep.field_system import FieldCost, FieldSystem
from glep.ivp import field_stepping as fs
from glep.ivp.field_midpoint_adjoint import initial_field_gradient, midpoint_adjoint

COMM = MPI.COMM_WORLD
T, N = 0.4, 8


def _target(x, t):
    return ufl.as_vector([0.3 * ufl.exp(-x[0] ** 2) * ufl.cos(t), 0.2 * ufl.exp(-x[0] ** 2) + 0.1 * t])


def nls_1d(shift: float = 0.0, **kw) -> MidpointFieldSystem:
    def initial(x):
        u = fm.nls_soliton(x[0], 0.0, eta=1.0, xi=0.5, x0=shift)
        return np.vstack([u.real, u.imag])

    return MidpointFieldSystem(fm.nls(g=2.0 + shift, potential=lambda x: 0.1 * np.cos(x[0] + shift)),
                               dmesh.create_interval(COMM, 32, [-8.0, 8.0]), initial=(initial, 0.0),
                               cost=FieldCost(target=_target, region=lambda x: x[0] >= -2.0),
                               terminal_cost=FieldCost(target=_target, weight=2.0), **kw)


def nls_2d(shift: float = 0.0, **kw) -> MidpointFieldSystem:
    def initial(x):
        env = np.exp(-8 * ((x[0] - 0.5 - shift) ** 2 + (x[1] - 0.5) ** 2))
        return np.vstack([2 * env * np.cos(3 * x[0]), 2 * env * np.sin(3 * x[0])])

    msh = dmesh.create_unit_square(COMM, 6, 6)
    return MidpointFieldSystem(fm.nls(g=1.5, potential=lambda x: 1.0 + x[1] + shift, element=("DG", 0)), msh,
                               initial=(initial, 0.0), cost=FieldCost(target=0.1),
                               terminal_cost=FieldCost(target=lambda x, t: ufl.as_vector([x[0], 0.0])), **kw)


BUILDERS = {"1d": nls_1d, "2d": nls_2d}


def _slope(eps, rem):
    return float(np.polyfit(np.log(eps), np.log(rem), 1)[0])


def _taylor(loss, grad_dot_d):
    """Remainders ``|C(ε) − C(0) − ε g·d|`` for ε halving from 1e-2: their fitted slope (2 for a correct g)."""
    c0 = loss(0.0)
    eps = 1e-2 * 0.5 ** np.arange(4)
    rem = [abs(loss(e) - c0 - e * grad_dot_d) for e in eps]
    return _slope(eps, rem), rem


@pytest.mark.parametrize("dim", ["1d", "2d"])
def test_adjoint_taylor_parameter_field_scalar_and_initial_field(dim):
    sys = BUILDERS[dim]()
    adj = midpoint_adjoint(sys, T, N)
    rng = np.random.default_rng(7)
    V0 = sys.params["V"].x.array.copy()
    dV = rng.standard_normal(V0.size)
    nV = sys.spaces["V"].dofmap.index_map.size_local

    def loss_V(e):
        sys.set_parameter("V", V0 + e * dV)
        return fs.midpoint_forward(sys, T, N).loss

    s, rem = _taylor(loss_V, sys.comm.allreduce(float(adj.theta["V"].dual @ dV[:nV])))
    sys.set_parameter("V", V0)
    assert s == pytest.approx(2.0, abs=0.1), rem
    g0 = float(sys.params["g"].value)

    def loss_g(e):
        sys.set_parameter("g", g0 + e)
        return fs.midpoint_forward(sys, T, N).loss

    s, rem = _taylor(loss_g, adj.theta["g"])
    sys.set_parameter("g", g0)
    assert s == pytest.approx(2.0, abs=0.1), rem
    q0, _ = sys.initial_state()
    dq = rng.standard_normal(q0.size)
    dq[sys.bc_dofs] = 0.0
    field0 = initial_field_gradient(sys, q0, adj.q0, adj.p0)

    def loss_u0(e):  # the state is the field u₀ alone: p₀ is its Legendre map
        q = q0 + e * dq
        return fs.midpoint_forward(sys, T, N, q0=q, p0=sys.legendre_map(q)).loss

    s, rem = _taylor(loss_u0, sys.dot(field0, dq))
    assert s == pytest.approx(2.0, abs=0.1), rem
    assert adj.loss == pytest.approx(fs.midpoint_forward(sys, T, N).loss, rel=1e-12)


def test_adjoint_taylor_initial_q_and_p_separately():
    sys = nls_1d(0.2)
    adj = midpoint_adjoint(sys, T, N)
    q0, p0 = sys.initial_state()
    rng = np.random.default_rng(3)
    for which, g in (("q", adj.q0), ("p", adj.p0)):
        d = rng.standard_normal(q0.size)
        d[sys.bc_dofs] = 0.0

        def loss(e, which=which, d=d):
            q, p = (q0 + e * d, p0) if which == "q" else (q0, p0 + e * d)
            return fs.midpoint_forward(sys, T, N, q0=q, p0=p).loss

        s, rem = _taylor(loss, sys.dot(g, d))
        assert s == pytest.approx(2.0, abs=0.1), (which, rem)


@pytest.mark.parametrize("checkpoints", [1, 3])
def test_checkpointing_gives_the_same_gradient_with_fewer_vectors(checkpoints):
    sys = nls_1d()
    full = midpoint_adjoint(sys, T, N)
    ck = midpoint_adjoint(sys, T, N, checkpoints=checkpoints)
    scale = np.max(np.abs(full.theta["V"].dual))
    assert np.max(np.abs(ck.theta["V"].dual - full.theta["V"].dual)) <= 1e-12 * scale
    assert ck.theta["g"] == pytest.approx(full.theta["g"], rel=1e-12)
    assert np.max(np.abs(ck.q0 - full.q0)) <= 1e-12 * np.max(np.abs(full.q0))
    assert ck.memory["peak_vectors"] < full.memory["peak_vectors"]
    assert ck.memory["forward_steps"] > full.memory["forward_steps"] == N


def _rel(a, b, sys):
    return np.sqrt(sys.dot(a - b, a - b) / sys.dot(b, b))


@pytest.mark.parametrize("dim", ["1d", "2d"])
@pytest.mark.parametrize("shift", [0.0, 0.15, -0.3])
def test_echo_matches_the_adjoint(dim, shift):
    """Conjugation echo (error injected on the conjugate component) = discrete adjoint, ≤ 1e-6 relative."""
    sys = BUILDERS[dim](shift)
    adj = midpoint_adjoint(sys, T, N)
    est = nls_echo(sys, T, N, Centred(1e-4))
    dV, gV = est.theta["V"].dual, adj.theta["V"].dual
    assert np.sqrt(sys.comm.allreduce(float(np.sum((dV - gV) ** 2))) /
                   sys.comm.allreduce(float(np.sum(gV ** 2)))) <= 1e-6
    assert est.theta["g"] == pytest.approx(adj.theta["g"], rel=1e-6)
    assert _rel(est.q0, adj.q0, sys) <= 1e-6 and _rel(est.p0, adj.p0, sys) <= 1e-6
    q0, _ = sys.initial_state()
    assert _rel(est.field0, initial_field_gradient(sys, q0, adj.q0, adj.p0), sys) <= 1e-6
    assert est.passes == 3 and est.loss == pytest.approx(adj.loss, rel=1e-12)


def test_echo_bias_is_order_two_in_beta():
    sys = nls_1d()
    adj = midpoint_adjoint(sys, T, N)
    errs = [abs(nls_echo(sys, T, N, Centred(b)).theta["g"] - adj.theta["g"]) for b in (0.4, 0.2, 0.1)]
    assert _slope([0.4, 0.2, 0.1], errs) == pytest.approx(2.0, abs=0.15), errs


def test_bad_input():
    sys = nls_1d()
    with pytest.raises(InputError, match="real β"):
        nls_echo(sys, T, N, ComplexStep(1e-20))
    with pytest.raises(InputError, match="nudge must be a glep Nudge"):
        nls_echo(sys, T, N, 1e-4)
    with pytest.raises(InputError, match="checkpoints must be None"):
        midpoint_adjoint(sys, T, N, checkpoints=0)
    with pytest.raises(InputError, match="terminal_cost must be a FieldCost"):
        MidpointFieldSystem(fm.nls(), dmesh.create_unit_interval(COMM, 4), terminal_cost=0.5)
    with pytest.raises(InputError, match="theta names unknown parameters"):
        MidpointFieldSystem(fm.nls(), dmesh.create_unit_interval(COMM, 4), theta={"W": 1.0})
    with pytest.raises(InputError, match="q0 must be a real local dof array"):
        fs.midpoint_forward(sys, T, N, q0=np.zeros(3), p0=np.zeros(sys.n_local))
    with pytest.raises(InputError, match="real β"):
        fs.midpoint_forward(sys, T, N, beta=1e-3j)
    flat = FieldSystem(fm.sine_gordon(), dmesh.create_unit_interval(COMM, 4))
    for fn, who in ((nls_echo, "nls_echo"), (midpoint_adjoint, "midpoint_adjoint"),
                    (fs.midpoint_forward, "midpoint_forward")):
        with pytest.raises(InputError, match=f"{who} needs a glep.field_midpoint.MidpointFieldSystem"):
            fn(flat, T, N)
    with pytest.raises(InputError, match="initial must be a pair"):
        MidpointFieldSystem(fm.nls(), dmesh.create_unit_interval(COMM, 4), initial=(0.0,))
    irreversible = fm.nls()
    object.__setattr__(irreversible, "reversal", ((1, -1), (1, -1)))
    with pytest.raises(InputError, match="the echo needs a reversal"):
        nls_echo(MidpointFieldSystem(irreversible, dmesh.create_unit_interval(COMM, 4)), T, N)
