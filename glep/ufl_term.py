r"""A term defined by a single UFL expression: every derivative is derived, none hand-written.

:class:`UFLTerm` takes a user function ``expr(q, v, theta, x, t)`` returning a
UFL scalar and implements the whole :class:`glep.terms.Term` interface from it:
``ufl.diff`` of the expression with respect to ``ufl.variable`` wrappers of
``q``, ``v`` and of every parameter gives the gradients, Hessian actions and
mixed parameter derivatives, which are compiled by FFCx into
:class:`dolfinx.fem.Expression` kernels and evaluated on a *batch mesh*.

The batch mesh
--------------
A batch of ``B`` states is an interval mesh of (at least) ``B`` cells on
``MPI.COMM_SELF``: ``q``, ``v``, the inputs ``x`` and the directions
(``dq, dv, a, b, δθ``) are vector (or tensor) DG0 functions holding one batch
member per cell, and so is the time ``t`` (a scalar DG0 function): a batch may
mix time nodes, so the states of all ``N + 1`` nodes of a trajectory are
evaluated in one kernel call.  Parameters ``θ`` are
:class:`dolfinx.fem.Constant`.  Evaluating a compiled expression at the cell
midpoints gives one row per batch member.  Extra leading axes (the ``K``
tangents of ``hessian_action`` and ``theta_jvp``) are flattened into the batch.

Each method group is compiled once into one kernel returning all its blocks
packed in a flat vector:

============ ==================================================================
``"grad"``   ``L``, ``∂_q L``, ``∂_v L``  (``lagrangian`` and ``gradient``)
``"hess"``   ``∂_q D``, ``∂_v D`` with ``D = ∂_q L·dq + ∂_v L·dv``
``"theta"``  ``∂_θ L`` and ``∂_θ (∂_q L·a + ∂_v L·b)`` for every parameter
``"jvp"``    ``∂_q E``, ``∂_v E`` with ``E = Σ_p ∂_{θ_p} L : δθ_p``
============ ==================================================================

Kernels are cached per (group, batch capacity, scalar type); the capacity is
rounded up to a power of two (at least 8 cells) so that repeated calls only set
values and evaluate.  ``ufl.variable`` labels are stripped before compilation,
so the UFL signature — hence FFCx's in-memory and on-disk JIT cache — is the
same across capacities and across processes.  :attr:`UFLTerm.stats` records
the time spent compiling and evaluating.

Blocks that vanish symbolically (``ufl.algorithms.expand_derivatives`` returns
``Zero``) are never compiled and are returned as ``None`` following the Term
conventions; in particular ``depends_on_velocity`` is detected from ``∂_v L``
and :attr:`UFLTerm.reads_time` from the terminals of ``L``.  A term with
``∂_v L ≡ 0`` is a potential ``L = −V(q, θ, x, t)``: the system treats it like
a :class:`glep.PotentialTerm` (separable with one kinetic term).

Complex inputs
--------------
The library's complex-step nudging evaluates terms at complex states.  DOLFINx
compiles and evaluates ``complex128`` kernels independently of the PETSc
scalar type, so a complex call evaluates the *holomorphic extension* of the
expression: after derivative expansion, ``conj``/``real`` nodes (introduced by
e.g. ``ufl.inner``) are removed, which is exact for real arguments and
analytic.  Expressions with non-holomorphic operations (``abs``, conditionals,
``min``/``max``, ``sign``, ``atan2``, Bessel functions, ``imag``, ``erf``)
raise :class:`glep.InputError` for complex inputs: complex-step is not
supported for them.
"""

from __future__ import annotations

# dolfinx-solver-real must configure PETSc before dolfinx or petsc4py load (kernels are built on first use).
import dolfinx_solver  # noqa: F401  isort: skip

import math
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import ufl
from ufl.algebra import Abs, Imag
from ufl.algorithms.ad import expand_derivatives
from ufl.algorithms.remove_complex_nodes import remove_complex_nodes
from ufl.conditional import Condition, Conditional, MaxValue, MinValue
from ufl.constantvalue import Zero
from ufl.corealg.map_dag import map_expr_dag
from ufl.corealg.multifunction import MultiFunction
from ufl.corealg.traversal import unique_pre_traversal
from ufl.mathfunctions import Atan2, BesselFunction, Erf

from glep.costs import TrackingCost
from glep.errors import InputError
from glep.potentials import InputDrive
from glep.terms import Array, Inputs, Params, Term

UFLExpr = ufl.core.expr.Expr
LagrangianExpr = Callable[..., UFLExpr]

#: Minimal number of cells of a batch mesh.
MIN_CAPACITY = 8
#: Reference point of the interval at which DG0 kernels are evaluated.
_MIDPOINT = np.array([[0.5]])

_NON_HOLOMORPHIC: tuple[type, ...] = (
    Abs, Imag, Condition, Conditional, MinValue, MaxValue, Atan2, Erf, BesselFunction,
)


# -- UFL helpers ------------------------------------------------------------
class _VariableStripper(MultiFunction):
    """Replace every ``Variable`` by the expression it labels (DAG-aware)."""

    expr = MultiFunction.reuse_if_untouched

    def variable(self, o: UFLExpr, e: UFLExpr, label: UFLExpr) -> UFLExpr:
        return e


def _expand(e: UFLExpr) -> UFLExpr:
    """Lower the algebra, apply every derivative and strip ``Variable`` labels."""
    e = expand_derivatives(e)
    return map_expr_dag(_VariableStripper(), e)


def _is_zero(e: UFLExpr) -> bool:
    return isinstance(_expand(e), Zero)


def _contract(a: UFLExpr, b: UFLExpr) -> UFLExpr:
    """Full contraction ``Σ a[i...] b[i...]`` without complex conjugation."""
    rank = len(a.ufl_shape)
    if rank == 0:
        return a * b
    idx = ufl.indices(rank)
    return a[idx] * b[idx]


def _components(e: UFLExpr) -> list[UFLExpr]:
    shape = e.ufl_shape
    if not shape:
        return [e]
    return [e[idx] for idx in np.ndindex(*shape)]


def _holomorphic(e: UFLExpr, term: str) -> UFLExpr:
    """Check that ``e`` (expanded) is holomorphic and drop ``conj``/``real`` nodes."""
    for node in unique_pre_traversal(e):
        if isinstance(node, _NON_HOLOMORPHIC):
            raise InputError(
                f"complex-step is not supported by UFLTerm {term!r}: its expression contains the "
                f"non-holomorphic operation {type(node).__name__}, so evaluating it at complex "
                "arguments does not give the complex-step derivative. Use real nudging "
                "(glep.estimators.nudging.Centred or OneSided) with this term")
    try:
        return remove_complex_nodes(e)
    except ValueError as exc:
        raise InputError(f"complex-step is not supported by UFLTerm {term!r}: {exc}") from exc


def _as_shape(shape: int | Sequence[int], name: str) -> tuple[int, ...]:
    try:
        if isinstance(shape, (int, np.integer)):
            return (int(shape),)
        return tuple(int(s) for s in shape)
    except (TypeError, ValueError) as exc:
        raise InputError(f"parameter {name!r} must have a shape (tuple of ints), got {shape!r}") from exc


def _size(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


# -- symbolic blocks --------------------------------------------------------
class _Blocks:
    """The UFL expressions of every derivative block, for given UFL terminals.

    ``dirs`` holds the direction terminals: ``dq, dv, a, b`` (shape ``(n,)``)
    and ``dth:<name>`` (the parameter's shape).
    """

    def __init__(self, term: UFLTerm, q: UFLExpr, v: UFLExpr, theta: Mapping[str, UFLExpr],
                 x: Mapping[str, UFLExpr], t: UFLExpr, dirs: Mapping[str, UFLExpr]):
        self.qv = ufl.variable(q)
        self.vv = ufl.variable(v)
        self.thv = {k: ufl.variable(c) for k, c in theta.items()}
        self.dirs = dirs
        L = ufl.as_ufl(term.ufl_lagrangian(self.qv, self.vv, dict(self.thv), dict(x), t))
        if L.ufl_shape != ():
            raise InputError(f"UFLTerm {term.label!r}: expr must return a scalar, got shape {L.ufl_shape}")
        self.L = L
        self.Lq = ufl.diff(L, self.qv)
        self.Lv = ufl.diff(L, self.vv)

    def get(self, name: str) -> UFLExpr:
        """A block by name (see :data:`UFLTerm.BLOCKS`)."""
        d = self.dirs
        if name == "L":
            return self.L
        if name == "Lq":
            return self.Lq
        if name == "Lv":
            return self.Lv
        if name in ("Hq_dq", "Hv_dq"):
            return ufl.diff(ufl.dot(self.Lq, d["dq"]), self.qv if name[1] == "q" else self.vv)
        if name in ("Hq_dv", "Hv_dv"):
            return ufl.diff(ufl.dot(self.Lv, d["dv"]), self.qv if name[1] == "q" else self.vv)
        kind, p = name.split(":", 1)
        th = self.thv[p]
        if kind == "T":
            return ufl.diff(self.L, th)
        if kind == "Va":
            return ufl.diff(ufl.dot(self.Lq, d["a"]), th)
        if kind == "Vb":
            return ufl.diff(ufl.dot(self.Lv, d["b"]), th)
        if kind in ("Jq", "Jv"):
            e = _contract(ufl.diff(self.L, th), d["dth:" + p])
            return ufl.diff(e, self.qv if kind == "Jq" else self.vv)
        raise KeyError(name)


class _Context:
    """A batch mesh of ``capacity`` cells with its functions, constants and kernels."""

    def __init__(self, term: UFLTerm, capacity: int, dtype: type):
        from dolfinx import fem, mesh
        from mpi4py import MPI

        self.capacity = capacity
        self.dtype = dtype
        self.mesh = mesh.create_interval(MPI.COMM_SELF, capacity, [0.0, 1.0])
        self.cells = np.arange(capacity, dtype=np.int32)
        spaces: dict[tuple[int, ...], object] = {}

        def function(shape: tuple[int, ...]):
            if shape not in spaces:
                spaces[shape] = fem.functionspace(self.mesh, ("DG", 0, shape))
            return fem.Function(spaces[shape], dtype=dtype)

        n = term.n
        self.fields: dict[str, tuple[object, tuple[int, ...]]] = {}
        for name in ("q", "v", "dq", "dv", "a", "b"):
            self.fields[name] = (function((n,)), (n,))
        for name in term.inputs:
            m = term.input_dims[name]
            self.fields["x:" + name] = (function((m,)), (m,))
        for name, shape in term.parameters.items():
            self.fields["dth:" + name] = (function(shape), shape)
        self.fields["t"] = (function(()), ())
        # Cached writable views of the DG0 values, one row per cell (``None`` permutation when
        # the dof of cell c is block c, as on a serial interval mesh).
        self.views: dict[str, tuple[Array, Array | None]] = {}
        for k, (fn, shape) in self.fields.items():
            perm = np.asarray(fn.function_space.dofmap.list[:, 0])
            identity = np.array_equal(perm, np.arange(capacity))
            self.views[k] = (fn.x.array.reshape(capacity, _size(shape)), None if identity else perm)
        self.theta = {k: fem.Constant(self.mesh, np.zeros(s, dtype=dtype)) for k, s in term.parameters.items()}
        self.theta_views = {k: c._cpp_object.value for k, c in self.theta.items()}
        f = {k: fv for k, (fv, _) in self.fields.items()}
        dirs = {k: f[k] for k in ("dq", "dv", "a", "b")}
        dirs.update({k: f[k] for k in f if k.startswith("dth:")})
        x = {name: f["x:" + name] for name in term.inputs}
        self.blocks = _Blocks(term, f["q"], f["v"], self.theta, x, f["t"], dirs)
        self.kernels: dict[str, _Kernel | None] = {}

    def set_field(self, name: str, values: Array, lead: tuple[int, ...], B: int) -> None:
        """Write ``values`` (broadcast to ``lead + shape``) into the first ``B`` cells."""
        view, perm = self.views[name]
        shape = self.fields[name][1]
        if perm is None:
            view[:B].reshape(lead + shape)[...] = values
        else:
            view[perm[:B]] = np.broadcast_to(values, lead + shape).reshape(B, -1)


class _Kernel:
    """A compiled kernel group and how its inputs are packed.

    The kernel reads DG0 coefficients (batch fields) and constants (parameters).
    For a DG0 coefficient the packed per-cell data is just its values, so the
    coefficient array ``w`` of shape ``(B, Σ sizes)`` is filled straight from
    the NumPy inputs (in the kernel's coefficient order) and handed with the
    packed constants to ``tabulate_expression``; nothing is copied into the
    dolfinx functions.  This direct path is checked once against
    :meth:`dolfinx.fem.Expression.eval` on random data; if it disagrees (or
    the C++ entry points differ), every call takes ``eval``.
    """

    def __init__(self, expr: object, layout: list[tuple[str, tuple[int, ...]]], ctx: _Context):
        from ufl.algorithms.analysis import extract_coefficients, extract_constants

        self.expr = expr
        self.layout = layout
        self.width = sum(_size(shape) for _, shape in layout)
        self.fast = False
        try:
            ufcx = expr._ufcx_expression
            original = extract_coefficients(expr.ufl_expression)
            names = {id(fn): name for name, (fn, _) in ctx.fields.items()}
            self.coefficients, off = [], 0
            for i in range(ufcx.num_coefficients):
                name = names[id(original[ufcx.original_coefficient_positions[i]])]
                size = _size(ctx.fields[name][1])
                self.coefficients.append((name, off, size, ctx.fields[name][1]))
                off += size
            self.n_coefficients = off
            params = {id(c): k for k, c in ctx.theta.items()}
            self.constants = [params[id(c)] for c in extract_constants(expr.ufl_expression)]
            self.fast = self._agrees_with_eval(ctx)
        except Exception:  # noqa: BLE001 - any mismatch of dolfinx internals: use the public eval
            self.fast = False

    def _agrees_with_eval(self, ctx: _Context) -> bool:
        """Run both paths on random fields and parameters (3 cells) and compare."""
        rng = np.random.default_rng(0)
        B = min(3, ctx.capacity)
        fields = {name: 0.5 + rng.random((B,) + shape) for name, (_, shape) in ctx.fields.items()}
        theta = {k: 0.5 + rng.random(c.value.shape) for k, c in ctx.theta.items()}
        if np.issubdtype(ctx.dtype, np.complexfloating):
            fields = {k: a + 0.1j * rng.random(a.shape) for k, a in fields.items()}
        direct = self.run(ctx, (B,), B, fields, theta)
        via_eval = self.run_eval(ctx, (B,), B, fields, theta)
        return bool(np.allclose(direct, via_eval, rtol=1e-13, atol=0.0, equal_nan=True))

    def run(self, ctx: _Context, lead: tuple[int, ...], B: int, fields: Mapping[str, Array],
            theta: Mapping[str, Array]) -> Array:
        """The flat kernel values, ``(B, width)``, by direct packing."""
        from dolfinx import cpp

        w = np.zeros((B, self.n_coefficients), ctx.dtype)
        wl = w.reshape(lead + (self.n_coefficients,))  # a view: one row per batch member, batch axes kept
        for name, off, size, shape in self.coefficients:
            val = fields.get(name)
            if val is None:
                continue
            if len(shape) == 1:
                wl[..., off:off + size] = val  # NumPy broadcasting over the batch axes
            elif not shape:
                wl[..., off] = val
            else:
                w[:, off:off + size] = np.broadcast_to(val, lead + shape).reshape(B, size)
        c = np.zeros(0, ctx.dtype)
        if self.constants:
            c = np.concatenate([np.ravel(theta[k]) for k in self.constants]).astype(ctx.dtype)
        values = np.zeros((B, 1, self.width), ctx.dtype)
        cpp.fem.tabulate_expression(values, self.expr._cpp_object, c, w, ctx.mesh._cpp_object, ctx.cells[:B])
        return values.reshape(B, self.width)

    def run_eval(self, ctx: _Context, lead: tuple[int, ...], B: int, fields: Mapping[str, Array],
                 theta: Mapping[str, Array]) -> Array:
        """The flat kernel values, ``(B, width)``, through the dolfinx functions and ``Expression.eval``."""
        for name, values in fields.items():
            ctx.set_field(name, values, lead, B)
        for k, val in theta.items():
            ctx.theta_views[k][...] = val
        return self.expr.eval(ctx.mesh, ctx.cells[:B]).reshape(B, -1)


class UFLTerm(Term):
    r"""A Lagrangian term given by one UFL expression; all derivatives are derived by UFL.

    What the expression reads decides how the term is used: one whose ``∂_v L``
    vanishes symbolically is a potential (``L = −V(q, θ, x, t)``), so with one
    :class:`~glep.terms.KineticTerm` the system is separable (Störmer–Verlet,
    RHEL).  The time ``t`` is a per-point field of the batch mesh, so the term
    accepts an array of times (one per batch member) and many time nodes are
    evaluated in one kernel call (``explicit_time`` is therefore false).

    Parameters
    ----------
    n:
        Number of degrees of freedom.
    expr:
        ``expr(q, v, theta, x, t) -> UFL scalar``: ``q``, ``v`` are UFL vectors
        of shape ``(n,)``, ``theta`` a dict of UFL objects with the declared
        parameter shapes (``ufl.variable`` wrappers of
        :class:`dolfinx.fem.Constant`), ``x`` a dict of UFL vectors (one per
        input signal) and ``t`` a UFL scalar.  The same function is returned
        by :meth:`ufl_lagrangian` for the finite-element backend.  Use holomorphic operations (``ufl.dot``,
        ``ufl.elem_mult``, powers, ``cos``, ``exp``, ``ln`` ...) to keep
        complex-step nudging available.  An expression that does not read
        ``v`` makes the term a potential; one that reads ``t`` is evaluated
        with an array ``t`` (one time per batch member) on many nodes at once
        and replayed as ``t → T − t`` by the echo (:meth:`time_reversed`).
    parameters:
        Trainable parameters, name -> shape.
    inputs:
        Input signals read by the term: a mapping name -> dimension, or a
        sequence of names (dimensions are then read from the system's signals
        or from the first call).
    depends_on_velocity:
        ``None`` (default) detects it from ``∂_v L`` symbolically; an explicit
        ``False`` is checked against the expression.
    name:
        A label used in reports and error messages.

    Attributes
    ----------
    stats:
        ``compiles``, ``compile_seconds``, ``evals``, ``eval_seconds``,
        ``contexts`` (batch meshes created), ``eval_fallbacks`` (kernels
        evaluated through ``Expression.eval`` because the direct packing did
        not reproduce it; normally 0).

    Examples
    --------
    >>> import ufl
    >>> def lag(q, v, th, x, t):
    ...     return 0.5 * (1 + q[0] ** 2) * v[0] ** 2 - th["k"] * (1 - ufl.cos(q[0]))
    >>> term = UFLTerm(1, lag, parameters={"k": ()})
    """

    #: ``t`` may be an array of per-member times: callers need not evaluate node by node.
    explicit_time = False

    #: Names of the derivative blocks (``<kind>:<parameter>`` for parameter blocks).
    BLOCKS = ("L", "Lq", "Lv", "Hq_dq", "Hq_dv", "Hv_dq", "Hv_dv", "T", "Va", "Vb", "Jq", "Jv")

    def __init__(self, n: int, expr: LagrangianExpr, parameters: Mapping[str, Sequence[int]] | None = None,
                 inputs: Mapping[str, int] | Sequence[str] = (), depends_on_velocity: bool | None = None,
                 name: str = "UFLTerm"):
        if isinstance(n, bool) or int(n) != n or n < 1:
            raise InputError(f"n must be a positive integer, got {n!r}")
        super().__init__(int(n))
        if not callable(expr):
            raise InputError(f"expr must be a callable expr(q, v, theta, x, t), got {type(expr).__name__}")
        self._expr = expr
        self.label = str(name)
        self.parameters = {}
        for key, shape in dict(parameters or {}).items():
            shape = _as_shape(shape, key)
            if any(s < 1 for s in shape):
                raise InputError(f"parameter {key!r} must have a non-empty shape, got {shape}")
            self.parameters[str(key)] = shape
        if isinstance(inputs, str):
            raise InputError(f"inputs must be a mapping name -> dimension or a sequence of names, got {inputs!r}")
        if isinstance(inputs, Mapping):
            self.inputs = tuple(str(k) for k in inputs)
            self.input_dims: dict[str, int] = {str(k): int(m) for k, m in inputs.items()}
        else:
            self.inputs = tuple(str(k) for k in inputs)
            self.input_dims = {}
        self._declared_velocity = depends_on_velocity
        self._zero: dict[str, bool] | None = None
        self._reads_time = True
        self._reversed: dict[float, UFLTerm] = {}
        self._contexts: dict[tuple[int, str], _Context] = {}
        self._by_batch: dict[tuple[int, type], _Context] = {}
        self.stats = {"compiles": 0, "compile_seconds": 0.0, "evals": 0, "eval_seconds": 0.0, "contexts": 0,
                      "eval_fallbacks": 0}
        if self._dims_known():
            self._analyse()

    # -- symbolic analysis ----------------------------------------------------
    def _dims_known(self) -> bool:
        return all(k in self.input_dims for k in self.inputs)

    def _block_names(self) -> list[str]:
        names = ["L", "Lq", "Lv", "Hq_dq", "Hq_dv", "Hv_dq", "Hv_dv"]
        for p in self.parameters:
            names += [f"{kind}:{p}" for kind in ("T", "Va", "Vb", "Jq", "Jv")]
        return names

    def _analyse(self) -> dict[str, bool]:
        """Which blocks vanish identically (pure UFL, no compilation)."""
        if self._zero is not None:
            return self._zero
        import basix.ufl

        domain = ufl.Mesh(basix.ufl.element("Lagrange", "interval", 1, shape=(1,)))

        def coefficient(shape):
            return ufl.Coefficient(ufl.FunctionSpace(domain, basix.ufl.element("DG", "interval", 0, shape=shape)))

        n = self.n
        dirs = {k: coefficient((n,)) for k in ("dq", "dv", "a", "b")}
        dirs.update({"dth:" + p: coefficient(s) for p, s in self.parameters.items()})
        theta = {p: ufl.Constant(domain, shape=s) for p, s in self.parameters.items()}
        x = {k: coefficient((self.input_dims[k],)) for k in self.inputs}
        t = coefficient(())
        try:
            blocks = _Blocks(self, coefficient((n,)), coefficient((n,)), theta, x, t, dirs)
            zero = {name: _is_zero(blocks.get(name)) for name in self._block_names()}
        except InputError:
            raise
        except Exception as exc:  # the user's expression: shapes or operations UFL refuses
            dims = {k: (self.input_dims[k],) for k in self.inputs}
            raise InputError(f"UFLTerm {self.label!r}: expr(q, v, theta, x, t) failed for q, v of shape ({n},), "
                             f"parameters {self.parameters}, inputs {dims}: {type(exc).__name__}: {exc}") from exc
        if self._declared_velocity is False and not zero["Lv"]:
            raise InputError(f"UFLTerm {self.label!r} was declared depends_on_velocity=False but its "
                             "expression depends on v")
        self._reads_time = any(node is t for node in unique_pre_traversal(_expand(blocks.L)))
        self._zero = zero
        return zero

    def _analysis_or_error(self, what: str) -> dict[str, bool]:
        """The symbolic analysis; a clear error if input dimensions are still unknown."""
        if self._zero is None and not self._dims_known():
            missing = [k for k in self.inputs if k not in self.input_dims]
            raise InputError(f"UFLTerm {self.label!r}: give the input dimensions (inputs={{name: dim}}) for "
                             f"{missing} to detect {what} before the first evaluation")
        return self._analyse()

    def set_input_dims(self, dims: Mapping[str, int]) -> None:
        """Learn the dimensions of the inputs the term reads (e.g. from a system's signals).

        Arguments
        ---------
        dims:
            name -> dimension ``m`` of the input vector ``x[name]``; names the term
            does not read are ignored.

        Raises
        ------
        InputError
            A dimension contradicts one declared or learnt before.
        """
        for k in self.inputs:
            if k not in dims:
                continue
            m = int(dims[k])
            if k in self.input_dims and self.input_dims[k] != m:
                raise InputError(f"UFLTerm {self.label!r} reads input {k!r} of dimension {self.input_dims[k]}, "
                                 f"but the signal {k!r} has dimension {m}")
            self.input_dims[k] = m

    @property
    def depends_on_velocity(self) -> bool:  # type: ignore[override]
        """Whether ``∂_v L`` is not identically zero (detected symbolically)."""
        if self._zero is None and not self._dims_known() and self._declared_velocity is not None:
            return bool(self._declared_velocity)
        zero = self._analysis_or_error("depends_on_velocity")
        if self._declared_velocity is not None:
            return bool(self._declared_velocity)
        return not zero["Lv"]

    @depends_on_velocity.setter
    def depends_on_velocity(self, value: bool) -> None:
        self._declared_velocity = bool(value)

    @property
    def reads_time(self) -> bool:
        """Whether the expression reads ``t`` itself (not only through input signals), detected symbolically."""
        self._analysis_or_error("reads_time")
        return self._reads_time

    def nonzero_blocks(self) -> list[str]:
        """Names of the derivative blocks that do not vanish symbolically."""
        return [k for k, z in self._analyse().items() if not z]

    # -- kernels --------------------------------------------------------------
    def _variant(self, ctx: _Context, group: str) -> list[tuple[str, UFLExpr, tuple[int, ...]]]:
        zero = self._analyse()
        get = ctx.blocks.get
        n = (self.n,)
        out: list[tuple[str, UFLExpr, tuple[int, ...]]] = []

        def add(name, parts, shape):
            parts = [get(p) for p in parts if not zero[p]]
            if parts:
                out.append((name, sum(parts[1:], parts[0]), shape))

        if group == "grad":
            add("L", ["L"], ())
            add("Lq", ["Lq"], n)
            add("Lv", ["Lv"], n)
        elif group == "hess":
            add("Hq", ["Hq_dq", "Hq_dv"], n)
            add("Hv", ["Hv_dq", "Hv_dv"], n)
        elif group == "theta":
            for p, s in self.parameters.items():
                add("T:" + p, ["T:" + p], s)
                add("V:" + p, ["Va:" + p, "Vb:" + p], s)
        elif group == "jvp":
            add("Jq", [f"Jq:{p}" for p in self.parameters], n)
            add("Jv", [f"Jv:{p}" for p in self.parameters], n)
        else:
            raise KeyError(group)
        return out

    def _context(self, B: int, dtype: type) -> _Context:
        ctx = self._by_batch.get((B, dtype))
        if ctx is not None:
            return ctx
        capacity = max(MIN_CAPACITY, 1 << max(0, math.ceil(math.log2(max(B, 1)))))
        key = (capacity, np.dtype(dtype).name)
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = _Context(self, capacity, dtype)
            self._contexts[key] = ctx
            self.stats["contexts"] += 1
        self._by_batch[(B, dtype)] = ctx
        return ctx

    def _kernel(self, ctx: _Context, group: str) -> _Kernel | None:
        if group in ctx.kernels:
            return ctx.kernels[group]
        from dolfinx import fem
        from mpi4py import MPI

        layout = self._variant(ctx, group)
        if not layout:
            ctx.kernels[group] = None
            return None
        flat = ufl.as_vector([c for _, e, _ in layout for c in _components(e)])
        flat = _expand(flat)
        if np.issubdtype(ctx.dtype, np.complexfloating):
            flat = _holomorphic(flat, self.label)
        t0 = time.perf_counter()
        try:
            kernel = fem.Expression(flat, _MIDPOINT, comm=MPI.COMM_SELF, dtype=ctx.dtype)
        except Exception as exc:  # pragma: no cover - depends on the C compiler
            if np.issubdtype(ctx.dtype, np.complexfloating):
                raise InputError(f"complex-step is not supported by UFLTerm {self.label!r}: its complex kernel "
                                 f"failed to compile ({exc})") from exc
            raise
        self.stats["compile_seconds"] += time.perf_counter() - t0
        self.stats["compiles"] += 1
        ctx.kernels[group] = _Kernel(kernel, [(name, shape) for name, _, shape in layout], ctx)
        if not ctx.kernels[group].fast:
            self.stats["eval_fallbacks"] += 1
        return ctx.kernels[group]

    # -- evaluation -----------------------------------------------------------
    def _learn_dims(self, x: Inputs) -> None:
        for k in self.inputs:
            if k not in x:
                raise InputError(f"UFLTerm {self.label!r} reads input {k!r}; x has {sorted(x)}")
            shape = np.shape(x[k])
            if len(shape) < 1:
                raise InputError(f"input {k!r} must have shape (B, m) or (m,), got {shape}")
            if k not in self.input_dims:
                self.input_dims[k] = int(shape[-1])
            elif shape[-1] != self.input_dims[k]:
                raise InputError(f"input {k!r} must have last dimension {self.input_dims[k]}, got {shape}")

    def _check_vec(self, arr: Array, name: str) -> Array:
        arr = np.asarray(arr)
        if arr.ndim < 1 or arr.shape[-1] != self.n:
            raise InputError(f"{name} must have shape (..., {self.n}), got {arr.shape}")
        return arr

    def _theta(self, theta: Params) -> dict[str, Array]:
        out = {}
        for k, shape in self.parameters.items():
            if k not in theta:
                raise InputError(f"UFLTerm {self.label!r} reads parameter {k!r}; theta has {sorted(theta)}")
            val = np.asarray(theta[k])
            if val.shape != shape:
                raise InputError(f"theta[{k!r}] must have shape {shape}, got {val.shape}")
            out[k] = val
        return out

    def _evaluate(self, group: str, lead: tuple[int, ...], fields: dict[str, Array], theta: dict[str, Array],
                  complex_: bool) -> dict[str, Array]:
        """Evaluate a kernel group on the batch ``lead``; return its blocks shaped ``lead + shape``."""
        B = _size(lead)
        dtype = np.complex128 if complex_ else np.float64
        ctx = self._context(B, dtype)
        kernel = self._kernel(ctx, group)
        if kernel is None:
            return {}
        t0 = time.perf_counter()
        raw = (kernel.run if kernel.fast else kernel.run_eval)(ctx, lead, B, fields, theta)
        out, off = {}, 0
        for name, shape in kernel.layout:
            s = _size(shape)
            out[name] = raw[:, off:off + s].reshape(lead + shape)
            off += s
        self.stats["evals"] += 1
        self.stats["eval_seconds"] += time.perf_counter() - t0
        return out

    def _time(self, t: float | Array | None) -> Array | None:
        """The time as a real array (a scalar, or one time per batch member), ``None`` if not read.

        A velocity-free term evaluated at many time nodes at once receives the
        node times as an array broadcasting against the batch axes; they fill
        the per-cell field ``t`` of the batch mesh, so one kernel call covers
        every node.
        """
        if t is not None and np.asarray(t).dtype.kind == "c":
            raise InputError(f"t must be real, got {t!r}")
        if not self._reads_time:
            return None
        if t is None:
            raise InputError(f"UFLTerm {self.label!r} reads t: give the time (a number, or an array of one time "
                             "per batch member), got None")
        try:
            return np.asarray(t, dtype=float)
        except (TypeError, ValueError) as exc:
            raise InputError(f"t must be a real number or an array of times, got {t!r}") from exc

    def _prepare(self, q: Array, v: Array | None, theta: Params, x: Inputs | None, t: float | Array | None,
                 extra: Mapping[str, Array | None]) -> tuple[tuple[int, ...], dict[str, Array], dict[str, Array], bool]:
        """Validate arguments and return ``(lead, fields, theta, complex)``."""
        x = x or {}
        self._learn_dims(x)
        zero = self._analyse()
        q = self._check_vec(q, "q")
        fields: dict[str, Array] = {"q": q}
        leads = [q.shape[:-1]]
        if v is None:  # the kernels of a velocity-free term do not read v
            if not zero["Lv"]:
                raise InputError(f"UFLTerm {self.label!r} depends on the velocity: v must not be None")
        else:
            fields["v"] = v = self._check_vec(v, "v")
            leads.append(v.shape[:-1])
        th = self._theta(theta)
        xs = {k: np.asarray(x[k]) for k in self.inputs}
        leads += [a.shape[:-1] for a in xs.values()]
        for k, a in xs.items():
            fields["x:" + k] = a
        for name, arr in extra.items():
            if arr is not None:
                arr = self._check_vec(arr, name)
                leads.append(arr.shape[:-1])
                fields[name] = arr
        times = self._time(t)
        if times is not None:
            leads.append(times.shape)
            fields["t"] = times
        try:
            lead = leads[0] if all(s == leads[0] for s in leads) else np.broadcast_shapes(*leads)
        except ValueError as exc:
            raise InputError(f"batch shapes do not broadcast: {leads} (q, v, inputs, directions"
                             f"{', t' if times is not None else ''})") from exc
        complex_ = any(a.dtype.kind == "c" for a in fields.values()) or any(a.dtype.kind == "c" for a in th.values())
        return tuple(lead), fields, th, complex_

    # -- Term interface -------------------------------------------------------
    def lagrangian(self, q: Array, v: Array | None, theta: Params, x: Inputs, t: float) -> Array:
        """Value of the term, shape ``(B,)``."""
        lead, fields, th, cplx = self._prepare(q, v, theta, x, t, {})
        out = self._evaluate("grad", lead, fields, th, cplx)
        if "L" in out:
            return out["L"]
        return np.zeros(lead, np.complex128 if cplx else np.float64)

    def gradient(self, q: Array, v: Array | None, theta: Params, x: Inputs,
                 t: float) -> tuple[Array | None, Array | None]:
        """``(∂_q L, ∂_v L)``, each ``(B, n)`` or ``None`` where it vanishes symbolically."""
        lead, fields, th, cplx = self._prepare(q, v, theta, x, t, {})
        zero = self._analyse()
        if zero["Lq"] and zero["Lv"]:
            return None, None
        out = self._evaluate("grad", lead, fields, th, cplx)
        return out.get("Lq"), out.get("Lv")

    def hessian_action(self, q: Array, v: Array | None, theta: Params, x: Inputs, t: float,
                       dq: Array | None, dv: Array | None) -> tuple[Array | None, Array | None]:
        """``(L_qq dq + L_qv dv, L_vq dq + L_vv dv)``; ``dq, dv`` may carry leading axes or be ``None``."""
        zero = self._analyse()
        want_q = (dq is not None and not zero["Hq_dq"]) or (dv is not None and not zero["Hq_dv"])
        want_v = (dq is not None and not zero["Hv_dq"]) or (dv is not None and not zero["Hv_dv"])
        lead, fields, th, cplx = self._prepare(q, v, theta, x, t, {"dq": dq, "dv": dv})
        if not (want_q or want_v):
            return None, None
        dt = np.complex128 if cplx else np.float64
        for name in ("dq", "dv"):
            fields.setdefault(name, np.zeros(self.n, dt))
        out = self._evaluate("hess", lead, fields, th, cplx)
        hq = out.get("Hq") if want_q else None
        hv = out.get("Hv") if want_v else None
        if want_q and hq is None:
            hq = np.zeros(lead + (self.n,), dt)
        if want_v and hv is None:
            hv = np.zeros(lead + (self.n,), dt)
        return hq, hv

    def theta_gradient(self, q: Array, v: Array | None, theta: Params, x: Inputs, t: float) -> dict[str, Array]:
        """``Σ_batch ∂_θ L`` (parameters whose derivative vanishes identically are absent)."""
        lead, fields, th, cplx = self._prepare(q, v, theta, x, t, {})
        if not self.parameters:
            return {}
        zero = self._analyse()
        out = {}
        if any(not zero["T:" + p] for p in self.parameters):
            out = self._evaluate("theta", lead, fields, th, cplx)
        return {p: g.reshape((-1,) + self.parameters[p]).sum(axis=0)
                for p in self.parameters if (g := out.get("T:" + p)) is not None}

    def theta_vjp(self, q: Array, v: Array | None, theta: Params, x: Inputs, t: float,
                  a: Array | None, b: Array | None) -> dict[str, Array]:
        """``Σ_batch ∂_θ (∂_q L · a + ∂_v L · b)``; ``a`` or ``b`` may be ``None``.

        Parameters to which the given directions contribute nothing (identically)
        are absent, as in the built-in terms.
        """
        if not self.parameters or (a is None and b is None):
            return {}
        lead, fields, th, cplx = self._prepare(q, v, theta, x, t, {"a": a, "b": b})
        zero = self._analyse()
        wanted = [p for p in self.parameters
                  if (a is not None and not zero["Va:" + p]) or (b is not None and not zero["Vb:" + p])]
        if not wanted:
            return {}
        dt = np.complex128 if cplx else np.float64
        for name in ("a", "b"):
            fields.setdefault(name, np.zeros(self.n, dt))
        out = self._evaluate("theta", lead, fields, th, cplx)
        return {p: out["V:" + p].reshape((-1,) + self.parameters[p]).sum(axis=0) for p in wanted}

    def theta_jvp(self, q: Array, v: Array | None, theta: Params, x: Inputs, t: float,
                  dtheta: Mapping[str, Array]) -> tuple[Array | None, Array | None]:
        """``(∂_θ ∂_q L · δθ, ∂_θ ∂_v L · δθ)`` with ``δθ[name]`` of shape ``(K, *shape)``; result ``(K, B, n)``."""
        names = [p for p in self.parameters if p in dtheta]
        if not names:
            return None, None
        lead, fields, th, cplx = self._prepare(q, v, theta, x, t, {})
        zero = self._analyse()
        want_q = any(not zero["Jq:" + p] for p in names)
        want_v = any(not zero["Jv:" + p] for p in names)
        if not (want_q or want_v):
            return None, None
        d = {p: np.asarray(dtheta[p]) for p in names}
        Ks = {a.shape[0] if a.ndim else -1 for a in d.values()}
        if len(Ks) != 1 or -1 in Ks:
            raise InputError(f"dtheta values must share a leading tangent axis K, got shapes "
                             f"{ {p: a.shape for p, a in d.items()} }")
        K = Ks.pop()
        for p, a in d.items():
            if a.shape[1:] != self.parameters[p]:
                raise InputError(f"dtheta[{p!r}] must have shape (K, *{self.parameters[p]}), got {a.shape}")
        cplx = cplx or any(np.iscomplexobj(a) for a in d.values())
        dt = np.complex128 if cplx else np.float64
        full = (K,) + lead
        ones = (1,) * len(lead)
        for p, shape in self.parameters.items():
            if p in d:
                fields["dth:" + p] = d[p].reshape((K,) + ones + shape)
            else:
                fields["dth:" + p] = np.zeros(shape, dt)
        out = self._evaluate("jvp", full, fields, th, cplx)
        jq = out.get("Jq", np.zeros(full + (self.n,), dt)) if want_q else None
        jv = out.get("Jv", np.zeros(full + (self.n,), dt)) if want_v else None
        return jq, jv

    def ufl_lagrangian(self, q: UFLExpr, v: UFLExpr, theta: Mapping[str, UFLExpr], x: Mapping[str, UFLExpr],
                       t: UFLExpr) -> UFLExpr:
        """The user's expression ``expr(q, v, theta, x, t)``."""
        return self._expr(q, v, theta, x, t)

    def time_reversed(self, T: float) -> UFLTerm:
        r"""The term replayed backwards on ``[0, T]``: ``L̃(q, v, θ, x, t) = L(q, v, θ, x, T − t)``.

        The echo integrates the system with every input signal reversed
        (:meth:`glep.Signal.reversed`); a term reading ``t`` itself must be
        reversed with them.  A term that does not read ``t`` is returned
        unchanged; reversed terms are cached per ``T`` (their kernels are
        compiled once).

        Arguments
        ---------
        T:
            The horizon.

        Returns
        -------
        UFLTerm
            ``self`` or the reversed term (same ``n``, parameters and inputs).
        """
        if not self.reads_time:
            return self
        key = float(T)
        rev = self._reversed.get(key)
        if rev is None:
            expr = self._expr

            def reversed_expr(q, v, theta, x, t):
                return expr(q, v, theta, x, key - t)

            inputs = dict(self.input_dims) if self._dims_known() else self.inputs
            rev = UFLTerm(self.n, reversed_expr, self.parameters, inputs, self._declared_velocity,
                          name=f"{self.label} (reversed on [0, {key:g}])")
            self._reversed[key] = rev
        return rev

    def describe(self) -> str:
        return f"UFLTerm({self.label})"


def ufl_reference(term: Term | TrackingCost) -> UFLTerm:
    """The generic (UFL-derived) path of a term: a :class:`UFLTerm` of its own ``ufl_lagrangian``.

    Parameters
    ----------
    term:
        Any :class:`glep.terms.Term` (same ``n``, parameters and inputs), or a
        cost with ``ufl_cost(q, x, t)`` (e.g. :class:`glep.TrackingCost`),
        wrapped as the term ``L = c(q, t)`` so that its ``cost``, ``gradient``
        and ``hessian_action`` can be compared with ``lagrangian`` and the
        ``q`` blocks of the reference.

    Returns
    -------
    UFLTerm
        Every derivative of which comes from ``ufl.diff`` of the expression;
        ``depends_on_velocity`` is detected, not copied.
    """
    if not isinstance(term, Term):
        if not callable(getattr(term, "ufl_cost", None)):
            raise InputError(f"term must be a glep Term or a cost with ufl_cost, got {type(term).__name__}")
        cost = term
        dims = {cost.target: len(cost.indices)} if isinstance(cost, TrackingCost) else {}
        names = tuple(getattr(cost, "inputs", ()))

        def expr(q, v, theta, x, t):
            return cost.ufl_cost(q, x, t)

        return UFLTerm(cost.n, expr, {}, dims if len(dims) == len(names) else names,
                       name=f"ufl({type(cost).__name__})")
    dims = {term.input: term.m} if isinstance(term, InputDrive) else {}
    inputs = dims if len(dims) == len(term.inputs) else tuple(term.inputs)
    return UFLTerm(term.n, term.ufl_lagrangian, dict(term.parameters), inputs, name=f"ufl({term.describe()})")


__all__ = ["UFLTerm", "ufl_reference"]
