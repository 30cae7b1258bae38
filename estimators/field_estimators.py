r"""Gradient estimators for field systems: PFVP (backward integration), the echo, CIVP (+ residual).

The discrete GLEP identity (THEORY §4) holds for the field leapfrog as for any
variational integrator: with the final state ``(q_N, p_N)`` of the free
forward pass held fixed while β varies (PFVP), nothing moves at ``T`` and the
CIVP condition kills the residual at 0, so

    dC_h/dθ  = d/dβ|₀ I(β),      I(β) = Σ_k w_k ∂_θU(q^β_k, t_k)   (= Σ_k ∂_θL_d along the β trajectory),
    dC_h/dq₀ = −d/dβ|₀ p^β(0),   dC_h/dp₀ = d/dβ|₀ q^β(0),

where ``q^β`` is the nudged trajectory (``U + βc``) integrated *backward* from
``(q_N, p_N − β∇c_T(q_N))`` (the terminal cost is an impulse at ``T``).  For a
time-reversible density (every separable one with the mechanical reversal)
the backward pass is the **echo**: flip the momentum at ``T``, run the same
leapfrog forward with inputs and targets replayed in reverse, flip back — the
same arithmetic, forward in time (it agrees with PFVP to round-off).  This is
also RHEL's estimator (``∂_θH = −∂_θL``, ``Σ_x(q, p) = (p, q)``): the three coincide
for separable fields.

``d/dβ`` is taken by a :class:`~glep.estimators.nudging.Nudge` (``Centred``:
``(I(β) − I(−β))/2β``, bias ``O(β²)``; ``OneSided``).  Cost: one forward pass
plus one nudged pass per β, whatever the number of parameter dofs; memory: a
constant number of state vectors (``q, p, F``, the accumulators), against the
``N + 1`` (or ``O(s)`` checkpointed) of the adjoint.  Parameter-field gradients
come back as :class:`glep.field_system.FieldGradient` (dual vector and its Riesz
representative).

:func:`field_civp` nudges the forward (CIVP) passes instead: its contrast omits
the boundary residual ``R(T)`` (biased), which it adds from forward tangent
sensitivities, one pass per parameter dof, when ``residual=True`` (exact).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from glep.errors import InputError
from glep.estimators.nudging import Centred, Nudge
from glep.field_system import FieldGradient, FieldSystem
from glep.ivp import field_stepping as fs


@dataclass
class FieldEstimate:
    """A field gradient estimate (the layout of :class:`glep.ivp.field_adjoint.FieldAdjointResult`).

    Attributes:
        name: ``"PFVP"`` or ``"echo"``.
        theta: name -> float (scalar) or :class:`FieldGradient`.
        q0, p0: ``dC/dq₀`` (dual vector) and ``dC/dp₀`` (local arrays).
        loss: ``C_h`` of the free pass.
        passes: forward passes (1 free + one per β).
        assemblies: vector assemblies of every pass (forces, cost gradients, θ-derivatives).
        peak_vectors: state-sized vectors held at once (constant in ``N``).
    """

    name: str
    theta: dict
    q0: np.ndarray
    p0: np.ndarray
    loss: float
    passes: int
    assemblies: int
    wall_time: float
    nudge: str
    peak_vectors: int = 6
    notes: list[str] = field(default_factory=list)


def _reversible(system: FieldSystem) -> bool:
    (sq,), (sp,) = system.lagrangian.reversal_signs
    return sq == 1 and sp == -1


def field_pfvp(system: FieldSystem, T: float, N: int, nudge: Nudge | None = None, *, echo: bool = False,
               q0=None, p0=None, riesz: bool = True) -> FieldEstimate:
    r"""PFVP (``echo=False``: backward integration) or echo estimate of ``dC_h/dθ``, ``dC_h/dq₀``, ``dC_h/dp₀``.

    Arguments:
        nudge: the β-derivative scheme (default ``Centred(1e-4)``; real β only).
        echo: run the nudged passes as echoes (forward in time, flipped) instead of backward.
        q0, p0: initial state (default: the system's).
        riesz: also compute the Riesz representatives of the parameter-field gradients.
    """
    start = time.perf_counter()
    nudge = nudge or Centred(1e-4)
    if not isinstance(nudge, Nudge):
        raise InputError(f"nudge must be a glep Nudge (Centred, OneSided), got {type(nudge).__name__}")
    if any(isinstance(b, complex) for b in nudge.betas):
        raise InputError("field estimators take a real β (Centred or OneSided nudge, not ComplexStep)")
    if echo and not _reversible(system):
        raise InputError("the echo needs the mechanical reversal (φ, φ_t) -> (φ, -φ_t); use PFVP (echo=False)")
    free = fs.forward(system, T, N, q0=q0, p0=p0, theta_integral=nudge.needs_free)
    qi, pi = (q0, p0) if q0 is not None and p0 is not None else system.initial_state()
    qi = qi if q0 is None else q0
    pi = pi if p0 is None else p0
    gT = system.cost_gradient(free.q, T, "terminal") if system.has_terminal_cost else 0.0
    run = fs.echo if echo else fs.backward
    values, assemblies = {}, free.assemblies
    for b in nudge.betas:
        pas = run(system, free.q, free.p - b * gT, T, N, beta=b, theta_integral=True)
        values[b] = (pas.theta_integral, pas.q, pas.p)
        assemblies += pas.assemblies
    dI, dq, dp = nudge.combine(values, (free.theta_integral, np.asarray(qi, float), np.asarray(pi, float)))
    theta = system.labelled_gradients(dI, riesz)
    gq0, gp0 = -dp, dq
    gq0[system.bc_dofs] = 0.0
    gp0[system.bc_dofs] = 0.0
    name = "echo" if echo else "PFVP"
    notes = ["exact (time-reversible separable density): forward passes only" if echo
             else "exact: backward integration from the free final state"]
    return FieldEstimate(name, theta, gq0, gp0, free.loss, 1 + len(nudge.betas), assemblies,
                         time.perf_counter() - start, nudge.label, notes=notes)


def field_echo(system: FieldSystem, T: float, N: int, nudge: Nudge | None = None, **kw) -> FieldEstimate:
    """The echo estimator: :func:`field_pfvp` with ``echo=True``."""
    return field_pfvp(system, T, N, nudge, echo=True, **kw)


def _unit_directions(system: FieldSystem, name: str):
    """Yield ``(global index, local direction array)`` for every dof of parameter ``name`` (collective)."""
    imap = system.spaces[name].dofmap.index_map
    lo, hi = imap.local_range
    n_local = imap.size_local + imap.num_ghosts
    ghosts = imap.ghosts
    for j in range(imap.size_global):
        d = np.zeros(n_local)
        if lo <= j < hi:
            d[j - lo] = 1.0
        d[imap.size_local:] = (ghosts == j).astype(float)
        yield j, d


def field_civp(system: FieldSystem, T: float, N: int, nudge: Nudge | None = None, *, residual: bool = True,
               q0=None, p0=None, riesz: bool = True) -> FieldEstimate:
    r"""Nudged CIVP passes (same initial state, ``U + βc``): the contrast, plus the residual ``R(T)`` if asked.

    ``R(T) = (d_β π_N)ᵀ ∂_θ q_N − (d_θ π_N)ᵀ d_β q_N`` with ``π_N = p_N + β∇c_T(q_N)``, from one forward tangent
    pass per parameter dof (:func:`glep.ivp.field_adjoint.final_sensitivities`): exact, at a cost ``∝ P``.
    Without the residual the contrast is biased (it omits ``R(T)``).  No gradient with respect to the
    initial state: ``q0`` and ``p0`` of the estimate are NaN arrays.
    """
    from glep.ivp.field_adjoint import final_sensitivities  # noqa: PLC0415

    start = time.perf_counter()
    nudge = nudge or Centred(1e-4)
    if not isinstance(nudge, Nudge) or any(isinstance(b, complex) for b in nudge.betas):
        raise InputError("nudge must be a real glep Nudge (Centred or OneSided)")
    free = fs.forward(system, T, N, q0=q0, p0=p0, theta_integral=nudge.needs_free)
    values, assemblies = {}, free.assemblies
    for b in nudge.betas:
        pas = fs.forward(system, T, N, q0=q0, p0=p0, beta=b, theta_integral=True, loss=False)
        gT = system.cost_gradient(pas.q, T, "terminal") if system.has_terminal_cost else 0.0
        values[b] = (pas.theta_integral, pas.q, pas.p + b * gT)
        assemblies += pas.assemblies
    dI, dqN, dpiN = nudge.combine(values, (free.theta_integral, free.q, free.p))
    passes = 1 + len(nudge.betas)
    grads = dict(dI)
    if residual:
        for name, par in system.lagrangian.parameters.items():
            if par.kind == "scalar":
                sq, sp = final_sensitivities(system, T, N, name, 1.0, q0=q0, p0=p0)
                grads[name] = grads[name] + system.dot(dpiN, sq) - system.dot(sp, dqN)
                passes += 1
                continue
            imap = system.spaces[name].dofmap.index_map
            lo, hi = imap.local_range
            g = np.array(grads[name], dtype=float)
            for j, d in _unit_directions(system, name):
                sq, sp = final_sensitivities(system, T, N, name, d, q0=q0, p0=p0)
                R = system.dot(dpiN, sq) - system.dot(sp, dqN)
                if lo <= j < hi:
                    g[j - lo] += R
                passes += 1
            grads[name] = g
    theta = system.labelled_gradients(grads, riesz)
    nan = np.full(system.n_local, np.nan)
    name = "CIVP + residual" if residual else "CIVP contrast"
    notes = ["exact: contrast + R(T) from forward tangents (cost ∝ parameter dofs)" if residual
             else "biased: omits the boundary residual R(T)"]
    return FieldEstimate(name, theta, nan, nan.copy(), free.loss, passes, assemblies, time.perf_counter() - start,
                         nudge.label, notes=notes)


def relative_error(system: FieldSystem, est, truth) -> dict[str, float]:
    r"""``‖g − g*‖ / ‖g*‖`` per parameter (dual vectors for fields) and for ``q0``, ``p0`` (all ranks)."""
    out = {}
    for k, g in truth.theta.items():
        e = est.theta[k]
        if isinstance(g, FieldGradient):
            num = system.comm.allreduce(float(np.sum((e.dual - g.dual) ** 2)))
            den = system.comm.allreduce(float(np.sum(g.dual ** 2)))
        else:
            num, den = (e - g) ** 2, g ** 2
        out[k] = float(np.sqrt(num / den)) if den > 0 else float(np.sqrt(num))
    for k in ("q0", "p0"):
        a, b = getattr(est, k), getattr(truth, k)
        if np.all(np.isnan(a)):
            continue  # not provided by this estimator (CIVP)
        num, den = system.dot(a - b, a - b), system.dot(b, b)
        out[k] = float(np.sqrt(num / den)) if den > 0 else float(np.sqrt(num))
    return out


__all__ = ["FieldEstimate", "field_civp", "field_echo", "field_pfvp", "relative_error"]
