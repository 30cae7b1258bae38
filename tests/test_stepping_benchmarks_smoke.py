"""Smoke tests of the NumPy-path benchmarks (tiny sizes, one repeat; nothing timed is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _run(script: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_bench_forward_loop_smoke():
    """Every family runs against its hand-written loop, the gyroscopic one against the implicit midpoint loop
    with its pieces generic and prepared (the script checks the final states agree)."""
    out = _run("bench_forward_loop.py", "--smoke")
    for family in ("coupled_oscillators", "hru_linear", "hru_logcosh", "pendulum_chain", "gyroscopic"):
        assert out.count(family) == 2, out
    assert out.count("generic pieces") == 2 and "largest glep/loop" in out


def test_bench_estimator_overhead_smoke():
    out = _run("bench_estimator_overhead.py", "--smoke")
    rows = ("forward (store=False)", "echo", "RHEL", "PFVP", "CIVP + residual", "hand-written echo", "round-off bound")
    for row in rows:
        assert row in out, out
    assert out.count("measured / declared") == 2
