"""HDF5 round trips and the command line."""

import subprocess
import sys

import h5py
import numpy as np
import pytest

from glep.cli import main
from glep.errors import InputError
from glep.estimators.compare import compare_estimators, format_table
from glep.estimators.output import load_report, save_report
from glep.estimators.problem import Problem
from glep.io import load_trajectory, save_trajectory
from glep.models import coupled_oscillators


def test_trajectory_round_trip(tmp_path):
    pr = Problem.from_model(coupled_oscillators(3), steps=50)
    tr = pr.free_trajectory()
    save_trajectory(tmp_path / "t.h5", tr, "free")
    back = load_trajectory(tmp_path / "t.h5", "free")
    np.testing.assert_array_equal(back.q, tr.q)
    np.testing.assert_array_equal(back.p, tr.p)
    assert back.boundary == "CIVP" and back.beta == 0.0
    for k in tr.params:
        np.testing.assert_array_equal(back.params[k], tr.params[k])
    with pytest.raises(InputError, match="no trajectory named 'nope'"):
        load_trajectory(tmp_path / "t.h5", "nope")


def test_report_round_trip_re_analyses_without_re_running(tmp_path):
    pr = Problem.from_model(coupled_oscillators(3), steps=60)
    rep = compare_estimators(pr, estimators=["pfvp", "echo"], betas=[1e-2, 1e-3])
    save_report(rep, tmp_path / "r.h5", {"steps": 60})
    back = load_report(tmp_path / "r.h5")
    assert format_table(back) == format_table(rep)
    with h5py.File(tmp_path / "r.h5") as f:
        assert "version_dolfinx" in f.attrs and "config" in f.attrs


def test_cli_compare_small_run(tmp_path, capsys):
    rc = main(["compare", "--steps", "80", "--betas", "1e-2", "1e-3", "--output", str(tmp_path), "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    for label in ("CIVP contrast", "CIVP + residual", "PFVP", "echo", "RHEL"):
        assert label in out
    assert (tmp_path / "results.h5").exists() and (tmp_path / "error_vs_beta.png").exists()


def test_cli_toml_config_and_bad_config(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[compare]\nsystem = "pendulum_chain"\nsteps = 60\nbetas = [1e-2, 1e-3]\n'
                   'estimators = ["pfvp"]\n')
    assert main(["compare", "--config", str(cfg), "--output", str(tmp_path), "--quiet"]) == 0
    assert "pendulum chain" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("stepz = 3\n")
    assert main(["compare", "--config", str(bad), "--output", str(tmp_path)]) == 2
    assert "unknown option(s) ['stepz']" in capsys.readouterr().err


def test_cli_help_explains_options():
    out = subprocess.run([sys.executable, "-m", "glep.cli", "compare", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for opt in ("--system", "--betas", "--steps", "--T", "--output", "--config"):
        assert opt in out.stdout


def test_cli_passes_glep_prefixed_petsc_options(tmp_path):
    cmd = [sys.executable, "-m", "glep.cli", "compare", "--steps", "40", "--T", "1.0", "--betas", "1e-3",
           "--estimators", "cbvp", "--output", str(tmp_path), "--quiet", "-glep_snes_monitor"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "SNES Function norm" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "glep.cli", "compare", "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unrecognized arguments: --bogus" in bad.stderr
