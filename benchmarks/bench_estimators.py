#!/usr/bin/env python
r"""Cost of the gradient estimators and throughput of the ``ivp`` integrator.

Everything is measured side by side in one run, with ``time.perf_counter`` and
the best of a few repeats.  The unit of cost is the *forward pass*: one free
trajectory integration ``integrate(problem.dl(0.0), q0, p0)`` of the same
problem, timed in the same run (best of at least five).

Sections
--------
1. RHEL, echo, PFVP (and, for reference, the biased CIVP contrast and the
   discrete adjoint) in forward passes, for Hamiltonian recurrent units of
   growing size ``n`` (``P = n² + n m`` parameters).  Every estimator runs on a
   fresh :class:`~glep.estimators.problem.Problem`, so its time includes the
   free trajectory it needs.  The nominal cost of RHEL / echo / PFVP is three
   passes whatever ``P``.  A breakdown at the largest ``n`` shows where the
   time goes.
2. CIVP + boundary residual: the forward sensitivities cost one tangent pass
   per parameter.  Time and passes are fitted linearly in ``P`` (and as a
   power law), once over the same ``n`` scan and once at fixed ``n`` with a
   log-cosh layer of growing width (so that the cost of a pass stays put).
3. The discrete adjoint (the ground truth) in forward passes.
4. Throughput of the batched integrator (``store=False``) in state components
   (``q`` and ``p``: ``2 n B``) times steps per second, next to the unbatched
   system and to a plain NumPy Störmer–Verlet loop for the same linear system.

Usage::

    .venv/bin/python benchmarks/bench_estimators.py            # ~2 minutes
    .venv/bin/python benchmarks/bench_estimators.py --quick    # smoke test, seconds
    .venv/bin/python benchmarks/bench_estimators.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

import glep
from glep.estimators.contrast import civp_contrast, contrast_integrand, echo, nudged_family, pfvp
from glep.estimators.ground_truth import adjoint
from glep.estimators.nudging import Centred
from glep.estimators.problem import Problem
from glep.estimators.rhel import rhel
from glep.ivp.hamiltonian import leapfrog
from glep.ivp.stepping import integrate
from glep.models import hamiltonian_recurrent_unit

# ---------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class Config:
    sizes: tuple[int, ...]          # HRU n for the estimator table (section 1)
    batch: int                      # batch of the estimator problems
    steps: int                      # time steps of the estimator problems
    repeats: int                    # best of this many runs
    civp_sizes: tuple[int, ...]     # HRU n for CIVP + residual (section 2)
    civp_steps: int                 # its time steps (the cost in passes hardly depends on them)
    fixed_n: int                    # section 2b: fixed n ...
    fixed_hidden: tuple[int, ...]   # ... and growing log-cosh width
    budget: float                   # stop repeating a measurement after this many seconds
    tp_n: int                       # throughput: n, batch and steps (section 4)
    tp_batch: int
    tp_steps: int
    threshold: float = 3.5          # RHEL / echo / PFVP target, in forward passes


DEFAULT = Config(sizes=(8, 16, 32, 64), batch=4, steps=300, repeats=7, civp_sizes=(8, 16, 32, 64),
                 civp_steps=100, fixed_n=16, fixed_hidden=(0, 32, 96, 192), budget=1.5, tp_n=64, tp_batch=64,
                 tp_steps=1000)
QUICK = Config(sizes=(4, 8), batch=2, steps=60, repeats=2, civp_sizes=(4, 8, 12), civp_steps=40, fixed_n=4,
               fixed_hidden=(0, 8, 24), budget=0.3, tp_n=16, tp_batch=16, tp_steps=200)


# ---------------------------------------------------------------------------
# timing helpers


@dataclass(frozen=True)
class Timing:
    """Best wall-clock (``perf_counter``) and best CPU (``process_time``) seconds."""

    wall: float = math.inf
    cpu: float = math.inf

    def best(self, other: Timing) -> Timing:
        return Timing(min(self.wall, other.wall), min(self.cpu, other.cpu))

    def __truediv__(self, other: Timing) -> Timing:
        return Timing(self.wall / other.wall, self.cpu / max(other.cpu, 1e-12))


def best_time(run, setup=None, repeats: int = 3, budget: float | None = None):
    """Best time of ``run(setup())`` over ``repeats`` runs.

    ``setup`` (untimed) builds fresh state for each run.  Once the runs have
    used ``budget`` seconds no further repeat is started (at least one run).
    Returns ``(Timing, result of the last run)``.  The wall-clock time is the
    figure of merit; the CPU time of this process is reported next to it
    because it is insensitive to other processes competing for the cores.
    """
    best, spent, out = Timing(), 0.0, None
    for _ in range(max(1, repeats)):
        arg = setup() if setup is not None else None
        w0, c0 = time.perf_counter(), time.process_time()
        out = run(arg) if setup is not None else run()
        c1, w1 = time.process_time(), time.perf_counter()
        best = best.best(Timing(w1 - w0, c1 - c0))
        spent += w1 - w0
        if budget is not None and spent >= budget:
            break
    return best, out


def interleaved(cases: dict, repeats: int) -> dict:
    """Best time of each case, the cases run round-robin ``repeats`` times.

    ``cases[name] = (setup, run)`` (``setup`` may be ``None``).  Round-robin
    order makes the ratios between cases robust to load that drifts during
    the run (other processes on a small machine).  Returns
    ``{name: (Timing, result of the last run)}``.
    """
    best = {k: (Timing(), None) for k in cases}
    for _ in range(max(1, repeats)):
        for k, (setup, run) in cases.items():
            t, out = best_time(run, setup, 1)
            best[k] = (best[k][0].best(t), out)
    return best


def forward_case(model, steps):
    """``(setup, run)`` of one free trajectory ``integrate(problem.dl(0.0), q0, p0)``."""
    pr = Problem.from_model(model, steps=steps)
    q0, p0, _ = pr.boundary.states(pr.system, pr.theta)
    return None, lambda: integrate(pr.dl(0.0), q0, p0)


def fresh(model, steps):
    return lambda: Problem.from_model(model, steps=steps)


def forward_pass_time(model, steps, repeats):
    """Best time of one free trajectory ``integrate(problem.dl(0.0), q0, p0)``."""
    pr = Problem.from_model(model, steps=steps)
    q0, p0, _ = pr.boundary.states(pr.system, pr.theta)
    t, _ = best_time(lambda: integrate(pr.dl(0.0), q0, p0), repeats=max(5, repeats))
    return t


def rel_err(est, ref) -> float:
    keys = list(ref.theta)
    a, b = est.flat(keys), ref.flat(keys)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def fit_line(x, y):
    """Least-squares ``y = a + s x``: returns ``(s, a, R²)``."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2:
        return math.nan, math.nan, math.nan
    s, a = np.polyfit(x, y, 1)
    ss = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum((y - (a + s * x)) ** 2)) / ss if ss > 0 else 1.0
    return float(s), float(a), r2


def power_exponent(x, y) -> float:
    """Slope of ``log y`` against ``log x``."""
    if len(x) < 2:
        return math.nan
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def table(headers, rows):
    cols = [[str(h)] + [str(r[i]) for r in rows] for i, h in enumerate(headers)]
    widths = [max(len(c) for c in col) for col in cols]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths))
    print(line)
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths)))


def section(title):
    print()
    print(title)
    print("=" * len(title))


# ---------------------------------------------------------------------------
# 1 and 3: estimators with O(1) passes, and the adjoint

ESTIMATORS = [
    ("RHEL", rhel),
    ("echo", echo),
    ("PFVP", pfvp),
    ("CIVP contrast", lambda pr: civp_contrast(pr)),
    ("adjoint", adjoint),
]


def warm_up():
    """Run every code path once on a tiny problem (imports, caches, first-call costs)."""
    model = hamiltonian_recurrent_unit(4, batch=2)
    for _, fn in ESTIMATORS:
        fn(Problem.from_model(model, steps=20))
    civp_contrast(Problem.from_model(model, steps=20), residual=True)
    forward_pass_time(model, 20, 1)


def _summary(data, threshold):
    Ps = [d["P"] for d in data]
    rows = []
    for k in ("RHEL", "echo", "PFVP", "adjoint"):
        w = [d["passes"][k] for d in data]
        c = [d["passes_cpu"][k] for d in data]
        ok = ("yes" if max(w) <= threshold else "NO") if k != "adjoint" else "-"
        okc = ("yes" if max(c) <= threshold else "NO") if k != "adjoint" else "-"
        rows.append([k, f"{min(w):.2f}-{max(w):.2f}", f"{power_exponent(Ps, w):+.3f}", ok,
                     f"{min(c):.2f}-{max(c):.2f}", f"{power_exponent(Ps, c):+.3f}", okc])
    table(["estimator", "wall passes", "d log/d log P", f"<= {threshold:g}",
           "cpu passes", "d log/d log P", f"<= {threshold:g}"], rows)


def bench_constant_cost(cfg: Config, results: dict):
    section(f"1. Cost in forward passes (HRU linear, batch {cfg.batch}, {cfg.steps} steps, "
            f"best of {cfg.repeats}; fresh Problem per run, so the free trajectory is included)")
    rows, rows_cpu, data = [], [], []
    for n in cfg.sizes:
        model = hamiltonian_recurrent_unit(n, batch=cfg.batch)
        P = Problem.from_model(model, steps=cfg.steps).parameter_count
        cases = {"forward": forward_case(model, cfg.steps), "forward (again)": forward_case(model, cfg.steps)}
        for name, fn in ESTIMATORS:
            cases[name] = (fresh(model, cfg.steps), fn)
        timed = interleaved(cases, cfg.repeats)
        fwd = timed["forward"][0].best(timed["forward (again)"][0])
        entry = {"n": n, "P": P, "forward_s": fwd.wall, "forward_cpu_s": fwd.cpu, "passes": {},
                 "passes_cpu": {}, "nominal": {}, "rel_err": {}}
        ests = {}
        for name, _ in ESTIMATORS:
            t, est = timed[name]
            ests[name] = est
            r = t / fwd
            entry["passes"][name], entry["passes_cpu"][name] = r.wall, r.cpu
            # the library's nominal count; +1 where the free pass is not counted in it
            entry["nominal"][name] = est.passes + (1.0 if name == "adjoint" else 0.0)
        for name in ests:
            entry["rel_err"][name] = rel_err(ests[name], ests["adjoint"])
        data.append(entry)
        rows.append([n, P, f"{1e3 * fwd.wall:.2f}"] + [f"{entry['passes'][k]:.2f}" for k, _ in ESTIMATORS])
        rows_cpu.append([n, P, f"{1e3 * fwd.cpu:.2f}"]
                        + [f"{entry['passes_cpu'][k]:.2f}" for k, _ in ESTIMATORS])
    print("wall-clock (perf_counter):")
    table(["n", "P", "fwd [ms]"] + [k for k, _ in ESTIMATORS], rows)
    print()
    print("CPU time of this process (process_time), the same runs:")
    table(["n", "P", "fwd [ms]"] + [k for k, _ in ESTIMATORS], rows_cpu)
    print("nominal passes (library's count, +1 free pass for the adjoint): "
          + ", ".join(f"{k} {data[0]['nominal'][k]:g}" for k, _ in ESTIMATORS))
    print("relative L2 error vs the discrete adjoint (largest over n): "
          + ", ".join(f"{k} {max(d['rel_err'][k] for d in data):.1e}" for k, _ in ESTIMATORS[:-1])
          + "  (the CIVP contrast alone is biased by design)")
    print()
    _summary(data, cfg.threshold)
    results["constant_cost"] = data
    return data


def bench_breakdown(cfg: Config, results: dict):
    n = cfg.sizes[-1]
    model = hamiltonian_recurrent_unit(n, batch=cfg.batch)
    pr = Problem.from_model(model, steps=cfg.steps)
    section(f"1b. Where the time goes (n = {n}, P = {pr.parameter_count}), in forward passes")
    free = pr.free
    rev = pr.system.time_reversed(pr.grid.T)
    parts = {
        "free pass, store=False": lambda: integrate(pr.dl(0.0), free.q0, free.p0, store=False),
        "one nudged echo pass (integrate)": lambda: integrate(pr.dl(1e-4, system=rev), free.Q[-1],
                                                              -free.P[-1]),
        "both ±β echoes, stacked (+ contrasts)": lambda: nudged_family(pr, Centred(1e-4), free.Q[-1],
                                                                       lambda b: -free.P[-1], system=rev),
        "contrast_integrand (one trajectory)": lambda: contrast_integrand(free.dl, free.Q),
        "reversibility_defect": lambda: pr.system.reversibility_defect(pr.theta, T=pr.grid.T),
        "leapfrog, theta_dH=False": lambda: leapfrog(pr.system, pr.theta, pr.grid, free.q0, free.p0),
        "leapfrog, theta_dH=True": lambda: leapfrog(pr.system, pr.theta, pr.grid, free.q0, free.p0,
                                                    theta_dH=True),
        "inputs_at at every node (all signals)": lambda: [pr.system.inputs_at(t) for t in pr.grid.times],
    }
    cases = {"forward pass (store=True)": forward_case(model, cfg.steps)}
    cases.update({label: (None, fn) for label, fn in parts.items()})
    timed = interleaved(cases, max(5, cfg.repeats))
    fwd = timed["forward pass (store=True)"][0]
    out = {label: t / fwd for label, (t, _) in timed.items()}
    table(["component", "wall passes", "cpu passes"],
          [[label, f"{v.wall:.2f}", f"{v.cpu:.2f}"] for label, v in out.items()])
    for kind in ("wall", "cpu"):
        o = {k: getattr(v, kind) for k, v in out.items()}
        e, c = o["one nudged echo pass (integrate)"], o["contrast_integrand (one trajectory)"]
        lf, lt = o["leapfrog, theta_dH=False"], o["leapfrog, theta_dH=True"]
        st = o["both ±β echoes, stacked (+ contrasts)"]
        print(f"[{kind}] echo/PFVP ≈ 1 free + the stacked ±β echoes with their contrasts + defect check = "
              f"{1 + st + o['reversibility_defect']:.2f} (as two separate passes it would be "
              f"{1 + 2 * e + 2 * c + o['reversibility_defect']:.2f}); RHEL as separate leapfrogs: "
              f"{lf + 2 * lt:.2f}")
    results["breakdown"] = {"n": n, "P": pr.parameter_count, "forward_s": fwd.wall,
                            "passes": {k: v.wall for k, v in out.items()},
                            "passes_cpu": {k: v.cpu for k, v in out.items()}}


# ---------------------------------------------------------------------------
# 2: CIVP + residual


def _civp_scan(cfg: Config, models, label):
    rows, data = [], []
    for tag, model in models:
        steps = cfg.civp_steps
        P = Problem.from_model(model, steps=steps).parameter_count
        fwd = forward_pass_time(model, steps, cfg.repeats)
        t, est = best_time(lambda pr: civp_contrast(pr, residual=True), fresh(model, steps),
                           cfg.repeats, cfg.budget)
        fwd = fwd.best(forward_pass_time(model, steps, cfg.repeats))  # before and after the long run
        ref = adjoint(Problem.from_model(model, steps=steps))
        err = rel_err(est, ref)
        r = t / fwd
        data.append({"config": tag, "P": P, "forward_s": fwd.wall, "time_s": t.wall, "passes": r.wall,
                     "cpu_s": t.cpu, "passes_cpu": r.cpu, "nominal": est.passes, "rel_err": err})
        rows.append([tag, P, f"{1e3 * fwd.wall:.2f}", f"{t.wall:.3f}", f"{r.wall:.1f}", f"{r.wall / P:.3f}",
                     f"{r.cpu:.1f}", f"{r.cpu / P:.3f}", f"{est.passes:g}", f"{err:.1e}"])
    table([label, "P", "fwd [ms]", "time [s]", "passes", "passes/P", "cpu passes", "cpu passes/P",
           "nominal", "rel.err"], rows)
    Ps = [d["P"] for d in data]
    s, a, r2 = fit_line(Ps, [d["time_s"] for d in data])
    sp, ap, r2p = fit_line(Ps, [d["passes"] for d in data])
    ex = power_exponent(Ps, [d["passes"] for d in data])
    exc = power_exponent(Ps, [d["passes_cpu"] for d in data])
    print(f"fit time = a + s P:    s = {1e3 * s:.4f} ms/parameter, a = {1e3 * a:.1f} ms, R² = {r2:.4f}")
    print(f"fit passes = a + s P:  s = {sp:.4f} passes/parameter, a = {ap:.1f}, R² = {r2p:.4f}")
    print(f"power law: passes ∝ P^{ex:.2f} (wall), P^{exc:.2f} (cpu); 1 would be linear in P")
    return {"rows": data, "slope_s_per_param": s, "intercept_s": a, "r2_time": r2,
            "slope_passes_per_param": sp, "r2_passes": r2p, "exponent": ex, "exponent_cpu": exc}


def bench_civp(cfg: Config, results: dict):
    section(f"2. CIVP + residual (forward sensitivities, one tangent per parameter), HRU linear, "
            f"batch {cfg.batch}, {cfg.civp_steps} steps")
    models = [(f"n={n}", hamiltonian_recurrent_unit(n, batch=cfg.batch)) for n in cfg.civp_sizes]
    results["civp_n_scan"] = _civp_scan(cfg, models, "system")
    print()
    print(f"2b. Same at fixed n = {cfg.fixed_n} with a log-cosh layer of growing width "
          "(the pass cost grows only mildly with the width)")
    models = [(f"hidden={h}", hamiltonian_recurrent_unit(cfg.fixed_n, hidden=h or None, batch=cfg.batch))
              for h in cfg.fixed_hidden]
    results["civp_fixed_n"] = _civp_scan(cfg, models, "system")


def report_adjoint(cfg: Config, results: dict):
    section("3. Discrete adjoint (ground truth) in forward passes, free pass included (from section 1)")
    data = results["constant_cost"]
    table(["n", "P", "wall passes", "cpu passes"],
          [[d["n"], d["P"], f"{d['passes']['adjoint']:.2f}", f"{d['passes_cpu']['adjoint']:.2f}"]
           for d in data])
    Ps = [d["P"] for d in data]
    print(f"d log(passes)/d log P = {power_exponent(Ps, [d['passes']['adjoint'] for d in data]):+.3f} (wall), "
          f"{power_exponent(Ps, [d['passes_cpu']['adjoint'] for d in data]):+.3f} (cpu); "
          "library nominal: 1 free + 2 for the backward sweep")


# ---------------------------------------------------------------------------
# 4: throughput


def numpy_stormer_verlet(S, Bmat, U, q0, p0, h, N):
    """Plain Störmer–Verlet for ``q̈ = −S q + B u(t)`` (unit masses), inputs pre-sampled."""
    q, p = q0.copy(), p0.copy()
    F = -q @ S + U[0] @ Bmat.T
    for k in range(N):
        p_half = p + 0.5 * h * F
        q = q + h * p_half
        F = -q @ S + U[k + 1] @ Bmat.T
        p = p_half + 0.5 * h * F
    return q, p


def _throughput_case(n, B, N, repeats):
    """Times of glep's integrator and of the NumPy loop for one batch size."""
    pr = Problem.from_model(hamiltonian_recurrent_unit(n, batch=B), steps=N)
    q0, p0, _ = pr.boundary.states(pr.system, pr.theta)
    t_lib, (qL, _) = best_time(lambda: integrate(pr.dl(0.0), q0, p0, store=False), repeats=repeats)
    t_lib = t_lib.wall
    A = pr.theta["A"]
    S = 0.5 * (A + A.T)
    U = pr.system.signals["u"].sample(pr.grid.times)  # (N+1, B or 1, m), sampled outside the timer
    t_np, (qN, _) = best_time(lambda: numpy_stormer_verlet(S, pr.theta["B"], U, q0, p0, pr.grid.h, N),
                              repeats=repeats)
    t_np = t_np.wall
    return t_lib, t_np, 2 * n * q0.shape[0], float(np.max(np.abs(qL - qN)))


def bench_throughput(cfg: Config, results: dict):
    n, N = cfg.tp_n, cfg.tp_steps
    section(f"4. Integrator throughput, HRU linear n = {n}, {N} steps, store=False "
            "(state components = 2 n B)")
    rows, data = [], {}
    for B in (cfg.tp_batch, None):
        t_lib, t_np, comps, diff = _throughput_case(n, B, N, max(3, cfg.repeats))
        key = f"B={B}" if B is not None else "B=1 (batch=None)"
        data[key] = {"batch": B or 1, "glep_s": t_lib, "numpy_s": t_np,
                     "glep_throughput": comps * N / t_lib, "numpy_throughput": comps * N / t_np,
                     "max_abs_diff": diff}
        rows.append([key, f"{1e3 * t_lib:.1f}", f"{comps * N / t_lib / 1e6:.2f}", f"{1e3 * t_np:.1f}",
                     f"{comps * N / t_np / 1e6:.2f}", f"{t_lib / t_np:.2f}", f"{diff:.1e}"])
    table(["case", "glep [ms]", "glep [M comp·step/s]", "numpy [ms]", "numpy [M comp·step/s]",
           "glep/numpy time", "max|Δq_N|"], rows)
    b, u = data[f"B={cfg.tp_batch}"], data["B=1 (batch=None)"]
    print(f"batching speed-up in throughput (B={cfg.tp_batch} vs unbatched): "
          f"glep {b['glep_throughput'] / u['glep_throughput']:.1f}x, "
          f"numpy {b['numpy_throughput'] / u['numpy_throughput']:.1f}x; "
          f"time per step: glep {1e6 * b['glep_s'] / N:.1f} µs (B={cfg.tp_batch}) vs "
          f"{1e6 * u['glep_s'] / N:.1f} µs (B=1)")
    results["throughput"] = data


# ---------------------------------------------------------------------------


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test, a few seconds)")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    ap.add_argument("--batch", type=int, help="batch of the estimator problems (default 4)")
    ap.add_argument("--only-cost", action="store_true", help="run section 1 (cost in forward passes) only")
    args = ap.parse_args(argv)
    cfg = QUICK if args.quick else DEFAULT
    if args.batch:
        cfg = replace(cfg, batch=args.batch)
    t_start = time.perf_counter()
    print(f"glep {glep.__version__} estimator benchmarks ({'quick' if args.quick else 'default'} mode)")
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"{platform.machine()}, started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    threads = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
               if k in os.environ}
    print(f"BLAS threads: {threads or 'library default'}; load average {_load()} "
          "(timings are wall-clock: other processes on the machine inflate them)")
    results: dict = {"config": asdict(cfg), "mode": "quick" if args.quick else "default"}
    warm_up()
    bench_constant_cost(cfg, results)
    if args.only_cost:
        return 0
    bench_breakdown(cfg, results)
    bench_civp(cfg, results)
    report_adjoint(cfg, results)
    bench_throughput(cfg, results)
    total = time.perf_counter() - t_start
    results["total_s"] = total
    print()
    print(f"total benchmark time {total:.1f} s; load average {_load()}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
