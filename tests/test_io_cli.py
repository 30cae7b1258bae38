"""HDF5 round trips and the command line (including a closed stdout pipe and Ctrl-C)."""

import importlib
import os
import shlex
import signal
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
    _assert_same_trajectory(back, tr)
    with pytest.raises(InputError, match="no trajectory named 'nope'"):
        load_trajectory(tmp_path / "t.h5", "nope")


def _assert_same_trajectory(back, tr):
    """Everything but the backend handles survives the file: arrays exactly, the frozen report equal."""
    for key in ("times", "q", "p0", "pT"):
        np.testing.assert_array_equal(getattr(back, key), getattr(tr, key))
    assert (back.p is None) == (tr.p is None)
    assert back.boundary_name == tr.boundary_name and back.beta == tr.beta
    assert (back.report, back.action, back.morse_index) == (tr.report, tr.action, tr.morse_index)
    assert back.fe is None
    for k in tr.params:
        np.testing.assert_array_equal(back.params[k], tr.params[k])


def test_both_backends_round_trip_with_their_solver_report(tmp_path):
    """A shooting (time-stepping) and a finite-element trajectory: one type, saved and loaded alike."""
    from glep.boundary import CBVP
    from glep.bvp import solve_bvp
    from glep.grid import TimeGrid
    from glep.ivp.shooting import shoot_cbvp
    from glep.reference import bratu_system

    system, params = bratu_system(2.0)
    shot = shoot_cbvp(system, params, TimeGrid(1.0, 32), [0.0], [0.0], p0_guess=[1.0])
    fe = solve_bvp(system, params, (1.0, 32), CBVP([0.0], [0.0]), guess=shot, morse=True)
    assert fe.q.shape == shot.q.shape == (33, 1, 1) and fe.p is None and fe.fe is not None
    # P1 + Gauss–Lobatto is Störmer–Verlet: the shooting trajectory is already the FE solution
    assert fe.report.reason.startswith("CONVERGED") and fe.report.iterations == 0
    assert len(fe.report.history) == fe.report.iterations + 1 and fe.report.wall_time > 0
    assert shot.report.reason and len(shot.report.history) == shot.report.iterations + 1 and shot.report.wall_time > 0
    assert fe.morse_index == fe.fe.hessian.index and fe.action is not None
    for name, tr in (("shooting", shot), ("fe", fe)):
        save_trajectory(tmp_path / "t.h5", tr, name)
        _assert_same_trajectory(load_trajectory(tmp_path / "t.h5", name), tr)
    batch = shoot_cbvp(system, params, TimeGrid(1.0, 32), [[0.0], [0.0]], [[0.0], [0.0]], p0_guess=[[1.0], [8.0]])
    with pytest.raises(InputError, match=r"guess trajectory must have q of shape \(nodes, 1, 1\), got \(33, 2, 1\)"):
        solve_bvp(system, params, (1.0, 32), CBVP([0.0], [0.0]), guess=batch)


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


# ---- interrupts: a closed pipe and Ctrl-C end quietly ----------------------------------------------------------

GLEP = [sys.executable, "-m", "glep.cli"]
TINY = ["--steps", "20", "--betas", "1e-3", "--estimators", "pfvp", "echo", "--quiet"]


@pytest.fixture(scope="module")
def results_h5(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    assert main(["compare", *TINY, "--output", str(out)]) == 0
    return out / "results.h5"


def _closed_pipe_run(cmd: list[str], unbuffered: bool = False) -> subprocess.CompletedProcess:
    """Run ``cmd`` with stdout a pipe whose reader has already gone: every write fails with EPIPE."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(cmd, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=300, env=env)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
def test_report_into_a_closed_pipe_ends_quietly(results_h5, unbuffered):
    run = _closed_pipe_run([*GLEP, "report", str(results_h5)], unbuffered)
    assert run.returncode == 141 and run.stderr == ""


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
def test_compare_into_a_closed_pipe_ends_quietly_and_keeps_the_results(tmp_path, unbuffered):
    """PETSc is loaded by then: its signal handler must not turn SIGPIPE into 'PETSC ERROR: Caught signal'.
    The table cannot be shown, but the run goes on and writes its files."""
    run = _closed_pipe_run([*GLEP, "compare", *TINY, "--output", str(tmp_path)], unbuffered)
    assert run.returncode == 141 and run.stderr == ""
    assert (tmp_path / "results.h5").exists() and (tmp_path / "error_vs_beta.png").exists()


def test_report_piped_into_head(results_h5):
    """``glep report results.h5 | head -1``: the first line, no traceback (status 0 or 141 by timing)."""
    cmd = f"{shlex.join([*GLEP, 'report', str(results_h5)])} | head -1; echo \"status=${{PIPESTATUS[0]}}\""
    run = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300)
    lines = run.stdout.splitlines()
    assert lines[0].startswith("coupled oscillators (n=4): gradients of C_h")
    assert lines[1] in ("status=0", "status=141")
    assert run.stderr == ""


def test_ctrl_c_while_reading_the_config(tmp_path):
    """SIGINT while glep blocks reading its --config (a FIFO nobody writes): 'glep: interrupted', exit 130."""
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    with subprocess.Popen([*GLEP, "compare", "--config", str(fifo), "--output", str(tmp_path / "o")],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        with open(fifo, "w"):  # returns once glep has opened the FIFO: it is running Python code
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130
    assert err == "glep: interrupted\n" and out == ""


def test_ctrl_c_during_the_computation(tmp_path):
    """SIGINT during the computation, PETSc initialised: 'glep: interrupted', exit 130, no traceback."""
    stand_in = (
        "import importlib, sys, time\n"
        "from glep.cli import main\n"
        "def compute(*args, **kwargs):\n"
        "    from petsc4py import PETSc\n"
        "    PETSc.Vec().createSeq(3).destroy()\n"
        "    print('computing', file=sys.stderr, flush=True)\n"
        "    time.sleep(600)\n"
        "importlib.import_module('glep.estimators.compare').compare_estimators = compute\n"
        f"sys.exit(main(['compare', '--steps', '20', '--output', {str(tmp_path)!r}]))\n"
    )
    with subprocess.Popen([sys.executable, "-c", stand_in], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        lines = []
        while not lines or lines[-1] != "computing\n":
            lines.append(proc.stderr.readline())
            assert lines[-1], f"the stand-in ended early: {''.join(lines)}"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130
    assert err == "glep: interrupted\n"


def test_keyboard_interrupt_in_process(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module("glep.estimators.compare"), "compare_estimators", interrupted)
    assert main(["compare", *TINY, "--output", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "glep: interrupted\n"


def test_a_defect_agreed_across_ranks_keeps_its_traceback(capsys):
    """Under MPI a non-glep exception (a bug, not a user error) is agreed into a RankError chained to it; the
    failing rank prints its traceback and 'internal error', exit 1; a rank that did not fail stays silent."""
    from glep.cli import _report_error
    from glep.parallel import RankError

    def failing(reported_elsewhere):
        try:
            try:
                1 / 0  # noqa: B018
            except ZeroDivisionError as bug:
                exc = RankError("glep failed on rank 0 of 2: ZeroDivisionError: division by zero", 0, False)
                exc.reported_elsewhere = reported_elsewhere
                raise exc from bug
        except RankError as exc:
            return exc

    assert _report_error(failing(False)) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError" in err and "glep: internal error: glep failed on rank 0" in err
    assert _report_error(failing(True)) == 1
    assert capsys.readouterr().err == ""
