"""The two field backends agree: space-time Q1 with Gauss–Lobatto quadrature *is* the field leapfrog.

Derivation (docs/theory.md §10, tests/field_backends_case.py): on the same spatial mesh and time steps,
Q1 space-time elements with the Gauss–Lobatto rule in time and in space (``quadrature="lobatto"``) assemble
the action ``Σ_n L_d(q_n, q_{n+1})`` of the trapezoid discrete Lagrangian of :class:`glep.FieldSystem`'s
semi-discretisation (lumped mass, vertex-rule potential and costs).  The discrete Euler–Lagrange equations,
the discrete momenta, the losses, the adjoints and the nudged trajectories are then the same equations,
solved by different arithmetic (a sparse LU on the whole space-time system vs explicit steps), so:

(a) the space-time CIVP and its PFVP equal ``glep.field_forward``'s trajectory node by node, the discrete
    momentum ``p(T) = ∂A/∂φ_T`` equals the leapfrog's ``p_N`` and the losses agree;
(b) the space-time FE discrete adjoint equals ``glep.field_adjoint`` (parameter-field dual vectors, their
    Riesz representatives and the scalar), and the space-time PFVP contrast equals ``field_pfvp`` and
    ``field_echo`` at the same centred β (the nudged final-value problem is the backward leapfrog).

Tolerances: round-off of a marching (LU) solve below the CFL limit, ~1e-14 relative, so 1e-10 on states
(the issue's bound); gradients through an adjoint solve 1e-8 (the issue's bound).  Newton is run to a
residual at round-off (atol 1e-14) so that the nonlinear solves add nothing.  The agreement fails with the
consistent-mass rule ``"lobatto-time"`` (checked: a different discrete Lagrangian) — the test can fail.
"""

import numpy as np
import pytest
from field_backends_case import LAM, make_case, relative, trajectory
from mpi4py import MPI

from glep.bvp import spacetime as st
from glep.bvp.solvers import Newton
from glep.bvp.spacetime_gradients import adjoint_gradient, pfvp_contrast_gradient
from glep.estimators.field_estimators import field_echo, field_pfvp
from glep.estimators.nudging import Centred
from glep.ivp.field_adjoint import field_adjoint
from glep.ivp.field_stepping import forward

COMM = MPI.COMM_WORLD
TIGHT = Newton(rtol=1e-14, atol=1e-14)
STATE_TOL, GRAD_TOL = 1e-10, 1e-8


@pytest.fixture(scope="module", params=[True, False], ids=["terminal-cost", "running-cost-only"])
def solved(request):
    case = make_case(COMM, terminal=request.param)
    sol = st.solve(case.civp, solver=TIGHT)
    return case, sol


def test_civp_and_pfvp_equal_the_leapfrog_node_by_node(solved):
    case, sol = solved
    sys = case.system
    fw = forward(sys, case.T, case.N, store=True)
    leap = np.array([sys.gather(q) for q in fw.stored])
    phi = trajectory(case)
    assert phi.shape == leap.shape
    assert np.max(np.abs(phi - leap)) <= STATE_TOL * np.max(np.abs(leap))
    # the discrete momentum at T and the loss
    pT = case.civp.momenta()["T"].values
    on_T = case.civp.end_dofs["T"]
    x_st = case.civp.V.tabulate_dof_coordinates()[: case.civp.nloc, 0]
    p_st = np.zeros(len(x_st))
    p_st[on_T] = pT[on_T]
    xs = np.concatenate(COMM.allgather(x_st[on_T]))
    ps = np.concatenate(COMM.allgather(p_st[on_T]))
    order = np.argsort(xs)
    inner = (xs[order] > 0.0) & (xs[order] < 1.0)  # at Dirichlet dofs p(T) is a reaction, FieldSystem's p is 0
    assert relative(ps[order][inner], sys.gather(fw.p)[inner]) <= STATE_TOL
    assert abs(case.civp.loss() - fw.loss) <= STATE_TOL * abs(fw.loss)
    # the final-value problem through the CIVP's (φ(T), p(T)) marches back to the same trajectory
    pf = case.civp.final_value_problem()
    st.solve(pf, sol, solver=TIGHT, check_singular=False)
    back = pf.gather()[1][:, 0].reshape(case.N + 1, -1)
    assert np.max(np.abs(back - leap)) <= STATE_TOL * np.max(np.abs(leap))
    pf.destroy()
    case.civp.lift(sol.r)


def test_adjoint_gradients_agree(solved):
    case, sol = solved
    sys = case.system
    fe = adjoint_gradient(case.civp, sol)
    ts = field_adjoint(sys, case.T, case.N)
    assert abs(fe.loss - ts.loss) <= STATE_TOL * abs(ts.loss)
    assert relative(fe.dual["mu"], sys.gather(ts.theta["mu"].dual, "mu")) <= GRAD_TOL
    assert relative(fe.riesz["mu"], sys.gather(ts.theta["mu"].riesz, "mu")) <= GRAD_TOL
    assert abs(float(fe.dual["lam"]) - ts.theta["lam"]) <= GRAD_TOL * abs(ts.theta["lam"])
    assert np.linalg.norm(fe.dual["mu"]) > 0 and ts.theta["lam"] != 0.0  # not a trivial agreement


@pytest.mark.parametrize("beta", [1e-3, 0.2])
def test_pfvp_contrast_equals_field_pfvp_and_echo(solved, beta):
    """Same centred β: the same nudged trajectories (space-time nudged CFVP = backward leapfrog), so the
    contrasts agree whatever the bias of β."""
    case, sol = solved
    sys = case.system
    stc = pfvp_contrast_gradient(case.civp, sol, beta, solver=TIGHT)
    for fn in (field_pfvp, field_echo):
        est = fn(sys, case.T, case.N, Centred(beta))
        assert relative(stc.dual["mu"], sys.gather(est.theta["mu"].dual, "mu")) <= GRAD_TOL, fn.__name__
        assert abs(float(stc.dual["lam"]) - est.theta["lam"]) <= GRAD_TOL * abs(est.theta["lam"]), fn.__name__


def test_consistent_mass_rule_is_a_different_discretisation():
    """With ``"lobatto-time"`` (consistent spatial mass) the space-time CIVP is the *consistent-mass* leapfrog:
    it differs from FieldSystem's lumped one by the discretisation error, far above round-off."""
    case = make_case(COMM, terminal=False)
    lumped = st.solve(case.civp, solver=TIGHT)
    ref = trajectory(case).copy()
    other = st.SpaceTimeProblem(case.civp.lagrangian, case.stmesh, case.civp.condition,
                                params={"mu": case.civp.params()["mu"], "lam": LAM}, quadrature="lobatto-time")
    st.solve(other, solver=TIGHT)
    diff = np.max(np.abs(other.gather()[1][:, 0].reshape(ref.shape) - ref)) / np.max(np.abs(ref))
    assert diff > 1e-4
    assert lumped.report.iterations >= 2  # nonlinear: Newton iterated
