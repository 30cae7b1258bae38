"""``glep compare --system wave`` on two ranks: the distributed field gives the exact rows, written once.

Run with ``mpirun -n 2 python -m pytest tests/mpi/test_field_cli_mpi.py``.
"""

import tempfile
from pathlib import Path

import pytest
from mpi4py import MPI

pytestmark = pytest.mark.mpi

comm = MPI.COMM_WORLD


def test_field_compare_under_mpi(capsys):
    from glep.cli import main
    from glep.estimators.output import load_report

    path = comm.bcast(tempfile.mkdtemp() if comm.rank == 0 else None, root=0)
    rc = main(["compare", "--system", "wave", "--betas", "1e-4", "--output", path, "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert ("PFVP" in out and "CIVP + residual" in out) == (comm.rank == 0)
    comm.Barrier()
    report = load_report(Path(path) / "results.h5")
    assert [r.name for r in report.rows] == ["civp-residual", "pfvp", "echo", "rhel"]
    assert all(r.status == "ok" and r.metrics["relative_error"] <= 1e-6 for r in report.rows)
    # the gathered gradient is the whole field (21 dofs of the default mesh), whatever the number of ranks
    assert report.truth.theta["kappa"].shape == (21,)
