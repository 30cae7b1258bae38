"""Exceptions raised by glep.

Every error names the offending argument and what was expected, so that a
user reading a traceback from an MPI job knows what to change.
"""

from __future__ import annotations


class GlepError(Exception):
    """Base class of every error raised by glep."""


class InputError(GlepError, ValueError):
    """An argument has the wrong shape, type or value."""


class NotReversibleError(GlepError):
    """The echo was asked of a system that is not time-reversible."""


class SolverError(GlepError, RuntimeError):
    """A nonlinear or linear solver did not converge.

    Attributes
    ----------
    reason:
        The solver's own reason (a PETSc converged reason or a short text).
    history:
        Residual norms, one per iteration.
    """

    def __init__(self, message: str, reason: object = None, history: list[float] | None = None):
        self.reason = reason
        self.history = list(history or [])
        if self.history:
            shown = ", ".join(f"{r:.3e}" for r in self.history[-8:])
            message = f"{message} (reason: {reason}; last residual norms: [{shown}])"
        elif reason is not None:
            message = f"{message} (reason: {reason})"
        super().__init__(message)


class SaddleError(GlepError):
    """Action descent was asked at a stationary point that is not a minimum."""


class SingularHessianError(SolverError):
    """The action Hessian at a stationary point is (numerically) singular, so its Morse index is ambiguous.

    Raised when the smallest-magnitude eigenvalue ``λ_min`` of the reduced action Hessian (relative to the
    ``L²`` Gram matrix, an approximation of the Jacobi operator's eigenvalue) lies below the tolerance: a
    conjugate point is at or near the end of the interval (resonance, a fold), and the count of negative
    eigenvalues may change with the mesh, the element degree or the number of ranks.

    Attributes
    ----------
    min_eigenvalue, max_eigenvalue:
        ``λ_min`` (smallest magnitude) and ``λ_max`` (largest magnitude); ``0.0`` for ``λ_min`` when the
        factorisation found an exactly zero pivot.
    tolerance:
        The threshold ``|λ_min|`` was compared with.
    index:
        The (ambiguous) count of negative eigenvalues.
    """

    def __init__(self, message: str, *, min_eigenvalue: float, max_eigenvalue: float, tolerance: float,
                 index: int):
        self.min_eigenvalue = min_eigenvalue
        self.max_eigenvalue = max_eigenvalue
        self.tolerance = tolerance
        self.index = index
        super().__init__(message, reason="singular Hessian")
