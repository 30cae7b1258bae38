"""The NumPy path's estimators in forward passes, next to the pass count each declares.

One *forward pass* is ``glep.ivp.integrate(problem.dl(0.0), q0, p0, store=False)`` of the same problem
(the NumPy floor of ``bench_forward_loop.py``); the free pass the estimators keep (``store=True``, the
trajectory recorded) is listed too.  Every estimator runs on a fresh ``Problem`` (``with_params``), so
its own free pass, reversibility check and contrasts are included, with a centred nudge β = 1e-4:

* echo, RHEL, PFVP: declared ``1 + #β = 3`` passes (``AbstractEstimator.passes``);
* CIVP + residual: ``1 + #β + P`` (one tangent pass per parameter), on the small systems only.

CPU time (``time.process_time``), the cases interleaved, best of ``--repeats``; the ratio
*measured / declared* is the extra work beyond the pass count (1.0: none).  ``--profile NAME``
prints cProfile's top entries for one estimator at the first size.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_estimator_overhead.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_estimator_overhead.py --profile echo
    .venv/bin/python benchmarks/bench_estimator_overhead.py --smoke
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time

import numpy as np

from glep.estimators.contrast import CIVPContrast, Echo, PFVPContrast
from glep.estimators.nudging import Centred
from glep.estimators.problem import Problem
from glep.estimators.rhel import RHEL
from glep.ivp import integrate
from glep.models import FAMILIES

BETA = 1e-4
H = 0.008
#: (family, n, hidden, batch)
SYSTEMS = (("hru_logcosh", 32, 32, 16), ("hru_logcosh", 64, 64, 64), ("coupled_oscillators", 32, None, 16),
           ("pendulum_chain", 32, None, 16), ("coupled_oscillators", 8, None, 16))
#: CIVP + residual only below this many parameters (it costs one tangent pass per parameter)
MAX_P_RESIDUAL = 100


def build(family, n, hidden, batch, steps) -> Problem:
    kw = {"n": n, "batch": batch, "T": steps * H}
    if family == "hru_logcosh":
        kw["hidden"] = hidden
    return Problem.from_model(FAMILIES[family](**kw), steps=steps)


def estimators(problem: Problem) -> dict:
    out = {"echo": Echo(), "RHEL": RHEL(), "PFVP": PFVPContrast()}
    if problem.parameter_count <= MAX_P_RESIDUAL:
        out["CIVP + residual"] = CIVPContrast(residual=True)
    return out


def cases(problem: Problem):
    """``({name: callable}, {name: declared passes})``."""
    nudge = Centred(BETA)
    q0, p0, _ = problem.boundary.states(problem.system, problem.theta)
    dl = problem.dl(0.0)
    run = {"forward (store=False)": lambda: integrate(dl, q0, p0, store=False),
           "free pass (store=True)": lambda: integrate(dl, q0, p0)}
    declared = {"forward (store=False)": 1.0, "free pass (store=True)": 1.0}
    for name, est in estimators(problem).items():
        run[name] = lambda est=est: est.estimate(problem.with_params(problem.params), nudge)
        declared[name] = float(est.passes(problem, nudge))
    return run, declared


def measure(problem: Problem, repeats: int) -> dict[str, float]:
    run, _ = cases(problem)
    for fn in run.values():
        fn()
    best = dict.fromkeys(run, np.inf)
    for _ in range(repeats):
        for name, fn in run.items():
            t = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - t)
    return best


def profile(problem: Problem, name: str, top: int = 25) -> None:
    run, _ = cases(problem)
    run[name]()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(3):
        run[name]()
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--profile", default=None, help="cProfile one estimator (echo, RHEL, PFVP, CIVP + residual)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat (the smoke test)")
    args = ap.parse_args(argv)
    systems = (("hru_logcosh", 4, 3, 2), ("coupled_oscillators", 3, None, 2)) if args.smoke else SYSTEMS
    if args.smoke:
        args.repeats, args.steps = 1, 40
    if args.profile:
        profile(build(*systems[0], args.steps), args.profile)
        return 0
    print(f"bench_estimator_overhead: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load "
          f"{os.getloadavg()[0]:.2f}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}, {args.steps} steps, "
          f"centred β = {BETA:g}, CPU time, best of {args.repeats}, interleaved")
    for family, n, hidden, batch in systems:
        problem = build(family, n, hidden, batch, args.steps)
        best = measure(problem, args.repeats)
        _, declared = cases(problem)
        unit = best["forward (store=False)"]
        size = f"n = {n}" + (f", hidden = {hidden}" if hidden else "") + f", batch = {batch}"
        print(f"\n{family}, {size}, P = {problem.parameter_count}: one forward pass {1e3 * unit:.2f} ms")
        print(f"{'case':>24}  {'passes':>8}  {'declared':>8}  {'measured / declared':>19}")
        for name, t in best.items():
            print(f"{name:>24}  {t / unit:8.2f}  {declared[name]:8.0f}  {t / unit / declared[name]:19.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
