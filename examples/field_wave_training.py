r"""Training a wave field with the echo, and with the adjoint, from the same start.

    python examples/field_wave_training.py OUT_DIR

A string of stiffness ``κ(x)`` (``φ_tt = (κφ_x)_x`` on ``[0, 1]``, fixed ends) is driven by a time-varying
source ``f(x, t) = sin(ωt) e^{−((x − 0.1)/0.05)²}`` at its left end; the task is to make the field in the
read-out region ``x ≥ 0.7`` follow a time-varying target ``y(t)`` over ``[0, T]``:

    C(κ) = ∫₀^T ½ ∫_{x ≥ 0.7} (φ(x, t) − y(t))² dx dt      (trapezoid in time: the discrete C_h).

What is learned is the field ``κ`` (one value per mesh vertex).  Each step of gradient descent needs
``dC_h/dκ``, which we read in two ways:

* **the echo** (:class:`glep.FieldEcho`): the free forward pass, then two nudged passes run *forward in time*
  after a momentum flip at ``T`` (``β = ±1e-4``), accumulating ``∫ ∂_κU`` — the physical system itself
  computes the gradient, with memory independent of ``N``;
* **the discrete adjoint** (:func:`glep.field_adjoint`), the ground truth of the same leapfrog.

The descent step is the ``L²`` steepest-descent direction (the Riesz representative ``M_Θ⁻¹ g`` of the dual
gradient ``g``), with an Armijo backtracking line search: a step ``s`` is accepted when

    C(κ − s r) ≤ C(κ) − ½ s ⟨g, r⟩,     r = M_Θ⁻¹ g,

so every accepted step lowers the loss by at least ``½ s ⟨g, r⟩`` — the *guaranteed decrease* that the test
(tests/test_examples.py) checks step by step (if no step is acceptable, the point is numerically stationary
and the descent stops).  Because the echo's gradient equals the adjoint's to
``O(β²)`` (≈ 1e-8 relative), both runs take the same steps and end at the same loss; the output shows the
largest gap between the two loss histories.

Writes ``OUT_DIR/field_wave_training.png`` (both loss curves) and ``OUT_DIR/field_wave_training.h5``
(loss histories, step sizes, guaranteed decreases, initial and learned ``κ``), each written to a temporary file
and renamed into place (atomic: an interrupted run leaves no partial file).
"""

import dolfinx_solver  # noqa: F401  isort: skip  (first: it sets up MPI and PETSc for dolfinx)

import os
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import ufl
from dolfinx import mesh
from mpi4py import MPI

import glep
from glep import field_models
from glep.ivp.field_stepping import forward

COMM = MPI.COMM_WORLD
T, N, CELLS, ITERATIONS = 1.5, 90, 24, 5
OMEGA = 2 * np.pi * 1.5


def make_system() -> glep.FieldSystem:
    """The driven string, its read-out and its initial stiffness ``κ₀(x) = 1 + 0.3x``."""
    msh = mesh.create_interval(COMM, CELLS, [0.0, 1.0])
    return glep.FieldSystem(
        field_models.wave(kappa=lambda x: 1.0 + 0.3 * x[0]), msh,
        source=lambda x, t: 10.0 * ufl.sin(OMEGA * t) * ufl.exp(-(((x[0] - 0.1) / 0.05) ** 2)),
        cost=glep.FieldCost(target=lambda x, t: 0.04 * ufl.sin(OMEGA * t - 2.0), region=lambda x: x[0] >= 0.7))


def loss(system: glep.FieldSystem) -> float:
    """``C_h`` of one free forward pass."""
    return forward(system, T, N).loss


def echo_gradient(system: glep.FieldSystem):
    """``(dual, riesz)`` of ``dC_h/dκ`` from the echo (3 forward passes)."""
    g = glep.field_echo(system, T, N, nudge=glep.Centred(1e-4)).theta["kappa"]
    return g.dual, g.riesz


def adjoint_gradient(system: glep.FieldSystem):
    """``(dual, riesz)`` of ``dC_h/dκ`` from the discrete adjoint (the ground truth)."""
    g = glep.field_adjoint(system, T, N).theta["kappa"]
    return g.dual, g.riesz


def train(gradient, iterations: int = ITERATIONS, change: float = 0.2):
    """Gradient descent on ``κ`` with Armijo backtracking; returns the history (losses, steps, decreases, κ).

    The first trial step changes ``κ`` by at most ``change`` at any point; later ones start at twice the
    previous accepted step.
    """
    system = make_system()
    n = system.spaces["kappa"].dofmap.index_map.size_local
    kappa0 = system.parameter_values()["kappa"][:n].copy()
    losses, steps, guaranteed = [loss(system)], [], []
    step = None
    for _ in range(iterations):
        kappa = system.parameter_values()["kappa"][:n].copy()
        dual, riesz = gradient(system)
        slope = COMM.allreduce(float(dual @ riesz))  # ⟨g, M⁻¹g⟩ ≥ 0
        if step is None:
            step = change / COMM.allreduce(float(np.max(np.abs(riesz), initial=0.0)), op=MPI.MAX)
        s, shortest = step, 1e-6 * step
        while s >= shortest:  # Armijo: accept s when the decrease is at least half the linear prediction
            system.set_parameter("kappa", kappa - s * riesz)
            trial = loss(system)
            if trial <= losses[-1] - 0.5 * s * slope:
                break
            s *= 0.5
        if s < shortest:  # no acceptable step: a (numerically) stationary point; keep κ and stop
            system.set_parameter("kappa", kappa)
            break
        losses.append(trial)
        steps.append(s)
        guaranteed.append(0.5 * s * slope)
        step = 2.0 * s  # try a longer step next time
    kappa = system.parameter_values()["kappa"][:n]
    return {"losses": np.array(losses), "steps": np.array(steps), "guaranteed_decrease": np.array(guaranteed),
            "kappa_initial": system.gather(kappa0, "kappa"), "kappa": system.gather(kappa, "kappa"),
            "x": np.sort(system.gather(system.spaces["kappa"].tabulate_dof_coordinates()[:n, 0], "kappa"))}


def _atomic(path: Path, write) -> None:
    """``write(tmp)`` to a hidden temporary file next to ``path``, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # the permissions of an ordinary new file (mkstemp makes it private)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_outputs(out: Path, runs: dict) -> None:
    """Both loss curves as a PNG, the histories as HDF5 (rank 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)

    def plot(tmp):
        fig, ax = plt.subplots(figsize=(5.5, 3.5))
        for (name, run), style in zip(runs.items(), ("o-", "x--"), strict=True):
            ax.semilogy(run["losses"], style, label=name)
        ax.set_xlabel("gradient-descent step")
        ax.set_ylabel("loss $C_h$")
        ax.set_title("1-D wave, trainable stiffness κ(x): echo vs adjoint", fontsize=9)
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        fig.savefig(tmp, format="png")
        plt.close(fig)

    def h5(tmp):
        with h5py.File(tmp, "w") as f:
            f.attrs["glep_format"] = "glep-field-training/1"
            f.attrs.update({"T": T, "N": N, "cells": CELLS, "iterations": ITERATIONS})
            for name, run in runs.items():
                g = f.create_group(name)
                for key, value in run.items():
                    g.create_dataset(key, data=value)

    _atomic(out / "field_wave_training.png", plot)
    _atomic(out / "field_wave_training.h5", h5)


if __name__ == "__main__":
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("field-wave-training")
    runs = {"echo": train(echo_gradient), "adjoint": train(adjoint_gradient)}
    e, a = runs["echo"]["losses"], runs["adjoint"]["losses"]
    if COMM.rank == 0:
        print(f"loss: {e[0]:.4e} -> echo {e[-1]:.4e}, adjoint {a[-1]:.4e} after {ITERATIONS} steps")
        print(f"largest relative gap between the two histories: {np.max(np.abs(e - a) / a):.1e}")
        write_outputs(out_dir, runs)
        print(f"wrote {out_dir / 'field_wave_training.png'} and {out_dir / 'field_wave_training.h5'}")
