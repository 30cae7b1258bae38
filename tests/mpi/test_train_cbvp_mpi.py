"""Run with `mpirun -n 2`: the FE and Kerr tasks with each minibatch split over the ranks give the 1-rank run.

Every rank solves whole samples (one CBVP each, on its own ``COMM_SELF`` mesh); the gradients and the
samples' solutions (the next Newton guesses) are summed over the ranks in one ``Allreduce``, so both
ranks hold the same warm-start table as the 1-rank run and repeat its solves: the numbers agree to the
round-off of the sums, amplified over a few Adam updates (``≤ 1e-10`` relative).
"""

import tempfile
from pathlib import Path

import numpy as np
from mpi4py import MPI

from glep.estimators.train import run_training
from glep.train_config import train_config

comm = MPI.COMM_WORLD


def _config(output: Path) -> dict:
    return {"task": {"name": "boundary-trajectory", "train_size": 4, "validation_size": 3},
            "estimators": {"names": ["cbvp"], "beta": 1e-2},
            "optimizer": {"name": "momentum", "learning_rate": 0.05},
            "training": {"iterations": 3, "batch_size": 3, "eval_every": 3, "checkpoint_every": 3},
            "run": {"output": str(output)}}


def test_two_ranks_train_the_cbvp_task_as_one():
    folder = Path(comm.bcast(tempfile.mkdtemp() if comm.rank == 0 else None, root=0))
    both = run_training(train_config(_config(folder / "both")))
    alone = run_training(train_config(_config(folder / f"alone{comm.rank}")), comm=MPI.COMM_SELF)
    for name, run in alone.runs.items():
        np.testing.assert_allclose(both.runs[name].theta, run.theta, rtol=1e-10, atol=0)
        np.testing.assert_allclose(both.runs[name].state["warm"], run.state["warm"], rtol=1e-10, atol=1e-14)
        for key in ("train_loss", "validation_loss"):
            np.testing.assert_allclose(getattr(both.runs[name].history, key), getattr(run.history, key),
                                       rtol=1e-10, atol=0)


def test_two_ranks_train_the_kerr_task_with_heb_as_one():
    """HEB's read-out is linear in the samples (the echoes of a batch run side by side), so its minibatch
    gradient splits over the ranks exactly; ``heb-averaged``'s is not (see glep.estimators.train)."""
    folder = Path(comm.bcast(tempfile.mkdtemp() if comm.rank == 0 else None, root=0))

    def config(output):
        return {"task": {"name": "kerr-xor", "steps": 100}, "estimators": {"names": ["heb"]},
                "training": {"iterations": 3, "eval_every": 3, "alignment": True}, "run": {"output": str(output)}}

    both = run_training(train_config(config(folder / "both")))
    alone = run_training(train_config(config(folder / f"alone{comm.rank}")), comm=MPI.COMM_SELF)
    for name, run in alone.runs.items():
        np.testing.assert_allclose(both.runs[name].theta, run.theta, rtol=1e-10, atol=0)
        for key in ("train_loss", "validation_loss", "accuracy"):
            np.testing.assert_allclose(getattr(both.runs[name].history, key), getattr(run.history, key),
                                       rtol=1e-10, atol=0)
    # the alignment error itself (~1e-9: the O(η²) bias plus round-off / η) is not split-invariant to many digits
    assert max(both.runs["heb"].history.alignment_error) < 1e-6
