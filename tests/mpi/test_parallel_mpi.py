"""Run with `mpirun -n 2`: an error on one rank stops every rank, reported once; the CLI writes once."""

import tempfile
from pathlib import Path

import pytest
from mpi4py import MPI

from glep.errors import InputError
from glep.parallel import RankError, agree, collective

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


def test_cli_error_on_all_ranks_printed_once(capsys):
    from glep.cli import main

    assert main(["compare", "--steps", "0", "--quiet"]) == 2
    err = capsys.readouterr().err
    if comm.rank == 0:  # the first failing rank reports; the others stop silently
        assert "option --steps: expected an integer >= 1, got '0'" in err
    else:
        assert err == ""


def test_agree_returns_the_value_or_raises_everywhere():
    assert agree(lambda: comm.rank * 2) == comm.rank * 2
    last = comm.size - 1

    def fail_on_last():
        if comm.rank == last:
            raise InputError("--config: file 'x.toml' does not exist")
        return 1

    with pytest.raises((InputError, RankError), match="x.toml' does not exist") as info:
        agree(fail_on_last, what="reading the options")
    if comm.size > 1 and comm.rank != last:
        assert isinstance(info.value, RankError) and info.value.input_error and info.value.reported_elsewhere
        assert f"reading the options failed on rank {last} of {comm.size}" in str(info.value)
    assert comm.allgather(comm.rank) == list(range(comm.size))  # still in step


def test_agreed_failure_inside_collective_keeps_ranks_in_step():
    """An inner agreement already told every rank: the outer block must not gather a second time."""
    def fail_on_root():
        if comm.rank == 0:
            raise InputError("bad on rank 0")

    with pytest.raises((InputError, RankError), match="bad on rank 0"):
        with collective(what="outer"):
            agree(fail_on_root)
            comm.Barrier()  # not reached: every rank raised above
    assert comm.allgather(comm.rank) == list(range(comm.size))


def test_cli_missing_config_on_one_rank_stops_every_rank(capsys, tmp_path):
    """As under ``mpirun -n 1 glep ... : -n 1 glep --config missing.toml``: no hang, one message."""
    from glep.cli import main

    last = comm.size - 1
    extra = ["--config", str(tmp_path / "missing.toml")] if comm.rank == last else []
    rc = main(["compare", "--steps", "20", "--estimators", "pfvp", "--betas", "1e-3", "--quiet",
               "--output", str(tmp_path / "out"), *extra])
    assert rc == 2
    err = capsys.readouterr().err
    assert ("missing.toml' does not exist" in err) == (comm.rank == last)
    if comm.rank != last:
        assert err == ""


def test_cli_ranks_given_different_options_refused(capsys, tmp_path):
    from glep.cli import main

    path = comm.bcast(str(tmp_path) if comm.rank == 0 else None, root=0)
    rc = main(["compare", "--steps", str(20 + comm.rank), "--estimators", "pfvp", "--quiet", "--output", path])
    err = capsys.readouterr().err
    if comm.size == 1:
        assert rc == 0
        return
    assert rc == 2
    if comm.rank == 0:
        assert "ranks were given different options (steps: 20 on rank 0, 21 on rank 1)" in err
    else:
        assert err == ""
