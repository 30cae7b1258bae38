r"""Finite nudging for field models: the nudged families of the two field backends.

The objective of §8 of docs/theory.md, ``J = mean_{β′ ∈ [a, b]} C_h(s_β′)``, needs at each β′ the loss of the
nudged trajectory and its total θ-gradient (:class:`glep.estimators.finite.NudgedFamily`).  Two field families:

* :class:`SpaceTimeFamily` — a residual-free space–time problem (:class:`glep.bvp.spacetime.SpaceTimeProblem`
  with a CBVP through θ-independent ends, or periodic in time) solved at β′ by Newton, by continuation from the
  solved β′ nearest to it plus ``Δβ ∂r/∂β``; its gradient is the FE discrete adjoint of the *nudged*
  assembled system, ``J_r(β′)ᵀλ = Pᵀ∂C_h/∂φ``, ``d_θC_h(φ^β′) = −∂_θF(φ^β′; λ)``.  No boundary residual at any
  β′: the space-time CBVP contrast ``(I(b) − I(a))/(b − a)`` (:func:`spacetime_contrast`) *is* ``∇J``.  The Morse
  index of every nudged solution must equal the free one (else a conjugate point lies on the segment, the family
  is not smooth there, and that is an error, not a number).
* :class:`FieldFinalStateFamily` — the time-stepped PFVP / echo family of :class:`glep.FieldSystem`: the free
  leapfrog's final state ``(q_N(θ), p_N(θ))`` held, the leapfrog for ``U + β′c`` run backward from
  ``(q_N, p_N − β′∇c_T(q_N))``, ``C_h(s_β′) = Σ_k w_k c(q^β′_k, t_k) + c_T(q_N)``.  Its gradient chains the
  reverse-mode adjoint of the nudged backward pass (:func:`pass_adjoint`, start held) with the forward tangents
  of the free final state (:func:`glep.ivp.field_adjoint.final_sensitivities`, one pass per parameter dof;
  :class:`FieldFinalStateFamily` gives the formula).

  ``field_pfvp`` / ``field_echo`` are *not* exact for this ``∇J``: they keep the ``t = 0`` term ``R_β′(0)``
  (a nudged trajectory, β′ ≠ 0, reaches ``t = 0`` at a θ-dependent state), so their distance is O(β)
  one-sided and O(β²) centred, as for ODEs.

Gradients are dicts over ``parameters``: a 0-d array per scalar, each field's dual vector over its spatial dofs
ordered by coordinates (the order of ``FieldSystem.gather`` and ``SpaceTimeProblem.field_coordinates``), the
same on any number of ranks.
Real β′ only (field assembly is real).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from glep.errors import InputError, SolverError
from glep.estimators.field_objects import FieldProblem
from glep.estimators.finite import NudgedFamily
from glep.estimators.nudging import Centred, Nudge, OneSided


def _real_beta(beta, name: str) -> float:
    if np.iscomplexobj(beta) and np.imag(beta) != 0:
        raise InputError(f"the field family {name} nudges with real β′ only, got {beta}")
    return float(np.real(beta))


# ---------------------------------------------------------------------------------------------- space-time
class SpaceTimeFamily(NudgedFamily):
    r"""A residual-free space–time problem (CBVP with θ-independent ends, or periodic) at each β′.

    Arguments:
        problem: a :class:`glep.bvp.spacetime.SpaceTimeProblem` at ``β = 0`` with a cost.
        solution: its free solution (:func:`glep.bvp.spacetime.solve`).
        solver: the :class:`glep.bvp.Newton` of the nudged solves (default: tolerances at round-off).
    """

    complex_beta: ClassVar[bool] = False

    def __init__(self, problem, solution, solver=None):
        from glep.bvp.solvers import Newton
        from glep.bvp.spacetime import SpaceTimeProblem

        if not isinstance(problem, SpaceTimeProblem):
            raise InputError(f"problem must be a SpaceTimeProblem, got {type(problem).__name__}")
        if problem.condition.label not in ("CBVP", "Periodic"):
            raise InputError(f"the space-time family needs a residual-free condition (CBVP or periodic), got "
                             f"{problem.condition.label}: its contrast leaves a boundary residual")
        if not problem.has_cost:
            raise InputError("the space-time family needs a cost: pass cost= or terminal_cost= to the problem")
        if problem.beta != 0.0:
            raise InputError(f"the space-time family starts from the free problem (beta = 0), got {problem.beta}")
        self.problem, self.solution = problem, solution
        self.solver = solver or Newton(rtol=1e-13, atol=1e-13)
        self.name = f"space-time {problem.condition.label}"
        self.parameters = {k: () for k in problem.scalars}
        self.parameters.update({k: (len(problem.field_coordinates(k)),) for k in problem.fields})
        self.solved = {0.0: solution.r.copy()}
        self.tangent = self._beta_tangent()
        self.index = self._index()

    def _beta_tangent(self):
        r"""``∂r/∂β = −J_r⁻¹ Pᵀ ∂c/∂φ`` at the free solution (the continuation predictor)."""
        from petsc4py import PETSc

        pr = self.problem
        pr.lift(self.solution.r)
        g = pr.u.x.petsc_vec.duplicate()
        pr._assemble_vector("cost_gradient", g)
        rhs, t = pr.create_vec(), pr.create_vec()
        pr.P.multTranspose(g, rhs)
        J = pr.jacobian()
        ksp = PETSc.KSP().create(pr.comm)
        try:
            ksp.setOperators(J)
            ksp.setType("preonly")
            ksp.getPC().setType("lu")
            ksp.getPC().setFactorSolverType("mumps")
            ksp.solve(rhs, t)
            if ksp.getConvergedReason() < 0:
                raise SolverError(f"{self.name} family: the free Jacobian is singular (resonance)",
                                  reason=ksp.getConvergedReason())
            t.scale(-1.0)
        finally:
            for obj in (ksp, J, g, rhs):
                obj.destroy()
        return t

    def _index(self) -> int:
        """The Morse index (negative inertia of ``J_r``, MUMPS LDLᵀ) at the solution held in ``problem.u``."""
        from glep.bvp.solvers import inertia

        J = self.problem.jacobian()
        try:
            return inertia(J, self.problem.comm, pivoting=True)[0]
        finally:
            J.destroy()

    def solve_at(self, beta: float):
        r"""Solve ``δA_β′ = 0`` from the nearest solved β′ (+ ``Δβ ∂r/∂β``); the problem is left at β′."""
        from glep.bvp.spacetime import SpaceTimeSolution, solve

        pr = self.problem
        near = min(self.solved, key=lambda s: abs(s - beta))
        guess = self.solved[near].copy()
        guess.axpy(beta - near, self.tangent)
        pr.set_beta(beta)
        sol = solve(pr, SpaceTimeSolution(pr, guess, None, 0), solver=self.solver, check_singular=False)
        guess.destroy()
        self.solved.setdefault(beta, sol.r.copy())
        index = self._index()
        if index != self.index:
            raise SolverError(f"the nudged {self.name} family changes Morse index from {self.index} at β′ = 0 to "
                              f"{index} at β′ = {beta:g}: a conjugate point (singular action Hessian) lies between, "
                              "where the family is not smooth in β′; use a smaller β or a shorter horizon",
                              reason="Morse index changed along β′")
        return sol

    def _restore(self) -> None:
        self.problem.set_beta(0.0)
        self.problem.lift(self.solution.r)

    def loss_gradient(self, beta):
        from glep.bvp.spacetime_gradients import adjoint_gradient

        b = _real_beta(beta, self.name)
        try:
            self.solve_at(b)
            res = adjoint_gradient(self.problem, nudged=True)
        finally:
            self._restore()
        return res.loss, {k: np.asarray(res.dual[k], dtype=float) for k in self.parameters}

    def integrand(self, beta: float) -> dict:
        r"""``I(β′) = ∫∫ ∂_θℒ(φ^β′)`` (the contrast integrand) at the nudged solution."""
        try:
            self.solve_at(float(beta))
            return {k: np.asarray(v, dtype=float) for k, v in self.problem.theta_gradient().items()}
        finally:
            self._restore()

    def release(self) -> None:
        """Free the kept factorisation and the solved vectors (the family can still be queried)."""
        self.problem.release_solver()
        for r in self.solved.values():
            r.destroy()
        self.solved = {0.0: self.solution.r.copy()}


def spacetime_contrast(family: SpaceTimeFamily, nudge: Nudge) -> dict:
    r"""The space–time contrast ``(I(b) − I(a))/(b − a)`` of a one-sided or centred nudge (dual vectors).

    Residual-free: exactly ``∇J`` of the nudge's segment at any β (docs/theory.md §8).
    """
    if not isinstance(nudge, (OneSided, Centred)):
        raise InputError(f"the space-time contrast needs a real nudge (OneSided or Centred), got {nudge!r}")
    free = family.integrand(0.0) if nudge.needs_free else None
    return nudge.combine({b: family.integrand(b) for b in nudge.betas}, free)


# ---------------------------------------------------------------------------------------------- time stepping
def _cost_hessian(system, t: float, v: np.ndarray, which: str = "running") -> np.ndarray:
    """``∇²c · v`` of the quadratic tracking cost: ``∇c(v) − ∇c(0)`` (exact: ``∇c`` is affine)."""
    return system.cost_gradient(v, t, which) - system.cost_gradient(np.zeros_like(v), t, which)


def _hessian(system, q, t, v, beta: float) -> np.ndarray:
    H = system.hessian_action(q, t, v)
    if beta != 0.0 and system.has_cost:
        H = H + beta * _cost_hessian(system, t, v)
    return H


def pass_adjoint(system, stored: list, times: np.ndarray, tau: np.ndarray, *, beta: float = 0.0,
                 terminal: bool = False) -> tuple[dict, np.ndarray, np.ndarray]:
    r"""Reverse mode of one leapfrog pass (:func:`glep.ivp.field_stepping.leapfrog`) for its loss.

    The pass: ``p½ = p_k + (τ_k/2)F(q_k)``, ``q_{k+1} = q_k + τ_k M⁻¹p½`` (Dirichlet values imposed),
    ``p_{k+1} = p½ + (τ_k/2)F(q_{k+1})``, ``F = ∂_qU + β∂_qc`` at the input times ``t_k`` (any signs of
    ``τ_k``: forward, backward); its loss ``L = Σ_k w_k c(q_k, t_k)`` (``+ c_T(q_N)`` if ``terminal``).  With
    ``(q̄, p̄)`` the adjoints of the state after step ``k`` (``q̄ = w_N∇c(q_N)``, ``p̄ = 0`` at the end), step
    ``k`` reversed is

        q̄ ← q̄ + (τ/2)H(q_{k+1})p̄ (zero at Dirichlet dofs),   p̄ ← p̄ + τM⁻¹q̄,
        q̄ ← q̄ + (τ/2)H(q_k)p̄ + w_k∇c(q_k),   θ̄ += (τ/2)[∂_θ(F(q_{k+1})·p̄_{k+1}) + ∂_θ(F(q_k)·p̄)],

    ``H = ∂²_qU + β∇²c``.  Returns ``(θ̄, q̄₀, p̄₀) = (∂_θL|_start, ∂L/∂q₀, ∂L/∂p₀)`` (θ̄ as
    :meth:`FieldSystem.theta_vjp`, scalars reduced over ranks).

    Arguments:
        stored: the positions ``q_0 … q_N`` of the pass (``leapfrog(..., store=True).stored``).
        times, tau: the pass's input times and signed steps.
    """
    from glep.ivp.field_stepping import trapezoid_weights

    tau, times = np.asarray(tau, dtype=float), np.asarray(times, dtype=float)
    N = len(tau)
    if N < 1 or times.shape != (N + 1,) or len(stored) != N + 1:
        raise InputError(f"pass_adjoint needs N + 1 stored positions and input times for N = {N} steps, got "
                         f"{len(stored)} positions and {times.shape} times")
    w = trapezoid_weights(tau)
    minv, bc = system.minv, system.bc_dofs
    theta: dict | None = None

    def add(grads: dict, scale: float) -> None:
        nonlocal theta
        if theta is None:
            theta = {k: scale * g for k, g in grads.items()}
        else:
            for k, g in grads.items():
                theta[k] = theta[k] + scale * g

    qbar = w[N] * system.cost_gradient(stored[N], times[N]) if system.has_cost else np.zeros(system.n_local)
    if terminal and system.has_terminal_cost:
        qbar = qbar + system.cost_gradient(stored[N], times[N], "terminal")
    pbar = np.zeros(system.n_local)
    for k in range(N - 1, -1, -1):
        h = tau[k]
        q1, q0 = stored[k + 1], stored[k]
        if np.any(pbar):
            qbar = qbar + 0.5 * h * _hessian(system, q1, times[k + 1], pbar, beta)
            add(system.theta_vjp(q1, times[k + 1], pbar), 0.5 * h)
        qbar[bc] = 0.0
        pbar = pbar + h * minv * qbar
        qbar = qbar + 0.5 * h * _hessian(system, q0, times[k], pbar, beta)
        if system.has_cost:
            qbar = qbar + w[k] * system.cost_gradient(q0, times[k])
        add(system.theta_vjp(q0, times[k], pbar), 0.5 * h)
    return system.reduce_scalars(theta), qbar, pbar


class FieldFinalStateFamily(NudgedFamily):
    r"""The time-stepped PFVP (and echo) family of a :class:`glep.FieldSystem` (see the module docstring).

    At β′: ``s_β′`` is the leapfrog of ``U + β′c`` backward from ``(q_N, p_N − β′∇c_T(q_N))``, the free
    forward pass's final state;  ``C_h(s_β′) = Σ_k w_k c(q^β′_k, t_k) + c_T(q_N)``.  Its total gradient is

        d_θC = θ̄ + Σ_j δθ_j [(∂_jq_N)ᵀ(q̄₀ − β′∇²c_T p̄₀ + ∇c_T(q_N)) + (∂_jp_N)ᵀ p̄₀]

    with ``(θ̄, q̄₀, p̄₀)`` the reverse mode of the nudged backward pass (:func:`pass_adjoint`) and the
    forward tangents ``(∂_jq_N, ∂_jp_N)`` of the free pass for every parameter dof ``j`` (computed once:
    one tangent pass per parameter dof, so this truth is meant for small problems, not as an estimator).
    """

    complex_beta: ClassVar[bool] = False

    def __init__(self, problem: FieldProblem):
        from glep.field_system import FieldSystem
        from glep.ivp import field_stepping as fs

        if not isinstance(problem, FieldProblem) or not isinstance(problem.system, FieldSystem):
            raise InputError("the field final-state family needs a FieldProblem(system=FieldSystem, T, N), got "
                             f"{type(problem).__name__}")
        if not (problem.system.has_cost or problem.system.has_terminal_cost):
            raise InputError("the field final-state family needs a cost (FieldSystem cost= or terminal_cost=)")
        self.problem, self.system = problem, problem.system
        self.name = "field PFVP"
        sys = self.system
        self.times = fs.uniform_times(problem.T, problem.N)
        free = fs.forward(sys, problem.T, problem.N, loss=False)
        self.qN, self.pN = free.q, free.p
        self.gT = sys.cost_gradient(self.qN, problem.T, "terminal") if sys.has_terminal_cost \
            else np.zeros(sys.n_local)
        self.cT = sys.cost_value(self.qN, problem.T, "terminal") if sys.has_terminal_cost else 0.0
        self.parameters = {}
        for k, par in sys.lagrangian.parameters.items():
            self.parameters[k] = () if par.kind == "scalar" else (sys.spaces[k].dofmap.index_map.size_global,)
        self._tangents = self._final_tangents()

    def _final_tangents(self) -> dict:
        """``(∂q_N, ∂p_N)`` per parameter: one pair for a scalar, one per global dof of a field (dolfinx index)."""
        from glep.estimators.field_estimators import _unit_directions
        from glep.ivp.field_adjoint import final_sensitivities

        sys, T, N = self.system, self.problem.T, self.problem.N
        out = {}
        for k, par in sys.lagrangian.parameters.items():
            if par.kind == "scalar":
                out[k] = [final_sensitivities(sys, T, N, k, 1.0)]
            else:
                out[k] = [final_sensitivities(sys, T, N, k, d) for _, d in _unit_directions(sys, k)]
        return out

    def _chain(self, aq: np.ndarray, ap: np.ndarray) -> dict:
        """``Σ (∂q_N)ᵀa_q + (∂p_N)ᵀa_p`` per parameter, fields as dual vectors ordered by coordinates."""
        sys = self.system
        out = {}
        for k, pairs in self._tangents.items():
            vals = np.array([sys.dot(dq, aq) + sys.dot(dp, ap) for dq, dp in pairs])
            if sys.lagrangian.parameters[k].kind == "scalar":
                out[k] = np.asarray(vals[0])
                continue
            imap = sys.spaces[k].dofmap.index_map
            lo, hi = imap.local_range
            out[k] = sys.gather(vals[lo:hi], k)
        return out

    def loss_gradient(self, beta):
        from glep.ivp import field_stepping as fs

        b = _real_beta(beta, self.name)
        sys, T = self.system, self.problem.T
        times = self.times[::-1].copy()
        tau = np.diff(times)
        back = fs.leapfrog(sys, self.qN, self.pN - b * self.gT, times, tau, beta=b, loss=True, terminal=False,
                           store=True)
        theta, qbar, pbar = pass_adjoint(sys, back.stored, times, tau, beta=b)
        aq = qbar + self.gT
        if b != 0.0 and sys.has_terminal_cost:
            aq = aq - b * _cost_hessian(sys, T, pbar, "terminal")
        chain = self._chain(aq, pbar)
        grad = {}
        for k, par in sys.lagrangian.parameters.items():
            own = np.asarray(theta[k]) if par.kind == "scalar" else sys.gather(theta[k], k)
            grad[k] = np.asarray(own + chain[k], dtype=float)
        return back.loss + self.cT, grad


def gathered(system, theta: dict) -> dict:
    """A field estimate's ``theta`` (floats and :class:`glep.FieldGradient`) as flat arrays ordered by coordinates."""
    from glep.field_system import FieldGradient

    return {k: system.gather(g.dual, k) if isinstance(g, FieldGradient) else np.asarray(float(g))
            for k, g in theta.items()}


#: field estimator -> the key of its nudged family in :data:`glep.estimators.finite.FAMILY_BUILDERS`
FIELD_ESTIMATOR_FAMILIES: dict[str, str] = {
    "field_pfvp": "field-final-state",
    "field_echo": "field-final-state",
    "spacetime_contrast": "spacetime",
    "contrast_gradient": "spacetime",
}


def field_family_for(problem, estimator) -> NudgedFamily:
    """The nudged family whose ``J`` a field estimator (a function or its name) approximates at finite β."""
    from glep.estimators.finite import FAMILY_BUILDERS

    name = estimator if isinstance(estimator, str) else getattr(estimator, "__name__", None)
    if name not in FIELD_ESTIMATOR_FAMILIES:
        raise InputError(f"no nudged family is known for the field estimator {name!r}; known: "
                         f"{sorted(FIELD_ESTIMATOR_FAMILIES)}")
    return FAMILY_BUILDERS[FIELD_ESTIMATOR_FAMILIES[name]](problem)


def spacetime_family(problem, estimator=None) -> SpaceTimeFamily:
    """Builder: a solved space-time problem given as its :class:`glep.bvp.spacetime.SpaceTimeSolution`."""
    from glep.bvp.spacetime import SpaceTimeSolution

    if not isinstance(problem, SpaceTimeSolution):
        raise InputError(f"the space-time family is built from a SpaceTimeSolution (the solved free problem), got "
                         f"{type(problem).__name__}")
    return SpaceTimeFamily(problem.problem, problem)


def field_final_state_family(problem, estimator=None) -> FieldFinalStateFamily:
    """Builder: a :class:`FieldProblem` (FieldSystem, T, N)."""
    return FieldFinalStateFamily(problem)


__all__ = ["FIELD_ESTIMATOR_FAMILIES", "FieldFinalStateFamily", "FieldProblem", "SpaceTimeFamily",
           "field_family_for", "field_final_state_family", "gathered", "pass_adjoint", "spacetime_contrast",
           "spacetime_family"]
