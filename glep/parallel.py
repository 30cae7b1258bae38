"""MPI helpers: errors that stop every rank, output written once.

Under ``mpirun`` every rank runs the same program.  A Python exception on one
rank would leave the others blocked in the next collective call; wrapping a
block in :func:`collective` turns an error on any rank into the same error on
every rank, with the failing rank's message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mpi4py import MPI

from glep.errors import GlepError


class RankError(GlepError):
    """Raised on the ranks that did not fail, carrying the failing rank's message."""


@contextmanager
def collective(comm: MPI.Comm | None = None, what: str = "glep") -> Iterator[None]:
    """Run a block on every rank of ``comm``; if it raises anywhere, raise everywhere.

    The failing rank re-raises its own exception; every other rank raises
    :class:`RankError` naming the first failing rank and its message.
    """
    comm = MPI.COMM_WORLD if comm is None else comm
    error: BaseException | None = None
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
        error = exc
    if comm.size == 1:
        if error is not None:
            raise error
        return
    messages = comm.allgather(None if error is None else f"{type(error).__name__}: {error}")
    failed = [(rank, msg) for rank, msg in enumerate(messages) if msg is not None]
    if error is not None:
        raise error
    if failed:
        rank, msg = failed[0]
        raise RankError(f"{what} failed on rank {rank} of {comm.size}: {msg}")


def is_root(comm: MPI.Comm | None = None) -> bool:
    """True on rank 0 (where results are printed and written)."""
    return (MPI.COMM_WORLD if comm is None else comm).rank == 0
