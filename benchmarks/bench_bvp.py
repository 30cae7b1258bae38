"""Benchmarks of the bvp backend (whole-trajectory finite-element solves with PETSc).

Run::

    .venv/bin/python benchmarks/bench_bvp.py            # short run (< 3 min)
    .venv/bin/python benchmarks/bench_bvp.py --full     # adds N = 1e6 elements
    .venv/bin/python benchmarks/bench_bvp.py --quick    # smoke test (tests/test_bvp_bench_smoke.py)

Prints, side by side:

1. time to accuracy against ``scipy.integrate.solve_bvp`` on Bratu (λ = 2,
   lower branch), Troesch (λ = 5) and a linear chain of 200 coupled
   oscillators (exact solution by modal decomposition);
2. time per Newton iteration for ``n = 3`` (nonlinear chain, vectorised
   assembler, P1 + trapezoid) at ``N = 1e4, 1e5 (, 1e6)`` elements, with the
   split residual / Jacobian / restriction / LU, for LU orderings
   ``natural``, ``rcm``, ``nd`` and MUMPS (full Newton steps: ``linesearch="basic"``;
   residual and Jacobian columns are seconds per evaluation);
3. the speed-up on 2 MPI ranks (MUMPS), and the peak memory.
"""

from __future__ import annotations

import glep  # noqa: F401  isort: skip

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI
from scipy.integrate import solve_bvp as scipy_solve_bvp

from glep import CBVP, DiagonalMass, Harmonic, LagrangianSystem, Quartic, SpringCoupling
from glep.bvp import ReducedProblem, make_discretisation, newton, set_guess, solve_bvp
from glep.meshes import graded_time_mesh, uniform_time_mesh
from glep.reference import bratu_exact, bratu_system, troesch_system

COMM = MPI.COMM_WORLD


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn, repeat: int = 3):
    best = np.inf
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


# -- 1. time to accuracy -------------------------------------------------------------------
def scalar_scipy(f, dfdy, bc_vals, tol, x0=None):
    """solve_bvp on y'' = f(y) as a first-order system; returns y'(0), y'(1)."""
    x = np.linspace(0.0, 1.0, 11) if x0 is None else x0

    def fun(t, Y):
        return np.vstack([Y[1], f(Y[0])])

    def jac(t, Y):
        J = np.zeros((2, 2, Y.shape[1]))
        J[0, 1] = 1.0
        J[1, 0] = dfdy(Y[0])
        return J

    def bc(ya, yb):
        return np.array([ya[0] - bc_vals[0], yb[0] - bc_vals[1]])

    Y0 = np.vstack([bc_vals[0] + (bc_vals[1] - bc_vals[0]) * x, np.full_like(x, bc_vals[1] - bc_vals[0])])
    sol = scipy_solve_bvp(fun, bc, x, Y0, fun_jac=jac, tol=tol, max_nodes=100000)
    return sol.sol(0.0)[1], sol.sol(1.0)[1], sol.x.size


def accuracy_rows(quick: bool = False):
    rows = []
    lam = 2.0
    _, yp0, _, _ = bratu_exact(lam)
    sys_, par = bratu_system(lam)
    for tol in (1e-4, 1e-7):
        t, (p0, _, m) = timed(lambda tol=tol: scalar_scipy(lambda y: -lam * np.exp(y), lambda y: -lam * np.exp(y),
                                                            (0.0, 0.0), tol))
        rows.append(("Bratu λ=2", f"scipy solve_bvp tol={tol:g} ({m} nodes)", t, abs(p0 - yp0) / yp0))
    for deg, N in ((1, 64), (2, 16), (3, 16)):
        t, sol = timed(lambda deg=deg, N=N: solve_bvp(sys_, par, (1.0, N), CBVP([0.0], [0.0]), degree=deg,
                                                     quadrature="gauss"))
        rows.append(("Bratu λ=2", f"glep.bvp P{deg} N={N}", t, abs(sol.p0[0, 0] - yp0) / yp0))
    lam = 5.0
    ref = 0.0457504614063187
    sys_, par = troesch_system(lam)
    for tol in (1e-4, 1e-7):
        t, (p0, _, m) = timed(lambda tol=tol: scalar_scipy(lambda y: lam * np.sinh(lam * y),
                                                            lambda y: lam * lam * np.cosh(lam * y), (0.0, 1.0), tol))
        rows.append(("Troesch λ=5", f"scipy solve_bvp tol={tol:g} ({m} nodes)", t, abs(p0 - ref) / ref))
    for deg, N, ratio in ((2, 32, 1.0), (3, 32, 50.0), (3, 64, 50.0)):
        def run(deg=deg, N=N, ratio=ratio):
            mesh = (1.0, N) if ratio == 1.0 else graded_time_mesh(COMM, 1.0, N, ratio=ratio, end="final")
            return solve_bvp(sys_, par, mesh, CBVP([0.0], [1.0]), degree=deg, quadrature="gauss")
        t, sol = timed(run)
        rows.append(("Troesch λ=5", f"glep.bvp P{deg} N={N} graded×{ratio:g}", t, abs(sol.p0[0, 0] - ref) / ref))
    rows += chain_rows(n=20 if quick else 200, Ns=(100,) if quick else (100, 400, 1600),
                       high_order=((3, 10),) if quick else ((2, 40), (3, 10), (3, 16)))
    return rows


def chain_rows(n: int = 200, T: float = 3.0, Ns=(100, 400, 1600), high_order=((2, 40), (3, 10), (3, 16))):
    """Linear chain ``q'' = −K q`` (unit masses), CBVP; exact p(0) by modal decomposition.

    glep: P1 (trapezoid, :class:`~glep.bvp.VectorisedAction`) and P2/P3 with
    Gauss quadrature (:class:`~glep.bvp.GalerkinAction`, vertex order 2r);
    no form is compiled on either path.
    """
    edges = [(i, i + 1) for i in range(n - 1)]
    sys_ = LagrangianSystem(n, [DiagonalMass(n, None), Harmonic(n, "k"), SpringCoupling(n, edges, "J")])
    k = 1.0 + 0.5 * np.sin(np.arange(n))
    J = np.full(n - 1, 0.8)
    par = {"k": k, "J": J}
    K = np.diag(k)
    for e, (i, j) in enumerate(edges):
        K[i, i] += J[e]
        K[j, j] += J[e]
        K[i, j] -= J[e]
        K[j, i] -= J[e]
    q0 = np.sin(np.linspace(0, np.pi, n))
    qT = 0.5 * np.cos(np.linspace(0, 2 * np.pi, n))
    w2, U = np.linalg.eigh(K)
    w = np.sqrt(w2)
    a, c = U.T @ q0, U.T @ qT
    b = (c - a * np.cos(w * T)) / np.sin(w * T)
    p0_exact = U @ (b * w)
    rows = []

    def fun(t, Y):
        return np.vstack([Y[n:], -K @ Y[:n]])

    Jc = np.block([[np.zeros((n, n)), np.eye(n)], [-K, np.zeros((n, n))]])

    def jac(t, Y):
        return np.repeat(Jc[:, :, None], Y.shape[1], axis=2)

    def bc(ya, yb):
        return np.concatenate([ya[:n] - q0, yb[:n] - qT])

    x = np.linspace(0, T, 41)
    Y0 = np.vstack([np.outer(q0, 1 - x / T) + np.outer(qT, x / T), np.outer((qT - q0) / T, np.ones_like(x))])
    for tol in (1e-3,):
        t0 = time.perf_counter()
        sol = scipy_solve_bvp(fun, bc, x, Y0, fun_jac=jac, tol=tol, max_nodes=20000)
        t = time.perf_counter() - t0
        err = np.max(np.abs(sol.sol(0.0)[n:] - p0_exact)) / np.max(np.abs(p0_exact))
        rows.append((f"chain n={n}", f"scipy solve_bvp tol={tol:g} ({sol.x.size} nodes)", t, err))
    for N in Ns:
        t, s = timed(lambda N=N: solve_bvp(sys_, par, (T, N), CBVP(q0, qT), assembler="vectorised"), repeat=1)
        err = np.max(np.abs(s.p0 - p0_exact)) / np.max(np.abs(p0_exact))
        rows.append((f"chain n={n}", f"glep.bvp vectorised P1 N={N}", t, err))
    for deg, N in high_order:
        t, s = timed(lambda deg=deg, N=N: solve_bvp(sys_, par, (T, N), CBVP(q0, qT), assembler="vectorised",
                                                    degree=deg, quadrature="gauss"))
        err = np.max(np.abs(s.p0 - p0_exact)) / np.max(np.abs(p0_exact))
        rows.append((f"chain n={n}", f"glep.bvp vectorised P{deg} Gauss N={N}", t, err))
    return rows


# -- 2. time per Newton iteration -----------------------------------------------------------
def chain3():
    n = 3
    sys_ = LagrangianSystem(n, [DiagonalMass(n, None), Harmonic(n, "k"), SpringCoupling(n, [(0, 1), (1, 2)], "J"),
                                Quartic(n, 0.5)], name="nonlinear chain n=3")
    return sys_, {"k": np.ones(n), "J": 0.5 * np.ones(2)}


def per_iteration(N: int, orderings, comm=COMM):
    """Newton on the n = 3 chain: a cold solve, then a warm re-solve from the same guess.

    The cold solve is the first in the process for this problem: it includes
    the symbolic factorisation (and MUMPS analysis) and the first touch of
    the factor's memory.  The warm solve repeats the same iterations with the
    Jacobian matrix and symbolic factorisation kept on the problem (as the
    nudged solves of an estimator or a continuation do): numeric
    factorisation, triangular solves, residual and Jacobian per iteration.
    """
    sys_, par = chain3()
    out = {}
    t0 = time.perf_counter()
    mesh = uniform_time_mesh(comm, 1.0, N)
    t_mesh = time.perf_counter() - t0
    for ordering in orderings:
        t0 = time.perf_counter()
        disc = make_discretisation(sys_, par, mesh, assembler="vectorised")
        problem = ReducedProblem(disc, CBVP(np.array([1.0, 0.5, -0.5]), np.zeros(3)))
        t_setup = time.perf_counter() - t0
        solver = "mumps" if ordering == "mumps" else "petsc"
        opts = {} if ordering == "mumps" else {"pc_factor_mat_ordering_type": ordering}
        runs = []
        for _ in range(2):
            r = set_guess(problem, None)
            disc.timings.update(residual=0.0, jacobian=0.0)
            res = newton(problem, r, lu_solver=solver, options=opts, linesearch="basic")
            its = max(res.iterations, 1)
            runs.append((res, its, disc.timings["residual"] / (its + 1), disc.timings["jacobian"] / its))
        (cold, its, _, _), (warm, its_w, t_res, t_jac) = runs
        problem.release_solver()
        out[ordering] = {"N": N, "ranks": comm.size, "iterations": cold.iterations,
                         "s_per_iter_cold": cold.wall_time / its, "s_per_iter": warm.wall_time / its_w,
                         "residual": t_res, "jacobian": t_jac, "setup": t_setup, "mesh": t_mesh,
                         "peak_MB": peak_mb()}
    return out


def compile_rows(N: int = 10_000):
    """FE (UFL → FFCx → C, fresh JIT cache) vs vectorised assembler: set-up and assembly times."""
    import tempfile

    rows = []
    for n in (3, 12):
        edges = [(i, i + 1) for i in range(n - 1)]
        sys_ = LagrangianSystem(n, [DiagonalMass(n, None), Harmonic(n, "k"), SpringCoupling(n, edges, "J"),
                                    Quartic(n, 0.5)])
        par = {"k": np.ones(n), "J": 0.5 * np.ones(n - 1)}
        mesh = uniform_time_mesh(MPI.COMM_SELF, 1.0, N)
        with tempfile.TemporaryDirectory() as tmp:
            for kind in ("fe", "vectorised"):
                t0 = time.perf_counter()
                disc = make_discretisation(sys_, par, mesh, assembler=kind, jit_options={"cache_dir": tmp})
                disc.u.x.array[:] = 0.1
                b = disc.u.x.petsc_vec.duplicate()
                disc.residual(b)
                A = disc.create_jacobian()
                disc.jacobian(A)
                t_first = time.perf_counter() - t0
                t_res, _ = timed(lambda d=disc, b=b: d.residual(b))
                t_jac, _ = timed(lambda d=disc, A=A: d.jacobian(A))
                rows.append((n, kind, t_first, t_res, t_jac))
                A.destroy()
                b.destroy()
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="also N = 1e6 elements")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test, a few seconds)")
    ap.add_argument("--mpi-child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mpi_child:
        res = per_iteration(args.mpi_child, ["mumps"])
        if COMM.rank == 0:
            print("JSON" + json.dumps(res["mumps"]))
        return
    print("== bvp: time to accuracy (best of 3 runs, wall seconds; error = relative error of p(0)) ==")
    print(f"{'problem':<14} {'method':<44} {'time [s]':>9} {'rel. error':>11}")
    rows = accuracy_rows(args.quick)
    for prob, meth, t, err in rows:
        print(f"{prob:<14} {meth:<44} {t:9.4f} {err:11.2e}")
    print("   speed-up = scipy time / time of the fastest glep row at equal or better accuracy:")
    for prob, meth, t, err in rows:
        if meth.startswith("scipy"):
            better = [tg for pg, mg, tg, eg in rows if pg == prob and mg.startswith("glep") and eg <= err]
            ratio = f"{t / min(better):.1f}x ({min(better):.4f} s)" if better else "no glep row as accurate"
            print(f"   {prob:<14} {meth:<44} speed-up {ratio}")
    print("\n== bvp: FE (UFL, fresh JIT cache) vs vectorised assembly, N = 1e4 P1 elements ==")
    print(f"{'n':>4} {'assembler':<11} {'compile+first [s]':>18} {'residual [s]':>13} {'Jacobian [s]':>13}")
    for n, kind, t_first, t_res, t_jac in compile_rows(1000 if args.quick else 10_000):
        print(f"{n:>4} {kind:<11} {t_first:18.3f} {t_res:13.4f} {t_jac:13.4f}")
    sizes = [1000] if args.quick else [10_000, 100_000] + ([1_000_000] if args.full else [])
    print("\n== bvp: time per Newton iteration, n = 3, P1 (vectorised block-tridiagonal assembly) ==")
    print("   cold = first solve (symbolic factorisation, first touch of memory); warm = re-solve with the")
    print("   Jacobian and symbolic factorisation kept; resid/jac = seconds per evaluation in the warm solve")
    print(f"{'N':>9} {'LU':<14} {'its':>4} {'cold s/it':>9} {'warm s/it':>9} {'resid':>7} {'jac':>7} {'setup':>7} "
          f"{'mesh':>7} {'peak MB':>8}")
    serial = {}
    for N in sizes:
        orderings = ["natural", "rcm", "nd", "mumps"] if N <= 100_000 else ["natural", "mumps"]
        for name, r in per_iteration(N, orderings, MPI.COMM_SELF).items():
            serial[(N, name)] = r
            print(f"{N:>9} {('petsc ' + name) if name != 'mumps' else 'mumps':<14} {r['iterations']:>4} "
                  f"{r['s_per_iter_cold']:9.3f} {r['s_per_iter']:9.3f} {r['residual']:7.3f} {r['jacobian']:7.3f} "
                  f"{r['setup']:7.2f} {r['mesh']:7.2f} {r['peak_MB']:8.0f}")
    print("\n== bvp: speed-up on 2 ranks (MUMPS) ==")
    here = Path(__file__).resolve()
    mpirun = Path(sys.executable).with_name("mpirun")
    for N in sizes:
        cmd = [str(mpirun), "-n", "2", sys.executable, str(here), "--mpi-child", str(N)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        line = [x for x in out.stdout.splitlines() if x.startswith("JSON")]
        if not line:
            print(f"{N:>9} mpirun failed: {out.stderr[-300:]}")
            continue
        r2 = json.loads(line[0][4:])
        r1 = serial[(N, "mumps")]
        print(f"{N:>9} cold: 1 rank {r1['s_per_iter_cold']:.3f} s/iter, 2 ranks {r2['s_per_iter_cold']:.3f} s/iter, "
              f"speed-up {r1['s_per_iter_cold'] / r2['s_per_iter_cold']:.2f}; warm: 1 rank {r1['s_per_iter']:.3f}, "
              f"2 ranks {r2['s_per_iter']:.3f}, speed-up {r1['s_per_iter'] / r2['s_per_iter']:.2f}; "
              f"residual + Jacobian {r1['residual'] + r1['jacobian']:.4f} -> {r2['residual'] + r2['jacobian']:.4f} s "
              f"(peak MB per rank {r2['peak_MB']:.0f})")


if __name__ == "__main__":
    main()
