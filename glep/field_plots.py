r"""Plots of a field over time (matplotlib), the same on any number of MPI ranks.

A stored field trajectory ``φ_h(x, t_k)`` (the local dof arrays of a
:class:`glep.FieldSystem`, e.g. ``glep.field_forward(..., store=True).stored``)
is gathered in dof-coordinate order (:meth:`FieldSystem.gather`), so the
picture does not depend on the partition:

* a 1-D field is drawn as a space–time map ``(x, t) ↦ φ`` (time upwards), the
  picture a space–time solve of :mod:`glep.bvp.spacetime` would give;
* a 2-D field as snapshots at evenly spaced times (``tripcolor`` on the dof
  coordinates, one shared colour scale).

Rank 0 writes the PNG atomically (a temporary file in the same folder, then
``os.replace``); every rank must call the function (the gathers are collective).
For ParaView, write the field with :class:`glep.ivp.field_stepping.VTXOutput` instead.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from glep.errors import InputError


def _check(system, times, states) -> tuple[np.ndarray, list]:
    times = np.asarray(times, dtype=float)
    states = list(states)
    if times.ndim != 1 or len(times) != len(states) or len(states) < 2:
        raise InputError(f"times and states must have the same length >= 2 (one state per time), got "
                         f"{times.shape} times and {len(states)} states")
    if not np.all(np.diff(times) != 0):
        raise InputError("times must be distinct")
    n = system.V.dofmap.index_map.size_local
    for k, q in enumerate(states):
        if np.asarray(q).ndim != 1 or np.asarray(q).shape[0] < n:
            raise InputError(f"states[{k}] must be this rank's dof array of the field (at least {n} entries), "
                             f"got shape {np.asarray(q).shape}")
    return times, states


def _coordinates(system) -> np.ndarray:
    """The dof coordinates, gathered in the order of :meth:`FieldSystem.gather`, shape ``(ndofs, gdim)``."""
    X = system.V.tabulate_dof_coordinates()
    return np.stack([system.gather(X[:, k]) for k in range(system.mesh.geometry.dim)], axis=1)


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the figure from the user's group
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def plot_field_history(system, times: Sequence[float], states: Sequence[np.ndarray], path: str | Path, *,
                       title: str | None = None, snapshots: int = 4) -> Path | None:
    """Draw ``φ_h(x, t_k)`` to the PNG ``path``; returns the path on rank 0 and ``None`` elsewhere.

    Arguments:
        system: the :class:`glep.FieldSystem` (or :class:`glep.MidpointFieldSystem`: its first component) whose
            states these are.
        times: the times ``t_k`` of the states.
        states: one local dof array per time.
        path: the PNG file to write (its folder is created).
        title: the figure title (default: the model's name).
        snapshots: number of snapshots of a 2-D field.
    """
    times, states = _check(system, times, states)
    if isinstance(snapshots, bool) or not isinstance(snapshots, int) or snapshots < 1:
        raise InputError(f"snapshots must be an integer >= 1, got {snapshots!r}")
    gdim = system.mesh.topology.dim
    if gdim not in (1, 2):
        raise InputError(f"plot_field_history draws 1-D and 2-D fields, this mesh is {gdim}-D")
    X = _coordinates(system)
    values = np.array([system.gather(np.asarray(q).real) for q in states])  # (times, dofs): collective
    if system.comm.rank != 0:
        return None
    import matplotlib  # noqa: PLC0415 (plotting loads matplotlib only when used)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    name = title or getattr(system.lagrangian, "name", "field")
    vmax = float(np.max(np.abs(values))) or 1.0
    if gdim == 1:
        order = np.argsort(X[:, 0], kind="stable")
        fig, ax = plt.subplots(figsize=(6, 4.5))
        mesh = ax.pcolormesh(X[order, 0], times, values[:, order], shading="nearest", cmap="RdBu_r",
                             vmin=-vmax, vmax=vmax)
        ax.set_xlabel("x")
        ax.set_ylabel("t")
        fig.colorbar(mesh, ax=ax, label="φ")
    else:
        picks = np.unique(np.linspace(0, len(times) - 1, snapshots).round().astype(int))
        fig, axes = plt.subplots(1, len(picks), figsize=(3.2 * len(picks), 3.2), squeeze=False)
        for ax, k in zip(axes[0], picks, strict=True):
            art = ax.tripcolor(X[:, 0], X[:, 1], values[k], shading="gouraud", cmap="RdBu_r", vmin=-vmax, vmax=vmax)
            ax.set_title(f"t = {times[k]:.3g}")
            ax.set_xlim(X[:, 0].min(), X[:, 0].max())
            ax.set_ylim(X[:, 1].min(), X[:, 1].max())
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(art, ax=list(axes[0]), label="φ", shrink=0.8)
    fig.suptitle(name)
    target = Path(path)
    _save(fig, target)
    plt.close(fig)
    return target


__all__ = ["plot_field_history"]
