"""glep.field_plots: a field over time drawn the same on any number of ranks (1-D map, 2-D snapshots)."""

import numpy as np
import pytest
from dolfinx import mesh as dmesh
from mpi4py import MPI

from glep import field_models as fm
from glep.errors import InputError
from glep.field_plots import plot_field_history
from glep.field_system import FieldSystem
from glep.ivp.field_stepping import forward

COMM = MPI.COMM_WORLD


def _system(dim: int) -> FieldSystem:
    msh = (dmesh.create_interval(COMM, 24, [0.0, 1.0]) if dim == 1
           else dmesh.create_unit_square(COMM, 8, 8))
    return FieldSystem(fm.sine_gordon(), msh, initial=(lambda x: np.sin(np.pi * x[0]), 0.0))


@pytest.mark.parametrize("dim", [1, 2])
def test_plot_field_history_writes_a_png(dim, tmp_path):
    sys = _system(dim)
    fw = forward(sys, 0.5, 10, store=True)
    out = plot_field_history(sys, fw.times, fw.stored, tmp_path / "fig" / "phi.png")
    if COMM.rank == 0:
        assert out == tmp_path / "fig" / "phi.png"
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 2000
        assert not list(out.parent.glob(".*.tmp"))  # written atomically, nothing left behind
    else:
        assert out is None


def test_plot_field_history_bad_input(tmp_path):
    sys = _system(1)
    fw = forward(sys, 0.5, 4, store=True)
    with pytest.raises(InputError, match="same length >= 2"):
        plot_field_history(sys, fw.times[:-1], fw.stored, tmp_path / "x.png")
    with pytest.raises(InputError, match=r"states\[0\] must be this rank's dof array"):
        plot_field_history(sys, fw.times, [np.zeros(2)] * len(fw.times), tmp_path / "x.png")
    with pytest.raises(InputError, match="snapshots must be an integer >= 1"):
        plot_field_history(sys, fw.times, fw.stored, tmp_path / "x.png", snapshots=0)
