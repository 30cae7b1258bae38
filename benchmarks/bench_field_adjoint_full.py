"""The checkpointed discrete adjoint of a field at full size, run (not counted): 10⁶ dofs × 10³ steps.

Issue 9 asks that the ground truth at 10⁶ dofs × 10³ leapfrog steps fit in memory.  This script runs it:
2-D sine-Gordon on the unit square (P1, lumped mass, 1000 × 1000 cells = 1 002 001 dofs), a trainable
coupling field κ(x), a terminal read-out, N = 1000 steps; the adjoint with a binomial schedule of
``--checkpoints`` snapshots next to the echo (centred β), each in its own process so that the peak
resident memory (``ru_maxrss``) of one method is not the other's.  Prints wall time, peak memory and
the relative difference of the two gradients.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_field_adjoint_full.py            # ~10 min
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_field_adjoint_full.py --cells 100 --steps 100   # smoke
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def _run(method: str, cells: int, steps: int, checkpoints: int) -> dict:
    import dolfinx_solver  # noqa: F401, I001  isort: skip
    import resource
    import time

    import numpy as np
    from dolfinx import mesh as dmesh
    from mpi4py import MPI

    from glep import field_models as fm
    from glep.estimators.field_estimators import field_echo
    from glep.estimators.nudging import Centred
    from glep.field_system import FieldCost, FieldSystem
    from glep.ivp.field_adjoint import field_adjoint

    msh = dmesh.create_unit_square(MPI.COMM_WORLD, cells, cells)
    sys_ = FieldSystem(fm.sine_gordon(kappa=lambda x: 1.0 + 0.3 * x[0]), msh,
                       terminal_cost=FieldCost(target=0.1, region=lambda x: x[0] >= 0.5),
                       initial=(lambda x: 2.0 * np.exp(-30 * ((x[0] - 0.5) ** 2 + (x[1] - 0.5) ** 2)), 0.0))
    T = 0.5 * steps / cells  # τ = h/2: within the lumped leapfrog's stability limit h/√2
    start = time.perf_counter()
    if method == "adjoint":
        res = field_adjoint(sys_, T, steps, checkpoints=checkpoints, riesz=False)
        extra = {"stored_vectors": res.memory.get("peak_vectors"), "forward_steps": res.memory.get("forward_steps")}
    else:
        res = field_echo(sys_, T, steps, Centred(1e-4), riesz=False)
        extra = {"stored_vectors": getattr(res, "peak_vectors", None), "forward_steps": 3 * steps}
    wall = time.perf_counter() - start
    g = sys_.gather(res.theta["kappa"].dual, "kappa")
    return {"method": method, "dofs": sys_.ndofs, "steps": steps, "wall_s": wall,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "grad": g.tolist(), **extra}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=1000)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--checkpoints", type=int, default=32)
    p.add_argument("--child", choices=["adjoint", "echo"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(_run(a.child, a.cells, a.steps, a.checkpoints)))
        return
    out = {}
    for method in ("adjoint", "echo"):
        proc = subprocess.run([sys.executable, __file__, "--child", method, "--cells", str(a.cells), "--steps",
                               str(a.steps), "--checkpoints", str(a.checkpoints)], capture_output=True, text=True)
        if proc.returncode:
            sys.exit(proc.stderr)
        out[method] = json.loads(proc.stdout.strip().splitlines()[-1])
    import numpy as np

    ga, ge = np.array(out["adjoint"]["grad"]), np.array(out["echo"]["grad"])
    print(f"2-D sine-Gordon, {out['adjoint']['dofs']} dofs x {a.steps} steps, dC/dkappa (P1 field)")
    print(f"{'method':<34} {'wall [s]':>9} {'peak RSS [MB]':>14} {'stored vectors':>15} {'forward steps':>14}")
    for m, label in (("adjoint", f"adjoint, {a.checkpoints} checkpoints"), ("echo", "echo (centred beta = 1e-4)")):
        r = out[m]
        print(f"{label:<34} {r['wall_s']:9.1f} {r['peak_rss_mb']:14.0f} {str(r['stored_vectors']):>15} "
              f"{str(r['forward_steps']):>14}")
    print(f"echo vs adjoint: relative error {np.linalg.norm(ge - ga) / np.linalg.norm(ga):.2e}")


if __name__ == "__main__":
    main()
