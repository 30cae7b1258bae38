"""Run with `mpirun -n 2`: training with each minibatch split over the ranks gives the 1-rank run's numbers.

The 1-rank run is the same configuration trained by each rank alone (``comm=MPI.COMM_SELF``) into its
own folder; the gradients of the 2-rank run are sums of per-rank partial sums (one ``Allreduce``), equal
to the 1-rank sums up to round-off amplified over a few updates (``≤ 1e-10`` relative).  The estimators'
centred differences divide the round-off of the batch sums by ``2β``: ``β = 1e-2`` keeps that near
``1e-14`` (with ``β = 1e-4`` and Adam, whose ``g/√v`` magnifies relative changes of small components,
it reaches a few ``1e-11``, too close to the bound).
"""

import tempfile
from pathlib import Path

import numpy as np
import pytest
from mpi4py import MPI

import glep.estimators.train as train_module
from glep.cli import main
from glep.errors import GlepError
from glep.estimators.train import RESULTS, load_training, run_training
from glep.train_config import train_config

comm = MPI.COMM_WORLD


def _folder() -> Path:
    return Path(comm.bcast(tempfile.mkdtemp() if comm.rank == 0 else None, root=0))


def _config(output: Path, **estimators) -> dict:
    return {"task": {"n": 3, "T": 4.0, "steps": 30, "train_size": 8, "validation_size": 5},
            "estimators": {"names": ["echo", "pfvp"], "beta": 1e-2, **estimators},
            "optimizer": {"name": "momentum", "learning_rate": 0.05},
            "training": {"iterations": 4, "batch_size": 5, "eval_every": 2, "checkpoint_every": 2},
            "run": {"output": str(output)}}


def test_two_ranks_train_as_one():
    folder = _folder()
    both = run_training(train_config(_config(folder / "both")))
    alone = run_training(train_config(_config(folder / f"alone{comm.rank}")), comm=MPI.COMM_SELF)
    for name, run in alone.runs.items():
        np.testing.assert_allclose(both.runs[name].theta, run.theta, rtol=1e-10, atol=0)
        for key in ("train_loss", "validation_loss"):
            np.testing.assert_allclose(getattr(both.runs[name].history, key), getattr(run.history, key),
                                       rtol=1e-10, atol=0)
    if comm.rank == 0:
        stored = load_training(folder / "both" / RESULTS)
        np.testing.assert_array_equal(stored["echo"].validation_loss, both.runs["echo"].history.validation_loss)


def test_one_ranks_failure_stops_every_rank(monkeypatch):
    folder = _folder()
    real = train_module.local_gradient

    def fails_on_rank_1(task, name, *args):
        if comm.rank == 1 and name == "pfvp":
            raise FloatingPointError("injected on rank 1")
        return real(task, name, *args)

    monkeypatch.setattr(train_module, "local_gradient", fails_on_rank_1)
    with pytest.raises(GlepError, match="update 1 of the pfvp run failed on rank 1 of 2: .*injected on rank 1"):
        run_training(train_config(_config(folder / "fail")))


def test_cli_refuses_echo_on_a_non_reversible_network_on_every_rank(capsys):
    folder = _folder()
    cfg = folder / "bad.toml"
    if comm.rank == 0:
        cfg.write_text('[task]\ngamma = 0.3\n[estimators]\nnames = ["echo"]\n'
                       f'[run]\noutput = "{folder / "out"}"\n')
    comm.Barrier()
    assert main(["train", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err
    if comm.rank == 0:
        assert "config key 'estimators.names': 'echo' does not apply" in err
    assert not (folder / "out").exists()
