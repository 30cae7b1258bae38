r"""Built-in potential terms ``V(q, θ, t)`` (``L_i = −V``).

Each is written once against an array namespace ``xp`` (NumPy, or
``jax.numpy`` on the compiled path of :mod:`glep.ivp.compiled`: the value, the
gradient and ``∂_θ`` are the same code on both; vectorised over a batch, fast at
``n`` in the hundreds) and once in UFL (``ufl_potential``).  ``force_kernel``
is the NumPy stepping loop's closure of the force with everything that depends
on ``θ`` alone (signs, symmetrised matrices) computed once, bit for bit equal
to ``−potential_gradient``.  The test-suite checks every
NumPy derivative against the UFL expression differentiated by ``ufl.diff``
(:class:`glep.UFLTerm`), so the hand-written fast paths cannot drift from the
single symbolic definition.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from glep.errors import InputError
from glep.terms import FixedPotentialTerm, PotentialTerm, array_namespace, batch_sum

if TYPE_CHECKING:  # UFL and scipy.sparse are imported on first use: `import glep` stays light
    import scipy.sparse as sp


def _apply_rows(S: sp.csr_array, D: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``X @ Dᵀ`` along the last axis of ``X`` (any leading axes), ``S`` = sparse ``D`` (m × n).

    Few rows: the dense product (a sparse call costs ~15 µs of overhead).  Many
    rows: the sparse one, since a dense ``X @ Dᵀ`` with a small last axis
    (``n = 3``) is dominated by per-row BLAS overhead (10× slower at 10⁶
    rows) and with ``n = 200`` wastes ``n``-fold work on the zeros of an
    incidence matrix.
    """
    if not isinstance(X, np.ndarray) and array_namespace(X) is not np:  # a JAX array: dense
        return X @ D.T
    X = np.asarray(X)
    lead = X.shape[:-1]
    X2 = X.reshape(-1, X.shape[-1])
    if X2.shape[0] * D.size < 100_000:
        return X @ D.T
    return np.asarray((S @ X2.T).T).reshape(*lead, S.shape[0])


class Harmonic(PotentialTerm):
    r"""On-site springs ``V = ½ Σ_i k_i q_i²`` with trainable stiffnesses ``k``."""

    array_api = True
    force_kernel_fresh = True  # every kernel below returns a new array

    def __init__(self, n: int, name: str = "k"):
        super().__init__(n)
        self.name = name
        self.parameters = {name: (n,)}

    def potential(self, q, theta, x, t):
        return 0.5 * array_namespace(q).sum(theta[self.name] * q * q, axis=-1)

    def potential_gradient(self, q, theta, x, t):
        return theta[self.name] * q

    def force_kernel(self, theta):
        mk = -np.asarray(theta[self.name])
        return lambda q, x, t: mk * q

    def potential_hessian_action(self, q, theta, x, t, dq):
        return theta[self.name] * dq

    def potential_hessian_entries(self, q, theta, x, t):
        idx = np.arange(self.n)
        return idx, idx, np.asarray(theta[self.name])

    def potential_theta_gradient(self, q, theta, x, t):
        return {self.name: 0.5 * batch_sum(q * q, 1)}

    def potential_theta_vjp(self, q, theta, x, t, a):
        return {self.name: batch_sum(q * a, 1)}

    def potential_theta_jvp(self, q, theta, x, t, dtheta):
        if self.name not in dtheta:
            return None
        return dtheta[self.name][:, None, :] * q[None]

    def ufl_potential(self, q, theta, x, t):
        import ufl  # on first use: `import glep` does not load UFL

        return 0.5 * ufl.dot(theta[self.name], ufl.elem_mult(q, q))


def _edge_groups(edges: np.ndarray) -> list[np.ndarray]:
    """Edge indices split (greedily, in order) into groups whose first ends are distinct and whose second
    ends are distinct, so that ``F[..., i] += f`` is a plain (unbuffered-safe) indexed update per group."""
    groups: list[tuple[list[int], set, set]] = []
    for e, (i, j) in enumerate(edges.tolist()):
        for members, firsts, seconds in groups:
            if i not in firsts and j not in seconds:
                members.append(e), firsts.add(i), seconds.add(j)
                break
        else:
            groups.append(([e], {i}, {j}))
    return [np.asarray(members) for members, _, _ in groups]


def _as_slice(index: np.ndarray):
    """A step-1 run of indices as a ``slice`` (a view, no copy); otherwise the index array."""
    if len(index) and np.array_equal(index, np.arange(index[0], index[0] + len(index))):
        return slice(int(index[0]), int(index[0]) + len(index))
    return index


class SpringCoupling(PotentialTerm):
    r"""Couplings ``V = ½ Σ_e J_e (q_{i_e} − q_{j_e})²`` on the edges ``(i_e, j_e)``."""

    array_api = True
    force_kernel_fresh = True  # every kernel below returns a new array

    def __init__(self, n: int, edges, name: str = "J"):
        super().__init__(n)
        edges = np.asarray(edges, dtype=int).reshape(-1, 2)
        if edges.size and (edges.min() < 0 or edges.max() >= n):
            raise InputError(f"edges must index coordinates in [0, {n})")
        self.edges = edges
        self.name = name
        self.parameters = {name: (len(edges),)}
        D = np.zeros((len(edges), n))
        D[np.arange(len(edges)), edges[:, 0]] = 1.0
        D[np.arange(len(edges)), edges[:, 1]] = -1.0
        self.D = D
        import scipy.sparse as sp  # on first use: `import glep` does not load scipy

        self._D = sp.csr_array(D)        # edge differences  d = D q
        self._Dt = sp.csr_array(D.T)     # their adjoint     Dᵀ (J d)

    def _diff(self, q):
        return _apply_rows(self._D, self.D, q)

    def _back(self, e):
        return _apply_rows(self._Dt, self.D.T, e)

    def potential(self, q, theta, x, t):
        d = self._diff(q)
        return 0.5 * array_namespace(q).sum(theta[self.name] * d * d, axis=-1)

    def potential_gradient(self, q, theta, x, t):
        return self._back(theta[self.name] * self._diff(q))

    def force_kernel(self, theta):
        """``q ↦ −Dᵀ(J ∘ Dq)`` by gathering the edge ends and scattering the edge forces (``O(B·E)``, no
        product with the incidence matrix): per group of edges with distinct first ends and distinct
        second ends (:func:`_edge_groups`; a chain is one group, read through slices),
        ``F[i_e] += f_e, F[j_e] −= f_e`` with ``f = −J ∘ (q_i − q_j)``.  For a chain this adds the same
        two numbers per node as ``f @ D`` (the same values bit for bit); in general to round-off."""
        mJ = -np.asarray(theta[self.name])
        add = self.force_add_kernel(theta)
        if add is None:
            return lambda q, x, t: self._back(mJ * self._diff(q))

        def force(q, x, t):
            q = np.asarray(q)
            out = np.zeros(q.shape, np.result_type(q, mJ))
            add(q, x, t, out)
            return out

        return force

    def force_add_kernel(self, theta):
        """``(q, x, t, out) ↦ out += −Dᵀ(J ∘ Dq)`` by edge groups (:meth:`force_kernel`'s scatter, into the
        caller's sum): ``None`` for self-loops or no edges, or complex ``J``."""
        mJ = -np.asarray(theta[self.name])
        if not len(self.edges) or np.any(self.edges[:, 0] == self.edges[:, 1]) or np.iscomplexobj(mJ):
            return None
        groups = [(_as_slice(self.edges[e, 0]), _as_slice(self.edges[e, 1]), mJ[e]) for e in _edge_groups(self.edges)]

        def add(q, x, t, out):
            for i, j, mJe in groups:
                f = mJe * (q[..., i] - q[..., j])
                out[..., i] += f
                out[..., j] -= f

        return add

    def potential_hessian_action(self, q, theta, x, t, dq):
        return self._back(theta[self.name] * self._diff(dq))

    def potential_hessian_entries(self, q, theta, x, t):
        i, j = self.edges[:, 0], self.edges[:, 1]
        J = np.asarray(theta[self.name])
        return np.concatenate([i, j, i, j]), np.concatenate([i, j, j, i]), np.concatenate([J, J, -J, -J])

    def potential_theta_gradient(self, q, theta, x, t):
        d = self._diff(q)
        return {self.name: 0.5 * batch_sum(d * d, 1)}

    def potential_theta_vjp(self, q, theta, x, t, a):
        return {self.name: batch_sum(self._diff(q) * self._diff(a), 1)}

    def potential_theta_jvp(self, q, theta, x, t, dtheta):
        if self.name not in dtheta:
            return None
        d = self._diff(q)  # (B, E)
        return self._back(dtheta[self.name][:, None, :] * d[None])

    def ufl_potential(self, q, theta, x, t):
        J = theta[self.name]
        return 0.5 * sum(J[e] * (q[int(i)] - q[int(j)]) ** 2 for e, (i, j) in enumerate(self.edges))


class Quartic(FixedPotentialTerm):
    r"""A fixed anharmonicity ``V = (α/4) Σ_i q_i⁴`` (no trainable parameter)."""

    array_api = True
    force_kernel_fresh = True  # every kernel below returns a new array

    def __init__(self, n: int, alpha: float = 0.1):
        super().__init__(n)
        self.alpha = float(alpha)
        self._diagonal = np.arange(self.n)

    def potential(self, q, theta, x, t):
        return 0.25 * self.alpha * array_namespace(q).sum(q**4, axis=-1)

    def potential_gradient(self, q, theta, x, t):
        return self.alpha * q * q * q

    def force_kernel(self, theta):
        ma = -self.alpha
        return lambda q, x, t: ma * q * q * q

    def potential_hessian_action(self, q, theta, x, t, dq):
        return 3.0 * self.alpha * (q * q) * dq

    def potential_hessian_entries(self, q, theta, x, t):
        idx = self._diagonal
        return idx, idx, 3.0 * self.alpha * (q * q)

    def ufl_potential(self, q, theta, x, t):
        return 0.25 * self.alpha * sum(q[i] ** 4 for i in range(self.n))


class QuadraticForm(PotentialTerm):
    r"""A dense quadratic ``V = ½ qᵀ A q`` with a trainable ``n × n`` matrix ``A``.

    Only the symmetric part of ``A`` acts; the gradient with respect to ``A``
    is ``½ q qᵀ`` (integrated over time and summed over the batch).
    """

    array_api = True
    force_kernel_fresh = True  # every kernel below returns a new array

    def __init__(self, n: int, name: str = "A"):
        super().__init__(n)
        self.name = name
        self.parameters = {name: (n, n)}

    def _sym(self, theta):
        A = theta[self.name]
        return 0.5 * (A + A.T)

    def potential(self, q, theta, x, t):
        return 0.5 * array_namespace(q).sum(q * (q @ theta[self.name].T), axis=-1)

    def potential_gradient(self, q, theta, x, t):
        return q @ self._sym(theta)

    def force_kernel(self, theta):
        mS = -self._sym(theta)
        return lambda q, x, t: q @ mS

    def potential_hessian_action(self, q, theta, x, t, dq):
        return dq @ self._sym(theta)

    def potential_hessian_entries(self, q, theta, x, t):
        rows, cols = np.indices((self.n, self.n))
        return rows.ravel(), cols.ravel(), self._sym(theta).ravel()

    def potential_theta_gradient(self, q, theta, x, t):
        qq = q.reshape(-1, self.n)
        return {self.name: 0.5 * (qq.T @ qq)}

    def potential_theta_vjp(self, q, theta, x, t, a):
        qq, aa = q.reshape(-1, self.n), a.reshape(-1, self.n)
        g = aa.T @ qq
        return {self.name: 0.5 * (g + g.T)}

    def potential_theta_jvp(self, q, theta, x, t, dtheta):
        if self.name not in dtheta:
            return None
        dA = dtheta[self.name]
        dS = 0.5 * (dA + np.swapaxes(dA, -1, -2))  # (K, n, n), symmetric
        return q @ dS  # (K, B, n)

    def ufl_potential(self, q, theta, x, t):
        import ufl  # on first use: `import glep` does not load UFL

        return 0.5 * ufl.dot(q, theta[self.name] * q)


class InputDrive(PotentialTerm):
    r"""Linear drive by an input signal: ``V = −qᵀ B u(t)`` with trainable ``B`` (n × m)."""

    array_api = True
    force_kernel_fresh = True  # every kernel below returns a new array

    def __init__(self, n: int, m: int, input: str = "u", name: str = "B"):
        super().__init__(n)
        self.m = int(m)
        self.input = input
        self.inputs = (input,)
        self.input_dims = {input: self.m}  # channels of the input signal (checked by glep.signals.check_signals)
        self.name = name
        self.parameters = {name: (n, self.m)}

    def potential(self, q, theta, x, t):
        return -array_namespace(q).sum(q * (x[self.input] @ theta[self.name].T), axis=-1)

    def potential_gradient(self, q, theta, x, t):
        return -(x[self.input] @ theta[self.name].T)  # (B or 1, n): broadcasts against q

    def force_kernel(self, theta):
        BT, key = np.asarray(theta[self.name]).T, self.input
        return lambda q, x, t: x[key] @ BT

    def potential_hessian_action(self, q, theta, x, t, dq):
        return np.zeros_like(dq)

    def potential_hessian_entries(self, q, theta, x, t):
        empty = np.zeros(0, dtype=int)
        return empty, empty, np.zeros(0)

    def potential_theta_gradient(self, q, theta, x, t):
        u = array_namespace(q).broadcast_to(x[self.input], q.shape[:-1] + (self.m,))
        return {self.name: -q.reshape(-1, self.n).T @ u.reshape(-1, self.m)}

    def potential_theta_vjp(self, q, theta, x, t, a):
        u = np.broadcast_to(x[self.input], a.shape[:-1] + (self.m,))
        return {self.name: -a.reshape(-1, self.n).T @ u.reshape(-1, self.m)}

    def potential_theta_jvp(self, q, theta, x, t, dtheta):
        if self.name not in dtheta:
            return None
        u = np.broadcast_to(x[self.input], q.shape[:-1] + (self.m,))
        return -np.einsum("knm,bm->kbn", dtheta[self.name], u)

    def ufl_potential(self, q, theta, x, t):
        import ufl  # on first use: `import glep` does not load UFL

        return -ufl.dot(q, theta[self.name] * x[self.input])


def _log_cosh(z):
    xp = array_namespace(z)
    if xp.iscomplexobj(z):
        return xp.log(xp.cosh(z))
    return xp.logaddexp(z, -z) - np.log(2.0)


class LogCoshLayer(PotentialTerm):
    r"""``V = Σ_j log cosh((W q + b)_j)`` with trainable ``W`` (h × n) and ``b`` (h,).

    The nonlinear Hamiltonian recurrent unit: its force ``−Wᵀ tanh(Wq + b)``
    is a one-hidden-layer network of the state.
    """

    array_api = True
    force_kernel_fresh = True  # every kernel below returns a new array

    def __init__(self, n: int, hidden: int, weight: str = "W", bias: str = "b"):
        super().__init__(n)
        self.h = int(hidden)
        self.weight, self.bias = weight, bias
        self.parameters = {weight: (self.h, n), bias: (self.h,)}
        self.activation_width = self.h  # a = tanh(Wq + b), shared by the force and ∂_θV

    def _z(self, q, theta):
        return q @ theta[self.weight].T + theta[self.bias]

    def potential(self, q, theta, x, t):
        return array_namespace(q).sum(_log_cosh(self._z(q, theta)), axis=-1)

    def potential_gradient(self, q, theta, x, t):
        return array_namespace(q).tanh(self._z(q, theta)) @ theta[self.weight]

    def force_kernel(self, theta):
        W, b = np.asarray(theta[self.weight]), np.asarray(theta[self.bias])
        WT, mW = W.T, -W
        matmul, add, tanh = np.matmul, np.add, np.tanh
        scratch: dict = {}  # one activation buffer per (shape, dtype) of q, reused at every call

        # the operations of activation_force_kernel, written out into our own buffer: calling it (with its
        # dtype and shape checks) measured ≈ 5 % slower on the unbatched log-cosh HRU (interleaved A/B)
        def force(q, x, t):
            a = scratch.get((q.shape, q.dtype))
            if a is None:
                a = scratch[(q.shape, q.dtype)] = np.empty(q.shape[:-1] + (self.h,), np.result_type(q, W, b))
            matmul(q, WT, out=a)
            add(a, b, out=a)
            tanh(a, out=a)
            return a @ mW

        return force

    def activation_force_kernel(self, theta):
        """``(q, x, t, a) ↦ −Wᵀa`` with ``a = tanh(Wq + b)`` computed into ``a`` (no temporaries; the
        values of :meth:`force_kernel` bit for bit)."""
        W, b = np.asarray(theta[self.weight]), np.asarray(theta[self.bias])
        WT, mW = W.T, -W
        matmul, add, tanh = np.matmul, np.add, np.tanh
        dtypes: dict = {}  # q's dtype -> the activation's

        def force(q, x, t, a):
            want = dtypes.get(q.dtype)
            if want is None:
                want = dtypes[q.dtype] = np.result_type(q, W, b)
            if a.dtype != want or a.shape != q.shape[:-1] + (self.h,):
                s = tanh(q @ WT + b)  # another dtype or shape: the plain kernel, its activation stored
                a[...] = s
                return s @ mW
            matmul(q, WT, out=a)
            add(a, b, out=a)
            tanh(a, out=a)
            return a @ mW

        return force

    def potential_hessian_action(self, q, theta, x, t, dq):
        W = theta[self.weight]
        s2 = 1.0 / np.cosh(self._z(q, theta)) ** 2
        return (s2 * (dq @ W.T)) @ W

    def potential_theta_gradient(self, q, theta, x, t):
        return self.potential_theta_gradient_from_activation(array_namespace(q).tanh(self._z(q, theta)), q,
                                                             theta, x, t)

    def potential_theta_gradient_from_activation(self, a, q, theta, x, t):
        """``∂_W V = Σ_batch a qᵀ``, ``∂_b V = Σ_batch a`` with ``a = tanh(Wq + b)``."""
        s = a.reshape(-1, self.h)
        return {self.weight: s.T @ q.reshape(-1, self.n), self.bias: s.sum(axis=0)}

    def potential_theta_vjp(self, q, theta, x, t, a):
        W = theta[self.weight]
        z = self._z(q, theta)
        s, s2 = np.tanh(z), 1.0 / np.cosh(z) ** 2
        u = s2 * (a @ W.T)
        qq, aa = q.reshape(-1, self.n), a.reshape(-1, self.n)
        s, u = s.reshape(-1, self.h), u.reshape(-1, self.h)
        return {self.weight: s.T @ aa + u.T @ qq, self.bias: u.sum(axis=0)}

    def potential_theta_jvp(self, q, theta, x, t, dtheta):
        W = theta[self.weight]
        z = self._z(q, theta)
        s, s2 = np.tanh(z), 1.0 / np.cosh(z) ** 2
        K = next(iter(dtheta.values())).shape[0]
        dz = np.zeros((K,) + z.shape, dtype=np.result_type(z, *dtheta.values()))
        out = np.zeros((K,) + q.shape, dtype=dz.dtype)
        if self.weight in dtheta:
            dW = dtheta[self.weight]
            dz = dz + np.einsum("bn,khn->kbh", q, dW)
            out = out + np.einsum("bh,khn->kbn", s, dW)
        if self.bias in dtheta:
            dz = dz + dtheta[self.bias][:, None, :]
        return out + (s2[None] * dz) @ W

    def ufl_potential(self, q, theta, x, t):
        import ufl  # on first use: `import glep` does not load UFL

        z = theta[self.weight] * q + theta[self.bias]
        return sum(ufl.ln(ufl.cosh(z[j])) for j in range(self.h))


class Pendulum(PotentialTerm):
    r"""Gravity on a chain of pendula: ``V = Σ_i w_i (1 − cos q_i)``, trainable ``w``."""

    array_api = True
    force_kernel_fresh = True  # every kernel below returns a new array

    def __init__(self, n: int, name: str = "w"):
        super().__init__(n)
        self.name = name
        self.parameters = {name: (n,)}

    def potential(self, q, theta, x, t):
        xp = array_namespace(q)
        return xp.sum(theta[self.name] * (1.0 - xp.cos(q)), axis=-1)

    def potential_gradient(self, q, theta, x, t):
        return theta[self.name] * array_namespace(q).sin(q)

    def force_kernel(self, theta):
        mw = -np.asarray(theta[self.name])
        return lambda q, x, t: mw * np.sin(q)

    def potential_hessian_action(self, q, theta, x, t, dq):
        return theta[self.name] * np.cos(q) * dq

    def potential_hessian_entries(self, q, theta, x, t):
        idx = np.arange(self.n)
        return idx, idx, theta[self.name] * np.cos(q)

    def potential_theta_gradient(self, q, theta, x, t):
        return {self.name: batch_sum(1.0 - array_namespace(q).cos(q), 1)}

    def potential_theta_vjp(self, q, theta, x, t, a):
        return {self.name: batch_sum(np.sin(q) * a, 1)}

    def potential_theta_jvp(self, q, theta, x, t, dtheta):
        if self.name not in dtheta:
            return None
        return dtheta[self.name][:, None, :] * np.sin(q)[None]

    def ufl_potential(self, q, theta, x, t):
        import ufl  # on first use: `import glep` does not load UFL

        w = theta[self.name]
        return sum(w[i] * (1.0 - ufl.cos(q[i])) for i in range(self.n))


__all__ = ["Harmonic", "SpringCoupling", "Quartic", "QuadraticForm", "InputDrive",
           "LogCoshLayer", "Pendulum"]
