"""Smoke test: ``benchmarks/bench_estimators.py --quick`` runs and prints its tables.

No timing is asserted (timings depend on the machine and its load); only that
the script exits 0, prints every section and a finite figure where one is
expected, and writes its JSON.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_estimators.py"


@pytest.mark.slow
def test_bench_estimators_quick(tmp_path):
    out_json = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out_json)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    for heading in ("1. Cost in forward passes", "1b. Where the time goes", "2. CIVP + residual",
                    "2b. Same at fixed n", "3. Discrete adjoint", "4. Integrator throughput"):
        assert heading in text, text
    for column in ("RHEL", "echo", "PFVP", "CIVP contrast", "adjoint", "passes/P", "glep/numpy time"):
        assert column in text, text
    assert "fit time = a + s P" in text
    assert "total benchmark time" in text

    data = json.loads(out_json.read_text())
    assert data["mode"] == "quick"
    for row in data["constant_cost"]:
        for name in ("RHEL", "echo", "PFVP", "adjoint"):
            assert math.isfinite(row["passes"][name]) and row["passes"][name] > 0
            # correctness, not speed: the exact estimators agree with the adjoint
            assert row["rel_err"][name] < 1e-5
    for row in data["civp_n_scan"]["rows"]:
        assert row["rel_err"] < 1e-5
    for case in data["throughput"].values():
        assert case["max_abs_diff"] < 1e-10  # the NumPy baseline integrates the same system


def test_bench_import_runs():
    """benchmarks/bench_import.py prints its table (one run of each fresh interpreter; no timing asserted)."""
    script = SCRIPT.parent / "bench_import.py"
    proc = subprocess.run([sys.executable, str(script), "--runs", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "import glep / import numpy =" in proc.stdout and "import glep + finite elements" in proc.stdout


@pytest.mark.slow
def test_bench_peers_smoke(tmp_path):
    """benchmarks/bench_peers.py --smoke: agreement first, then timings and memory (no timing asserted)."""
    pytest.importorskip("jax", reason="bench_peers compares with JAX peers: pip install 'glep[jax]'")
    script = SCRIPT.parent / "bench_peers.py"
    out_json = tmp_path / "peers.json"
    proc = subprocess.run([sys.executable, str(script), "--smoke", "--json", str(out_json)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for heading in ("1. Agreement", "2. Wall time", "3. Peak memory", "total benchmark time"):
        assert heading in proc.stdout, proc.stdout
    data = json.loads(out_json.read_text())
    for agr in data["agreement"].values():
        assert agr["loss_rel"] < 1e-12 and agr["forward_max_abs"] < 1e-12
        for name, err in agr["grad_rel"].items():
            # exact gradients to round-off; the nudged estimators to their O(β²) bias (β = 1e-4)
            assert err < (1e-12 if "adjoint" in name or "BPTT" in name or "diffrax" in name else 1e-6), name
    for row in data["memory"]:
        assert "error" not in row and math.isfinite(row["peak_mb"])
