"""A chain of 200 coupled oscillators as one boundary-value problem, at high order, without compiling forms.

``L = Σ_i ½ q̇_i² − ½ Σ_i k_i q_i² − ½ Σ_i J (q_{i+1} − q_i)²`` with both ends of
the trajectory pinned (a CBVP on ``[0, T]``): the whole trajectory is one
finite-element function of time, solved at once.  With ``n = 200`` components
the UFL element kernels would be huge; ``assembler="vectorised"`` assembles the
same finite-element action from the terms' NumPy methods instead
(:class:`glep.bvp.GalerkinAction` for P2/P3), with the Jacobian's coupling from
the terms' sparse Hessian entries.  This example

1. solves the CBVP with P1 (trapezoid = Störmer–Verlet) and P3 Galerkin elements
   (Gauss quadrature) and compares ``p(0)`` with the exact modal solution,
2. checks the vertex convergence orders 2 and 6 of the two discretisations,
3. compares with ``scipy.integrate.solve_bvp`` on the same problem.

Run: ``.venv/bin/python examples/bvp_chain.py``
"""

import glep  # noqa: F401  isort: skip  (configures PETSc first)

import time

import numpy as np
from scipy.integrate import solve_bvp as scipy_solve_bvp

from glep import CBVP, DiagonalMass, Harmonic, LagrangianSystem, SpringCoupling
from glep.bvp import solve_bvp

n, T = 200, 3.0
edges = [(i, i + 1) for i in range(n - 1)]
system = LagrangianSystem(n, [DiagonalMass(n, None), Harmonic(n, "k"), SpringCoupling(n, edges, "J")],
                          name="chain of 200 oscillators")
params = {"k": 1.0 + 0.5 * np.sin(np.arange(n)), "J": np.full(n - 1, 0.8)}
q0 = np.sin(np.linspace(0.0, np.pi, n))
qT = 0.5 * np.cos(np.linspace(0.0, 2.0 * np.pi, n))

# The exact solution: q'' = −K q, decoupled by the eigenvectors of the stiffness matrix K.
K = np.diag(params["k"])
for e, (i, j) in enumerate(edges):
    K[np.ix_([i, j], [i, j])] += params["J"][e] * np.array([[1.0, -1.0], [-1.0, 1.0]])
w2, U = np.linalg.eigh(K)
w = np.sqrt(w2)
a, c = U.T @ q0, U.T @ qT
p0_exact = U @ (w * (c - a * np.cos(w * T)) / np.sin(w * T))


def relative_error(sol) -> float:
    return float(np.max(np.abs(sol.p0 - p0_exact)) / np.max(np.abs(p0_exact)))


# 1. P1 (Störmer–Verlet) and P3 Galerkin: the same call, another degree and quadrature.
for degree, quadrature, N in ((1, "gll", 400), (3, "gauss", 10)):
    t0 = time.perf_counter()
    sol = solve_bvp(system, params, (T, N), CBVP(q0, qT), assembler="vectorised", degree=degree,
                    quadrature=quadrature)
    print(f"P{degree} {quadrature:5s} N = {N:4d}: {sol.q.shape[0] * n:6d} unknowns, "
          f"relative error of p(0) {relative_error(sol):.1e}, {time.perf_counter() - t0:.3f} s")

# 2. Convergence at the mesh vertices: order 2 (P1 + trapezoid) and 2r = 6 (P3 + Gauss).
for degree, quadrature, Ns, order in ((1, "gll", (100, 200, 400), 2.0), (3, "gauss", (6, 12, 24), 6.0)):
    errors = [relative_error(solve_bvp(system, params, (T, N), CBVP(q0, qT), assembler="vectorised",
                                       degree=degree, quadrature=quadrature)) for N in Ns]
    slope = -np.polyfit(np.log(Ns), np.log(errors), 1)[0]
    print(f"P{degree}: errors {', '.join(f'{e:.1e}' for e in errors)}, fitted order {slope:.2f}")
    assert abs(slope - order) < 0.3

# 3. scipy's fourth-order collocation on the 400 first-order equations, given the exact Jacobian.
A = np.block([[np.zeros((n, n)), np.eye(n)], [-K, np.zeros((n, n))]])
x = np.linspace(0.0, T, 41)
Y0 = np.vstack([np.outer(q0, 1 - x / T) + np.outer(qT, x / T), np.outer((qT - q0) / T, np.ones_like(x))])
t0 = time.perf_counter()
ref = scipy_solve_bvp(lambda t, Y: A @ Y, lambda ya, yb: np.concatenate([ya[:n] - q0, yb[:n] - qT]), x, Y0,
                      fun_jac=lambda t, Y: np.repeat(A[:, :, None], Y.shape[1], axis=2), tol=1e-3)
t_scipy = time.perf_counter() - t0
err_scipy = np.max(np.abs(ref.sol(0.0)[n:] - p0_exact)) / np.max(np.abs(p0_exact))
print(f"scipy solve_bvp tol=1e-3: {ref.x.size} nodes, relative error {err_scipy:.1e}, {t_scipy:.2f} s "
      "(benchmarks/bench_bvp.py times both side by side)")
