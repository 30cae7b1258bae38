"""glep's NumPy forward pass against the hand-written NumPy Störmer–Verlet loop of ``bench_peers.py``.

The HRU problem of ``bench_peers.py`` (log-cosh layer, ``h = 0.008``, 1000 steps), unbatched and
batched; CPU time (``time.process_time``), cases interleaved, best of ``--repeats``.  With
``--before REV`` the stepping module of git revision ``REV`` (``ivp/stepping.py``) is timed too, on
the same discrete Lagrangian, after checking that it gives the same final state bit for bit.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_forward_loop.py --before fe5e6f5
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_peers import H, build, numpy_loop, sampled  # noqa: E402

from glep.ivp import integrate  # noqa: E402

SIZES = ((32, 32, None), (32, 32, 16), (64, 64, None), (64, 64, 64))


def stepping_at(rev: str):
    """``ivp/stepping.py`` of git revision ``rev``, imported as a module."""
    root = Path(__file__).resolve().parent.parent
    text = subprocess.run(["git", "show", f"{rev}:ivp/stepping.py"], cwd=root, check=True, capture_output=True,
                          text=True).stdout
    path = Path(tempfile.mkdtemp()) / "stepping_before.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("stepping_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def best_times(n: int, hidden: int, batch: int | None, repeats: int, before=None) -> dict[str, float]:
    """Best CPU time of each case (``glep``, ``loop`` and, with ``before``, ``before``) at one size."""
    pr = build(n, hidden, batch, 1000)
    U, _, q0, p0 = sampled(pr)
    th, dl = pr.theta, pr.dl(0.0)
    cases = {"glep": lambda: integrate(dl, q0, p0, store=False), "loop": lambda: numpy_loop(th, U, q0, p0, H)}
    if before is not None:
        old, new = before.integrate(dl, q0, p0, store=False), integrate(dl, q0, p0, store=False)
        assert all(np.array_equal(a, b) for a, b in zip(old, new)), "not the same final state bit for bit"
        cases["before"] = lambda: before.integrate(dl, q0, p0, store=False)
    best = dict.fromkeys(cases, np.inf)
    for _ in range(repeats):
        for name, run in cases.items():
            t = time.process_time()
            run()
            best[name] = min(best[name], time.process_time() - t)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--before", default=None, help="git revision whose ivp/stepping.py is timed too")
    args = ap.parse_args(argv)
    before = stepping_at(args.before) if args.before else None
    for n, hidden, batch in SIZES:
        best = best_times(n, hidden, batch, args.repeats, before)
        line = f"n = {n}, hidden = {hidden}, batch = {batch}: loop {1e3 * best['loop']:.2f} ms, glep/loop "
        if before is not None:
            line += f"before {best['before'] / best['loop']:.3f}, after "
        print(line + f"{best['glep'] / best['loop']:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
