r"""Single and multiple shooting for the constant boundary-value problem (CBVP).

The CBVP fixes both ends, ``q(0) = q₀`` and ``q(T) = q_T``.  On the ``ivp``
backend its discrete version is the set of discrete Euler–Lagrange equations

    D₂L_d(q_{k−1}, q_k) + D₁L_d(q_k, q_{k+1}) = 0,   k = 1, …, N−1,

with ``q₀`` and ``q_N = q_T`` given: the stationary points of the discrete
action ``Σ_k L_d(q_k, q_{k+1}, k)`` with both ends pinned.  Every solution is
a trajectory of the position–momentum step map

    p_k = −D₁L_d(q_k, q_{k+1}),   p_{k+1} = D₂L_d(q_k, q_{k+1})

(:func:`glep.ivp.stepping.integrate`), so the CBVP is the root-finding problem
``q_N(p₀) = q_T`` for the unknown initial momentum (*single shooting*).  When
``q_N`` depends too violently on ``p₀`` (stiff or unstable problems) the grid
is cut into segments whose initial states are extra unknowns matched by
continuity of ``(q, p)`` at the cuts (*multiple shooting*).  Both solve the
very same discrete equations, so they agree to solver tolerance, and the
solution is the discrete CBVP solution that a P1 finite-element time mesh with
two-point Gauss–Lobatto quadrature also assembles (THEORY.md §4).

Newton's Jacobians come from *discrete Jacobi fields*: the linearisation of
the step map,

    δq_{k+1} = −D₁₂⁻¹ (δp_k + D₁₁ δq_k + ∂_θD₁ δθ),
    δp_{k+1} = D₂₁ δq_k + D₂₂ δq_{k+1} + ∂_θD₂ δθ,

pushed along the stored trajectory by :func:`tangent_sweep` (one sweep for
all ``n`` or ``2n`` directions at once, carried on a leading tangent axis).

The Jacobi fields with ``δq₀ = 0``, ``δp₀ = I`` also give the second
variation: by discrete Sturm theory the number of sign changes of
``det δq_k`` over ``k = 1, …, N`` is the number of negative eigenvalues of the
Hessian of the discrete action with both ends fixed (its Morse index), the
discrete count of conjugate points in ``(0, T)`` (:func:`conjugate_points`).
The sign-change rule assumes ``−D₁₂L_d`` is positive definite (true for a
positive mass matrix once ``h`` is small enough).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from glep.boundary import CBVP
from glep.errors import InputError, SolverError
from glep.grid import TimeGrid
from glep.ivp.discrete import TRAPEZOID, DiscreteLagrangian, QuadratureRule
from glep.ivp.sensitivity import tangent_sweep
from glep.ivp.stepping import integrate
from glep.signals import check_signals
from glep.system import LagrangianSystem
from glep.trajectory import SolverReport, Trajectory
from glep.validation import as_finite_array

__all__ = ["tangent_sweep", "shoot_cbvp", "jacobi_fields", "jacobi_determinants", "conjugate_points"]

# ``tangent_sweep(dl, Q, dq0, dp0, dtheta=None, *, store=False)`` lives in
# :mod:`glep.ivp.sensitivity` (the forward parameter sensitivities use it with
# ``dtheta``); it is re-exported here because shooting is its other client.


def _as_state(value, name: str, n: int, batch: int | None) -> np.ndarray:
    arr = as_finite_array(value, name)
    if arr.ndim == 1 and arr.shape == (n,):
        return np.broadcast_to(arr, (batch or 1, n)).copy()
    if arr.ndim == 2 and arr.shape[1] == n and (batch is None or arr.shape[0] in (1, batch)):
        return np.broadcast_to(arr, (batch or arr.shape[0], n)).copy()
    raise InputError(f"{name} must have shape ({n},) or (B, {n}), got {arr.shape}")


def _unit_tangents(n: int, B: int) -> np.ndarray:
    """``n`` unit directions, shape ``(n, B, n)``: ``out[j, b] = e_j``."""
    return np.broadcast_to(np.eye(n)[:, None, :], (n, B, n)).copy()


def _to_matrix(dX: np.ndarray) -> np.ndarray:
    """Tangent stack ``(K, B, n)`` → per-member matrices ``(B, n, K)`` (column j = tangent j)."""
    return np.transpose(dX, (1, 2, 0))


def jacobi_fields(dl, Q: np.ndarray):
    r"""Matrix Jacobi fields ``δq_k, δp_k`` with ``δq₀ = 0``, ``δp₀ = I``.

    Parameters
    ----------
    dl:
        The discrete Lagrangian the trajectory ``Q`` solves.
    Q:
        Stored trajectory, shape ``(N+1, B, n)``.

    Returns
    -------
    DQ, DP:
        Shape ``(N+1, B, n, n)``: ``DQ[k, b, i, j] = ∂q_k^i / ∂p_0^j`` along
        member ``b`` (the derivative of the flow with respect to the initial
        momentum at fixed initial position).
    """
    n, B = Q.shape[-1], Q.shape[1]
    dp0 = _unit_tangents(n, B).astype(Q.dtype)
    DQ, DP = tangent_sweep(dl, Q, np.zeros_like(dp0), dp0, store=True)
    return np.transpose(DQ, (0, 2, 3, 1)), np.transpose(DP, (0, 2, 3, 1))


def jacobi_determinants(dl, Q: np.ndarray) -> np.ndarray:
    """``det δq_k`` of the Jacobi fields of :func:`jacobi_fields`, shape ``(N+1, B)``."""
    DQ, _ = jacobi_fields(dl, Q)
    return np.linalg.det(DQ)


def _sign_changes(d: np.ndarray) -> np.ndarray:
    """Sign changes along axis 0 of ``d`` (zeros skipped), per column."""
    out = np.zeros(d.shape[1], dtype=int)
    for b in range(d.shape[1]):
        s = np.sign(d[:, b])
        s = s[s != 0]
        out[b] = int(np.count_nonzero(s[1:] != s[:-1]))
    return out


def conjugate_points(system: LagrangianSystem, params: Mapping[str, np.ndarray], grid: TimeGrid, q0, p0, *,
                     integrator_rule: QuadratureRule = TRAPEZOID, beta: float = 0.0,
                     fast: bool = True) -> np.ndarray:
    r"""Number of discrete conjugate points of ``q₀`` in ``(0, T]`` along the trajectory from ``(q₀, p₀)``.

    The trajectory is integrated with the discrete Lagrangian of
    ``integrator_rule``; along it the matrix Jacobi fields with ``δq₀ = 0``,
    ``δp₀ = I`` are pushed and the sign changes of ``det δq_k`` over
    ``k = 1, …, N`` are counted.  For a trajectory solving a CBVP this is the
    Morse index of the discrete action (number of negative eigenvalues of its
    Hessian with both ends fixed): ``0`` means a strict local minimum.  A
    ``det δq_N`` of zero (to round-off) means the CBVP is degenerate at ``T``
    (resonance); such an exact zero is skipped by the count.

    Returns
    -------
    numpy.ndarray
        Integer counts, shape ``(B,)`` (one per batch member).
    """
    theta = system.check_params(params)
    q0 = _as_state(q0, "q0", system.n, system.batch)
    p0 = _as_state(p0, "p0", system.n, q0.shape[0])
    dl = DiscreteLagrangian(system, theta, grid, integrator_rule, beta, fast=fast)
    Q, _ = integrate(dl, q0, p0)
    det = jacobi_determinants(dl, Q)
    return _sign_changes(det[1:])


# -- Newton's method ---------------------------------------------------------


class _Newton:
    r"""Damped Newton on a batch of independent square systems ``F_b(z_b) = 0``.

    The outer Newton of shooting, deliberately separate from the per-step dense
    Newton of :mod:`glep._newton`: its residual is the end of ``N`` rounded steps,
    so it needs a line search and a *measured* noise floor (below), not a
    residual tolerance.

    ``evaluate(z)`` returns ``(F, state)`` with ``F`` of shape ``(B, m)`` and
    raises :class:`SolverError` on overflow; ``jacobian(z, state)`` returns
    ``(B, m, m)``.  Each batch member has its own step length ``λ_b``, halved
    until its Euclidean residual decreases (Armijo: ``‖F_b(z_b + λ_b δz_b)‖ ≤
    (1 − 10⁻⁴ λ_b) ‖F_b(z_b)‖``).

    Convergence: ``max |F| ≤ tol · scale``; or a Newton correction at
    round-off (``‖δz‖_∞ ≤ 10⁻¹⁴ (1 + ‖z‖_∞)``); or, when the line search
    finds no decrease, a residual within :attr:`floor_factor` times its
    round-off floor (:meth:`noise_floor`): nothing more can be gained in
    floating point.  A stall above the floor is a :class:`SolverError`
    naming the residual and the floor.  ``history`` records ``max |F|``
    over the batch.
    """

    #: a residual within this multiple of its estimated round-off floor counts as converged
    floor_factor = 10.0
    #: evaluations of the shooting map along one direction in :meth:`noise_floor`
    noise_samples = 4

    def __init__(self, evaluate, jacobian, *, tol: float, scale: float, maxiter: int, label: str):
        self.evaluate, self.jacobian = evaluate, jacobian
        self.tol, self.scale, self.maxiter, self.label = tol, scale, maxiter, label
        self.history: list[float] = []
        self.reason = ""
        self.floor: float | None = None

    def _try(self, z):
        """``(F, state, per-member 2-norms)``; norms are ``inf`` on overflow."""
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                F, state = self.evaluate(z)
                norms = np.linalg.norm(F, axis=-1)
        except SolverError:
            return None, None, np.full(z.shape[0], np.inf)
        return F, state, np.where(np.isfinite(norms), norms, np.inf)

    def noise_floor(self, z, F, J) -> np.ndarray:
        r"""Round-off floor of ``max |F_b|`` at ``z``, per batch member, shape ``(B,)``.

        The shooting residual is the end of ``N`` rounded steps, so it carries
        noise from every step, amplified by the flow.  It is measured where
        it arises: along a random direction ``d`` with ``‖d‖_∞ = 10³ ε
        (1 + ‖z‖_∞)``, so small that the curvature term ``O(‖F''‖ ‖d‖²)``
        is far below round-off, the differences
        ``e_j = F(z + j d) − F(z) − j J d`` (``j = 1 … 4``) are pure noise
        (the noise of two evaluations).  The floor is the largest
        ``|e_j|``, and at least the rounding of ``z`` itself,
        ``ε max_i (|J| |z|)_i``.  ``nan`` if the map overflows next to ``z``.
        """
        eps = np.finfo(float).eps
        zr = np.abs(z)
        floor = eps * np.max(np.abs(J) @ zr[..., None], axis=(-2, -1))
        rng = np.random.default_rng(12345)
        u = rng.choice([-1.0, 1.0], size=z.shape)
        d = 1e3 * eps * (1.0 + np.max(zr, axis=-1, keepdims=True)) * u
        Jd = (J @ d[..., None])[..., 0]
        for j in range(1, self.noise_samples + 1):
            Fj, _, nj = self._try(z + j * d)
            if Fj is None or not np.all(np.isfinite(nj)):
                return np.full(z.shape[0], np.nan)  # not measurable: never counts as converged
            floor = np.maximum(floor, np.max(np.abs(Fj - F - j * Jd), axis=-1))
        return floor

    def _at_floor(self, z, F, J) -> tuple[np.ndarray, np.ndarray]:
        """``(residual ≤ floor_factor · floor per member, floor)``; records the largest floor."""
        floor = self.noise_floor(z, F, J)
        self.floor = float(np.max(floor))  # nan if not measurable
        return np.max(np.abs(F), axis=-1) <= self.floor_factor * floor, floor

    def _stalled(self, what: str, F, floor, reason: str) -> SolverError:
        res = np.max(np.abs(F), axis=-1)
        b = int(np.argmax(res / np.maximum(floor, np.finfo(float).tiny)))
        return SolverError(f"{self.label}: {what}; the residual max|F| = {res[b]:.3e} is above its round-off floor "
                           f"{floor[b]:.3e} (×{self.floor_factor:g} allowed)", reason=reason, history=self.history)

    def _line_search(self, z, dz, F, J, norms, frozen, small: bool):
        """Per-member backtracking along ``dz``; ``(λ, F, state, norms, frozen)`` at the accepted points.

        Members already at their round-off floor (``frozen``) do not move.  When the full step fails
        for some member, the floor is measured once: members within ``floor_factor`` of it are frozen
        (no decrease is possible there); a member that finds no decrease above its floor is an error.
        """
        lam = np.where(frozen, 0.0, 1.0)
        done = frozen.copy()
        floor = None
        for _ in range(40):
            Ft, st, nt = self._try(z + lam[:, None] * dz)
            done |= (nt <= (1.0 - 1e-4 * lam) * norms) | (small & np.isfinite(nt))
            if np.all(done):
                return lam, Ft, st, nt, frozen
            if floor is None:
                at_floor, floor = self._at_floor(z, F, J)
                newly = at_floor & ~done
                if np.any(newly):
                    frozen, done = frozen | newly, done | newly
                    lam = np.where(newly, 0.0, lam)
                    if np.all(done):
                        Ft, st, nt = self._try(z + lam[:, None] * dz)
                        return lam, Ft, st, nt, frozen
            lam = np.where(done, lam, 0.5 * lam)
        raise self._stalled("the line search found no decrease of the residual", F, floor, "line search")

    def solve(self, z):
        F, state, norms = self._try(z)
        if not np.all(np.isfinite(norms)):
            raise SolverError(f"{self.label}: the initial guess gives a non-finite trajectory",
                              reason="overflow at the initial guess", history=[np.inf])
        res = float(np.max(np.abs(F)))
        self.history.append(res)
        frozen = np.zeros(z.shape[0], bool)  # members already at their round-off floor
        for _ in range(self.maxiter):
            if np.all((np.max(np.abs(F), axis=-1) <= self.tol * self.scale) | frozen):
                self.reason = "round-off floor" if np.any(frozen) else "residual"
                return z, state
            J = self.jacobian(z, state)
            try:
                dz = -np.linalg.solve(J, F[..., None])[..., 0]
            except np.linalg.LinAlgError as exc:
                raise SolverError(f"{self.label}: singular shooting Jacobian (a conjugate point at T?)",
                                  reason="singular Jacobian", history=self.history) from exc
            if not np.all(np.isfinite(dz)):
                raise SolverError(f"{self.label}: the Newton step is not finite",
                                  reason="ill-conditioned Jacobian", history=self.history)
            small = float(np.max(np.abs(dz))) <= 1e-14 * (1.0 + float(np.max(np.abs(z))))
            lam, Ft, st, nt, frozen = self._line_search(z, dz, F, J, norms, frozen, small)
            if np.all(frozen):
                self.reason = "round-off floor"
                return z, state
            z, F, state, norms = z + lam[:, None] * dz, Ft, st, nt
            res = float(np.max(np.abs(F)))
            self.history.append(res)
            if small:
                self.reason = "round-off step"
                self._at_floor(z, F, J)  # measured for the record (meta["residual_floor"])
                return z, state
        conv = (np.max(np.abs(F), axis=-1) <= self.tol * self.scale) | frozen
        if np.all(conv):
            self.reason = "round-off floor" if np.any(frozen) else "residual"
            return z, state
        at_floor, floor = self._at_floor(z, F, self.jacobian(z, state))
        if np.all(at_floor | conv):
            self.reason = "round-off floor"
            return z, state
        raise self._stalled(f"no convergence in {self.maxiter} Newton iterations", F, floor, "maxiter")


def _cuts(N: int, segments: int) -> list[int]:
    return [int(round(s * N / segments)) for s in range(segments + 1)]


class _Shooting:
    r"""The shooting map on the segments ``[cuts_s, cuts_{s+1}]`` of a chain (one segment: single shooting).

    Unknowns ``z = (p₀, (q, p) at each interior cut)``, ``n (2m − 1)`` per batch
    member; residual: continuity of ``(q, p)`` at each cut, then ``q_N − q_T``.
    Each segment is the discrete Lagrangian on its sub-range of steps
    (:meth:`~glep.ivp.discrete.DiscreteLagrangian.segment`), integrated and
    linearised by the unmodified engines.
    """

    def __init__(self, dl: DiscreteLagrangian, q0, qT, cuts: list[int], dtype):
        self.segs = [dl.segment(a, b) for a, b in zip(cuts[:-1], cuts[1:])]
        self.cuts, self.q0, self.qT, self.dtype = cuts, q0, qT, dtype
        self.m, (self.B, self.n) = len(self.segs), q0.shape
        self.size = self.n * (2 * self.m - 1)
        self.label = "single shooting" if self.m == 1 else f"multiple shooting ({self.m} segments)"

    def _offset(self, s: int) -> int:
        """Column of the state ``(q, p)`` at interior cut ``s ≥ 1``."""
        return self.n + 2 * self.n * (s - 1)

    def pack(self, p0, Qg=None, Pg=None) -> np.ndarray:
        """``z`` from ``p₀`` and (multiple shooting) guesses ``Qg, Pg`` of the whole trajectory."""
        n, z = self.n, np.empty((self.B, self.size), self.dtype)
        z[:, :n] = p0
        for s in range(1, self.m):
            off = self._offset(s)
            z[:, off:off + n], z[:, off + n:off + 2 * n] = Qg[self.cuts[s]], Pg[self.cuts[s]]
        return z

    def starts(self, z) -> list[tuple[np.ndarray, np.ndarray]]:
        n = self.n
        return [(self.q0, z[:, :n])] + [(z[:, off:off + n], z[:, off + n:off + 2 * n])
                                        for off in map(self._offset, range(1, self.m))]

    def evaluate(self, z):
        """``(F, runs)``: the residual ``(B, size)`` and each segment's ``(Q_s, P_s)``."""
        n, F, runs, starts = self.n, np.empty((self.B, self.size), self.dtype), [], self.starts(z)
        for s, ((qs, ps), seg) in enumerate(zip(starts, self.segs)):
            Qs, Ps = integrate(seg, qs, ps)
            if not np.all(np.isfinite(Qs)):
                raise SolverError("non-finite trajectory", reason="overflow")
            runs.append((Qs, Ps))
            r0 = 2 * n * s
            if s < self.m - 1:
                F[:, r0:r0 + n], F[:, r0 + n:r0 + 2 * n] = Qs[-1] - starts[s + 1][0], Ps[-1] - starts[s + 1][1]
            else:
                F[:, r0:] = Qs[-1] - self.qT
        return F, runs

    def jacobian(self, z, runs) -> np.ndarray:
        """``∂F/∂z`` per member ``(B, size, size)`` from discrete Jacobi fields along each segment."""
        n, m = self.n, self.m
        J = np.zeros((self.B, self.size, self.size), self.dtype)
        E = _unit_tangents(n, self.B).astype(self.dtype)
        Z = np.zeros_like(E)
        for s, ((Qs, _), seg) in enumerate(zip(runs, self.segs)):
            r0 = 2 * n * s
            if s == 0:  # only p₀ is unknown (q₀ is given)
                (dq, dp), c0, width = tangent_sweep(seg, Qs, Z, E), 0, n
            else:
                (dq, dp), c0, width = tangent_sweep(seg, Qs, np.concatenate([E, Z]), np.concatenate([Z, E])), \
                    self._offset(s), 2 * n
            J[:, r0:r0 + n, c0:c0 + width] = _to_matrix(dq)
            if s < m - 1:
                J[:, r0 + n:r0 + 2 * n, c0:c0 + width] = _to_matrix(dp)
                c1 = self._offset(s + 1)
                J[:, r0:r0 + 2 * n, c1:c1 + 2 * n] -= np.eye(2 * n)
        return J

    def join(self, runs) -> tuple[np.ndarray, np.ndarray]:
        """The whole trajectory ``(Q, P)`` from the segments' runs."""
        if self.m == 1:
            return runs[0]
        Q = np.empty((self.cuts[-1] + 1, self.B, self.n), self.dtype)
        P = np.empty_like(Q)
        for s, (Qs, Ps) in enumerate(runs):
            Q[self.cuts[s]:self.cuts[s + 1] + 1], P[self.cuts[s]:self.cuts[s + 1] + 1] = Qs, Ps
        return Q, P


def _checked(system, grid, q0, qT, segments, tol):
    """``(q₀, q_T, segments, tol)`` checked before any work."""
    n = system.n
    q0 = _as_state(q0, "q0", n, system.batch)
    qT = _as_state(qT, "qT", n, q0.shape[0])
    if isinstance(segments, bool) or int(segments) != segments or not 1 <= int(segments) <= grid.N:
        raise InputError(f"segments must be an integer in [1, N={grid.N}], got {segments!r}")
    tol = float(tol)
    if not tol > 0:
        raise InputError(f"tol must be > 0, got {tol!r}")
    return q0, qT, int(segments), tol


def _initial_momentum(system, theta, grid, q0, qT, guess, p0_guess, dtype) -> np.ndarray:
    """``p₀`` from ``guess``, ``p0_guess``, or the momentum of the straight line ``q₀ → q_T``."""
    B, n = q0.shape
    if guess is not None:
        if guess.q.shape != (grid.N + 1, B, n):
            raise InputError(f"guess must have q of shape {(grid.N + 1, B, n)}, got {guess.q.shape}")
        return np.array(guess.p[0], dtype=dtype)
    if p0_guess is not None:
        return _as_state(p0_guess, "p0_guess", n, B).astype(dtype)
    return np.array(system.gradient(q0, (qT - q0) / grid.T, theta, system.inputs_at(0.0), 0.0)[1], dtype=dtype)


def _cut_guess(dl, grid, q0, qT, p0, guess, p0_guess, dtype):
    """Guesses ``(Q, P)`` of the whole trajectory for the cut states: ``guess``, else the run from
    ``p0_guess`` (when given and finite), else the straight line with its momenta."""
    if guess is not None:
        return np.asarray(guess.q, dtype), np.asarray(guess.p, dtype)
    if p0_guess is not None:
        try:
            Qg, Pg = integrate(dl, q0, p0)
            if np.all(np.isfinite(Qg)) and np.all(np.isfinite(Pg)):
                return Qg, Pg
        except SolverError:
            pass
    system, theta = dl.system, dl.theta
    vbar = (qT - q0) / grid.T
    s_ = grid.times[:, None, None] / grid.T
    Qg = (1.0 - s_) * q0 + s_ * qT
    Pg = np.stack([system.gradient(Qg[k], vbar, theta, system.inputs_at(t), t)[1]
                   for k, t in enumerate(grid.times)]).astype(dtype)
    return Qg, Pg


def shoot_cbvp(system: LagrangianSystem, params: Mapping[str, np.ndarray], grid: TimeGrid, q0, qT, *,
               integrator_rule: QuadratureRule = TRAPEZOID, p0_guess=None, guess: Trajectory | None = None,
               segments: int = 1, tol: float = 1e-12, beta: complex = 0.0, fast: bool = True,
               maxiter: int = 50) -> Trajectory:
    r"""Solve the discrete CBVP ``q(0) = q₀``, ``q(T) = q_T`` by single or multiple shooting.

    Parameters
    ----------
    system, params, grid:
        The Lagrangian system, its parameters and the uniform time grid.
    q0, qT:
        The two end positions, shape ``(n,)`` or ``(B, n)`` (each batch member
        is an independent problem; Newton runs on all of them at once).
    integrator_rule:
        Quadrature rule of the discrete Lagrangian (``TRAPEZOID``: Störmer–
        Verlet for a separable system, the discretisation a P1 time mesh with
        Gauss–Lobatto quadrature assembles).
    p0_guess:
        Initial guess for the initial momentum.  Default: the momentum
        ``∂_vL(q₀, (q_T − q₀)/T, θ, 0)`` of the straight line.  Selects the
        branch when the CBVP has several solutions.
    guess:
        A whole trajectory used as initial guess (its ``p[0]`` and, with
        multiple shooting, its states at the cuts); overrides ``p0_guess``.
    segments:
        ``1``: single shooting on ``p₀`` (``n`` unknowns).  ``m > 1``: multiple
        shooting with cuts at nodes ``round(s N / m)``; unknowns ``p₀`` and
        ``(q, p)`` at each interior cut (``n (2m − 1)`` unknowns), equations:
        continuity of ``(q, p)`` at the cuts and ``q_N = q_T``.  Without
        ``guess`` the cut states come from integrating from ``p0_guess`` (when
        given and finite), otherwise from the straight line.
    tol:
        Newton stops when ``max |F| ≤ tol · (1 + max|q₀| + max|q_T|)``, ``F``
        the shooting residual (position mismatch at ``T`` and, for multiple
        shooting, state mismatch at the cuts), when the Newton correction
        is at round-off, or when ``F`` can decrease no further and is within
        10 times its round-off floor (the noise of ``F`` accumulated over the
        steps and amplified by the flow, measured at the iterate; reported as
        ``meta["residual_floor"]``).
    beta:
        Nudging strength: solves the CBVP of ``L_β = L + β c`` (the nudged
        trajectories of the residual-free CBVP estimator).  A complex ``β``
        (complex-step nudging) gives complex ``q``, ``p``; Newton then runs
        in complex arithmetic (the equations are holomorphic in ``q``).
    fast:
        Allow the explicit Störmer–Verlet path (see :class:`DiscreteLagrangian`).
    maxiter:
        Maximum number of Newton iterations.

    Returns
    -------
    Trajectory
        ``q``, ``p`` of shape ``(N+1, B, n)`` (discrete momenta
        ``p_k = −D₁L_d(q_k, q_{k+1})``), ``boundary="CBVP"``; ``meta`` holds
        the method, the number of Newton iterations and the residual history.

    Raises
    ------
    SolverError
        Newton failed (singular Jacobian, no decrease above the round-off
        floor, overflow or too many iterations); the message names the
        residual and its floor, ``.history`` holds the residual norms.
    """
    theta = system.check_params(params)
    check_signals(system, grid.T)
    q0, qT, segments, tol = _checked(system, grid, q0, qT, segments, tol)
    dl = DiscreteLagrangian(system, theta, grid, integrator_rule, beta, fast=fast)
    dtype = np.result_type(q0, beta)
    p0 = _initial_momentum(system, theta, grid, q0, qT, guess, p0_guess, dtype)
    shooting = _Shooting(dl, q0, qT, _cuts(grid.N, segments), dtype)
    z0 = shooting.pack(p0, *(_cut_guess(dl, grid, q0, qT, p0, guess, p0_guess, dtype) if segments > 1 else ()))
    scale = 1.0 + float(np.max(np.abs(q0))) + float(np.max(np.abs(qT)))
    newton = _Newton(shooting.evaluate, shooting.jacobian, tol=tol, scale=scale, maxiter=maxiter,
                     label=shooting.label)
    t0 = time.perf_counter()
    _, runs = newton.solve(z0)
    wall = time.perf_counter() - t0
    Q, P = shooting.join(runs)
    meta = {"method": "single shooting" if segments == 1 else "multiple shooting", "segments": segments,
            "integrator": integrator_rule.name, "system": system.name,
            "iterations": len(newton.history) - 1, "residual_history": list(newton.history),
            "converged": newton.reason, "residual_floor": newton.floor}
    report = SolverReport(str(newton.reason), len(newton.history) - 1, tuple(newton.history), wall)
    return Trajectory(grid.times, Q, P, beta, CBVP(q0, qT), dict(theta), meta, report)
