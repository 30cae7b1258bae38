"""Build time of time and space-time meshes at 10⁴–10⁶ cells: glep's layered builder next to dolfinx's generators.

dolfinx 0.11 reorders the owned cells of every mesh with Gibbs–Poole–Stockmeyer, quadratic in the number
of BFS levels: one per cell for a 1-D mesh (``create_interval``: ~0.2-0.4 s at 10⁵, ~25 s at 10⁶), many for
thin space-time strips.  glep's meshes (:mod:`glep.meshes`) are stacks of identical time layers built in
linear time (:mod:`glep.meshes._fast`).  Every figure is wall-clock (``time.perf_counter``), the best of
``--repeats`` runs, the slowest rank under MPI (barrier before and after).

The dolfinx reference runs only for meshes of at most ``--reference-max`` cells (default 10⁵): at 10⁶,
``create_interval`` alone takes ~25 s.  Pass ``--reference-max 1000000`` to time every reference.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_meshes.py [--reference-max 1000000]
    OMP_NUM_THREADS=1 .venv/bin/mpirun -n 2 .venv/bin/python benchmarks/bench_meshes.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_meshes.py --smoke        # tiny sizes, seconds
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401  isort: skip  (configures PETSc before dolfinx loads)

import argparse
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import dolfinx.io
import dolfinx.mesh
from mpi4py import MPI

import glep.meshes as gm

COMM = MPI.COMM_WORLD
CT = dolfinx.mesh.CellType
SKIPPED = float("nan")


def say(text: str = "") -> None:
    if COMM.rank == 0:
        print(text, flush=True)


def timed(build: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` runs of ``build`` (slowest rank); the result is dropped each time."""
    best = math.inf
    for _ in range(repeats):
        COMM.barrier()
        t0 = time.perf_counter()
        result = build()
        COMM.barrier()
        best = min(best, COMM.allreduce(time.perf_counter() - t0, op=MPI.MAX))
        del result
    return best


def fmt(t: float) -> str:
    return "skipped" if math.isnan(t) else f"{t:.3f}"


def exponent(sizes: list[int], times: list[float]) -> str:
    """Least-squares slope of log t against log N over the two largest sizes (1 = linear)."""
    if len(sizes) < 2 or any(math.isnan(t) for t in times[-2:]):
        return "-"
    return f"{math.log(times[-1] / times[-2]) / math.log(sizes[-1] / sizes[-2]):+.2f}"


def interval_table(sizes: list[int], reference_max: int, repeats: int) -> list[float]:
    say("1. Time meshes on [0, 1]: dolfinx.mesh.create_interval vs glep (uniform, graded)")
    say(f"{'N cells':>10}{'create_interval [s]':>21}{'uniform_time_mesh [s]':>23}{'graded_time_mesh [s]':>22}"
        f"{'glep [us/cell]':>16}{'speed-up':>10}")
    glep_times = []
    for N in sizes:
        ref = (timed(partial(dolfinx.mesh.create_interval, COMM, N, [0.0, 1.0]), 1 if N >= 10**6 else repeats)
               if N <= reference_max else SKIPPED)
        uni = timed(partial(gm.uniform_time_mesh, COMM, 1.0, N), repeats)
        gra = timed(partial(gm.graded_time_mesh, COMM, 1.0, N, ratio=100.0, end="both"), repeats)
        glep_times.append(uni)
        speed = "-" if math.isnan(ref) else f"{ref / uni:.0f}x"
        say(f"{N:>10}{fmt(ref):>21}{uni:>23.3f}{gra:>22.3f}{1e6 * uni / N:>16.2f}{speed:>10}")
    say(f"growth exponent of uniform_time_mesh (two largest N): {exponent(sizes, glep_times)}  (1 = linear)")
    return glep_times


SpaceTimeCase = tuple[str, CT, tuple[int, ...]]


def space_time_table(title: str, cases: list[SpaceTimeCase], reference_max: int, repeats: int) -> None:
    say(title)
    say(f"{'shape':>16}{'cells':>10}{'cell':>14}{'dolfinx [s]':>13}{'glep [s]':>10}{'glep [us/cell]':>16}")
    for label, cell_type, n in cases:
        if len(n) == 2:
            cells = n[0] * n[1] * (2 if cell_type == CT.triangle else 1)
            ref_fn = partial(dolfinx.mesh.create_rectangle, COMM, [[0.0, 0.0], [1.0, 1.0]], list(n),
                             cell_type=cell_type)
            glep_fn = partial(gm.space_time_mesh, COMM, 1.0, 1.0, *n, cell_type=cell_type)
        else:
            cells = n[0] * n[1] * n[2] * (6 if cell_type == CT.tetrahedron else 1)
            ref_fn = partial(dolfinx.mesh.create_box, COMM, [[0.0] * 3, [1.0] * 3], list(n), cell_type=cell_type)
            glep_fn = partial(gm.space_time_box_mesh, COMM, 1.0, 1.0, 1.0, *n, cell_type=cell_type)
        ref = timed(ref_fn, 1 if cells >= 10**6 else repeats) if cells <= reference_max else SKIPPED
        ours = timed(glep_fn, repeats)
        shape = f"{label} " + "x".join(map(str, n))
        say(f"{shape:>16}{cells:>10}{cell_type.name:>14}{fmt(ref):>13}{ours:>10.3f}{1e6 * ours / cells:>16.2f}")


def dolfinx_read_mesh(path: Path) -> dolfinx.mesh.Mesh:
    """The plain dolfinx read (graph partitioner and reordering), as glep's load_time_mesh did before."""
    with dolfinx.io.XDMFFile(COMM, str(path), "r") as f:
        return f.read_mesh(name="mesh")


def io_table(cases: list[tuple[str, Callable[[], dolfinx.mesh.Mesh]]], reference_max: int) -> None:
    say("4. Write + read with dolfinx.io (XDMF/HDF5): glep.meshes.save_time_mesh / load_time_mesh")
    say(f"{'mesh':>28}{'cells':>10}{'write [s]':>11}{'read [s]':>10}{'XDMFFile.read_mesh [s]':>24}")
    folder = Path(COMM.bcast(tempfile.mkdtemp(prefix="glep_bench_meshes_") if COMM.rank == 0 else None, root=0))
    try:
        for label, build in cases:
            mesh = build()
            tdim = mesh.topology.dim
            cells = mesh.topology.index_map(tdim).size_global
            path = folder / "mesh.xdmf"
            write = timed(partial(gm.save_time_mesh, mesh, path), 1)
            read = timed(partial(gm.load_time_mesh, COMM, path), 1)
            ref = timed(partial(dolfinx_read_mesh, path), 1) if cells <= reference_max else SKIPPED
            say(f"{label:>28}{cells:>10}{write:>11.3f}{read:>10.3f}{fmt(ref):>24}")
            del mesh
    finally:
        COMM.barrier()
        if COMM.rank == 0:
            shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (a few seconds), for the smoke test")
    parser.add_argument("--reference-max", type=int, default=10**5,
                        help="time dolfinx's generators only up to this many cells (default 1e5; "
                             "create_interval at 1e6 takes ~25 s)")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs (default 3)")
    args = parser.parse_args()
    t_start = time.perf_counter()
    say(f"glep mesh build benchmark on {COMM.size} rank(s), dolfinx {dolfinx.__version__}; "
        f"dolfinx references up to {args.reference_max} cells")
    if args.smoke:
        sizes, squares, strips, box = [10**2, 10**3], [(10, 5), (20, 25)], [(2, 25), (2, 250)], (3, 3, 4)
    else:
        sizes, box = [10**4, 10**5, 10**6], (10, 10, 1666)
        squares, strips = [(250, 200), (1000, 500)], [(2, 25000), (2, 250000)]
    say()
    glep_1d = interval_table(sizes, args.reference_max, args.repeats)
    say()
    big = squares[-1]
    rect = ([("square", CT.triangle, n) for n in squares] + [("strip", CT.triangle, n) for n in strips]
            + [("square", CT.quadrilateral, (big[0], 2 * big[1]))])
    space_time_table("2. Space-time rectangles [0, L] x [0, T] (nx x nt): dolfinx.mesh.create_rectangle vs "
                     "glep.meshes.space_time_mesh", rect, args.reference_max, args.repeats)
    say()
    space_time_table("3. Space-time boxes (nx x ny x nt): dolfinx.mesh.create_box vs glep.meshes.space_time_box_mesh",
                     [("cube", CT.tetrahedron, box), ("cube", CT.hexahedron, (box[0], box[1], 6 * box[2]))],
                     args.reference_max, args.repeats)
    say()
    N = sizes[-1]
    io_table([(f"uniform time mesh N={N}", lambda: gm.uniform_time_mesh(COMM, 1.0, N)),
              (f"space-time {big[0]}x{big[1]} tri", lambda: gm.space_time_mesh(COMM, 1.0, 1.0, *big))],
             args.reference_max)
    say()
    verdict = "yes" if glep_1d[-1] <= 2.0 else "NO"
    say(f"goal: a {sizes[-1]}-cell time mesh in <= 2 s: {verdict} ({glep_1d[-1]:.3f} s on {COMM.size} rank(s))")
    say(f"total benchmark time {time.perf_counter() - t_start:.1f} s")


if __name__ == "__main__":
    main()
