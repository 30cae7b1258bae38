"""The node-wise kernels of FieldSystem against the assembled forms they replace (same vertex quadrature).

A parameter field in another space (``DG0``, ``P2``) that enters the density linearly acts at the nodes
through ``B_ji = ∫ N^Θ_j N_i dx`` (vertex rule): ``∫ θ W(φ_h) N_i = W(q_i)(Bᵀθ)_i`` and
``∂_{θ_j} ∫ θ W(φ_h) = Σ_i B_ji W(q_i)``.  Each quantity (force, Hessian action, θ-gradient, θ-VJP,
θ-JVP of the force, and the fused force + θ-gradient of the nudged passes) must equal the dolfinx
assembly of the UFL form to round-off, for random states, parameters and directions.
"""

import dolfinx.fem.petsc  # noqa: F401
import numpy as np
import pytest
import ufl
from dolfinx import fem, la
from dolfinx import mesh as dmesh
from mpi4py import MPI

from glep import field_models as fm
from glep.field_system import FieldCost, FieldSystem

COMM = MPI.COMM_WORLD


def _assemble(form, imap):
    b = la.vector(imap, 1)
    fem.assemble_vector(b.array, fem.form(form))
    b.scatter_reverse(la.InsertMode.add)
    b.scatter_forward()
    return b.array.copy()


def _consistent(space, rng):
    f = fem.Function(space)
    f.x.array[:] = rng.standard_normal(f.x.array.size)
    f.x.scatter_forward()
    return f.x.array.copy()


def _systems():
    sq = dmesh.create_unit_square(COMM, 7, 5)
    yield "sine-gordon DG0", FieldSystem(fm.sine_gordon(kappa=lambda x: 1 + x[0], element=("DG", 0)), sq,
                                         cost=FieldCost(target=0.3)), "kappa"
    yield "klein-gordon P2 μ", FieldSystem(fm.klein_gordon(mu=lambda x: 1 + x[1], lam=0.4, element=("P", 2)),
                                           dmesh.create_interval(COMM, 9, [0.0, 2.0]), dirichlet=None), "mu"


@pytest.mark.parametrize("seed", [0, 1])
def test_lumped_parameter_kernels_equal_the_assembled_forms(seed):
    rng = np.random.default_rng(seed)
    for label, sys, name in _systems():
        assert name in sys._lumped and name in sys._nodal_theta, label  # the node-wise path is taken
        Q = sys.spaces[name]
        sys.set_parameter(name, 1.0 + 0.2 * rng.random(Q.dofmap.index_map.size_local))
        q, lam = _consistent(sys.V, rng), _consistent(sys.V, rng)  # ghosts equal to their owners' values
        dth = _consistent(Q, rng)
        sys.impose(q, 0.0)
        sys._set_state(q, 0.0)
        sys.lam.x.array[:] = lam
        v, w = ufl.TestFunction(sys.V), ufl.TestFunction(Q)
        U = sys.U_ufl
        dU = ufl.derivative(U, sys.u, v)
        free = sys.free
        scale = np.max(np.abs(_assemble(dU, sys.index_map)))
        ref = {"force": _assemble(dU, sys.index_map),
               "hess": _assemble(ufl.derivative(dU, sys.u, sys.lam), sys.index_map),
               "theta": _assemble(ufl.derivative(U, sys.params[name], w), Q.dofmap.index_map),
               "vjp": _assemble(ufl.derivative(ufl.derivative(U, sys.u, sys.lam), sys.params[name], w),
                                Q.dofmap.index_map)}
        d = fem.Function(Q)
        d.x.array[:] = dth
        ref["jvp"] = _assemble(ufl.derivative(dU, sys.params[name], d), sys.index_map)
        got = {"force": sys.force(q, 0.0), "hess": sys.hessian_action(q, 0.0, lam),
               "theta": sys.theta_gradient(q, 0.0)[name], "vjp": sys.theta_vjp(q, 0.0, lam)[name],
               "jvp": sys.theta_force_jvp(q, 0.0, name, dth)}
        F, G = sys.force_and_theta(q, 0.0)
        got["fused force"], got["fused theta"] = F, sys.finish_theta(G)[name]
        ref["fused force"], ref["fused theta"] = ref["force"], ref["theta"]
        for key in got:
            a, b = np.asarray(got[key]), ref[key]
            if a.shape == free.shape:
                a, b = a[free], b[free]
            assert np.max(np.abs(a - b)) <= 1e-12 * max(scale, np.max(np.abs(b))), (label, key)
