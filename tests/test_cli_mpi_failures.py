"""A failure on one MPI rank stops every rank: no hang, the message printed once, a non-zero status.

Each case launches ``mpirun -n 1 glep compare ... : -n 1 glep compare ...`` (MPMD: each rank gets its
own command line) in a subprocess with a timeout guard; a hang shows as a timeout.
"""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
MPIRUN = shutil.which("mpirun", path=str(BIN)) or shutil.which("mpirun")
GLEP = [sys.executable, "-m", "glep.cli", "compare"]
TINY = ["--steps", "20", "--betas", "1e-3", "--estimators", "pfvp", "--quiet"]
GUARD = 120  # seconds: far above the few seconds a run takes; reached only by a hang

pytestmark = pytest.mark.skipif(MPIRUN is None, reason="mpirun not found")


def _mpmd(rank0: list[str], rank1: list[str]) -> subprocess.CompletedProcess:
    """Run ``mpirun -n 1 glep compare rank0 : -n 1 glep compare rank1``; kill the whole job on a hang."""
    cmd = [MPIRUN, "-n", "1", *GLEP, *rank0, ":", "-n", "1", *GLEP, *rank1]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=GUARD)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail(f"mpirun hung (killed after {GUARD} s): {' '.join(cmd)}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _failed_once(run: subprocess.CompletedProcess, message: str) -> None:
    assert run.returncode != 0, run.stderr
    assert run.stderr.count(message) == 1, run.stderr
    assert run.stderr.count("glep: error") == 1, run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("failing", [0, 1])
def test_missing_config_file_on_one_rank(tmp_path, failing):
    good = [*TINY, "--output", str(tmp_path / "out")]
    bad = [*good, "--config", str(tmp_path / "missing.toml")]
    run = _mpmd(bad if failing == 0 else good, bad if failing == 1 else good)
    _failed_once(run, f"glep: error on rank {failing} of 2: --config: file '{tmp_path / 'missing.toml'}' "
                      "does not exist")
    assert not (tmp_path / "out" / "results.h5").exists()


def test_bad_config_on_one_rank(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[compare]\nsteps = "abc"\n')
    good = [*TINY, "--output", str(tmp_path / "out")]
    run = _mpmd(good, ["--config", str(cfg), "--quiet", "--output", str(tmp_path / "out")])
    _failed_once(run, "glep: error on rank 1 of 2: config key 'steps': expected an integer, got 'abc'")


def test_bad_option_on_one_rank(tmp_path):
    good = [*TINY, "--output", str(tmp_path / "out")]
    run = _mpmd(good, [*good, "--T", "inf"])
    _failed_once(run, "glep: error on rank 1 of 2: option --T: expected a finite number, got 'inf'")


def test_unknown_argument_on_one_rank(tmp_path):
    good = [*TINY, "--output", str(tmp_path / "out")]
    run = _mpmd(good, [*good, "--bogus"])
    _failed_once(run, "glep: error on rank 1 of 2: unrecognized arguments: --bogus")


def test_output_folder_unusable_on_the_writing_rank(tmp_path):
    """Rank 0 checks the folder (it writes the results); rank 1 must stop too."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    args = [*TINY, "--output", str(blocker / "out")]
    run = _mpmd(args, args)
    _failed_once(run, f"glep: error on rank 0 of 2: --output: cannot create the folder '{blocker / 'out'}'")


def test_output_folder_that_is_a_file_on_one_rank(tmp_path):
    """Different options per rank are refused as such (the folder of rank 1 would never be used)."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    run = _mpmd([*TINY, "--output", str(tmp_path / "out")], [*TINY, "--output", str(blocker)])
    _failed_once(run, f"glep: error on rank 0 of 2: ranks were given different options (output: "
                      f"'{tmp_path / 'out'}' on rank 0, '{blocker}' on rank 1)")


def test_same_error_on_every_rank_printed_once(tmp_path):
    args = [*TINY, "--steps", "0", "--output", str(tmp_path / "out")]
    run = _mpmd(args, args)
    _failed_once(run, "glep: error on rank 0 of 2: option --steps: expected an integer >= 1, got '0'")

