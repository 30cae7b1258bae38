r"""Boundary conditions as restrictions of the whole-trajectory system.

Every boundary-condition variant of :mod:`glep.boundary` becomes a square
nonlinear system on a *reduced* vector ``r``.  Two 0/1 matrices map reduced
to full (finite-element) vectors:

* the trial map ``P``: ``q_h = P r + g`` (``g`` holds the pinned positions,
  a periodic end copies the other end);
* the test map ``Q``: the admissible variations ``δq = Q δr``.

The reduced residual and Jacobian are

    F_r(r) = Qᵀ (∂A_β/∂q + b(q)),      J_r = Qᵀ (∂²A_β/∂q² + ∂b/∂q) P,

where ``b`` collects point terms at the ends.  Since
``δA = Σ_k (interior EL)·δq_k + p(T)·δq(T) − p(0)·δq(0)`` (discrete momenta
``p(T) = ∂A/∂q_N``, ``p(0) = −∂A/∂q_0``):

============== ====================== ====================== =========================
variant        trial (pinned)         test (δq = 0 at)       point term ``b``
============== ====================== ====================== =========================
CBVP           ``q(0), q(T)``         ``0, T``               —
CIVP           ``q(0)``               ``T``                  ``+p₀`` at ``0``
CFVP, PFVP     ``q(T)``               ``0``                  ``−p_T`` at ``T``
Periodic       ``q(T) := q(0)``       ``δq(T) := δq(0)``     —
DirNatural     ``q(0)``               ``0``                  — (``p(T) = 0`` natural)
Robin (final)  ``q(0)``               ``0``                  ``+K(q(T) − b)`` at ``T``
Robin (init.)  ``q(T)``               ``T``                  ``−K(q(0) − b)`` at ``0``
============== ====================== ====================== =========================

The finite-element assembler forms ``J_r`` by PETSc ``PtAP`` (or
``Qᵀ(AP)``); the vectorised assembler inserts its COO values straight into
the reduced numbering (negative indices drop pinned dofs, a periodic end
maps onto its partner), so no full matrix is formed.

For the symmetric variants (``P = Q``) ``J_r`` is the Hessian of the
restricted action (plus ``±½(q − b)ᵀK(q − b)`` for Robin), whose inertia is
the Morse index.  A terminal cost adds ``β c_T(q(T))`` to the action.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from mpi4py import MPI
from petsc4py import PETSc

from glep.boundary import CBVP, CFVP, CIVP, PFVP, BoundaryCondition, DirichletNatural, Periodic, Robin
from glep.bvp._assembly import NumpyAssembler
from glep.errors import InputError
from glep.validation import as_finite_array

_PROBLEM_IDS = itertools.count()  # the same sequence on every rank: problems are built collectively


@dataclass
class EndTerm:
    """A point term at an end: value ``φ(q)``, gradient and Hessian (numpy callables)."""

    end: str  # "0" or "T"
    value: object
    grad: object
    hess: object


@dataclass
class BoundarySpec:
    """The reduced-system description of a boundary condition."""

    trial_fixed: dict = field(default_factory=dict)  # end -> position
    test_fixed: tuple = ()
    periodic: bool = False
    terms: list = field(default_factory=list)
    symmetric: bool = True
    label: str = ""


def _vec(value, n, name):
    arr = as_finite_array(value, name)
    arr = arr.reshape(-1)
    if arr.shape != (n,):
        raise InputError(f"{name} must have shape ({n},), got {np.shape(value)} (the bvp backend solves one "
                         "trajectory at a time)")
    return arr


def momentum_from(system, theta, q, v, p, t):
    """The momentum at an end: ``p`` itself or ``∂_v L(q, v, θ, t)``."""
    if p is not None:
        return _vec(p, system.n, "momentum")
    v = _vec(v, system.n, "velocity")
    _, mom = system.gradient(q[None], v[None], theta, system.inputs_at(t), t)
    return np.asarray(mom)[0]


def boundary_spec(bc: BoundaryCondition, system, theta, T: float, beta_of) -> BoundarySpec:
    """Translate a :mod:`glep.boundary` condition (PFVP excluded: see :func:`glep.bvp.solve`)."""
    n = system.n
    if isinstance(bc, CBVP):
        spec = BoundarySpec({"0": _vec(bc.q0, n, "q0"), "T": _vec(bc.qT, n, "qT")}, ("0", "T"), label="CBVP")
    elif isinstance(bc, CIVP):
        d = bc.data
        q0 = _vec(d.q, n, "CIVP q0")
        p0 = momentum_from(system, theta, q0, d.v, d.p, 0.0)
        spec = BoundarySpec({"0": q0}, ("T",), symmetric=False, label="CIVP")
        spec.terms.append(EndTerm("0", lambda q, p0=p0: float(p0 @ q), lambda q, p0=p0: p0,
                                  lambda q: np.zeros((n, n))))
        spec.p_end = ("0", p0)
    elif isinstance(bc, CFVP):
        d = bc.data
        qT = _vec(d.q, n, "CFVP qT")
        pT = momentum_from(system, theta, qT, d.v, d.p, T)
        spec = BoundarySpec({"T": qT}, ("0",), symmetric=False, label="CFVP")
        spec.terms.append(EndTerm("T", lambda q, pT=pT: -float(pT @ q), lambda q, pT=pT: -pT,
                                  lambda q: np.zeros((n, n))))
        spec.p_end = ("T", pT)
    elif isinstance(bc, Periodic):
        spec = BoundarySpec({}, (), periodic=True, label="Periodic")
    elif isinstance(bc, DirichletNatural):
        spec = BoundarySpec({"0": _vec(bc.q0, n, "q0")}, ("0",), label="DirichletNatural")
    elif isinstance(bc, Robin):
        K = np.asarray(bc.K, dtype=float)
        if K.shape != (n, n):
            raise InputError(f"Robin K must have shape ({n}, {n}), got {K.shape}")
        b = _vec(bc.b, n, "Robin b")
        other = "0" if bc.end == "final" else "T"
        end = "T" if bc.end == "final" else "0"
        sign = 1.0 if bc.end == "final" else -1.0
        spec = BoundarySpec({other: _vec(bc.q_fixed, n, "Robin q_fixed")}, (other,), label=f"Robin ({bc.end})")
        spec.terms.append(EndTerm(end, lambda q: sign * 0.5 * float((q - b) @ K @ (q - b)),
                                  lambda q: sign * K @ (q - b), lambda q: sign * K))
    elif isinstance(bc, PFVP):
        raise InputError("PFVP is solved in two stages (free CIVP, then the final-value problem): "
                         "use glep.bvp.solve_bvp, which handles it")
    else:
        raise InputError(f"unsupported boundary condition {type(bc).__name__}")
    tc = system.terminal_cost
    if tc is not None and "T" not in spec.trial_fixed and not spec.periodic:
        spec.terms.append(EndTerm("T", lambda q: beta_of() * float(tc.cost(q[None])[0]),
                                  lambda q: beta_of() * tc.gradient(q[None])[0],
                                  lambda q: beta_of() * tc.hessian_action(q[None], np.eye(n))))
    return spec


def restriction_maps(comm: MPI.Comm, kind: np.ndarray, nglob: int, col_local: int | None,
                     partners: Callable[[np.ndarray], None] | None = None):
    r"""The 0/1 maps ``P`` (full ← reduced) and its injection from a classification of the owned dofs.

    ``kind[i]`` is 0 for a free dof (numbered consecutively across ranks), 1 for a pinned one (no
    column) and 2 for a periodic copy, whose reduced index ``partners(ridx)`` fills in place (its
    partner's: then ``P`` repeats a column, ``Pᵀ A P`` sums the two ends, while the injection leaves the
    copy out).  ``col_local`` sets the local column count of a rectangular test space (default: the
    free count).  Shared by the time-mesh :class:`ReducedProblem` and the space–time problems.

    Returns:
        ``(P, P_inj, local column count, reduced index of each owned dof)``.

    Raises:
        InputError: the boundary condition gives a non-square system.
    """
    nloc = len(kind)
    free = np.flatnonzero(kind == 0)
    offset = comm.exscan(len(free)) or 0
    total = comm.allreduce(len(free))
    ridx = np.full(nloc, -1, dtype=np.int64)
    ridx[free] = offset + np.arange(len(free))
    inj = ridx.copy()
    if partners is not None:
        partners(ridx)
    ncol = len(free) if col_local is None else col_local
    if comm.allreduce(ncol) != total:
        raise InputError("the boundary condition gives a non-square system")

    def build(idx):
        has = idx >= 0
        indptr = np.concatenate([[0], np.cumsum(has)]).astype(PETSc.IntType)
        M = PETSc.Mat().createAIJ(((nloc, nglob), (ncol, total)),
                                  csr=(indptr, idx[has].astype(PETSc.IntType), np.ones(int(has.sum()))), comm=comm)
        M.assemble()
        return M

    return build(ridx), build(inj), ncol, ridx


class ReducedProblem:
    r"""The square system ``F_r(r) = 0`` of one boundary-value problem.

    Parameters
    ----------
    disc:
        An assembler (:class:`~glep.bvp.fe.FEAction` or
        :class:`~glep.bvp.vectorised.VectorisedAction`).
    bc:
        The boundary condition (not PFVP, which :func:`glep.bvp.solve_bvp`
        reduces to a CIVP followed by a CFVP).
    """

    def __init__(self, disc, bc: BoundaryCondition):
        self.disc = disc
        self.bc = bc
        self.comm: MPI.Comm = disc.comm
        V = disc.V
        self.n = disc.n
        imap = V.dofmap.index_map
        self.bs = V.dofmap.index_map_bs
        assert self.bs == self.n
        self.nloc = imap.size_local * self.bs
        self.nglob = imap.size_global * self.bs
        self.start = imap.local_range[0] * self.bs
        coords = V.tabulate_dof_coordinates()[: imap.size_local, 0]
        tmin = self.comm.allreduce(coords.min() if coords.size else np.inf, op=MPI.MIN)
        tmax = self.comm.allreduce(coords.max() if coords.size else -np.inf, op=MPI.MAX)
        self.t0, self.T = float(tmin), float(tmax)
        scale = max(1.0, abs(self.T))
        self.end_blocks = {"0": np.flatnonzero(np.abs(coords - tmin) <= 1e-12 * scale),
                           "T": np.flatnonzero(np.abs(coords - tmax) <= 1e-12 * scale)}
        self.end_dofs = {k: (b[:, None] * self.bs + np.arange(self.bs)).ravel()
                         for k, b in self.end_blocks.items()}
        self.spec = boundary_spec(bc, disc.system, disc.theta, self.T - self.t0, lambda: disc.beta)
        self.P, self.P_inj, nr_loc = self._restriction(self.spec.trial_fixed, self.spec.periodic, None)
        trial_idx = self._last_ridx
        if self.spec.symmetric:
            self.Q = self.P
            test_idx = trial_idx
        else:
            self.Q, _, _ = self._restriction({k: None for k in self.spec.test_fixed}, self.spec.periodic, nr_loc)
            test_idx = self._last_ridx
        self.direct = isinstance(disc, NumpyAssembler)  # assembles J_r = Qᵀ A P directly (no PtAP)
        if self.direct:
            self.trial_map, self.test_map = self._ghosted(trial_idx), self._ghosted(test_idx)
        self.nr_loc = nr_loc
        self.g = disc.u.x.petsc_vec.duplicate()
        self.g.set(0.0)
        for end, val in self.spec.trial_fixed.items():
            dofs = self.end_dofs[end]
            if dofs.size:
                self.g.array[dofs] = np.tile(val, len(self.end_blocks[end]))
        self.b = disc.u.x.petsc_vec.duplicate()
        self._A = None
        self._AP = None
        #: keep the Newton Jacobian and its factorisation between solves (see :meth:`release_solver`)
        self.reuse_factorization = True
        self._newton_cache = None
        self._gram: dict[str, PETSc.Mat] = {}
        #: PETSc options prefix of this problem's solvers (options given to a solve are set under it)
        self.options_prefix = f"glep_{next(_PROBLEM_IDS)}_"

    def release_solver(self) -> None:
        """Free the Jacobian and factorisation kept from the last Newton solve."""
        cache, self._newton_cache = self._newton_cache, None
        if cache is not None:
            cache["snes"].destroy()
            cache["J"].destroy()

    # -- restriction matrices ---------------------------------------------------
    def _restriction(self, fixed: dict, periodic: bool, col_local: int | None):
        kind = np.zeros(self.nloc, dtype=np.int8)
        for end in fixed:
            kind[self.end_dofs[end]] = 1
        if periodic:
            kind[self.end_dofs["T"]] = 2

        def partners(ridx: np.ndarray) -> None:
            master = np.full(self.n, -1, dtype=np.int64)
            if self.end_dofs["0"].size:
                master[:] = ridx[self.end_dofs["0"]]
            self.comm.Allreduce(MPI.IN_PLACE, master, op=MPI.MAX)
            if self.end_dofs["T"].size:
                ridx[self.end_dofs["T"]] = master

        P, P_inj, ncol, ridx = restriction_maps(self.comm, kind, self.nglob, col_local,
                                                partners if periodic else None)
        self._last_ridx = ridx
        return P, P_inj, ncol

    def _ghosted(self, idx: np.ndarray) -> np.ndarray:
        """Extend an owned-dof integer map to ghost dofs (exact in float64 below 2⁵³)."""
        from dolfinx import fem

        f = fem.Function(self.disc.V)
        f.x.array[: self.nloc] = idx
        f.x.scatter_forward()
        return np.rint(f.x.array).astype(np.int64)

    def gram(self, metric: str) -> PETSc.Mat:
        """The reduced Gram matrix ``Pᵀ M P`` of the ``"L2"`` or ``"H1"`` inner product, assembled once.

        It depends only on the function space and the boundary condition (not on β, θ or the state), so
        the Morse-index eigenproblems, deflation and the gradient flow share it; callers must not destroy it.
        """
        if metric not in self._gram:
            full = self.disc.metric(metric)
            try:
                self._gram[metric] = full.ptap(self.P)
            finally:
                full.destroy()
        return self._gram[metric]

    # -- vectors -------------------------------------------------------------------
    def create_vec(self) -> PETSc.Vec:
        return self.P.createVecRight()

    def lift(self, r: PETSc.Vec) -> None:
        """Set the trajectory ``q_h = P r + g`` (ghosts updated)."""
        x = self.disc.u.x.petsc_vec
        self.P.multAdd(r, self.g, x)
        x.ghostUpdate(addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)

    def restrict(self, x: PETSc.Vec | None = None) -> PETSc.Vec:
        """Reduced vector of a full trajectory (default: the current one)."""
        r = self.create_vec()
        self.P_inj.multTranspose(self.disc.u.x.petsc_vec if x is None else x, r)
        return r

    def _end_values(self, x: PETSc.Vec, end: str) -> np.ndarray:
        """Entries of a full vector at an end, broadcast to every rank."""
        dofs = self.end_dofs[end]
        local = x.array_r[dofs[: self.n]] if dofs.size else None
        vals = self.comm.allgather(local)
        return next(v for v in vals if v is not None).copy()

    def end_positions(self) -> dict[str, np.ndarray]:
        return {e: self._end_values(self.disc.u.x.petsc_vec, e) for e in ("0", "T")}

    def _add_terms(self, b: PETSc.Vec) -> None:
        for term in self.spec.terms:
            dofs = self.end_dofs[term.end]
            if dofs.size:
                q = self.disc.u.x.petsc_vec.array_r[dofs[: self.n]]
                b.array[dofs[: self.n]] += term.grad(q)

    # -- residual / Jacobian / action ----------------------------------------------------
    def full_residual(self) -> PETSc.Vec:
        """``∂A_β/∂q`` (without point terms) at the current trajectory."""
        self.disc.residual(self.b)
        return self.b

    def residual(self, r: PETSc.Vec, F: PETSc.Vec) -> None:
        self.lift(r)
        self.disc.residual(self.b)
        self._add_terms(self.b)
        self.Q.multTranspose(self.b, F)

    def full_jacobian(self) -> PETSc.Mat:
        if self._A is None:
            self._A = self.disc.create_jacobian()
        self.disc.jacobian(self._A)
        A = self._A
        touched = False
        for term in self.spec.terms:
            dofs = self.end_dofs[term.end]
            if dofs.size:
                q = self.disc.u.x.petsc_vec.array_r[dofs[: self.n]]
                H = np.asarray(term.hess(q), dtype=float)
                if np.any(H):
                    rows = (self.start + dofs[: self.n]).astype(PETSc.IntType)
                    A.setValues(rows, rows, H, addv=PETSc.InsertMode.ADD_VALUES)
                    touched = True
        if self.comm.allreduce(touched, op=MPI.LOR):
            A.assemble()
        return A

    def jacobian(self, r: PETSc.Vec | None = None, J: PETSc.Mat | None = None) -> PETSc.Mat:
        """``J_r = Qᵀ A P`` at ``r`` (or at the current trajectory); reuses ``J`` if given."""
        if r is not None:
            self.lift(r)
        if self.direct:
            return self._direct_jacobian(J)
        A = self.full_jacobian()
        if self.spec.symmetric:
            if J is None:
                return A.ptap(self.P)
            A.ptap(self.P, result=J)
            return J
        self._AP = A.matMult(self.P, result=self._AP)
        if J is None:
            return self.Q.transposeMatMult(self._AP)
        self.Q.transposeMatMult(self._AP, result=J)
        return J

    def _direct_jacobian(self, J: PETSc.Mat | None) -> PETSc.Mat:
        """``J_r`` assembled straight into the reduced numbering (vectorised assembler)."""
        if J is None:
            J = self.disc.create_jacobian(self.test_map, self.trial_map, (self.nr_loc, self.P.getSize()[1]))
        self.disc.jacobian(J)
        touched = False
        for term in self.spec.terms:
            dofs = self.end_dofs[term.end][: self.n]
            if dofs.size:
                q = self.disc.u.x.petsc_vec.array_r[dofs]
                H = np.asarray(term.hess(q), dtype=float)
                rows, cols = self.test_map[dofs], self.trial_map[dofs]
                if np.any(H) and np.any(rows >= 0) and np.any(cols >= 0):
                    J.setValues(rows.astype(PETSc.IntType), cols.astype(PETSc.IntType), H,
                                addv=PETSc.InsertMode.ADD_VALUES)
                    touched = True
        if self.comm.allreduce(touched, op=MPI.LOR):
            J.assemble()
        return J

    def action(self, r: PETSc.Vec | None = None) -> float:
        """``A_β`` plus the point terms (the functional whose stationary points are solved for)."""
        if r is not None:
            self.lift(r)
        val = self.disc.action()
        loc = 0.0
        for term in self.spec.terms:
            dofs = self.end_dofs[term.end]
            if dofs.size:
                loc += term.value(self.disc.u.x.petsc_vec.array_r[dofs[: self.n]])
        return val + self.comm.allreduce(loc)

    def momenta(self) -> dict[str, np.ndarray]:
        r"""Discrete end momenta ``p(0) = −∂A_β/∂q_0``, ``p(T) = ∂A_β/∂q_N`` of the current trajectory."""
        b = self.full_residual()
        return {"0": -self._end_values(b, "0"), "T": self._end_values(b, "T")}
