"""Run with `mpirun -n 2`: a field study on 2 ranks writes the numbers of a 1-rank run.

Groups of one rank: each item's mesh lives on its rank's own communicator, so the numbers are bit for bit
those of a 1-rank run (rank 0 alone, ``comm=MPI.COMM_SELF``).  One group of every rank: the mesh of each
field row is distributed over the group, and the gradients (gathered in dof-coordinate order) agree with
the 1-rank ones to round-off in the distributed sums.
"""

import tempfile
import tomllib
from pathlib import Path

import numpy as np
from mpi4py import MPI

from glep.estimators.study import load_study, numbers, same_numbers
from glep.estimators.sweep import run_sweep
from glep.sweep_config import sweep_config

comm = MPI.COMM_WORLD
EXAMPLE = Path(__file__).resolve().parent.parent.parent / "examples" / "sweep_fields.toml"


def _study() -> dict:
    data = tomllib.loads(EXAMPLE.read_text())
    data.pop("run")
    return data


def _folder() -> Path:
    return Path(comm.bcast(tempfile.mkdtemp() if comm.rank == 0 else None, root=0))


def _serial_numbers(study: dict, output: Path) -> dict | None:
    result = None
    if comm.rank == 0:
        run_sweep(sweep_config(study, {"output": str(output), "group_size": 1}), comm=MPI.COMM_SELF)
        result = numbers(load_study(output))
    comm.Barrier()
    return result


def test_two_ranks_write_the_numbers_of_one():
    folder = _folder()
    study = _study()
    outcome = run_sweep(sweep_config(study, {"output": str(folder / "two.h5"), "group_size": 1}))
    assert not outcome.failed
    serial = _serial_numbers(study, folder / "one.h5")
    if comm.rank == 0:
        two = load_study(folder / "two.h5")
        assert two.complete and two.attrs["mpi_size"] == comm.size
        assert {it["rank"] for it in two.items.values()} == set(range(comm.size))  # every rank worked
        assert same_numbers(numbers(two), serial) == []  # bit for bit, whatever rank ran an item


def test_a_group_of_ranks_shares_the_mesh_of_a_field_row():
    folder = _folder()
    study = _study()
    outcome = run_sweep(sweep_config(study, {"output": str(folder / "group.h5"), "group_size": comm.size}))
    assert not outcome.failed
    serial = _serial_numbers(study, folder / "one.h5")
    if comm.rank == 0:
        group = numbers(load_study(folder / "group.h5"))
        assert set(group) == set(serial)
        for item_id, one in serial.items():
            got = group[item_id]
            assert got["status"] == one["status"] == "ok", item_id
            assert got["metrics"]["relative_error"] <= 1e-6, item_id
            for key in one["gradient"]:
                # the same leapfrog, its sums split over ranks: equal to round-off
                assert np.allclose(got["gradient"][key], one["gradient"][key], rtol=1e-9, atol=0), (item_id, key)
