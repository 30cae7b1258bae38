r"""Vectorised assembly of the trapezoid discrete action from NumPy blocks.

For many components per node the UFL kernels of :class:`~glep.bvp.fe.FEAction`
grow like ``n²`` (and their compilation with them).  The same discrete action

    A_β = Σ_k L_d(q_k, q_{k+1}),   L_d = trapezoid discrete Lagrangian,

which *is* the P1 + Gauss–Lobatto finite-element action, can instead be
assembled element by element from the NumPy methods of
:class:`glep.ivp.discrete.DiscreteLagrangian`, evaluated for all elements at
once (the element index is the batch axis):

* residual: ``(D₁L_d, D₂L_d)`` of element ``k`` add into nodes ``k, k+1``;
* Jacobian: the blocks ``D₁₁, D₁₂, D₂₁, D₂₂`` (``hessian_action`` on the
  ``n`` unit directions) give a block-tridiagonal matrix, inserted into a
  PETSc AIJ matrix through COO assembly (``setPreallocationCOO`` once,
  ``setValuesCOO`` per Newton iteration) after dropping the structurally
  zero entries of the blocks.

dolfinx still provides the mesh, its distribution over ranks, the dof
numbering and the ghost exchange, so the boundary conditions and solvers of
:mod:`glep.bvp` apply unchanged and the two paths can be compared entry by
entry.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import dolfinx
import numpy as np
from dolfinx import fem
from mpi4py import MPI
from petsc4py import PETSc

from glep.bvp._assembly import (
    EntryMaps,
    NumpyAssembler,
    colour_directions,
    coloured_entries,
    column_coloring,
    end_block_coo,
    end_block_indices,
    probe_generator,
    union_pattern,
)
from glep.bvp.fe import _signal_values
from glep.errors import InputError
from glep.ivp.discrete import TRAPEZOID, DiscreteLagrangian, StepMesh
from glep.parallel import agree
from glep.system import LagrangianSystem, position_force, position_hessian_action, position_hessian_entries


def cell_discrete_lagrangian(system: LagrangianSystem, theta, t0: np.ndarray, h: np.ndarray,
                             beta: float = 0.0) -> DiscreteLagrangian:
    r"""The trapezoid ``L_d`` on the local cells ``[t0_k, t0_k + h_k]`` (one cell per batch member).

    The finite-element form: the step index passed to the discrete Lagrangian
    is an index array or slice of cells; signals are sampled at the cells' times.
    """
    def sampler(t: np.ndarray) -> dict:
        return {name: _signal_values(sig, t) for name, sig in system.signals.items()}

    return DiscreteLagrangian(system, theta, StepMesh.cells(t0, h), TRAPEZOID, beta, fast=False, sampler=sampler)


class VectorisedAction(NumpyAssembler):
    r"""Assembler with the interface of :class:`~glep.bvp.fe.FEAction` built on NumPy blocks.

    Only ``P1`` with the trapezoid discrete Lagrangian (two-point
    Gauss–Lobatto), for which it assembles the same residual and Jacobian as
    the finite-element path.

    Parameters
    ----------
    chunk:
        Elements per batch when forming the ``n × n`` Jacobian blocks
        (bounds the temporary memory to about ``8 n² chunk`` bytes per array).
    """

    def __init__(self, system: LagrangianSystem, params: Mapping[str, np.ndarray], mesh: dolfinx.mesh.Mesh, *,
                 beta: float = 0.0, chunk: int | None = None):
        t0 = time.perf_counter()
        if system.batch not in (None, 1):
            raise InputError("the bvp backend solves one trajectory at a time (unbatched signals)")
        self.system = system
        self.theta = system.check_params(params)
        self.mesh = mesh
        self.comm: MPI.Comm = mesh.comm
        self.n = n = system.n
        self.degree = 1
        self.V = fem.functionspace(mesh, ("Lagrange", 1, (n,)))
        self.u = fem.Function(self.V, name="q")
        self._beta = float(beta)
        imap = self.V.dofmap.index_map
        ncells = mesh.topology.index_map(1).size_local
        cd = self.V.dofmap.list[:ncells]
        tc = self.V.tabulate_dof_coordinates()[:, 0]
        swap = tc[cd[:, 0]] > tc[cd[:, 1]]
        a = np.where(swap, cd[:, 1], cd[:, 0])
        b = np.where(swap, cd[:, 0], cd[:, 1])
        order = np.argsort(a, kind="stable")  # memory locality of the gathers / scatters
        a, b = a[order], b[order]
        self.a, self.b = a, b
        # index objects for gathers/scatters: slices (views, no copies) when the element ends are
        # consecutive dofs in time order, as dolfinx numbers a serial interval mesh
        if len(a) and np.all(np.diff(a) == 1) and np.all(b == a + 1):
            self._ia, self._ib = slice(int(a[0]), int(a[-1]) + 1), slice(int(b[0]), int(b[-1]) + 1)
        else:
            self._ia, self._ib = a, b
        self.nblocks = imap.size_local + imap.num_ghosts
        ga = imap.local_to_global(a.astype(np.int32)).astype(np.int64)
        gb = imap.local_to_global(b.astype(np.int32)).astype(np.int64)
        self.ga, self.gb = ga, gb
        self.dl = cell_discrete_lagrangian(system, self.theta, tc[a], tc[b] - tc[a], beta)
        self.tnodes = tc
        # full n × n blocks at the two ends of the mesh: room for the boundary point terms
        self._end_blocks = end_block_indices(self.comm, tc)
        self._n_end = len(self._end_blocks) * n * n
        self._xnodes = None
        self._flat = None
        self._nodeweights = None
        self._inv_h = None
        self.chunk = chunk or (200_000 if system.is_separable else max(1, int(4e6 // max(n * n, 1))))
        self.timings = {"setup": 0.0, "compile": 0.0, "residual": 0.0, "jacobian": 0.0}
        self._mask = agree(self._structure_local, self.comm, "probing the sparsity pattern")
        self._mask = union_pattern(self.comm, self._mask)
        self._colors = column_coloring(self._mask[0] | self._mask[3]) if system.is_separable else None
        # node form of the block-tridiagonal matrix (one diagonal block per node) for a separable
        # system on consecutively numbered nodes: 15 instead of 24 COO values per node for n = 3
        self._nodeform = self._colors is not None and isinstance(self._ia, slice)
        self._coo = None
        self._forms: dict = {}
        self._entries = EntryMaps()
        self.timings["setup"] = time.perf_counter() - t0

    # -- state ---------------------------------------------------------------------
    def set_beta(self, beta: float) -> None:
        self._beta = float(np.real(beta))
        self.dl.beta = self._beta

    @property
    def beta(self) -> float:
        return self._beta

    def set_params(self, params) -> None:
        self.theta = self.system.check_params(params)
        self.dl.theta = self.theta

    def _states(self, x=None):
        arr = (self.u.x.array if x is None else x).reshape(-1, self.n)
        return arr[self._ia], arr[self._ib]

    # -- blocks ----------------------------------------------------------------------
    def _blocks(self, sel, q0, q1):
        """``D₁₁, D₁₂, D₂₁, D₂₂`` for the elements ``sel``, each ``(m, n, n)`` (row = equation).

        For a separable system (``½vᵀMv`` + potentials) the trapezoid blocks are
        ``D₁₁ = M/h + (h/2) ∂²_qL(q₀)``, ``D₂₂ = M/h + (h/2) ∂²_qL(q₁)``,
        ``D₁₂ = D₂₁ = −M/h``: only position Hessians are evaluated (the
        discrete Lagrangian's ``force_hessian_action``); otherwise the blocks
        come from ``hessian_action`` on the ``n`` unit directions.
        """
        n = self.n
        k = sel
        if self.system.is_separable:
            h = self.dl.mesh.steps[sel][:, None, None]
            th = self.theta
            M = np.asarray(self.system.kinetic.mass_apply(np.eye(n), th))
            eye = np.broadcast_to(np.eye(n)[:, None, :], (n, q0.shape[0], n))
            t0, t1 = self.dl.time(k), self.dl.time(k, 1.0)
            H0 = position_hessian_action(self.system, q0, th, self.dl.inputs(t0), t0, eye, self.dl.beta)
            H1 = position_hessian_action(self.system, q1, th, self.dl.inputs(t1), t1, eye, self.dl.beta)
            Mh = M[None] / h
            d11 = Mh + 0.5 * h * np.moveaxis(H0, 0, -1)
            d22 = Mh + 0.5 * h * np.moveaxis(H1, 0, -1)
            return [d11, -Mh, -Mh, d22]
        eye = np.broadcast_to(np.eye(n)[:, None, :], (n, q0.shape[0], n))
        d11, d21 = self.dl.hessian_action(k, q0, q1, eye, None)
        d12, d22 = self.dl.hessian_action(k, q0, q1, None, eye)
        return [np.moveaxis(d, 0, -1) for d in (d11, d12, d21, d22)]

    def _structure_local(self):
        """Structural non-zeros of the four blocks on this rank.

        Probed at two random states with the cost switched on (``β = 1``, so
        that :meth:`set_beta` may nudge later), at the parameter point and at a
        random perturbation of it (so that an entry that vanishes at this θ,
        e.g. a spring with ``J_e = 0``, keeps its place when :meth:`set_params`
        changes θ).
        """
        n = self.n
        rng = probe_generator()
        m = min(len(self.a), 4)
        mask = np.zeros((4, n, n), dtype=bool)
        if not m:
            return mask
        sel = np.arange(m)
        theta, beta = self.theta, self.dl.beta
        shaken = {k: v + 0.5 * (1.0 + np.abs(v)) * rng.standard_normal(v.shape) for k, v in theta.items()}
        try:
            self.dl.beta = 1.0 if self.system.cost is not None else beta
            for th in (theta, shaken):
                self.theta = self.dl.theta = th
                for _ in range(2):
                    q0, q1 = rng.standard_normal((m, n)), rng.standard_normal((m, n))
                    with np.errstate(all="ignore"):
                        for i, blk in enumerate(self._blocks(sel, q0, q1)):
                            mask[i] |= np.any(blk != 0, axis=0)
        finally:
            self.theta = self.dl.theta = theta
            self.dl.beta = beta
        return mask

    def _node_inputs(self):
        if self._xnodes is None:
            self._xnodes = self.dl.inputs(self.tnodes)
        return self._xnodes

    def _separable_values(self, masks, flat: np.ndarray, offsets) -> None:
        r"""Masked entries of the four blocks of a separable system, written into ``flat``.

        ``∂²_qL`` is evaluated once per node (not per element end), with
        coloured Hessian actions; ``D₁₁ = M/h + (h/2)H(q₀)``,
        ``D₂₂ = M/h + (h/2)H(q₁)``, ``D₁₂ = D₂₁ = −M/h``.  Elements are
        processed in cache-sized chunks straight into the COO value array.
        """
        th, sysm = self.theta, self.system
        U = self.u.x.array.reshape(-1, self.n)
        M = np.asarray(sysm.kinetic.mass_apply(np.eye(self.n), th))
        dirs = colour_directions(self._colors, U.shape[0], self.n)
        H = position_hessian_action(sysm, U, th, self._node_inputs(), self.tnodes, dirs, self.dl.beta)
        Nc = len(self.a)
        ends = (np.arange(Nc) if not isinstance(self._ia, slice) else None)
        step = 32768
        for s in range(0, Nc, step):
            e = min(Nc, s + step)
            h = self.dl.mesh.steps[s:e, None]
            for i, (I, J) in enumerate(masks):
                vals = (-1.0 if i in (1, 2) else 1.0) * M[I, J][None, :] / h
                if i in (0, 3):
                    idx = self._ia if i == 0 else self._ib
                    if ends is None:
                        nodes = slice(idx.start + s, idx.start + e)
                    else:
                        nodes = idx[s:e]
                    vals = vals + 0.5 * h * coloured_entries(H[:, nodes, :], self._colors, (I, J)).T
                m = len(I)
                flat[offsets[i] + s * m: offsets[i] + e * m] = vals.reshape(-1)

    def _node_hessian(self, U, xn, tn, pattern, w, out=None) -> np.ndarray | None:
        r"""``w_j ∂²_qL_β(q_j)`` at every node on the diagonal-block pattern, shape ``(nnz, nodes)``
        (written into ``out`` if given), from the terms' sparse Hessian entries (no probing);
        ``None`` if a term does not provide them."""
        entries = position_hessian_entries(self.system, U, self.theta, xn, tn, self.dl.beta)
        if entries is None:
            return None
        return self._entries.hessian(entries, pattern, self.n, w, out=out)

    def _nodeform_values(self) -> None:
        r"""COO values of the node form: diagonal blocks ``M(1/h₋ + 1/h₊) + ((h₋ + h₊)/2) H(q_j)``
        per node (one-sided at the ends of the local range), off-diagonal blocks ``−M/h`` per element.

        Values are laid out pattern-position-major (all nodes of entry
        ``(I, J)``, then the next entry), matching :meth:`_coo_indices`, so
        every update is a long contiguous vector operation.  ``H`` comes from
        the terms' sparse Hessian entries when every term provides them,
        otherwise from coloured Hessian actions.
        """
        th, sysm, n = self.theta, self.system, self.n
        lo, hi = self._ia.start, self._ib.stop
        M = np.asarray(sysm.kinetic.mass_apply(np.eye(n), th))
        h = self.dl.mesh.steps
        Nn = hi - lo
        invh, w = self._node_weights()
        Dm = np.nonzero(self._mask[0] | self._mask[3])
        m1, m2 = np.nonzero(self._mask[1]), np.nonzero(self._mask[2])
        sizes = [Nn * len(Dm[0]), len(h) * len(m1[0]), len(h) * len(m2[0])]
        flat = self._values_buffer(sum(sizes))
        I, J = Dm
        diag = flat[: sizes[0]].reshape(len(I), Nn)
        for s, e, U, tn, xn in self._node_chunks(0):
            if self._node_hessian(U, xn, tn, Dm, w[s:e], out=diag[:, s:e]) is None:
                Hc = position_hessian_action(sysm, U, th, xn, tn, colour_directions(self._colors, e - s, n),
                                             self.dl.beta)
                diag[:, s:e] = w[s:e] * coloured_entries(Hc, self._colors, Dm)
        Mp = M[I, J]
        for k in np.flatnonzero(Mp):
            diag[k] += Mp[k] * invh
        off = sizes[0]
        for (I1, J1), size in ((m1, sizes[1]), (m2, sizes[2])):
            flat[off: off + size].reshape(len(I1), len(h))[:] = np.multiply.outer(-M[I1, J1], self._inv_h)
            off += size

    def _node_weights(self):
        """Per node ``1/h₋ + 1/h₊`` and ``(h₋ + h₊)/2`` over the consecutive local nodes (cached)."""
        if self._nodeweights is None:
            h = self.dl.mesh.steps
            hl = np.concatenate([[0.0], h])
            hr = np.concatenate([h, [0.0]])
            with np.errstate(divide="ignore"):
                invh = np.where(hl > 0, 1.0 / np.where(hl > 0, hl, 1.0), 0.0) + np.where(
                    hr > 0, 1.0 / np.where(hr > 0, hr, 1.0), 0.0)
            self._nodeweights = (invh, 0.5 * (hl + hr))
            self._inv_h = 1.0 / h
        return self._nodeweights

    #: nodes per chunk of the node-form residual and Jacobian: the temporaries of a chunk
    #: (``n`` columns of 2¹⁵ doubles) stay in cache and are reused instead of page-faulted afresh
    chunk_nodes = 32768

    def _node_chunks(self, halo: int):
        """``(s, e, U, t, x)`` over chunks ``[s, e)`` of the consecutive local nodes; ``U`` holds the
        positions of nodes ``[s − halo, e + halo)`` (clipped) in component-major (Fortran) order,
        ``t`` and ``x`` the times and inputs of ``[s, e)``.  NumPy operations broadcasting an
        ``(n,)`` parameter over ``(nodes, n)`` run about 20× faster in this order for small ``n``."""
        lo, hi = self._ia.start, self._ib.stop
        Nn = hi - lo
        arr = self.u.x.array.reshape(-1, self.n)
        xall = self._node_inputs()
        for s in range(0, Nn, self.chunk_nodes):
            e = min(Nn, s + self.chunk_nodes)
            a, b = max(s - halo, 0), min(e + halo, Nn)
            U = np.asfortranarray(arr[lo + a: lo + b])
            yield s, e, U, self.tnodes[lo + s: lo + e], {k: v[lo + s: lo + e] for k, v in xall.items()}

    def _nodeform_residual(self, b: PETSc.Vec) -> None:
        r"""Residual of a separable system on consecutive nodes, chunk by chunk:
        ``R_j = M(v_{j−½} − v_{j+½}) + ((h₋ + h₊)/2) f(q_j)`` with ``v_{k+½} = (q_{k+1} − q_k)/h_k``."""
        lo, hi = self._ia.start, self._ib.stop
        Nn = hi - lo
        _, w = self._node_weights()
        inv_h = self._inv_h
        with b.localForm() as loc:
            arr = loc.array.reshape(-1, self.n)
            if lo > 0 or hi < arr.shape[0]:
                arr[:] = 0.0
            for s, e, U, tn, xn in self._node_chunks(1):
                a = max(s - 1, 0)  # U holds nodes a .. min(e + 1, Nn) − 1
                own = U[s - a: s - a + (e - s)]
                res = position_force(self.system, own, self.theta, xn, tn, self.dl.beta)
                res = np.multiply(res, w[s:e, None], order="F")
                dU = U[1:] - U[:-1]  # elements a .. a + len(U) − 2
                dU *= inv_h[a: a + len(dU), None]
                Mv = self.system.kinetic.mass_apply(dU, self.theta)
                j0 = max(s, 1)  # nodes j ≥ 1 receive + M v_{j−½}  (element j − 1)
                res[j0 - s:] += Mv[j0 - 1 - a: e - 1 - a]
                j1 = min(e, Nn - 1)  # nodes j ≤ Nn − 2 receive − M v_{j+½}  (element j)
                res[: j1 - s] -= Mv[s - a: j1 - a]
                arr[lo + s: lo + e] = res
        b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)

    # -- assembly ----------------------------------------------------------------------------
    def action(self) -> float:
        def local():
            q0, q1 = self._states()
            return float(np.sum(self.dl.value(slice(None), q0, q1))) if len(self.a) else 0.0

        return self.comm.allreduce(agree(local, self.comm, "evaluating the action"))

    def residual(self, b: PETSc.Vec) -> None:
        t0 = time.perf_counter()
        if self._nodeform and len(self.a):
            self._nodeform_residual(b)
            self.timings["residual"] += time.perf_counter() - t0
            return
        q0, q1 = self._states()
        res = np.zeros((self.nblocks, self.n))
        if len(self.a) and self._colors is not None:
            # separable: D₁L_d = −Mv + (h/2) f(q₀), D₂L_d = Mv + (h/2) f(q₁), force f once per node
            U = self.u.x.array.reshape(-1, self.n)
            f = position_force(self.system, U, self.theta, self._node_inputs(), self.tnodes, self.dl.beta)
            h = self.dl.mesh.steps[:, None]
            Mv = self.system.kinetic.mass_apply((q1 - q0) / h, self.theta)
            res[self._ia] += -Mv + 0.5 * h * f[self._ia]
            res[self._ib] += Mv + 0.5 * h * f[self._ib]
        elif len(self.a):
            d1, d2 = self.dl.momenta(slice(None), q0, q1)
            res[self.a] += d1
            res[self.b] += d2
        self._scatter(res, b)
        self.timings["residual"] += time.perf_counter() - t0

    def cost(self) -> float:
        cost = self.system.cost

        def local():
            if cost is None or not len(self.a):
                return 0.0
            q0, q1 = self._states()
            k = slice(None)
            x0, x1 = self.dl.inputs(self.dl.time(k)), self.dl.inputs(self.dl.time(k, 1.0))
            return float(np.sum(0.5 * self.dl.mesh.steps * (cost.cost(q0, x0, None) + cost.cost(q1, x1, None))))

        return self.comm.allreduce(agree(local, self.comm, "evaluating the action"))

    def cost_gradient(self, b: PETSc.Vec) -> None:
        cost = self.system.cost
        res = np.zeros((self.nblocks, self.n))
        if cost is not None and len(self.a):
            q0, q1 = self._states()
            k = slice(None)
            x0, x1 = self.dl.inputs(self.dl.time(k)), self.dl.inputs(self.dl.time(k, 1.0))
            h = self.dl.mesh.steps[:, None]
            res[self.a] += 0.5 * h * cost.gradient(q0, x0, None)
            res[self.b] += 0.5 * h * cost.gradient(q1, x1, None)
        self._scatter(res, b)

    def _coo_indices(self, row_map=None, col_map=None):
        n = self.n
        rows, cols = [], []
        imap = self.V.dofmap.index_map
        if row_map is None:  # global unrolled indices of the full space
            blocks = np.arange(self.nblocks, dtype=np.int32)
            full = (imap.local_to_global(blocks).astype(np.int64)[:, None] * n + np.arange(n)).ravel()
            row_map = col_map = full
        if self._nodeform:
            nodes = np.arange(self._ia.start, self._ib.stop)
            diag = self._mask[0] | self._mask[3]
            pairs = [(nodes, nodes, diag), (self.a, self.b, self._mask[1]), (self.b, self.a, self._mask[2])]
            for lr, lc, mask in pairs:  # position-major: all nodes of entry (I, J), then the next entry
                I, J = np.nonzero(mask)
                rows.append(row_map[(lr[None, :] * n + I[:, None]).ravel()])
                cols.append(col_map[(lc[None, :] * n + J[:, None]).ravel()])
        else:
            pairs = [(self.a, self.a), (self.a, self.b), (self.b, self.a), (self.b, self.b)]
            for (lr, lc), mask in zip(pairs, self._mask):
                I, J = np.nonzero(mask)
                rows.append(row_map[(lr[:, None] * n + I[None, :]).ravel()])
                cols.append(col_map[(lc[:, None] * n + J[None, :]).ravel()])
        # full n × n blocks at the two ends (zero values): room for the boundary point terms
        rows_e, cols_e = end_block_coo(self._end_blocks, n, row_map, col_map)
        rows.append(rows_e)
        cols.append(cols_e)
        return (np.concatenate(rows).astype(PETSc.IntType), np.concatenate(cols).astype(PETSc.IntType))

    def _values_buffer(self, size: int) -> np.ndarray:
        """The COO value array: ``size`` element/node values, then the zero end blocks."""
        if self._flat is None or self._flat.size != size + self._n_end:
            self._flat = np.empty(size + self._n_end)
        self._flat[size:] = 0.0
        return self._flat

    def jacobian(self, A: PETSc.Mat) -> None:
        t0 = time.perf_counter()
        q0, q1 = self._states()
        Nc = len(self.a)
        vals = [[], [], [], []]
        masks = [np.nonzero(m) for m in self._mask]
        if self._nodeform and Nc:
            self._nodeform_values()
            A.setValuesCOO(self._flat, addv=PETSc.InsertMode.INSERT_VALUES)
            A.assemble()
            self.timings["jacobian"] += time.perf_counter() - t0
            return
        if self._colors is not None and Nc:
            sizes = [Nc * len(I) for I, _ in masks]
            self._values_buffer(sum(sizes))
            self._separable_values(masks, self._flat, np.concatenate([[0], np.cumsum(sizes)[:-1]]))
            A.setValuesCOO(self._flat, addv=PETSc.InsertMode.INSERT_VALUES)
            A.assemble()
            self.timings["jacobian"] += time.perf_counter() - t0
            return
        for s in range(0, Nc, self.chunk):
            sel = slice(s, min(Nc, s + self.chunk))
            for i, blk in enumerate(self._blocks(sel, q0[sel], q1[sel])):
                vals[i].append(blk[:, masks[i][0], masks[i][1]].reshape(-1))
        flat = np.concatenate([np.concatenate(v) if v else np.zeros(0) for v in vals] + [np.zeros(self._n_end)])
        A.setValuesCOO(flat, addv=PETSc.InsertMode.INSERT_VALUES)
        A.assemble()
        self.timings["jacobian"] += time.perf_counter() - t0

    # -- parameter derivatives ---------------------------------------------------------------------
    def theta_gradient(self) -> dict[str, np.ndarray]:
        out = {k: np.zeros(v.shape) for k, v in self.theta.items()}
        if len(self.a):
            q0, q1 = self._states()
            for k, g in self.dl.theta_gradient(slice(None), q0, q1).items():
                out[k] = out[k] + np.real(g)
        return {k: self.comm.allreduce(v) for k, v in out.items()}

    def theta_vjp(self, lam: PETSc.Vec) -> dict[str, np.ndarray]:
        out = {k: np.zeros(v.shape) for k, v in self.theta.items()}
        if len(self.a):
            q0, q1 = self._states()
            a0, a1 = self._states(self._ghosted(lam))
            for k, g in self.dl.theta_vjp(slice(None), q0, q1, a0, a1).items():
                out[k] = out[k] + np.real(g)
        return {k: self.comm.allreduce(v) for k, v in out.items()}

    def theta_jvp(self, dtheta: Mapping[str, np.ndarray], b: PETSc.Vec) -> None:
        res = np.zeros((self.nblocks, self.n))
        if len(self.a):
            q0, q1 = self._states()
            dt = {k: np.asarray(v, dtype=float)[None] for k, v in dtheta.items()}
            j1, j2 = self.dl.theta_jvp(slice(None), q0, q1, dt)
            if not np.isscalar(j1):
                res[self.a] += np.asarray(j1)[0]
            if not np.isscalar(j2):
                res[self.b] += np.asarray(j2)[0]
        self._scatter(res, b)
