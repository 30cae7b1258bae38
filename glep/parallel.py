"""MPI helpers: errors that stop every rank, output written once.

Under ``mpirun`` every rank runs the same program.  A Python exception on one
rank would leave the others blocked in the next collective call.  The rule that
keeps every rank in step: each phase that can fail on some ranks only (reading
input, checking a folder, building a problem) ends in an *agreement* — one
``allgather`` of "ok / message" — before the next collective call, so an error
anywhere is raised everywhere.  :func:`agree` runs a function that way,
:func:`collective` a block.

The one semantics, used by the command line and the finite-element backend alike: on a single
process the exception itself is raised.  Under MPI every rank raises a :class:`glep.GlepError`, so
that ``except GlepError`` catches a failure on every rank: the first failing rank re-raises its own
exception if it is a ``GlepError``, otherwise a :class:`RankError` chained to it (``raise … from``),
and is the one that reports it; every other rank raises :class:`RankError` naming that rank and its
message, marked ``reported_elsewhere`` so that the message is printed once.  PETSc callbacks, which
cannot raise through PETSc, record their exception and settle it after the solve
(``glep.bvp.solvers._Guard``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

# dolfinx-solver-real loads mpi4py.MPI first and configures PETSc (the CLI's computations may load it).
import dolfinx_solver  # noqa: F401  isort: skip
from mpi4py import MPI

from glep.errors import GlepError, InputError


class RankError(GlepError):
    """Raised on the ranks that did not report the error, carrying the reporting rank's message.

    Attributes: ``rank`` the first failing rank; ``input_error`` whether it failed on user input;
    ``reported_elsewhere`` True (the failing rank prints the message, this one need not).
    """

    def __init__(self, message: str, rank: int, input_error: bool = False):
        super().__init__(message)
        self.rank = rank
        self.input_error = input_error
        self.reported_elsewhere = True


def _world(comm: MPI.Comm | None) -> MPI.Comm:
    return MPI.COMM_WORLD if comm is None else comm


def settle(error: BaseException | None, comm: MPI.Comm | None = None, what: str = "glep") -> None:
    """Agree across ``comm`` whether any rank failed; if so raise on every rank.

    Collective: every rank of ``comm`` must call it, with its own error or ``None``.
    The first failing rank re-raises ``error`` (a :class:`RankError` chained to it if it is not a
    :class:`GlepError`); the others raise :class:`RankError`.
    Both are marked ``glep_agreed``: an outer :func:`settle` re-raises them without a second
    ``allgather`` (every rank is raising already), so nested phases stay in step.
    """
    comm = _world(comm)
    if error is not None and (comm.size == 1 or getattr(error, "glep_agreed", False)):
        raise error  # alone, or already agreed by an inner phase: every rank is raising
    if comm.size == 1:
        return
    mine = None if error is None else (f"{type(error).__name__}: {error}", isinstance(error, InputError))
    failed = [(rank, m) for rank, m in enumerate(comm.allgather(mine)) if m is not None]
    if not failed:
        return
    rank, (message, input_error) = failed[0]
    if rank == comm.rank and isinstance(error, GlepError):
        error.glep_agreed = True
        raise error
    exc = RankError(f"{what} failed on rank {rank} of {comm.size}: {message}", rank, input_error)
    exc.glep_agreed = True
    exc.reported_elsewhere = rank != comm.rank  # the first failing rank reports it
    raise exc from error


def agree[T](fn: Callable[[], T], comm: MPI.Comm | None = None, what: str = "glep") -> T:
    """Run ``fn()`` on every rank and agree on the outcome before going on.

    Returns ``fn()``'s value when it succeeded on every rank; otherwise raises on every
    rank (see :func:`settle`).  ``fn`` must not itself make collective calls that could be
    skipped by an early failure on another rank.
    """
    with collective(comm, what):
        result = fn()
    return result


@contextmanager
def collective(comm: MPI.Comm | None = None, what: str = "glep") -> Iterator[None]:
    """Run a block on every rank of ``comm``; if it raises anywhere, raise everywhere.

    The failing rank re-raises its own exception; every other rank raises
    :class:`RankError` naming the first failing rank and its message.
    """
    error: Exception | None = None
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
        error = exc
    settle(error, comm, what)


def is_root(comm: MPI.Comm | None = None) -> bool:
    """True on rank 0 (where results are printed and written)."""
    return _world(comm).rank == 0
