"""``glep compare --backend``: the compiled (JAX) Störmer–Verlet loops chosen from the command line or TOML.

The compiled path runs the same loops on the same term definitions as the NumPy path
(:mod:`glep.ivp.compiled`), so a run with ``--backend jax`` gives the NumPy run's numbers to round-off:
the exact row (the discrete adjoint, the ground truth) to 1e-12 relative, the estimators' rows (centred
nudge at the report β) to the round-off of their contrast amplified by 1/β, as in ``tests/test_compiled.py``.
Refusals — JAX missing, an implicit integrator, a system the compiled path cannot run, a field
system — name the option and come before any work (exit 2, no output folder).
"""

from __future__ import annotations

import importlib
import json
import re

import h5py
import numpy as np
import pytest

from glep.cli import main
from glep.ivp import compiled

compare_module = importlib.import_module("glep.estimators.compare")
TIGHT = 1e-12  # quantities without a 1/β: the discrete adjoint (the exact row)
BETA = 1e-3  # the report β of the runs
LOOSE = 64 * np.finfo(float).eps / BETA  # a finite-difference nudge divides the round-off by β
needs_jax = pytest.mark.skipif(not compiled.available(),
                               reason="the compiled path needs the optional extra JAX: pip install 'glep[jax]'")


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the computation starts (the refusal must come first)."""
    def refuse(*args, **kwargs):
        raise AssertionError("compare_estimators ran although the backend was refused")

    monkeypatch.setattr(compare_module, "compare_estimators", refuse)


def _run(tmp_path, name, backend, seed):
    out = tmp_path / name
    argv = ["compare", "--system", "hru_logcosh", "--n", "3", "--batch", "2", "--steps", "40", "--betas", str(BETA),
            "--nudges", "complex", "--report-beta", str(BETA), "--estimators", "echo",
            "--seed", str(seed), "--output", str(out), "--quiet", "--backend", backend]
    assert main(argv) == 0
    with h5py.File(out / "results.h5") as f:
        truth = {k: f["truth"][k][()] for k in f["truth"]}
        rows = {r: ({k: g[()] for k, g in f["estimators"][r]["gradient"].items()},
                    json.loads(f["estimators"][r].attrs["metrics"])) for r in f["estimators"]}
        return json.loads(f.attrs["config"]), truth, rows


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-300))


@needs_jax
@pytest.mark.parametrize("seed", [2, 5])
def test_jax_run_equals_numpy_run(tmp_path, seed):
    """The same table with either backend (two random parameter points): the exact row (the discrete
    adjoint) to 1e-12, the estimators' gradients and their O(1) metrics to round-off / β."""
    cfg_np, truth_np, rows_np = _run(tmp_path, f"np{seed}", "numpy", seed)
    cfg_jx, truth_jx, rows_jx = _run(tmp_path, f"jax{seed}", "jax", seed)
    assert cfg_np["backend"] == "numpy" and cfg_jx["backend"] == "jax"
    for k in truth_np:
        assert _rel(truth_np[k], truth_jx[k]) <= TIGHT, k
    assert rows_np.keys() == rows_jx.keys() and rows_np
    for name, (grad, metrics) in rows_np.items():
        grad_jx, metrics_jx = rows_jx[name]
        for k in grad:
            assert _rel(grad[k], grad_jx[k]) <= LOOSE, (name, k)
        for m in ("cosine", "norm_ratio"):
            assert metrics_jx[m] == pytest.approx(metrics[m], rel=LOOSE), (name, m)


@needs_jax
def test_backend_from_toml(tmp_path):
    """``backend = "jax"`` in the TOML file; the command line wins over it."""
    toml = tmp_path / "c.toml"
    toml.write_text('[compare]\nbackend = "jax"\nsystem = "gyroscopic"\n')
    assert main(["compare", "--config", str(toml), "--output", str(tmp_path / "o"), "--quiet"]) == 2
    assert not (tmp_path / "o").exists()
    assert main(["compare", "--config", str(toml), "--backend", "numpy", "--steps", "10", "--betas", "1e-3",
                 "--estimators", "pfvp", "--output", str(tmp_path / "o"), "--quiet"]) == 0


REFUSED = [
    (["--backend", "torch"], "option --backend: expected one of 'numpy' or 'jax', got 'torch'"),
    (["--backend", "jax", "--integrator", "midpoint"],
     "option --backend: backend 'jax' compiles the explicit Störmer–Verlet loop; option --integrator 'midpoint' "
     "is implicit"),
    (["--backend", "jax", "--system", "gyroscopic"],
     "option --backend: backend 'jax' cannot run the system 'gyroscopic': .* is not separable"),
    (["--backend", "jax", "--system", "wave"],
     "option --backend: backend 'jax' does not apply to the field system 'wave'"),
]


@pytest.mark.parametrize("argv, message", REFUSED)
def test_refusals_name_the_option(tmp_path, capsys, monkeypatch, no_work, argv, message):
    monkeypatch.setattr(compiled, "available", lambda: True)  # the refusal does not depend on JAX here
    out = tmp_path / "out"
    assert main(["compare", *argv, "--output", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("glep: error: ") and "Traceback" not in err
    assert re.search(message, err), err
    assert not out.exists()


def test_refused_without_jax(tmp_path, capsys, monkeypatch, no_work):
    """JAX missing: refused naming the option (TOML key or command line) and the extra to install."""
    monkeypatch.setattr(compiled, "available", lambda: False)
    assert main(["compare", "--backend", "jax", "--output", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("glep: error: option --backend: backend 'jax' needs the optional extra JAX "
                          "(pip install 'glep[jax]')")
    toml = tmp_path / "c.toml"
    toml.write_text('backend = "jax"\n')
    assert main(["compare", "--config", str(toml), "--output", str(tmp_path / "out"), "--quiet"]) == 2
    assert "glep: error: config key 'backend': backend 'jax' needs the optional extra JAX" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
