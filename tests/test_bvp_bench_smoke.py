"""Smoke test: ``benchmarks/bench_bvp.py --quick`` runs and prints every table (no timing asserted)."""

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_bvp.py"


@pytest.mark.slow
def test_bench_bvp_quick(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    for heading in ("time to accuracy", "FE (UFL", "time per Newton iteration", "speed-up on 2 ranks"):
        assert heading in text, text
    for label in ("scipy solve_bvp", "glep.bvp P3", "glep.bvp vectorised", "petsc natural", "mumps"):
        assert label in text, text
    errors = [float(x) for x in re.findall(r"\s(\d\.\d\de-\d\d)\s*$", text, flags=re.M)]
    assert errors and all(math.isfinite(e) and e < 1e-2 for e in errors)
    assert "speed-up" in text.split("speed-up on 2 ranks")[1]
