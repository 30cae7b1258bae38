"""Run with `mpirun -n 2`: an error on one rank stops every rank; the CLI writes once."""

import tempfile
from pathlib import Path

import pytest
from mpi4py import MPI

from glep.errors import InputError
from glep.parallel import RankError, collective

comm = MPI.COMM_WORLD


def test_error_on_one_rank_raises_on_all_ranks():
    with pytest.raises((InputError, RankError)) as info:
        with collective(what="test block"):
            if comm.rank == comm.size - 1:
                raise InputError("beta must be non-zero")
    if comm.size > 1 and comm.rank != comm.size - 1:
        assert isinstance(info.value, RankError)
        assert f"rank {comm.size - 1}" in str(info.value) and "beta must be non-zero" in str(info.value)
    comm.Barrier()  # reaching this on every rank is the point: nobody hangs


def test_no_error_is_silent():
    with collective():
        x = comm.allreduce(1)
    assert x == comm.size


def test_cli_compare_under_mpi_writes_once(capsys):
    from glep.cli import main

    path = comm.bcast(tempfile.mkdtemp() if comm.rank == 0 else None, root=0)
    rc = main(["compare", "--steps", "40", "--betas", "1e-3", "--estimators", "pfvp", "echo",
               "--output", path, "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert ("PFVP" in out) == (comm.rank == 0)
    comm.Barrier()
    assert (Path(path) / "results.h5").exists()


def test_cli_error_on_all_ranks(capsys):
    from glep.cli import main

    assert main(["compare", "--steps", "0", "--quiet"]) == 2
    assert "N (number of time steps) must be an integer >= 1" in capsys.readouterr().err
