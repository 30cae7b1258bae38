r"""Vectorised Galerkin assembly of degree ``r`` for separable systems.

The UFL path (:class:`~glep.bvp.fe.FEAction`) compiles element kernels whose
size grows like ``(r + 1)² n²``: for a chain of ``n = 200`` oscillators they
are unusable.  For a separable Lagrangian

    L_β(q, v, t) = ½ vᵀ M(θ) v + f-potential terms,    f = ∂_q L_β (the force),

the same finite-element action on vector Lagrange ``P_r`` elements is
assembled here from the NumPy methods of the system, all elements at once.
On element ``k = [t_k, t_k + h_k]`` with the nodal basis ``φ_a`` (``a = 0..r``,
nodes in time order at the reference positions dolfinx uses) and the
quadrature ``(ξ_g, w_g)`` on ``[0, 1]`` that FFCx uses for the same
``quadrature`` / ``quadrature_degree``:

    q_g = Σ_a φ_a(ξ_g) q_a,   v_g = Σ_a φ'_a(ξ_g) q_a / h_k,   t_g = t_k + ξ_g h_k,

    A  = Σ_k Σ_g w_g h_k L_β(q_g, v_g, t_g),
    R_a = Σ_g w_g h_k [ (φ'_a / h_k) M v_g + φ_a f(q_g, t_g) ],
    K_ab = Σ_g w_g h_k [ (φ'_a φ'_b / h_k²) M + φ_a φ_b ∂_q f(q_g, t_g) ].

Inputs and targets are linear between the mesh vertices, exactly as the FE
path's P1 interpolation, so both paths assemble the same discrete action and
are compared entry by entry in the tests.  ``∂_q f`` comes from the terms'
sparse Hessian entries (:func:`glep.system.position_hessian_entries`), or,
for terms without them, from coloured Hessian actions; the Jacobian is a PETSc
AIJ matrix filled through COO assembly (preallocated once), optionally in
the reduced numbering of a boundary condition.  With Gauss quadrature of
``r + 1`` or more points these are the Galerkin variational integrators whose
nodal values converge at order ``2r``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import partial

import basix
import dolfinx
import numpy as np
import scipy.sparse as sp
from dolfinx import fem
from mpi4py import MPI
from petsc4py import PETSc

from glep.bvp import _assembly as asm
from glep.bvp.fe import _signal_values, quadrature_metadata
from glep.errors import InputError
from glep.parallel import agree
from glep.system import (
    LagrangianSystem,
    position_force,
    position_hessian_action,
    position_hessian_entries,
)


def reference_quadrature(metadata: dict) -> tuple[np.ndarray, np.ndarray]:
    """Points on ``[0, 1]`` and weights of the rule FFCx uses for ``metadata`` (interval)."""
    rule, degree = metadata["quadrature_rule"], int(metadata["quadrature_degree"])
    if rule == "vertex":
        return np.array([0.0, 1.0]), np.array([0.5, 0.5])
    kind = basix.QuadratureType.gll if rule == "GLL" else basix.QuadratureType.default
    pts, wts = basix.make_quadrature(basix.CellType.interval, degree, rule=kind)
    return np.asarray(pts)[:, 0], np.asarray(wts)


def lagrange_basis(nodes: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values and derivatives of the Lagrange basis on ``nodes`` at ``points``: two ``(points, nodes)``."""
    r = len(nodes) - 1
    C = np.linalg.inv(np.vander(nodes, r + 1, increasing=True))  # column a: monomial coefficients of φ_a
    P = np.vander(points, r + 1, increasing=True)
    dP = np.zeros_like(P)
    dP[:, 1:] = P[:, :-1] * np.arange(1, r + 1)
    return P @ C, dP @ C


class GalerkinAction(asm.NumpyAssembler):
    r"""Assembler with the interface of :class:`~glep.bvp.fe.FEAction`, vectorised over elements.

    Parameters
    ----------
    system, params:
        A separable system (``½ vᵀMv`` plus velocity-independent terms) and
        its parameters.
    mesh:
        The dolfinx interval (time) mesh.
    degree:
        Lagrange degree ``r ≥ 1``.
    quadrature, quadrature_degree:
        As :func:`glep.bvp.fe.quadrature_metadata` (the same rule as the FE path).
    """

    def __init__(self, system: LagrangianSystem, params: Mapping[str, np.ndarray], mesh: dolfinx.mesh.Mesh, *,
                 degree: int = 1, quadrature: str = "gauss", quadrature_degree: int | None = None,
                 beta: float = 0.0):
        t_start = time.perf_counter()
        if not system.is_separable:
            raise InputError("the vectorised Galerkin assembler needs a separable system (one kinetic term "
                             f"½ vᵀM(θ)v plus velocity-independent potentials): {system.non_separable_reason}; "
                             "use assembler='fe'")
        if system.batch not in (None, 1):
            raise InputError("the bvp backend solves one trajectory at a time (unbatched signals)")
        if int(degree) < 1:
            raise InputError(f"degree must be >= 1, got {degree!r}")
        self.system = system
        self.theta = system.check_params(params)
        self.mesh = mesh
        self.comm: MPI.Comm = mesh.comm
        self.n = n = system.n
        self.degree = r = int(degree)
        self.quadrature = quadrature
        self.V = fem.functionspace(mesh, ("Lagrange", r, (n,)))
        self.u = fem.Function(self.V, name="q")
        self._beta = float(beta)
        imap = self.V.dofmap.index_map
        self.nblocks = imap.size_local + imap.num_ghosts
        ncells = mesh.topology.index_map(1).size_local
        cd = np.asarray(self.V.dofmap.list[:ncells], dtype=np.int64)
        tc = self.V.tabulate_dof_coordinates()[:, 0]
        tcell = tc[cd]
        order = np.argsort(tcell, axis=1, kind="stable")
        self.cd = np.take_along_axis(cd, order, axis=1)
        tcell = np.take_along_axis(tcell, order, axis=1)
        self.t0 = tcell[:, 0]
        self.h = tcell[:, -1] - tcell[:, 0]
        if ncells:
            xi = (tcell - self.t0[:, None]) / self.h[:, None]
            nodes = xi[0]
            if np.max(np.abs(xi - nodes)) > 1e-9:
                raise InputError("the P_r nodes are not at the same reference positions in every cell")
        else:
            nodes = np.linspace(0.0, 1.0, r + 1)
        self.metadata = quadrature_metadata(r, quadrature, quadrature_degree)
        self.xi, self.w = reference_quadrature(self.metadata)
        self.phi, self.dphi = lagrange_basis(nodes, self.xi)
        nc, nq, nl = ncells, len(self.xi), r + 1
        self.nc, self.nq = nc, nq
        self.tq = (self.t0[:, None] + self.xi[None, :] * self.h[:, None]).reshape(-1)
        # element-local contributions (cell, a) -> dof blocks (owned and ghost)
        self.S = sp.csr_array((np.ones(nc * nl), (self.cd.reshape(-1), np.arange(nc * nl))),
                              shape=(self.nblocks, nc * nl))
        self._xq = self._quadrature_inputs()
        self._pattern = None
        self._coo_size = None
        self._flat = None
        self._colors = None
        self._entries = asm.EntryMaps()
        self.timings = {"setup": 0.0, "compile": 0.0, "residual": 0.0, "jacobian": 0.0}
        self._end_blocks = asm.end_block_indices(self.comm, tc)
        self.timings["setup"] = time.perf_counter() - t_start

    # -- state ----------------------------------------------------------------------
    def set_beta(self, beta: float) -> None:
        self._beta = float(np.real(beta))

    @property
    def beta(self) -> float:
        return self._beta

    def set_params(self, params) -> None:
        self.theta = self.system.check_params(params)

    def _quadrature_inputs(self) -> dict[str, np.ndarray]:
        """Signals at the quadrature points, linear between the vertices (the FE path's P1 interpolation)."""
        out = {}
        for name, sig in self.system.signals.items():
            ends = agree(partial(_signal_values, sig, np.concatenate([self.t0, self.t0 + self.h])), self.comm,
                         "evaluating the signals")
            x0, x1 = ends[: self.nc], ends[self.nc:]
            xq = (1.0 - self.xi)[None, :, None] * x0[:, None, :] + self.xi[None, :, None] * x1[:, None, :]
            out[name] = xq.reshape(self.nc * self.nq, -1)
        return out

    def _states(self, x: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``q_g`` and ``v_g`` at every quadrature point, each ``(cells · points, n)``."""
        U = (self.u.x.array if x is None else x).reshape(-1, self.n)
        Ue = U[self.cd]  # (cells, r+1, n)
        Q = np.einsum("ga,can->cgn", self.phi, Ue)
        Vv = np.einsum("ga,can->cgn", self.dphi, Ue) / self.h[:, None, None]
        return Q.reshape(-1, self.n), Vv.reshape(-1, self.n)

    def _weights(self) -> np.ndarray:
        """``w_g h_k`` per quadrature point, ``(cells · points,)``."""
        return (self.h[:, None] * self.w[None, :]).reshape(-1)

    def _gather(self, values: np.ndarray, basis: np.ndarray) -> np.ndarray:
        """``Σ_g basis[g, a] values[k, g]`` scattered onto the dof blocks, ``(blocks, n)``."""
        per = np.einsum("ga,cgn->can", basis, values.reshape(self.nc, self.nq, -1))
        return np.asarray(self.S @ per.reshape(self.nc * (self.degree + 1), -1))

    # -- scalars -----------------------------------------------------------------------
    def action(self) -> float:
        def local():
            if not self.nc:
                return 0.0
            Q, Vv = self._states()
            L = self.system.lagrangian(Q, Vv, self.theta, self._xq, self.tq, self._beta)
            return float(np.sum(self._weights() * L))

        return self.comm.allreduce(agree(local, self.comm, "evaluating the action"))

    def cost(self) -> float:
        cost = self.system.cost

        def local():
            if cost is None or not self.nc:
                return 0.0
            Q, _ = self._states()
            return float(np.sum(self._weights() * cost.cost(Q, self._xq, self.tq)))

        return self.comm.allreduce(agree(local, self.comm, "evaluating the action"))

    # -- vectors ---------------------------------------------------------------------------
    def residual(self, b: PETSc.Vec) -> None:
        t0 = time.perf_counter()
        res = np.zeros((self.nblocks, self.n))
        if self.nc:
            Q, Vv = self._states()
            wh = self._weights()[:, None]
            f = position_force(self.system, Q, self.theta, self._xq, self.tq, self._beta)
            Mv = self.system.kinetic.mass_apply(Vv, self.theta)
            res = self._gather(wh * f, self.phi) + self._gather(wh * Mv / np.repeat(self.h, self.nq)[:, None],
                                                                self.dphi)
        self._scatter(res, b)
        self.timings["residual"] += time.perf_counter() - t0

    def cost_gradient(self, b: PETSc.Vec) -> None:
        cost = self.system.cost
        res = np.zeros((self.nblocks, self.n))
        if cost is not None and self.nc:
            Q, _ = self._states()
            res = self._gather(self._weights()[:, None] * cost.gradient(Q, self._xq, self.tq), self.phi)
        self._scatter(res, b)

    # -- Jacobian ------------------------------------------------------------------------------
    def _mass(self) -> np.ndarray:
        return np.asarray(self.system.kinetic.mass_apply(np.eye(self.n), self.theta))

    def _hessian_pattern(self) -> tuple[np.ndarray, np.ndarray]:
        """Structural non-zeros of ``M`` and ``∂_q f`` (cost included, so that β may change), global."""
        n = self.n
        mask = self._mass() != 0
        rng = asm.probe_generator()
        q = rng.standard_normal((2, n))
        x = {k: np.repeat(v[:1], 2, axis=0) for k, v in self._xq.items()} if self.nc else {
            k: np.zeros((2, s.dim)) for k, s in self.system.signals.items()}
        t = np.zeros(2)
        entries = position_hessian_entries(self.system, q, self.theta, x, t, 1.0)
        if entries is not None:
            for r_, c_ in zip(entries[0], entries[1]):
                mask[r_, c_] = True
        else:
            eye = np.broadcast_to(np.eye(n)[:, None, :], (n, 2, n))
            for _ in range(2):
                H = position_hessian_action(self.system, rng.standard_normal((2, n)), self.theta, x, t, eye, 1.0)
                mask |= np.any(np.moveaxis(H, 0, -1) != 0, axis=0)
        return np.nonzero(asm.union_pattern(self.comm, mask))

    def _point_hessian(self, Q: np.ndarray) -> np.ndarray:
        """``∂_q f`` at every quadrature point on the pattern, ``(cells · points, nnz)``."""
        I, J = self._pattern
        n = self.n
        entries = position_hessian_entries(self.system, Q, self.theta, self._xq, self.tq, self._beta)
        if entries is not None:
            H = self._entries.hessian(entries, (I, J), n, np.ones(Q.shape[0]))
            if H is None:
                raise InputError("a Hessian entry lies outside the structural pattern found at set-up")
            return H.T
        if self._colors is None:
            mask = np.zeros((n, n), dtype=bool)
            mask[I, J] = True
            self._colors = asm.column_coloring(mask)
        dirs = asm.colour_directions(self._colors, Q.shape[0], n)
        Hc = position_hessian_action(self.system, Q, self.theta, self._xq, self.tq, dirs, self._beta)
        return asm.coloured_entries(Hc, self._colors, (I, J)).T

    def _coo_indices(self, row_map=None, col_map=None):
        """COO rows/cols of the element blocks (entry pattern of ``M`` and ``∂_q f``) and of full end blocks."""
        if self._pattern is None:
            self._pattern = agree(self._hessian_pattern, self.comm, "probing the sparsity pattern")
        n, nl = self.n, self.degree + 1
        if row_map is None:
            imap = self.V.dofmap.index_map
            blocks = np.arange(self.nblocks, dtype=np.int32)
            full = (imap.local_to_global(blocks).astype(np.int64)[:, None] * n + np.arange(n)).ravel()
            row_map = col_map = full
        I, J = self._pattern
        ca = np.repeat(self.cd[:, :, None], nl, axis=2)  # (cells, a, b): row block
        cb = np.repeat(self.cd[:, None, :], nl, axis=1)  # column block
        rows = row_map[(ca[..., None] * n + I).ravel()]
        cols = col_map[(cb[..., None] * n + J).ravel()]
        # full n × n blocks at the two ends: room for boundary point terms (Robin, terminal cost)
        rows_e, cols_e = asm.end_block_coo(self._end_blocks, n, row_map, col_map)
        self._coo_size = rows.size
        self._flat = np.zeros(rows.size + rows_e.size)
        return (np.concatenate([rows, rows_e]).astype(PETSc.IntType),
                np.concatenate([cols, cols_e]).astype(PETSc.IntType))

    def _values(self) -> None:
        r"""COO values ``K_ab = Σ_g w_g h_k [(φ'_a φ'_b / h_k²) M + φ_a φ_b ∂_q f(q_g)]`` on the pattern."""
        I, J = self._pattern
        flat = self._flat
        if not self.nc:
            flat[:] = 0.0
            return
        Q, _ = self._states()
        H = self._point_hessian(Q).reshape(self.nc, self.nq, -1)
        Bw = self.w[:, None, None] * self.phi[:, :, None] * self.phi[:, None, :]  # (g, a, b)
        A = np.einsum("g,ga,gb->ab", self.w, self.dphi, self.dphi)
        Mp = self._mass()[I, J]
        vals = np.einsum("gab,cgk->cabk", Bw, H) * self.h[:, None, None, None]
        vals += (A[None, :, :, None] / self.h[:, None, None, None]) * Mp[None, None, None, :]
        flat[: self._coo_size] = vals.reshape(-1)
        flat[self._coo_size:] = 0.0

    def jacobian(self, A: PETSc.Mat) -> None:
        t0 = time.perf_counter()
        agree(self._values, self.comm, "assembling")
        A.setValuesCOO(self._flat, addv=PETSc.InsertMode.INSERT_VALUES)
        A.assemble()
        self.timings["jacobian"] += time.perf_counter() - t0

    # -- parameter derivatives ---------------------------------------------------------------------
    def theta_gradient(self) -> dict[str, np.ndarray]:
        r"""``Σ_k Σ_g w_g h_k ∂_θL(q_g, v_g, t_g)`` (points grouped by equal weight: the system's
        ``theta_gradient`` sums its batch unweighted)."""
        out = {k: np.zeros(v.shape) for k, v in self.theta.items()}
        if self.nc:
            Q, Vv = self._states()
            wh = self._weights()
            keys = np.round(wh / max(float(np.max(wh)), 1e-300), 13)
            uniq, inv = np.unique(keys, return_inverse=True)
            for i in range(len(uniq)):
                sel = inv == i
                weight = float(np.mean(wh[sel]))
                xs = {k: v[sel] for k, v in self._xq.items()}
                for k, g in self.system.theta_gradient(Q[sel], Vv[sel], self.theta, xs, self.tq[sel]).items():
                    out[k] = out[k] + weight * np.real(g)
        return {k: self.comm.allreduce(v) for k, v in out.items()}

    def theta_vjp(self, lam: PETSc.Vec) -> dict[str, np.ndarray]:
        r"""``λᵀ ∂F/∂θ``: the system's θ-vjp with the weights folded into its (linear) directions."""
        out = {k: np.zeros(v.shape) for k, v in self.theta.items()}
        if self.nc:
            Q, Vv = self._states()
            La, Lv = self._states(self._ghosted(lam))
            wh = self._weights()[:, None]
            for k, g in self.system.theta_vjp(Q, Vv, self.theta, self._xq, self.tq, wh * La, wh * Lv).items():
                out[k] = out[k] + np.real(g)
        return {k: self.comm.allreduce(v) for k, v in out.items()}

    def theta_jvp(self, dtheta: Mapping[str, np.ndarray], b: PETSc.Vec) -> None:
        res = np.zeros((self.nblocks, self.n))
        if self.nc:
            Q, Vv = self._states()
            dt = {k: np.asarray(v, dtype=float)[None] for k, v in dtheta.items()}
            jq, jv = self.system.theta_jvp(Q, Vv, self.theta, self._xq, self.tq, dt)
            wh = self._weights()[:, None]
            hq = np.repeat(self.h, self.nq)[:, None]
            if jq is not None and not np.isscalar(jq):
                res = res + self._gather(wh * np.broadcast_to(np.asarray(jq)[0], Q.shape), self.phi)
            if jv is not None and not np.isscalar(jv):
                res = res + self._gather(wh * np.broadcast_to(np.asarray(jv)[0], Q.shape) / hq, self.dphi)
        self._scatter(res, b)


__all__ = ["GalerkinAction", "reference_quadrature", "lagrange_basis"]
