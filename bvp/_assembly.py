r"""The assembly toolkit shared by the NumPy assemblers (:mod:`glep.bvp.vectorised`, :mod:`glep.bvp.galerkin`).

Both assemble ``∂²A/∂q²`` of a P1 (or P_p) trajectory from point Hessians ``∂²_qL(q_g)`` placed on a
fixed structural pattern ``(I, J)`` of an ``n × n`` block:

* the pattern is *probed* once (:func:`probe_generator`: random states from a fixed seed, so that
  every rank and every run probes the same points) and made the same on every rank
  (:func:`union_pattern`, the union over ranks);
* the point Hessians on the pattern come either from the terms' sparse entries
  (:class:`EntryMaps`: entry ``(r, c)`` of a term goes to pattern position ``p`` with
  ``(I_p, J_p) = (r, c)``; repeated positions are summed) or from coloured Hessian actions
  (:func:`column_coloring`, :func:`colour_directions`, :func:`coloured_entries`: columns sharing no
  row are probed together, ``H e_C = Σ_{j∈C} H e_j``);
* the two end blocks are reserved dense (:func:`end_block_indices`, :func:`end_block_coo`) for the
  boundary point terms.
"""

from __future__ import annotations

import dolfinx.fem.petsc as fpetsc
import numpy as np
import scipy.sparse as sp
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


PROBE_SEED = 1234


def probe_generator() -> np.random.Generator:
    """The random generator of every structural probe: a fixed seed, the same states on every rank and run."""
    return np.random.default_rng(PROBE_SEED)


def union_pattern(comm: MPI.Comm, mask: np.ndarray) -> np.ndarray:
    """The union over the ranks of ``comm`` of a boolean pattern (collective): every rank assembles the
    same structure, whatever entries its own probe found."""
    mask8 = np.ascontiguousarray(mask, dtype=np.uint8)
    comm.Allreduce(MPI.IN_PLACE, mask8, op=MPI.MAX)
    return mask8.astype(bool)


def colour_directions(colors: np.ndarray, points: int, n: int) -> np.ndarray:
    r"""Directions ``e_C = Σ_{j: colour(j) = C} e_j`` for every colour ``C`` at every point, ``(C, points, n)``."""
    dirs = np.zeros((int(colors.max()) + 1, points, n))
    dirs[colors, :, np.arange(n)] = 1.0
    return dirs


def coloured_entries(Hc: np.ndarray, colors: np.ndarray, pattern: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    r"""Pattern entries ``H_IJ = (H e_{colour(J)})_I`` from the coloured actions ``Hc`` ``(C, points, n)``,
    shape ``(nnz, points)``."""
    I, J = pattern
    return Hc[colors[J], :, I]


class EntryMaps:
    r"""Maps of the terms' sparse Hessian entries onto a pattern, cached for the last entry structure.

    A term whose entries hit distinct pattern positions gets an index array (``H[idx] += values``), one
    with repeated positions (a spring adds ``J`` to ``(i, i)`` twice) a sparse summation matrix.
    """

    def __init__(self):
        self._key = None
        self._maps = None

    def maps(self, rows, cols, pattern: tuple[np.ndarray, np.ndarray], n: int) -> list | None:
        """One map per term, or ``None`` if an entry lies outside ``pattern``."""
        key = (tuple((np.asarray(r).tobytes(), np.asarray(c).tobytes()) for r, c in zip(rows, cols)),
               pattern[0].tobytes(), pattern[1].tobytes())
        if key != self._key:
            self._key, self._maps = key, _entry_maps(rows, cols, pattern, n)
        return self._maps

    def hessian(self, entries, pattern: tuple[np.ndarray, np.ndarray], n: int, w: np.ndarray,
                out: np.ndarray | None = None) -> np.ndarray | None:
        r"""``w_g ∂²_qL(q_g)`` on the pattern, shape ``(nnz, points)`` (written into ``out`` if given), from
        ``entries = (rows, cols, values)`` (values ``(nnz_term,)`` constant or ``(points, nnz_term)``);
        ``None`` if an entry lies outside the pattern."""
        rows, cols, vals = entries
        maps = self.maps(rows, cols, pattern, n)
        if maps is None:
            return None
        const = np.zeros(len(pattern[0]))
        varying = []
        for m, v in zip(maps, vals):
            v = np.asarray(v, dtype=float)
            if v.ndim == 1:
                if isinstance(m, np.ndarray):
                    np.add.at(const, m, v)
                else:
                    const += m @ v
            else:
                varying.append((m, v))
        H = np.multiply(const[:, None], w[None, :], out=out)
        for m, v in varying:
            wv = v.T * w  # (nnz_term, points)
            if isinstance(m, np.ndarray):
                for row, vals_ in zip(m, wv):  # distinct pattern rows: contiguous in-place adds
                    H[row] += vals_
            else:
                H += m @ wv
        return H


def _entry_maps(rows, cols, pattern: tuple[np.ndarray, np.ndarray], n: int) -> list | None:
    I, J = pattern
    where = np.full(n * n, -1, dtype=np.int64)
    where[I * n + J] = np.arange(len(I))
    maps = []
    for r, c in zip(rows, cols):
        tgt = where[np.asarray(r) * n + np.asarray(c)]
        if np.any(tgt < 0):
            return None
        if len(np.unique(tgt)) == len(tgt):
            maps.append(tgt)
        else:
            maps.append(sp.csr_array((np.ones(len(tgt)), (tgt, np.arange(len(tgt)))), shape=(len(I), len(tgt))))
    return maps


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
    """Vector I/O and the gradient-flow metric of an assembler that owns ``V`` and the trajectory ``u``.

    :class:`~glep.bvp.reduced.ReducedProblem` assembles ``J_r = Qᵀ A P`` of such an assembler directly
    (no PtAP), through :meth:`create_jacobian`'s maps.
    """

    kind = "vectorised"
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
