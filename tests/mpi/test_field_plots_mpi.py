"""glep.field_plots under mpirun: every rank calls, rank 0 writes one PNG, the gathered picture data are the
serial ones (the values are gathered in dof-coordinate order)."""

import numpy as np
from dolfinx import mesh as dmesh
from mpi4py import MPI

from glep import field_models as fm
from glep.field_plots import _coordinates, plot_field_history
from glep.field_system import FieldSystem
from glep.ivp.field_stepping import forward


def test_plot_on_every_rank_writes_once(tmp_path_factory):
    comm = MPI.COMM_WORLD
    folder = comm.bcast(str(tmp_path_factory.mktemp("plots")) if comm.rank == 0 else None)
    sys = FieldSystem(fm.sine_gordon(), dmesh.create_unit_square(comm, 6, 6),
                      initial=(lambda x: np.sin(np.pi * x[0]) * x[1], 0.0))
    fw = forward(sys, 0.3, 6, store=True)
    out = plot_field_history(sys, fw.times, fw.stored, f"{folder}/phi.png")
    assert (out is not None) == (comm.rank == 0)
    X = _coordinates(sys)
    serial = FieldSystem(fm.sine_gordon(), dmesh.create_unit_square(MPI.COMM_SELF, 6, 6),
                         initial=(lambda x: np.sin(np.pi * x[0]) * x[1], 0.0))
    fs = forward(serial, 0.3, 6, store=True)
    assert np.allclose(X, _coordinates(serial), atol=1e-14)
    assert np.max(np.abs(sys.gather(fw.stored[-1]) - serial.gather(fs.stored[-1]))) <= 1e-12
    comm.barrier()
    if comm.rank == 0:
        assert out.stat().st_size > 2000
