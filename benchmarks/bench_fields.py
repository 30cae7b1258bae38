"""Benchmarks of field time stepping (glep.field_system + glep.ivp.field_stepping).

Run::

    .venv/bin/python benchmarks/bench_fields.py            # 10⁴ … 10⁶ dofs, 2-rank speed-up at 10⁶ (a few minutes)
    .venv/bin/python benchmarks/bench_fields.py --smoke    # small sizes (tests/test_benchmarks_smoke.py)
    .venv/bin/python benchmarks/bench_fields.py --only echo   # section 3 alone (echo cost at 10⁵ dofs)
    .venv/bin/python benchmarks/bench_fields.py --only nls    # section 5 alone (NLS echo and adjoint)

Prints:

1. time per leapfrog step of the 2-D sine-Gordon field (P1, lumped mass, unit square, zero Dirichlet
   values) against the number of spatial dofs, next to a hand-written loop on the same discretisation
   measured in the same run, best of 3 interleaved (PETSc ``MatMult`` with the stiffness matrix + NumPy ``sin``),
   with the largest difference between the two trajectories;
2. the speed-up of glep's stepping on 2 MPI ranks at the largest size (this script under ``mpirun -n 2``);
3. the echo's cost in forward passes (wall time of the echo estimate / one forward pass) for parameter
   fields with few and many dofs (DG0 and P1 κ), next to the discrete adjoint's;
4. memory: the adjoint's peak number of stored state vectors with and without binomial checkpointing
   (measured on a run, and counted from the schedule at 10⁶ dofs × 10³ steps) against the echo's constant;
5. the NLS field (implicit midpoint): the conjugation echo's and the discrete adjoint's cost in forward passes.
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401  isort: skip  (configures PETSc before dolfinx loads)

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import dolfinx.fem.petsc as fpetsc
import numpy as np
import ufl
from dolfinx import fem
from dolfinx import mesh as dmesh
from mpi4py import MPI

from glep import field_models as fm
from glep.estimators.field_estimators import field_echo
from glep.field_system import FieldCost, FieldSystem
from glep.ivp import field_stepping as fs
from glep.ivp.field_adjoint import field_adjoint

COMM = MPI.COMM_WORLD
ROOT = COMM.rank == 0


def say(*a) -> None:
    if ROOT:
        print(*a, flush=True)


def sg_square(n: int, kappa=1.0, element=("P", 1), cost: bool = False) -> FieldSystem:
    msh = dmesh.create_unit_square(COMM, n, n)
    kw = {"cost": FieldCost(target=lambda x, t: 0.1 * ufl.sin(t) * x[0])} if cost else {}
    return FieldSystem(fm.sine_gordon(kappa=kappa, element=element), msh,
                       initial=(lambda x: 4 * np.sin(np.pi * x[0]) * np.sin(np.pi * x[1]), 0.0), **kw)


def glep_steps(sys_: FieldSystem, steps: int, h: float) -> tuple[float, np.ndarray]:
    fs.forward(sys_, 2 * h, 2, loss=False)  # warm-up (kernels compiled, caches)
    COMM.barrier()
    t0 = time.perf_counter()
    res = fs.forward(sys_, steps * h, steps, loss=False)
    COMM.barrier()
    return (time.perf_counter() - t0) / steps, res.q


def baseline_steps(sys_: FieldSystem, steps: int, h: float) -> tuple[float, np.ndarray]:
    """Hand-written leapfrog: K from PETSc (MatMult), m lumped, NumPy sin at the nodes, zero Dirichlet dofs."""
    V = sys_.V
    u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
    K = fpetsc.assemble_matrix(fem.form(ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx))
    K.assemble()
    n = sys_.n_owned
    m = sys_.m[:n].copy()
    minv = 1.0 / m
    free = sys_.free[:n].astype(float)
    q0, p0 = sys_.initial_state()
    qv, kq = K.createVecRight(), K.createVecLeft()
    q, p = qv.array, p0[:n].copy()
    q[:] = q0[:n]

    def force():
        K.mult(qv, kq)
        return -(kq.array + m * np.sin(q))

    def run(k):
        nonlocal p
        F = force()
        for _ in range(k):
            p += 0.5 * h * F
            q[:] += h * minv * free * p
            F = force()
            p += 0.5 * h * F

    run(2)
    q[:] = q0[:n]
    p = p0[:n].copy()
    COMM.barrier()
    t0 = time.perf_counter()
    run(steps)
    COMM.barrier()
    return (time.perf_counter() - t0) / steps, q.copy()


REPEATS = 3  # each timing is the best of REPEATS, glep and the reference interleaved (the machine is shared)


def section_steps(sizes, steps: int) -> list[dict]:
    say("\n1. Time per leapfrog step, 2-D sine-Gordon P1 (lumped mass), 1 rank" if COMM.size == 1 else
        f"\n1. Time per leapfrog step on {COMM.size} ranks")
    say(f"{'dofs':>10} {'glep ms/step':>13} {'hand-written ms/step':>21} {'glep/hand':>10} {'max |Δq|':>10}")
    rows = []
    for n in sizes:
        sys_ = sg_square(n)
        h = 0.5 / n
        tg = tb = np.inf
        for _ in range(REPEATS):
            t, qg = glep_steps(sys_, steps, h)
            tg = min(tg, t)
            t, qb = baseline_steps(sys_, steps, h)
            tb = min(tb, t)
        diff = COMM.allreduce(float(np.max(np.abs(qg[:sys_.n_owned] - qb))), op=MPI.MAX)
        rows.append({"n": n, "dofs": sys_.ndofs, "glep": tg, "baseline": tb, "max_diff": diff})
        say(f"{sys_.ndofs:>10} {1e3 * tg:>13.2f} {1e3 * tb:>21.2f} {tg / tb:>10.2f} {diff:>10.1e}")
    if len(rows) > 1:
        d = np.log([r["dofs"] for r in rows])
        slope = np.polyfit(d, np.log([r["glep"] for r in rows]), 1)[0]
        say(f"fitted time ∝ dofs^{slope:.2f} (goal: 1)")
    return rows


def section_speedup(n: int, steps: int, one_rank: dict) -> dict:
    say(f"\n2. Speed-up of glep's stepping on 2 ranks at {one_rank['dofs']} dofs")
    mpirun = Path(sys.executable).with_name("mpirun")
    cmd = [str(mpirun), "-n", "2", sys.executable, __file__, "--child-steps", str(n), "--steps", str(steps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        say("2-rank run failed:", proc.stdout[-2000:], proc.stderr[-2000:])
        return {"failed": True}
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    out = {"dofs": row["dofs"], "glep_1": one_rank["glep"], "glep_2": row["glep"],
           "speedup": one_rank["glep"] / row["glep"], "baseline_speedup": one_rank["baseline"] / row["baseline"]}
    say(f"glep {1e3 * out['glep_1']:.2f} → {1e3 * out['glep_2']:.2f} ms/step: speed-up {out['speedup']:.2f} "
        f"(goal ≥ 1.6, limit 2); hand-written loop: {out['baseline_speedup']:.2f}")
    return out


def section_echo_cost(n: int, steps: int) -> list[dict]:
    say(f"\n3. Echo cost in forward passes (2-D sine-Gordon, {steps} steps, centred β)")
    say(f"{'parameter field':>16} {'P (dofs)':>9} {'forward s':>10} {'echo/forward':>13} {'adjoint/forward':>16}")
    say("(one forward pass: field_forward with the running loss; the echo: 1 free pass + 2 nudged echoes, whose "
        "force and ∂_θU come from one node-wise evaluation, FieldSystem.force_and_theta)")
    rows = []
    for element in (("DG", 0), ("P", 1)):
        sys_ = sg_square(n, kappa=1.0, element=element, cost=True)
        T = steps * 0.5 / n
        fs.forward(sys_, T, 2)
        tf = te = ta = np.inf
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            fs.forward(sys_, T, steps)
            tf = min(tf, time.perf_counter() - t0)
            t0 = time.perf_counter()
            field_echo(sys_, T, steps, riesz=False)
            te = min(te, time.perf_counter() - t0)
            t0 = time.perf_counter()
            field_adjoint(sys_, T, steps, riesz=False)
            ta = min(ta, time.perf_counter() - t0)
        P = sys_.spaces["kappa"].dofmap.index_map.size_global
        rows.append({"element": f"{element[0]}{element[1]}", "P": P, "forward": tf, "echo_passes": te / tf,
                     "adjoint_passes": ta / tf})
        say(f"{rows[-1]['element']:>16} {P:>9} {tf:>10.3f} {te / tf:>13.2f} {ta / tf:>16.2f}")
    return rows


def nls_square(n: int):
    """2-D NLS on the unit square (P1, zero Dirichlet values), DG0 potential, running and terminal costs."""
    from glep.field_midpoint import MidpointFieldSystem  # noqa: PLC0415

    def initial(x):
        env = np.exp(-8 * ((x[0] - 0.5) ** 2 + (x[1] - 0.5) ** 2))
        return np.vstack([2 * env * np.cos(3 * x[0]), 2 * env * np.sin(3 * x[0])])

    target = lambda x, t: ufl.as_vector([0.1 * x[0], 0.0])  # noqa: E731
    return MidpointFieldSystem(fm.nls(g=1.5, potential=lambda x: 1.0 + x[1], element=("DG", 0)),
                               dmesh.create_unit_square(COMM, n, n), initial=(initial, 0.0),
                               cost=FieldCost(target=target), terminal_cost=FieldCost(target=target))


def section_nls(n: int, steps: int) -> dict:
    """The NLS echo (conjugation) and the midpoint adjoint, in forward passes (Newton solves dominate)."""
    from glep.estimators.field_nls import nls_echo  # noqa: PLC0415
    from glep.ivp.field_midpoint_adjoint import midpoint_adjoint  # noqa: PLC0415

    say(f"\n5. NLS (implicit midpoint, MUMPS), 2-D, {steps} steps, centred β: cost in forward passes")
    sys_ = nls_square(n)
    T = 0.05
    fs.midpoint_forward(sys_, T, 2)
    tf = te = ta = np.inf
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fw = fs.midpoint_forward(sys_, T, steps)
        tf = min(tf, time.perf_counter() - t0)
        t0 = time.perf_counter()
        nls_echo(sys_, T, steps, riesz=False)
        te = min(te, time.perf_counter() - t0)
        t0 = time.perf_counter()
        midpoint_adjoint(sys_, T, steps, riesz=False)
        ta = min(ta, time.perf_counter() - t0)
    its = float(np.mean(fw.meta["newton_iterations"]))
    row = {"dofs": sys_.ndofs, "forward": tf, "echo_passes": te / tf, "adjoint_passes": ta / tf,
           "newton_per_step": its}
    say(f"{sys_.ndofs} dofs: forward {tf:.3f} s ({its:.1f} Newton iterations per step), echo/forward "
        f"{te / tf:.2f}, adjoint/forward {ta / tf:.2f}")
    return row


def schedule_peak(N: int, snaps: int | None) -> tuple[int, int]:
    """Peak stored state vectors and forward steps of the adjoint's schedule, counted without a PDE."""
    if snaps is None:
        return N + 1 + 4, N
    from checkpoint_schedules import Copy, Forward, Move, MultistageCheckpointSchedule, Reverse

    snap, deps, peak, steps = set(), set(), 0, 0
    for a in MultistageCheckpointSchedule(N, snaps, 0):
        if isinstance(a, Forward):
            if a.write_ics:
                snap.add(a.n0)
            if a.write_adj_deps:
                deps.update(range(a.n0 + 1, a.n1 + 1))
            steps += a.n1 - a.n0
        elif isinstance(a, Reverse) and a.clear_adj_deps:
            deps.difference_update(range(a.n0 + 1, a.n1 + 1))
        elif isinstance(a, Move):
            snap.discard(a.n)
        elif isinstance(a, Copy):
            pass
        peak = max(peak, 2 * len(snap) + len(deps))
    return peak + 4, steps


def section_memory(n: int, steps: int) -> dict:
    say(f"\n4. Memory: stored state vectors (measured: {steps} steps, 2-D sine-Gordon)")
    sys_ = sg_square(n, cost=True)
    T = steps * 0.5 / n
    echo = field_echo(sys_, T, steps, riesz=False)
    rows = []
    for snaps in (None, 10, 3):
        adj = field_adjoint(sys_, T, steps, checkpoints=snaps, riesz=False)
        rows.append({"checkpoints": snaps, **adj.memory})
        say(f"adjoint, checkpoints={snaps!s:>4}: {adj.memory['peak_vectors']:>5} vectors "
            f"({adj.memory['peak_bytes'] / 2**20:.1f} MiB), {adj.memory['forward_steps']} forward steps")
    say(f"echo: {echo.peak_vectors} vectors, {echo.passes} passes (constant in N)")
    big_n, big_steps, vec = 1_002_001, 1000, 1_002_001 * 8
    say(f"counted from the schedule at {big_n} dofs × {big_steps} steps ({vec / 2**20:.1f} MiB per vector):")
    counted = []
    for snaps in (None, 32, 10):
        peak, fsteps = schedule_peak(big_steps, snaps)
        counted.append({"checkpoints": snaps, "peak_vectors": peak, "forward_steps": fsteps,
                        "peak_GiB": peak * vec / 2**30})
        say(f"  adjoint, checkpoints={snaps!s:>4}: {peak:>5} vectors = {peak * vec / 2**30:6.2f} GiB, "
            f"{fsteps} forward steps")
    say(f"  echo: {echo.peak_vectors} vectors = {echo.peak_vectors * vec / 2**30:.2f} GiB, 3 passes")
    return {"measured": rows, "echo_vectors": echo.peak_vectors, "counted_1e6x1e3": counted}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="small sizes (seconds)")
    ap.add_argument("--json", type=Path, help="write the numbers as JSON")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--only", choices=("echo", "nls"), help="run one section: 'echo' (3) or 'nls' (5)")
    ap.add_argument("--child-steps", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    global REPEATS
    if args.smoke:
        REPEATS = 1
    if args.child_steps:
        sys_ = sg_square(args.child_steps)
        tg = tb = np.inf
        for _ in range(REPEATS):
            tg = min(tg, glep_steps(sys_, args.steps, 0.5 / args.child_steps)[0])
            tb = min(tb, baseline_steps(sys_, args.steps, 0.5 / args.child_steps)[0])
        if ROOT:
            print(json.dumps({"dofs": sys_.ndofs, "glep": tg, "baseline": tb}))
        return
    start = time.perf_counter()
    if args.only is not None:
        data = {"echo_cost": section_echo_cost(20 if args.smoke else 316, 10 if args.smoke else 20)} \
            if args.only == "echo" else {"nls": section_nls(8 if args.smoke else 32, 4 if args.smoke else 20)}
        say(f"\ntotal benchmark time {time.perf_counter() - start:.1f} s")
        if args.json and ROOT:
            args.json.write_text(json.dumps(data, indent=1))
        return
    sizes = (30, 60) if args.smoke else (100, 316, 1000)
    steps = 5 if args.smoke else args.steps
    data = {"mode": "smoke" if args.smoke else "full"}
    data["steps"] = section_steps(sizes, steps)
    data["speedup"] = section_speedup(sizes[-1], steps, data["steps"][-1])
    data["echo_cost"] = section_echo_cost(20 if args.smoke else 316, 10 if args.smoke else 20)
    data["memory"] = section_memory(20 if args.smoke else 100, 20 if args.smoke else 200)
    if not args.smoke:  # (the NLS forms take seconds to compile: left out of the smoke run)
        data["nls"] = section_nls(32, 20)
    say(f"\ntotal benchmark time {time.perf_counter() - start:.1f} s")
    if args.json and ROOT:
        args.json.write_text(json.dumps(data, indent=1))


if __name__ == "__main__":
    main()
