"""GLEP gradients from whole-trajectory solves on a finite-element time mesh.

A chain of coupled oscillators (trainable masses, springs and input weights,
a tracking cost on the last oscillator) with both ends pinned (CBVP).  The
nudged trajectories ``s^β`` (stationary for ``A_β = ∫ L + β c``) are solved at
once on the time mesh, and the GLEP contrast

    dC/dθ ≈ (I(β) − I(−β)) / 2β,     I(β) = ∫ ∂_θ L(s^β) dt,

is compared with the discrete adjoint of the same FE system (the exact
gradient of the discrete loss ``C_h``).  With P1 elements and Gauss–Lobatto
quadrature the FE system *is* Störmer–Verlet, so the PFVP (final state of
the free CIVP held fixed) equals the ivp backend's backward integration.

Run: ``.venv/bin/python examples/bvp_gradients.py``
"""

import glep  # noqa: F401  isort: skip  (configures PETSc first)

import numpy as np

from glep import CBVP, PFVP
from glep.bvp import solve_bvp
from glep.estimators.cbvp import cbvp_gradient, fe_adjoint_gradient
from glep.grid import TimeGrid
from glep.ivp.discrete import TRAPEZOID, DiscreteLagrangian, Mirrored
from glep.ivp.stepping import integrate
from glep.models import coupled_oscillators

model = coupled_oscillators(4, T=2.0)
system, params = model.system, model.params
mesh = (2.0, 40)
bc = CBVP(np.array([0.1, 0.0, -0.1, 0.05]), np.array([0.2, 0.1, 0.0, -0.1]))

truth, loss = fe_adjoint_gradient(system, params, mesh, bc, rtol=1e-12, atol=1e-13)
estimate = cbvp_gradient(system, params, mesh, bc, beta=1e-4, rtol=1e-12, atol=1e-13)
flat_t = np.concatenate([truth[k].ravel() for k in truth])
flat_e = np.concatenate([estimate[k].ravel() for k in truth])
rel = np.linalg.norm(flat_e - flat_t) / np.linalg.norm(flat_t)
cos = flat_e @ flat_t / (np.linalg.norm(flat_e) * np.linalg.norm(flat_t))
print(f"C_h = {loss:.6f};  centred contrast (β = 1e-4) vs FE adjoint: relative error {rel:.2e}, cosine {cos:.12f}")
assert rel < 1e-6

# PFVP on the time mesh vs backward Störmer–Verlet integration from the free final state.
theta = system.check_params(params)
q0, p0, v0 = model.boundary.states(system, theta)
beta = 0.1
dl = DiscreteLagrangian(system, theta, TimeGrid(2.0, 40), TRAPEZOID)
Q, P = integrate(dl, q0, p0)
back, _ = integrate(Mirrored(DiscreteLagrangian(system, theta, TimeGrid(2.0, 40), TRAPEZOID, beta=beta)),
                    Q[-1], -P[-1])
fe = solve_bvp(system, params, mesh, PFVP(q0[0], v0=v0[0]), beta=beta)
err = np.max(np.abs(fe.q - back[::-1]))
print(f"PFVP (β = {beta}): FE whole-trajectory solve vs backward integration, max difference {err:.1e}")
assert err < 1e-9
