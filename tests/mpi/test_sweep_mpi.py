"""Run with `mpirun -n 2`: a sweep on 2 ranks writes the numbers of a 1-rank run; errors stop every rank.

The 1-rank run is the same study run by rank 0 alone (``comm=MPI.COMM_SELF``) into another file.
"""

import tempfile
from pathlib import Path

import numpy as np
import pytest
from mpi4py import MPI

import glep.estimators.sweep as sweep_module
from glep.cli import main
from glep.errors import GlepError
from glep.estimators.study import StudyStore, StudyWriteError, load_study, numbers, same_numbers
from glep.estimators.sweep import run_sweep
from glep.parallel import RankError
from glep.sweep_config import sweep_config

comm = MPI.COMM_WORLD

STUDY = {
    "name": "mpi",
    # items of unequal cost (n, steps, rows): the dynamic distribution hands them out unevenly
    "systems": [{"family": "coupled_oscillators", "n": [2, 4], "steps": [16, 48], "seeds": [0, 1]},
                {"family": "pendulum_chain", "n": 3, "steps": 24}],
    "estimators": {"names": ["pfvp", "civp-residual", "echo"], "nudges": ["one-sided", "centred"],
                   "betas": [1e-2, 1e-3]},
}


def _folder() -> Path:
    return Path(comm.bcast(tempfile.mkdtemp() if comm.rank == 0 else None, root=0))


def _serial_numbers(study: dict, output: Path) -> dict:
    """The same study run on rank 0 alone; its numbers (on rank 0; None elsewhere)."""
    result = None
    if comm.rank == 0:
        run_sweep(sweep_config(study, {"output": str(output), "group_size": 1}), comm=MPI.COMM_SELF)
        result = numbers(load_study(output))
    comm.Barrier()
    return result


def test_two_ranks_write_the_numbers_of_one(tmp_path):
    folder = _folder()
    cfg = folder / "study.toml"
    if comm.rank == 0:
        cfg.write_text(_toml(STUDY, folder / "two.h5"))
    comm.Barrier()
    assert main(["sweep", str(cfg), "--quiet"]) == 0
    serial = _serial_numbers(STUDY, folder / "one.h5")
    if comm.rank == 0:
        two = load_study(folder / "two.h5")
        assert two.complete and two.attrs["mpi_size"] == comm.size
        assert {it["rank"] for it in two.items.values()} == set(range(comm.size))  # every rank worked
        assert same_numbers(numbers(two), serial) == []  # bit for bit, whatever rank ran an item


def test_a_group_of_ranks_shares_the_mesh_of_a_finite_element_row():
    folder = _folder()
    study = {"systems": [{"family": "coupled_oscillators", "n": 2, "T": 3.0, "steps": 24}],
             "estimators": {"names": ["cbvp", "periodic", "pfvp"], "betas": [1e-2, 1e-3]}}
    run_sweep(sweep_config(study, {"output": str(folder / "group.h5"), "group_size": comm.size}))
    serial = _serial_numbers(study, folder / "one.h5")
    if comm.rank == 0:
        group = numbers(load_study(folder / "group.h5"))
        assert set(group) == set(serial) == {"000000-cbvp", "000001-periodic", "000002-pfvp"}
        assert same_numbers({"p": group["000002-pfvp"]}, {"p": serial["000002-pfvp"]}) == []
        for fe in ("000000-cbvp", "000001-periodic"):
            cb, one = group[fe], serial[fe]
            assert cb["status"] == one["status"] == "ok", (fe, cb["reason"])
            # the distributed FE solves agree with the one-rank ones to the Newton tolerance, not bitwise
            for key in one["gradient"]:
                assert np.allclose(cb["gradient"][key], one["gradient"][key], rtol=1e-7, atol=1e-12), (fe, key)


def test_an_error_on_one_rank_stops_every_rank(monkeypatch):
    folder = _folder()
    cfg = sweep_config(STUDY, {"output": str(folder / "s.h5")})
    real = sweep_module.run_item
    calls = []

    def fail_on_last_rank(item, spec, comm_=None):
        calls.append(item.id)
        if comm.rank == comm.size - 1 and len(calls) == 2:
            raise RuntimeError("a defect on the last rank")
        return real(item, spec, comm_)

    monkeypatch.setattr(sweep_module, "run_item", fail_on_last_rank)
    with pytest.raises((RuntimeError, RankError)) as info:
        run_sweep(cfg)
    assert "a defect on the last rank" in str(info.value)
    comm.Barrier()  # reached by every rank: nobody hangs
    if comm.rank == 0:  # what was finished before is in the file, readable
        study = load_study(folder / "s.h5")
        assert not study.complete and all(it["status"] == "ok" for it in study.items.values())


def test_a_write_failure_on_the_writing_rank_stops_every_rank(monkeypatch):
    folder = _folder()
    cfg = sweep_config(STUDY, {"output": str(folder / "s.h5")})
    real = StudyStore.record
    count = []

    def disk_full(self, result):
        count.append(1)
        if len(count) == 3:
            raise StudyWriteError("cannot write the journal entry: No space left on device")
        real(self, result)

    monkeypatch.setattr(StudyStore, "record", disk_full)
    with pytest.raises(GlepError) as info:
        run_sweep(cfg)
    assert "No space left on device" in str(info.value)
    comm.Barrier()
    if comm.rank == 0:
        assert len(load_study(folder / "s.h5").items) == 2  # the two recorded before the failure


def _toml(study: dict, output: Path) -> str:
    lines = [f'name = "{study["name"]}"']
    for s in study["systems"]:
        lines.append("[[systems]]")
        lines += [f"{k} = {_value(v)}" for k, v in s.items()]
    lines.append("[estimators]")
    lines += [f"{k} = {_value(v)}" for k, v in study["estimators"].items()]
    lines += ["[run]", f'output = "{output}"']
    return "\n".join(lines) + "\n"


def _value(v) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return repr(v)
