r"""Ground truths: the discrete adjoint, finite differences and the Taylor test."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from glep.estimators.base import AbstractTruth
from glep.estimators.problem import Problem
from glep.estimators.result import GradientEstimate
from glep.ivp.adjoint import adjoint_gradient
from glep.ivp.sensitivity import flatten, unflatten


def adjoint(problem: Problem) -> GradientEstimate:
    """``dC_h/dθ`` (and ``dC_h/d(q₀, p₀)``) by the discrete adjoint of the same integrator."""
    t0 = time.perf_counter()
    free = problem.free
    res = adjoint_gradient(free.dl, free.Q, v0=free.v0, terminal=not problem.final_value)
    if problem.final_value:  # gradients with respect to the fixed final data (q(T), p(T))
        return GradientEstimate("adjoint", res.theta, q0=res.q0, p0=-res.p0, passes=2.0,
                                wall_time=time.perf_counter() - t0, loss="C_h of the free CFVP trajectory",
                                notes=["ground truth: discrete adjoint (backward integration)"])
    return GradientEstimate("adjoint", res.theta, q0=res.q0, p0=res.p0, passes=2.0,
                            wall_time=time.perf_counter() - t0, notes=["ground truth: discrete adjoint"])


@dataclass(frozen=True)
class DiscreteAdjoint(AbstractTruth):
    """The discrete adjoint of the free trajectory's integrator: :func:`adjoint` as an object."""

    name: ClassVar[str] = "discrete adjoint"
    loss: ClassVar[str] = "C_h of the free CIVP (or CFVP) trajectory"

    def __call__(self, problem: Problem, progress=None) -> GradientEstimate:
        return adjoint(problem)


def loss_at(problem: Problem, flat_theta: np.ndarray) -> float:
    """``C_h`` at a flattened parameter vector."""
    return problem.with_params(unflatten(flat_theta, problem.system.parameters)).free.loss


def finite_differences(problem: Problem, directions: int = 3, eps: float = 1e-6, seed: int = 0):
    """Central differences of ``C_h`` along random unit directions.

    Returns ``(D, fd)``: the directions (rows) and the directional derivatives.
    """
    rng = np.random.default_rng(seed)
    th = flatten(problem.theta, problem.system.parameters)
    D = rng.standard_normal((directions, th.size))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    fd = np.array([(loss_at(problem, th + eps * d) - loss_at(problem, th - eps * d)) / (2 * eps) for d in D])
    return D, fd


def taylor_test(problem: Problem, gradient: dict, *, eps0: float = 1e-2, steps: int = 6, seed: int = 0):
    r"""Taylor remainders ``|C(θ + εd) − C(θ) − ε gᵀd|`` for ``ε = eps0 · 2⁻ᵏ``.

    Returns ``(eps, remainders, slopes)``; a correct gradient gives slopes → 2.
    """
    rng = np.random.default_rng(seed)
    th = flatten(problem.theta, problem.system.parameters)
    g = flatten(gradient, problem.system.parameters)
    d = rng.standard_normal(th.size)
    d /= np.linalg.norm(d)
    c0 = loss_at(problem, th)
    eps = eps0 * 0.5 ** np.arange(steps)
    rem = np.array([abs(loss_at(problem, th + e * d) - c0 - e * g @ d) for e in eps])
    slopes = np.log(rem[:-1] / rem[1:]) / np.log(2.0)
    return eps, rem, slopes
