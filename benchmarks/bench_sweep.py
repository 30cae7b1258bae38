r"""Sweep throughput on 1 and 2 MPI ranks, and the cost of committing results next to the computation.

A study of many small work items (coupled oscillators, ``n`` 2–4, 16–48 steps, several seeds, three
estimator rows) is run by ``glep.estimators.sweep.run_sweep`` under ``mpirun -n 1`` and ``mpirun -n 2``
(fresh processes, so both pay the same start-up; only the items' loop is timed: running, recording to
the journal and merging into the study file).  Reported per run: items per second, the speed-up of 2
ranks over 1, and the share of rank 0's loop spent writing (``record`` + ``commit``), with the study's
default ``commit_interval`` and with a merge after every item (``commit_interval = 0``, the worst case).
The 1- and 2-rank files are also checked to hold the same numbers.

    .venv/bin/python benchmarks/bench_sweep.py            # ~1 min on the 2-core VM
    .venv/bin/python benchmarks/bench_sweep.py --smoke    # a few seconds (tests/test_benchmarks_smoke.py)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
BIN = Path(sys.executable).parent
MPIRUN = shutil.which("mpirun", path=str(BIN)) or shutil.which("mpirun")


def study(smoke: bool, output: Path, interval: float) -> dict:
    seeds = [0, 1] if smoke else list(range(8))
    return {"name": "throughput",
            "systems": [{"family": "coupled_oscillators", "n": [2, 4] if smoke else [2, 3, 4],
                         "steps": [16] if smoke else [16, 32, 48], "seeds": seeds}],
            "estimators": {"names": ["pfvp", "echo", "civp-residual"], "nudges": ["centred"], "betas": [1e-2, 1e-3]},
            "run": {"output": str(output), "commit_interval": interval}}


def worker(spec: str) -> None:
    """Under mpirun: run the study given as JSON; rank 0 prints the outcome as JSON."""
    from mpi4py import MPI

    from glep.estimators.sweep import run_sweep
    from glep.sweep_config import sweep_config

    outcome = run_sweep(sweep_config(json.loads(spec)))
    if MPI.COMM_WORLD.rank == 0:
        print(json.dumps({"items": outcome.now, "loop_time": outcome.loop_time, "write_time": outcome.write_time,
                          "wall_time": outcome.wall_time, "loop_cpu": outcome.loop_cpu}), flush=True)


def run(ranks: int, spec: dict) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    cmd = [MPIRUN, "-n", str(ranks), sys.executable, str(HERE), "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode:
        raise SystemExit(f"bench_sweep: {' '.join(cmd[:4])} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="a tiny study (seconds): checks the script runs")
    p.add_argument("--json", type=Path, help="also write the figures as JSON here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.worker)
    if MPIRUN is None:
        raise SystemExit("bench_sweep: mpirun not found")
    from glep.estimators.study import load_study, numbers, same_numbers

    t0 = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    try:
        cases = {}
        for label, ranks, interval in (("1 rank", 1, 10.0), ("2 ranks", 2, 10.0), ("1 rank, merge every item", 1, 0.0)):
            out = folder / f"{label.replace(' ', '_').replace(',', '')}.h5"
            cases[label] = {**run(ranks, study(args.smoke, out, interval)), "ranks": ranks, "interval": interval,
                            "file": str(out)}
        same = same_numbers(numbers(load_study(cases["1 rank"]["file"])), numbers(load_study(cases["2 ranks"]["file"])))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{'run':<26}{'items':>7}{'loop [s]':>10}{'items/s':>9}{'cpu/rank [s]':>14}{'write [s]':>11}"
          f"{'write share':>13}")
    print("-" * 90)
    for label, c in cases.items():
        c["items_per_s"] = c["items"] / c["loop_time"]
        c["write_share"] = c["write_time"] / c["loop_time"]
        cpu = "/".join(f"{x:.2f}" for x in c["loop_cpu"])
        print(f"{label:<26}{c['items']:>7}{c['loop_time']:>10.2f}{c['items_per_s']:>9.2f}{cpu:>14}"
              f"{c['write_time']:>11.3f}{100 * c['write_share']:>12.1f}%")
    speedup = cases["2 ranks"]["items_per_s"] / cases["1 rank"]["items_per_s"]
    # on cores shared with other jobs the wall clock shows the machine's load; processor time shows the
    # speed-up the distribution allows on idle cores: the busiest rank's loop against the one rank's
    cpu_speedup = cases["1 rank"]["loop_cpu"][0] / max(cases["2 ranks"]["loop_cpu"])
    print(f"\nspeed-up of 2 ranks over 1 (goal >= 1.8x): {speedup:.2f}x wall clock, {cpu_speedup:.2f}x in processor "
          f"time of the busiest rank\nwrite share with commit_interval = 10 s (goal <= 5%): "
          f"{100 * cases['1 rank']['write_share']:.1f}% on 1 rank, {100 * cases['2 ranks']['write_share']:.1f}% of "
          "rank 0's loop on 2 ranks")
    print(f"1- and 2-rank files hold the same numbers: {'yes' if not same else 'NO: ' + '; '.join(same[:3])}")
    print(f"total benchmark time {time.perf_counter() - t0:.1f} s")
    if args.json:
        args.json.write_text(json.dumps({"mode": "smoke" if args.smoke else "full", "cases": cases, "speedup": speedup,
                                         "cpu_speedup": cpu_speedup, "same_numbers": not same}, indent=1))


if __name__ == "__main__":
    main()
