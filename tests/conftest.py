import dolfinx_solver  # noqa: F401  isort: skip  (configures PETSc before dolfinx is imported anywhere)

import glep  # noqa: F401


def pytest_configure(config):
    """Under ``mpirun`` every rank gets its own temporary base folder (PMI_RANK: MPICH; OMPI_COMM_WORLD_RANK:
    Open MPI), so that the ranks do not race creating and cleaning one shared ``/tmp/pytest-of-<user>``."""
    import os
    import tempfile

    rank = os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK"))
    if rank is not None and config.option.basetemp is None:
        size = os.environ.get("PMI_SIZE", os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))
        if size != "1":
            config.option.basetemp = tempfile.mkdtemp(prefix=f"glep-pytest-rank{rank}-")
