"""Cost of ``import glep`` for a time-stepping user, next to its floor (``import numpy``).

Each figure is the median wall time of fresh interpreters (``python -c "import …"``), so nothing is cached
in the process; the heavy finite-element stack (petsc4py, dolfinx, UFL) must not be loaded at all.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_import.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def fresh(code: str, runs: int) -> float:
    """Median wall time of ``runs`` fresh interpreters running ``code``."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    empty = fresh("pass", runs)
    numpy = fresh("import numpy", runs)
    glep = fresh("import glep", runs)
    fe = fresh("import glep; glep.solve_bvp", runs)
    print(f"{'what':<34}{'median [s]':>12}{'minus python':>14}")
    for what, t in (("python (empty)", empty), ("import numpy (floor)", numpy), ("import glep", glep),
                    ("import glep + finite elements", fe)):
        print(f"{what:<34}{t:>12.3f}{t - empty:>14.3f}")
    print(f"import glep / import numpy = {(glep - empty) / (numpy - empty):.2f} (interpreter start-up removed)")


if __name__ == "__main__":
    main()
