"""The NumPy path's estimators in forward passes, next to the pass count each declares.

One *forward pass* is ``glep.ivp.integrate(problem.dl(0.0), q0, p0, store=False)`` of the same problem
(the NumPy floor of ``bench_forward_loop.py``); the free pass the estimators keep (``store=True``, the
trajectory recorded) is listed too.  Every estimator runs on a fresh ``Problem`` (``with_params``), so
its own free pass, reversibility check and contrasts are included, with a centred nudge β = 1e-4:

* echo, RHEL, PFVP: declared ``1 + #β = 3`` passes (``AbstractEstimator.passes``);
* CIVP + residual: ``1 + #β + P`` (one tangent pass per parameter), on the small systems only.

CPU time (``time.process_time``), the cases interleaved (their order rotated between repeats), best of
``--repeats``; the ratio *measured / declared* is the extra work beyond the pass count (1.0: none).
``--profile NAME`` prints cProfile's top entries for one estimator at the first size.

The pass count leaves out the contrasts' own arithmetic, so every system also has a **hand-written
floor** (:func:`hand_echo`): the same mathematics and discretisation written directly in NumPy, no glep
class in the loop — the free pass (end state only), the stacked ``±β`` Störmer–Verlet pass of the reversed
system recording the positions (and ``tanh(Wq + b)``), and the contrast ``(I(β) − I(−β))/2β`` as one
weighted sum over all recorded rows (one GEMM per parameter block).  Echo, RHEL and PFVP compute the same
quantity on these reversible systems, and are checked against it before timing (:func:`check_floor`);
*glep / hand* is their time over the floor's, *÷ forward glep / hand* the same after dividing out the
forward loop's own ratio (``hand-written forward``: :func:`hand_forward`), i.e. what the estimator code
adds beyond the stepping loop.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_estimator_overhead.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_estimator_overhead.py --profile echo
    .venv/bin/python benchmarks/bench_estimator_overhead.py --smoke
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time

import bench_forward_loop
import numpy as np
from bench_forward_loop import interleaved, paired_median

from glep.estimators.contrast import CIVPContrast, Echo, PFVPContrast
from glep.estimators.nudging import Centred
from glep.estimators.problem import Problem
from glep.estimators.rhel import RHEL
from glep.ivp import integrate

BETA = 1e-4
#: (family, n, hidden, batch)
SYSTEMS = (("hru_logcosh", 32, 32, 16), ("hru_logcosh", 64, 64, 64), ("coupled_oscillators", 32, None, 16),
           ("pendulum_chain", 32, None, 16), ("coupled_oscillators", 8, None, 16))
#: the hand-written floor of the echo, RHEL and PFVP (the same arithmetic: free pass, stacked ±β pass, contrast)
HAND = "hand-written echo"
HAND_FORWARD = "hand-written forward"
#: the estimators compared with the floor (each checked equal to it before timing)
FLOORED = ("echo", "RHEL", "PFVP")
#: CIVP + residual only below this many parameters (it costs one tangent pass per parameter)
MAX_P_RESIDUAL = 100


def build(family, n, hidden, batch, steps) -> Problem:
    """:func:`bench_forward_loop.build` (the same problems, ``h = 0.008``), its family noted."""
    problem = bench_forward_loop.build(family, n, hidden, batch, steps)
    problem.meta["bench_family"] = family  # the FAMILIES key, for the hand-written floor
    return problem


def estimators(problem: Problem) -> dict:
    out = {"echo": Echo(), "RHEL": RHEL(), "PFVP": PFVPContrast()}
    if problem.parameter_count <= MAX_P_RESIDUAL:
        out["CIVP + residual"] = CIVPContrast(residual=True)
    return out


# -- the hand-written floor: the echo's mathematics written out in NumPy ----------------------------------
ALPHA = 0.1  # the coupled oscillators' quartic coefficient (glep.models.coupled_oscillators' default)


def _chain_force(q, J, out):
    """``out += −∂_q ½Σ_i J_i (q_i − q_{i+1})²``."""
    f = J * (q[:, :-1] - q[:, 1:])
    out[:, :-1] -= f
    out[:, 1:] += f


def node_force(family: str, th: dict, U, Y=None, beta=None, A=None):
    r"""``(j, q) ↦ ∂_q L_β(q, t_j)`` of the family written out (a new array), what depends on ``θ`` alone
    computed once; ``U``, ``Y``: inputs and targets at the nodes ``(N+1, B, ·)``; ``beta`` ``(B, 1)``: the
    nudge ``+β ∂_q c = β(q_{n−1} − y)`` on the output coordinate; ``A`` ``(N+1, B, hidden)``: the log-cosh
    layer's ``a_j = tanh(W q_j + b)`` is computed into ``A[j]`` (what the contrast reads)."""
    Bt = th["B"].T
    if family == "hru_logcosh":
        mS, WT, mW, b = -0.5 * (th["A"] + th["A"].T), th["W"].T, -th["W"], th["b"]
        scratch: dict = {}  # not recording: one buffer for every node

        def pot(j, q):
            a = A[j] if A is not None else scratch.get("a")
            if a is None:
                a = scratch["a"] = np.empty((len(q), len(b)))
            np.matmul(q, WT, out=a)
            a += b
            np.tanh(a, out=a)
            F = q @ mS
            F += U[j] @ Bt
            F += a @ mW
            return F
    elif family == "coupled_oscillators":
        mk, J = -th["k"], th["J"]

        def pot(j, q):
            F = mk * q
            _chain_force(q, J, F)
            F += U[j] @ Bt
            F -= ALPHA * q * q * q
            return F
    elif family == "pendulum_chain":
        mw, J = -th["w"], th["J"]

        def pot(j, q):
            F = mw * np.sin(q)
            _chain_force(q, J, F)
            F += U[j] @ Bt
            return F
    else:
        raise ValueError(family)
    if beta is None:
        return pot

    def nudged(j, q):
        F = pot(j, q)
        F[:, -1:] += beta * (q[:, -1:] - Y[j])
        return F

    return nudged


def verlet(force, m, q, p, h: float, N: int, Q=None):
    """``N`` Störmer–Verlet steps in place on ``q``, ``p`` (diagonal masses ``m``, ``None``: unit), writing
    ``q_k`` into ``Q[k]`` when given:  ``v̄ = (p + (h/2)F)/m,  q ← q + h v̄,  F ← F(q),  p ← m v̄ + (h/2)F``."""
    hh = 0.5 * h
    v, tmp = np.empty_like(q), np.empty_like(q)
    F = force(0, q)
    for k in range(N):
        np.multiply(hh, F, tmp)
        np.add(p, tmp, v)
        if m is not None:
            v /= m
        np.multiply(h, v, tmp)
        q += tmp
        F = force(k + 1, q)
        if m is not None:
            v *= m
        np.multiply(hh, F, tmp)
        np.add(v, tmp, p)
        if Q is not None:
            Q[k + 1] = q
    return q, p


def floor_data(problem: Problem) -> dict:
    """What the hand-written echo reads besides ``θ``: the free pass's start, the inputs at the grid nodes
    forward in time, the inputs and targets of the echo (replayed in reverse, ``t ↦ T − t``) tiled over the
    ``±β`` copies, the node weights (sampled once: data, not arithmetic)."""
    sys, grid = problem.system, problem.grid
    q0, p0, v0 = problem.boundary.states(sys, problem.theta)
    t, T, B = grid.times, grid.T, q0.shape[0]
    u, y = sys.signals["u"], sys.signals["y"]
    w = np.full(grid.N + 1, grid.h)
    w[[0, -1]] = 0.5 * grid.h
    tile = lambda a: np.concatenate([np.broadcast_to(a, (len(t), B, a.shape[-1]))] * 2, axis=1)  # noqa: E731
    return {"q0": q0, "p0": p0, "v0": v0, "U": u.sample(t), "Ur": tile(u.sample(T - t)),
            "Yr": tile(y.sample(T - t)), "w": w, "h": grid.h, "N": grid.N, "family": problem.meta["bench_family"]}


def hand_forward(th: dict, d: dict):
    """The free pass written out (:func:`verlet`, ``p₀ = m v₀`` for a velocity start): its end state."""
    m, v0 = th.get("m"), d["v0"]
    p = d["p0"].copy() if v0 is None else m * v0
    return verlet(node_force(d["family"], th, d["U"]), m, d["q0"].copy(), p, d["h"], d["N"])


def hand_echo(th: dict, d: dict, beta: float, magnitudes: bool = False) -> dict:
    r"""The centred echo written out: ``dC_h/dθ`` and ``(dC/dq₀, dC/dp₀)``.

    1. the free pass from ``(q₀, p₀)``, its end state only (:func:`hand_forward`);
    2. one Störmer–Verlet pass of the reversed system from ``(q_N, −p_N)``, the ``±β`` copies stacked on the
       batch axis (``2B`` rows), positions (and the layer's activations) recorded at every node;
    3. the contrast ``(I(β) − I(−β))/2β`` with ``I = Σ_j w_j Σ_b ∂_θL(q_j)``, as one weighted sum over all
       ``R = (N+1)·2B`` recorded rows (:func:`hand_contrast`).

    ``magnitudes``: return instead the θ-gradient's sums of the summands' absolute values, ``S`` (the
    round-off scale of the contrast, for :func:`check_floor`).
    """
    family, h, N = d["family"], d["h"], d["N"]
    m = th.get("m")
    qN, pN = hand_forward(th, d)
    B, n = qN.shape
    sign = np.r_[np.ones(B), -np.ones(B)]
    Q = np.empty((N + 1, 2 * B, n))
    Q[0] = np.concatenate([qN, qN])
    A = np.empty((N + 1, 2 * B, th["W"].shape[0])) if family == "hru_logcosh" else None
    force = node_force(family, th, d["Ur"], d["Yr"], beta * sign[:, None], A)
    qe, pe = verlet(force, m, Q[0].copy(), np.concatenate([-pN, -pN]), h, N, Q)
    dq0 = (qe[:B] - qe[B:]) / (2 * beta)
    c = np.multiply.outer(d["w"], sign / (2 * beta))
    g = hand_contrast(family, c, Q, A, d["Ur"], h, magnitudes)
    if m is not None:  # the t = 0 term of a velocity start, (∂_m ∂_v L(q₀, v₀))ᵀ dq₀
        g["m"] += np.sum(np.abs(d["v0"] * dq0) if magnitudes else d["v0"] * dq0, axis=0)
    return g if magnitudes else {"grad": g, "q0": (pe[:B] - pe[B:]) / (2 * beta), "p0": dq0}


def hand_contrast(family: str, c, Q, A, U, h: float, magnitudes: bool = False) -> dict[str, np.ndarray]:
    r"""``Σ_r c_r ∂_θL(q_r)`` over the recorded rows ``r = (j, b)``, ``c_{jb} = ±w_j/2β`` (``c`` of shape
    ``(N+1, 2B)``): ``∂_W = −Aᵀ(cQ)``, ``∂_b = −cᵀA``, ``∂_A = −½(cQ)ᵀQ``, ``∂_B = (cQ)ᵀU`` (one GEMM each),
    ``∂_k = −½cᵀ(Q∘Q)``, ``∂_J = −½cᵀ(D∘D)`` (``D = q_i − q_{i+1}``), ``∂_w = −cᵀ(1 − cos Q)``, and the
    masses' kinetic part ``(h/2)Σ_k Σ_b ±v_kb²/2β`` (``v_k = (q_{k+1} − q_k)/h``, one evaluation per step).
    ``magnitudes``: the same sums of the summands' absolute values."""
    f = np.abs if magnitudes else (lambda x: x)
    R, n = c.size, Q.shape[-1]
    sign = np.sign(c[0])
    cr, Qf = c.reshape(R), Q.reshape(R, n)
    cQ = f(cr)[:, None] * f(Qf)
    g = {"B": cQ.T @ f(U.reshape(R, -1))}
    if family == "hru_logcosh":
        Af = f(A.reshape(R, -1))
        g.update(A=-0.5 * (cQ.T @ f(Qf)), W=-(Af.T @ cQ), b=-(f(cr) @ Af))
    else:
        D = Qf[:, :-1] - Qf[:, 1:]
        g["J"] = -0.5 * (f(cr) @ (D * D))
        if family == "coupled_oscillators":
            g["k"] = -0.5 * (f(cr) @ (Qf * Qf))
        else:
            g["w"] = -(f(cr) @ (1.0 - np.cos(Qf)))
        V = np.diff(Q, axis=0) / h
        g["m"] = 0.5 * abs(c[1, 0]) * np.einsum("kbn,kbn,b->n", V, V, f(sign))  # c[1, 0] = h/2β
    return {k: np.abs(v) if magnitudes else v for k, v in g.items()}


def check_floor(problem: Problem, name: str, est, floor: dict, scale: dict):
    r"""Check ``est`` against the hand-written echo; return ``(relative difference, difference / bound)`` of
    θ and of the initial-state derivatives.

    θ: glep sums ``I(β)`` and ``I(−β)`` separately and subtracts, the floor sums ``c_r x_r`` once: two orders
    of the same ``R = (N+1)·2B`` summands, whose results differ by about ``√R·ε·S`` (``S = Σ_r |c_r x_r|``,
    the summands' absolute values: ``scale``, :func:`hand_echo` with ``magnitudes``), asserted entry by entry.
    ``S`` is ``|I|/β``-sized, so the bound is ~10⁻¹⁰ of the gradient, and a β-quotient of two sums cannot be
    checked tighter: summed once (the floor) it is 10–300× closer to an extended-precision evaluation than
    glep's (measured).  A wrong term, weight or sign is ≥ 10⁻³ of the gradient.  ``dC/dq₀``, ``dC/dp₀``
    (end-state derivatives, no sum): ``max |glep − hand| ≤ 10⁻¹⁰ max |hand|``.
    """
    got = est.estimate(problem.with_params(problem.params), Centred(BETA))
    assert set(got.theta) == set(floor["grad"]), (name, sorted(got.theta), sorted(floor["grad"]))
    root_r = np.sqrt((problem.grid.N + 1) * 2 * floor["q0"].shape[0])
    pairs = [(got.theta[k], floor["grad"][k], root_r * np.finfo(float).eps * scale["grad"][k], k)
             for k in floor["grad"]]
    pairs += [(getattr(got, k), floor[k], 1e-10 * np.max(np.abs(floor[k])), k) for k in ("q0", "p0")]
    out = {"θ": [0.0, 0.0], "q0": [0.0, 0.0]}  # (relative difference, difference / bound): θ, and q0 with p0
    for a, b, bound, key in pairs:
        d = np.abs(np.asarray(a) - b)
        assert np.all(d <= bound), f"{name} ({key}): glep and the hand-written echo differ by {np.max(d):.1e}"
        acc = out["q0" if key in ("q0", "p0") else "θ"]
        acc[0], acc[1] = max(acc[0], float(np.max(d) / np.max(np.abs(b)))), max(acc[1], float(np.max(d / bound)))
    return out["θ"], out["q0"]


def cases(problem: Problem):
    """``({name: callable}, {name: declared passes})``."""
    nudge = Centred(BETA)
    q0, p0, _ = problem.boundary.states(problem.system, problem.theta)
    dl = problem.dl(0.0)
    run = {"forward (store=False)": lambda: integrate(dl, q0, p0, store=False),
           "free pass (store=True)": lambda: integrate(dl, q0, p0)}
    declared = {"forward (store=False)": 1.0, "free pass (store=True)": 1.0}
    for name, est in estimators(problem).items():
        run[name] = lambda est=est: est.estimate(problem.with_params(problem.params), nudge)
        declared[name] = float(est.passes(problem, nudge))
    data = floor_data(problem)
    run[HAND_FORWARD] = lambda: hand_forward(problem.theta, data)
    run[HAND] = lambda: hand_echo(problem.theta, data, BETA)
    declared[HAND_FORWARD], declared[HAND] = 1.0, 3.0
    return run, declared


def measure(problem: Problem, repeats: int) -> tuple[dict[str, float], dict, dict[str, float]]:
    """Best CPU time of every case, each floored estimator's distance to the hand-written echo (checked
    first, :func:`check_floor`), and the median over the repeats of glep / hand-written within one repeat
    (the estimators against the hand-written echo, the forward pass against the hand-written forward)."""
    run, _ = cases(problem)
    data = floor_data(problem)
    floor = hand_echo(problem.theta, data, BETA)
    scale = {"grad": hand_echo(problem.theta, data, BETA, magnitudes=True)}
    ests = estimators(problem)
    errors = {name: check_floor(problem, name, ests[name], floor, scale) for name in FLOORED}
    for fn in run.values():
        fn()
    best, took = interleaved(run, repeats)
    pairs = {name: HAND for name in FLOORED} | {"forward (store=False)": HAND_FORWARD}
    return best, errors, {name: paired_median(took, name, ref) for name, ref in pairs.items()}


def profile(problem: Problem, name: str, top: int = 25) -> None:
    run, _ = cases(problem)
    run[name]()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(3):
        run[name]()
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--profile", default=None, help="cProfile one estimator (echo, RHEL, PFVP, CIVP + residual)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat (the smoke test)")
    args = ap.parse_args(argv)
    systems = (("hru_logcosh", 4, 3, 2), ("coupled_oscillators", 3, None, 2)) if args.smoke else SYSTEMS
    if args.smoke:
        args.repeats, args.steps = 1, 40
    if args.profile:
        profile(build(*systems[0], args.steps), args.profile)
        return 0
    print(f"bench_estimator_overhead: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load "
          f"{os.getloadavg()[0]:.2f}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}, {args.steps} steps, "
          f"centred β = {BETA:g}, CPU time, best of {args.repeats}, interleaved")
    for family, n, hidden, batch in systems:
        problem = build(family, n, hidden, batch, args.steps)
        best, errors, paired = measure(problem, args.repeats)
        _, declared = cases(problem)
        unit, hand = best["forward (store=False)"], best[HAND]
        loop = unit / best[HAND_FORWARD]
        size = f"n = {n}" + (f", hidden = {hidden}" if hidden else "") + f", batch = {batch}"
        (rel, ratio), (rel0, ratio0) = ([max(e[i][j] for e in errors.values()) for j in (0, 1)] for i in (0, 1))
        print(f"\n{family}, {size}, P = {problem.parameter_count}: one forward pass {1e3 * unit:.2f} ms; echo, RHEL, "
              f"PFVP = hand-written echo: θ within {rel:.1e} relative ({ratio:.2f} of the round-off bound), "
              f"dC/dq0, dC/dp0 within {rel0:.1e} ({ratio0:.2f} of the bound 1e-10)")
        print(f"{'case':>24}  {'passes':>8}  {'declared':>8}  {'measured / declared':>19}  {'glep / hand':>11}  "
              f"{'÷ forward glep / hand':>21}  {'glep / hand, median of pairs':>28}")
        for name, t in best.items():
            vs = f"{t / hand:11.2f}  {t / hand / loop:21.2f}" if name in FLOORED else \
                f"{loop:11.2f}  {'':21}" if name == "forward (store=False)" else ""
            vs += f"  {paired[name]:28.2f}" if name in paired else ""
            print(f"{name:>24}  {t / unit:8.2f}  {declared[name]:8.0f}  {t / unit / declared[name]:19.2f}  {vs}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
