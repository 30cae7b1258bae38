r"""The finite-element action on a time mesh.

On a dolfinx interval mesh whose coordinate is the time ``t`` the trajectory
is a vector Lagrange function ``q_h ∈ V_h^n`` (degree ``p``) and the augmented
action is assembled from the system's single UFL definition,

    A_β[q_h] = ∫₀ᵀ L_β(q_h, q_h', θ, x(t), t) dt,

with the quadrature chosen by the user.  The first variation
``F(q_h; δq) = δA_β`` and its Jacobian are obtained by ``ufl.derivative``.
With ``p = 1`` and two-point Gauss–Lobatto (trapezoid) quadrature,

    A_β = Σ_k h_k [ L(q_k, (q_{k+1}−q_k)/h_k, t_k) + L(q_{k+1}, (q_{k+1}−q_k)/h_k, t_{k+1}) ] / 2,

which is exactly the trapezoid discrete action of :mod:`glep.ivp.discrete`
(Störmer–Verlet for a separable ``L``); Gauss quadrature with ``p ≥ 2`` gives
Galerkin variational integrators.

Inputs and targets ``x(t)`` are interpolated into vector P1 functions; the
parameters ``θ`` are :class:`dolfinx.fem.Constant` objects wrapped as UFL
variables so that ``∂_θ L`` is available symbolically (``ufl.diff``): it
gives the contrast integrand ``∫ ∂_θ L dt`` and, contracted with a
direction and differentiated in ``q``, the ``∂F/∂θ`` of the discrete adjoint.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Mapping

import dolfinx
import dolfinx.fem.petsc as fpetsc
import numpy as np
import ufl
from dolfinx import fem
from petsc4py import PETSc

from glep.errors import InputError
from glep.parallel import agree
from glep.signals import Signal
from glep.system import LagrangianSystem

QUADRATURES = ("gll", "gauss", "vertex")


def _signal_values(sig: Signal, t: np.ndarray) -> np.ndarray:
    """``sig`` at the times ``t``, shape ``(len(t), m)`` (unbatched signals only)."""
    if sig.batch not in (None, 1):
        raise InputError(f"the bvp backend solves one trajectory at a time; signal {sig.description} "
                         f"has batch size {sig.batch}: use system.with_signals(...) per batch member")
    samples = getattr(sig, "_samples", None)
    if samples is not None and getattr(sig, "_fn", None) is not None and sig.description.startswith("samples"):
        arr, T = samples
        grid = np.linspace(0.0, T, arr.shape[1])
        tc = np.clip(t, 0.0, T)
        return np.stack([np.interp(tc, grid, arr[0, :, j]) for j in range(arr.shape[2])], axis=1)
    out = np.empty((len(t), sig.dim))
    for i, ti in enumerate(t):
        out[i] = np.asarray(sig(float(ti)), dtype=float).reshape(-1, sig.dim)[0]
    return out


def interpolate_signal(sig: Signal, mesh: dolfinx.mesh.Mesh, name: str) -> fem.Function:
    """Interpolate a :class:`glep.Signal` into a vector P1 function on the time mesh.

    The signal is evaluated at the local (owned and ghost) nodes only; an
    exception on one rank is re-raised on every rank.
    """
    W = fem.functionspace(mesh, ("Lagrange", 1, (sig.dim,)))
    f = fem.Function(W, name=name)
    t = W.tabulate_dof_coordinates()[:, 0]
    values = agree(lambda: _signal_values(sig, t), mesh.comm, "evaluating the signals")
    f.x.array[:] = values.reshape(-1)
    return f


def quadrature_metadata(degree: int, quadrature: str, quadrature_degree: int | None) -> dict:
    """Form metadata selecting the time quadrature.

    ``"gll"``: Gauss–Lobatto–Legendre with ``p + 1`` points per element (the
    nodes of a degree-``p`` element; for ``p = 1`` the trapezoid rule).
    ``"gauss"``: Gauss–Legendre of degree ``quadrature_degree`` (default
    ``2p + 2``).  ``"vertex"``: the vertex rule (trapezoid, ``p = 1`` only).
    """
    if quadrature == "gll":
        qd = 2 * degree - 1 if quadrature_degree is None else int(quadrature_degree)
        return {"quadrature_rule": "GLL", "quadrature_degree": qd}
    if quadrature == "gauss":
        qd = 2 * degree + 2 if quadrature_degree is None else int(quadrature_degree)
        return {"quadrature_rule": "default", "quadrature_degree": qd}
    if quadrature == "vertex":
        if degree != 1:
            raise InputError("vertex quadrature is the trapezoid rule: use it with degree=1")
        return {"quadrature_rule": "vertex", "quadrature_degree": 1}
    raise InputError(f"quadrature must be one of {QUADRATURES}, got {quadrature!r}")


class FormTemplate:
    r"""The forms of one system and discretisation, in UFL on an abstract time domain, compiled once.

    The Lagrangian is written with abstract coefficients (the trajectory
    ``q``, the adjoint ``λ``, the signals) and constants (``θ``, a direction
    ``δθ``, ``β``); :meth:`compiled` runs FFCx once per form, and every
    :class:`FEAction` of the same system, degree and quadrature instantiates
    it on its own mesh and functions with :func:`dolfinx.fem.create_form`
    instead of re-deriving, hashing and looking up the form in the JIT cache
    (about 2 ms per form, most of a small solve).
    """

    def __init__(self, system: LagrangianSystem, coordinate_element, degree: int, metadata: dict,
                 jit_options: dict | None):
        import basix.ufl

        # no reference to the system: it is the key of the weak cache that holds this template
        self.cost = system.cost
        self.metadata = metadata
        self.jit_options = jit_options
        domain = ufl.Mesh(coordinate_element)
        self.domain = domain
        n = system.n
        V = ufl.FunctionSpace(domain, basix.ufl.element("Lagrange", "interval", degree, shape=(n,)))
        self.q = ufl.Coefficient(V)
        self.lam = ufl.Coefficient(V)
        self.test, self.trial = ufl.TestFunction(V), ufl.TrialFunction(V)
        self.signals = {k: ufl.Coefficient(ufl.FunctionSpace(domain, basix.ufl.element(
            "Lagrange", "interval", 1, shape=(sig.dim,)))) for k, sig in system.signals.items()}
        self.theta = {k: ufl.Constant(domain, shape=tuple(shape)) for k, shape in system.parameters.items()}
        self.dir = {k: ufl.Constant(domain, shape=tuple(shape)) for k, shape in system.parameters.items()}
        self.beta = ufl.Constant(domain)
        self.theta_var = {k: ufl.variable(c) for k, c in self.theta.items()}
        self.t = ufl.SpatialCoordinate(domain)[0]
        self.dx = ufl.Measure("dx", domain, metadata=metadata)
        self.L = system.ufl_lagrangian(self.q, self.q.dx(0), self.theta_var, self.signals, self.t, beta=self.beta)
        self._compiled: dict[str, object] = {}

    def ufl(self, key: str):
        """The UFL form ``key`` (``None`` if the system has nothing to assemble for it)."""
        L, dx, q = self.L, self.dx, self.q
        if key == "action":
            return L * dx
        if key == "residual":
            return ufl.derivative(L * dx, q, self.test)
        if key == "jacobian":
            return ufl.derivative(ufl.derivative(L * dx, q, self.test), q, self.trial)
        if key in ("cost", "cost_gradient"):
            if self.cost is None:
                return None
            c = self.cost.ufl_cost(q, self.signals, self.t) * dx
            return c if key == "cost" else ufl.derivative(c, q, self.test)
        if key in ("theta_dir", "theta_vjp", "theta_dF"):
            if not self.theta_var:
                return None
            g = sum(ufl.inner(ufl.diff(L, var), self.dir[k]) for k, var in self.theta_var.items()) * dx
            if key == "theta_dir":
                return g
            if key == "theta_vjp":
                return ufl.derivative(g, q, self.lam)
            return ufl.derivative(g, q, self.test)
        if key == "mass":
            return ufl.inner(self.trial, self.test) * ufl.dx(self.domain)
        if key == "stiffness":
            return ufl.inner(self.trial.dx(0), self.test.dx(0)) * ufl.dx(self.domain)
        raise KeyError(key)

    def compiled(self, key: str, comm):
        """The compiled form ``key`` (FFCx and its disk cache on first use), or ``None``."""
        if key not in self._compiled:
            expr = self.ufl(key)
            self._compiled[key] = None if expr is None else fem.compile_form(
                comm, expr, form_compiler_options={"scalar_type": PETSc.ScalarType}, jit_options=self.jit_options)
        return self._compiled[key]


_TEMPLATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def form_template(system: LagrangianSystem, mesh: dolfinx.mesh.Mesh, degree: int, metadata: dict,
                  jit_options: dict | None = None) -> FormTemplate:
    """The (cached) :class:`FormTemplate` of ``system`` for this coordinate element, degree and quadrature."""
    element = mesh.ufl_domain().ufl_coordinate_element()
    key = (repr(element), int(degree), tuple(sorted((k, str(v)) for k, v in metadata.items())),
           repr(sorted((jit_options or {}).items())))
    per_system = _TEMPLATES.setdefault(system, {})
    if key not in per_system:
        per_system[key] = FormTemplate(system, element, degree, metadata, jit_options)
    return per_system[key]


class FEAction:
    r"""Assembler of the finite-element action ``A_β`` and its derivatives.

    Parameters
    ----------
    system:
        The Lagrangian system (its ``ufl_lagrangian`` is assembled).
    params:
        The parameter point ``θ`` (checked against ``system.parameters``).
    mesh:
        A dolfinx interval mesh (time = ``x``-coordinate).
    degree:
        Degree ``p`` of the vector Lagrange elements.
    quadrature, quadrature_degree:
        See :func:`quadrature_metadata`.
    beta:
        Initial nudging strength ``β`` (change it with :meth:`set_beta`); real.
    jit_options:
        Passed to :func:`dolfinx.fem.form` (e.g. ``{"cache_dir": ...}``).

    Notes
    -----
    All assembly methods read the current trajectory ``self.u`` (ghost values
    up to date) and return *global* quantities: vectors summed over ranks
    (owned entries valid) and scalars reduced over the communicator.
    """

    kind = "fe"

    def __init__(self, system: LagrangianSystem, params: Mapping[str, np.ndarray], mesh: dolfinx.mesh.Mesh, *,
                 degree: int = 1, quadrature: str = "gll", quadrature_degree: int | None = None,
                 beta: float = 0.0, jit_options: dict | None = None):
        if not isinstance(system, LagrangianSystem):
            raise InputError(f"system must be a LagrangianSystem, got {type(system).__name__}")
        if mesh.topology.dim != 1:
            raise InputError("the time mesh must be one-dimensional (an interval mesh)")
        if int(degree) < 1:
            raise InputError(f"degree must be >= 1, got {degree!r}")
        t0 = time.perf_counter()
        self.system = system
        self.theta = system.check_params(params)
        self.mesh = mesh
        self.comm = mesh.comm
        self.n = system.n
        self.degree = int(degree)
        self.quadrature = quadrature
        self.V = fem.functionspace(mesh, ("Lagrange", self.degree, (self.n,)))
        self.u = fem.Function(self.V, name="q")
        self.metadata = quadrature_metadata(self.degree, quadrature, quadrature_degree)
        self.theta_c = {k: fem.Constant(mesh, PETSc.ScalarType(0) + np.asarray(v, dtype=float))
                        for k, v in self.theta.items()}
        self._dir = {k: fem.Constant(mesh, np.zeros_like(v)) for k, v in self.theta.items()}
        self.beta_c = fem.Constant(mesh, PETSc.ScalarType(beta))
        self.signals = {k: interpolate_signal(s, mesh, k) for k, s in system.signals.items()}
        self.lam = fem.Function(self.V, name="lambda")
        self._forms: dict[str, fem.Form] = {}
        self.jit_options = jit_options
        self._template = form_template(system, mesh, self.degree, self.metadata, jit_options)
        tp = self._template
        self._coefficients = {tp.q: self.u, tp.lam: self.lam, **{tp.signals[k]: f for k, f in self.signals.items()}}
        self._constants = {tp.beta: self.beta_c, **{tp.theta[k]: c for k, c in self.theta_c.items()},
                           **{tp.dir[k]: c for k, c in self._dir.items()}}
        self.timings = {"setup": time.perf_counter() - t0, "compile": 0.0}

    # -- forms (compiled once per system and discretisation, instantiated per assembler) --------
    def form(self, key: str) -> fem.Form | None:
        """The dolfinx form ``key`` on this mesh and these functions (see :class:`FormTemplate`)."""
        if key not in self._forms:
            t0 = time.perf_counter()
            compiled = self._template.compiled(key, self.comm)
            if compiled is None:
                self._forms[key] = None
            else:
                V = [self.V] * len(compiled.ufl_form.arguments())
                self._forms[key] = fem.create_form(compiled, V, self.mesh, {}, self._coefficients,
                                                   self._constants)
            self.timings["compile"] += time.perf_counter() - t0
        return self._forms[key]

    # -- state ---------------------------------------------------------------
    def set_beta(self, beta: float) -> None:
        self.beta_c.value = float(np.real(beta))

    @property
    def beta(self) -> float:
        return float(self.beta_c.value)

    def set_params(self, params: Mapping[str, np.ndarray]) -> None:
        self.theta = self.system.check_params(params)
        for k, c in self.theta_c.items():
            c.value[...] = self.theta[k]

    # -- assembly --------------------------------------------------------------
    def _scalar(self, key: str) -> float:
        form = self.form(key)
        if form is None:
            return 0.0
        return self.comm.allreduce(fem.assemble_scalar(form), op=_SUM)

    def action(self) -> float:
        """``A_β[q_h]`` (global)."""
        return self._scalar("action")

    def cost(self) -> float:
        """``C_h = ∫ c(q_h, t) dt`` with the action's quadrature (global)."""
        return self._scalar("cost")

    def _vector(self, key: str, b: PETSc.Vec) -> None:
        with b.localForm() as loc:
            loc.set(0.0)
        form = self.form(key)
        if form is not None:
            fpetsc.assemble_vector(b, form)
        b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)

    def residual(self, b: PETSc.Vec) -> None:
        """``F(q_h; φ_i) = ∂A_β/∂q_i`` into the (ghosted) full vector ``b``."""
        self._vector("residual", b)

    def cost_gradient(self, b: PETSc.Vec) -> None:
        """``∂C_h/∂q_i`` into ``b``."""
        self._vector("cost_gradient", b)

    def create_jacobian(self) -> PETSc.Mat:
        A = fpetsc.create_matrix(self.form("jacobian"))
        return A

    def jacobian(self, A: PETSc.Mat) -> None:
        """``∂²A_β/∂q_i∂q_j`` into ``A`` (assembled on return)."""
        A.zeroEntries()
        fpetsc.assemble_matrix(A, self.form("jacobian"))
        A.assemble()

    def metric(self, kind: str) -> PETSc.Mat:
        """Gram matrix of the ``L²`` (``kind="L2"``) or ``H¹`` metric on ``V_h``."""
        M = fpetsc.assemble_matrix(self.form("mass"))
        M.assemble()
        if kind.upper() == "H1":
            K = fpetsc.assemble_matrix(self.form("stiffness"))
            K.assemble()
            M.axpy(1.0, K)
        elif kind.upper() != "L2":
            raise InputError(f"metric must be 'L2' or 'H1', got {kind!r}")
        return M

    def _unit_directions(self):
        for k, val in self.theta.items():
            for idx in np.ndindex(val.shape):
                for c in self._dir.values():
                    c.value[...] = 0.0
                self._dir[k].value[idx] = 1.0
                yield k, idx
        for c in self._dir.values():
            c.value[...] = 0.0

    def theta_gradient(self) -> dict[str, np.ndarray]:
        """``∫ ∂_θ L dt`` along ``q_h`` (the contrast integrand ``I``), per parameter."""
        out = {k: np.zeros(v.shape) for k, v in self.theta.items()}
        form = self.form("theta_dir")
        if form is None:
            return out
        for k, idx in self._unit_directions():
            out[k][idx] = fem.assemble_scalar(form)
        return {k: self.comm.allreduce(v, op=_SUM) for k, v in out.items()}

    def theta_vjp(self, lam: PETSc.Vec) -> dict[str, np.ndarray]:
        """``∂_θ F(q_h; λ) = λᵀ ∂F/∂θ`` for a full vector ``λ``, per parameter."""
        out = {k: np.zeros(v.shape) for k, v in self.theta.items()}
        form = self.form("theta_vjp")
        if form is None:
            return out
        self.lam.x.petsc_vec.array[:] = lam.array_r
        self.lam.x.scatter_forward()
        for k, idx in self._unit_directions():
            out[k][idx] = fem.assemble_scalar(form)
        return {k: self.comm.allreduce(v, op=_SUM) for k, v in out.items()}

    def theta_jvp(self, dtheta: Mapping[str, np.ndarray], b: PETSc.Vec) -> None:
        """``(∂F/∂θ) δθ`` into the full vector ``b``."""
        for k, c in self._dir.items():
            c.value[...] = np.asarray(dtheta.get(k, 0.0))
        self._vector("theta_dF", b)
        for c in self._dir.values():
            c.value[...] = 0.0


_SUM = __import__("mpi4py").MPI.SUM
