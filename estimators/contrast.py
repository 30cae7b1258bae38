r"""The GLEP estimators built on the time-stepping backend (THEORY.md §2–3).

All of them differentiate the same discrete loss ``C_h`` of the free CIVP
trajectory, through the discrete identity

    dC_h/dθ = d/dβ|₀ Σ_k ∂_θ L_d(q^β_k, q^β_{k+1})  +  R_N − R_0,
    R = (d_β π)ᵀ ∂_θ q − (d_θ π)ᵀ ∂_β q,

which holds exactly for variational integrators; only the boundary residual
changes with the boundary condition of the nudged trajectories.  Each
estimator is a function and a strategy object (:class:`CIVPContrast`,
:class:`PFVP`, :class:`Echo`; see :mod:`glep.estimators.base`).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from glep.errors import NotReversibleError
from glep.estimators.base import AbstractEstimator
from glep.estimators.nudging import Centred, Nudge
from glep.estimators.problem import Problem
from glep.estimators.result import GradientEstimate
from glep.ivp.discrete import Mirrored
from glep.ivp.sensitivity import final_sensitivities, unflatten
from glep.ivp.stepping import integrate
from glep.terms import add_into


def contrast_integrand(dl, Q, activations: dict | None = None) -> dict[str, np.ndarray]:
    """``I = Σ_k ∂_θ L_d(q_k, q_{k+1})`` along a stored trajectory (``activations``: the node activations
    its stepping pass recorded, reused instead of recomputed; see :func:`glep.ivp.stepping.integrate`)."""
    if activations:
        return dl.theta_gradient_sum(Q, activations)
    return dl.theta_gradient_sum(Q)


def nudged_family(problem: Problem, nudge: Nudge, q0, p0_of, *, mirrored: bool = False,
                  system=None) -> dict:
    r"""Integrate the nudged trajectories of every β of the scheme in one batched pass.

    The ``±β`` trajectories are stacked along the batch axis (β becomes one
    value per batch member), so a centred estimate costs one integration of a
    doubled batch instead of two.  Returns ``{β: (I(β), q_end, p_end)}`` with
    ``I(β) = Σ_k ∂_θL_d`` along the β trajectory.

    Parameters
    ----------
    q0, p0_of:
        Start position ``(B, n)`` and a function ``β -> start momentum``.
    mirrored:
        Integrate backward in time (the mirrored discrete Lagrangian).
    system:
        The system to integrate (default the problem's; the echo passes the
        time-reversed one).
    """
    system = problem.system if system is None else system
    betas = nudge.betas
    B = q0.shape[0]
    copies = len(betas)
    if _compiled(problem):  # one compiled scan, the contrast summed inside it (memory independent of N)
        from glep.ivp.compiled import nudged_family as compiled_family

        plain = problem.base_dl(0.0, system=system)
        out = compiled_family(Mirrored(plain) if mirrored else plain, [q0] * copies, [p0_of(b) for b in betas],
                              betas)
        return dict(zip(betas, out))
    stacked = system.with_signals(**{k: s.tiled(copies) for k, s in system.signals.items()}) \
        if copies > 1 else system
    beta = np.concatenate([np.full((B, 1), b) for b in betas]) if copies > 1 else betas[0]
    base = problem.base_dl(beta, system=stacked)
    dl = Mirrored(base) if mirrored else base
    acts: dict = {}  # the node activations the force computes (tanh(Wq + b)), reused by the contrasts
    Q, p_end = integrate(dl, np.concatenate([q0] * copies), np.concatenate([p0_of(b) for b in betas]),
                         store="q", activations=acts)
    # θ-derivatives of L_d do not depend on β: one un-stacked discrete Lagrangian sums each block
    plain = problem.base_dl(0.0, system=system)
    plain = Mirrored(plain) if mirrored else plain
    blocks = [slice(i * B, (i + 1) * B) for i in range(copies)]
    return {b: (contrast_integrand(plain, Q[:, blk], {i: A[:, blk] for i, A in acts.items()}), Q[-1, blk],
                p_end[blk]) for b, blk in zip(betas, blocks)}


def _compiled(problem: Problem) -> bool:
    """Whether the problem's integrator runs on the compiled (JAX) path."""
    return getattr(problem.integrator, "backend", "numpy") == "jax"


def _free_ends(problem: Problem, needs_free: bool):
    """``(q₀, p₀, v₀, q_N, π_N, I₀)`` of the free pass (``I₀`` only when the nudge reads it).

    On the compiled path, unless the problem already holds its free trajectory,
    the free pass keeps only its end state (and sums ``I₀`` in its scan): memory
    independent of the number of steps.
    """
    if not _compiled(problem) or "free" in problem.__dict__:
        free = problem.free
        I0 = contrast_integrand(free.dl, free.Q) if needs_free else None
        return free.q0, free.p0, free.v0, free.Q[-1], free.P[-1], I0
    q0, p0, v0 = problem.boundary.states(problem.system, problem.theta)
    dl = problem.dl(0.0)
    if needs_free:
        from glep.ivp.compiled import nudged_family as compiled_family

        (I0, qN, pN), = compiled_family(dl, [q0], [p0], [0.0])
        return q0, p0, v0, qN, pN, I0
    qN, pN = integrate(dl, q0, p0, store=False)
    return q0, p0, v0, qN, pN, None


def _complete(problem: Problem, grad: dict) -> dict[str, np.ndarray]:
    out = {}
    for key, shape in problem.system.parameters.items():
        g = grad.get(key)
        out[key] = np.zeros(shape) if g is None else np.real(np.asarray(g, dtype=complex)).astype(float) \
            if np.iscomplexobj(g) else np.asarray(g, dtype=float)
    return out


def _terminal_grad(problem: Problem, q):
    return problem.terminal_gradient(q)


def forward_sensitivities(problem: Problem, chunk: int = 64):
    """``∂_θ q_N`` and ``d_θ π_N`` of the free trajectory (cached on the problem)."""
    free = problem.free
    if free.sensitivities is None:
        free.sensitivities = final_sensitivities(free.dl, free.Q, v0=free.v0, chunk=chunk)
    return free.sensitivities


def civp_contrast(problem: Problem, nudge: Nudge | None = None, *, residual: bool = False,
                  chunk: int = 64) -> GradientEstimate:
    r"""Nudged CIVP trajectories: the contrast alone (biased) or with the exact ``R(T)``.

    With ``residual=True`` the boundary residual ``R_N`` is formed from the
    β-derivatives of the final state and the forward parameter sensitivities
    ``∂_θ q_N, d_θ π_N`` (one tangent pass per parameter: cost ``∝ P``).

    For a CFVP problem the same code runs on the mirrored discrete Lagrangian:
    the nudged trajectories are integrated backward from the constant final
    data and the residual is ``−R(0)`` from backward sensitivities.
    """
    nudge = nudge or Centred(1e-4)
    t0 = time.perf_counter()
    free = problem.free
    I0 = contrast_integrand(free.dl, free.Q) if nudge.needs_free else None
    family = nudged_family(problem, nudge, free.q0, lambda b: free.p0, mirrored=problem.final_value)
    values = {b: (I, qN, pN + b * _terminal_grad(problem, qN)) for b, (I, qN, pN) in family.items()}
    piN0 = free.P[-1]
    dI, dqN, dpiN = nudge.combine(values, (I0, free.Q[-1], piN0))
    grad = dict(dI)
    passes = 1 + len(nudge.betas)
    bc = problem.boundary_name
    end = "R(0)" if problem.final_value else "R(T)"
    name = f"{bc} contrast"
    notes = [f"biased: omits the boundary residual {end}"]
    if residual:
        sq, sp = forward_sensitivities(problem, chunk)
        R = np.einsum("bn,pbn->p", dpiN, sq) - np.einsum("pbn,bn->p", sp, dqN)
        for key, g in unflatten(np.real(R), problem.system.parameters).items():
            add_into(grad, key, g)
        passes += problem.parameter_count
        name, notes = f"{bc} + residual", [f"exact: contrast + {end} from tangent sensitivities"]
    return GradientEstimate(name, _complete(problem, grad), passes=passes, loss=f"C_h of the free {bc} trajectory",
                            wall_time=time.perf_counter() - t0, nudge=nudge.label, beta=nudge.beta,
                            notes=notes)


def _final_value_family(problem: Problem, nudge: Nudge, *, echo: bool):
    """Integrate the nudged final-value trajectories (backward, or the echo); return the β-derivatives."""
    q0, p0, v0, qN, piN, I0 = _free_ends(problem, nudge.needs_free)
    start = lambda b: -piN + b * _terminal_grad(problem, qN)  # noqa: E731
    if echo:  # the same system run forward, inputs and targets replayed in reverse
        values = nudged_family(problem, nudge, qN, start, system=problem.system.time_reversed(problem.grid.T))
    else:  # backward integration: the mirrored discrete Lagrangian
        values = nudged_family(problem, nudge, qN, start, mirrored=True)
    return nudge.combine(values, (I0, q0, -p0)), (q0, v0)


def _pfvp_assemble(problem: Problem, name: str, nudge: Nudge, derivs, t0, notes):
    (dI, dq0, dpe), (q0, v0) = derivs
    grad = dict(dI)
    if v0 is not None:
        # −R(0) = (∂_θ ∂_v L(q0, v0))ᵀ ∂_β q0 for a velocity-fixed CIVP
        sys = problem.system
        x0 = sys.inputs_at(0.0)
        for key, g in sys.theta_vjp(q0, v0, problem.theta, x0, 0.0, None, dq0).items():
            add_into(grad, key, g)
    return GradientEstimate(name, _complete(problem, grad), q0=np.real(dpe), p0=np.real(dq0),
                            passes=1 + len(nudge.betas), wall_time=time.perf_counter() - t0,
                            nudge=nudge.label, beta=nudge.beta, notes=notes)


def pfvp(problem: Problem, nudge: Nudge | None = None) -> GradientEstimate:
    r"""PFVP by backward integration from the free final state (exact, any system).

    The nudged trajectories keep ``q(T)`` and ``π(T)`` of the free CIVP and are
    integrated backward in time (the forward integration of the mirrored
    discrete Lagrangian).  Also returns ``dC/dq(0) = −d_β π(0)`` and
    ``dC/dp(0) = d_β q(0)``.
    """
    nudge = nudge or Centred(1e-4)
    problem.require_civp("pfvp")
    t0 = time.perf_counter()
    derivs = _final_value_family(problem, nudge, echo=False)
    return _pfvp_assemble(problem, "PFVP", nudge, derivs, t0, ["exact: backward integration"])


def retrace_error(problem: Problem) -> float:
    """Echo retrace error: forward N steps, flip the momentum, N steps of the echo.

    Returns ``max |q_echo(T) − q(0)| / max(1, max |q|)``; zero to round-off for
    a reversible system and a symmetric integrator.
    """
    free = problem.free
    dl = problem.dl(0.0, system=problem.system.time_reversed(problem.grid.T))
    Q, _ = integrate(dl, free.Q[-1], -free.P[-1], store=False)
    scale = max(1.0, float(np.max(np.abs(free.Q))))
    return float(np.max(np.abs(Q - free.q0))) / scale


def echo(problem: Problem, nudge: Nudge | None = None, *, allow_irreversible: bool = False,
         tol: float = 1e-12) -> GradientEstimate:
    r"""Hamiltonian echo: flip the momentum at ``T`` and run the *same* system forward.

    Inputs and targets are replayed in reverse; the nudge is applied during
    the echo.  For a time-reversible Lagrangian the echo trajectory read
    backwards is the PFVP trajectory, so the estimate is exact, using forward
    integration only.  For a non-reversible system this raises
    :class:`glep.NotReversibleError` unless ``allow_irreversible`` (then the
    estimate is returned with the measured retrace error in its notes and a
    warning).
    """
    nudge = nudge or Centred(1e-4)
    problem.require_civp("echo")
    t0 = time.perf_counter()
    defect = problem.reversibility_defect
    notes = ["exact for time-reversible systems: forward passes only"]
    if defect > tol:
        err = retrace_error(problem)
        msg = (f"echo: {problem.system.name} is not time-reversible (|L(q,v) − L(q,−v)| relative defect "
               f"{defect:.2e}; echo retrace error {err:.2e}), so the echo does not retrace the forward "
               "trajectory and its gradient is biased. Use PFVP (backward integration, "
               "glep.estimators.pfvp), which is exact without reversibility")
        if not allow_irreversible:
            raise NotReversibleError(msg + ", or pass allow_irreversible=True to measure the bias.")
        warnings.warn(msg, stacklevel=2)
        notes = [f"biased: system not reversible (defect {defect:.2e}, retrace error {err:.2e})"]
    derivs = _final_value_family(problem, nudge, echo=True)
    return _pfvp_assemble(problem, "echo", nudge, derivs, t0, notes)


# -- strategy objects -----------------------------------------------------------------------------
@dataclass(frozen=True)
class CIVPContrast(AbstractEstimator):
    r"""Nudged CIVP (or, for a CFVP problem, CFVP) trajectories: :func:`civp_contrast` as an object.

    ``residual=False``: the contrast ``d/dβ I`` alone, biased (it omits the
    boundary residual ``R(T)``).  ``residual=True``: with ``R(T)`` from forward
    tangent sensitivities, exact, at a cost growing with the number of
    parameters ``P`` (``1 + #β + P`` passes).
    """

    residual: bool = False
    loss: ClassVar[str] = "C_h of the free CIVP (or CFVP) trajectory"
    nudged_family: ClassVar[str] = "initial-value"  # exact for its J only with the residual integrated over β′

    @property
    def name(self) -> str:  # type: ignore[override]
        return "civp-residual" if self.residual else "civp-contrast"

    @property
    def label(self) -> str:  # type: ignore[override]
        return "CIVP + residual" if self.residual else "CIVP contrast"

    @property
    def exact(self) -> bool:  # type: ignore[override]
        return self.residual

    def passes(self, problem: Problem, nudge: Nudge) -> float:
        return 1 + len(nudge.betas) + (problem.parameter_count if self.residual else 0)

    def estimate(self, problem: Problem, nudge: Nudge, progress=None) -> GradientEstimate:
        return civp_contrast(problem, nudge, residual=self.residual)


@dataclass(frozen=True)
class PFVPContrast(AbstractEstimator):
    """Backward integration from the free final state: :func:`pfvp` as an object (exact, any system)."""

    name: ClassVar[str] = "pfvp"
    label: ClassVar[str] = "PFVP"
    nudged_family: ClassVar[str] = "final-state"  # keeps a t = 0 term at finite β

    def estimate(self, problem: Problem, nudge: Nudge, progress=None) -> GradientEstimate:
        return pfvp(problem, nudge)


@dataclass(frozen=True)
class Echo(AbstractEstimator):
    """The Hamiltonian echo: :func:`echo` as an object (exact for time-reversible systems).

    ``allow_irreversible``: on a non-reversible system return the (biased)
    estimate with the measured retrace error in its notes instead of raising
    :class:`glep.NotReversibleError`; ``warn``: then also warn.
    """

    allow_irreversible: bool = False
    warn: bool = True
    name: ClassVar[str] = "echo"
    label: ClassVar[str] = "echo"
    nudged_family: ClassVar[str] = "final-state"  # the PFVP trajectories (reversible systems)

    def estimate(self, problem: Problem, nudge: Nudge, progress=None) -> GradientEstimate:
        with warnings.catch_warnings():
            if not self.warn:
                warnings.simplefilter("ignore")
            return echo(problem, nudge, allow_irreversible=self.allow_irreversible)
