r"""A field system on a distributed spatial mesh: the semi-discrete Lagrangian of a :class:`FieldLagrangian`.

Finite elements in space, ``φ_h(x, t) = Σ_i q_i(t) N_i(x)`` (Lagrange ``P_k`` on
a dolfinx mesh: an interval, a rectangle, a mesh read from a file), turn the
field density into an ODE Lagrangian on the nodal values ``q``:

    L_h(q, q̇; θ, t) = ½ q̇ᵀ M q̇ + U(q; θ, t),
    M = diag(m_i),  m_i = ∫_Ω ρ N_i dx           (lumped mass: row sums of the ρ-weighted mass),
    U(q; θ, t) = ∫_Ω [ℒ(φ_h, 0, ∇φ_h; θ, x, t) + f(x, t) φ_h] dx   (potential part, plus the sources f).

This holds for a *separable* density ``ℒ = ½ρ(x)φ_t² − W(φ, ∇φ; θ, x, t)``
with ``ρ`` independent of ``φ`` and ``θ`` (:attr:`FieldLagrangian.separable`,
or detected symbolically: ``∂²ℒ/∂φ_t²`` free of the field and the parameters,
``∂ℒ/∂φ_t`` linear in ``φ_t``).  The loss is

    c(q, t) = ½ ∫_R (φ_h − y(x, t))² dx     (tracking, over time),
    c_T(q) = ½ ∫_{R_T} (φ_h − y_T(x))² dx    (terminal),

with read-out regions ``R`` (cells whose vertices all satisfy a marker).
Every derivative is one UFL form, compiled once with FFCx:

=========================  ==================================================================
``force(q, t, β)``         ``F = ∂_q U + β ∂_q c`` (assembled, ghosts updated; zero at Dirichlet dofs)
``hessian_action(q, t, λ)`` ``∂²_q U · λ``
``theta_gradient(q, t)``   ``∂_θ U``: a dual vector on ``Θ`` per parameter field, a number per scalar
``theta_vjp(q, t, λ)``     ``∂_θ (∂_q U · λ)`` (same layout)
=========================  ==================================================================

``∂_θ`` of a parameter *field* is ``ufl.derivative`` with respect to its
finite-element function (the result is a dual vector: one entry per dof of
the parameter space); of a *scalar* it is ``ufl.diff`` with respect to a
``ufl.variable`` wrapper of its constant, assembled and summed over ranks.
The Riesz representative of a dual vector ``g`` is ``M_Θ⁻¹ g`` with the
consistent mass matrix of ``Θ`` (PETSc CG + Jacobi), :meth:`FieldSystem.riesz`.

Quadrature: ``"nodal"`` (default) integrates ``U`` with the nodes of the
element (vertex quadrature for ``P1``, Gauss–Lobatto for ``P2`` on intervals and
quadrilaterals): consistent with the lumped mass, as in a spectral-element
method; ``"exact"`` lets UFL estimate the degree.  With ``P1`` and the vertex rule, summands
without derivatives are evaluated node by node (NumPy closures compiled from UFL), including those
with a parameter field in another space (``DG0``, ``P2``) entering linearly: with
``B_ji = ∫ N^Θ_j N_i dx`` (vertex rule, assembled once), ``∫ θ W(φ_h) N_i = W(q_i)(Bᵀθ)_i`` and
``∂_{θ_j} ∫ θ W(φ_h) = Σ_i B_ji W(q_i)``; :meth:`FieldSystem.force_and_theta` returns the force and
the θ-derivatives of one state together for the nudged passes.  Lumping by row sums needs
positive entries: ``P2`` on triangles (zero vertex row sums) is refused.

Distributed arrays: every state, momentum or direction is the rank's local
array of the state space (owned entries followed by ghosts, dolfinx order);
operations on it are point-wise, assembled vectors are ghost-updated
(``scatter_reverse`` then ``scatter_forward``), so ghosts stay consistent.
Reductions (:meth:`FieldSystem.dot`, scalar gradients, cost values) are
``Allreduce`` sums over owned entries.  Dirichlet dofs are not unknowns: their
values are imposed, and every gradient-like vector is zero there.

:class:`FieldSystem` takes one real field component with a separable density;
any other density (several components, first order in time such as
:func:`glep.field_models.nls`) is stepped by :class:`glep.field_midpoint.MidpointFieldSystem`,
the implicit-midpoint discrete Lagrangian solved by PETSc SNES (also importable from here).
:class:`FieldArrays` holds what both share: parameters, reductions, Riesz maps.
"""

from __future__ import annotations

# dolfinx-solver-real configures PETSc before dolfinx or petsc4py load.
import dolfinx_solver  # noqa: F401  isort: skip

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import dolfinx
import numpy as np
import ufl
from dolfinx import fem, la
from mpi4py import MPI
from petsc4py import PETSc
from ufl.algorithms import expand_derivatives
from ufl.algorithms.analysis import extract_coefficients, extract_constants
from ufl.constantvalue import Zero
from ufl.corealg.map_dag import map_expr_dag
from ufl.corealg.multifunction import MultiFunction
from ufl.corealg.traversal import unique_pre_traversal

from glep.errors import InputError, SolverError
from glep.fields import FieldLagrangian

#: ``target(x, t) -> UFL`` (``x`` the spatial coordinate, ``t`` the time constant) or a number
Target = float | Callable[[object, object], object]
#: ``marker(x) -> bool array`` (dolfinx convention, ``x`` of shape ``(3, npoints)``)
Marker = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class FieldCost:
    r"""A quadratic read-out ``½ w ∫_R (φ − y(x, t))² dx``.

    Arguments:
        target: ``y(x, t)``: a number or a function ``(x, t) -> UFL expression``.
        region: a marker of the read-out region ``R`` (a cell belongs to ``R``
            when all its vertices satisfy it); ``None`` is the whole domain.
        weight: ``w > 0``.
    """

    target: Target = 0.0
    region: Marker | None = None
    weight: float = 1.0

    def __post_init__(self):
        if not (isinstance(self.target, (int, float)) or callable(self.target)):
            raise InputError(f"FieldCost target must be a number or a function (x, t) -> UFL, "
                             f"got {type(self.target).__name__}")
        if self.region is not None and not callable(self.region):
            raise InputError(f"FieldCost region must be a marker function x -> bool array or None, "
                             f"got {type(self.region).__name__}")
        if not (isinstance(self.weight, (int, float)) and np.isfinite(self.weight) and self.weight > 0):
            raise InputError(f"FieldCost weight must be a positive number, got {self.weight!r}")


@dataclass
class FieldGradient:
    r"""The gradient with respect to one parameter field, labelled.

    Attributes:
        dual: ``∂C/∂θ_i``, the derivative as a dual vector (owned dofs of the parameter space).
        riesz: its Riesz representative ``M_Θ⁻¹ dual`` (owned dofs): the ``L²`` gradient function.
        label: what the two vectors are.
    """

    dual: np.ndarray
    riesz: np.ndarray
    label: str = "dual: dC/dθ_i per dof (a covector); riesz: M_Θ⁻¹·dual, the L² gradient function"


def read_mesh(path: str | Path, comm: MPI.Comm = MPI.COMM_WORLD, name: str = "mesh") -> dolfinx.mesh.Mesh:
    """Read a mesh from an XDMF file (``name`` the grid name) or a Gmsh ``.msh`` file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"mesh file {str(path)!r} does not exist")
    if path.suffix == ".xdmf":
        with dolfinx.io.XDMFFile(comm, str(path), "r") as f:
            return f.read_mesh(name=name)
    if path.suffix == ".msh":
        from dolfinx.io import gmsh as gmshio  # noqa: PLC0415

        return gmshio.read_from_msh(str(path), comm, 0)[0]
    raise InputError(f"mesh file must be .xdmf or .msh, got {str(path)!r}")


def _as_mesh(mesh, comm) -> dolfinx.mesh.Mesh:
    if isinstance(mesh, dolfinx.mesh.Mesh):
        return mesh
    if isinstance(mesh, (str, Path)):
        return read_mesh(mesh, comm)
    raise InputError(f"mesh must be a dolfinx Mesh or a mesh file path, got {type(mesh).__name__}")


def _is_zero(expr) -> bool:
    return isinstance(expand_derivatives(expr), Zero)


def _separable_reason(lag: FieldLagrangian, gdim: int) -> str | None:
    """Why ``ℒ`` is not ``½ρ(x)φ_t² − W(φ, ∇φ; θ, x, t)`` with θ-free ρ, or None (symbolic check at a point).

    ``∂³ℒ/∂φ_t³``, the derivatives of ``∂ℒ/∂φ_t`` with respect to ``φ``, ``∇φ`` and every parameter
    must vanish identically (UFL ``Zero``), and ``∂ℒ/∂φ_t`` must vanish at ``φ_t = 0``.
    """
    ph = ufl.variable(ufl.as_ufl(0.3))
    pt = ufl.variable(ufl.as_ufl(0.0))
    gp = ufl.variable(ufl.as_vector([0.2] * gdim))
    th = {k: ufl.variable(ufl.as_ufl(0.5)) for k in lag.parameters}
    L = lag(ph, pt, gp, th, ufl.as_vector([0.1] * gdim), ufl.as_ufl(0.0))
    p = ufl.diff(L, pt)
    if not _is_zero(ufl.diff(ufl.diff(p, pt), pt)):
        return "∂ℒ/∂φ_t is not linear in φ_t"
    for name, var in (("φ", ph), ("∇φ", gp), *((f"θ[{k!r}]", v) for k, v in th.items())):
        if not _is_zero(ufl.diff(p, var)):
            return f"∂ℒ/∂φ_t depends on {name} (a field- or parameter-dependent kinetic term, or first order in time)"
    value = expand_derivatives(p)
    if not isinstance(value, Zero) and abs(float(value)) > 0.0:
        return "ℒ has a term linear in φ_t"
    return None


class _Coordinates:
    """The node coordinates inside a compiled point-wise expression (only ``x[i]`` is supported)."""

    def __init__(self, x: np.ndarray):
        self.x = x


class _Const:
    """A constant leaf of a compiled expression (folded at compile time)."""

    def __init__(self, value: float):
        self.value = value

    def __call__(self) -> float:
        return self.value


class _Scaled:
    """``c · f()``: numeric factors of products are collected into ``c`` at compile time."""

    def __init__(self, c: float, f):
        self.c, self.f = c, f

    def __call__(self):
        return self.f() if self.c == 1.0 else self.c * self.f()


def _split_scale(a) -> tuple[float, object]:
    return (a.c, a.f) if isinstance(a, _Scaled) else (1.0, a)


class _NodalEvaluator(MultiFunction):
    """Compile a point-wise UFL scalar expression into a NumPy closure over nodal arrays (P1 dofs = vertices).

    Each handler returns a function of no argument; the closure of the root evaluates the expression
    at every local node.  ``values`` maps each Coefficient to a function returning its current local
    nodal array; constants are read from dolfinx ``Constant.value`` at call time; ``x`` is the array of
    nodal coordinates.  Any other node type raises ``NotImplementedError`` (the summand is then assembled).
    """

    _unary = {"sin": np.sin, "cos": np.cos, "tan": np.tan, "exp": np.exp, "ln": np.log, "sqrt": np.sqrt,
              "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh, "atan": np.arctan, "asin": np.arcsin,
              "acos": np.arccos, "abs": np.abs}

    def __init__(self, values: dict, x: np.ndarray):
        super().__init__()
        self.values, self.x = values, _Coordinates(x)

    def expr(self, o, *ops):
        name = type(o).__name__.lower()
        if name in self._unary and len(ops) == 1 and callable(ops[0]):
            fn, a = self._unary[name], ops[0]
            return lambda: fn(a())
        raise NotImplementedError(type(o).__name__)

    def sum(self, o, a, b):
        if isinstance(a, _Const) and isinstance(b, _Const):
            return _Const(a.value + b.value)
        return lambda: a() + b()

    def product(self, o, a, b):
        if isinstance(a, _Const) and isinstance(b, _Const):
            return _Const(a.value * b.value)
        if isinstance(b, _Const):
            a, b = b, a
        if isinstance(a, _Const):
            c, f = _split_scale(b)
            return _Scaled(a.value * c, f)
        (ca, fa), (cb, fb) = _split_scale(a), _split_scale(b)
        return _Scaled(ca * cb, lambda: fa() * fb())

    def division(self, o, a, b):
        if isinstance(a, _Const) and isinstance(b, _Const):
            return _Const(a.value / b.value)
        if isinstance(b, _Const):
            c, f = _split_scale(a)
            return _Scaled(c / b.value, f)
        return lambda: a() / b()

    def power(self, o, a, b):
        if isinstance(a, _Const) and isinstance(b, _Const):
            return _Const(a.value**b.value)
        return lambda: a() ** b()

    def scalar_value(self, o):
        return _Const(float(o))

    def zero(self, o):
        if o.ufl_shape:
            raise NotImplementedError("tensor zero")
        return _Const(0.0)

    def coefficient(self, o):
        return self.values[o]

    def constant(self, o):
        if np.asarray(o.value).shape:
            raise NotImplementedError("tensor constant")
        return lambda: float(o.value)

    def variable(self, o, a, label):
        return a

    def label(self, o):
        return None

    def multi_index(self, o):
        return tuple(int(i) for i in o)

    def spatial_coordinate(self, o):
        return self.x

    def indexed(self, o, a, idx):
        if not isinstance(a, _Coordinates) or len(idx) != 1:
            raise NotImplementedError("indexing other than x[i]")
        col = a.x[:, idx[0]].copy()
        return lambda: col

    def conj(self, o, a):
        return a

    def real(self, o, a):
        return a


class FieldArrays:
    """Distributed arrays and parameters shared by :class:`FieldSystem` and the midpoint system.

    Needs ``comm``, ``n_owned``, ``lagrangian``, ``params`` (name -> dolfinx Constant or Function),
    ``spaces`` (parameter-field spaces), ``_theta_vecs`` and ``_riesz_ksp``.
    """

    def set_parameter(self, name: str, value) -> None:
        """Set parameter ``name``: a number, a function of the coordinates, or a local dof array of a field."""
        if name not in self.lagrangian.parameters:
            raise InputError(f"unknown parameter {name!r}; the density has {sorted(self.lagrangian.parameters)}")
        target = self.params[name]
        self._K = None  # the matrix of the quadratic part may depend on θ
        if isinstance(target, fem.Constant):
            if not isinstance(value, (int, float, np.floating, np.integer)):
                raise InputError(f"scalar parameter {name!r} needs a number, got {type(value).__name__}")
            target.value = float(value)
            return
        if isinstance(value, (int, float, np.floating, np.integer)):
            target.x.array[:] = float(value)
        elif isinstance(value, np.ndarray):
            n_owned = target.function_space.dofmap.index_map.size_local
            n_local = n_owned + target.function_space.dofmap.index_map.num_ghosts
            if value.shape not in ((n_owned,), (n_local,)):
                raise InputError(f"parameter field {name!r} needs {n_owned} owned (or {n_local} local) dof values "
                                 f"on this rank, got shape {value.shape}")
            target.x.array[:value.size] = value
            target.x.scatter_forward()
        elif callable(value):
            target.interpolate(value)
        else:
            raise InputError(f"parameter field {name!r} needs a number, a function of the coordinates or a dof "
                             f"array, got {type(value).__name__}")

    def parameter_values(self) -> dict[str, object]:
        """Current parameter values: floats, and local dof arrays (copies) of the fields."""
        return {k: float(p.value) if isinstance(p, fem.Constant) else p.x.array.copy()
                for k, p in self.params.items()}

    def reduce_scalars(self, grads: dict[str, object]) -> dict[str, object]:
        """Sum the rank-local scalar entries of a θ-gradient over the ranks (fields unchanged)."""
        return {k: (self.comm.allreduce(complex(g) if np.iscomplexobj(g) else float(g), op=MPI.SUM)
                    if k not in self._theta_vecs else g) for k, g in grads.items()}

    def dot(self, a: np.ndarray, b: np.ndarray) -> float:
        """``Σ_i a_i b_i`` over the owned dofs of every rank."""
        return self.comm.allreduce(float(np.dot(a[:self.n_owned], b[:self.n_owned])), op=MPI.SUM)

    def owned(self, a: np.ndarray) -> np.ndarray:
        return a[:self.n_owned]

    def riesz(self, name: str, dual: np.ndarray) -> np.ndarray:
        r"""The Riesz representative ``M_Θ⁻¹ g`` of a dual vector ``g`` on parameter field ``name`` (owned dofs).

        ``M_Θ`` is the consistent mass matrix of the parameter space, solved with PETSc CG + Jacobi
        to a relative residual of 1e-12.  Raises SolverError if CG does not converge.
        """
        Q = self.spaces[name]
        ksp = self._riesz_ksp.get(name)
        if ksp is None:
            import dolfinx.fem.petsc as fpetsc  # noqa: PLC0415

            a = fem.form(ufl.TrialFunction(Q) * ufl.TestFunction(Q) * ufl.dx)
            A = fpetsc.assemble_matrix(a)
            A.assemble()
            ksp = PETSc.KSP().create(self.comm)
            ksp.setOperators(A)
            ksp.setType("cg")
            ksp.getPC().setType("jacobi")
            ksp.setTolerances(rtol=1e-12, atol=0.0, max_it=10000)
            self._riesz_ksp[name] = ksp
        A = ksp.getOperators()[0]
        b, x = A.createVecRight(), A.createVecRight()
        n = Q.dofmap.index_map.size_local
        b.array[:] = np.real(np.asarray(dual)[:n])
        ksp.solve(b, x)
        if ksp.getConvergedReason() <= 0:
            raise SolverError(f"Riesz map of the gradient of {name!r}: CG on the mass matrix failed",
                              reason=ksp.getConvergedReason())
        return x.array.copy()

    def interpolate(self, value) -> np.ndarray:
        """Local dof array of a number or a function of the coordinates in the state space."""
        f = fem.Function(self.V)
        if callable(value):
            f.interpolate(value)
        else:
            f.x.array[:] = float(value)
        return f.x.array.copy()

    def field_gradient(self, name: str, dual: np.ndarray) -> FieldGradient:
        """A labelled :class:`FieldGradient` (dual vector and Riesz representative, owned dofs)."""
        n = self.spaces[name].dofmap.index_map.size_local
        d = np.real(np.asarray(dual)[:n]).copy()
        return FieldGradient(d, self.riesz(name, d))

    def labelled_gradients(self, grads: dict, riesz: bool = True) -> dict:
        """Parameter name -> :class:`FieldGradient` (fields: the dual vector, with its Riesz representative if
        ``riesz``) or ``float`` (scalars), from the raw accumulated derivatives ``grads``."""
        out = {}
        for k, g in grads.items():
            if self.lagrangian.parameters[k].kind == "field":
                n = self.spaces[k].dofmap.index_map.size_local
                out[k] = self.field_gradient(k, g) if riesz else FieldGradient(np.asarray(g)[:n].copy(), None)
            else:
                out[k] = float(g)
        return out


class FieldSystem(FieldArrays):
    r"""A separable field Lagrangian discretised in space (see the module docstring).

    Arguments:
        lagrangian: the density (:class:`glep.fields.FieldLagrangian`).
        mesh: a dolfinx mesh, or a path to an ``.xdmf`` / ``.msh`` mesh file.
        degree: Lagrange degree of the state space (1 or 2).
        dirichlet: ``"zero"`` (homogeneous), ``None`` (natural: no condition),
            or a function ``g(x, t) -> values`` (NumPy, ``x`` of shape
            ``(3, npoints)``) of the imposed boundary values.
        dirichlet_marker: where the Dirichlet condition holds (a boundary facet
            marker); ``None`` is the whole boundary.
        cost: a :class:`FieldCost` tracked over time (``None``: no running cost).
        terminal_cost: a :class:`FieldCost` at the final time only (its target
            is evaluated at ``t = T``).
        source: ``f(x, t) -> UFL`` entering the action as ``∫ f φ dx`` (an input driving the field).
        theta: values overriding the parameters' defaults: a number (scalar or
            constant field), a function of the coordinates, or a local array
            of a parameter field's dofs.
        initial: ``(φ₀, φ̇₀)``: numbers or functions of the coordinates
            (interpolated); the initial momentum is ``p₀ = M φ̇₀``.
        quadrature: ``"nodal"`` or ``"exact"`` (see the module docstring).
        comm: the communicator of a mesh read from a file.
    """

    def __init__(self, lagrangian: FieldLagrangian, mesh, *, degree: int = 1, dirichlet="zero",
                 dirichlet_marker: Marker | None = None, cost: FieldCost | None = None,
                 terminal_cost: FieldCost | None = None, source: Callable | None = None,
                 theta: Mapping[str, object] | None = None, initial=(0.0, 0.0), quadrature: str = "nodal",
                 comm: MPI.Comm = MPI.COMM_WORLD):
        self._check_arguments(lagrangian, degree, dirichlet, dirichlet_marker, cost, terminal_cost, source,
                              initial, quadrature)
        self.lagrangian = lagrangian
        self.mesh = _as_mesh(mesh, comm)
        self.comm = self.mesh.comm
        self.degree = degree
        self.gdim = self.mesh.geometry.dim
        self.tdim = self.mesh.topology.dim
        reason = {True: None, False: "declared separable=False"}.get(lagrangian.separable)
        if lagrangian.separable is None and lagrangian.components == 1:
            reason = _separable_reason(lagrangian, self.gdim)
        if reason is not None:
            raise InputError(f"field Lagrangian {lagrangian.name!r} is not separable ({reason}): time stepping "
                             "needs ℒ = ½ρ(x)φ_t² − W(φ, ∇φ; θ, x, t); other densities are stepped by "
                             "glep.field_midpoint.MidpointFieldSystem (implicit midpoint)")
        if lagrangian.components != 1:
            raise InputError(f"time stepping supports one real field component, got components="
                             f"{lagrangian.components}")
        self.V = fem.functionspace(self.mesh, ("P", degree))
        self.index_map = self.V.dofmap.index_map
        self.n_owned = self.index_map.size_local
        self.n_local = self.n_owned + self.index_map.num_ghosts
        self.ndofs = self.index_map.size_global
        self.u = fem.Function(self.V, name="phi")
        self.lam = fem.Function(self.V, name="direction")
        self.t = fem.Constant(self.mesh, 0.0)
        self.x = ufl.SpatialCoordinate(self.mesh)
        self.source = source
        self.cost, self.terminal_cost = cost, terminal_cost
        self.dirichlet = dirichlet
        self._init_parameters(theta or {})
        self._init_bc(dirichlet, dirichlet_marker)
        self._dx = self._measure(quadrature)
        self._compile()
        self._lump_mass()
        self._initial = initial
        self._riesz_ksp: dict[str, PETSc.KSP] = {}

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _check_arguments(lagrangian, degree, dirichlet, marker, cost, terminal_cost, source, initial, quadrature):
        if not isinstance(lagrangian, FieldLagrangian):
            raise InputError(f"lagrangian must be a glep.fields.FieldLagrangian, got {type(lagrangian).__name__}")
        if isinstance(degree, bool) or degree not in (1, 2):
            raise InputError(f"degree must be 1 or 2, got {degree!r}")
        if not (dirichlet is None or dirichlet == "zero" or callable(dirichlet)):
            raise InputError(f"dirichlet must be 'zero', None (natural) or a function g(x, t), got {dirichlet!r}")
        if marker is not None and not callable(marker):
            raise InputError(f"dirichlet_marker must be a function x -> bool array, got {type(marker).__name__}")
        for name, c in (("cost", cost), ("terminal_cost", terminal_cost)):
            if c is not None and not isinstance(c, FieldCost):
                raise InputError(f"{name} must be a FieldCost or None, got {type(c).__name__}")
        if source is not None and not callable(source):
            raise InputError(f"source must be a function (x, t) -> UFL or None, got {type(source).__name__}")
        if not (isinstance(initial, (tuple, list)) and len(initial) == 2
                and all(isinstance(v, (int, float)) or callable(v) for v in initial)):
            raise InputError("initial must be a pair (φ₀, φ̇₀) of numbers or functions of the coordinates, "
                             f"got {initial!r}")
        if quadrature not in ("nodal", "exact"):
            raise InputError(f"quadrature must be 'nodal' or 'exact', got {quadrature!r}")

    def _init_parameters(self, theta: Mapping[str, object]) -> None:
        unknown = sorted(set(theta) - set(self.lagrangian.parameters))
        if unknown:
            raise InputError(f"theta names unknown parameters {unknown}; the density has "
                             f"{sorted(self.lagrangian.parameters)}")
        self.params: dict[str, fem.Function | fem.Constant] = {}
        self.spaces: dict[str, fem.FunctionSpace] = {}
        self._vars: dict[str, object] = {}
        for name, par in self.lagrangian.parameters.items():
            value = theta.get(name, par.value)
            if par.kind == "scalar":
                if not isinstance(value, (int, float, np.floating, np.integer)):
                    raise InputError(f"scalar parameter {name!r} needs a number, got {type(value).__name__}")
                c = fem.Constant(self.mesh, float(value))
                self.params[name] = c
                self._vars[name] = ufl.variable(c)
            else:
                Q = fem.functionspace(self.mesh, par.element)
                f = fem.Function(Q, name=name)
                self.spaces[name] = Q
                self.params[name] = f
                self._vars[name] = f
                self.set_parameter(name, value)

    def _init_bc(self, dirichlet, marker) -> None:
        self._bc_values = None
        if dirichlet is None:
            self.bc_dofs = np.zeros(0, dtype=np.int32)
        else:
            fdim = self.tdim - 1
            self.mesh.topology.create_connectivity(fdim, self.tdim)
            if marker is None:
                facets = dolfinx.mesh.exterior_facet_indices(self.mesh.topology)
            else:
                facets = dolfinx.mesh.locate_entities_boundary(self.mesh, fdim, marker)
            self.bc_dofs = fem.locate_dofs_topological(self.V, fdim, facets)
            if callable(dirichlet):
                self._bc_points = self.V.tabulate_dof_coordinates()[self.bc_dofs].T
                self._bc_values = dirichlet
        self.free = np.ones(self.n_local, dtype=bool)
        self.free[self.bc_dofs] = False

    def _measure(self, quadrature: str):
        cell = self.mesh.topology.cell_type.name
        if quadrature == "exact":
            return ufl.dx
        if self.degree == 1:
            return ufl.Measure("dx", domain=self.mesh, metadata={"quadrature_rule": "vertex",
                                                                "quadrature_degree": 1})
        if cell not in ("interval", "quadrilateral", "hexahedron"):
            raise InputError(f"P2 with lumped mass needs an interval or quadrilateral mesh (row sums of the P2 "
                             f"mass vanish at the vertices of a {cell}); use degree=1")
        return ufl.Measure("dx", domain=self.mesh, metadata={"quadrature_rule": "GLL", "quadrature_degree": 3})

    def _density(self, phi, phi_t, theta):
        return self.lagrangian(phi, phi_t, ufl.grad(phi), theta, self.x, self.t)

    def _region_measure(self, cost: FieldCost):
        """The measure of the read-out region, with the quadrature of the potential (nodal or UFL-estimated)."""
        md = self._dx.metadata()
        if cost.region is None:
            return ufl.Measure("dx", domain=self.mesh, metadata=md)
        cells = dolfinx.mesh.locate_entities(self.mesh, self.tdim, cost.region)
        if self.comm.allreduce(len(cells), op=MPI.SUM) == 0:
            raise InputError("FieldCost region contains no cell of the mesh")
        tags = dolfinx.mesh.meshtags(self.mesh, self.tdim, np.sort(cells).astype(np.int32),
                                     np.ones(len(cells), dtype=np.int32))
        return ufl.Measure("dx", domain=self.mesh, subdomain_data=tags, subdomain_id=1, metadata=md)

    def _target(self, cost: FieldCost):
        return ufl.as_ufl(float(cost.target)) if not callable(cost.target) else cost.target(self.x, self.t)

    def _compile(self) -> None:
        u, lam, v = self.u, self.lam, ufl.TestFunction(self.V)
        pt = ufl.variable(ufl.as_ufl(0.0))
        L0 = self._density(u, ufl.as_ufl(0.0), self._vars)  # ℒ(φ, 0, ∇φ)
        rho = expand_derivatives(ufl.diff(ufl.diff(self._density(u, pt, self._vars), pt), pt))
        self._rho = rho
        U = L0 + (self.source(self.x, self.t) * u if self.source is not None else 0)
        dx = self._dx
        self.U_ufl = U * dx  # the potential part ∫U dx (with the sources) as a UFL form
        self.U_form = fem.form(self.U_ufl)
        quadratic, rest = self._split_quadratic(L0)
        if self.source is not None:
            rest = rest + self.source(self.x, self.t) * u
        self._nodal_setup(U, rest)
        rest = self._assembled_rest
        self._K_form = None if quadratic is None else fem.form(
            ufl.derivative(ufl.derivative(quadratic * dx, u, v), u, ufl.TrialFunction(self.V)))
        self._K = None
        dU = ufl.derivative(rest * dx, u, v)
        self.F_form = None if _is_zero(rest) else fem.form(dU)
        self.H_form = None if self.F_form is None or self._hessian_free(rest) else \
            fem.form(ufl.derivative(dU, u, lam))
        dU = ufl.derivative(U * dx, u, v)
        self.theta_forms, self.theta_vjp_forms = {}, {}
        for name, par in self.lagrangian.parameters.items():
            if name in self._nodal_theta:
                continue
            if par.kind == "field":
                w = ufl.TestFunction(self.spaces[name])
                self.theta_forms[name] = fem.form(ufl.derivative(U * dx, self.params[name], w))
                self.theta_vjp_forms[name] = fem.form(
                    ufl.derivative(ufl.derivative(U * dx, u, lam), self.params[name], w))
            else:
                dUs = expand_derivatives(ufl.diff(U, self._vars[name]))
                self.theta_forms[name] = fem.form(dUs * dx)
                self.theta_vjp_forms[name] = fem.form(expand_derivatives(ufl.derivative(dUs, u, lam)) * dx)
        self._cost_forms, self._cost_nodal, self._cost_ufl = {}, {}, {}
        self._jvp_forms: dict = {}
        for key, cost in (("running", self.cost), ("terminal", self.terminal_cost)):
            if cost is None:
                continue
            dxr = self._region_measure(cost)
            c = 0.5 * cost.weight * (u - self._target(cost)) ** 2 * dxr
            self._cost_ufl[key] = c
            self._cost_forms[key] = (fem.form(c), fem.form(ufl.derivative(c, u, v)))
            y = expand_derivatives(self._target(cost))
            if self._m0 is not None and self._pointwise(y):
                # vertex quadrature: c = ½ Σ_i w m⁰_{R,i} (q_i − y(x_i, t))², evaluated at the nodes
                mR = fem.assemble_vector(fem.form(cost.weight * v * dxr))
                mR.scatter_reverse(la.InsertMode.add)
                mR.scatter_forward()
                self._cost_nodal[key] = (mR.array.copy(), y)
        self._vec = la.vector(self.index_map, 1)  # work vector of the state space
        self._theta_vecs = {k: la.vector(self.spaces[k].dofmap.index_map, 1) for k in self.spaces}

    def _pointwise(self, term) -> bool:
        """Whether a summand can be evaluated node by node (P1, vertex quadrature, no derivatives, P1 fields)."""
        if self.degree != 1 or self._dx.metadata().get("quadrature_rule") != "vertex":
            return False
        for node in unique_pre_traversal(term):
            if isinstance(node, (ufl.classes.Derivative, ufl.classes.Argument)):
                return False
            if isinstance(node, ufl.classes.Coefficient) and node is not self.u and \
                    not any(node is self.params[k] for k in (*self._same_layout, *self._lumped)):
                return False
        lumped = [k for k in self._lumped if self.params[k] in extract_coefficients(term)]
        if len(lumped) > 1 or (lumped and not _is_zero(ufl.derivative(ufl.derivative(
                term, self.params[lumped[0]], ufl.as_ufl(1.0)), self.params[lumped[0]], ufl.as_ufl(1.0)))):
            return False  # a lumped parameter must enter linearly, alone
        try:
            self._eval(expand_derivatives(term))
        except (NotImplementedError, KeyError, TypeError, ValueError):
            return False
        return True

    def _eval(self, expr) -> np.ndarray:
        """A point-wise (derivative-free, expanded) expression at every local node (state-space local length).

        The expression is compiled once into a NumPy closure (cached by identity) and called.
        """
        entry = self._tapes.get(id(expr))
        if entry is None:
            values = {self.u: lambda: self.u.x.array, self.lam: lambda: self.lam.x.array,
                      **{self.params[k]: (lambda f=self.params[k]: f.x.array) for k in self._same_layout},
                      **{self.params[k]: (lambda k=k: self._to_nodes(k)) for k in self._lumped}}
            fn = map_expr_dag(_NodalEvaluator(values, self._nodes), expr, compress=False)
            if not callable(fn):
                raise NotImplementedError("not a scalar expression")
            entry = self._tapes[id(expr)] = (expr, fn)  # the expression is kept so that its id stays unique
        out = entry[1]()
        return np.broadcast_to(out, (self.n_local,)) if np.ndim(out) == 0 else out

    def _nodal_setup(self, U, rest) -> None:
        r"""Split off the point-wise summands: by vertex quadrature ``∫ g(φ_h, θ_h, x) N_i = m⁰_i g(q_i, θ_i, x_i)``.

        ``m⁰_i = ∫ N_i dx`` (vertex rule).  Point-wise summands of the force and Hessian, and the
        θ-derivatives of parameters that enter only point-wise, are then NumPy expressions at the
        nodes instead of assemblies; everything else is assembled.
        """
        one = ufl.as_ufl(1.0)
        self._nodes = self.V.tabulate_dof_coordinates()[:, :self.gdim]
        self._tapes: dict[int, tuple] = {}
        X = self._nodes
        self._same_layout = [k for k, Q in self.spaces.items() if self.lagrangian.parameters[k].element == ("P", 1)
                             and np.array_equal(Q.tabulate_dof_coordinates()[:, :self.gdim], X)]
        self._nodal_force = self._nodal_hess = None
        self._nodal_theta: dict[str, tuple] = {}
        self._assembled_rest = rest
        self._m0 = None
        self._lumped: dict[str, object] = {}
        if self.degree != 1 or self._dx.metadata().get("quadrature_rule") != "vertex":
            return
        v = ufl.TestFunction(self.V)
        m0 = fem.assemble_vector(fem.form(v * self._dx))
        m0.scatter_reverse(la.InsertMode.add)
        m0.scatter_forward()
        self._m0 = m0.array.copy()
        self._lumped_setup()
        point, other = [], []
        for term in self._terms(rest):
            (point if self._pointwise(term) else other).append(term)
        if point:
            P = sum(point[1:], point[0])
            g1 = expand_derivatives(ufl.derivative(P, self.u, one))
            self._nodal_force = g1
            self._nodal_hess = expand_derivatives(ufl.derivative(g1, self.u, one))
            self._assembled_rest = sum(other[1:], other[0]) if other else ufl.as_ufl(0.0)
        terms = self._terms(expand_derivatives(U))
        for name, par in self.lagrangian.parameters.items():
            var = self._vars[name]
            dep = [t for t in terms if not _is_zero(self._dtheta(t, name, var))]
            if dep and all(self._pointwise(t) for t in dep) and \
                    (par.kind == "scalar" or name in self._same_layout or name in self._lumped):
                d = self._dtheta(sum(dep[1:], dep[0]), name, var)
                self._nodal_theta[name] = (d, expand_derivatives(ufl.derivative(d, self.u, one)))

    def _lumped_setup(self) -> None:
        r"""Parameter fields in other spaces (``DG0``...) entering the density linearly: nodal by vertex quadrature.

        With the vertex rule, ``∫ θ W(φ_h) N_i dx = W(q_i) (Bᵀθ)_i`` and ``∂_{θ_j} ∫ θ W(φ_h) dx = Σ_i B_ji W(q_i)``,
        ``B_ji = ∫ N^Θ_j N_i dx`` (vertex rule, assembled once): such a parameter acts at the nodes as
        ``θ̃ = Bᵀθ / m⁰`` and its θ-derivatives are ``B`` times node-wise arrays (exactly the assembled values).
        """
        import dolfinx.fem.petsc as fpetsc  # noqa: PLC0415
        from dolfinx.la.petsc import create_vector_wrap  # noqa: PLC0415

        for name, Q in self.spaces.items():
            if name in self._same_layout:
                continue
            B = fpetsc.assemble_matrix(fem.form(ufl.TrialFunction(self.V) * ufl.TestFunction(Q) * self._dx))
            B.assemble()
            qv, vv = la.vector(Q.dofmap.index_map, 1), la.vector(self.index_map, 1)
            self._lumped[name] = (B, qv, vv, create_vector_wrap(qv), create_vector_wrap(vv))
        self._lumped_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _to_nodes(self, name: str, values: np.ndarray | None = None) -> np.ndarray:
        """``θ̃ = Bᵀθ / m⁰`` of a lumped parameter (``values``: a local array of its space; default its value)."""
        B, qv, vv, qw, vw = self._lumped[name]
        theta = self.params[name].x.array
        if values is None:  # the parameter's own value: cached until it changes
            cached = self._lumped_cache.get(name)
            if cached is not None and np.array_equal(cached[0], theta):
                return cached[1]
        qv.array[:] = theta if values is None else values
        B.multTranspose(qw, vw)
        vv.scatter_forward()
        out = vv.array / self._m0
        if values is None:
            self._lumped_cache[name] = (theta.copy(), out)
        return out

    def _from_nodes(self, name: str, nodal: np.ndarray) -> np.ndarray:
        """``B · g`` for a node-wise array ``g`` (a new local array of the parameter space, ghosts updated)."""
        B, qv, vv, qw, vw = self._lumped[name]
        vv.array[:] = nodal
        B.mult(vw, qw)
        qv.scatter_forward()
        return qv.array.copy()

    def _dtheta(self, expr, name, var):
        if self.lagrangian.parameters[name].kind == "scalar":
            return expand_derivatives(ufl.diff(expr, var))
        return expand_derivatives(ufl.derivative(expr, self.params[name], ufl.as_ufl(1.0)))

    def _terms(self, expr) -> list:
        """The top-level summands of a UFL expression."""
        if isinstance(expr, ufl.classes.Sum):
            return [t for op in expr.ufl_operands for t in self._terms(op)]
        return [] if isinstance(expr, Zero) else [expr]

    def _hessian_free(self, expr) -> bool:
        """Whether ``∂²_q ∫expr`` vanishes identically."""
        v, w = ufl.TestFunction(self.V), ufl.TrialFunction(self.V)
        H = expand_derivatives(ufl.derivative(ufl.derivative(expr, self.u, v), self.u, w))
        return isinstance(H, Zero)

    def _split_quadratic(self, expr):
        r"""``expr = quadratic + rest``: the summands homogeneous quadratic in ``φ`` with a time-independent Hessian.

        A summand goes to ``quadratic`` when its ``φ``-Hessian involves neither ``φ`` nor the time
        constant, and its ``φ``-gradient vanishes at ``φ = 0``; its force is then ``K q`` with a matrix
        ``K`` assembled once per parameter value (PETSc ``MatMult`` per step instead of an assembly).
        """
        v, w = ufl.TestFunction(self.V), ufl.TrialFunction(self.V)
        quad, rest = [], []
        for term in self._terms(expr):
            H = expand_derivatives(ufl.derivative(ufl.derivative(term, self.u, v), self.u, w))
            ok = not isinstance(H, Zero) and self.u not in extract_coefficients(H) \
                and self.t not in extract_constants(H)
            if ok:
                g0 = expand_derivatives(ufl.replace(ufl.derivative(term, self.u, v), {self.u: ufl.zero()}))
                ok = isinstance(g0, Zero)
            (quad if ok else rest).append(term)
        total = lambda ts: sum(ts[1:], ts[0]) if ts else None  # noqa: E731
        return total(quad), (total(rest) if rest else ufl.as_ufl(0.0))

    def _stiffness(self):
        """The matrix ``K = ∂²_q U_quadratic`` (PETSc), assembled at the current parameters on first use."""
        if self._K is None and self._K_form is not None:
            import dolfinx.fem.petsc as fpetsc  # noqa: PLC0415
            from dolfinx.la.petsc import create_vector_wrap  # noqa: PLC0415

            self._K = fpetsc.assemble_matrix(self._K_form)
            self._K.assemble()
            self._wrap = {"u": create_vector_wrap(self.u.x), "lam": create_vector_wrap(self.lam.x)}
            self._wrap_out = create_vector_wrap(self._vec)
        return self._K

    def _linear_part(self, which: str) -> np.ndarray:
        """``K x`` (ghosts updated; a new array) for ``x`` the state (``"u"``) or the direction (``"lam"``)."""
        K = self._stiffness()
        if K is None:
            return np.zeros(self.n_local)
        K.mult(self._wrap[which], self._wrap_out)
        self._vec.scatter_forward()
        return self._vec.array.copy()

    def _lump_mass(self) -> None:
        v = ufl.TestFunction(self.V)
        m = fem.assemble_vector(fem.form(self._rho * v * ufl.dx))
        m.scatter_reverse(la.InsertMode.add)
        m.scatter_forward()
        bad = int(np.sum(m.array[:self.n_owned] <= 0))
        if self.comm.allreduce(bad, op=MPI.SUM):
            raise InputError(f"the lumped mass (row sums of ∫ρ N_i N_j) has {bad} non-positive entries: ρ must be "
                             "positive and the element lumpable (P1, or P2 on intervals/quadrilaterals)")
        self.m = m.array.copy()
        self.minv = 1.0 / self.m
        self.minv[self.bc_dofs] = 0.0  # Dirichlet dofs do not move with the momentum

    # ------------------------------------------------------------------ assembly
    def _assemble(self, form, out: la.Vector) -> np.ndarray:
        out.array[:] = 0.0
        fem.assemble_vector(out.array, form)
        out.scatter_reverse(la.InsertMode.add)
        out.scatter_forward()
        return out.array

    def _set_state(self, q: np.ndarray, t: float) -> None:
        self.u.x.array[:] = q
        self.t.value = t

    def force(self, q: np.ndarray, t: float, beta: complex = 0.0) -> np.ndarray:
        """``∂_q U(q, t) + β ∂_q c(q, t)``, zero at Dirichlet dofs (a new local array)."""
        self._set_state(q, t)
        return self._force_at_state(beta)

    def force_and_theta(self, q: np.ndarray, t: float, beta: complex = 0.0) -> tuple[np.ndarray, dict]:
        r"""``(force(q, t, β), theta_gradient(q, t))`` in one node-wise evaluation (the nudged passes).

        The state is loaded once for both.  Node-wise parameter fields come back *before* their linear map
        (``W(q)`` on the state space; the map is ``m⁰ ·`` for P1 fields on the state's nodes, ``B`` of
        :meth:`_lumped_setup` otherwise): sums over time are mapped once by :meth:`finish_theta`
        (``Σ_k w_k B W(q_k) = B Σ_k w_k W(q_k)``).  Other entries are final.
        """
        self._set_state(q, t)
        F = self._force_at_state(beta)
        return F, self._theta_at_state(self.theta_forms, nodal=True)

    def finish_theta(self, acc: dict[str, object]) -> dict[str, object]:
        """Map the node-wise entries of a sum of :meth:`force_and_theta` θ-derivatives to the parameter spaces."""
        out = {}
        for k, g in acc.items():
            if k in self._nodal_theta and k in self._theta_vecs:
                g = self._from_nodes(k, g) if k in self._lumped else self._m0 * g
            out[k] = g
        return out

    def _force_at_state(self, beta) -> np.ndarray:
        F = self._linear_part("u")
        if self._nodal_force is not None:
            F += self._m0 * self._eval(self._nodal_force)
        if self.F_form is not None:
            F += self._assemble(self.F_form, self._vec)
        if beta != 0 and "running" in self._cost_forms:
            F += beta * self._cost_gradient_at_state("running")
        F[self.bc_dofs] = 0.0
        return F

    def hessian_action(self, q: np.ndarray, t: float, direction: np.ndarray) -> np.ndarray:
        """``∂²_q U(q, t) · direction`` (zero at Dirichlet dofs)."""
        self._set_state(q, t)
        self.lam.x.array[:] = direction
        H = self._linear_part("lam")
        if self._nodal_hess is not None:
            H += self._m0 * self._eval(self._nodal_hess) * direction
        if self.H_form is not None:
            H += self._assemble(self.H_form, self._vec)
        H[self.bc_dofs] = 0.0
        return H

    def _theta(self, forms, q, t, direction=None) -> dict[str, object]:
        self._set_state(q, t)
        if direction is not None:
            self.lam.x.array[:] = direction
        return self._theta_at_state(forms, direction)

    def _theta_at_state(self, forms, direction=None, nodal: bool = False) -> dict[str, object]:
        out: dict[str, object] = {}
        for name, (d, du) in self._nodal_theta.items():
            g = self._eval(d) if direction is None else self._eval(du) * direction
            if name in self._theta_vecs and nodal:  # node-wise, before m⁰ or B (applied by finish_theta)
                out[name] = np.array(g, dtype=float)
                continue
            if name in self._lumped:
                out[name] = self._from_nodes(name, g)
                continue
            g = self._m0 * g
            out[name] = g if name in self._theta_vecs else float(np.sum(g[:self.n_owned]))
        for name, form in forms.items():
            if name in self._theta_vecs:
                out[name] = self._assemble(form, self._theta_vecs[name]).copy()
            else:
                out[name] = fem.assemble_scalar(form)  # local: reduced by the caller (once per trajectory)
        return out

    def theta_gradient(self, q: np.ndarray, t: float) -> dict[str, object]:
        r"""``∂_θ U(q, t)``: local arrays of the parameter fields, *rank-local* partial sums for scalars.

        Scalars are summed over ranks by :meth:`reduce_scalars` (once, after accumulating over time).
        """
        return self._theta(self.theta_forms, q, t)

    def theta_vjp(self, q: np.ndarray, t: float, direction: np.ndarray) -> dict[str, object]:
        r"""``∂_θ (∂_q U(q, t) · direction)`` in the layout of :meth:`theta_gradient`."""
        return self._theta(self.theta_vjp_forms, q, t, direction)

    def theta_force_jvp(self, q: np.ndarray, t: float, name: str, direction) -> np.ndarray:
        r"""``∂_θ F(q, t) · δθ`` for parameter ``name`` (``δθ`` a number, or a local dof array of the field).

        The forward tangent of the force (forward sensitivities); its form is compiled on first use.
        """
        self._set_state(q, t)
        par = self.lagrangian.parameters[name]
        if name in self._nodal_theta:
            d = self._m0 * self._eval(self._nodal_theta[name][1])
            if name in self._lumped:
                direction = self._to_nodes(name, np.asarray(direction, dtype=float))
            out = d * (float(direction) if par.kind == "scalar" else direction)
        else:
            form = self._jvp_forms.get(name)
            v = ufl.TestFunction(self.V)
            if form is None:
                if par.kind == "field":
                    self._jvp_dir = getattr(self, "_jvp_dir", {})
                    self._jvp_dir[name] = fem.Function(self.spaces[name])
                    form = fem.form(ufl.derivative(ufl.derivative(self.U_ufl, self.u, v), self.params[name],
                                                   self._jvp_dir[name]))
                else:
                    dUs = expand_derivatives(ufl.diff(self.U_ufl.integrals()[0].integrand(), self._vars[name]))
                    form = fem.form(expand_derivatives(ufl.derivative(dUs, self.u, v)) * self._dx)
                self._jvp_forms[name] = form
            if par.kind == "field":
                self._jvp_dir[name].x.array[:] = direction
                out = self._assemble(form, self._vec).copy()
            else:
                out = float(direction) * self._assemble(form, self._vec)
        out = np.array(out, dtype=float)
        out[self.bc_dofs] = 0.0
        return out

    # ------------------------------------------------------------------ costs
    @property
    def has_cost(self) -> bool:
        return "running" in self._cost_forms

    @property
    def has_terminal_cost(self) -> bool:
        return "terminal" in self._cost_forms

    def cost_value(self, q: np.ndarray, t: float, which: str = "running") -> float:
        """``c(q, t)`` (or ``c_T(q)`` for ``which="terminal"``), summed over ranks; 0 without that cost."""
        if which not in self._cost_forms:
            return 0.0
        self._set_state(q, t)
        if which in self._cost_nodal:
            mR, y = self._cost_nodal[which]
            r = (q - self._eval(y))[:self.n_owned]
            return self.comm.allreduce(0.5 * float(np.dot(mR[:self.n_owned], r * r)), op=MPI.SUM)
        return self.comm.allreduce(fem.assemble_scalar(self._cost_forms[which][0]), op=MPI.SUM)

    def _cost_gradient_at_state(self, which: str) -> np.ndarray:
        if which in self._cost_nodal:
            mR, y = self._cost_nodal[which]
            return mR * (self.u.x.array - self._eval(y))
        return self._assemble(self._cost_forms[which][1], self._vec)

    def cost_gradient(self, q: np.ndarray, t: float, which: str = "running") -> np.ndarray:
        """``∂_q c(q, t)`` (or ``∂_q c_T``), zero at Dirichlet dofs; zeros without that cost."""
        if which not in self._cost_forms:
            return np.zeros(self.n_local)
        self._set_state(q, t)
        g = self._cost_gradient_at_state(which).copy()
        g[self.bc_dofs] = 0.0
        return g

    # ------------------------------------------------------------------ states
    def dirichlet_values(self, t: float) -> np.ndarray | None:
        """The imposed values at the Dirichlet dofs at time ``t`` (None: homogeneous or natural)."""
        if self._bc_values is None:
            return None
        return np.asarray(self._bc_values(self._bc_points, t), dtype=float)

    def impose(self, q: np.ndarray, t: float) -> None:
        """Write the Dirichlet values at time ``t`` into ``q`` (in place)."""
        if self.dirichlet is None:
            return
        g = self.dirichlet_values(t)
        q[self.bc_dofs] = 0.0 if g is None else g

    def initial_state(self, t0: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """``(q₀, p₀ = M φ̇₀)`` from :attr:`initial`, Dirichlet values imposed at ``t0``."""
        q0 = self.interpolate(self._initial[0])
        self.impose(q0, t0)
        p0 = self.m * self.interpolate(self._initial[1])
        p0[self.bc_dofs] = 0.0
        return q0, p0

    def check_state(self, a: np.ndarray, name: str) -> np.ndarray:
        """``a`` as a float or complex local array of this rank's length (else InputError)."""
        arr = np.asarray(a)
        if arr.shape != (self.n_local,) or not np.issubdtype(arr.dtype, np.number):
            raise InputError(f"{name} must be a local dof array of shape ({self.n_local},) on rank "
                             f"{self.comm.rank}, got {arr.shape}")
        return arr

    def error_norm(self, q: np.ndarray, exact: Callable, t: float = 0.0, degree: int = 8) -> float:
        r"""``‖φ_h − φ‖_{L²(Ω)}`` with ``exact(x, t) -> UFL`` (quadrature of the given degree; all ranks)."""
        self._set_state(q, t)
        e = self.u - exact(self.x, self.t)
        form = fem.form(e * e * ufl.dx(metadata={"quadrature_degree": degree}))
        return float(np.sqrt(self.comm.allreduce(fem.assemble_scalar(form), op=MPI.SUM)))

    # ------------------------------------------------------------------ reductions and output
    def gather(self, a: np.ndarray, space: str | None = None) -> np.ndarray:
        """The global array of ``a`` (owned entries of every rank) ordered by dof coordinates, on every rank.

        ``space`` is a parameter name for a parameter field's array (default: the state space).
        Used to compare runs on different numbers of ranks (the dof numbering differs).
        """
        V = self.V if space is None else self.spaces[space]
        n = V.dofmap.index_map.size_local
        X = V.tabulate_dof_coordinates()[:n]
        pts = self.comm.allgather(X)
        vals = self.comm.allgather(np.asarray(a)[:n])
        X, vals = np.concatenate(pts), np.concatenate(vals)
        order = np.lexsort(np.round(X, 12).T[::-1])
        return vals[order]

    def __repr__(self) -> str:
        return (f"FieldSystem({self.lagrangian.name!r}, {self.tdim}-D {self.mesh.topology.cell_type.name} mesh, "
                f"P{self.degree}, {self.ndofs} dofs, {self.comm.size} rank(s))")


def __getattr__(name: str):
    """``MidpointFieldSystem`` moved to :mod:`glep.field_midpoint` (kept importable from here)."""
    if name == "MidpointFieldSystem":
        from glep.field_midpoint import MidpointFieldSystem  # noqa: PLC0415

        return MidpointFieldSystem
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FieldArrays", "FieldCost", "FieldGradient", "FieldSystem", "MidpointFieldSystem", "read_mesh"]  # noqa: F822
