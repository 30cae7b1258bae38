"""Smoke test: ``benchmarks/bench_estimators.py --quick`` runs and prints its tables.

No timing is asserted (timings depend on the machine and its load); only that
the script exits 0, prints every section and a finite figure where one is
expected, and writes its JSON.
"""

import json
import math
import re
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


def test_bench_heb_smoke(tmp_path):
    """benchmarks/bench_heb.py --smoke prints its table next to the paper's figure (no timing asserted)."""
    script = SCRIPT.parent / "bench_heb.py"
    out_json = tmp_path / "heb.json"
    proc = subprocess.run([sys.executable, str(script), "--smoke", "--json", str(out_json)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for text in ("forward pass", "training iteration, averaged HEB", "discrete adjoint",
                 "1.03 s per training iteration", "HEB vs discrete adjoint"):
        assert text in proc.stdout, proc.stdout
    data = json.loads(out_json.read_text())
    assert data["smoke"] and all(math.isfinite(v) and v > 0 for v in data["passes"].values())
    assert data["heb_vs_adjoint_rel_err"] < 1e-4  # correctness, not speed (η = 1e-4 on a coarse 20-step map)


def test_bench_meshes_smoke():
    """benchmarks/bench_meshes.py --smoke prints every table with finite glep times (no timing asserted)."""
    script = SCRIPT.parent / "bench_meshes.py"
    proc = subprocess.run([sys.executable, str(script), "--smoke", "--repeats", "1"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    for heading in ("1. Time meshes", "2. Space-time rectangles", "3. Space-time boxes", "4. Write + read"):
        assert heading in text, text
    rows = [line.split() for line in text.splitlines()
            if line.split()[:1] and (line.split()[0].isdigit()
                                     or line.split()[0] in ("square", "strip", "cube", "uniform", "space-time"))]
    assert len(rows) == 2 + 5 + 2 + 2, text                  # table rows: 2 sizes, 5 rectangles, 2 boxes, 2 files
    assert "goal: a 1000-cell time mesh in <= 2 s" in text and "growth exponent" in text
    for row in rows:
        figures = [float(v) for v in row if v.replace(".", "", 1).isdigit() and "." in v]
        assert figures and all(math.isfinite(f) and f >= 0 for f in figures), row


@pytest.mark.slow
def test_bench_fields_smoke(tmp_path):
    """benchmarks/bench_fields.py --smoke prints its four sections; glep and the hand-written loop agree."""
    script = SCRIPT.parent / "bench_fields.py"
    out_json = tmp_path / "fields.json"
    proc = subprocess.run([sys.executable, str(script), "--smoke", "--json", str(out_json)], capture_output=True,
                          text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for heading in ("1. Time per leapfrog step", "2. Speed-up", "3. Echo cost in forward passes", "4. Memory"):
        assert heading in proc.stdout, proc.stdout
    data = json.loads(out_json.read_text())
    assert all(row["max_diff"] < 1e-10 for row in data["steps"])  # the same discretisation, stepped twice
    assert all(math.isfinite(r["echo_passes"]) and r["echo_passes"] > 0 for r in data["echo_cost"])
    assert data["memory"]["echo_vectors"] < min(r["peak_vectors"] for r in data["memory"]["measured"])


@pytest.mark.slow
def test_bench_spacetime_smoke(tmp_path):
    """benchmarks/bench_spacetime.py --smoke prints both tables; the solves are correct (no timing asserted)."""
    script = SCRIPT.parent / "bench_spacetime.py"
    out_json = tmp_path / "spacetime.json"
    proc = subprocess.run([sys.executable, str(script), "--smoke", "--json", str(out_json)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1. 1+1-D wave CBVP" in proc.stdout and "2. 2+1-D wave CBVP" in proc.stdout
    data = json.loads(out_json.read_text())
    for rows in (data["1d"], data["2d"]):
        errors = [r["l2_error"] for r in rows]
        assert all(math.isfinite(r["solve_s"]) and r["newton"] >= 1 and r["memory_mb"] > 0 for r in rows)
        assert errors[1] < errors[0]  # the finer mesh is closer to the exact standing wave
    assert all(r["krylov"] >= 1 for r in data["2d"])


def test_bench_sweep_smoke(tmp_path):
    """benchmarks/bench_sweep.py --smoke: 1- and 2-rank runs of a tiny study agree (no timing asserted)."""
    script = SCRIPT.parent / "bench_sweep.py"
    out_json = tmp_path / "sweep.json"
    proc = subprocess.run([sys.executable, str(script), "--smoke", "--json", str(out_json)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "speed-up of 2 ranks over 1" in proc.stdout and "write share" in proc.stdout
    data = json.loads(out_json.read_text())
    assert data["same_numbers"] and data["mode"] == "smoke"
    for case in data["cases"].values():
        assert case["items"] == 12 and math.isfinite(case["items_per_s"]) and 0 <= case["write_share"] < 1


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


def test_bench_field_adjoint_full_smoke():
    """benchmarks/bench_field_adjoint_full.py at a tiny size: both methods run, the echo matches the adjoint."""
    script = SCRIPT.parent / "bench_field_adjoint_full.py"
    proc = subprocess.run([sys.executable, str(script), "--cells", "12", "--steps", "12", "--checkpoints", "3"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "adjoint, 3 checkpoints" in proc.stdout and "echo (centred beta = 1e-4)" in proc.stdout, proc.stdout
    assert float(re.findall(r"relative error ([0-9.e+-]+)", proc.stdout)[0]) < 1e-6, proc.stdout
