r"""Field equations on space–time meshes: the whole trajectory ``φ(x, t)`` as one finite-element function.

A field system (:class:`glep.fields.FieldLagrangian`) on ``Ω ⊂ ℝᵈ`` over ``[0, T]`` has the action

    A_β[φ] = ∫₀ᵀ ∫_Ω (ℒ(φ, ∂_tφ, ∇_xφ; θ, x, t) + β c(φ, x, t)) dx dt  +  β ∫_Ω c_T(φ(x, T), x) dx.

Here ``φ_h`` is a Lagrange function on a ``(d+1)``-dimensional dolfinx mesh whose **last coordinate is
time**; ``∂_tφ`` is the last component of the space–time gradient and ``∇_xφ`` the first ``d``.  The
discrete trajectory is a stationary point of ``A_β`` restricted by the boundary conditions, found by
Newton's method (PETSc SNES, MUMPS LU by default, distributed over MPI ranks).

**Boundary conditions in time.**  With ``π = ∂ℒ/∂(∂_tφ)`` the momentum density, the first variation is

    δA = ∫∫ EL(φ) δφ dx dt + ∫_Ω π δφ dx |_{t=T} − ∫_Ω π δφ dx |_{t=0}     (δφ = 0 on ∂Ω × [0, T]).

Each condition is a choice of trial space (what is pinned) and test space (which variations are
taken), exactly as :mod:`glep.bvp.reduced` does for ODEs, with the discrete momenta
``p(T) = ∂A/∂φ_T`` and ``p(0) = −∂A/∂φ_0`` (dual vectors on the end slices):

================  ==========================  ===================  ====================================
condition         pinned (trial)              δφ = 0 at (test)     term added to the residual
================  ==========================  ===================  ====================================
CBVP              ``φ(0)``, ``φ(T)``          ``t = 0``, ``t = T``  —
CIVP              ``φ(0)``                    ``t = T``            ``+∫_Ω π₀ v dx`` on the ``t = 0`` rows
CFVP              ``φ(T)``                    ``t = 0``            ``−∫_Ω π_T v dx`` on the ``t = T`` rows
PFVP              ``φ(T)`` of the free CIVP   ``t = 0``            ``−p_T`` (the free CIVP's discrete ``p(T)``)
periodic          ``φ(T) := φ(0)``            ``δφ(T) := δφ(0)``   — (the two ends' momentum terms cancel)
================  ==========================  ===================  ====================================

So for the final-value problems (CFVP and PFVP) **both data sit at ``t = T``**: ``φ(T)`` is essential
(pinned) and the momentum is *natural*, entering through the boundary term at ``T``; the ``t = 0`` end
carries no condition at all — its test functions are dropped (``δφ(0) = 0`` in the test space) while
``φ(0)`` is an unknown, so the system is square and, for a hyperbolic density, is marched backwards
from ``T``.  The CIVP is the mirror image.  ``PFVP`` here is the final-value problem through the free
CIVP's final state (:meth:`SpaceTimeProblem.final_value_problem`).

**Periodic in time** is imposed without ``dolfinx_mpc``: like the ODE backend, the reduced-to-full
map ``P`` sends each ``t = T`` dof to the reduced index of its partner at ``t = 0`` (same spatial
point), found by matching coordinates; ``J_r = Pᵀ A P`` is then formed by PETSc ``PtAP``.  No
multi-point constraint library is needed because the constraint is a pure renumbering.

**Quadrature.**  On quadrilaterals/hexahedra the default rule (``"lobatto-time"``) is the tensor
product of Gauss–Legendre in space (degree ``2p + 2``) and Gauss–Lobatto with ``p + 1`` points in
time (the trapezoid rule for ``p = 1``), given to FFCx as a custom rule.  For ``Q1`` this assembles the
trapezoid discrete action ``Σ_n h[½ (Δq/h)ᵀ M (Δq/h) − ½(V(q_n) + V(q_{n+1}))]`` of the spatial
finite-element semi-discretisation with consistent mass ``M``: the space–time solution *is* the
Störmer–Verlet (leapfrog) trajectory; with ``"lobatto"`` (Lobatto in every direction, the end slices
included: terminal cost and momentum densities) the spatial mass is lumped and the discrete action is
that of :class:`glep.FieldSystem` with its nodal quadrature (``tests/test_field_backends_agree.py``).
``"gauss"`` is the default Gauss rule of degree ``2p + 2`` (the only one on simplices).

**Parameters.**  A scalar :class:`~glep.fields.FieldParameter` is a ``dolfinx.fem.Constant``; a
parameter field ``θ(x)`` lives on the spatial mesh (``SpaceTimeMesh.spatial``) and enters the forms as
``θ_st = E θ``, its extension constant in time: ``E`` is the 0/1 matrix matching each space–time
parameter dof to the spatial dof at the same ``x`` (exact for ``P_k`` fields on tensor cells and on
triangles, ``DG0`` on tensor cells).  Gradients are then ``Eᵀ`` of the space–time dual vector.

Resonance: the wave CBVP on ``[0, L] × [0, T]`` is singular when ``kcT/L`` is an integer for a resolved
mode (docs/theory.md); a solve reports a numerically singular Jacobian as
:class:`glep.SingularHessianError` rather than a number (:meth:`SpaceTimeProblem.singularity_check`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from math import factorial

import basix
import dolfinx
import numpy as np
import ufl
from dolfinx import fem
from dolfinx.fem import petsc as fpetsc
from mpi4py import MPI
from petsc4py import PETSc

from glep.bvp.solvers import HessianReport, Newton
from glep.errors import InputError, SingularHessianError, SolverError
from glep.fields import FieldLagrangian
from glep.parallel import agree
from glep.trajectory import SolverReport

_IDS = itertools.count()
QUADRATURES = ("lobatto-time", "lobatto", "gauss")
_TENSOR = ("quadrilateral", "hexahedron")


# ----------------------------------------------------------------------------- meshes
@dataclass(frozen=True)
class SpaceTimeMesh:
    """A space–time mesh (last coordinate = time) and the spatial mesh of its parameter fields.

    Attributes:
        mesh: the ``(d+1)``-dimensional dolfinx mesh of ``Ω × [t0, T]``.
        spatial: the ``d``-dimensional dolfinx mesh of ``Ω`` with the same cell breakpoints in space.
        lower, upper: the corners of the box ``Ω`` (length ``d``).
        t0, T: the time interval.
    """

    mesh: dolfinx.mesh.Mesh
    spatial: dolfinx.mesh.Mesh
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    t0: float
    T: float

    @property
    def d(self) -> int:
        return len(self.lower)

    @property
    def comm(self) -> MPI.Comm:
        return self.mesh.comm

    @property
    def cell(self) -> str:
        return self.mesh.topology.cell_type.name


def spacetime_mesh(comm: MPI.Comm, extent, T: float, n, nt: int, *, cell: str | None = None,
                   t0: float = 0.0) -> SpaceTimeMesh:
    """The box ``Ω × [t0, T]`` with ``n`` cells per spatial direction and ``nt`` in time.

    Arguments:
        comm: the communicator (the mesh is distributed over its ranks).
        extent: ``Ω`` as a sequence of ``d`` pairs ``(a, b)`` (``d = 1`` or ``2``), or a number ``L`` for ``[0, L]``.
        T: final time.
        n: cells per spatial direction (an integer or ``d`` integers).
        nt: cells in time.
        cell: ``"quadrilateral"`` (default, ``d = 1``), ``"triangle"`` (``d = 1``) or ``"hexahedron"``
            (default, ``d = 2``).
        t0: initial time.

    Returns:
        A :class:`SpaceTimeMesh` (built with ``dolfinx.mesh.create_rectangle``/``create_box``).
    """
    if isinstance(extent, (int, float, np.floating, np.integer)):
        extent = [(0.0, float(extent))]
    try:
        box = [(float(a), float(b)) for a, b in extent]
    except (TypeError, ValueError) as exc:
        raise InputError(f"extent must be a length L or a sequence of (a, b) pairs, got {extent!r}") from exc
    d = len(box)
    if d not in (1, 2) or any(not b > a for a, b in box):
        raise InputError(f"extent must give 1 or 2 spatial intervals (a, b) with b > a, got {extent!r}")
    ns = [int(n)] * d if np.ndim(n) == 0 else [int(k) for k in n]
    if len(ns) != d or any(k < 1 for k in ns) or int(nt) < 1:
        raise InputError(f"n must be {d} positive integers and nt a positive integer, got n={n!r}, nt={nt!r}")
    if not (np.isfinite(T) and T > t0):
        raise InputError(f"T must be a finite number > t0 = {t0}, got {T!r}")
    cell = cell or ("quadrilateral" if d == 1 else "hexahedron")
    allowed = {1: ("quadrilateral", "triangle"), 2: ("hexahedron",)}[d]
    if cell not in allowed:
        raise InputError(f"cell must be one of {allowed} for d = {d} (the space-time cells must project onto "
                         f"the spatial cells of the parameter fields), got {cell!r}")
    ct = getattr(dolfinx.mesh.CellType, cell)
    lo, hi = [a for a, _ in box], [b for _, b in box]
    if d == 1:
        mesh = dolfinx.mesh.create_rectangle(comm, [[lo[0], t0], [hi[0], T]], [ns[0], int(nt)], ct)
        spatial = dolfinx.mesh.create_interval(comm, ns[0], [lo[0], hi[0]])
    else:
        mesh = dolfinx.mesh.create_box(comm, [[lo[0], lo[1], t0], [hi[0], hi[1], T]], [ns[0], ns[1], int(nt)], ct)
        spatial = dolfinx.mesh.create_rectangle(comm, [lo, hi], ns, dolfinx.mesh.CellType.quadrilateral)
    return SpaceTimeMesh(mesh, spatial, tuple(lo), tuple(hi), float(t0), float(T))


# ----------------------------------------------------------------------------- boundary conditions
Data = float | Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class DiscreteMomentum:
    """A discrete momentum at one end: the dual vector ``p`` on the end slice (owned entries of a full vector).

    Produced by :meth:`SpaceTimeProblem.momenta`; it belongs to that problem's function space layout.
    """

    end: str
    values: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class SpaceTimeCBVP:
    """``φ(x, 0) = phi0``, ``φ(x, T) = phiT`` (numbers or functions of the points ``X``, rows ``x…, t``)."""

    phi0: Data = 0.0
    phiT: Data = 0.0
    label = "CBVP"


@dataclass(frozen=True)
class SpaceTimeCIVP:
    """``φ(x, 0) = phi0`` and the momentum ``π(x, 0) = pi0`` (a density, or a :class:`DiscreteMomentum`)."""

    phi0: Data = 0.0
    pi0: Data | DiscreteMomentum = 0.0
    label = "CIVP"


@dataclass(frozen=True)
class SpaceTimeCFVP:
    """``φ(x, T) = phiT`` and the momentum ``π(x, T) = piT`` (a density, or a :class:`DiscreteMomentum`)."""

    phiT: Data = 0.0
    piT: Data | DiscreteMomentum = 0.0
    label = "CFVP"


@dataclass(frozen=True)
class SpaceTimePeriodic:
    """``φ(x, T) = φ(x, 0)`` and ``π(x, T) = π(x, 0)`` (both imposed by identifying the end dofs)."""

    label = "Periodic"


Condition = SpaceTimeCBVP | SpaceTimeCIVP | SpaceTimeCFVP | SpaceTimePeriodic
_TRIAL = {"CBVP": ("0", "T"), "CIVP": ("0",), "CFVP": ("T",), "Periodic": ()}
_TEST = {"CBVP": ("0", "T"), "CIVP": ("T",), "CFVP": ("0",), "Periodic": ()}


@dataclass
class _Spec:
    label: str
    symmetric: bool


# ----------------------------------------------------------------------------- quadrature
def _time_axis(mesh: dolfinx.mesh.Mesh) -> int:
    """The reference axis of the (tensor, axis-aligned) cells that points along time, the same on every cell."""
    tdim = mesh.topology.dim
    X = mesh.geometry.x[mesh.geometry.dofmaps[0][: mesh.topology.index_map(tdim).size_local]]
    axes = set()
    ok = True
    for k, vid in enumerate((1, 2, 4)[:tdim]):
        e = X[:, vid, :tdim] - X[:, 0, :tdim]
        big = np.argmax(np.abs(e), axis=1)
        ok &= bool(np.all(np.abs(e).sum(axis=1) - np.abs(e).max(axis=1) <= 1e-12 * np.abs(e).max(axis=1)))
        if np.any(big == tdim - 1):
            axes.add(k if np.all(big == tdim - 1) else -1)
    axes_all = mesh.comm.allgather((ok, sorted(axes)))
    found = {a for okr, ax in axes_all for a in ax}
    if not all(okr for okr, _ in axes_all) or len(found) != 1 or -1 in found:
        raise InputError("quadrature 'lobatto-time' needs axis-aligned tensor cells whose reference axes point the "
                         "same way on every cell (build the mesh with glep.bvp.spacetime_mesh); use "
                         "quadrature='lobatto' or 'gauss' on this mesh")
    return found.pop()


def quadrature_metadata(mesh: dolfinx.mesh.Mesh, degree: int, quadrature: str | None) -> tuple[str, dict]:
    """``(name, metadata)`` of the space–time quadrature (see the module docstring).

    ``"lobatto-time"``: Gauss (degree ``2p + 2``) in space × Gauss–Lobatto (``p + 1`` points) in time, a
    custom tensor rule; ``"lobatto"``: Gauss–Lobatto in every direction; ``"gauss"``: Gauss of degree
    ``2p + 2``.  Tensor rules need quadrilaterals/hexahedra.
    """
    cell = mesh.topology.cell_type.name
    tensor = cell in _TENSOR
    quadrature = quadrature or ("lobatto-time" if tensor else "gauss")
    if quadrature not in QUADRATURES:
        raise InputError(f"quadrature must be one of {QUADRATURES}, got {quadrature!r}")
    if quadrature == "gauss":
        return quadrature, {"quadrature_degree": 2 * degree + 2}
    if not tensor:
        raise InputError(f"quadrature {quadrature!r} is a tensor-product rule: it needs quadrilateral or hexahedral "
                         f"cells, got {cell}; use quadrature='gauss'")
    pl, wl = basix.make_quadrature(basix.CellType.interval, 2 * degree - 1, rule=basix.QuadratureType.gll)
    pg, wg = basix.make_quadrature(basix.CellType.interval, 2 * degree + 2)
    tdim = mesh.topology.dim
    axis = _time_axis(mesh) if quadrature == "lobatto-time" else -1
    rules = [(pl[:, 0], wl) if (quadrature == "lobatto" or k == axis) else (pg[:, 0], wg) for k in range(tdim)]
    grids = np.meshgrid(*[r[0] for r in rules], indexing="ij")
    wgrid = np.meshgrid(*[r[1] for r in rules], indexing="ij")
    points = np.stack([g.ravel() for g in grids], axis=1)
    weights = np.prod(np.stack([w.ravel() for w in wgrid], axis=1), axis=1)
    return quadrature, {"quadrature_rule": "custom", "quadrature_points": points, "quadrature_weights": weights,
                        "quadrature_degree": 2 * degree + 2}


def facet_metadata(degree: int, quadrature: str) -> dict:
    r"""The quadrature of the end slices ``Ω × {t}`` (terminal cost, momentum densities): the spatial part of the rule.

    ``"lobatto"``: Gauss–Lobatto with ``p + 1`` points per direction, so that ``∫_Ω c_T`` and ``∫_Ω π v`` are
    lumped like the interior (the time-stepped :class:`glep.FieldSystem` with nodal quadrature); otherwise
    Gauss of degree ``2p + 2`` (consistent), as in the interior of ``"lobatto-time"`` and ``"gauss"``.
    """
    if quadrature == "lobatto":
        return {"quadrature_rule": "GLL", "quadrature_degree": 2 * degree - 1}
    return {"quadrature_degree": 2 * degree + 2}


# ----------------------------------------------------------------------------- helpers
def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool)


class _FunctionData:
    """Data given as a function on the same space (copied by interpolation): the final-value problem's state."""

    def __init__(self, fn: fem.Function):
        self.fn = fn


def _interp(fn: fem.Function, value, comm: MPI.Comm, what: str) -> None:
    """Interpolate a number or a function of the points ``X`` (shape ``(3, npts)``) into ``fn``."""
    if isinstance(value, _FunctionData):
        fn.interpolate(value.fn)
        fn.x.scatter_forward()
        return
    if _is_number(value):
        fn.x.array[:] = float(value)
        return
    if not callable(value):
        raise InputError(f"{what} must be a number or a function of the points X (shape (3, n)), "
                         f"got {type(value).__name__}")
    agree(lambda: fn.interpolate(value), comm, f"interpolating {what}")
    fn.x.scatter_forward()


def _split_gradient(u, d: int, components: int):
    """``(∂_tφ, ∇_xφ)`` from the space–time gradient (time = the last coordinate)."""
    g = ufl.grad(u)
    if components == 1:
        return g[d], ufl.as_vector([g[i] for i in range(d)])
    return (ufl.as_vector([g[c, d] for c in range(components)]),
            ufl.as_matrix([[g[c, i] for i in range(d)] for c in range(components)]))


class _FieldMap:
    """The extension ``E`` of a spatial parameter field to the space–time mesh (constant in time)."""

    def __init__(self, name: str, par, stmesh: SpaceTimeMesh):
        fam, deg = par.element
        if fam == "DG" and (deg != 0 or stmesh.cell not in _TENSOR):
            raise InputError(f"parameter field {name!r}: on a space-time mesh only ('P', k) fields and ('DG', 0) on "
                             f"quadrilaterals/hexahedra are supported, got {par.element!r} on {stmesh.cell}s")
        self.name = name
        comm = stmesh.comm
        self.Vx = fem.functionspace(stmesh.spatial, (fam, deg))
        st_family = "DG" if fam == "DG" else "Lagrange"
        self.W = fem.functionspace(stmesh.mesh, (st_family, deg))
        self.theta_x = fem.Function(self.Vx, name=name)
        self.theta = fem.Function(self.W, name=name)
        d = stmesh.d
        ix = self.Vx.dofmap.index_map
        nx = ix.size_local
        xc = self.Vx.tabulate_dof_coordinates()[:nx, :d]
        gidx = np.arange(ix.local_range[0], ix.local_range[1])
        allc = np.concatenate(comm.allgather(xc))
        alli = np.concatenate(comm.allgather(gidx))
        from scipy.spatial import cKDTree

        iw = self.W.dofmap.index_map
        nw = iw.size_local
        wc = self.W.tabulate_dof_coordinates()[:nw, :d]
        dist, pos = cKDTree(allc).query(wc)
        scale = max(1.0, float(np.max(np.abs(allc))))
        bad = comm.allreduce(int(np.sum(dist > 1e-10 * scale)))
        if bad:
            raise InputError(f"parameter field {name!r}: {bad} space-time dofs of the element {par.element!r} have no "
                             "spatial dof at the same x (build the meshes with glep.bvp.spacetime_mesh)")
        cols = alli[pos].astype(PETSc.IntType)
        indptr = np.arange(nw + 1, dtype=PETSc.IntType)
        self.E = PETSc.Mat().createAIJ(((nw, iw.size_global), (nx, ix.size_global)), csr=(indptr, cols, np.ones(nw)),
                                       comm=comm)
        self.E.assemble()
        order = np.lexsort(allc.T[::-1])
        self.coordinates = allc[order]  # every spatial dof, sorted lexicographically (the same on any rank count)
        self._global_order = alli[order]
        self._start = ix.local_range[0]
        self._nx = nx
        self._mass: PETSc.Mat | None = None

    def set(self, value, comm) -> None:
        """Set ``θ(x)`` (number, function of the points, or values ordered like :attr:`coordinates`)."""
        if _is_number(value) or callable(value):
            _interp(self.theta_x, value, comm, f"parameter field {self.name!r}")
        else:
            arr = np.asarray(value, dtype=float).reshape(-1)
            if arr.shape != (len(self._global_order),):
                raise InputError(f"parameter field {self.name!r}: values must have shape "
                                 f"({len(self._global_order)},) (spatial dofs sorted by coordinates), got "
                                 f"{np.shape(value)}")
            full = np.empty_like(arr)
            full[self._global_order] = arr
            self.theta_x.x.array[: self._nx] = full[self._start:self._start + self._nx]
            self.theta_x.x.scatter_forward()
        self.E.mult(self.theta_x.x.petsc_vec, self.theta.x.petsc_vec)
        self.theta.x.scatter_forward()

    def values(self) -> np.ndarray:
        """``θ`` at every spatial dof, ordered like :attr:`coordinates` (on every rank)."""
        return self.gather(self.theta_x.x.petsc_vec)

    def gather(self, vx: PETSc.Vec) -> np.ndarray:
        """A spatial (owned-layout) vector on every rank, ordered like :attr:`coordinates`."""
        full = np.concatenate(self.Vx.mesh.comm.allgather(np.asarray(vx.array_r[: self._nx])))
        return full[self._global_order]

    def pull_back(self, g_st: PETSc.Vec) -> np.ndarray:
        """``Eᵀ g`` for a space–time dual vector ``g`` on the parameter space, gathered and sorted."""
        gx = self.E.createVecRight()
        self.E.multTranspose(g_st, gx)
        out = self.gather(gx)
        gx.destroy()
        return out

    def riesz(self, dual: np.ndarray) -> np.ndarray:
        """The ``L²(Ω)`` Riesz representative ``M_x⁻¹ g`` of a dual vector (both ordered like :attr:`coordinates`)."""
        comm = self.Vx.mesh.comm
        if self._mass is None:
            u, v = ufl.TrialFunction(self.Vx), ufl.TestFunction(self.Vx)
            self._mass = fpetsc.assemble_matrix(fem.form(u * v * ufl.dx))
            self._mass.assemble()
        b = self._mass.createVecLeft()
        full = np.empty_like(dual)
        full[self._global_order] = dual
        b.array[:] = full[self._start:self._start + self._nx]
        x = b.duplicate()
        ksp = PETSc.KSP().create(comm)
        try:
            ksp.setOperators(self._mass)
            ksp.setType("preonly")
            ksp.getPC().setType("lu")
            ksp.getPC().setFactorSolverType("mumps")
            ksp.solve(b, x)
            return self.gather(x)
        finally:
            for obj in (ksp, b, x):
                obj.destroy()


# ----------------------------------------------------------------------------- the problem
class SpaceTimeProblem:
    r"""The square system ``F_r(r) = Qᵀ(∂A_β/∂φ + b)(P r + g) = 0`` of one space–time boundary-value problem.

    Arguments:
        lagrangian: the :class:`~glep.fields.FieldLagrangian` (its UFL density is assembled).
        stmesh: a :class:`SpaceTimeMesh` (:func:`spacetime_mesh`).
        condition: :class:`SpaceTimeCBVP`, :class:`SpaceTimeCIVP`, :class:`SpaceTimeCFVP` or
            :class:`SpaceTimePeriodic`.
        params: parameter values (name -> number; a field also takes a function of the points or an array
            ordered like ``field_coordinates(name)``); missing names take the model's defaults.
        degree: Lagrange degree ``p`` of ``φ_h``.
        quadrature: ``"lobatto-time"`` (default on tensor cells), ``"lobatto"`` or ``"gauss"``
            (:func:`quadrature_metadata`).
        dirichlet: ``φ`` on the spatial boundary ``∂Ω × [t0, T]`` (number or function of the points).
        cost: the running cost density ``c(phi, x, t) -> UFL`` (e.g. :func:`tracking_cost`), or ``None``.
        terminal_cost: ``c_T(phi, x) -> UFL`` integrated over ``Ω × {T}``, or ``None``.
        beta: the nudging strength ``β``.
        jit_options: passed to FFCx.

    The user functions of points receive ``X`` of shape ``(3, npts)``: rows ``0…d−1`` space, row ``d`` time.
    """

    def __init__(self, lagrangian: FieldLagrangian, stmesh: SpaceTimeMesh, condition: Condition, *,
                 params: Mapping | None = None, degree: int = 1, quadrature: str | None = None,
                 dirichlet: Data = 0.0, cost: Callable | None = None, terminal_cost: Callable | None = None,
                 beta: float = 0.0, jit_options: dict | None = None):
        t_start = time.perf_counter()
        if not isinstance(lagrangian, FieldLagrangian):
            raise InputError(f"lagrangian must be a glep.FieldLagrangian, got {type(lagrangian).__name__}")
        if not isinstance(stmesh, SpaceTimeMesh):
            raise InputError(f"stmesh must be a SpaceTimeMesh (glep.bvp.spacetime_mesh), got {type(stmesh).__name__}")
        if not isinstance(condition, (SpaceTimeCBVP, SpaceTimeCIVP, SpaceTimeCFVP, SpaceTimePeriodic)):
            raise InputError("condition must be SpaceTimeCBVP, SpaceTimeCIVP, SpaceTimeCFVP or SpaceTimePeriodic, "
                             f"got {type(condition).__name__}")
        if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or degree < 1:
            raise InputError(f"degree must be an integer >= 1, got {degree!r}")
        unknown = set(params or {}) - set(lagrangian.parameters)
        if unknown:
            raise InputError(f"unknown parameter(s) {sorted(unknown)}; {lagrangian.name} has "
                             f"{sorted(lagrangian.parameters)}")
        for name, f in (("cost", cost), ("terminal_cost", terminal_cost)):
            if f is not None and not callable(f):
                raise InputError(f"{name} must be a function (phi, x, t) -> UFL (or None), got {type(f).__name__}")
        self.lagrangian, self.stmesh, self.condition = lagrangian, stmesh, condition
        self.mesh, self.comm, self.d = stmesh.mesh, stmesh.comm, stmesh.d
        self.degree, self.components = int(degree), lagrangian.components
        self.quadrature, self.metadata = quadrature_metadata(self.mesh, self.degree, quadrature)
        self.facet_metadata = facet_metadata(self.degree, self.quadrature)
        self.spec = _Spec(condition.label, condition.label in ("CBVP", "Periodic"))
        shape = () if self.components == 1 else (self.components,)
        self.V = fem.functionspace(self.mesh, ("Lagrange", self.degree, shape))
        self.u = fem.Function(self.V, name="phi")
        self.lam = fem.Function(self.V, name="lambda")
        self.beta_c = fem.Constant(self.mesh, PETSc.ScalarType(beta))
        self._jit = jit_options
        self._setup_parameters(params or {})
        self._setup_forms(cost, terminal_cost)
        self._setup_restriction(condition, dirichlet)
        self.options_prefix = f"glep_st_{next(_IDS)}_"
        self.reuse_factorization = True
        self._newton_cache = None
        self._gram: dict[str, PETSc.Mat] = {}
        self._A: PETSc.Mat | None = None
        self.timings = {"setup": time.perf_counter() - t_start}

    # -- set-up ------------------------------------------------------------------------
    def _setup_parameters(self, params: Mapping) -> None:
        lag = self.lagrangian
        self.scalars = {k: fem.Constant(self.mesh, PETSc.ScalarType(float(params.get(k, p.value))))
                        for k, p in lag.scalar_parameters.items()}
        for k in lag.scalar_parameters:
            if not _is_number(params.get(k, 0.0)):
                raise InputError(f"scalar parameter {k!r} must be a number, got {params[k]!r}")
        self.fields = {k: _FieldMap(k, p, self.stmesh) for k, p in lag.field_parameters.items()}
        for k, fm in self.fields.items():
            fm.set(params.get(k, lag.parameters[k].value), self.comm)
        self._vars = {k: ufl.variable(c) for k, c in self.scalars.items()}

    def _measure(self):
        return ufl.Measure("dx", self.mesh, metadata=self.metadata)

    def _setup_forms(self, cost, terminal_cost) -> None:
        d, u = self.d, self.u
        X = ufl.SpatialCoordinate(self.mesh)
        x, t = ufl.as_vector([X[i] for i in range(d)]), X[d]
        phi_t, grad_x = _split_gradient(u, d, self.components)
        theta = {**self._vars, **{k: fm.theta for k, fm in self.fields.items()}}
        self.density = self.lagrangian(u, phi_t, grad_x, theta, x, t)
        dxq = self._measure()
        tdim = self.mesh.topology.dim
        T = self.stmesh.T
        top = dolfinx.mesh.locate_entities_boundary(self.mesh, tdim - 1,
                                                    lambda P: np.abs(P[d] - T) <= 1e-12 * max(1.0, abs(T)))
        tags = dolfinx.mesh.meshtags(self.mesh, tdim - 1, np.sort(top).astype(np.int32),
                                     np.ones(len(top), dtype=np.int32))
        self.ds_T = ufl.Measure("ds", self.mesh, subdomain_data=tags, subdomain_id=1, metadata=self.facet_metadata)
        c = 0 if cost is None else cost(u, x, t)
        cT = 0 if terminal_cost is None else terminal_cost(u, x)
        loss = 0
        if cost is not None:
            loss = c * dxq
        if terminal_cost is not None:
            loss = loss + cT * self.ds_T
        self.has_cost = cost is not None or terminal_cost is not None
        self._cost, self._terminal_cost = cost, terminal_cost
        action = self.density * dxq
        if self.has_cost:
            action = action + self.beta_c * loss
        v, du = ufl.TestFunction(self.V), ufl.TrialFunction(self.V)
        residual = ufl.derivative(action, u, v)
        ufl_forms = {"action": action, "residual": residual, "jacobian": ufl.derivative(residual, u, du)}
        if self.has_cost:
            ufl_forms["cost"] = loss
            ufl_forms["cost_gradient"] = ufl.derivative(loss, u, v)
        Ldx = self.density * dxq
        for k, var in self._vars.items():
            ufl_forms[f"dtheta:{k}"] = ufl.diff(self.density, var) * dxq
            ufl_forms[f"vjp:{k}"] = ufl.derivative(ufl.diff(self.density, var) * dxq, u, self.lam)
        for k, fm in self.fields.items():
            w = ufl.TestFunction(fm.W)
            ufl_forms[f"dtheta:{k}"] = ufl.derivative(Ldx, fm.theta, w)
            ufl_forms[f"vjp:{k}"] = ufl.derivative(ufl.derivative(Ldx, u, self.lam), fm.theta, w)
        ufl_forms["mass"] = ufl.inner(du, v) * ufl.dx(self.mesh)
        pt, gx = _split_gradient(du, d, self.components)
        qt, hx = _split_gradient(v, d, self.components)
        ufl_forms["stiff_t"] = ufl.inner(pt, qt) * ufl.dx(self.mesh)
        ufl_forms["stiff_x"] = ufl.inner(gx, hx) * ufl.dx(self.mesh)
        self._ufl = {k: f for k, f in ufl_forms.items() if f is not None}
        self._forms: dict[str, fem.Form] = {}

    def form(self, key: str) -> fem.Form:
        """The compiled dolfinx form ``key`` (FFCx on first use)."""
        if key not in self._forms:
            self._forms[key] = fem.form(self._ufl[key], jit_options=self._jit)
        return self._forms[key]

    def _end_dofs(self):
        """Local (owned + ghost) dof blocks on the spatial boundary, at ``t0`` and at ``T``."""
        d, sm = self.d, self.stmesh
        V = self.V
        side = fem.locate_dofs_geometrical(V, lambda P: np.any(
            [np.isclose(P[i], sm.lower[i]) | np.isclose(P[i], sm.upper[i]) for i in range(d)], axis=0))
        ends = {"0": fem.locate_dofs_geometrical(V, lambda P: np.isclose(P[d], sm.t0)),
                "T": fem.locate_dofs_geometrical(V, lambda P: np.isclose(P[d], sm.T))}
        return side, ends

    def _setup_restriction(self, condition, dirichlet) -> None:
        comm, V = self.comm, self.V
        bs = V.dofmap.index_map_bs
        imap = V.dofmap.index_map
        self.bs = bs
        self.nloc, self.nglob = imap.size_local * bs, imap.size_global * bs
        side, ends = self._end_dofs()
        nb = imap.size_local
        self.side_blocks = side[side < nb]
        self.end_blocks = {e: b[b < nb] for e, b in ends.items()}

        def expand(b):
            return (b[:, None] * bs + np.arange(bs)).ravel()

        self.end_dofs = {e: expand(b) for e, b in self.end_blocks.items()}
        side_dofs = expand(self.side_blocks)
        label = condition.label
        # the pinned values g: Dirichlet data on ∂Ω × [t0, T], end data at the pinned ends
        g = fem.Function(V)
        gvec = np.zeros(self.nloc)
        for end, key in (("0", "phi0"), ("T", "phiT")):
            if end in _TRIAL[label]:
                _interp(g, getattr(condition, key), comm, f"{label} {key}")
                gvec[self.end_dofs[end]] = g.x.array[self.end_dofs[end]]
        _interp(g, dirichlet, comm, "dirichlet (the spatial boundary values)")
        gvec[side_dofs] = g.x.array[side_dofs]
        self.g = self.u.x.petsc_vec.duplicate()
        self.g.array[:] = 0.0
        self.g.array[: self.nloc] = gvec
        # the momentum terms b
        self.b_end = self.u.x.petsc_vec.duplicate()
        self.b_end.set(0.0)
        if label in ("CIVP", "CFVP"):
            end, sign, data = ("0", 1.0, condition.pi0) if label == "CIVP" else ("T", -1.0, condition.piT)
            self._set_momentum(end, sign, data)
        self.P, self.P_inj, nr = self._restriction(side_dofs, _TRIAL[label], label == "Periodic", None)
        if self.spec.symmetric:
            self.Q = self.P
        else:
            self.Q, _, _ = self._restriction(side_dofs, _TEST[label], False, nr)
        self.full = self.u.x.petsc_vec.duplicate()

    def _set_momentum(self, end: str, sign: float, data) -> None:
        """``b = sign · p`` on the rows of ``end`` (``p`` a discrete dual vector or ``∫ π v dx`` on the slice)."""
        dofs = self.end_dofs[end]
        if isinstance(data, DiscreteMomentum):
            if data.end != end or data.values.shape != (self.nloc,):
                raise InputError(f"the discrete momentum belongs to the end {data.end!r} of another layout "
                                 f"({data.values.shape} entries); this problem needs end {end!r} with {self.nloc}")
            self.b_end.array[dofs] = sign * data.values[dofs]
            return
        pi = fem.Function(self.V)
        _interp(pi, data, self.comm, "the momentum density")
        d, sm = self.d, self.stmesh
        tdim = self.mesh.topology.dim
        tval = sm.t0 if end == "0" else sm.T
        facets = dolfinx.mesh.locate_entities_boundary(self.mesh, tdim - 1, lambda P: np.isclose(P[d], tval))
        tags = dolfinx.mesh.meshtags(self.mesh, tdim - 1, np.sort(facets).astype(np.int32),
                                     np.ones(len(facets), dtype=np.int32))
        ds = ufl.Measure("ds", self.mesh, subdomain_data=tags, subdomain_id=1, metadata=self.facet_metadata)
        vec = fpetsc.assemble_vector(fem.form(ufl.inner(pi, ufl.TestFunction(self.V)) * ds))
        vec.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        self.b_end.array[dofs] = sign * vec.array_r[dofs]
        vec.destroy()

    def _restriction(self, side_dofs, pinned_ends, periodic: bool, ncol_local: int | None):
        """The 0/1 map ``P`` (full ← reduced), its injection, and the local reduced size."""
        from glep.bvp.reduced import restriction_maps

        kind = np.zeros(self.nloc, dtype=np.int8)
        for end in pinned_ends:
            kind[self.end_dofs[end]] = 1
        if periodic:
            kind[self.end_dofs["T"]] = 2
        kind[side_dofs] = 1
        partners = (lambda ridx: self._periodic_partners(ridx, kind)) if periodic else None
        return restriction_maps(self.comm, kind, self.nglob, ncol_local, partners)[:3]

    def _periodic_partners(self, ridx: np.ndarray, kind: np.ndarray) -> None:
        """Map each free ``t = T`` dof onto the reduced index of the ``t = t0`` dof at the same ``x`` (all ranks)."""
        from scipy.spatial import cKDTree

        d, bs, comm = self.d, self.bs, self.comm
        coords = self.V.tabulate_dof_coordinates()[: self.nloc // bs, :d]
        b0 = self.end_dofs["0"]
        key0 = np.column_stack([coords[b0 // bs], b0 % bs])
        all0 = np.concatenate(comm.allgather(key0)) if comm.size > 1 else key0
        idx0 = np.concatenate(comm.allgather(ridx[b0]))
        bT = np.flatnonzero(kind == 2)
        keyT = np.column_stack([coords[bT // bs], bT % bs])
        if len(bT):
            dist, pos = cKDTree(all0).query(keyT)
            if np.any(dist > 1e-9) or np.any(idx0[pos] < 0):
                raise InputError("periodic in time: the t = T slice has dofs without a free partner at t = t0")
            ridx[bT] = idx0[pos]

    # -- state ---------------------------------------------------------------------------
    @property
    def beta(self) -> float:
        return float(self.beta_c.value)

    def set_beta(self, beta: float) -> None:
        if not np.isfinite(beta):
            raise InputError(f"beta must be a finite number, got {beta!r}")
        if beta != 0.0 and not self.has_cost:
            raise InputError("nudging (beta != 0) needs a cost: pass cost= or terminal_cost=")
        self.beta_c.value = float(beta)

    def set_params(self, params: Mapping) -> None:
        """Change parameter values (same conventions as the constructor)."""
        unknown = set(params) - set(self.lagrangian.parameters)
        if unknown:
            raise InputError(f"unknown parameter(s) {sorted(unknown)}")
        for k, v in params.items():
            if k in self.scalars:
                if not _is_number(v):
                    raise InputError(f"scalar parameter {k!r} must be a number, got {v!r}")
                self.scalars[k].value = float(v)
            else:
                self.fields[k].set(v, self.comm)

    def params(self) -> dict[str, np.ndarray]:
        """Current parameter values (fields ordered like :meth:`field_coordinates`)."""
        out = {k: np.asarray(float(c.value)) for k, c in self.scalars.items()}
        out.update({k: fm.values() for k, fm in self.fields.items()})
        return out

    def field_coordinates(self, name: str) -> np.ndarray:
        """The spatial dof coordinates of parameter field ``name`` (lexicographically sorted)."""
        if name not in self.fields:
            raise InputError(f"{name!r} is not a parameter field; fields: {sorted(self.fields)}")
        return self.fields[name].coordinates

    # -- vectors -----------------------------------------------------------------------
    def create_vec(self) -> PETSc.Vec:
        return self.P.createVecRight()

    def lift(self, r: PETSc.Vec) -> None:
        """``φ_h = P r + g`` (ghosts updated)."""
        x = self.u.x.petsc_vec
        self.P.multAdd(r, self.g, x)
        x.ghostUpdate(addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)

    def restrict(self) -> PETSc.Vec:
        """The reduced vector of the current ``φ_h``."""
        r = self.create_vec()
        self.P_inj.multTranspose(self.u.x.petsc_vec, r)
        return r

    def _assemble_vector(self, key: str, b: PETSc.Vec) -> None:
        with b.localForm() as loc:
            loc.set(0.0)
        fpetsc.assemble_vector(b, self.form(key))
        b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)

    def _scalar(self, key: str) -> float:
        if key not in self._ufl:
            return 0.0
        return self.comm.allreduce(fem.assemble_scalar(self.form(key)), op=MPI.SUM)

    # -- what the solvers call -------------------------------------------------------------
    def residual(self, r: PETSc.Vec, F: PETSc.Vec) -> None:
        """``F_r(r) = Qᵀ(∂A_β/∂φ + b)``."""
        self.lift(r)
        self._assemble_vector("residual", self.full)
        self.full.axpy(1.0, self.b_end)
        self.Q.multTranspose(self.full, F)

    def full_jacobian(self) -> PETSc.Mat:
        if self._A is None:
            self._A = fpetsc.create_matrix(self.form("jacobian"))
        self._A.zeroEntries()
        fpetsc.assemble_matrix(self._A, self.form("jacobian"))
        self._A.assemble()
        return self._A

    def jacobian(self, r: PETSc.Vec | None = None, J: PETSc.Mat | None = None) -> PETSc.Mat:
        """``J_r = Qᵀ A P`` at ``r`` (or the current ``φ_h``); reuses ``J`` if given."""
        if r is not None:
            self.lift(r)
        A = self.full_jacobian()
        if self.spec.symmetric:
            if J is None:
                return A.ptap(self.P)
            A.ptap(self.P, result=J)
            return J
        AP = A.matMult(self.P)
        try:
            if J is None:
                return self.Q.transposeMatMult(AP)
            self.Q.transposeMatMult(AP, result=J)
            return J
        finally:
            AP.destroy()

    def release_solver(self) -> None:
        """Free the Jacobian and factorisation kept from the last Newton solve."""
        cache, self._newton_cache = self._newton_cache, None
        if cache is not None:
            cache["snes"].destroy()
            cache["J"].destroy()

    def gram(self, metric: str) -> PETSc.Mat:
        """The reduced ``L²`` (``"L2"``), time (``"t"``) or space (``"x"``) Gram matrix ``Pᵀ M P``, kept."""
        key = {"L2": "mass", "t": "stiff_t", "x": "stiff_x"}[metric]
        if metric not in self._gram:
            full = fpetsc.assemble_matrix(self.form(key))
            full.assemble()
            self._gram[metric] = full.ptap(self.P)
            full.destroy()
        return self._gram[metric]

    # -- functionals -------------------------------------------------------------------------
    def action(self) -> float:
        """``A_β[φ_h]`` (global)."""
        return self._scalar("action")

    def loss(self) -> float:
        """``C_h = ∫∫ c(φ_h) dx dt + ∫_Ω c_T(φ_h(T)) dx`` with the action's quadrature (global)."""
        return self._scalar("cost")

    def momenta(self) -> dict[str, DiscreteMomentum]:
        r"""Discrete momenta ``p(0) = −∂A_β/∂φ_0`` and ``p(T) = ∂A_β/∂φ_T`` (dual vectors on the end slices)."""
        self._assemble_vector("residual", self.full)
        arr = self.full.array_r[: self.nloc]
        out = {}
        for end, sign in (("0", -1.0), ("T", 1.0)):
            vals = np.zeros(self.nloc)
            vals[self.end_dofs[end]] = sign * arr[self.end_dofs[end]]
            out[end] = DiscreteMomentum(end, vals)
        return out

    def theta_gradient(self) -> dict[str, np.ndarray]:
        r"""``∫∫ ∂_θℒ dx dt`` along ``φ_h`` (the contrast integrand ``I``): a number per scalar parameter, the dual
        vector ``Eᵀ(∫∫ ∂ℒ/∂θ w_i)`` per field (ordered like :meth:`field_coordinates`)."""
        return self._theta_forms("dtheta")

    def theta_vjp(self, lam: PETSc.Vec) -> dict[str, np.ndarray]:
        """``λᵀ ∂F/∂θ`` for a full vector ``λ`` (same layout as :meth:`theta_gradient`)."""
        self.lam.x.petsc_vec.array[:] = lam.array_r
        self.lam.x.scatter_forward()
        return self._theta_forms("vjp")

    def _theta_forms(self, kind: str) -> dict[str, np.ndarray]:
        out = {k: np.asarray(self._scalar(f"{kind}:{k}")) for k in self.scalars}
        for k, fm in self.fields.items():
            holder = fem.Function(fm.W)  # owns the array behind the PETSc vector: keep it alive while used
            b = holder.x.petsc_vec
            self._assemble_vector(f"{kind}:{k}", b)
            out[k] = fm.pull_back(b)
        return out

    # -- output ------------------------------------------------------------------------------
    def gather(self) -> tuple[np.ndarray, np.ndarray]:
        """``(points, values)`` of every dof on every rank, sorted by ``(t, x…)`` (independent of the partition)."""
        nb = self.V.dofmap.index_map.size_local
        pts = self.V.tabulate_dof_coordinates()[:nb, : self.d + 1]
        vals = self.u.x.array[: nb * self.bs].reshape(nb, self.bs)
        P = np.concatenate(self.comm.allgather(pts))
        Vv = np.concatenate(self.comm.allgather(vals))
        order = np.lexsort(np.round(P, 12).T)
        return P[order], Vv[order]

    def l2_error(self, exact: Callable[[np.ndarray], np.ndarray], *, raise_degree: int = 3) -> float:
        """``‖φ_h − φ‖_{L²(Ω×[t0,T])}``, ``φ`` interpolated at degree ``p + raise_degree`` (every rank)."""
        shape = () if self.components == 1 else (self.components,)
        W = fem.functionspace(self.mesh, ("Lagrange", self.degree + raise_degree, shape))
        ex = fem.Function(W)
        _interp(ex, exact, self.comm, "the exact solution")
        e = self.u - ex
        val = fem.assemble_scalar(fem.form(ufl.inner(e, e) * ufl.dx(self.mesh, metadata={
            "quadrature_degree": 2 * (self.degree + raise_degree)})))
        return float(np.sqrt(self.comm.allreduce(val, op=MPI.SUM)))

    def final_value_problem(self, **overrides) -> SpaceTimeProblem:
        """The PFVP through this (solved, free) problem's final state: ``φ(T)`` and the discrete ``p(T)`` held.

        A new :class:`SpaceTimeProblem` on the same mesh, density, parameters, cost and quadrature with
        :class:`SpaceTimeCFVP` data ``(φ_h(T), p(T))``; ``overrides`` (e.g. ``beta``) go to its constructor.
        """
        pT = self.momenta()["T"]
        state = fem.Function(self.V)
        state.x.array[:] = self.u.x.array
        params = {k: float(v) if k in self.scalars else v for k, v in self.params().items()}  # scalars: numbers
        kw = dict(params=params, degree=self.degree, quadrature=self.quadrature,
                  dirichlet=self._dirichlet_function(), cost=self._cost, terminal_cost=self._terminal_cost,
                  beta=0.0, jit_options=self._jit)
        kw.update(overrides)
        return SpaceTimeProblem(self.lagrangian, self.stmesh, SpaceTimeCFVP(_FunctionData(state), pT), **kw)

    def _dirichlet_function(self):
        f = fem.Function(self.V)
        f.x.array[: self.nloc] = self.g.array_r[: self.nloc]
        f.x.scatter_forward()
        return _FunctionData(f)

    def destroy(self) -> None:
        """Free the PETSc objects this problem holds."""
        self.release_solver()
        for M in [self.P, self.P_inj, *([self.Q] if self.Q is not self.P else []), *self._gram.values(),
                  *([self._A] if self._A is not None else [])]:
            M.destroy()
        self._gram.clear()


def tracking_cost(target: Callable[[np.ndarray], np.ndarray] | float, region=None, *,
                  weight: float = 1.0) -> Callable:
    r"""The running cost ``c = ½ w χ_R(x, t) (φ − φ*(x, t))²`` over a read-out region ``R`` of space–time.

    Arguments:
        target: ``φ*`` (a number or a function of the points ``X``, interpolated on the problem's space).
        region: ``None`` (everywhere) or ``d + 1`` pairs ``(lo, hi)`` bounding ``R`` (the last pair in time).
        weight: ``w``.

    Returns:
        ``cost(phi, x, t) -> UFL`` for :class:`SpaceTimeProblem`.
    """
    if region is not None:
        try:
            region = [(float(a), float(b)) for a, b in region]
        except (TypeError, ValueError) as exc:
            raise InputError(f"region must be d + 1 pairs (lo, hi), got {region!r}") from exc

    def cost(phi, x, t):
        V = phi.ufl_function_space()
        if _is_number(target):
            tgt = float(target)
        else:
            tgt = fem.Function(V)
            _interp(tgt, target, V.mesh.comm, "the tracking target")
        chi = 1.0
        if region is not None:
            coords = [x[i] for i in range(len(region) - 1)] + [t]
            if len(region) != len(coords):
                raise InputError(f"region must have {len(coords)} pairs (space then time), got {len(region)}")
            for c, (a, b) in zip(coords, region):
                chi = chi * ufl.conditional(ufl.And(ufl.ge(c, a), ufl.le(c, b)), 1.0, 0.0)
        return 0.5 * weight * chi * ufl.inner(phi - tgt, phi - tgt)

    return cost


# ----------------------------------------------------------------------------- solving
@dataclass(frozen=True)
class SpaceTimeSolution:
    """A solved space–time problem.

    Attributes:
        problem: the :class:`SpaceTimeProblem` (``problem.u`` holds ``φ_h``).
        r: the reduced solution vector.
        report: how Newton ended (reason, iterations, residual history, wall time).
        linear_iterations: Krylov iterations over the whole solve (``0``/``1`` per step for LU).
        hessian: the :class:`~glep.bvp.solvers.HessianReport` if the Morse index was asked for.
        smallest_eigenvalue: the estimate of ``|λ_min|`` of ``J_r v = λ M v`` and its tolerance, if checked.
    """

    problem: SpaceTimeProblem = field(repr=False)
    r: PETSc.Vec = field(repr=False)
    report: SolverReport
    linear_iterations: int
    hessian: HessianReport | None = None
    smallest_eigenvalue: tuple[float, float] | None = None

    @property
    def function(self) -> fem.Function:
        return self.problem.u


def set_guess(problem: SpaceTimeProblem, guess) -> PETSc.Vec:
    """A reduced start vector: ``None`` (zero free values), a number or function of the points, or a solution."""
    if isinstance(guess, SpaceTimeSolution):
        if guess.problem is problem:
            return guess.r.copy()
        problem.u.interpolate(guess.problem.u)
    elif guess is None:
        problem.u.x.array[:] = 0.0
    else:
        _interp(problem.u, guess, problem.comm, "the initial guess")
    problem.u.x.scatter_forward()
    return problem.restrict()


def solve(problem: SpaceTimeProblem, guess=None, *, solver=None, morse: bool = False,
          check_singular: bool = True, singular_tol: float | None = None) -> SpaceTimeSolution:
    r"""Solve ``F_r = 0`` by Newton's method (PETSc SNES; MUMPS LU unless told otherwise).

    Arguments:
        problem: the :class:`SpaceTimeProblem`.
        guess: see :func:`set_guess`.
        solver: a :class:`glep.bvp.Newton` (direct by default; tolerances and PETSc ``options`` set under the
            problem's prefix, e.g. ``{"ksp_type": "gmres", "pc_type": "asm"}``) or a
            :class:`glep.bvp.spacetime_krylov.KrylovNewton` (MINRES preconditioned by the elliptic companion,
            for 2+1-D problems too large to factorise).
        morse: compute the Morse index (:func:`hessian_report`; symmetric conditions only).
        check_singular: for a symmetric condition (CBVP, periodic) with a direct solver, estimate
            ``|λ_min|`` of ``J_r v = λ M v`` by inverse iteration with the kept factorisation and raise
            :class:`glep.SingularHessianError` if it is zero to working precision (:meth:`singularity_check`).
        singular_tol: override the tolerance of both checks.

    Raises:
        glep.SolverError: Newton (or its Krylov solver) did not converge.
        glep.SingularHessianError: a direct solve met a singular Jacobian, or it is numerically singular (resonance).
    """
    from glep.bvp.spacetime_krylov import KrylovNewton

    solver = Newton() if solver is None else solver
    if not isinstance(solver, (Newton, KrylovNewton)):
        raise InputError(f"solver must be a glep.bvp.Newton or a KrylovNewton, got {type(solver).__name__}")
    direct = isinstance(solver, Newton) and str(dict(solver.options or {}).get("ksp_type", "preonly")) == "preonly"
    r0 = set_guess(problem, guess)
    try:
        res = solver.solve(problem, r0)
    except SolverError as exc:
        if direct and "LINEAR" in str(exc.reason):
            raise SingularHessianError(
                f"space-time {problem.spec.label}: the direct linear solve failed, the Jacobian is singular "
                f"(resonance: for the wave CBVP on [0, L] x [0, T], kcT/L is an integer for a resolved mode k; "
                f"{exc})", min_eigenvalue=0.0, max_eigenvalue=float("nan"), tolerance=0.0, index=-1) from exc
        raise
    rep = SolverReport(str(res.reason), int(res.iterations), tuple(res.history), res.wall_time)
    est = None
    if check_singular and direct and problem.spec.symmetric and problem._newton_cache is not None:
        est = problem.singularity_check(singular_tol=singular_tol)
    hr = hessian_report(problem, res.r, singular_tol=singular_tol) if morse else None
    problem.lift(res.r)
    return SpaceTimeSolution(problem, res.r, rep, int(res.linear_iterations), hr, est)


def _tolerance(problem: SpaceTimeProblem, v: PETSc.Vec, lam_max: float, *, discretisation: bool = True) -> float:
    r"""The threshold below which an eigenvalue of ``J_r v = λ M v`` with eigenvector ``v`` cannot be told from 0.

    ``λ ≈ κ_t − κ_x`` (wave-like densities) with ``κ_t = vᵀK_t v/vᵀMv``, ``κ_x = vᵀK_x v/vᵀMv`` the
    squared temporal and spatial frequencies of ``v``.  For a *resolved* mode (``κ_t h_t² ≤ 0.1`` and
    ``κ_x h_x² ≤ 0.1``, about 20 points per wavelength) each carries the relative error
    ``c_p (κh²)^p``, ``c_p = (p!/(2p)!)²/(2p+1)`` (the ``P_p`` dispersion error, as in
    :func:`glep.bvp.solvers.default_singular_tol`), and the threshold is four times their sum: the
    continuous eigenvalue may then be zero (resonance).  An unresolved mode approximates no continuous
    one; its eigenvalue is trusted down to the round-off floor ``10² ε |λ_max|``, which is always added
    (and is all that ``discretisation=False`` uses).
    """
    p = problem.degree
    M, Kt, Kx = problem.gram("L2"), problem.gram("t"), problem.gram("x")
    w = M.createVecLeft()
    try:
        M.mult(v, w)
        m = v.dot(w)
        Kt.mult(v, w)
        kt = max(v.dot(w) / m, 0.0)
        Kx.mult(v, w)
        kx = max(v.dot(w) / m, 0.0)
    finally:
        w.destroy()
    hx, ht = _cell_sizes(problem)
    c_p = (factorial(p) / factorial(2 * p)) ** 2 / (2 * p + 1)
    resolved = discretisation and kt * ht * ht <= 0.1 and kx * hx * hx <= 0.1
    disc = 4.0 * c_p * ((kt * ht * ht) ** p * kt + (kx * hx * hx) ** p * kx) if resolved else 0.0
    return disc + 1e2 * np.finfo(float).eps * abs(lam_max)


def _cell_sizes(problem: SpaceTimeProblem) -> tuple[float, float]:
    """Largest cell extent in space and in time (every rank)."""
    mesh, d = problem.mesh, problem.d
    nloc = mesh.topology.index_map(mesh.topology.dim).size_local
    X = mesh.geometry.x[mesh.geometry.dofmaps[0][:nloc]]
    ext = X.max(axis=1) - X.min(axis=1) if nloc else np.zeros((1, 3))
    hx = float(ext[:, :d].max()) if nloc else 0.0
    ht = float(ext[:, d].max()) if nloc else 0.0
    return mesh.comm.allreduce(hx, op=MPI.MAX), mesh.comm.allreduce(ht, op=MPI.MAX)


def singularity_check(self: SpaceTimeProblem, *, iterations: int = 3,
                      singular_tol: float | None = None) -> tuple[float, float]:
    r"""``(μ, tol)``: an upper bound ``μ ≥ |λ_min|`` of ``J_r v = λ M v`` and the tolerance it must exceed.

    Inverse iteration ``v ← J_r⁻¹ M v`` with the factorisation kept from the last Newton step;
    ``μ = ‖v_k‖_M / ‖v_{k+1}‖_M`` bounds the smallest-magnitude eigenvalue from above (no cancellation
    between eigenvalues of both signs, unlike a Rayleigh quotient).  A few iterations suffice to expose a
    Jacobian singular to working precision: each multiplies a null component by ``1/(ε λ_max)``.  Raises
    :class:`glep.SingularHessianError` if ``μ ≤ tol``: the round-off floor ``10² ε λ_max`` of
    :func:`_tolerance` (a Jacobian singular to working precision, e.g. an exactly resonant lumped
    discretisation), or ``singular_tol``.  The discretisation-aware test of resolved modes is
    :func:`hessian_report`'s (``morse=True``): an eigenvalue below the discretisation error is typical
    of under-resolved modes on every mesh, so the solve does not fail on it.
    """
    ksp = self._newton_cache["snes"].getKSP()
    M = self.gram("L2")
    v, w, Mv = self.create_vec(), self.create_vec(), self.create_vec()
    try:
        lo, hi = v.getOwnershipRange()
        v.array[:] = 1.0 + 0.5 * np.sin(np.arange(lo, hi))
        mu = np.inf
        for _ in range(iterations):
            M.mult(v, Mv)
            nv = np.sqrt(max(v.dot(Mv), 0.0))
            v.scale(1.0 / nv)
            Mv.scale(1.0 / nv)
            ksp.solve(Mv, w)
            M.mult(w, Mv)
            nw = np.sqrt(max(w.dot(Mv), 0.0))
            mu = 1.0 / nw if nw > 0 and np.isfinite(nw) else 0.0
            w.copy(v)
        M.mult(v, Mv)
        v.scale(1.0 / np.sqrt(max(v.dot(Mv), 1e-300)))
        one = self.create_vec()
        one.set(1.0)
        M.mult(one, Mv)  # lumped masses: λ_max <= ‖J_r‖_∞ / min_i (M 1)_i (Gershgorin on M⁻¹J_r, roughly)
        lam_max = self._newton_cache["J"].norm(PETSc.NormType.INFINITY) / max(Mv.min()[1], 1e-300)
        one.destroy()
        tol = float(_tolerance(self, v, lam_max, discretisation=False) if singular_tol is None else singular_tol)
    finally:
        for obj in (v, w, Mv):
            obj.destroy()
    if not mu > tol:
        raise SingularHessianError(
            f"space-time {self.spec.label}: the Jacobian is numerically singular: |λ_min| <= {mu:.3e} of "
            f"J_r v = λ M v is below the tolerance {tol:.3e}, so the solution is "
            "not determined (resonance: for the wave CBVP on [0, L] x [0, T], kcT/L is an integer for a resolved "
            "mode k; choose T away from resonance, refine, or pass check_singular=False)",
            min_eigenvalue=float(mu), max_eigenvalue=float("nan"), tolerance=tol, index=-1)
    return float(mu), tol


SpaceTimeProblem.singularity_check = singularity_check  # a method: defined here, after its helpers


def hessian_report(problem: SpaceTimeProblem, r: PETSc.Vec | None = None, *,
                   singular_tol: float | None = None) -> HessianReport:
    r"""Morse index (negative inertia of ``J_r``, LDLᵀ) with ``λ_min``, ``λ_max`` of ``J_r v = λ M v`` (SLEPc).

    The index is trusted only when ``|λ_min|`` exceeds the discretisation error of the eigenvalue
    (:func:`_tolerance`); for the wave on ``[0, L] × [0, T]`` it approaches ``Σ_k floor(kcT/L)``
    over the resolved modes.  Symmetric conditions (CBVP, periodic) only; use small meshes (one LDLᵀ
    — MUMPS with pivoting, which an indefinite space–time Hessian needs — and two shift-and-invert
    eigensolves): :func:`glep.bvp.solvers.pencil_report` with the space–time tolerance.

    Raises:
        glep.SingularHessianError: a zero pivot, or ``|λ_min| ≤`` the tolerance.
    """
    from glep.bvp.solvers import pencil_report

    if not problem.spec.symmetric:
        raise InputError(f"space-time {problem.spec.label}: the Morse index needs a symmetric condition "
                         "(CBVP or periodic)")

    def tolerance(v, J, M, lam_max):
        return _tolerance(problem, v, lam_max)

    return pencil_report(problem, r, singular_tol, tolerance=tolerance, label=f"space-time {problem.spec.label}: ",
                         why="of resonance (for the wave, kcT/L near an integer)", pivoting=True)


__all__ = ["DiscreteMomentum", "SpaceTimeCBVP", "SpaceTimeCFVP", "SpaceTimeCIVP", "SpaceTimeMesh",
           "SpaceTimePeriodic", "SpaceTimeProblem", "SpaceTimeSolution", "facet_metadata", "hessian_report",
           "quadrature_metadata", "set_guess", "solve", "spacetime_mesh", "tracking_cost"]
