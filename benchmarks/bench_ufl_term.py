#!/usr/bin/env python
r"""Cost of a :class:`glep.UFLTerm` on the ``ivp`` backend, next to the same system built from built-in terms.

The system is a driven chain of pendula, ``L = ½ Σ m_i v_i² − Σ w_i (1 − cos q_i) + A cos(ω t) q₀``,
written twice:

* *built-in*: :class:`glep.DiagonalMass` + :class:`glep.Pendulum` + :class:`glep.InputDrive` reading the
  signal ``u(t) = A cos(ω t)``;
* *UFL*: :class:`glep.DiagonalMass` + one :class:`glep.UFLTerm` whose expression is the potential and
  reads ``t`` itself (no velocity, so the system is separable: Störmer–Verlet, RHEL allowed).

Timed (``time.perf_counter``, best of ``--repeats``):

1. ``shoot_cbvp`` over ``N`` steps (single shooting, Newton on ``p₀``; each iteration one forward
   pass and one tangent sweep);
2. one forward integration (``integrate``) of the free CIVP;
3. the contrast integrand ``Σ_k ∂_θ L_d`` along the stored trajectory (``theta_gradient_sum``): all
   ``N + 1`` nodes in one kernel call per term (the time is a per-point field of the batch mesh);
4. RHEL (three leapfrog passes and their ``∂_θ H`` sums).

Usage::

    .venv/bin/python benchmarks/bench_ufl_term.py               # N = 1600
    .venv/bin/python benchmarks/bench_ufl_term.py --steps 200   # quick
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ufl

import glep
from glep.estimators.nudging import Centred
from glep.estimators.problem import Problem
from glep.estimators.rhel import rhel
from glep.ivp.shooting import shoot_cbvp
from glep.ivp.stepping import integrate

N_DOF = 2
AMPLITUDE, OMEGA = 0.3, 1.7


def _potential(q, v, th, x, t):
    """``−V`` of a driven chain of pendula: ``−Σ w_i (1 − cos q_i) + A cos(ω t) q₀``."""
    w = th["w"]
    return -sum(w[i] * (1.0 - ufl.cos(q[i])) for i in range(N_DOF)) + AMPLITUDE * ufl.cos(OMEGA * t) * q[0]


def systems() -> dict[str, glep.LagrangianSystem]:
    """The built-in-term and the UFL-term versions of the same system."""
    drive = glep.Signal.from_function(lambda t: np.array([AMPLITUDE * np.cos(OMEGA * t)]), 1)
    cost = glep.TrackingCost(N_DOF, [0], "y")
    target = glep.Signal.from_function(lambda t: np.array([0.2 * np.sin(t)]), 1)
    builtin = glep.LagrangianSystem(
        N_DOF, [glep.DiagonalMass(N_DOF, None), glep.Pendulum(N_DOF, "w"), glep.InputDrive(N_DOF, 1, "u", "B")],
        cost=cost, signals={"u": drive, "y": target}, name="built-in")
    ufl_sys = glep.LagrangianSystem(
        N_DOF, [glep.DiagonalMass(N_DOF, None), glep.UFLTerm(N_DOF, _potential, {"w": (N_DOF,)}, name="driven")],
        cost=cost, signals={"y": target}, name="UFL")
    return {"built-in": builtin, "UFL": ufl_sys}


def params(name: str) -> dict[str, np.ndarray]:
    out = {"w": np.array([1.0, 0.7])}
    if name == "built-in":
        out["B"] = np.array([[1.0], [0.0]])
    return out


def best(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def measure(name: str, system: glep.LagrangianSystem, grid: glep.TimeGrid, repeats: int) -> dict:
    """Time shooting, one forward pass, the θ-sum and RHEL for one system."""
    th = params(name)
    q0, qT = np.zeros(N_DOF), np.array([0.5, -0.3])
    shoot_cbvp(system, th, glep.TimeGrid(grid.T, 64), q0, qT)  # warm-up: kernels compiled (and cached on disk)
    t_shoot, traj = best(lambda: shoot_cbvp(system, th, grid, q0, qT), repeats)
    problem = Problem(system, th, glep.CIVP(q0[None], p0=traj.p[0]), grid)
    dl = problem.dl(0.0)
    start = problem.boundary.states(system, problem.theta)[:2]
    t_fwd, (Q, _) = best(lambda: integrate(dl, *start), repeats)
    t_sum, g = best(lambda: dl.theta_gradient_sum(Q), repeats)
    try:
        t_rhel, est = best(lambda: rhel(problem, Centred(1e-4)), repeats)
    except glep.InputError as exc:
        print(f"{name}: RHEL refused: {exc}")
        t_rhel, est = float("nan"), None
    return {"separable": system.is_separable, "integrator": problem.integrator.name,
            "newton": traj.meta["iterations"], "shoot": t_shoot, "forward": t_fwd, "theta_sum": t_sum,
            "rhel": t_rhel, "traj": traj, "g": g, "est": est}


class _ScalarTime(glep.UFLTerm):
    """The same term declared to need a scalar ``t``: callers fall back to one call per node."""

    explicit_time = True


def node_by_node(system: glep.LagrangianSystem, grid: glep.TimeGrid, Q: np.ndarray, repeats: int) -> None:
    """``Σ_k ∂_θ L_d`` along ``Q``: all nodes in one kernel call vs the node-by-node fallback."""
    slow_terms = [_ScalarTime(t.n, t.ufl_lagrangian, t.parameters, name=t.label) if isinstance(t, glep.UFLTerm)
                  else t for t in system.terms]
    slow = glep.LagrangianSystem(system.n, slow_terms, cost=system.cost, signals=system.signals)
    th = params("UFL")
    for label, sys_ in (("one call for all nodes", system), ("node by node", slow)):
        dl = Problem(sys_, th, glep.CIVP(Q[0], p0=np.zeros_like(Q[0])), grid).dl(0.0)
        dl.theta_gradient_sum(Q)  # warm-up (kernels, batch meshes)
        t_sum, _ = best(lambda: dl.theta_gradient_sum(Q), repeats)  # noqa: B023 - called at once
        print(f"UFL θ-sum ({label}): {t_sum:.4f} s")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1600)
    ap.add_argument("--T", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    grid = glep.TimeGrid(args.T, args.steps)
    res = {name: measure(name, system, grid, args.repeats) for name, system in systems().items()}
    print(f"N = {args.steps} steps, T = {args.T:g}, n = {N_DOF}; best of {args.repeats} [s]")
    print(f"{'system':>9} {'separable':>9} {'integrator':>14} {'Newton':>6} {'shoot_cbvp':>10} {'integrate':>9} "
          f"{'θ-sum':>8} {'RHEL':>8}")
    for name, r in res.items():
        print(f"{name:>9} {r['separable']!s:>9} {r['integrator']:>14} {r['newton']:>6d} {r['shoot']:>10.3f} "
              f"{r['forward']:>9.4f} {r['theta_sum']:>8.4f} {r['rhel']:>8.3f}")
    node_by_node(systems()["UFL"], grid, res["UFL"]["traj"].q, args.repeats)
    a, b = res["built-in"], res["UFL"]
    ga, gb = a["g"]["w"], b["g"]["w"]
    print(f"max |q_UFL − q_built-in| = {float(np.max(np.abs(a['traj'].q - b['traj'].q))):.2e}; "
          f"rel. diff of ∂_θ sums (w) = {float(np.max(np.abs(ga - gb)) / np.max(np.abs(ga))):.2e}")
    if a["est"] is not None and b["est"] is not None:
        ea, eb = a["est"].theta["w"], b["est"].theta["w"]
        print(f"rel. diff of RHEL gradients (w) = {float(np.max(np.abs(ea - eb)) / np.max(np.abs(ea))):.2e}")


if __name__ == "__main__":
    main()
