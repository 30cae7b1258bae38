#!/usr/bin/env python
r"""glep next to its peers for gradients of an ODE network: the same system, the same discretisation.

The system is a Hamiltonian recurrent unit with a log-cosh layer
(:func:`glep.models.hamiltonian_recurrent_unit`), Störmer–Verlet with step ``h``,
loss ``C_h = Σ_j w_j c(q_j, t_j)`` (trapezoid weights, tracking cost on the
last coordinate), float64.  Inputs and targets are sampled once at the grid
nodes for every peer.

Rows (every gradient is of the same ``C_h``):

* ``numpy loop``: a hand-written NumPy Störmer–Verlet loop (forward only);
* ``glep numpy`` / ``glep jax``: glep's NumPy path and its compiled path
  (:mod:`glep.ivp.compiled`, ``StormerVerlet(backend="jax")``): forward, echo, RHEL,
  PFVP (centred nudge β = 1e-4) and the discrete adjoint (the forward pass it needs included);
* ``jax forward`` / ``jax BPTT``: the loop as a ``jax.lax.scan``, and ``jax.grad`` through it
  (backpropagation, what the RHEL authors' code does);
* ``diffrax RCA``: the same Störmer–Verlet step as a diffrax solver, differentiated with
  ``diffrax.RecursiveCheckpointAdjoint`` (checkpointed backpropagation).

Sections: (1) agreement, checked before anything is timed: the losses, and every gradient against
glep's NumPy discrete adjoint; (2) wall time at the sizes of issue 11 (best of ``--repeats``,
interleaved); (3) peak memory against the horizon (``10³, 10⁴, 10⁵`` steps): each case runs in
a fresh interpreter under an address-space cap (``--memory-limit-gb``, ``RLIMIT_AS``), and its figure is
the growth of the peak resident set over the interpreter's baseline after imports and set-up (XLA
compilation included).  A case that needs more than the cap fails in its own process and is reported as
out of memory with what it needed (XLA's buffer assignment for JAX's BPTT, the allocation XLA asked for,
or the growth extrapolated from the shorter horizons), instead of exhausting the machine.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_peers.py            # ~10 minutes
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_peers.py --only-memory --memory-size 64x64x64 \
        --memory-cases "glep jax: echo,glep jax: RHEL,jax: BPTT gradient,diffrax RCA: gradient"  # ~15 minutes
    .venv/bin/python benchmarks/bench_peers.py --smoke                      # seconds
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from functools import cache

import numpy as np

from glep.estimators.contrast import echo, pfvp
from glep.estimators.ground_truth import adjoint
from glep.estimators.nudging import Centred
from glep.estimators.problem import Problem
from glep.estimators.rhel import rhel
from glep.ivp import StormerVerlet, integrate
from glep.models import hamiltonian_recurrent_unit

BETA = 1e-4
H = 8.0 / 1000  # the step of every size and horizon: T = N h


@cache
def build(n: int, hidden: int, batch: int, steps: int, backend: str = "numpy") -> Problem:
    """The HRU problem with ``steps`` steps of size ``H`` (horizon ``T = steps·H``); one per size, so that
    the compiled loops are traced once per size (estimators run on copies, ``with_params``)."""
    model = hamiltonian_recurrent_unit(n, hidden=hidden, batch=batch, T=steps * H)
    return Problem.from_model(model, steps=steps, integrator=StormerVerlet(backend=backend))


def sampled(problem: Problem):
    """Inputs ``U (N+1, B|1, m)``, targets ``Y (N+1, B|1, 1)`` and the start state."""
    times = problem.grid.times
    U = problem.system.signals["u"].sample(times)
    Y = problem.system.signals["y"].sample(times)
    q0, p0, _ = problem.boundary.states(problem.system, problem.theta)
    return U, Y, q0, p0


# -- peers ------------------------------------------------------------------------------------------
def numpy_loop(th, U, q0, p0, h):
    """Hand-written Störmer–Verlet, unit masses, final state."""
    S, Bt, W, b = 0.5 * (th["A"] + th["A"].T), th["B"].T, th["W"], th["b"]
    q, p = q0.copy(), p0.copy()
    F = -q @ S + U[0] @ Bt - np.tanh(q @ W.T + b) @ W
    for k in range(len(U) - 1):
        ph = p + 0.5 * h * F
        q = q + h * ph
        F = -q @ S + U[k + 1] @ Bt - np.tanh(q @ W.T + b) @ W
        p = ph + 0.5 * h * F
    return q, p


@cache
def jax_peers(h: float):
    """``(forward, loss, grad)`` jitted: the loop as ``lax.scan`` and ``jax.grad`` through it."""
    import jax
    import jax.numpy as jnp

    def force(th, q, u):
        S = 0.5 * (th["A"] + th["A"].T)
        return -q @ S + u @ th["B"].T - jnp.tanh(q @ th["W"].T + th["b"]) @ th["W"]

    def cost(q, y):
        return 0.5 * jnp.sum((q[:, -1:] - y) ** 2)

    def forward(th, q0, p0, U):
        def step(carry, u):
            q, p, F = carry
            ph = p + 0.5 * h * F
            q = q + h * ph
            F = force(th, q, u)
            return (q, ph + 0.5 * h * F, F), None

        (q, p, _), _ = jax.lax.scan(step, (q0, p0, force(th, q0, U[0])), U[1:])
        return q, p

    def loss(th, q0, p0, U, Y):
        def step(carry, xs):
            q, p, F, acc = carry
            u, y = xs
            ph = p + 0.5 * h * F
            q = q + h * ph
            F = force(th, q, u)
            return (q, ph + 0.5 * h * F, F, acc + h * cost(q, y)), None

        init = (q0, p0, force(th, q0, U[0]), 0.5 * h * cost(q0, Y[0]))
        (q, _, _, acc), _ = jax.lax.scan(step, init, (U[1:], Y[1:]))
        return acc - 0.5 * h * cost(q, Y[-1])

    return jax.jit(forward), jax.jit(loss), jax.jit(jax.grad(loss))


@cache
def diffrax_grad(h: float, steps: int):
    """``jax.grad`` of the same loss through ``diffrax.diffeqsolve`` with a Störmer–Verlet solver and
    ``RecursiveCheckpointAdjoint`` (``None`` when diffrax is not installed)."""
    try:
        import diffrax
    except ImportError:
        return None
    import jax
    import jax.numpy as jnp

    def force(th, q, u):
        S = 0.5 * (th["A"] + th["A"].T)
        return -q @ S + u @ th["B"].T - jnp.tanh(q @ th["W"].T + th["b"]) @ th["W"]

    def cost(q, y):
        return 0.5 * jnp.sum((q[:, -1:] - y) ** 2)

    class StormerVerletSolver(diffrax.AbstractSolver):
        """Kick–drift–kick on the state ``(q, p, F, C)`` with the trapezoid loss ``C`` carried along."""

        term_structure = diffrax.AbstractTerm
        interpolation_cls = diffrax.LocalLinearInterpolation

        def order(self, terms):
            return 2

        def init(self, terms, t0, t1, y0, args):
            return None

        def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
            th, U, Y = args
            k = jnp.round(t0 / h).astype(jnp.int32)
            q, p, F, acc = y0
            ph = p + 0.5 * h * F
            q1 = q + h * ph
            F1 = force(th, q1, U[k + 1])
            y1 = (q1, ph + 0.5 * h * F1, F1, acc + 0.5 * h * (cost(q, Y[k]) + cost(q1, Y[k + 1])))
            return y1, None, dict(y0=y0, y1=y1), None, diffrax.RESULTS.successful

        def func(self, terms, t0, y0, args):
            return terms.vf(t0, y0, args)

    term = diffrax.ODETerm(lambda t, y, args: jax.tree_util.tree_map(jnp.zeros_like, y))
    ts = np.arange(steps + 1) * h

    def loss(th, q0, p0, U, Y):
        y0 = (q0, p0, force(th, q0, U[0]), jnp.zeros((), q0.dtype))
        sol = diffrax.diffeqsolve(term, StormerVerletSolver(), t0=float(ts[0]), t1=float(ts[-1]), dt0=None, y0=y0,
                                  args=(th, U, Y), saveat=diffrax.SaveAt(t1=True),
                                  stepsize_controller=diffrax.StepTo(ts=jnp.asarray(ts)), max_steps=steps,
                                  adjoint=diffrax.RecursiveCheckpointAdjoint())
        return sol.ys[3][-1]

    return jax.jit(jax.grad(loss))


# -- cases --------------------------------------------------------------------------------------------
def cases(n, hidden, batch, steps, *, peers=True):
    """``{name: zero-argument callable}``: everything that is timed, and the agreement data."""
    import jax

    pr_np, pr_jx = (build(n, hidden, batch, steps, b) for b in ("numpy", "jax"))
    pr_np, pr_jx = pr_np.with_params(pr_np.params), pr_jx.with_params(pr_jx.params)  # no cached free pass
    U, Y, q0, p0 = sampled(pr_np)
    th, h = pr_np.theta, pr_np.grid.h
    nudge = Centred(BETA)

    def fresh(backend):  # a new problem per call: every estimator pays for its own free pass
        return pr_np.with_params(th) if backend == "numpy" else pr_jx.with_params(th)

    out = {"numpy loop: forward": lambda: numpy_loop(th, U, q0, p0, h)}
    for backend, pr in (("numpy", pr_np), ("jax", pr_jx)):
        dl = pr.dl(0.0)
        out[f"glep {backend}: forward"] = lambda dl=dl: integrate(dl, q0, p0, store=False)
        out[f"glep {backend}: echo"] = lambda b=backend: echo(fresh(b), nudge)
        out[f"glep {backend}: RHEL"] = lambda b=backend: rhel(fresh(b), nudge)
        out[f"glep {backend}: PFVP"] = lambda b=backend: pfvp(fresh(b), nudge)
        out[f"glep {backend}: adjoint"] = lambda b=backend: adjoint(fresh(b))
    if peers:
        with jax.enable_x64(True):
            fwd, loss, grad = jax_peers(h)
            args = [jax.numpy.asarray(a) for a in (q0, p0, U, Y)]
            thj = {k: jax.numpy.asarray(v) for k, v in th.items()}
        out["jax: forward"] = lambda: jax.block_until_ready(fwd(thj, *args[:3]))
        out["jax: BPTT gradient"] = lambda: jax.block_until_ready(grad(thj, *args))
        out["jax: loss"] = lambda: loss(thj, *args)
        dgrad = diffrax_grad(h, steps)
        if dgrad is not None:
            out["diffrax RCA: gradient"] = lambda: jax.block_until_ready(dgrad(thj, *args))
    return out, pr_np


def _x64(fn):
    import jax

    def run():
        with jax.enable_x64(True):
            return fn()

    return run


def _grad_of(result):
    if hasattr(result, "theta"):
        return result.theta
    return {k: np.asarray(v) for k, v in result.items()}


def agreement(n, hidden, batch, steps) -> dict:
    """Every gradient against glep's NumPy discrete adjoint, and the losses."""
    table, ref = cases(n, hidden, batch, steps)
    truth = table["glep numpy: adjoint"]().theta
    scale = max(float(np.max(np.abs(g))) for g in truth.values())
    rows = {}
    for name, fn in table.items():
        if name.endswith("forward") or name == "jax: loss":
            continue
        g = _grad_of(_x64(fn)())
        rows[name] = max(float(np.max(np.abs(g[k] - truth[k]))) for k in truth) / scale
    loss_jax = float(_x64(table["jax: loss"])())
    loss_glep = ref.free.loss
    qa = table["numpy loop: forward"]()[0]
    qb = _x64(table["jax: forward"])()[0]
    qc = table["glep jax: forward"]()[0]
    return {"loss_rel": abs(loss_jax - loss_glep) / abs(loss_glep), "grad_rel": rows,
            "forward_max_abs": max(float(np.max(np.abs(qa - np.asarray(qb)))), float(np.max(np.abs(qa - qc))))}


def timings(n, hidden, batch, steps, repeats) -> dict:
    """Best wall time of every case, interleaved round-robin (compilation excluded: one warm-up call)."""
    table, _ = cases(n, hidden, batch, steps)
    table.pop("jax: loss")
    table = {k: _x64(f) for k, f in table.items()}
    for fn in table.values():
        fn()
    best = dict.fromkeys(table, float("inf"))
    for _ in range(repeats):
        for name, fn in table.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


# -- peak memory, one case per interpreter ----------------------------------------------------------
def _rss_mb() -> float:
    """The current resident set size (Linux ``/proc/self/statm``), MB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


class _PeakRSS:
    """The largest resident set size seen while the block runs (a thread polls it every millisecond)."""

    def __enter__(self):
        import threading

        self.start = self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


_OOM_BYTES = re.compile(r"(?:allocat\w*|request\w*)\D{0,40}?(\d{4,})\s*bytes", re.IGNORECASE)


def cap_memory(limit_gb: float) -> None:
    """Cap this process's address space at ``limit_gb`` GB (``RLIMIT_AS``): an allocation beyond it fails in
    the process (XLA reports ``RESOURCE_EXHAUSTED``, NumPy raises ``MemoryError``) instead of exhausting the
    machine."""
    limit = int(limit_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def xla_memory_mb(name, n, hidden, batch, steps) -> float | None:
    """XLA's own figure for a JAX peer: argument + output + temporary buffers of the compiled gradient
    (``Compiled.memory_analysis()``, known before anything runs), MB; ``None`` for glep's cases."""
    if name != "jax: BPTT gradient":
        return None
    import jax

    pr = build(n, hidden, batch, steps, "numpy")
    U, Y, q0, p0 = sampled(pr)
    with jax.enable_x64(True):
        _, loss, _ = jax_peers(pr.grid.h)
        th = {k: jax.numpy.asarray(v) for k, v in pr.theta.items()}
        compiled = jax.jit(jax.grad(loss)).lower(th, q0, p0, U, Y).compile()
        stats = compiled.memory_analysis()
    if stats is None:  # pragma: no cover - backend without the analysis
        return None
    total = stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
    return total / 2**20


def child(name, n, hidden, batch, steps, runs=2, limit_gb=None) -> None:
    """Run one case ``runs`` times in this (fresh) interpreter (the first run compiles); print the last run's
    wall time and the peak resident set over the runs minus the resident set before them (JSON).  Under a
    memory cap an out-of-memory failure is reported (``"oom"``: the message and the bytes XLA asked for)."""
    import jax

    if limit_gb:
        cap_memory(limit_gb)
    row = {"case": name, "steps": steps, "limit_gb": limit_gb}
    xla = xla_memory_mb(name, n, hidden, batch, steps)
    if xla is not None:
        row["xla_mb"] = xla
    table, _ = cases(n, hidden, batch, steps, peers=name.startswith(("jax", "diffrax")))
    fn = _x64(table[name])
    with jax.enable_x64(True):
        jax.block_until_ready(jax.numpy.ones(4) * 2.0)  # the runtime is up before the baseline
    rss = _PeakRSS()
    try:
        with rss:
            for _ in range(runs):
                t0 = time.perf_counter()
                fn()
                wall = time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - only out-of-memory is reported, anything else re-raised
        text = str(exc)
        if not (isinstance(exc, MemoryError) or "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()):
            raise
        asked = _OOM_BYTES.search(text)
        row.update(wall_s=float("nan"), peak_mb=rss.peak - rss.start, oom=text.strip().splitlines()[0][:300],
                   oom_request_mb=int(asked.group(1)) / 2**20 if asked else None)
        print(json.dumps(row))
        return
    row.update(wall_s=wall, peak_mb=rss.peak - rss.start)
    print(json.dumps(row))


MEMORY_CASES = ("glep numpy: echo", "glep numpy: adjoint", "glep jax: echo", "glep jax: RHEL",
                "glep jax: adjoint", "jax: BPTT gradient", "diffrax RCA: gradient")


def memory(n, hidden, batch, horizons, names, runs=2, limit_gb=None) -> list[dict]:
    """One fresh interpreter per (case, horizon), each under the address-space cap ``limit_gb``."""
    rows = []
    for steps in horizons:
        for name in names:
            cmd = [sys.executable, __file__, "--child", name, "--size", f"{n}x{hidden}x{batch}", "--steps", str(steps),
                   "--runs", str(runs)] + (["--memory-limit-gb", str(limit_gb)] if limit_gb else [])
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=7200)
            if proc.returncode != 0:
                lines = proc.stderr.strip().splitlines() or ["?"]
                oom = next((ln for ln in lines if "RESOURCE_EXHAUSTED" in ln or "bad_alloc" in ln
                            or "MemoryError" in ln), None)
                row = {"case": name, "steps": steps, "wall_s": float("nan"), "peak_mb": float("nan"),
                       "limit_gb": limit_gb}
                if oom is not None or proc.returncode < 0:  # killed or aborted under the cap
                    row["oom"] = (oom or f"process ended by signal {-proc.returncode}")[:300]
                else:
                    row["error"] = lines[-1][:120]
                rows.append(row)
                continue
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"  [{time.strftime('%H:%M:%S', time.gmtime())}] {json.dumps(rows[-1])}", flush=True)
    return rows


def growth_estimate(rows, name, steps) -> float | None:
    """The peak (MB) at ``steps`` extrapolated linearly from the case's two longest measured horizons."""
    done = sorted((r["steps"], r["peak_mb"]) for r in rows
                  if r["case"] == name and "oom" not in r and "error" not in r and r["steps"] < steps)
    if len(done) < 2:
        return None
    (n0, m0), (n1, m1) = done[-2:]
    return m1 + (m1 - m0) / (n1 - n0) * (steps - n1)


def memory_cell(rows, r) -> str:
    if "oom" not in r:
        return f"{r['peak_mb']:.0f}"
    need = [v for v in (r.get("xla_mb"), r.get("oom_request_mb"), growth_estimate(rows, r["case"], r["steps"]))
            if v]
    return f"OOM (cap {r['limit_gb']:g} GiB; needs >= {max(need) / 1024:.1f} GiB)" if need else "OOM"


# -- report -------------------------------------------------------------------------------------------
def table(headers, rows) -> None:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(str(h).rjust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths)))


def parse_size(text: str) -> tuple[int, int, int]:
    n, hidden, batch = (int(v) for v in text.lower().split("x"))
    return n, hidden, batch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes and horizons (seconds): the smoke test")
    ap.add_argument("--sizes", default="32x32x16,64x64x64", help="n x hidden x batch, comma-separated")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--memory-size", default="16x16x16")
    ap.add_argument("--horizons", default="1000,10000,100000")
    ap.add_argument("--json", default=None)
    ap.add_argument("--only-memory", action="store_true", help="section 3 only")
    ap.add_argument("--memory-cases", default=",".join(MEMORY_CASES), help="section 3's cases, comma-separated")
    ap.add_argument("--memory-limit-gb", type=float, default=10.0,
                    help="address-space cap of each section-3 process (RLIMIT_AS); 0 for none")
    ap.add_argument("--runs", type=int, default=2, help="runs of each section-3 case in its process (first compiles)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--size", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, *parse_size(args.size), args.steps, args.runs, args.memory_limit_gb or None)
        return 0
    if args.smoke:
        args.sizes, args.steps, args.repeats, args.memory_size, args.horizons = "4x3x2", 40, 1, "4x3x2", "40"
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    t_start = time.perf_counter()
    print(f"bench_peers: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.2f}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}, h = {H}, centred β = {BETA:g}")
    results: dict = {"agreement": {}, "timings": {}, "memory": []}

    print("\n1. Agreement (checked before timing): each gradient against glep numpy's discrete adjoint")
    for n, hidden, batch in [] if args.only_memory else sizes:
        steps = min(args.steps, 200)
        agr = agreement(n, hidden, batch, steps)
        results["agreement"][f"{n}x{hidden}x{batch}"] = agr
        print(f"\nn = {n}, hidden = {hidden}, batch = {batch}, {steps} steps: |C_h(jax) − C_h(glep)|/C_h = "
              f"{agr['loss_rel']:.1e}; final states, numpy loop vs jax and glep jax: {agr['forward_max_abs']:.1e}")
        table(["case", "max|g − g_adjoint| / max|g_adjoint|"], [[k, f"{v:.1e}"] for k, v in agr["grad_rel"].items()])

    print(f"\n2. Wall time [s], {args.steps} steps, best of {args.repeats} (interleaved; compilation excluded)")
    for n, hidden, batch in [] if args.only_memory else sizes:
        best = timings(n, hidden, batch, args.steps, args.repeats)
        results["timings"][f"{n}x{hidden}x{batch}"] = best
        loop, bptt = best["numpy loop: forward"], best.get("jax: BPTT gradient", float("nan"))
        print(f"\nn = {n}, hidden = {hidden}, batch = {batch}")
        table(["case", "wall [s]", "/ numpy loop", "/ jax BPTT"],
              [[k, f"{v:.4f}", f"{v / loop:.2f}", f"{v / bptt:.2f}"] for k, v in best.items()])

    n, hidden, batch = parse_size(args.memory_size)
    horizons = [int(s) for s in args.horizons.split(",")]
    print(f"\n3. Peak memory against the horizon (n = {n}, hidden = {hidden}, batch = {batch}; one fresh "
          f"interpreter per case under an address-space cap of {args.memory_limit_gb:g} GiB, run {args.runs} time(s) "
          "(the first run compiles): peak resident set during the runs minus the resident set before them, MB "
          "(compilation included); wall time of the last run)")
    chosen = tuple(args.memory_cases.split(","))
    rows = memory(n, hidden, batch, horizons, chosen[2::3] if args.smoke else chosen, args.runs,
                  args.memory_limit_gb or None)
    results["memory"] = rows
    names = list(dict.fromkeys(r["case"] for r in rows))
    grid = {(r["case"], r["steps"]): r for r in rows}
    table(["case"] + [f"{s} steps: MB" for s in horizons] + [f"{s} steps: s" for s in horizons],
          [[name] + [memory_cell(rows, grid[name, s]) for s in horizons]
           + [f"{grid[name, s]['wall_s']:.2f}" for s in horizons] for name in names])
    for r in rows:
        if "xla_mb" in r:
            print(f"  {r['case']} at {r['steps']} steps: XLA's buffer assignment (arguments + outputs + temporaries) "
                  f"{r['xla_mb']:.0f} MB")
        if "oom" in r:
            print(f"  {r['case']} at {r['steps']} steps ran out of memory under the cap: {r['oom'][:200]}")
        if "error" in r:
            print(f"  {r['case']} at {r['steps']} steps failed: {r['error']}")
    print(f"\ntotal benchmark time {time.perf_counter() - t_start:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
