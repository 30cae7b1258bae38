r"""Finite nudging: the objective each GLEP estimator descends exactly at finite β.

The GLEP identity (THEORY.md §2) holds at every base point β′ of a nudged
family (the system ``L + β′c`` with the family's boundary condition):

    d_θ C(s_β′) = d/dβ′ I(β′) + R_β′(T) − R_β′(0),     I(β) = ∫₀ᵀ ∂_θ L(s_β) dt,
    R = (d_β p)ᵀ ∂_θ s − (d_θ p)ᵀ ∂_β s.

Integrating it over β′ from ``a`` to ``b`` gives, with the mean of the loss
along the nudged family as objective,

    (I(b) − I(a)) / (b − a) = ∇_θ J − mean_{[a,b]} [R_β′(T) − R_β′(0)],
    J(θ) = (1/(b − a)) ∫_a^b C(s_β′(θ)) dβ′.

One-sided nudging is the segment ``[0, β]`` (``J_β``), centred nudging the
symmetric ``[−β, β]`` (``J^sym_β``), the complex step the segment ``[0, iβ]``
(``Re J``).  Hence, at finite β:

* a residual-free family (CBVP: both ends pinned, θ-independent) makes the
  contrast *exactly* ``∇_θ J`` at every β;
* the CIVP (or CFVP) contrast is exact for ``∇J`` once the residual is
  integrated over β′ (:func:`integrated_residual`); the residual of the free
  trajectory added to the contrast (``civp_contrast(..., residual=True)``) is
  exact only as β → 0;
* PFVP, echo and RHEL hold the free final state (θ-dependent) at T; at t = 0
  the nudged trajectories move with θ for β′ ≠ 0, so they keep a t = 0 term
  of order β (one-sided) or β² (centred) against ``∇J``: exact for ``∇C``
  only as β → 0.  Integrated over β′ that term makes the PFVP contrast exact
  for ``∇J`` too (``integrated_residual(..., final_state=True)``), which
  shows the measured difference is exactly that term.

Everything here is discrete (THEORY.md §4): ``C`` is the discrete loss
``C_h`` and the truth ``∇J`` is the Gauss–Legendre quadrature in β′ of the
discrete adjoints of the nudged discretisations ``L_d + β′c_d`` (for the FE
CBVP the adjoint of the nudged assembled system), with its quadrature error
estimated by doubling the number of nodes.  A family is anything that
answers :meth:`NudgedFamily.loss_gradient` at a β′: field models and HEB
plug in by implementing it (:class:`ReducedFamily` already takes any
residual-free :class:`glep.bvp.ReducedProblem`; the field families, space–time
CBVP/periodic and the time-stepped PFVP/echo family, are in
:mod:`glep.estimators.finite_fields` and registered in :data:`FAMILY_BUILDERS`).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from glep.errors import InputError, SolverError
from glep.estimators.base import AbstractEstimator, AbstractTruth, Progress
from glep.estimators.contrast import _complete, contrast_integrand, forward_sensitivities, nudged_family
from glep.estimators.metrics import compare
from glep.estimators.nudging import Centred, ComplexStep, Nudge, OneSided
from glep.estimators.problem import Problem
from glep.estimators.result import GradientEstimate
from glep.ivp.adjoint import adjoint_gradient
from glep.ivp.discrete import Mirrored
from glep.ivp.sensitivity import final_sensitivities, flatten, unflatten
from glep.ivp.stepping import integrate

Gradient = dict[str, np.ndarray]

#: the step of the complex-step β-derivative of a nudged trajectory (no cancellation: any tiny value)
_CS = 1e-30


class QuadratureError(SolverError):
    """The Gauss–Legendre quadrature in β′ did not reach its tolerance within the allowed nodes."""


# -- the segment of a nudge ------------------------------------------------------------------------
def segment(nudge: Nudge) -> tuple[complex, complex]:
    r"""The β′-segment ``[a, b]`` whose mean loss the nudge's contrast differentiates.

    ``OneSided(β)``: ``[0, β]``; ``Centred(β)``: ``[−β, β]``; ``ComplexStep(β)``: ``[0, iβ]``
    (the real part of the mean is taken).
    """
    if isinstance(nudge, OneSided):
        return 0.0, nudge.beta
    if isinstance(nudge, Centred):
        return -nudge.beta, nudge.beta
    if isinstance(nudge, ComplexStep):
        return 0.0, 1j * nudge.beta
    raise InputError(f"nudge must be OneSided, Centred or ComplexStep, got {nudge!r}")


def objective_name(nudge: Nudge) -> str:
    """``"J_β"``, ``"J^sym_β"`` or ``"Re J_iβ"``: the objective of the nudge's segment."""
    return {OneSided: "J_β", Centred: "J^sym_β", ComplexStep: "Re J_iβ"}[type(nudge)]


@dataclass
class SegmentMean:
    """``mean_{[a,b]} f`` by Gauss–Legendre, converged by doubling the nodes.

    Attributes: ``value`` (the mean with ``2m`` nodes), ``error`` (``|mean_2m − mean_m|`` per
    component: an upper estimate of the error of ``mean_m``, far above that of ``value`` for an
    analytic integrand), ``nodes`` (``2m``) and ``evaluations`` (every node computed).
    """

    value: np.ndarray
    error: np.ndarray
    nodes: int
    evaluations: int


def segment_mean(f: Callable[[complex], np.ndarray], a: complex, b: complex, *, converged: Callable,
                 nodes: int = 4, max_nodes: int = 128) -> SegmentMean:
    r"""``(1/(b − a)) ∫_a^b f(z) dz`` on the straight segment, Gauss–Legendre with ``m, 2m, 4m…`` nodes.

    With ``z_i = a + (b − a)(x_i + 1)/2`` and Legendre nodes/weights ``(x_i, w_i)``, the mean is
    ``Σ_i (w_i / 2) f(z_i)``.  Doubling stops when ``converged(mean_2m, |mean_2m − mean_m|)``.

    Raises :class:`QuadratureError` when ``max_nodes`` is passed first.
    """
    def integer(v) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if not (integer(nodes) and integer(max_nodes) and 1 <= nodes and 2 * nodes <= max_nodes):
        raise InputError(f"nodes must be an integer >= 1 and max_nodes an integer >= 2 nodes, got nodes={nodes!r}, "
                         f"max_nodes={max_nodes!r}")

    def mean(m: int) -> np.ndarray:
        x, w = np.polynomial.legendre.leggauss(m)
        z = a + (b - a) * (x + 1.0) / 2.0
        order = np.argsort(np.abs(z), kind="stable")
        return sum(w[i] / 2.0 * np.asarray(f(z[i])) for i in order)

    m, evaluations = int(nodes), int(nodes)
    previous = mean(m)
    while 2 * m <= max_nodes:
        m *= 2
        evaluations += m
        current = mean(m)
        error = np.abs(current - previous)
        if converged(current, error):
            return SegmentMean(current, error, m, evaluations)
        previous = current
    raise QuadratureError(f"the Gauss–Legendre mean over β′ ∈ [{a:g}, {b:g}] did not converge with {m} nodes "
                          f"(last change {float(np.max(error)):.2e}); the nudged family is not smooth enough in β′ "
                          "there (a failed or branch-switching nudged solve?): use a smaller β or more nodes",
                          reason="quadrature not converged")


def _relative(rtol: float) -> Callable:
    """Converged when the loss and the gradient (entries 1:) both changed by at most ``rtol`` relative."""

    def converged(value: np.ndarray, error: np.ndarray) -> bool:
        v, g = abs(value[0]), np.linalg.norm(value[1:])
        return bool(error[0] <= rtol * max(v, 1e-300) and np.linalg.norm(error[1:]) <= rtol * max(g, 1e-300))

    return converged


# -- nudged families ---------------------------------------------------------------------------------
class NudgedFamily(ABC):
    r"""``β′ ↦ s_β′``: the nudged trajectories of one boundary condition, queried one β′ at a time.

    A family gives, at any β′, the discrete loss ``C_h(s_β′)`` and its total
    θ-gradient ``d_θ C_h(s_β′(θ))`` by the discrete adjoint of the nudged
    discretisation (``L + β′c``).  That is all :func:`free_energy` needs:
    field models and HEB plug in by subclassing.
    """

    #: a short name of the boundary condition (``"CIVP"``, ``"PFVP"``, ``"CBVP"``…)
    name: str
    #: parameter name -> shape
    parameters: Mapping[str, tuple]
    #: whether complex β′ is supported (the complex-step segment)
    complex_beta: ClassVar[bool] = True

    @abstractmethod
    def loss_gradient(self, beta: complex) -> tuple[complex, Gradient]:
        """``(C_h(s_β′), d_θ C_h(s_β′))`` (complex for complex β′)."""

    def release(self) -> None:
        """Free what the family keeps between β′ (solver objects); nothing by default."""
        return None


class InitialValueFamily(NudgedFamily):
    r"""The problem's own boundary data held fixed: nudged CIVPs (forward) or CFVPs (backward, mirrored).

    ``s_β′`` starts from the free trajectory's initial data (for a CFVP: its final data); its
    gradient is the discrete adjoint of ``problem.dl(β′)`` (``v₀``-dependence of ``p₀`` included).
    """

    def __init__(self, problem: Problem):
        self.problem = problem
        self.name = problem.boundary_name
        self.parameters = problem.system.parameters

    def loss_gradient(self, beta):
        pr, free = self.problem, self.problem.free
        dl = pr.dl(beta)
        Q, _ = integrate(dl, free.q0, free.p0, store="q")
        res = adjoint_gradient(dl, Q, v0=free.v0, terminal=not pr.final_value)
        return _loss(dl, Q, not pr.final_value), res.theta


def _loss(dl, Q, terminal: bool) -> complex:
    """``C_h`` of a (possibly complex, complex-step) trajectory: the holomorphic sum, not its real part."""
    sys = dl.system
    loss = 0.0
    if sys.cost is not None:
        c = sys.cost.cost(Q, dl.all_node_inputs(), None)
        loss = dl.h * (c[1:-1].sum() + 0.5 * (c[0].sum() + c[-1].sum()))
    if terminal and sys.terminal_cost is not None:
        loss = loss + np.sum(sys.terminal_cost.cost(Q[-1]))
    return loss if np.iscomplexobj(loss) else float(loss)


class FinalStateFamily(NudgedFamily):
    r"""PFVP: the free CIVP's final state ``(q_N(θ), π_N(θ))`` held, integrated backward at each β′.

    Start (mirrored) ``(q_N, −π_N + β′∇c_T(q_N))``.  The gradient chains the mirrored discrete adjoint
    (start held) with the forward sensitivities of the free final state:
    ``d_θ C = ∂_θ C|_start + (∂_θ q_N)ᵀ(g_q + ∇c_T + β′∇²c_T g_p) − (d_θ π_N)ᵀ g_p``,
    ``(g_q, g_p)`` the adjoint's start-state gradients.  Echo and RHEL trajectories are this family's
    (for a time-reversible system).
    """

    def __init__(self, problem: Problem):
        problem.require_civp("the PFVP family")
        self.problem = problem
        self.name = "PFVP"
        self.parameters = problem.system.parameters

    def loss_gradient(self, beta):
        pr, free = self.problem, self.problem.free
        qN, piN = free.Q[-1], free.P[-1]
        tc = pr.system.terminal_cost
        dl = Mirrored(pr.base_dl(beta))
        Q, _ = integrate(dl, qN, -piN + beta * pr.terminal_gradient(qN), store="q")
        res = adjoint_gradient(dl, Q, v0=None, terminal=False)
        sq, sp = forward_sensitivities(pr)
        gq = res.q0 + pr.terminal_gradient(qN)
        if tc is not None:
            gq = gq + beta * tc.hessian_action(qN, res.p0)
        chain = np.einsum("pbn,bn->p", sq, gq) - np.einsum("pbn,bn->p", sp, res.p0)
        grad = {k: res.theta[k] + g for k, g in unflatten(chain, self.parameters).items()}
        loss = _loss(dl, Q, False) + (0.0 if tc is None else np.sum(tc.cost(qN)))
        return loss, grad


class ReducedFamily(NudgedFamily):
    r"""A residual-free finite-element boundary-value problem (a :class:`glep.bvp.ReducedProblem`) at each β′.

    The nudged problems share one assembler (:func:`glep.bvp.nudged.nudged_problem`); each β′ is solved
    by Newton by continuation from the solved β′ nearest to it (plus ``Δβ ∂r/∂β``), and its
    gradient is the FE discrete adjoint of the nudged assembled system (:func:`glep.bvp.adjoint.adjoint_gradient`).
    The Morse index (inertia of the action Hessian) of every nudged solution must equal the free
    one: a change means a singular Hessian (a conjugate point) between them, where the family is
    not smooth in β′ and ``J`` is not what the contrast differentiates; that raises
    :class:`glep.SolverError` (choose a smaller β or a shorter horizon).  Real β′ only.  Any field
    model built as a ``ReducedProblem`` with a residual-free boundary condition is a family as it is.
    """

    complex_beta: ClassVar[bool] = False

    def __init__(self, reduced, solution, name: str = "CBVP", **solver_kw):
        from glep.bvp.nudged import beta_tangent, nudged_problem, residual_free

        residual_free(reduced.bc)
        self.name, self.parameters, self.solver_kw = name, reduced.disc.system.parameters, solver_kw
        self.tangent = beta_tangent(reduced, solution.fe.r)
        self.nudged = nudged_problem(reduced, 0.0)
        self.r0 = solution.fe.r
        self.solved = {0.0: self.r0.copy()}
        self.index = self._index(0.0)

    def loss_gradient(self, beta):
        from glep.bvp.adjoint import adjoint_gradient as fe_adjoint
        from glep.bvp.solve import solve_problem

        if np.iscomplexobj(beta) and np.imag(beta) != 0:
            raise InputError(f"the finite-element family {self.name} nudges with real β′ only, got {beta}")
        b = float(np.real(beta))
        near = min(self.solved, key=lambda s: abs(s - b))
        guess = self.solved[near].copy()
        guess.axpy(b - near, self.tangent)
        self.nudged.disc.set_beta(b)
        try:
            sol = solve_problem(self.nudged, guess, **self.solver_kw)
        finally:
            guess.destroy()
        self.solved[b] = sol.fe.r.copy()
        index = self._index(b)
        if index != self.index:
            raise SolverError(f"the nudged {self.name} family changes Morse index from {self.index} at β′ = 0 to "
                              f"{index} at β′ = {b:g}: a conjugate point (singular action Hessian) lies between, "
                              "where the family is not smooth in β′; use a smaller β or a shorter horizon",
                              reason="Morse index changed along β′")
        res = fe_adjoint(self.nudged)
        return res.loss, {k: np.asarray(res.theta.get(k, np.zeros(s)), dtype=float)
                          for k, s in self.parameters.items()}


    def release(self) -> None:
        """Free the kept Newton factorisation and the solved vectors (the family can still be queried)."""
        self.nudged.release_solver()
        for r in self.solved.values():
            r.destroy()
        self.solved = {0.0: self.r0.copy()}

    def _index(self, beta: float) -> int:
        """The Morse index (negative inertia of the action Hessian) of the nudged solution at ``beta``."""
        from glep.bvp.solvers import inertia

        self.nudged.disc.set_beta(beta)
        J = self.nudged.jacobian(self.solved[beta])
        try:
            return inertia(J, self.nudged.comm)[0]
        finally:
            J.destroy()


def cbvp_family(problem: Problem, estimator=None) -> ReducedFamily:
    """The CBVP through the free trajectory's ends (the :class:`~glep.estimators.cbvp.CBVPContrast` family).

    ``estimator``: the CBVP estimator whose discretisation (and cached free solve) to use.
    """
    from glep.estimators.cbvp import CBVPContrast

    est = estimator or CBVPContrast()
    free = est.free_cbvp(problem, None, "finite-β CBVP family")
    return ReducedFamily(free.problem, free.solution, "CBVP")


def _spacetime_family(problem, estimator=None) -> NudgedFamily:
    """Field models on space-time meshes: ``problem`` is the solved free ``SpaceTimeSolution`` (CBVP, periodic)."""
    from glep.estimators.finite_fields import spacetime_family

    return spacetime_family(problem, estimator)


def _field_final_state_family(problem, estimator=None) -> NudgedFamily:
    """Time-stepped field models: ``problem`` is a ``glep.estimators.finite_fields.FieldProblem``."""
    from glep.estimators.finite_fields import field_final_state_family

    return field_final_state_family(problem, estimator)


#: family name (an estimator's ``nudged_family``) -> builder ``(problem, estimator) -> NudgedFamily``;
#: the field families (``"spacetime"``, ``"field-final-state"``) are in :mod:`glep.estimators.finite_fields`,
#: which maps the field estimators to them (``FIELD_ESTIMATOR_FAMILIES``, ``field_family_for``)
FAMILY_BUILDERS: dict[str, Callable] = {
    "initial-value": lambda problem, estimator=None: InitialValueFamily(problem),
    "final-state": lambda problem, estimator=None: FinalStateFamily(problem),
    "cbvp": cbvp_family,
    "spacetime": _spacetime_family,
    "field-final-state": _field_final_state_family,
}


def family_for(problem: Problem, estimator: AbstractEstimator) -> NudgedFamily:
    """The nudged family whose ``J`` the estimator's contrast approximates (its ``nudged_family``)."""
    key = getattr(estimator, "nudged_family", None)
    if key not in FAMILY_BUILDERS:
        raise InputError(f"estimator {estimator.label!r} declares no nudged family (nudged_family={key!r}); "
                         f"one of {sorted(FAMILY_BUILDERS)} is needed for its finite-β objective")
    return FAMILY_BUILDERS[key](problem, estimator)


# -- the objective J and its gradient ---------------------------------------------------------------------
@dataclass
class FreeEnergy:
    r"""``J = mean_{[a,b]} C_h(s_β′)`` and ``∇_θ J`` of one nudged family, with quadrature error estimates.

    ``value_error`` is absolute, ``gradient_error`` relative (2-norm); both are ``|G_2m − G_m|``,
    upper estimates for the returned ``2m``-node values.
    """

    family: str
    objective: str
    beta: float
    value: float
    gradient: Gradient
    value_error: float
    gradient_error: float
    nodes: int
    evaluations: int
    wall_time: float = 0.0
    notes: list[str] = field(default_factory=list)


def free_energy(family: NudgedFamily, nudge: Nudge, *, rtol: float = 1e-10, nodes: int = 4,
                max_nodes: int = 128) -> FreeEnergy:
    r"""``J`` of the nudge's segment and its exact gradient, by Gauss–Legendre quadrature in β′.

    Arguments
    ---------
    family:
        The nudged family (:class:`NudgedFamily`).
    nudge:
        ``OneSided(β)`` (``J_β``, segment ``[0, β]``), ``Centred(β)`` (``J^sym_β``, ``[−β, β]``) or
        ``ComplexStep(β)`` (``Re J``, ``[0, iβ]``).
    rtol:
        Relative change of ``J`` and of ``‖∇J‖`` between ``m`` and ``2m`` nodes at which to stop.
    nodes, max_nodes:
        First and largest number of nodes.

    Returns
    -------
    FreeEnergy
    """
    a, b = segment(nudge)
    if not isinstance(family, NudgedFamily):
        raise InputError(f"family must be a NudgedFamily (e.g. InitialValueFamily(problem)), "
                         f"got {type(family).__name__}")
    if np.iscomplexobj(b) and not family.complex_beta:
        raise InputError(f"the {family.name} family nudges with real β′ only: {nudge.label} is not supported")
    if not 0 < rtol < 1:
        raise InputError(f"rtol must be in (0, 1), got {rtol!r}")
    shapes = family.parameters
    t0 = time.perf_counter()

    def f(beta):
        loss, grad = family.loss_gradient(beta)
        return np.concatenate([[loss], flatten({k: grad[k] for k in shapes}, shapes)])

    res = segment_mean(f, a, b, converged=_relative(rtol), nodes=nodes, max_nodes=max_nodes)
    value = np.real(res.value)
    gnorm = np.linalg.norm(value[1:])
    return FreeEnergy(family.name, objective_name(nudge), nudge.beta, float(value[0]), unflatten(value[1:], shapes),
                      float(res.error[0]), float(np.linalg.norm(res.error[1:]) / max(gnorm, 1e-300)), res.nodes,
                      res.evaluations, time.perf_counter() - t0)


@dataclass(frozen=True, eq=False)
class FreeEnergyGradient(AbstractTruth):
    r"""Ground truth at finite β: ``∇_θ J`` of a nudged family (``family``: a key of :data:`FAMILY_BUILDERS`).

    ``nudge`` fixes the segment (one-sided ``J_β``, centred ``J^sym_β``, complex ``Re J``).
    """

    nudge: Nudge
    family: str = "initial-value"
    rtol: float = 1e-10
    name: ClassVar[str] = "∇J (Gauss–Legendre in β′ of nudged discrete adjoints)"
    loss: ClassVar[str] = "J = mean over β′ of C_h(s_β′) of the nudged family"

    def __call__(self, problem: Problem, progress: Progress = None) -> GradientEstimate:
        if self.family not in FAMILY_BUILDERS:
            raise InputError(f"family must be one of {sorted(FAMILY_BUILDERS)}, got {self.family!r}")
        fe = free_energy(FAMILY_BUILDERS[self.family](problem), self.nudge, rtol=self.rtol)
        return _as_estimate(fe)


def _as_estimate(fe: FreeEnergy) -> GradientEstimate:
    return GradientEstimate(f"∇{fe.objective} ({fe.family})", fe.gradient, passes=2.0 * fe.evaluations,
                            wall_time=fe.wall_time, beta=fe.beta, loss=f"{fe.objective} of the {fe.family} family",
                            notes=[f"{fe.objective} = {fe.value:.10g}; Gauss–Legendre {fe.nodes} nodes, "
                                   f"quadrature error ≤ {fe.gradient_error:.1e} (relative, gradient)"])


# -- contrasts with the boundary residual integrated over β′ ---------------------------------------------------
def _civp_end_residual(problem: Problem, beta: complex) -> np.ndarray:
    r"""``R_β′`` at the integration end of the nudged CIVP (CFVP) trajectory (flat, one entry per parameter).

    ``R = (d_β π̂_N)ᵀ ∂_θ q_N − (d_θ π̂_N)ᵀ ∂_β q_N`` with ``π̂_N = π_N + β′∇c_T(q_N)``; the
    ``β′∇²c_T`` parts cancel, leaving ``(d_β π_N + ∇c_T)ᵀ ∂_θ q_N − (d_θ π_N)ᵀ ∂_β q_N``.  θ-tangents:
    forward sensitivities of the nudged discretisation (``P`` passes); β-tangent: complex step.
    """
    free = problem.free
    # one complex-step pass: its real part is the nudged trajectory (to O(ε²)), its imaginary part ε ∂_β
    Qc, pc = integrate(problem.dl(beta + 1j * _CS), free.q0, free.p0, store="q")
    Q = np.real(Qc)
    sq, sp = final_sensitivities(problem.dl(beta), Q, v0=free.v0)
    dq, dp = np.imag(Qc[-1]) / _CS, np.imag(pc) / _CS
    dp = dp + problem.terminal_gradient(Q[-1])
    return np.einsum("bn,pbn->p", dp, sq) - np.einsum("pbn,bn->p", sp, dq)


def _pfvp_start(problem: Problem, beta: complex):
    """The mirrored start ``(q_N, −π_N + β′∇c_T(q_N))`` of the nudged PFVP trajectory."""
    free = problem.free
    qN = free.Q[-1]
    return qN, -free.P[-1] + beta * problem.terminal_gradient(qN)


def _pfvp_end_residual(problem: Problem, beta: complex, chunk: int = 64) -> np.ndarray:
    r"""``−R_β′(0)`` of the nudged PFVP trajectory: ``R̃`` at the end (``t = 0``) of its mirrored integration.

    The mirrored trajectory starts from ``(q_N(θ), −π_N(θ) + β′∇c_T(q_N(θ)))`` (its boundary momentum
    ``−π_N`` does not move with β′: no start term), so its θ-tangents start from the free final
    sensitivities: ``δq̃₀ = ∂_θ q_N``, ``δp̃₀ = −d_θ π_N + β′∇²c_T ∂_θ q_N``.  With ``p̃ = −p``,
    ``R̃ = (d_β p̃)ᵀ ∂_θ q̃ − (d_θ p̃)ᵀ ∂_β q̃ = −R(0)``.  β-tangent: complex step.
    """
    from glep.ivp.sensitivity import parameter_directions, tangent_sweep

    sq, sp = forward_sensitivities(problem)
    tc = problem.system.terminal_cost
    dl = Mirrored(problem.base_dl(beta))
    q0 = problem.free.Q[-1]
    # one complex-step pass: its real part is the nudged trajectory (to O(ε²)), its imaginary part ε ∂_β
    Qc, pc = integrate(Mirrored(problem.base_dl(beta + 1j * _CS)), *_pfvp_start(problem, beta + 1j * _CS), store="q")
    Q = np.real(Qc)
    dqN, dpN = np.zeros_like(sq), np.zeros_like(sp)
    for start, stop, dtheta in parameter_directions(problem.system.parameters, chunk):
        dp_start = -sp[start:stop] + (0.0 if tc is None else beta * tc.hessian_action(q0, sq[start:stop]))
        dqN[start:stop], dpN[start:stop] = tangent_sweep(dl, Q, sq[start:stop], dp_start, dtheta)
    dq, dp = np.imag(Qc[-1]) / _CS, np.imag(pc) / _CS
    return np.einsum("bn,pbn->p", dp, dqN) - np.einsum("pbn,bn->p", dpN, dq)


def integrated_residual(problem: Problem, nudge: Nudge | None = None, *, final_state: bool = False,
                        rtol: float = 1e-10, nodes: int = 4, max_nodes: int = 128) -> GradientEstimate:
    r"""A contrast plus its boundary residual integrated over β′: exactly ``∇J`` of its family at any β.

    ``final_state=False``: the CIVP (or CFVP) contrast plus ``mean_{[a,b]} R_β′`` at the integration
    end (:func:`_civp_end_residual`).  ``final_state=True``: the PFVP contrast plus ``−mean R_β′(0)``
    (:func:`_pfvp_end_residual`), which replaces PFVP's β′ = 0 term.  Both by Gauss–Legendre in β′
    (converged to ``rtol``, relative).  Cost: about ``P + 2`` passes per node, whatever β: the
    point is to confirm which objective the contrast differentiates, not a cheap estimator.
    Real nudges only (one-sided or centred).
    """
    nudge = nudge or Centred(0.1)
    if not isinstance(nudge, (OneSided, Centred)):
        raise InputError(f"the integrated residual needs a real nudge (OneSided or Centred), got {nudge.label}")
    t0 = time.perf_counter()
    free = problem.free
    I0 = contrast_integrand(free.dl, free.Q) if nudge.needs_free else None
    if final_state:
        problem.require_civp("the PFVP contrast with integrated residual")
        family = nudged_family(problem, nudge, free.Q[-1], lambda b: _pfvp_start(problem, b)[1], mirrored=True)
        residual, bc, end = _pfvp_end_residual, "PFVP", "−R(0)"
    else:
        family = nudged_family(problem, nudge, free.q0, lambda b: free.p0, mirrored=problem.final_value)
        residual, bc = _civp_end_residual, problem.boundary_name
        end = "R(0)" if problem.final_value else "R(T)"
    grad = dict(nudge.combine({b: v[0] for b, v in family.items()}, I0))
    a, b = segment(nudge)

    def converged(value, error):
        return bool(np.linalg.norm(error) <= rtol * max(np.linalg.norm(value), 1e-300))

    res = segment_mean(lambda z: residual(problem, z), a, b, converged=converged, nodes=nodes, max_nodes=max_nodes)
    for key, g in unflatten(np.real(res.value), problem.system.parameters).items():
        grad[key] = np.real(grad.get(key, 0.0)) + g
    rel = float(np.linalg.norm(res.error) / max(np.linalg.norm(res.value), 1e-300))
    return GradientEstimate(f"{bc} + integrated residual", _complete(problem, grad),
                            passes=1 + len(nudge.betas) + res.evaluations * (problem.parameter_count + 2),
                            wall_time=time.perf_counter() - t0, nudge=nudge.label, beta=nudge.beta,
                            loss=f"{objective_name(nudge)} of the {bc} family",
                            notes=[f"exact for {objective_name(nudge)}: contrast + {end} integrated over β′ "
                                   f"(Gauss–Legendre {res.nodes} nodes, quadrature error ≤ {rel:.1e})"])


@dataclass(frozen=True)
class IntegratedResidual(AbstractEstimator):
    r"""A contrast with its boundary residual integrated over β′: :func:`integrated_residual` as an object.

    ``final_state=False``: the CIVP (CFVP) contrast + ``R(T)`` (``R(0)``); ``True``: the PFVP
    contrast + its ``t = 0`` term.  Exact for ``J_β`` (one-sided) or ``J^sym_β`` (centred) of that
    family at every β; as β → 0 that is ``dC_h/dθ`` (bias ``O(β)`` / ``O(β²)``).  Its cost grows
    with the number of parameters (tangent sensitivities at every β′ node).
    """

    final_state: bool = False
    rtol: float = 1e-10
    loss: ClassVar[str] = "C_h of the free CIVP (or CFVP) trajectory"
    exact_at_finite_beta: ClassVar[bool] = True

    @property
    def name(self) -> str:  # type: ignore[override]
        return "pfvp-integrated" if self.final_state else "civp-integrated"

    @property
    def label(self) -> str:  # type: ignore[override]
        return "PFVP + integrated residual" if self.final_state else "CIVP + integrated residual"

    @property
    def nudged_family(self) -> str:  # type: ignore[override]
        return "final-state" if self.final_state else "initial-value"

    def accepts(self, nudge: Nudge) -> bool:
        return isinstance(nudge, (OneSided, Centred))

    def passes(self, problem: Problem, nudge: Nudge) -> float:
        return float("nan")  # known after the quadrature has converged (GradientEstimate.passes)

    def estimate(self, problem: Problem, nudge: Nudge, progress: Progress = None) -> GradientEstimate:
        return integrated_residual(problem, nudge, final_state=self.final_state, rtol=self.rtol)


# -- estimators against both truths ------------------------------------------------------------------------
@dataclass
class FiniteBetaRow:
    """One estimator at one nudge, against ``∇C`` (its own truth) and ``∇J`` of its nudged family."""

    estimator: str
    family: str
    nudge: str
    beta: float
    objective: str
    exact_declared: bool
    to_C: dict
    to_J: dict
    J: float
    J_quadrature_error: float


def finite_beta_rows(problem: Problem, estimators: Sequence[AbstractEstimator], nudges: Sequence[Nudge], *,
                     rtol: float = 1e-10, truths: dict | None = None) -> list[FiniteBetaRow]:
    r"""Each estimator at each nudge compared with ``∇C`` (its ``truth``) and with ``∇J`` of its family.

    ``compare`` metrics (cosine, relative error…) in ``to_C`` and ``to_J``.  ``truths`` caches the
    truths between calls for the same problem (keyed by family, truth and nudge), optional.  The
    family of each estimator is checked before any work.
    """
    truths = {} if truths is None else truths
    rows = []
    for est in estimators:
        family = family_for(problem, est)
        key_c = ("C", est.truth)
        if key_c not in truths:
            truths[key_c] = est.truth(problem).theta
        rows += _rows(problem, est, family, nudges, rtol, truths)
        family.release()
    return rows


def _rows(problem: Problem, est: AbstractEstimator, family: NudgedFamily, nudges: Sequence[Nudge], rtol: float,
          truths: dict) -> list[FiniteBetaRow]:
    """:func:`finite_beta_rows` of one estimator."""
    rows = []
    key_c = ("C", est.truth)
    for nudge in nudges:
        if not est.accepts(nudge):
            continue
        key_j = (est.nudged_family, est.truth, type(nudge).__name__, nudge.beta)
        if key_j not in truths:
            truths[key_j] = free_energy(family, nudge, rtol=rtol)
        fe = truths[key_j]
        g = est.estimate(problem, nudge).theta
        rows.append(FiniteBetaRow(est.label, family.name, type(nudge).__name__, nudge.beta, objective_name(nudge),
                                  bool(est.exact_at_finite_beta), compare(g, truths[key_c]), compare(g, fe.gradient),
                                  fe.value, fe.gradient_error))
    return rows


__all__ = ["FAMILY_BUILDERS", "FiniteBetaRow", "FinalStateFamily", "FreeEnergy", "FreeEnergyGradient",
           "InitialValueFamily", "IntegratedResidual", "NudgedFamily", "QuadratureError", "ReducedFamily",
           "SegmentMean", "cbvp_family", "family_for", "finite_beta_rows", "free_energy", "integrated_residual",
           "objective_name", "segment", "segment_mean"]
