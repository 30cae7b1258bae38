"""HEB on the Kerr cavity array at the paper's size: seconds per training iteration and cost in passes.

López-Pastor & Marquardt's cavity-array notebook (PRX 13, 031020) trains a 4 × 4 Kerr lattice with four
port modes, J = 10, g = −2, T = 20 in 500 steps, 40 inputs at once, and reports 1.03 s per training
iteration.  This script times the same sizes with glep (Strang steps, batch of 40 = 10 input amplitudes ×
the 4 XOR inputs):

* one forward pass (500 steps of the batch);
* one training iteration: a plain HEB update (forward + echo) and an averaged one (twice that);
* one HEB gradient (centred: forward + two echoes) and the discrete adjoint (stored forward + backward
  sweep), in forward passes, with the relative error of HEB against the adjoint.

Wall-clock, best of ``--repeats`` (the five timings interleaved round-robin); ``--smoke`` runs a tiny
size once (the smoke test).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from glep.estimators.heb import ModeProblem, heb, heb_update, mode_adjoint
from glep.modes import IntensityCost, kerr_cavity_array

PAPER_SECONDS_PER_ITERATION = 1.03


def _best(jobs: dict, repeats: int) -> dict:
    """Best wall time of each job, the jobs interleaved round-robin (so that load changes hit all alike)."""
    best = dict.fromkeys(jobs, np.inf)
    for _ in range(repeats):
        for name, fn in jobs.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def build(lattice: int, steps: int, batch: int) -> ModeProblem:
    """The XOR set-up of examples/heb_xor.py, ``batch // 4`` input amplitudes × the four XOR inputs."""
    s = kerr_cavity_array(lattice, lattice, J=10.0, g=-2.0, kappa=1.0, inputs=(0, 1), outputs=(3,))
    copies = max(batch // 4, 1)
    bits = np.tile(np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float), (copies, 1))
    amplitude = np.repeat(np.linspace(0.6, 0.8, copies), 4)[:, None]
    xor = np.tile([0.0, 1.0, 1.0, 0.0], copies)
    theta = np.random.default_rng(0).random(s.learning.size)
    return ModeProblem(s, IntensityCost(s, 0.3 * amplitude ** 2 * xor[:, None]), theta / np.linalg.norm(theta),
                       s.input_state(amplitude * bits), T=20.0, steps=steps)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="HEB on the Kerr cavity array: time per training iteration")
    parser.add_argument("--lattice", type=int, default=4)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="a tiny size, once (smoke test)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.smoke:
        args.lattice, args.steps, args.batch, args.repeats = 2, 20, 8, 1
    t_start = time.perf_counter()
    p = build(args.lattice, args.steps, args.batch)
    B = p.batch
    heb(p, 1e-4)  # warm-up (first-call costs)
    best = _best({"forward": lambda: p.final_state(),
                  "plain": lambda: heb_update(p, 1e-4, 1e-4 / 0.3, averaged=False, cutoff=0.1),
                  "averaged": lambda: heb_update(p, 1e-4, 1e-4 / 0.3, averaged=True, cutoff=0.1),
                  "heb": lambda: heb(p, 1e-4), "adjoint": lambda: mode_adjoint(p)}, args.repeats)
    fwd, plain, averaged, t_heb, t_adj = (best[k] for k in ("forward", "plain", "averaged", "heb", "adjoint"))
    g, truth = heb(p, 1e-4), mode_adjoint(p)
    rel = float(np.linalg.norm(g.learning - truth.learning) / np.linalg.norm(truth.learning))

    print(f"{p.system.name}, J = 10, g = -2, T = 20 in {p.steps} steps, batch {B} "
          f"(Python {platform.python_version()}, NumPy {np.__version__}; best of {args.repeats})")
    print()
    print(f"{'':34}{'seconds':>10}{'passes':>8}")
    print(f"{'forward pass':34}{fwd:10.4f}{1.0:8.2f}")
    print(f"{'training iteration, plain HEB':34}{plain:10.4f}{plain / fwd:8.2f}")
    print(f"{'training iteration, averaged HEB':34}{averaged:10.4f}{averaged / fwd:8.2f}")
    print(f"{'HEB gradient (centred)':34}{t_heb:10.4f}{t_heb / fwd:8.2f}")
    print(f"{'discrete adjoint':34}{t_adj:10.4f}{t_adj / fwd:8.2f}")
    print()
    print(f"paper (authors' notebook): {PAPER_SECONDS_PER_ITERATION:.2f} s per training iteration; glep: "
          f"{averaged:.3f} s averaged, {plain:.3f} s plain ({PAPER_SECONDS_PER_ITERATION / averaged:.0f}x and "
          f"{PAPER_SECONDS_PER_ITERATION / plain:.0f}x faster on this machine)")
    print(f"HEB vs discrete adjoint (learning field): relative error {rel:.2e}")
    print(f"total benchmark time {time.perf_counter() - t_start:.1f} s")
    figures = {"lattice": args.lattice, "steps": p.steps, "batch": B, "repeats": args.repeats,
               "forward_s": fwd, "plain_iteration_s": plain, "averaged_iteration_s": averaged,
               "heb_gradient_s": t_heb, "adjoint_s": t_adj,
               "passes": {"plain": plain / fwd, "averaged": averaged / fwd, "heb": t_heb / fwd, "adjoint": t_adj / fwd},
               "heb_vs_adjoint_rel_err": rel, "paper_s_per_iteration": PAPER_SECONDS_PER_ITERATION,
               "smoke": args.smoke}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)
    return figures


if __name__ == "__main__":
    main()
