"""Space-time field solves (glep.bvp.spacetime): a 1+1-D CBVP up to 10⁶ dofs (MUMPS LU) and a 2+1-D CBVP with
the iterative solver (MINRES preconditioned by the elliptic companion), at growing sizes.

The problem is the linear wave ``φ_tt = φ_xx`` (``φ_tt = Δφ`` in 2-D) with the standing wave
``sin(πx)cos(πt)`` (``sin(πx)sin(πy)cos(√2πt)``) on the whole boundary of ``[0, 1]ᵈ × [0, T]``, ``T = 1/√2``
(``1/√3`` in 2-D: no resonant mode), Q1 elements with Gauss–Lobatto in time.  Each case runs in a fresh
interpreter so that its peak resident memory (``resource.getrusage``, ``ru_maxrss``) is its own.  Reported:
dofs, set-up time (mesh, forms, restriction), Newton iterations, solve time (wall clock and, in brackets,
the process's CPU time, which is what a loaded machine does not inflate), the time of the post-solve
singularity check (inverse iteration with the kept factorisation), the Krylov iterations (2+1-D), the
``L²`` error against the exact solution and the peak memory (after the solve, and at the end: the error
is integrated on a degree-2 space, which costs memory of its own).  Next to it, the hand-written MUMPS baseline
of ``/work/shared/reference/fields.md`` (1 020 850 dofs: 14.4 s + 5 s set-up, 1.97 GB).

    .venv/bin/python benchmarks/bench_spacetime.py            # full: up to 1 020 850 dofs (~1 min)
    .venv/bin/python benchmarks/bench_spacetime.py --ranks 2  # and the largest 1+1-D case on 2 MPI ranks
    .venv/bin/python benchmarks/bench_spacetime.py --smoke    # small sizes (seconds)
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

FULL = {"1d": [150, 400, 1200], "2d": [8, 16, 32, 48]}
SMOKE = {"1d": [20, 40], "2d": [4, 8]}
REFERENCE = {"dofs": 1_020_850, "solve_s": 14.4, "setup_s": 5.0, "memory_mb": 1970.0}


def run_case(kind: str, n: int) -> dict:
    """One case in this interpreter; returns its figures (peak memory of this process)."""
    import numpy as np
    from mpi4py import MPI

    from glep.bvp import spacetime as st
    from glep.bvp.spacetime_krylov import KrylovNewton
    from glep.field_models import wave

    t0, c0 = time.perf_counter(), time.process_time()
    if kind == "1d":
        T = 1.0 / math.sqrt(2.0)

        def exact(X):
            return np.sin(np.pi * X[0]) * np.cos(np.pi * X[1])

        mesh = st.spacetime_mesh(MPI.COMM_WORLD, 1.0, T, n, int(round(n * T)))
        solver = None
    else:
        T = 1.0 / math.sqrt(3.0)

        def exact(X):
            return np.sin(np.pi * X[0]) * np.sin(np.pi * X[1]) * np.cos(math.sqrt(2.0) * np.pi * X[2])

        mesh = st.spacetime_mesh(MPI.COMM_WORLD, [(0.0, 1.0), (0.0, 1.0)], T, n, int(round(n * T)))
        solver = KrylovNewton()
    problem = st.SpaceTimeProblem(wave(), mesh, st.SpaceTimeCBVP(exact, exact))
    setup, setup_cpu = time.perf_counter() - t0, time.process_time() - c0
    c1 = time.process_time()
    sol = st.solve(problem, solver=solver, check_singular=False)
    solve_cpu = time.process_time() - c1
    rss_solve = _peak_rss_mb()
    check = None
    if kind == "1d":
        t1 = time.perf_counter()
        problem.singularity_check()
        check = time.perf_counter() - t1
    return {"kind": kind, "n": n, "dofs": problem.V.dofmap.index_map.size_global,
            "unknowns": problem.P.getSize()[1], "setup_s": setup, "solve_s": sol.report.wall_time,
            "setup_cpu_s": setup_cpu, "solve_cpu_s": solve_cpu,
            "newton": sol.report.iterations, "krylov": sol.linear_iterations, "check_s": check,
            "l2_error": problem.l2_error(exact, raise_degree=1), "ranks": MPI.COMM_WORLD.size,
            "solve_memory_mb": rss_solve, "memory_mb": _peak_rss_mb()}


def _peak_rss_mb() -> float:
    """The peak resident memory so far of the largest rank (``ru_maxrss``, MB)."""
    from mpi4py import MPI

    return MPI.COMM_WORLD.allreduce(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, op=MPI.MAX)


def _subprocess(kind: str, n: int, ranks: int = 1) -> dict:
    launcher = [] if ranks == 1 else [str(Path(sys.executable).with_name("mpirun")), "-n", str(ranks)]
    proc = subprocess.run([*launcher, sys.executable, __file__, "--case", kind, str(n)], capture_output=True,
                          text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"case {kind} n={n} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _table(rows: list[dict], cols: list[tuple[str, str, str]]) -> str:
    cells = [["-" if r.get(key) is None else format(r[key], fmt) for key, _, fmt in cols] for r in rows]
    widths = [max([len(title)] + [len(c[i]) for c in cells]) for i, (_, title, _) in enumerate(cols)]
    lines = ["  ".join(f"{title:>{w}}" for (_, title, _), w in zip(cols, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(f"{c:>{w}}" for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="small sizes only (the smoke test)")
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--ranks", type=int, default=1, help="also run the largest 1+1-D case on this many MPI ranks")
    ap.add_argument("--case", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case:
        from mpi4py import MPI

        out = run_case(args.case[0], int(args.case[1]))
        if MPI.COMM_WORLD.rank == 0:
            print(json.dumps(out))
        return 0
    sizes = SMOKE if args.smoke else FULL
    t0 = time.perf_counter()
    rows1 = [_subprocess("1d", n) for n in sizes["1d"]]
    if args.ranks > 1:
        rows1.append(_subprocess("1d", sizes["1d"][-1], args.ranks))
    print("1. 1+1-D wave CBVP, Q1, Gauss-Lobatto in time, MUMPS LU (peak RSS: the largest rank's)\n")
    print(_table(rows1, [("n", "n_x", "d"), ("ranks", "ranks", "d"), ("dofs", "dofs", ",d"),
                         ("newton", "Newton its", "d"),
                         ("setup_s", "set-up [s]", ".2f"), ("setup_cpu_s", "(CPU)", ".2f"),
                         ("solve_s", "solve [s]", ".2f"), ("solve_cpu_s", "(CPU)", ".2f"),
                         ("check_s", "λ_min check [s]", ".2f"), ("l2_error", "L2 error", ".2e"),
                         ("solve_memory_mb", "peak RSS solve [MB]", ".0f"), ("memory_mb", "with error [MB]", ".0f")]))
    print(f"\nreference (fields.md, hand-written MUMPS): {REFERENCE['dofs']:,} dofs, {REFERENCE['solve_s']} s "
          f"+ {REFERENCE['setup_s']} s set-up, {REFERENCE['memory_mb']:.0f} MB")
    rows2 = [_subprocess("2d", n) for n in sizes["2d"]]
    print("\n2. 2+1-D wave CBVP, Q1, MINRES + elliptic companion K_t + K_x (CG + GAMG inner), 1 rank\n")
    print(_table(rows2, [("n", "n_x = n_y", "d"), ("dofs", "dofs", ",d"), ("newton", "Newton its", "d"),
                         ("krylov", "MINRES its", "d"), ("setup_s", "set-up [s]", ".2f"),
                         ("solve_s", "solve [s]", ".2f"), ("solve_cpu_s", "(CPU)", ".2f"),
                         ("l2_error", "L2 error", ".2e"), ("memory_mb", "peak RSS [MB]", ".0f")]))
    print(f"\ntotal benchmark time {time.perf_counter() - t0:.1f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"mode": "smoke" if args.smoke else "full", "1d": rows1, "2d": rows2,
                       "reference": REFERENCE}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
