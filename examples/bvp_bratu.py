"""Bratu's problem as a Lagrangian boundary-value problem, solved on a time mesh.

``L = ½ y'² − λ eʸ`` with ``y(0) = y(1) = 0`` has the Euler–Lagrange equation
``y'' + λ eʸ = 0``.  For ``λ < λ_c ≈ 3.5138`` it has two solutions: the lower
one minimises the action (Morse index 0), the upper one is a saddle (index 1).
This example

1. finds the lower branch with Newton (SNES) and the upper one by deflation,
2. counts their Morse indices from the inertia of the action Hessian,
3. shows that action descent (gradient flow) started next to the saddle slides
   down to the minimum,
4. locates the fold ``λ_c`` by continuation through it.

Run: ``.venv/bin/python examples/bvp_bratu.py``
"""

import glep  # noqa: F401  isort: skip  (configures PETSc first)

import numpy as np

from glep import CBVP
from glep.bvp import ReducedProblem, locate_fold, make_discretisation, solve_bvp, solve_problem
from glep.reference import BRATU_FOLD, bratu_exact, bratu_system

# The system: a unit mass and the potential V = λ eʸ (a glep PotentialTerm).
system, params = bratu_system(2.0)
bc = CBVP([0.0], [0.0])
mesh = (1.0, 32)  # 32 elements on [0, 1]; P2 elements with Gauss quadrature below

# 1. Newton from the default guess (the straight line y = 0) finds the lower branch.
lower = solve_bvp(system, params, mesh, bc, degree=2, quadrature="gauss", morse=True)
# Deflation: Newton on m(y) F(y), which vanishes at no known solution, finds the other one.
upper = solve_bvp(system, params, mesh, bc, degree=2, quadrature="gauss", method="deflation", known=[lower],
                  morse=True)
for name, sol in (("lower", lower), ("upper", upper)):
    exact = bratu_exact(2.0, name)[1]
    print(f"{name}: y'(0) = {sol.p0[0, 0]:.10f} (exact {exact:.10f}), y(1/2) = {sol.at(0.5)[0, 0]:.6f}, "
          f"Morse index {sol.morse_index}, action {sol.action:.6f}")
assert (lower.morse_index, upper.morse_index) == (0, 1)

# 3. Action descent is only valid at a minimum: from next to the saddle it slides to the minimum.
flow = solve_bvp(system, params, mesh, bc, degree=2, quadrature="gauss", method="gradient-flow",
                 guess=lambda t: 0.9 * np.interp(t, upper.times, upper.q[:, 0, 0])[None])
print(f"gradient flow from 0.9 × upper branch ends at y'(0) = {flow.p0[0, 0]:.6f} (index {flow.morse_index})")

# 4. The fold: follow the branch in y(1/2) with λ as unknown, maximise λ.
disc = make_discretisation(system, {"lam": np.array(1.0)}, (1.0, 16), degree=3, quadrature="gauss")
problem = ReducedProblem(disc, bc)
start = solve_problem(problem)
lam_c, y_mid = locate_fold(problem, "lam", t_star=0.5, start=start, lam0=1.0, a_values=np.linspace(0.15, 2.0, 12))
print(f"fold: λ_c = {lam_c:.10f} (reference {BRATU_FOLD}), at y(1/2) = {y_mid:.6f}")
assert abs(lam_c - BRATU_FOLD) < 1e-6
