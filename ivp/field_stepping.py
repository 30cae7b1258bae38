r"""Leapfrog (Störmer–Verlet) for field systems: forward, backward (mirrored) and the echo.

The semi-discrete field Lagrangian ``L_h = ½q̇ᵀMq̇ + U(q; θ, t)`` of a
:class:`glep.field_system.FieldSystem` (lumped, diagonal ``M``) is integrated
with the trapezoid discrete Lagrangian of THEORY §4,

    L_d(q_k, q_{k+1}) = (1/2τ_k)(q_{k+1} − q_k)ᵀM(q_{k+1} − q_k)
                        + (|τ_k|/2)[U_β(q_k, t_k) + U_β(q_{k+1}, t_{k+1})],   U_β = U + βc,

whose discrete Euler–Lagrange equations are the kick–drift–kick steps

    p_{k+½} = p_k + (τ_k/2) F(q_k, t_k),   q_{k+1} = q_k + τ_k M⁻¹ p_{k+½},
    p_{k+1} = p_{k+½} + (τ_k/2) F(q_{k+1}, t_{k+1}),      F = ∂_q U + β ∂_q c,

with ``p_k = −D₁L_d(q_k, q_{k+1})`` the discrete momenta (``F`` is assembled
once per step: the force at the end of a step starts the next).  Dirichlet
values are imposed on ``q_{k+1}`` after each drift (``M⁻¹`` is zero there).

One engine, :func:`leapfrog`, takes the *input times* ``t_k`` at which
sources, targets and boundary values are read and the signed step sizes
``τ_k``:

* forward: ``t_k = t₀ + kh``, ``τ_k = h``;
* backward (the mirrored discrete Lagrangian): from ``(q_N, p_N)`` with
  ``t_k = T − kh``, ``τ_k = −h``; it retraces a forward pass to round-off;
* the echo: flip ``p ↦ −p`` (and apply :attr:`FieldLagrangian.reversal_signs`),
  run *forward* steps ``τ_k = +h`` with inputs and targets replayed in reverse
  (``t_k = T − kh``), flip back.  For a separable density this is the backward
  pass up to the sign of the momenta: the same arithmetic, forward in time.

Along the way the engine accumulates, with trapezoid weights
``w_k = (|τ_{k−1}| + |τ_k|)/2``, the contrast integrand
``I = Σ_k w_k ∂_θU(q_k, t_k)`` (``= Σ_k ∂_θ L_d``) and the discrete loss
``C_h = Σ_k w_k c(q_k, t_k) + c_T(q_N)``; it can store the positions and call
a callback (field output) at every node.

API (every state array is the rank's local dof array, owned then ghosts)::

    sys = FieldSystem(sine_gordon(), mesh, cost=FieldCost(target=...))
    fw = forward(sys, T=1.0, N=100, store=False)         # FieldPass: q, p, loss, ...
    bw = backward(sys, fw.q, fw.p, T=1.0, N=100, beta=1e-4, theta_integral=True)
    ec = echo(sys, fw.q, fw.p, T=1.0, N=100, beta=1e-4, theta_integral=True)
    with VTXOutput(sys, "phi.bp") as out: forward(sys, 1.0, 100, callback=out)
    write_field_results("grad.h5", sys, {"kappa": g}, meta)            # HDF5, atomic

Only real β: the complex step needs complex assembly (not implemented for fields).

Densities that are not separable (several components, first order in time: NLS) are stepped by
:func:`midpoint_forward` / :func:`midpoint_echo` (one engine, :func:`midpoint_pass`) on a
:class:`glep.field_midpoint.MidpointFieldSystem` (the implicit-midpoint discrete Lagrangian, one SNES solve
per step, with the nudge, the loss and the θ-integral ``Σ_k ∂_θL_d``).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from glep.errors import InputError
from glep.field_system import FieldGradient, FieldSystem
from glep.parallel import collective


@dataclass
class FieldPass:
    """The result of one leapfrog pass.

    Attributes:
        times: the input times ``t_0 … t_N`` of the nodes.
        q, p: the final position and momentum (local arrays; for the echo, flipped back).
        theta_integral: ``Σ_k w_k ∂_θU(q_k, t_k)`` (parameter fields: local arrays; scalars: reduced), or None.
        loss: the discrete loss ``C_h`` along the pass (running + terminal), or None.
        stored: the positions ``q_0 … q_N`` (copies) when asked, else None.
        assemblies: number of vector assemblies (force, cost gradient, θ-derivatives).
        wall_time: seconds.
    """

    times: np.ndarray
    q: np.ndarray
    p: np.ndarray
    theta_integral: dict | None = None
    loss: float | None = None
    stored: list[np.ndarray] | None = None
    assemblies: int = 0
    wall_time: float = 0.0
    meta: dict = field(default_factory=dict)


def uniform_times(T: float, N: int, t0: float = 0.0) -> np.ndarray:
    """``t0 + k T/N``, ``k = 0 … N`` (checked)."""
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N < 1:
        raise InputError(f"N (number of steps) must be an integer >= 1, got {N!r}")
    if not (isinstance(T, (int, float)) and np.isfinite(T) and T > 0):
        raise InputError(f"T must be a positive finite number, got {T!r}")
    return t0 + np.linspace(0.0, float(T), int(N) + 1)


def trapezoid_weights(tau: np.ndarray) -> np.ndarray:
    """``w_k = (|τ_{k−1}| + |τ_k|)/2`` for ``k = 0 … N`` (end weights ``|τ|/2``)."""
    a = np.abs(np.asarray(tau, dtype=float))
    w = np.zeros(len(a) + 1)
    w[:-1] += 0.5 * a
    w[1:] += 0.5 * a
    return w


def _check_beta(beta) -> float:
    if isinstance(beta, complex) or np.iscomplexobj(beta):
        raise InputError("field time stepping takes a real β (use the Centred or OneSided nudge, not ComplexStep)")
    if not np.isfinite(beta):
        raise InputError(f"beta must be finite, got {beta!r}")
    return float(beta)


def _accumulate(acc: dict | None, grads: dict, w: float) -> dict:
    if acc is None:
        return {k: w * g for k, g in grads.items()}
    for k, g in grads.items():
        if isinstance(acc[k], np.ndarray):
            acc[k] += w * g  # in place (the arrays were created by the first call)
        else:
            acc[k] = acc[k] + w * g
    return acc


def leapfrog(system: FieldSystem, q0: np.ndarray, p0: np.ndarray, times: np.ndarray, tau: np.ndarray, *,
             beta: float = 0.0, theta_integral: bool = False, loss: bool = False, terminal: bool = True,
             store: bool = False, callback: Callable[[int, float, np.ndarray, np.ndarray], None] | None = None
             ) -> FieldPass:
    r"""Kick–drift–kick steps from ``(q0, p0)`` (see the module docstring).

    Arguments:
        times: the input times ``t_0 … t_N`` (length ``N + 1``).
        tau: the signed step sizes ``τ_0 … τ_{N−1}``.
        beta: the nudge (``F = ∂_qU + β∂_qc``).
        theta_integral: accumulate ``Σ_k w_k ∂_θU(q_k, t_k)``.
        loss: accumulate ``C_h`` (and ``c_T(q_N)`` if ``terminal``).
        store: keep copies of ``q_0 … q_N``.
        callback: ``callback(k, t_k, q_k, p_k)`` at every node.
    """
    start = time.perf_counter()
    with collective(system.comm, "field leapfrog"):  # a bad argument on one rank stops every rank
        beta = _check_beta(beta)
        times = np.asarray(times, dtype=float)
        tau = np.asarray(tau, dtype=float)
        if times.ndim != 1 or tau.shape != (len(times) - 1,) or len(tau) < 1:
            raise InputError(f"leapfrog needs N+1 input times and N step sizes, got {times.shape} and {tau.shape}")
        q = system.check_state(q0, "q0").astype(float, copy=True)
        p = system.check_state(p0, "p0").astype(float, copy=True)
    w = trapezoid_weights(tau)
    minv = system.minv
    N = len(tau)
    acc, C, stored, n_asm = None, 0.0, ([q.copy()] if store else None), 0

    def node(k: int, q: np.ndarray, G: dict | None) -> None:
        nonlocal acc, C, n_asm
        if theta_integral:
            acc = _accumulate(acc, G, w[k])
            n_asm += 1
        if loss and system.has_cost:
            C += w[k] * system.cost_value(q, times[k])

    def force(k: int, q: np.ndarray):  # with θ_integral: force and ∂_θU in one node-wise evaluation
        return system.force_and_theta(q, times[k], beta) if theta_integral else (system.force(q, times[k], beta), None)

    F, G = force(0, q)
    n_asm += 1 + (beta != 0 and system.has_cost)
    node(0, q, G)
    if callback is not None:
        callback(0, times[0], q, p)
    for k in range(N):
        h = tau[k]
        p += 0.5 * h * F
        q += h * minv * p
        system.impose(q, times[k + 1])
        F, G = force(k + 1, q)
        n_asm += 1 + (beta != 0 and system.has_cost)
        p += 0.5 * h * F
        node(k + 1, q, G)
        if store:
            stored.append(q.copy())
        if callback is not None:
            callback(k + 1, times[k + 1], q, p)
    if loss and terminal and system.has_terminal_cost:
        C += system.cost_value(q, times[-1], "terminal")
    if acc is not None:
        acc = system.reduce_scalars(system.finish_theta(acc))
    return FieldPass(times, q, p, acc, C if loss else None, stored, n_asm, time.perf_counter() - start)


def forward(system: FieldSystem, T: float, N: int, *, q0=None, p0=None, t0: float = 0.0, beta: float = 0.0,
            theta_integral: bool = False, loss: bool = True, store: bool = False, callback=None) -> FieldPass:
    """``N`` forward steps of size ``T/N`` from ``(q0, p0)`` (default: the system's initial state)."""
    times = uniform_times(T, N, t0)
    if q0 is None or p0 is None:
        qi, pi = system.initial_state(t0)
        q0 = qi if q0 is None else q0
        p0 = pi if p0 is None else p0
    return leapfrog(system, q0, p0, times, np.diff(times), beta=beta, theta_integral=theta_integral, loss=loss,
                    store=store, callback=callback)


def backward(system: FieldSystem, qN, pN, T: float, N: int, *, t0: float = 0.0, beta: float = 0.0,
             theta_integral: bool = False, store: bool = False, callback=None) -> FieldPass:
    """``N`` backward steps (``τ = −T/N``) from ``(q_N, p_N)`` at ``t0 + T`` to ``t0``: the mirrored pass."""
    times = uniform_times(T, N, t0)[::-1].copy()
    return leapfrog(system, qN, pN, times, np.diff(times), beta=beta, theta_integral=theta_integral,
                    loss=False, store=store, callback=callback)


def flip(system: FieldSystem, q: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Time reversal of a state: ``(σ_q q, σ_p p)`` with the density's reversal signs."""
    (sq,), (sp,) = system.lagrangian.reversal_signs
    return sq * q, sp * p


def echo(system: FieldSystem, qN, pN, T: float, N: int, *, t0: float = 0.0, beta: float = 0.0,
         theta_integral: bool = False, store: bool = False, callback=None) -> FieldPass:
    r"""The echo: flip the state at ``T``, run ``N`` *forward* steps with inputs replayed in reverse, flip back.

    The returned ``q, p`` are the flipped-back end state (comparable with the initial state of the
    forward pass); ``stored`` holds the echo positions in echo time order.
    """
    qe, pe = flip(system, np.asarray(qN), np.asarray(pN))
    times = uniform_times(T, N, t0)[::-1].copy()
    res = leapfrog(system, qe, pe, times, np.full(N, float(T) / N), beta=beta, theta_integral=theta_integral,
                   loss=False, store=store, callback=callback)
    res.q, res.p = flip(system, res.q, res.p)
    return res


def retrace_error(system: FieldSystem, T: float, N: int) -> float:
    """Forward ``N`` steps, echo ``N`` steps: ``max|q_echo − q₀| / max(1, max|q₀|)`` over all ranks."""
    fw = forward(system, T, N, loss=False)
    q0, _ = system.initial_state()
    back = echo(system, fw.q, fw.p, T, N)
    err = system.comm.allreduce(float(np.max(np.abs(back.q - q0)[:system.n_owned], initial=0.0)), op=max_op())
    scale = system.comm.allreduce(float(np.max(np.abs(q0)[:system.n_owned], initial=0.0)), op=max_op())
    return err / max(1.0, scale)


def max_op():
    from mpi4py import MPI  # noqa: PLC0415

    return MPI.MAX


def energy(system: FieldSystem, q: np.ndarray, p: np.ndarray, t: float) -> float:
    """``H = ½ pᵀM⁻¹p − U(q, t)`` (summed over ranks)."""
    from dolfinx import fem  # noqa: PLC0415
    from mpi4py import MPI  # noqa: PLC0415

    kin = 0.5 * system.dot(p * system.minv, p)
    system._set_state(q, t)
    U = system.comm.allreduce(fem.assemble_scalar(system.U_form), op=MPI.SUM)
    return kin - U


# ---------------------------------------------------------------------------------------------- midpoint
def midpoint_pass(system, q0, p0, times, tau, *, beta: float = 0.0, sign=None, theta_integral: bool = False,
                  loss: bool = False, terminal: bool = True, callback=None) -> FieldPass:
    r"""Implicit-midpoint steps of a :class:`glep.field_midpoint.MidpointFieldSystem` (any density).

    Step ``k`` solves ``p_k + D₁L_d^β(q_k, q_{k+1}) = 0`` (SNES) with signed size ``tau[k]``, the density and
    targets read at ``(times[k] + times[k+1])/2``; ``sign`` (the position reversal signs, echo only) is applied
    inside the running cost.  Accumulates ``I = Σ_k ∂_θL_d(q_k, q_{k+1})`` and the loss
    ``C_h = Σ_k ℓ(q_k, q_{k+1}) + c_T(q_N)`` when asked; ``meta["newton_iterations"]`` lists the iterations.
    """
    from glep.field_midpoint import check_midpoint_system  # noqa: PLC0415

    check_midpoint_system(system, "the midpoint pass")
    start = time.perf_counter()
    with collective(system.comm, "field midpoint"):
        beta = _check_beta(beta)
        times, tau = np.asarray(times, dtype=float), np.asarray(tau, dtype=float)
        if times.ndim != 1 or tau.shape != (len(times) - 1,) or len(tau) < 1:
            raise InputError(f"the midpoint pass needs N+1 input times and N step sizes, got {times.shape} and "
                             f"{tau.shape}")
        q = system.check_state(q0, "q0").astype(float, copy=True)
        p = system.check_state(p0, "p0").astype(float, copy=True)
    system.sign.value[:] = 1.0 if sign is None else np.asarray(sign, dtype=float)
    its, acc, C = [], None, 0.0
    if callback is not None:
        callback(0, times[0], q, p)
    try:
        for k in range(len(tau)):
            q, p, n = system.step(q, p, times[k], tau[k], t_mid=0.5 * (times[k] + times[k + 1]), beta=beta)
            its.append(n)
            if theta_integral:  # the forms hold (q_k, q_{k+1}) of this step
                acc = _accumulate(acc, system.theta_vectors(system.theta_forms), 1.0)
            if loss and system.has_cost:
                C += system.scalar(system.ell)
            if callback is not None:
                callback(k + 1, times[k + 1], q, p)
    finally:
        system.sign.value[:] = 1.0
        system.beta.value = 0.0
    if loss and terminal:
        C += system.terminal_value(q, times[-1])
    if acc is not None:
        acc = system.reduce_scalars(acc)
    return FieldPass(times, q, p, acc, C if loss else None, assemblies=int(sum(its)),
                     wall_time=time.perf_counter() - start, meta={"newton_iterations": its})


def midpoint_forward(system, T: float, N: int, *, q0=None, p0=None, t0: float = 0.0, beta: float = 0.0,
                     theta_integral: bool = False, loss: bool = True, callback=None) -> FieldPass:
    r"""``N`` implicit-midpoint steps of size ``T/N`` from ``(q0, p0)`` (default: the system's initial state)."""
    from glep.field_midpoint import check_midpoint_system  # noqa: PLC0415

    check_midpoint_system(system, "midpoint_forward")
    times = uniform_times(T, N, t0)
    if q0 is None or p0 is None:
        qi, pi = system.initial_state(t0)
        q0 = qi if q0 is None else q0
        p0 = pi if p0 is None else p0
    return midpoint_pass(system, q0, p0, times, np.diff(times), beta=beta, theta_integral=theta_integral,
                         loss=loss, callback=callback)


def midpoint_echo(system, qN, pN, T: float, N: int, *, t0: float = 0.0, beta: float = 0.0,
                  theta_integral: bool = False) -> FieldPass:
    r"""The echo of the midpoint pass: flip with the density's reversal signs (complex conjugation for NLS), run
    ``N`` *forward* midpoint steps with inputs replayed in reverse and the cost on the flipped state, flip back.

    For a reversible density (``ℒ(σφ, −σφ_t) = ℒ(φ, φ_t)``) the echo step is the mirrored (backward) step of the
    flipped state, so the echo is the backward nudged pass of PFVP.
    """
    from glep.field_midpoint import check_midpoint_system  # noqa: PLC0415

    check_midpoint_system(system, "midpoint_echo")
    q, p = system.flip(np.asarray(qN, dtype=float), np.asarray(pN, dtype=float))
    times = uniform_times(T, N, t0)[::-1].copy()
    res = midpoint_pass(system, q, p, times, np.full(N, float(T) / N), beta=beta,
                        sign=system.lagrangian.reversal_signs[0], theta_integral=theta_integral)
    res.q, res.p = system.flip(res.q, res.p)
    return res


# ---------------------------------------------------------------------------------------------- output
class VTXOutput:
    """A callback writing the field every ``every`` nodes to an ADIOS2 VTX folder (``.bp``, opens in ParaView).

    Use as a context manager: ``with VTXOutput(sys, "phi.bp", every=10) as out: forward(..., callback=out)``.
    """

    def __init__(self, system: FieldSystem, path: str | Path, every: int = 1):
        from dolfinx import fem  # noqa: PLC0415
        from dolfinx.io import VTXWriter  # noqa: PLC0415

        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise InputError(f"every must be an integer >= 1, got {every!r}")
        self.system, self.every = system, every
        self.function = fem.Function(system.V, name="phi")
        self.writer = VTXWriter(system.comm, str(path), [self.function], engine="BP4")
        self.written = 0

    def __call__(self, k: int, t: float, q: np.ndarray, p: np.ndarray) -> None:
        if k % self.every == 0:
            self.function.x.array[:] = q
            self.writer.write(float(t))
            self.written += 1

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> VTXOutput:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_field_results(path: str | Path, system: FieldSystem, gradients: dict, meta: dict | None = None,
                        fields: dict[str, np.ndarray] | None = None) -> Path | None:
    r"""Write gradients (and optional state fields) to HDF5 on rank 0, atomically (temporary file + rename).

    Layout: ``/gradients/<name>/dual``, ``/gradients/<name>/riesz`` (a :class:`FieldGradient`, its label
    as an attribute) or ``/gradients/<name>`` (a number or a state-space dual vector such as ``q0``);
    ``/fields/<name>`` state-space arrays; ``/coordinates/<space>``; every array is global, ordered by
    dof coordinates (identical on any number of ranks).  Collective; returns the path on rank 0.
    """
    import h5py  # noqa: PLC0415

    path = Path(path)
    out: dict[str, np.ndarray] = {}
    attrs: dict[str, str] = {}
    for name, g in gradients.items():
        if isinstance(g, FieldGradient):
            out[f"gradients/{name}/dual"] = system.gather(g.dual, name)
            out[f"gradients/{name}/riesz"] = system.gather(g.riesz, name)
            attrs[f"gradients/{name}"] = g.label
        elif np.ndim(g) == 0:
            out[f"gradients/{name}"] = np.asarray(float(np.real(g)))
        else:
            out[f"gradients/{name}"] = system.gather(np.real(g))
    for name, a in (fields or {}).items():
        out[f"fields/{name}"] = system.gather(a)
    V = system.V
    n = V.dofmap.index_map.size_local
    coords = np.concatenate(system.comm.allgather(V.tabulate_dof_coordinates()[:n]))
    out["coordinates/state"] = coords[np.lexsort(np.round(coords, 12).T[::-1])]
    if system.comm.rank != 0:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["glep_format"] = "glep-field-results/1"
            f.attrs["system"] = repr(system)
            for k, v in (meta or {}).items():
                f.attrs[k] = v if isinstance(v, (int, float, str)) else str(v)
            for k, v in out.items():
                f.create_dataset(k, data=v)
            for k, label in attrs.items():
                f[k].attrs["label"] = label
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


__all__ = ["FieldPass", "VTXOutput", "backward", "echo", "energy", "flip", "forward", "leapfrog", "midpoint_echo",
           "midpoint_forward", "midpoint_pass", "retrace_error", "trapezoid_weights", "uniform_times",
           "write_field_results"]
