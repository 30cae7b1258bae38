"""HDF5 input/output of trajectories and comparison results (h5py).

A trajectory is stored with its boundary condition, β, parameters and
metadata, so that a comparison can be re-analysed without re-running it::

    /trajectories/<name>/times, q, p          datasets
    /trajectories/<name>/params/<θ name>      datasets
    attributes: boundary, beta_real, beta_imag, and every meta entry
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from glep.errors import InputError
from glep.trajectory import Trajectory


def _attr(value):
    if isinstance(value, (str, int, float, bool, np.integer, np.floating)):
        return value
    return json.dumps(value, default=str)


def write_trajectory(group: h5py.Group, traj: Trajectory) -> None:
    """Write ``traj`` into an open HDF5 group."""
    group.create_dataset("times", data=traj.times)
    for key in ("q", "p"):
        arr = np.asarray(getattr(traj, key))
        group.create_dataset(key, data=arr.real if not np.iscomplexobj(arr) else arr)
    pg = group.create_group("params")
    for k, v in traj.params.items():
        pg.create_dataset(k, data=np.asarray(v))
    beta = complex(traj.beta)
    group.attrs["boundary"] = traj.boundary
    group.attrs["beta_real"] = beta.real
    group.attrs["beta_imag"] = beta.imag
    for k, v in traj.meta.items():
        group.attrs[f"meta_{k}"] = _attr(v)


def read_trajectory(group: h5py.Group) -> Trajectory:
    """Read a trajectory written by :func:`write_trajectory`."""
    for key in ("times", "q", "p", "params"):
        if key not in group:
            raise InputError(f"HDF5 group {group.name!r} is not a glep trajectory (no {key!r})")
    beta = complex(group.attrs.get("beta_real", 0.0), group.attrs.get("beta_imag", 0.0))
    meta = {k[5:]: v for k, v in group.attrs.items() if k.startswith("meta_")}
    params = {k: np.asarray(v) for k, v in group["params"].items()}
    return Trajectory(np.asarray(group["times"]), np.asarray(group["q"]), np.asarray(group["p"]),
                      beta.real if beta.imag == 0 else beta, str(group.attrs.get("boundary", "")), params, meta)


def save_trajectory(path: str | Path, traj: Trajectory, name: str = "trajectory") -> None:
    """Save one trajectory to ``path`` (appending to an existing file)."""
    with h5py.File(path, "a") as f:
        grp = f.require_group("trajectories")
        if name in grp:
            del grp[name]
        write_trajectory(grp.create_group(name), traj)


def load_trajectory(path: str | Path, name: str = "trajectory") -> Trajectory:
    """Load a trajectory saved by :func:`save_trajectory`."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"path {str(path)!r} does not exist")
    with h5py.File(path, "r") as f:
        if "trajectories" not in f or name not in f["trajectories"]:
            have = list(f["trajectories"]) if "trajectories" in f else []
            raise InputError(f"no trajectory named {name!r} in {str(path)!r}; available: {have}")
        return read_trajectory(f["trajectories"][name])


def list_trajectories(path: str | Path) -> list[str]:
    with h5py.File(path, "r") as f:
        return list(f["trajectories"]) if "trajectories" in f else []
