import dolfinx_solver  # noqa: F401  isort: skip  (configures PETSc before dolfinx is imported anywhere)

import glep  # noqa: F401


def pytest_sessionstart(session):
    """Ctrl-C reaches the child processes the tests interrupt, however the suite was started.

    A shell without job control starts a background command (``./dev.sh test &``, ``nohup``, some CI
    runners) with SIGINT ignored, and an ignored signal stays ignored across ``exec``: the interrupt tests'
    children would then never see their SIGINT and sleep on.  A Python handler here is reset to the default
    at ``exec``, so every child starts with SIGINT delivered (and Python's KeyboardInterrupt installed).
    """
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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
