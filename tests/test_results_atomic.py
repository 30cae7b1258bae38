"""results.h5 and its plot are written as a pair, atomically; a file that is not a results file is refused.

A writer is killed (SIGKILL, SIGTERM, SIGINT) while paused at each stage of
:func:`glep.estimators.output.write_results` (deterministic: the test's
checkpoint pauses the writer, the test signals it there).  Afterwards the
previous results are intact or the new ones complete, and ``glep report``
reads them.
"""

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from glep.cli import main
from glep.errors import InputError
from glep.estimators.compare import compare_estimators
from glep.estimators.output import (
    PLOT,
    RESULTS,
    ResultsWriteError,
    load_report,
    png_run_id,
    save_report,
    write_results,
)
from glep.estimators.problem import Problem
from glep.io import save_trajectory
from glep.models import coupled_oscillators

VERSIONS = {"glep": "test"}  # skips importing PETSc for the versions: not what is tested here

# One process imports glep once and forks one writer per case; each writer pauses at its stage (it
# prints its pid and the stage) until the test signals it.  A writer ends with os._exit: a forked
# child must not run the parent's exit handlers (MPI_Finalize).
WRITERS = textwrap.dedent("""
    import json, os, sys, time
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401  (imported once, before forking)
    from glep.estimators.output import load_report, plot_report, write_results
    from glep.io import load_trajectory

    src, cases = sys.argv[1], json.loads(sys.argv[2])
    report, free = load_report(src), load_trajectory(src, "free")
    plot_report(report, os.devnull)  # matplotlib builds its text parsers once, before forking
    pids = []
    for case, (out, stop_at) in enumerate(cases):
        pid = os.fork()
        if pid == 0:
            def checkpoint(stage):
                if stage == stop_at:
                    os.write(1, f"{os.getpid()} {case} {stage}\\n".encode())  # one write: lines never interleave
                    time.sleep(600)  # the test signals this process here
            code = 0
            try:
                write_results(out, report, {"run": "second"}, {"free": free}, {"glep": "test"},
                              checkpoint=checkpoint)
            except KeyboardInterrupt:
                code = 130
            except SystemExit as exc:  # SIGTERM while writing
                code = exc.code
            except BaseException as exc:
                os.write(2, f"{os.getpid()} error {exc!r}\\n".encode())
                code = 1
            os._exit(code)
        pids.append(pid)
    for pid in pids:
        print(f"{pid} exit {os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}", flush=True)
""")

STAGES = ["start", "plot written", "results partly written", "results written", "plot replaced"]
#: (signal or None for a writer that finishes, the stage it is sent at)
CASES = ([(signal.SIGKILL, s) for s in STAGES]
         + [(signal.SIGTERM, "results partly written"), (signal.SIGINT, "results partly written"),
            (signal.SIGINT, "plot replaced"), (None, "never")])


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A saved report with its free trajectory (the writers' input) and a first good pair of results."""
    pr = Problem.from_model(coupled_oscillators(4), steps=400)
    rep = compare_estimators(pr, estimators=["pfvp", "echo"], betas=[1e-2, 1e-3])
    folder = tmp_path_factory.mktemp("source")
    save_report(rep, folder / "src.h5", {"run": "source"}, {"free": pr.free_trajectory()}, VERSIONS)
    first = folder / "first"
    write_results(first, load_report(folder / "src.h5"), {"run": "first"}, None, VERSIONS)
    return folder / "src.h5", first


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run_id(h5: Path) -> str:
    with h5py.File(h5, "r") as f:
        return str(f.attrs["run_id"])


def _visible(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


def test_first_write_is_a_matching_pair(source):
    _, first = source
    assert _visible(first) == {RESULTS, PLOT}
    assert png_run_id(first / PLOT) == _run_id(first / RESULTS) == load_report(first / RESULTS).run_id
    assert not list(first.glob(".*.tmp"))
    mask = os.umask(0)
    os.umask(mask)
    for name in (RESULTS, PLOT):  # the permissions an ordinary open() gives, not the temporary file's 0600
        assert (first / name).stat().st_mode & 0o777 == 0o666 & ~mask


def _signal_writers(src: Path, outs: list[Path]) -> dict[Path, int]:
    """Run the writers, signal each at its stage; the exit code of each (negative: killed by that signal)."""
    cases = [[str(out), stage] for out, (_, stage) in zip(outs, CASES, strict=True)]
    server = subprocess.Popen([sys.executable, "-c", WRITERS, str(src), json.dumps(cases)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    paused = {}  # pid -> case index
    try:
        waiting = sum(stage != "never" for _, stage in CASES)
        while len(paused) < waiting:
            line = server.stdout.readline()
            assert line, server.communicate(timeout=60)[1]
            pid, case, stage = line.split(" ", 2)
            assert stage.strip() == CASES[int(case)][1], line
            paused[int(pid)] = int(case)
        for pid, case in paused.items():
            os.kill(pid, CASES[case][0])
        rest, err = server.communicate(timeout=120)
    finally:
        for pid in paused:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        server.kill()
    assert server.returncode == 0, err
    codes = {}
    for line in rest.splitlines():
        pid, what, code = line.split(" ", 2)
        assert what == "exit", line
        case = paused.get(int(pid), len(CASES) - 1)  # the one writer never paused is the last case
        codes[outs[case]] = int(code)
    return codes


def test_killed_writers_leave_old_or_new_results(source, tmp_path, capsys):
    src, first = source
    old_id, old_digest = _run_id(first / RESULTS), _digest(first / RESULTS)
    outs = [tmp_path / f"case{i}" for i in range(len(CASES))]
    for out in outs:
        shutil.copytree(first, out)
    codes = _signal_writers(src, outs)
    for out, (sig, stage) in zip(outs, CASES, strict=True):
        what = f"{signal.Signals(sig).name if sig else 'no signal'} at {stage!r}"
        assert _visible(out) == {RESULTS, PLOT}, what
        if sig is None:  # the new results, complete, with their own plot
            assert codes[out] == 0, what
            back = load_report(out / RESULTS)
            assert back.run_id != old_id and png_run_id(out / PLOT) == back.run_id, what
            with h5py.File(out / RESULTS) as f:
                assert '"second"' in f.attrs["config"] and f["trajectories/free/q"].shape[0] == 401, what
            assert not list(out.glob(".*.tmp")), what
            continue
        # SIGKILL kills at once; SIGTERM (status 128 + 15) and SIGINT (KeyboardInterrupt) exit through Python
        assert codes[out] == {signal.SIGKILL: -signal.SIGKILL, signal.SIGTERM: 143, signal.SIGINT: 130}[sig], what
        # results.h5 is renamed last: until then the previous file is untouched, byte for byte
        assert _run_id(out / RESULTS) == old_id and _digest(out / RESULTS) == old_digest, what
        if stage == "plot replaced":  # killed between the two renames: the new plot is detected
            assert png_run_id(out / PLOT) not in (None, old_id), what
        else:
            assert png_run_id(out / PLOT) == old_id, what
        if sig != signal.SIGKILL:  # only SIGKILL can leave temporary files
            assert not list(out.glob(".*.tmp")), what
        assert main(["report", str(out / RESULTS)]) == 0, what
        captured = capsys.readouterr()
        assert "PFVP" in captured.out and "echo" in captured.out, what
        assert ("is not from the run in" in captured.err) == (stage == "plot replaced"), what
    # the next write removes what a killed writer left and writes a matching pair
    for out in outs[:2]:
        assert list(out.glob(".*.tmp"))
        h5, png = write_results(out, load_report(src), {"run": "third"}, None, VERSIONS)
        assert not list(out.glob(".*.tmp"))
        assert png_run_id(png) == _run_id(h5) != old_id


def test_an_error_while_writing_keeps_the_previous_results(source, tmp_path):
    src, first = source
    out = tmp_path / "out"
    shutil.copytree(first, out)
    before = {n: _digest(out / n) for n in (RESULTS, PLOT)}

    def fail(stage):
        if stage == "results partly written":
            raise OSError("No space left on device")

    with pytest.raises(ResultsWriteError, match=f"cannot write the results to {out}: No space left on device; "
                       "the previous results there, if any, are unchanged"):
        write_results(out, load_report(src), {}, None, VERSIONS, checkpoint=fail)
    assert {n: _digest(out / n) for n in (RESULTS, PLOT)} == before
    assert sorted(p.name for p in out.iterdir()) == sorted([RESULTS, PLOT])
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    with pytest.raises(ResultsWriteError, match=f"cannot write the results to {a_file}: File exists"):
        write_results(a_file, load_report(src), {}, None, VERSIONS)


def test_cli_compare_writes_a_matching_pair(tmp_path, capsys):
    rc = main(["compare", "--steps", "40", "--betas", "1e-2", "--estimators", "pfvp", "--output", str(tmp_path),
               "--quiet"])
    assert rc == 0
    capsys.readouterr()
    rep = load_report(tmp_path / RESULTS)
    assert rep.run_id and png_run_id(tmp_path / PLOT) == rep.run_id
    assert [r.name for r in rep.rows] == ["pfvp"] and not rep.failures


# -- files that are not results files ----------------------------------------------------------
def _bad_files(folder: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, expected reason)."""
    cases = {}
    empty = folder / "empty.h5"
    empty.write_bytes(b"")
    cases["empty"] = (empty, "empty file")
    rand = folder / "random.h5"
    rand.write_bytes(np.random.default_rng(0).bytes(4096))
    cases["random"] = (rand, "not an HDF5 file")
    data = good.read_bytes()
    trunc = folder / "truncated.h5"
    trunc.write_bytes(data[: len(data) // 2])
    cases["truncated"] = (trunc, "truncated or damaged HDF5 file")
    foreign = folder / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3.0)
    cases["foreign"] = (foreign, "no 'glep_format' attribute: not written by glep compare")
    older = folder / "older.h5"
    shutil.copy(good, older)
    with h5py.File(older, "a") as f:
        del f.attrs["glep_format"]
    cases["older glep"] = (older, "written by an older glep, without 'glep_format'; run glep compare again")
    traj = folder / "trajectory.h5"
    save_trajectory(traj, Problem.from_model(coupled_oscillators(2), steps=10).free_trajectory(), "free")
    cases["trajectory"] = (traj, "a glep trajectory file, not a results file")
    missing = folder / "missing.h5"
    shutil.copy(good, missing)
    with h5py.File(missing, "a") as f:
        del f["truth"]
    cases["missing group"] = (missing, "missing 'truth'")
    newer = folder / "newer.h5"
    shutil.copy(good, newer)
    with h5py.File(newer, "a") as f:
        f.attrs["glep_format"] = "glep-results/99"
    cases["other format"] = (newer, "format 'glep-results/99'; this glep reads 'glep-results/1'")
    broken = folder / "broken_row.h5"
    shutil.copy(good, broken)
    with h5py.File(broken, "a") as f:
        del f["estimators/pfvp"].attrs["metrics"]
    cases["row without metrics"] = (broken, "unreadable part: KeyError")
    cases["folder"] = (folder, "it is a folder; glep compare writes")
    return cases


def test_bad_results_files_are_refused_with_the_reason(source, tmp_path, capsys):
    _, first = source
    for name, (path, why) in _bad_files(tmp_path, first / RESULTS).items():
        with pytest.raises(InputError, match="is not a glep results file") as err:
            load_report(path)
        assert str(err.value).startswith(f"{path} is not a glep results file ({why}"), (name, str(err.value))
        assert main(["report", str(path)]) == 2, name
        captured = capsys.readouterr()
        assert captured.err.startswith(f"glep: error: {path} is not a glep results file ({why}"), name
        assert "Traceback" not in captured.err and captured.out == "", name
    assert main(["report", str(tmp_path / "nowhere.h5")]) == 2
    assert "does not exist" in capsys.readouterr().err
