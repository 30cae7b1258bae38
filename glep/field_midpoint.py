r"""Any field density with the implicit-midpoint discrete Lagrangian (complex fields, first order in time: NLS).

On Lagrange ``P_k`` (vector-valued for ``components > 1``), with the consistent mass (UFL quadrature),

    L_d(q₀, q₁) = |τ| ∫_Ω ℒ(φ_m, (φ₁ − φ₀)/τ, ∇φ_m; θ, x, t_m) dx,    φ_m = (φ₀ + φ₁)/2,  t_m the step's midpoint,

nudged by the running cost at the midpoint, ``L_d^β = L_d + β ℓ``, ``ℓ(q₀, q₁) = |τ| ∫_R c(Sφ_m, t_m) dx``,
``c = ½ w |φ − y(x, t)|²`` (``S = 1`` forward; ``S`` = the position reversal signs in the echo, so that the
echo of a complex field tracks the conjugate target).  A step solves the discrete Legendre relation
``p₀ + D₁L_d^β(q₀, q₁) = 0`` for ``q₁`` with PETSc SNES (Newton, LU by MUMPS) and sets
``p₁ = D₂L_d^β(q₀, q₁)``: the variational midpoint rule; for NLS (``ℒ = b a_t − a b_t − H``) it is the
implicit midpoint rule of ``i u_t = ∂H/∂u*``.  The discrete loss is

    C_h = Σ_k ℓ(q_k, q_{k+1}) + c_T(q_N),    c_T = ½ w ∫_{R_T} |φ − y_T|² dx.

Compiled forms (one each; ``λ_A, λ_B`` are state-space functions, ``∂_θ`` as in
:mod:`glep.field_system`): the step residual and Jacobian ``D₁L_d^β``, ``D₂L_d^β``,
``J = ∂_{q₁}D₁L_d``; the θ-integrand ``∂_θL_d``; the loss ``ℓ`` and ``c_T`` with ``∂_q c_T``; and for the
discrete adjoint (:mod:`glep.ivp.field_midpoint_adjoint`) the step functional
``Φ = λ_A·D₁L_d + λ_B·D₂L_d + ℓ`` with ``∂_{q₀}Φ``, ``∂_θΦ`` and ``∂_{q₁}(λ_B·D₂L_d + ℓ)``.
"""

from __future__ import annotations

# dolfinx-solver-real configures PETSc before dolfinx or petsc4py load.
import dolfinx_solver  # noqa: F401  isort: skip

from collections.abc import Callable, Mapping

import dolfinx
import numpy as np
import ufl
from dolfinx import fem, la
from mpi4py import MPI
from petsc4py import PETSc
from ufl.algorithms import expand_derivatives

from glep.errors import InputError, SolverError
from glep.field_system import FieldArrays, FieldCost, _as_mesh
from glep.fields import FieldLagrangian


class MidpointFieldSystem(FieldArrays):
    r"""Any density (separable or not, several components) with the implicit-midpoint discrete Lagrangian.

    See the module docstring.  The initial momentum is the Legendre map
    ``p₀ = ∫ ∂ℒ/∂φ_t(φ₀, φ̇₀) · N_i`` (for NLS it depends on ``φ₀`` only).

    Arguments:
        lagrangian, mesh, degree, theta, comm: as :class:`glep.field_system.FieldSystem`.
        dirichlet: ``"zero"`` (every component zero on the boundary) or ``None`` (natural).
        initial: ``(φ₀, φ̇₀)``: functions of the coordinates returning ``(components, npoints)`` arrays
            (``(npoints,)`` for one component) or numbers.
        cost: a :class:`glep.field_system.FieldCost` tracked over time (target: a number or
            ``(x, t) -> UFL vector`` of length ``components``), evaluated at the step midpoints.
        terminal_cost: a :class:`FieldCost` at the final time.
        rtol: relative tolerance of the Newton solve of each step.
    """

    def __init__(self, lagrangian: FieldLagrangian, mesh, *, degree: int = 1, dirichlet="zero",
                 theta: Mapping[str, object] | None = None, initial=(0.0, 0.0), cost: FieldCost | None = None,
                 terminal_cost: FieldCost | None = None, rtol: float = 1e-12, comm: MPI.Comm = MPI.COMM_WORLD):
        if not isinstance(lagrangian, FieldLagrangian):
            raise InputError(f"lagrangian must be a glep.fields.FieldLagrangian, got {type(lagrangian).__name__}")
        if isinstance(degree, bool) or degree not in (1, 2):
            raise InputError(f"degree must be 1 or 2, got {degree!r}")
        if not (isinstance(dirichlet, str) and dirichlet == "zero") and dirichlet is not None:
            raise InputError(f"dirichlet must be 'zero' or None (natural) for the midpoint system, got {dirichlet!r}")
        if not (isinstance(rtol, float) and 0 < rtol < 1):
            raise InputError(f"rtol must be a float in (0, 1), got {rtol!r}")
        if not (isinstance(initial, (tuple, list)) and len(initial) == 2
                and all(isinstance(v, (int, float)) or callable(v) for v in initial)):
            raise InputError("initial must be a pair (φ₀, φ̇₀) of numbers or functions of the coordinates, "
                             f"got {initial!r}")
        for name, c in (("cost", cost), ("terminal_cost", terminal_cost)):
            if c is not None and not isinstance(c, FieldCost):
                raise InputError(f"{name} must be a FieldCost or None, got {type(c).__name__}")
        unknown = sorted(set(theta or {}) - set(lagrangian.parameters))
        if unknown:
            raise InputError(f"theta names unknown parameters {unknown}; the density has "
                             f"{sorted(lagrangian.parameters)}")
        self.lagrangian, self.mesh = lagrangian, _as_mesh(mesh, comm)
        self.comm, self.c = self.mesh.comm, lagrangian.components
        self.tdim = self.mesh.topology.dim
        shape = (self.c,) if self.c > 1 else ()
        self.V = fem.functionspace(self.mesh, ("P", degree, shape))
        self.index_map, self.bs = self.V.dofmap.index_map, self.V.dofmap.index_map_bs
        self.n_owned = self.index_map.size_local * self.bs
        self.n_local = (self.index_map.size_local + self.index_map.num_ghosts) * self.bs
        self.ndofs = self.index_map.size_global * self.bs
        self.x = ufl.SpatialCoordinate(self.mesh)
        self.t, self.tau = fem.Constant(self.mesh, 0.0), fem.Constant(self.mesh, 1.0)  # t: the midpoint time
        self.beta = fem.Constant(self.mesh, 0.0)
        self.sign = fem.Constant(self.mesh, np.ones(self.c))  # S: reversal signs applied inside the cost
        self.q0f, self.q1f = fem.Function(self.V), fem.Function(self.V)
        self.lamA, self.lamB = fem.Function(self.V), fem.Function(self.V)
        self.cost, self.terminal_cost = cost, terminal_cost
        self._init_params(theta or {})
        self._initial = initial
        self._init_bc(dirichlet)
        self._riesz_ksp: dict[str, PETSc.KSP] = {}
        self._compile(rtol)

    # ------------------------------------------------------------------ set-up
    def _init_params(self, theta: Mapping[str, object]) -> None:
        self.params, self.spaces, self._vars = {}, {}, {}
        for name, par in self.lagrangian.parameters.items():
            if par.kind == "scalar":
                c = fem.Constant(self.mesh, 0.0)
                self.params[name], self._vars[name] = c, ufl.variable(c)
            else:
                Q = fem.functionspace(self.mesh, par.element)
                f = fem.Function(Q, name=name)
                self.params[name] = self._vars[name] = f
                self.spaces[name] = Q
            self.set_parameter(name, theta.get(name, par.value))
        self._theta_vecs = {k: la.vector(Q.dofmap.index_map, 1) for k, Q in self.spaces.items()}

    def _init_bc(self, dirichlet) -> None:
        self.bcs = []
        self.bc_dofs = np.zeros(0, dtype=np.int64)
        if dirichlet != "zero":
            return
        fdim = self.tdim - 1
        self.mesh.topology.create_connectivity(fdim, fdim + 1)
        facets = dolfinx.mesh.exterior_facet_indices(self.mesh.topology)
        dofs = fem.locate_dofs_topological(self.V, fdim, facets)
        if self.c > 1:
            self.bcs = [fem.dirichletbc(np.zeros(self.c), dofs, self.V)]
        else:
            self.bcs = [fem.dirichletbc(PETSc.ScalarType(0.0), dofs, self.V)]
        if len(dofs):
            self.bc_dofs = np.concatenate([np.arange(self.bs) + self.bs * d for d in dofs])

    def _density(self, phi, phi_t, t):
        return self.lagrangian(phi, phi_t, ufl.grad(phi), self._vars, self.x, t)

    def _region(self, cost: FieldCost):
        if cost.region is None:
            return ufl.dx
        cells = dolfinx.mesh.locate_entities(self.mesh, self.tdim, cost.region)
        if self.comm.allreduce(len(cells), op=MPI.SUM) == 0:
            raise InputError("FieldCost region contains no cell of the mesh")
        tags = dolfinx.mesh.meshtags(self.mesh, self.tdim, np.sort(cells).astype(np.int32),
                                     np.ones(len(cells), dtype=np.int32))
        return ufl.Measure("dx", domain=self.mesh, subdomain_data=tags, subdomain_id=1)

    def _cost_density(self, cost: FieldCost, phi):
        y = cost.target(self.x, self.t) if callable(cost.target) else \
            (ufl.as_vector([float(cost.target)] * self.c) if self.c > 1 else ufl.as_ufl(float(cost.target)))
        if self.c > 1:
            e = ufl.as_vector([self.sign[i] * phi[i] for i in range(self.c)]) - y
        else:
            e = self.sign * phi - y
        return 0.5 * cost.weight * ufl.inner(e, e) * self._region(cost)

    def _theta_derivative(self, form, name: str):
        """``∂_θ`` of a scalar form: a dual-vector form (fields) or a scalar form (scalars)."""
        if self.lagrangian.parameters[name].kind == "field":
            return fem.form(ufl.derivative(form, self.params[name], ufl.TestFunction(self.spaces[name])))
        var = self._vars[name]
        integrals = [i.reconstruct(integrand=expand_derivatives(ufl.diff(i.integrand(), var)))
                     for i in form.integrals()]
        return fem.form(ufl.Form(integrals))

    def _compile(self, rtol: float) -> None:
        v, du = ufl.TestFunction(self.V), ufl.TrialFunction(self.V)
        q0, q1, tau = self.q0f, self.q1f, self.tau
        phim = 0.5 * (q0 + q1)
        Ld = abs(tau) * self._density(phim, (q1 - q0) / tau, self.t) * ufl.dx
        ell = abs(tau) * self._cost_density(self.cost, phim) if self.cost is not None else None
        Ldb = Ld + self.beta * ell if ell is not None else Ld
        D1 = ufl.derivative(Ldb, q0, v)
        self.D1, self.D2 = fem.form(D1), fem.form(ufl.derivative(Ldb, q1, v))
        self.J = fem.form(ufl.derivative(D1, q1, du))
        self.theta_forms = {k: self._theta_derivative(Ld, k) for k in self.lagrangian.parameters}
        self.ell = fem.form(ell) if ell is not None else None
        # the discrete adjoint: Φ = λ_A·D₁L_d + λ_B·D₂L_d + ℓ
        psi = ufl.derivative(Ld, q1, self.lamB) + (ell if ell is not None else 0)
        phi = ufl.derivative(Ld, q0, self.lamA) + psi
        self.adj_R1 = fem.form(ufl.derivative(psi, q1, v))
        self.adj_R0 = fem.form(ufl.derivative(phi, q0, v))
        self.adj_theta = {k: self._theta_derivative(phi, k) for k in self.lagrangian.parameters}
        self.cT = self.cT_grad = None
        if self.terminal_cost is not None:
            cT = self._cost_density(self.terminal_cost, q1)
            self.cT, self.cT_grad = fem.form(cT), fem.form(ufl.derivative(cT, q1, v))
        w = fem.Function(self.V)
        self._vel = w
        pmap = ufl.derivative(self._density(q0, w, self.t) * ufl.dx, w, v)
        self.legendre = fem.form(pmap)
        self.legendre_adj = fem.form(ufl.derivative(ufl.action(pmap, self.lamA), q0, v))
        self._make_snes(rtol)

    def _make_snes(self, rtol: float) -> None:
        import dolfinx.fem.petsc as fpetsc  # noqa: PLC0415

        self.A = fpetsc.create_matrix(self.J)
        self.b = self.q1f.x.petsc_vec.copy()
        self.p0_vec = self.q1f.x.petsc_vec.copy()
        snes = PETSc.SNES().create(self.comm)
        snes.setFunction(self._residual, self.b)
        snes.setJacobian(self._jacobian, self.A)
        snes.setTolerances(rtol=rtol, atol=1e-13, max_it=50)
        snes.getKSP().setType("preonly")
        pc = snes.getKSP().getPC()
        pc.setType("lu")
        pc.setFactorSolverType("mumps")
        snes.getLineSearch().setType("basic")
        self.snes = snes
        self._adj_ksp = None

    # ------------------------------------------------------------------ SNES callbacks
    def _residual(self, snes, x, b) -> None:
        import dolfinx.fem.petsc as fpetsc  # noqa: PLC0415

        self._load(x)
        with b.localForm() as bl:
            bl.set(0.0)
        fpetsc.assemble_vector(b, self.D1)
        b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        b.axpy(1.0, self.p0_vec)
        fpetsc.set_bc(b, self.bcs, x, -1.0)

    def _load(self, x) -> None:
        """Make ``q₁`` the SNES iterate ``x`` (owned entries, then ghosts)."""
        self.q1f.x.array[:self.n_owned] = x.array_r
        self.q1f.x.scatter_forward()

    def _jacobian(self, snes, x, A, P) -> None:
        self._load(x)
        self.assemble_jacobian(A)

    def assemble_jacobian(self, A=None):
        """``J = ∂_{q₁}D₁L_d`` at the loaded ``(q₀, q₁)`` (identity rows and columns at Dirichlet dofs)."""
        import dolfinx.fem.petsc as fpetsc  # noqa: PLC0415

        A = self.A if A is None else A
        A.zeroEntries()
        fpetsc.assemble_matrix(A, self.J, self.bcs)
        A.assemble()
        return A

    # ------------------------------------------------------------------ assembly helpers
    def vector(self, form) -> np.ndarray:
        """Assemble a linear form on the state space (ghosts updated; a new local array)."""
        b = la.vector(self.index_map, self.bs)
        fem.assemble_vector(b.array, form)
        b.scatter_reverse(la.InsertMode.add)
        b.scatter_forward()
        return b.array.copy()

    def scalar(self, form) -> float:
        """Assemble a scalar form, summed over ranks."""
        return self.comm.allreduce(fem.assemble_scalar(form), op=MPI.SUM)

    def theta_vectors(self, forms: dict) -> dict[str, object]:
        """Assemble ``∂_θ`` forms: local arrays for fields, *rank-local* numbers for scalars."""
        out = {}
        for name, form in forms.items():
            if name in self._theta_vecs:
                b = self._theta_vecs[name]
                b.array[:] = 0.0
                fem.assemble_vector(b.array, form)
                b.scatter_reverse(la.InsertMode.add)
                b.scatter_forward()
                out[name] = b.array.copy()
            else:
                out[name] = fem.assemble_scalar(form)
        return out

    def load_step(self, q0: np.ndarray, q1: np.ndarray, t_mid: float, tau: float) -> None:
        """Load the positions, the midpoint time and the signed step of one step into the forms."""
        self.q0f.x.array[:] = q0
        self.q1f.x.array[:] = q1
        self.t.value, self.tau.value = t_mid, tau

    # ------------------------------------------------------------------ states and steps
    def initial_state(self, t0: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """``(q₀, p₀)``: interpolated ``φ₀`` and the Legendre map of ``(φ₀, φ̇₀)`` (zero at Dirichlet dofs)."""
        q0 = self.interpolate(self._initial[0])
        q0[self.bc_dofs] = 0.0
        return q0, self.legendre_map(q0, t0)

    def legendre_map(self, q0: np.ndarray, t0: float = 0.0) -> np.ndarray:
        """``p₀ = ∫ ∂ℒ/∂φ_t(φ₀, φ̇₀) · N_i`` with the system's initial velocity (zero at Dirichlet dofs)."""
        self.q0f.x.array[:] = q0
        self.t.value = t0
        self._vel.x.array[:] = self.interpolate(self._initial[1])
        p0 = self.vector(self.legendre)
        p0[self.bc_dofs] = 0.0
        return p0

    def legendre_transpose(self, q0: np.ndarray, direction: np.ndarray, t0: float = 0.0) -> np.ndarray:
        """``(∂p₀/∂q₀)ᵀ · direction`` of :meth:`legendre_map` (zero at Dirichlet dofs)."""
        self.q0f.x.array[:] = q0
        self.t.value = t0
        self._vel.x.array[:] = self.interpolate(self._initial[1])
        self.lamA.x.array[:] = direction
        out = self.vector(self.legendre_adj)
        out[self.bc_dofs] = 0.0
        return out

    def step(self, q0: np.ndarray, p0: np.ndarray, t0: float, tau: float, *, t_mid: float | None = None,
             beta: float = 0.0) -> tuple[np.ndarray, np.ndarray, int]:
        """One midpoint step of signed size ``tau`` from ``(q0, p0)``: ``(q1, p1, Newton iterations)``.

        ``t_mid`` is the time at which the density and the targets are read (default ``t0 + tau/2``);
        ``beta`` nudges by the running cost.  After the call the forms hold ``(q0, q1)`` of the step.
        """
        self.load_step(q0, q0, t0 + 0.5 * tau if t_mid is None else t_mid, tau)
        self.beta.value = beta
        self.p0_vec.array[:] = p0[:self.n_owned]
        x = self.q1f.x.petsc_vec.copy()
        self.snes.solve(None, x)
        self._load(x)
        reason = self.snes.getConvergedReason()
        if reason <= 0:
            raise SolverError(f"midpoint step at t = {t0:g}: Newton did not converge", reason=reason)
        p1 = self.vector(self.D2)
        p1[self.bc_dofs] = 0.0
        return self.q1f.x.array.copy(), p1, self.snes.getIterationNumber()

    def transpose_solve(self, rhs: np.ndarray) -> np.ndarray:
        """``λ`` with ``Jᵀ λ = rhs`` at the loaded step (MUMPS LU; zero at Dirichlet dofs)."""
        self.beta.value = 0.0  # the adjoint linearises the free (β = 0) step
        A = self.assemble_jacobian()
        if self._adj_ksp is None:
            ksp = PETSc.KSP().create(self.comm)
            ksp.setType("preonly")
            ksp.getPC().setType("lu")
            ksp.getPC().setFactorSolverType("mumps")
            self._adj_ksp = ksp
        ksp = self._adj_ksp
        ksp.setOperators(A)
        b, x = A.createVecRight(), A.createVecRight()
        r = np.array(rhs, dtype=float)
        r[self.bc_dofs] = 0.0
        b.array[:] = r[:self.n_owned]
        ksp.solveTranspose(b, x)
        if ksp.getConvergedReason() <= 0:
            raise SolverError("discrete adjoint of the midpoint step: the transposed solve failed",
                              reason=ksp.getConvergedReason())
        f = fem.Function(self.V)
        f.x.array[:self.n_owned] = x.array_r
        f.x.scatter_forward()
        return f.x.array.copy()

    # ------------------------------------------------------------------ costs
    @property
    def has_cost(self) -> bool:
        return self.ell is not None

    @property
    def has_terminal_cost(self) -> bool:
        return self.cT is not None

    def terminal_value(self, q: np.ndarray, t: float) -> float:
        """``c_T(q)`` (0 without a terminal cost), summed over ranks."""
        if self.cT is None:
            return 0.0
        self.q1f.x.array[:] = q
        self.t.value = t
        return self.scalar(self.cT)

    def terminal_gradient(self, q: np.ndarray, t: float) -> np.ndarray:
        """``∂_q c_T(q)`` (zeros without a terminal cost), zero at Dirichlet dofs."""
        if self.cT is None:
            return np.zeros(self.n_local)
        self.q1f.x.array[:] = q
        self.t.value = t
        g = self.vector(self.cT_grad)
        g[self.bc_dofs] = 0.0
        return g

    # ------------------------------------------------------------------ reversal, output
    def flip(self, q: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Time reversal ``(σ_q q, σ_v p)`` per component (the density's reversal signs)."""
        sq, sv = (np.asarray(s_, dtype=float) for s_ in self.lagrangian.reversal_signs)
        return (q.reshape(-1, self.c) * sq).ravel(), (p.reshape(-1, self.c) * sv).ravel()

    def check_state(self, a: np.ndarray, name: str) -> np.ndarray:
        """``a`` as a real local array of this rank's length (else InputError)."""
        arr = np.asarray(a)
        if arr.shape != (self.n_local,) or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise InputError(f"{name} must be a real local dof array of shape ({self.n_local},) on rank "
                             f"{self.comm.rank}, got {arr.shape} {arr.dtype}")
        return arr

    def error_norm(self, q: np.ndarray, exact: Callable, t: float = 0.0, degree: int = 8) -> float:
        """``‖φ_h − φ‖_{L²}`` with ``exact(x, t) -> UFL`` (a vector for several components)."""
        f = fem.Function(self.V)
        f.x.array[:] = q
        tt = fem.Constant(self.mesh, float(t))
        e = f - exact(self.x, tt)
        form = fem.form(ufl.inner(e, e) * ufl.dx(metadata={"quadrature_degree": degree}))
        return float(np.sqrt(self.comm.allreduce(fem.assemble_scalar(form), op=MPI.SUM)))

    def gather(self, a: np.ndarray, space: str | None = None) -> np.ndarray:
        """The global array of ``a`` ordered by dof coordinates (components kept together), on every rank."""
        V = self.V if space is None else self.spaces[space]
        bs = V.dofmap.index_map_bs
        n = V.dofmap.index_map.size_local
        X = np.concatenate(self.comm.allgather(V.tabulate_dof_coordinates()[:n]))
        vals = np.concatenate(self.comm.allgather(np.asarray(a)[:n * bs].reshape(n, bs)))
        return vals[np.lexsort(np.round(X, 12).T[::-1])].ravel()

    def __repr__(self) -> str:
        return (f"MidpointFieldSystem({self.lagrangian.name!r}, {self.tdim}-D mesh, {self.ndofs} dofs, "
                f"{self.comm.size} rank(s))")


def check_midpoint_system(system, who: str) -> None:
    """InputError unless ``system`` is a :class:`MidpointFieldSystem` (``who`` names the caller)."""
    if not isinstance(system, MidpointFieldSystem):
        raise InputError(f"{who} needs a glep.field_midpoint.MidpointFieldSystem, got {type(system).__name__} "
                         "(a FieldSystem is stepped by the leapfrog: field_forward, field_adjoint, field_echo)")


__all__ = ["MidpointFieldSystem", "check_midpoint_system"]
