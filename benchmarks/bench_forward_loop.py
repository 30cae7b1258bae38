"""glep's NumPy forward pass against a hand-written NumPy Störmer–Verlet loop, for every built-in family.

Each family of :data:`glep.models.FAMILIES` with an explicit step (Störmer–Verlet: every separable one)
is integrated by ``glep.ivp.integrate(dl, q0, p0, store=False)`` and by a hand-written loop of the
same system — the forces written out in NumPy (``½(A + Aᵀ)``, ``Bᵀ`` and the like computed once),
the inputs sampled once at the grid nodes, diagonal masses as ``(p + (h/2)F)/m`` and ``m v̄``:

    v̄ = M⁻¹(p + (h/2)F),   q ← q + h v̄,   F ← F(q),   p ← M v̄ + (h/2)F.

Both give the same final state (checked to 1e-12 relative before timing).  ``h = 0.008``, 1000 steps,
unbatched and batched; CPU time (``time.process_time``), the cases interleaved (their order rotated from
one repeat to the next), best of ``--repeats``, and
the median of glep/loop within each interleaved repeat (robust to bursts of load on a shared machine).
The gyroscopic family is not separable: its default integrator is the implicit midpoint rule, and its
hand-written loop (:func:`gyroscopic_midpoint`) is that step written out — the residual ``D₁L_d + p₀``, the
Jacobian ``D₁₂L_d`` as a θ-only matrix plus the quartic's diagonal, the Newton iteration and tolerance of
:func:`glep._newton.dense_newton`, the guess ``2q_k − q_{k−1}``, the inputs sampled once at the step
midpoints; glep is also timed with its step's pieces unprepared (:class:`GenericPieces`: ``D₁₂L_d`` from
Hessian actions on the unit directions, the inputs sampled per call — the implicit path before it was
prepared per ``θ``).  With ``--before REV`` the stepping module of git revision ``REV``
(``ivp/stepping.py``) is timed too for the explicit families, on the same discrete Lagrangian, after checking
that it gives the same final state bit for bit.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_forward_loop.py --before fe5e6f5
    .venv/bin/python benchmarks/bench_forward_loop.py --smoke
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.linalg.lapack import dgesv

from glep.estimators.problem import Problem
from glep.ivp import integrate
from glep.ivp.discrete import AbstractDiscreteLagrangian, DiscreteLagrangian
from glep.models import FAMILIES

H = 0.008
#: (n, hidden of the log-cosh layer, batch): the sizes of issue 11, unbatched and batched
SIZES = ((32, 32, None), (32, 32, 16), (64, 64, None), (64, 64, 64))


def build(family: str, n: int, hidden: int, batch: int | None, steps: int) -> Problem:
    kw = {"n": n, "batch": batch, "T": steps * H}
    if family == "hru_logcosh":
        kw["hidden"] = hidden
    return Problem.from_model(FAMILIES[family](**kw), steps=steps)


# -- the hand-written forces (q of shape (B or 1, n), u the node's input (B or 1, m)) ------------------
def _chain(q, J):
    """``−∂_q ½Σ_i J_i (q_i − q_{i+1})²``."""
    f = J * (q[..., :-1] - q[..., 1:])
    out = np.zeros_like(q)
    out[..., :-1] -= f
    out[..., 1:] += f
    return out


def hand_force(family: str, th: dict, alpha: float = 0.1):
    """``(q, u) ↦ ∂_q L`` of the family written out, with what depends on θ alone computed once."""
    Bt = th["B"].T
    if family in ("hru_linear", "hru_logcosh"):
        S = 0.5 * (th["A"] + th["A"].T)
        if family == "hru_linear":
            return lambda q, u: -q @ S + u @ Bt
        W, b = th["W"], th["b"]
        return lambda q, u: -q @ S + u @ Bt - np.tanh(q @ W.T + b) @ W
    J = th["J"]
    if family == "coupled_oscillators":
        k = th["k"]
        return lambda q, u: -k * q + _chain(q, J) + u @ Bt - alpha * q * q * q
    if family == "pendulum_chain":
        w = th["w"]
        return lambda q, u: -w * np.sin(q) + _chain(q, J) + u @ Bt
    raise ValueError(family)


def hand_loop(force, m, U, q0, p0, h):
    """Störmer–Verlet with diagonal masses ``m`` (``None``: unit masses), final state."""
    q, p = q0.copy(), p0.copy()
    F = force(q, U[0])
    for k in range(len(U) - 1):
        v = p + 0.5 * h * F if m is None else (p + 0.5 * h * F) / m
        q = q + h * v
        F = force(q, U[k + 1])
        p = (v if m is None else m * v) + 0.5 * h * F
    return q, p


def gyroscopic_midpoint(th: dict, G, gamma: float, h: float, alpha: float = 0.1):
    r"""The implicit midpoint step of the gyroscopic oscillators written out: ``(q₀, p₀, guess, u) ↦ (q₁, p₁)``.

    ``L = ½vᵀMv − ½Σk q² − ½ΣJ(q_i − q_{i+1})² + qᵀBu − (α/4)Σq⁴ + γ vᵀGq``,
    ``L_d = h L(q̄, v)`` with ``q̄ = (q₀ + q₁)/2``, ``v = (q₁ − q₀)/h``, ``u`` at the step's midpoint:

        r(q₁) = (h/2) L_q(q̄, v) − L_v(q̄, v) + p₀ = 0,   p₁ = (h/2) L_q + L_v,
        L_q = −kq̄ − Lq̄ + Bu − αq̄³ + γ Gᵀv,   L_v = Mv + γ Gq̄  (rows: ``v @ G``, ``q̄ @ Gᵀ``),
        ∂r/∂q₁ = C − (h/4) diag(3αq̄²),   C = −(h/4)(diag k + L) + (γ/2)(Gᵀ − G) − M/h  (θ only, once),

    solved by the Newton of :func:`glep._newton.dense_newton` (the same tolerance: ``max|r| ≤ 10⁻¹³(1 +
    max|p₀|)``, or a correction at the rounding of ``q₁``, at most 40 iterations; the same linear solves:
    LAPACK's ``gesv`` for one system, NumPy's batched ``solve`` for a batch).
    """
    m, k, J, Bt = th["m"], th["k"], th["J"], th["B"].T
    n = len(m)
    lap = np.diag(np.r_[J, 0.0] + np.r_[0.0, J]) - np.diag(J, 1) - np.diag(J, -1)
    C = -0.25 * h * (np.diag(k) + lap) + 0.5 * gamma * (G.T - G) - np.diag(m) / h
    diag = np.arange(n)
    gG, gGt = gamma * G, gamma * G.T

    def momenta(q0, q1, u):
        qb, v = 0.5 * (q0 + q1), (q1 - q0) / h
        Lq = -k * qb + _chain(qb, J) + u @ Bt - alpha * qb * qb * qb + v @ gG
        Lv = m * v + qb @ gGt
        return 0.5 * h * Lq - Lv, 0.5 * h * Lq + Lv

    def step(q0, p0, q1, u):
        tol = 1e-13 * (1.0 + np.max(np.abs(p0)))
        for _ in range(40):
            d1, d2 = momenta(q0, q1, u)
            r = d1 + p0
            if np.max(np.abs(r)) <= tol:
                return q1, d2
            qb = 0.5 * (q0 + q1)
            Jm = np.broadcast_to(C, qb.shape + (n,)).copy()
            Jm[:, diag, diag] -= 0.75 * h * alpha * qb * qb
            if len(Jm) == 1:  # one system: LAPACK's gesv directly, as glep._newton.dense_solve
                dx = dgesv(Jm[0], r[0])[2][None]
            else:
                dx = np.linalg.solve(Jm, r[..., None])[..., 0]
            q1 = q1 - dx
            if np.max(np.abs(dx)) <= 1e-15 * (1.0 + np.max(np.abs(q1))):
                return q1, momenta(q0, q1, u)[1]
        raise RuntimeError("hand-written midpoint Newton did not converge")

    return step


class GenericPieces(DiscreteLagrangian):
    """The implicit step's pieces as before they were prepared once per ``θ`` or per step (timed as
    "generic"): ``D₁₂L_d`` from Hessian actions on the ``n`` unit directions, ``system.gradient`` and the
    inputs sampled per call, ``momenta`` and ``solve_d12`` called per Newton iteration."""

    def step_equations(self, k, q0):
        return AbstractDiscreteLagrangian.step_equations(self, k, q0)

    def d12_matrix(self, k, q0, q1):
        return AbstractDiscreteLagrangian.d12_matrix(self, k, q0, q1)

    def _step_gradient(self):
        return self.system.gradient

    def _step_inputs(self, c, k):
        return self.inputs(self.time(k, c))


def midpoint_loop(step, U, q0, p0):
    """``N`` implicit midpoint steps (``U``: the inputs at the step midpoints), guess ``2q_k − q_{k−1}``."""
    q, p, qprev = q0.copy(), p0.copy(), q0
    for k in range(len(U)):
        guess = 2 * q - qprev if k > 0 else q
        qprev = q
        q, p = step(q, p, guess, U[k])
    return q, p


def stepping_at(rev: str):
    """``ivp/stepping.py`` of git revision ``rev``, imported as a module."""
    root = Path(__file__).resolve().parent.parent
    text = subprocess.run(["git", "show", f"{rev}:ivp/stepping.py"], cwd=root, check=True, capture_output=True,
                          text=True).stdout
    path = Path(tempfile.mkdtemp()) / "stepping_before.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("stepping_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def best_times(family, n, hidden, batch, steps, repeats, before=None) -> dict[str, float]:
    """Best CPU time of each case (``glep``, ``loop`` and, with ``before``, ``before``) at one size, and under
    ``"paired"`` the median over the repeats of glep/loop within one interleaved repeat (a burst of load on the
    shared machine moves one pair, not the median)."""
    pr = build(family, n, hidden, batch, steps)
    th, dl = pr.theta, pr.dl(0.0)
    q0, p0, _ = pr.boundary.states(pr.system, th)
    if family == "gyroscopic":  # implicit midpoint (not separable)
        assert not dl.explicit and pr.integrator.name == "midpoint", family
        gyro = pr.system.terms[-1]
        U = pr.system.signals["u"].sample(pr.grid.times[:-1] + 0.5 * H)
        step = gyroscopic_midpoint(th, gyro.G, gyro.gamma, H)
        loop = lambda: midpoint_loop(step, U, q0, p0)  # noqa: E731
        generic = GenericPieces(pr.system, th, pr.grid, dl.rule, fast=False)
    else:
        assert dl.explicit, family
        U = pr.system.signals["u"].sample(pr.grid.times)
        force, m = hand_force(family, th), th.get("m")
        loop = lambda: hand_loop(force, m, U, q0, p0, H)  # noqa: E731
    cases = {"glep": lambda: integrate(dl, q0, p0, store=False), "loop": loop}
    a, b = cases["glep"](), cases["loop"]()
    for x, y in zip(a, b):
        err = np.max(np.abs(x - y)) / np.max(np.abs(y))
        assert err <= 1e-12, f"{family}: glep and the hand-written loop differ by {err:.1e}"
    if family == "gyroscopic":
        cases["generic"] = lambda: integrate(generic, q0, p0, store=False)
    if before is not None:
        old = before.integrate(dl, q0, p0, store=False)
        assert all(np.array_equal(x, y) for x, y in zip(old, a)), "not the same final state bit for bit"
        cases["before"] = lambda: before.integrate(dl, q0, p0, store=False)
    best, took = interleaved(cases, repeats)
    best["paired"] = paired_median(took, "glep", "loop")
    return best


def interleaved(cases: dict, repeats: int) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Each case's best CPU time over ``repeats`` interleaved repeats, the order of the cases rotated from one
    repeat to the next (no case always follows another), and every repeat's times."""
    best, names, took = dict.fromkeys(cases, np.inf), list(cases), []
    for r in range(repeats):
        took.append({})
        for name in names[r % len(names):] + names[:r % len(names)]:
            t = time.process_time()
            cases[name]()
            took[-1][name] = time.process_time() - t
            best[name] = min(best[name], took[-1][name])
    return best, took


def paired_median(took: list[dict[str, float]], name: str, reference: str) -> float:
    """The median over the repeats of ``name``'s time over ``reference``'s within one repeat (a burst of load on a
    shared machine moves one pair, not the median)."""
    return float(np.median([t[name] / t[reference] for t in took]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--before", default=None, help="git revision whose ivp/stepping.py is timed too")
    ap.add_argument("--sizes", default=None,
                    help="n:batch pairs of SIZES to run, comma-separated (batch 0: unbatched), e.g. 32:16,64:0")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat (the smoke test)")
    args = ap.parse_args(argv)
    sizes = ((4, 3, None), (4, 3, 2)) if args.smoke else SIZES
    if args.sizes and not args.smoke:
        wanted = {tuple(int(v) for v in pair.split(":")) for pair in args.sizes.split(",")}
        sizes = tuple(size for size in SIZES if (size[0], size[2] or 0) in wanted)
        if not sizes:
            ap.error(f"--sizes {args.sizes!r} selects none of {[(n, b or 0) for n, _, b in SIZES]}")
    if args.smoke:
        args.repeats, args.steps = 1, 50
    before = stepping_at(args.before) if args.before else None
    print(f"bench_forward_loop: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load "
          f"{os.getloadavg()[0]:.2f}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}, {args.steps} steps, "
          f"CPU time, best of {args.repeats}, interleaved")
    worst = 0.0
    for family in args.families.split(","):
        for n, hidden, batch in sizes:
            best = best_times(family, n, hidden, batch, args.steps, args.repeats,
                              before if family != "gyroscopic" else None)
            ratio = best["glep"] / best["loop"]
            worst = max(worst, ratio)
            size = f"n = {n}" + (f", hidden = {hidden}" if family == "hru_logcosh" else "") + f", batch = {batch}"
            line = f"{family:>19}  {size:<32} loop {1e3 * best['loop']:8.2f} ms  glep/loop "
            if "before" in best:
                line += f"before {best['before'] / best['loop']:.3f}, after "
            if "generic" in best:  # implicit midpoint: the step's pieces unprepared (as before), then prepared
                line += f"generic pieces {best['generic'] / best['loop']:.3f}, prepared "
            print(line + f"{ratio:.3f} (median of paired runs {best['paired']:.3f})", flush=True)
    print(f"largest glep/loop: {worst:.3f} (best times)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
