"""A sweep killed at any moment (SIGTERM, SIGKILL) loses no finished item; --resume ends as an uninterrupted run.

One process imports glep once and forks one sweep per case (MPI and PETSc are initialised in each
child, after the fork).  Each sweep pauses at the k-th passage through one stage of the study store
(:class:`glep.estimators.study.StudyStore` calls its ``checkpoint``): deterministic moments, no
timing.  The test signals it there, then checks what is on disk, resumes it with ``glep sweep
--resume`` and compares every number with an uninterrupted run of the same study.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import pytest

from glep.cli import main
from glep.estimators.study import (
    _read_rows,
    _write_rows,
    decode,
    encode,
    journal_path,
    load_study,
    numbers,
    same_numbers,
)

STUDY = """
name = "kill"
[[systems]]
family = "coupled_oscillators"
n = [2, 3]
steps = 16
seeds = [0, 1]
[estimators]
names = ["pfvp", "civp-residual"]
betas = [1e-2, 1e-3]
[run]
output = "{output}"
commit_interval = 0.0   # merge after every item: every stage of a merge is reached
"""
TOTAL = 8  # 2 n × 2 seeds × 2 estimators

# (stage, k): pause at the k-th passage; items recorded before that moment
STAGES = [("item started", 1), ("item started", 4), ("item recorded", 5), ("commit partly written", 2),
          ("commit written", 3), ("commit replaced", 6)]
CASES = [(sig, stage, k) for sig in (signal.SIGKILL, signal.SIGTERM) for stage, k in STAGES]

SERVER = textwrap.dedent("""
    import json, os, sys, time
    from glep.estimators.sweep import run_sweep
    from glep.sweep_config import sweep_config
    from pathlib import Path

    cases = json.loads(sys.argv[1])
    pids = []
    for case, (config, stage, k) in enumerate(cases):
        pid = os.fork()
        if pid == 0:
            seen = {}
            def checkpoint(name):
                seen[name] = seen.get(name, 0) + 1
                if name == stage and seen[name] == k:
                    os.write(1, f"{os.getpid()} {case}\\n".encode())
                    time.sleep(600)  # the test signals this process here
            code = 0
            try:
                run_sweep(sweep_config(Path(config)), checkpoint=checkpoint)
            except SystemExit as exc:  # SIGTERM
                code = exc.code
            except BaseException as exc:
                os.write(2, f"{os.getpid()} error {exc!r}\\n".encode())
                code = 1
            os._exit(code)
        pids.append(pid)
    for pid in pids:
        print(f"{pid} exit {os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}", flush=True)
""")


def _config(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.toml"
    path.write_text(STUDY.format(output=folder / "study.h5"))
    return path


def _empty(journal: Path) -> bool:
    """No journal line waits to be merged."""
    return not journal.exists() or journal.stat().st_size == 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The numbers of an uninterrupted run."""
    cfg = _config(tmp_path_factory.mktemp("reference"))
    assert main(["sweep", str(cfg), "--quiet"]) == 0
    study = load_study(cfg.parent / "study.h5")
    assert study.complete and _empty(journal_path(study.path))
    return numbers(study)


def _run_cases(configs: list[Path]) -> dict[int, int]:
    """Run every case, signal each where it paused; the exit code of each case (negative: killed)."""
    cases = [[str(c), stage, k] for c, (_, stage, k) in zip(configs, CASES, strict=True)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-c", SERVER, json.dumps(cases)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    paused: dict[int, int] = {}
    try:
        while len(paused) < len(CASES):
            line = server.stdout.readline()
            assert line, server.communicate(timeout=120)[1]
            pid, case = map(int, line.split())
            paused[pid] = case
        for pid, case in paused.items():
            os.kill(pid, CASES[case][0])
        rest, err = server.communicate(timeout=300)
    finally:
        for pid in paused:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        server.kill()
    assert server.returncode == 0, err
    codes = {}
    for line in rest.splitlines():
        pid, what, code = line.split()
        codes[paused[int(pid)]] = int(code)
    return codes


def _recorded_before(stage: str, k: int) -> int:
    """Items whose journal entry was complete when the sweep paused (commit_interval 0: a merge after each item)."""
    return k - 1 if stage == "item started" else k


def test_killed_sweeps_lose_nothing_and_resume_to_the_same_numbers(reference, tmp_path, capsys):
    configs = [_config(tmp_path / f"case{i}") for i in range(len(CASES))]
    codes = _run_cases(configs)
    for i, (sig, stage, k) in enumerate(CASES):
        what = f"{signal.Signals(sig).name} at {stage!r} #{k}"
        cfg = configs[i]
        # SIGKILL ends at once; SIGTERM exits through Python (143) after merging the journal
        assert codes[i] == (-signal.SIGKILL if sig == signal.SIGKILL else 143), what
        study = load_study(cfg.parent / "study.h5")  # readable: never half-written
        done = numbers(study)
        assert len(done) >= _recorded_before(stage, k), what  # nothing finished was lost
        assert not same_numbers(done, {key: reference[key] for key in done}), what  # and it is right
        if sig == signal.SIGTERM:  # merged into the one file on the way out; no temporary file left
            assert _empty(journal_path(study.path)), what
            assert not list(cfg.parent.glob(".*.tmp")), what
        before = len(done)
        assert main(["sweep", str(cfg), "--resume", "--quiet"]) == 0, what
        out = capsys.readouterr().out
        assert f"{TOTAL - before} items run, {before} finished before" in out, what  # none redone
        final = load_study(cfg.parent / "study.h5")
        assert final.complete and _empty(journal_path(final.path)), what
        assert same_numbers(numbers(final), reference) == [], what
        assert not list(cfg.parent.glob(".*.tmp")), what  # a killed writer's leftovers are removed
        runs = json.loads(final.attrs["runs"])
        assert len(runs) == 2, what  # the first run and the resume, each with its MPI layout


def test_a_journal_line_cut_short_by_a_kill_is_run_again(reference, tmp_path):
    """A kill in the middle of a journal write leaves an incomplete last line: it is ignored, its item redone."""
    cfg = _config(tmp_path / "torn")
    assert main(["sweep", str(cfg), "--quiet"]) == 0
    study = tmp_path / "torn" / "study.h5"
    last = max(reference)
    # the state of a run killed while appending its last item: the file without it, half its line in the journal
    with h5py.File(study, "a") as f:
        rows = _read_rows(f)
        del f["items"]
        _write_rows(f.create_group("items"), [r for r in rows if r["id"] != last])
    line = json.dumps(encode(decode(next(r for r in rows if r["id"] == last))))
    journal_path(study).write_text(line[: len(line) // 2])
    assert last not in load_study(study).items  # the torn line is not read as an item
    assert main(["sweep", str(cfg), "--resume", "--quiet"]) == 0
    assert same_numbers(numbers(load_study(study)), reference) == []


MPIRUN = shutil.which("mpirun", path=str(Path(sys.executable).parent)) or shutil.which("mpirun")


@pytest.fixture(scope="module")
def larger(tmp_path_factory):
    """A study of 48 items merged every 10 s (the journal fills up), and its uninterrupted numbers."""
    folder = tmp_path_factory.mktemp("larger")
    text = STUDY.replace("seeds = [0, 1]", "seeds = [0, 1, 2, 3, 4, 5]").replace("n = [2, 3]", "n = [2, 3, 4]")
    text = text.replace("commit_interval = 0.0", "commit_interval = 10.0")
    (folder / "study.toml").write_text(text.format(output=folder / "study.h5"))
    assert main(["sweep", str(folder / "study.toml"), "--quiet"]) == 0
    return text, numbers(load_study(folder / "study.h5"))


@pytest.mark.skipif(MPIRUN is None, reason="mpirun not found")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_two_rank_sweep_killed_mid_run_resumes_to_the_same_numbers(larger, tmp_path, sig):
    """mpirun -n 2 glep sweep, signalled once its journal holds 3 items (mpirun forwards SIGTERM to the ranks)."""
    text, reference = larger
    cfg = tmp_path / "study.toml"
    cfg.write_text(text.format(output=tmp_path / "study.h5"))
    journal = journal_path(tmp_path / "study.h5")
    cmd = [MPIRUN, "-n", "2", sys.executable, "-m", "glep.cli", "sweep", str(cfg), "--quiet"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1")) as proc:
        try:
            deadline = time.monotonic() + 120  # a guard against a hang, not a timing of the test
            while not (journal.exists() and journal.read_bytes().count(b"\n") >= 3):
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "the sweep recorded nothing"
                time.sleep(0.02)
            os.killpg(proc.pid, sig) if sig == signal.SIGKILL else proc.send_signal(sig)
            proc.communicate(timeout=120)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0  # it was stopped before the end
    done = numbers(load_study(tmp_path / "study.h5"))
    assert 3 <= len(done) < len(reference) and not same_numbers(done, {k: reference[k] for k in done})
    assert main(["sweep", str(cfg), "--resume", "--quiet"]) == 0
    final = load_study(tmp_path / "study.h5")
    assert final.complete and same_numbers(numbers(final), reference) == []
