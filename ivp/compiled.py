r"""The compiled time-stepping path: Störmer–Verlet loops as ``jax.lax.scan``, jit-compiled (optional extra).

For a separable system ``L = ½vᵀMv − V(q, θ, x(t))`` with the trapezoid rule the
discrete Euler–Lagrange equations are the explicit Störmer–Verlet step

    v̄_k = M⁻¹(p_k + (h/2)F_k),   q_{k+1} = q_k + h v̄_k,   p_{k+1} = M v̄_k + (h/2)F_{k+1},

with ``F = ∂_q L_β`` (``L_β = L + βc``).  This module runs exactly the loops of
the NumPy path — the forward (and, on the mirrored discrete Lagrangian, the
backward) integration, the nudged families of the echo, PFVP and RHEL with
their contrast ``I(β) = Σ_k ∂_θL_d(q^β_k, q^β_{k+1})`` accumulated inside the
scan (memory independent of the horizon), the forward tangent sweep and the
explicit discrete adjoint as a reverse scan — on the *same term definitions*:
the built-in terms write their value, gradient and ``∂_θ`` once against an
array namespace (:func:`glep.terms.array_namespace`), so ``jax.numpy``
executes them here; second derivatives (the adjoint's Hessian actions, the
tangents' ``∂_θ∂_q L``) are ``jax.jvp``/``jax.vjp`` of those first derivatives.

Chosen per problem: ``glep.ivp.StormerVerlet(backend="jax")`` (or any
:class:`~glep.ivp.integrators.Integrator` with ``backend="jax"``) makes every
discrete Lagrangian of the problem carry ``backend="jax"``, and
:func:`glep.ivp.stepping.integrate`, :func:`glep.ivp.adjoint.adjoint_gradient`,
:func:`glep.ivp.sensitivity.tangent_sweep` and the estimators dispatch here.
Float64 is enabled locally (``jax.enable_x64`` around each call), not globally;
JAX runs on its default device (a GPU when one is installed), with nothing to change.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import numpy as np

from glep.errors import InputError

_EXTRA = "pip install 'glep[jax]'"


def available() -> bool:
    """Whether JAX (the optional extra ``glep[jax]``) is importable."""
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def _jax():
    try:
        import jax
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InputError(f"backend='jax' needs the optional extra JAX ({_EXTRA}); it is not installed: {exc}") \
            from exc
    return jax


def unsupported_reason(system) -> str | None:
    """Why the compiled path cannot run ``system`` (``None`` if it can).

    It needs a separable system (one kinetic term ``½vᵀM(θ)v``) whose terms are
    written against an array namespace (``Term.array_api``) and read ``t`` only
    through their input signals.
    """
    if not system.is_separable:
        return f"{system.name} is not separable ({system.non_separable_reason}); the compiled path is Störmer–Verlet"
    bad = [t.describe() for t in system.terms if not getattr(t, "array_api", False)]
    if bad:
        return (f"the terms {bad} are not written against an array namespace (Term.array_api is false), so JAX "
                "cannot execute them")
    timed = [t.describe() for t in system.terms if t.explicit_time]
    if timed:
        return f"the terms {timed} read t as a scalar; give their time dependence through an input Signal"
    return None


def check_supported(system) -> None:
    """Refuse, with the reason, a system the compiled path cannot run (and a missing JAX)."""
    _jax()
    reason = unsupported_reason(system)
    if reason is not None:
        raise InputError(f"backend='jax': {reason}; use backend='numpy'")


# -- the pieces of a separable system, in jax.numpy -------------------------------------------------
class _Pieces:
    """Force, masses and θ-derivatives of one system, as functions of JAX arrays (traced once per shape)."""

    def __init__(self, system):
        self.system = system
        self.pots = [t for t in system.terms if not t.depends_on_velocity]
        self.kin = system.kinetic
        self.cost = system.cost
        #: the keys of ``I = Σ_k ∂_θL_d`` (those of the terms with parameters, as on the NumPy path)
        self.contrast_keys = [k for t in self.pots + [self.kin] for k in t.parameters]
        #: a mass without parameters: its kernels (the identity for unit masses), prepared once
        self._fixed = None if self.kin.parameters else self.kin.mass_kernels({})

    def force(self, q, th, x, t, beta):
        """``∂_q L_β = −∇V + β∇c`` (``beta`` a scalar, ``None`` for no nudge)."""
        jax = _jax()
        out = 0.0
        for term in self.pots:
            out = out + term.gradient(q, None, th, x, t)[0]
        if beta is not None and self.cost is not None:
            c, pull = jax.vjp(lambda y: self.cost.cost(y, x, t), q)  # ∇c (holomorphic for complex steps)
            out = out + beta * pull(jax.numpy.ones_like(c))[0]
        return out if np.shape(out) == np.shape(q) else out + jax.numpy.zeros_like(q)

    def solve(self, p, th):
        return self._fixed[0](p) if self._fixed else self.kin.mass_solve(p, th)

    def apply(self, v, th):
        return self._fixed[1](v) if self._fixed else self.kin.mass_apply(v, th)

    def node_theta(self, q, th, x, t) -> dict:
        """``Σ_batch ∂_θ L_pot(q, x, t)`` of the trainable potential terms."""
        acc: dict = {}
        for term in self.pots:
            if term.parameters:
                for k, g in term.theta_gradient(q, None, th, x, t).items():
                    acc[k] = acc[k] + g if k in acc else g
        return acc

    def kinetic_theta(self, vbar, th) -> dict:
        """``Σ_batch ∂_θ T(v̄)`` (empty for fixed masses)."""
        if not self.kin.parameters:
            return {}
        return dict(self.kin.theta_gradient(None, vbar, th, None, None))


# -- the caches of prepared systems and compiled loops: bounded, least recently used dropped first ---------
#: how many prepared systems, and how many compiled loops, are kept (each cache separately).  A compiled
#: loop is one ``jax.jit`` of one loop (forward, nudged family, adjoint, …) for one system and step size,
#: holding an XLA executable per input shape; the least recently used is dropped beyond this many, and
#: its executables are released with it.
CACHE_SIZE = 64


class _LRU(OrderedDict):
    """A dictionary that keeps at most :data:`CACHE_SIZE` entries, dropping the least recently used."""

    def get(self, key, default=None):
        if key in self:
            self.move_to_end(key)
            return self[key]
        return default

    def put(self, key, value) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > max(int(CACHE_SIZE), 1):
            self.popitem(last=False)


_PIECES = _LRU()
_JITS = _LRU()


def clear_cache() -> None:
    """Drop every prepared system and compiled loop of this module (their XLA executables are released
    when nothing else holds them); the next call traces and compiles again."""
    _PIECES.clear()
    _JITS.clear()


def cache_info() -> dict[str, int]:
    """``{"systems": …, "loops": …, "size": CACHE_SIZE}``: what the caches hold now, and their bound."""
    return {"systems": len(_PIECES), "loops": len(_JITS), "size": int(CACHE_SIZE)}


class _Same:
    """An object compared by identity, held by a cache key (so its ``id`` cannot be reused while the key lives)."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other) -> bool:
        return isinstance(other, _Same) and other.obj is self.obj


def _structure(obj, depth: int = 0):
    """A hashable description of a term or cost: its type and attributes, arrays by dtype, shape and bytes.

    Two objects with equal descriptions compute the same functions of ``(q, v, θ, x, t)``, so their
    compiled loops can be shared; anything this cannot describe (a function, a deep object) is compared
    by identity (:class:`_Same`), which only loses sharing, never correctness.
    """
    if obj is None or isinstance(obj, (bool, int, float, complex, str)):
        return obj
    if isinstance(obj, np.ndarray):
        return ("array", obj.dtype.str, obj.shape, obj.tobytes())
    if type(obj).__module__.startswith("scipy.sparse"):  # a sparse matrix: by its CSR arrays
        csr = obj.tocsr()
        return ("sparse", csr.shape, *(_structure(a) for a in (csr.data, csr.indices, csr.indptr)))
    if isinstance(obj, slice):
        return ("slice", obj.start, obj.stop, obj.step)
    if depth > 4:
        return _Same(obj)
    if isinstance(obj, (tuple, list)):
        return (type(obj).__name__, *(_structure(v, depth + 1) for v in obj))
    if isinstance(obj, dict):
        return ("dict", *sorted(((str(k), _structure(v, depth + 1)) for k, v in obj.items()), key=lambda kv: kv[0]))
    if type(obj).__module__.startswith("glep.") and hasattr(obj, "__dict__"):  # glep's terms, costs, kernels
        return (type(obj), _structure(vars(obj), depth + 1))
    return _Same(obj)


def _pieces(system) -> _Pieces:
    """The pieces of ``system``, shared by every system made of the same terms and cost — the same objects
    (the time-reversed system of the echo, a system with other signals) or equal ones (:func:`_structure`:
    a new minibatch's or work item's system of the same kind and sizes): compiled once for all of them."""
    key = (tuple(_structure(t) for t in system.terms), _structure(system.cost))
    hit = _PIECES.get(key)
    if hit is None:
        hit = _Pieces(system)
        _PIECES.put(key, hit)
    return hit


def _node_data(dl):
    """Node inputs ``{name: (N+1, B or 1, m)}`` and node times of a discrete Lagrangian (host arrays)."""
    return dict(dl.all_node_inputs()), np.asarray(dl._chain(), dtype=float)


def _at(tree, j):
    return {k: a[j] for k, a in tree.items()}


def _add_tree(acc: dict, g: dict, w=1.0) -> dict:
    out = dict(acc)
    for k, v in g.items():
        out[k] = out[k] + w * v if k in out else w * v
    return out


def _zeros_like_theta(th: dict, keys, dtype) -> dict:
    import jax.numpy as jnp

    return {k: jnp.zeros(np.shape(th[k]), dtype) for k in keys}


def _beta(dl):
    beta = dl.beta
    if np.ndim(beta) == 0:
        return None if beta == 0 else beta
    return beta  # one value per batch member, (B, 1)


# -- inputs, sampled block by block ------------------------------------------------------------------
#: steps per compiled block of the forward loop and the nudged families: the inputs are sampled one
#: block at a time, so that nothing the loops hold grows with the number of steps
BLOCK = 2048


def _inputs(dl, sel):
    """The signals at the node times ``sel`` (a slice or index) of ``dl``'s chain, and those times."""
    t = np.atleast_1d(np.asarray(dl._chain(), dtype=float)[sel])
    return {k: s.sample(t) for k, s in dl.system.signals.items()}, t


def _blocks(dl):
    """``(X, t)`` at the nodes ``j0+1 … j1`` of consecutive blocks of at most :data:`BLOCK` steps."""
    for j0 in range(0, dl.N, BLOCK):
        yield _inputs(dl, slice(j0 + 1, min(j0 + BLOCK, dl.N) + 1))


# -- forward integration --------------------------------------------------------------------------
def _forward_init(pieces, th, q0, x0, t0, beta):
    return pieces.force(q0, th, _at(x0, 0), t0[0], beta)


def _forward_impl(pieces, h, store, th, q, p, F, X1, T1, beta):
    """Störmer–Verlet over one block of steps (inputs ``X1`` at the block's end nodes)."""
    jax = _jax()

    def step(carry, xs):
        q, p, F = carry
        x1, t1 = xs
        vbar = pieces.solve(p + 0.5 * h * F, th)
        q1 = q + h * vbar
        F1 = pieces.force(q1, th, x1, t1, beta)
        p1 = pieces.apply(vbar, th) + 0.5 * h * F1
        return (q1, p1, F1), ((q1, p1) if store else None)

    return jax.lax.scan(step, (q, p, F), (X1, T1))


def _jitted(name, pieces, *static):
    """One ``jax.jit`` per (loop, system, static arguments): traced again only for new shapes or dtypes."""
    jax = _jax()
    key = (name, id(pieces), static)
    fn = _JITS.get(key)
    if fn is None or fn[0] is not pieces:
        impl = {"forward init": _forward_init, "forward": _forward_impl, "family init": _family_init,
                "family": _family_impl, "family end": _family_end, "adjoint": _adjoint_impl,
                "tangent": _tangent_impl}[name]
        fn = (pieces, jax.jit(partial(impl, pieces, *static)))
        _JITS.put(key, fn)
    return fn[1]


def integrate(dl, q0, p0, *, store: bool | str = True):
    """:func:`glep.ivp.stepping.integrate` of an explicit discrete Lagrangian, compiled (same returns).

    The steps run in blocks of :data:`BLOCK`, the inputs sampled block by block: without ``store``
    the memory does not grow with the number of steps.
    """
    jax = _jax()
    check_supported(dl.system)
    dtype = np.result_type(q0, p0, dl.beta)
    q0, p0 = np.asarray(q0, dtype), np.asarray(p0, dtype)
    pieces, h, beta = _pieces(dl.system), float(dl.h), _beta(dl)
    Qs, Ps = [q0[None]], [p0[None]]
    with jax.enable_x64(True):
        F = _jitted("forward init", pieces)(dl.theta, q0, *_inputs(dl, slice(0, 1)), beta)
        q, p = q0, p0
        for X1, T1 in _blocks(dl):
            (q, p, F), ys = _jitted("forward", pieces, h, bool(store))(dl.theta, q, p, F, X1, T1, beta)
            if store:
                Qs.append(np.asarray(ys[0]))
                Ps.append(np.asarray(ys[1]))
        qN, pN = np.asarray(q), np.asarray(p)
    if not (np.all(np.isfinite(qN)) and np.all(np.isfinite(pN))):
        from glep.errors import SolverError

        raise SolverError("trajectory became non-finite; reduce the step size", reason="overflow")
    if not store:
        return qN, pN
    Q = np.concatenate(Qs)
    return (Q, pN) if store == "q" else (Q, np.concatenate(Ps))


# -- nudged families with the contrast accumulated in the scan --------------------------------------
def _beta_column(betas, dtype):
    """Nudges ``(C, 1, 1)`` for the stacked copies (``None`` when no copy is nudged)."""
    jnp = _jax().numpy
    if all(b is None for b in betas):
        return None
    return jnp.stack([jnp.asarray(0.0 if b is None else b, dtype) for b in betas])[:, None, None]


def _node_contrast(pieces, th, q, x, t):
    """``Σ_batch ∂_θL_pot`` at the positions ``q`` ``(C, B, n)``, copy by copy (``jax.vmap``: the compiler
    shares its products with the force's at the same positions, e.g. ``tanh(Wq + b)``)."""
    jax = _jax()
    return jax.vmap(lambda qc: pieces.node_theta(qc, th, x, t))(q)


def _family_init(pieces, h, th, q0s, x0, t0, betas):
    """Force and contrast (node 0, weight ``h/2``) at the start of ``C`` stacked copies."""
    jnp = _jax().numpy
    x0, t0 = _at(x0, 0), t0[0]
    F0 = pieces.force(q0s, th, x0, t0, _beta_column(betas, q0s.dtype))
    zero = {k: jnp.zeros((q0s.shape[0],) + np.shape(th[k]), q0s.dtype) for k in pieces.contrast_keys}
    return F0, _add_tree(zero, _node_contrast(pieces, th, q0s, x0, t0), 0.5 * h)


def _family_impl(pieces, h, th, q, p, F, acc, X1, T1, betas):
    r"""One block of steps of ``C`` trajectories (copies of the batch, nudged at ``betas[c]``, state
    ``(C, B, n)``: one force evaluation for every copy, the inputs broadcast over the copy axis), adding
    to each copy's contrast ``I_c = Σ_j w_j Σ_batch ∂_θL_pot(q_j) + Σ_k h Σ_batch ∂_θT(v̄_k)``."""
    jax = _jax()
    beta = _beta_column(betas, q.dtype)

    def step(carry, xs):
        q, p, F, acc = carry
        x1, t1 = xs
        vbar = pieces.solve(p + 0.5 * h * F, th)
        q1 = q + h * vbar
        F1 = pieces.force(q1, th, x1, t1, beta)
        p1 = pieces.apply(vbar, th) + 0.5 * h * F1
        kinetic = jax.vmap(lambda vc: pieces.kinetic_theta(vc, th))(vbar)
        acc = _add_tree(_add_tree(acc, kinetic, h), _node_contrast(pieces, th, q1, x1, t1), h)
        return (q1, p1, F1, acc), None

    return jax.lax.scan(step, (q, p, F, acc), (X1, T1))[0]


def _family_end(pieces, h, th, q, acc, xN, tN):
    """The last node has weight ``h/2``, not ``h``."""
    return _add_tree(acc, _node_contrast(pieces, th, q, _at(xN, 0), tN[0]), -0.5 * h)


def nudged_family(dl, q0s, p0s, betas) -> list[tuple[dict, np.ndarray, np.ndarray]]:
    r"""Integrate ``dl``'s system from ``(q0s[c], p0s[c])`` nudged at ``betas[c]``, each copy a batch.

    ``dl`` is the un-nudged discrete Lagrangian (forward, time-reversed for the
    echo, or mirrored for backward integration). Returns per copy ``(I(β_c),
    q_N, p_N)`` with ``I = Σ_k Σ_batch ∂_θL_d(q_k, q_{k+1})`` summed inside the
    scan, the inputs sampled block by block: memory independent of the number of steps.
    """
    jax = _jax()
    check_supported(dl.system)
    dtype = np.result_type(np.asarray(q0s[0]), np.asarray(p0s[0]), *[np.asarray(b) for b in betas])
    q = np.stack([np.asarray(v, dtype) for v in q0s])
    p = np.stack([np.asarray(v, dtype) for v in p0s])
    cost = dl.system.cost is not None
    bet = _betas_arg(tuple(None if (b == 0 or not cost) else b for b in betas), dtype)
    pieces, h, th = _pieces(dl.system), float(dl.h), dl.theta
    with jax.enable_x64(True):
        F, acc = _jitted("family init", pieces, h)(th, q, *_inputs(dl, slice(0, 1)), bet)
        for X1, T1 in _blocks(dl):
            q, p, F, acc = _jitted("family", pieces, h)(th, q, p, F, acc, X1, T1, bet)
        acc = _jitted("family end", pieces, h)(th, q, acc, *_inputs(dl, slice(dl.N, dl.N + 1)))
        acc = {k: np.asarray(v) for k, v in acc.items()}
        q, p = np.asarray(q), np.asarray(p)
    return [({k: v[c] for k, v in acc.items()}, q[c], p[c]) for c in range(len(betas))]


def _betas_arg(betas, dtype):
    """Nudges as traced scalars (one compilation for every β value; ``None`` = not nudged)."""
    return [None if b is None else np.asarray(b, dtype) for b in betas]


# -- forward tangents --------------------------------------------------------------------------------
def _tangent_impl(pieces, h, th, Q, dq0, dp0, dth, X, times):
    """Störmer–Verlet tangents along the stored ``Q`` (leading tangent axis ``K``), ``jax.jvp`` of the step."""
    jax = _jax()

    def dforce(q, x, t, dq, dthk):
        return jax.jvp(lambda qq, tt: pieces.force(qq, tt, x, t, None), (q, th), (dq, dthk))[1]

    def dapply(v, dthk):
        return jax.jvp(lambda tt: pieces.apply(v, tt), (th,), (dthk,))[1]

    vf = jax.vmap(dforce, in_axes=(None, None, None, 0, 0))
    va = jax.vmap(dapply, in_axes=(None, 0))
    dF0 = vf(Q[0], _at(X, 0), times[0], dq0, dth)

    def step(carry, xs):
        dq, dp, dF = carry
        q0, q1, x1, t1 = xs
        vbar = (q1 - q0) / h
        dMv = va(vbar, dth)
        dvbar = pieces.solve(dp + 0.5 * h * dF - dMv, th)
        dq1 = dq + h * dvbar
        dF1 = vf(q1, x1, t1, dq1, dth)
        dp1 = pieces.apply(dvbar, th) + 0.5 * h * dF1 + dMv
        return (dq1, dp1, dF1), None

    X1 = {k: a[1:] for k, a in X.items()}
    (dq, dp, _), _ = jax.lax.scan(step, (dq0, dp0, dF0), (Q[:-1], Q[1:], X1, times[1:]))
    return dq, dp


def tangent_sweep(dl, Q, dq0, dp0, dtheta=None):
    """Final ``(δq_N, δp_N)`` of :func:`glep.ivp.sensitivity.tangent_sweep` (explicit path), compiled."""
    jax = _jax()
    check_supported(dl.system)
    X, times = _node_data(dl)
    dq0 = np.asarray(dq0)
    K = dq0.shape[0]
    dtype = np.result_type(Q, dq0, dp0)
    dth = {k: np.zeros((K,) + np.shape(v), dtype) for k, v in dl.theta.items()}
    for k, v in (dtheta or {}).items():
        dth[k] = np.asarray(v, dtype)
    th = {k: np.asarray(v, dtype) for k, v in dl.theta.items()}
    with jax.enable_x64(True):
        fn = _jitted("tangent", _pieces(dl.system), float(dl.h))
        dq, dp = fn(th, np.asarray(Q, dtype), dq0.astype(dtype), np.asarray(dp0, dtype), dth, X, times)
        return np.asarray(dq), np.asarray(dp)


# -- the discrete adjoint as a reverse scan -------------------------------------------------------------
def _adjoint_impl(pieces, h, th, Q, G, X, times, w):
    r"""``λ`` backwards (``D₁₂ = −M/h``, ``D₁₁(j) + D₂₂(j−1) = 2M/h + h∂²_qL``) and ``−Σ_k ∂_θ(…)``.

    Returns ``(λ₀, μ, g_θ)`` as in :func:`glep.ivp.adjoint._explicit_adjoint`.
    """
    jax = _jax()
    N = Q.shape[0] - 1

    def hess(q, x, t, lam):
        return jax.jvp(lambda qq: pieces.force(qq, th, x, t, None), (q,), (lam,))[1]

    def theta_node(q, x, t, a):
        return jax.vjp(lambda tt: pieces.force(q, tt, x, t, None), th)[1](a)[0]

    def theta_kin(vbar, b):
        return jax.vjp(lambda tt: pieces.apply(vbar, tt), th)[1](b)[0]

    zero = {k: np.zeros(np.shape(v), Q.dtype) for k, v in th.items()}
    lam_N = 0.0 * Q[N]
    lam_Nm1 = -h * pieces.solve(G[N], th)

    def step(carry, xs):
        lam_next, lam, acc = carry  # λ_{j+1}, λ_j
        q, q_next, g, x, t, wj = xs
        Hl = hess(q, x, t, lam)
        r = g - 2.0 / h * pieces.apply(lam, th) - h * Hl + pieces.apply(lam_next, th) / h
        lam_prev = -h * pieces.solve(r, th)
        acc = _add_tree(acc, theta_node(q, x, t, wj * lam), -1.0)
        acc = _add_tree(acc, theta_kin((q_next - q) / h, lam_next - lam), -1.0)
        return (lam, lam_prev, acc), None

    idx = slice(N - 1, 0, -1)  # j = N−1 … 1
    xs = (Q[idx], Q[N:1:-1], G[idx], {k: a[idx] for k, a in X.items()}, times[idx], w[idx])
    (lam1, lam0, acc), _ = jax.lax.scan(step, (lam_N, lam_Nm1, zero), xs)
    x0 = _at(X, 0)
    acc = _add_tree(acc, theta_node(Q[0], x0, times[0], w[0] * lam0), -1.0)
    acc = _add_tree(acc, theta_kin((Q[1] - Q[0]) / h, lam1 - lam0), -1.0)
    mu = G[0] - (pieces.apply(lam0, th) / h + 0.5 * h * hess(Q[0], x0, times[0], lam0) - pieces.apply(lam1, th) / h)
    return lam0, mu, acc


def explicit_adjoint(dl, Q, G):
    """``(λ₀, μ, g_θ)`` of the explicit discrete adjoint (:func:`glep.ivp.adjoint._explicit_adjoint`), compiled."""
    jax = _jax()
    check_supported(dl.system)
    X, times = _node_data(dl)
    dtype = np.result_type(Q, G)
    th = {k: np.asarray(v, dtype) for k, v in dl.theta.items()}
    with jax.enable_x64(True):
        fn = _jitted("adjoint", _pieces(dl.system), float(dl.h))
        lam0, mu, acc = fn(th, np.asarray(Q, dtype), np.asarray(G, dtype), X, times, dl.node_weights())
        return np.asarray(lam0), np.asarray(mu), {k: np.asarray(v) for k, v in acc.items()}


__all__ = ["CACHE_SIZE", "available", "cache_info", "check_supported", "clear_cache", "explicit_adjoint",
           "integrate", "nudged_family", "tangent_sweep", "unsupported_reason"]
