"""Pieces shared by the NumPy assemblers (:mod:`glep.bvp.vectorised`, :mod:`glep.bvp.galerkin`)."""

from __future__ import annotations

import dolfinx.fem.petsc as fpetsc
import numpy as np
import ufl
from dolfinx import fem
from mpi4py import MPI
from petsc4py import PETSc

from glep.errors import InputError


def column_coloring(mask: np.ndarray) -> np.ndarray:
    r"""Greedy column colouring of a sparsity pattern (Curtis–Powell–Reid).

    Columns sharing no row get the same colour, so one Hessian action along
    the sum of a colour's unit vectors recovers all its columns: a
    tridiagonal coupling needs 3 actions instead of ``n``.
    """
    m = np.asarray(mask).astype(np.int64)
    conflict = (m.T @ m) > 0
    colors = np.full(m.shape[1], -1)
    for j in range(m.shape[1]):
        used = set(colors[conflict[j]].tolist())
        c = 0
        while c in used:
            c += 1
        colors[j] = c
    return colors


def end_block_indices(comm: MPI.Comm, tc: np.ndarray) -> np.ndarray:
    """Local dof blocks (owned or ghost) at the first and last time of the whole mesh.

    ``tc`` holds the time coordinate of every local block; the ends are
    found collectively, so a rank that holds neither end gets an empty array.
    """
    gmin = comm.allreduce(float(tc.min()) if tc.size else np.inf, op=MPI.MIN)
    gmax = comm.allreduce(float(tc.max()) if tc.size else -np.inf, op=MPI.MAX)
    scale = max(1.0, abs(gmin), abs(gmax))
    return np.flatnonzero((np.abs(tc - gmin) <= 1e-12 * scale) | (np.abs(tc - gmax) <= 1e-12 * scale))


def end_block_coo(ends: np.ndarray, n: int, row_map: np.ndarray, col_map: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    r"""COO rows and columns of full ``n × n`` blocks on the end blocks ``ends``.

    The boundary point terms (Robin ``±K``, a terminal-cost Hessian ``β ∂²c_T``)
    are added into ``∂²A/∂q²`` at an end node with ``MatSetValues`` after the
    COO assembly: their entries must be in the preallocated pattern whatever
    the interior coupling pattern is, so both ends reserve a dense block
    (values zero in the COO array).
    """
    er, ec = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    rows = row_map[(ends[:, None] * n + er.ravel()[None, :]).ravel()]
    cols = col_map[(ends[:, None] * n + ec.ravel()[None, :]).ravel()]
    return rows, cols


class NumpyAssembler:
    """Vector I/O and the gradient-flow metric of an assembler that owns ``V`` and the trajectory ``u``."""

    kind = "vectorised"
    #: :class:`~glep.bvp.problem.ReducedProblem` may assemble ``J_r = Qᵀ A P`` directly (no PtAP).
    supports_reduced = True
    V: fem.FunctionSpace

    def create_jacobian(self, row_map: np.ndarray | None = None, col_map: np.ndarray | None = None,
                        sizes: tuple | None = None) -> PETSc.Mat:
        r"""COO-preallocated AIJ matrix of the Jacobian (pattern from ``self._coo_indices``).

        Without maps: the full ``∂²A/∂q²``.  With ``row_map``/``col_map``
        (local unrolled dof, ghosts included → reduced global index, ``−1`` to
        drop) and ``sizes = (local, global)``: the reduced ``J_r = Qᵀ A P``
        assembled directly, since PETSc's COO assembly ignores negative
        indices and sums repeated ones (a periodic end maps onto its partner).
        """
        imap = self.V.dofmap.index_map
        if sizes is None:
            sizes = (imap.size_local * self.n, imap.size_global * self.n)
        A = PETSc.Mat().create(self.comm)
        A.setSizes((sizes, sizes))
        A.setType("aij")
        rows, cols = self._coo_indices(row_map, col_map)
        A.setPreallocationCOO(rows, cols)
        return A

    def _scatter(self, local: np.ndarray, b: PETSc.Vec) -> None:
        """Write per-block contributions (owned and ghost) into ``b`` and sum them onto the owners."""
        with b.localForm() as loc:
            loc.array[:] = local.ravel()
        b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)

    def _ghosted(self, lam: PETSc.Vec) -> np.ndarray:
        """Owned and ghost values of a vector of the full space."""
        tmp = fem.Function(self.V)
        tmp.x.petsc_vec.array[:] = lam.array_r
        tmp.x.scatter_forward()
        return tmp.x.array.copy()

    def metric(self, kind: str) -> PETSc.Mat:
        """The ``L²`` or ``H¹`` Gram matrix of ``V`` (metric of the action-gradient flow)."""
        u, v = ufl.TrialFunction(self.V), ufl.TestFunction(self.V)
        form = ufl.inner(u, v) * ufl.dx
        if kind.upper() == "H1":
            form = form + ufl.inner(u.dx(0), v.dx(0)) * ufl.dx
        elif kind.upper() != "L2":
            raise InputError(f"metric must be 'L2' or 'H1', got {kind!r}")
        M = fpetsc.assemble_matrix(fem.form(form))
        M.assemble()
        return M
