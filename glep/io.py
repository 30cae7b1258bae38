"""HDF5 input/output of trajectories and comparison results (h5py).

A trajectory is stored with its boundary condition, β, parameters and
metadata, so that a comparison can be re-analysed without re-running it::

    /trajectories/<name>/times, q, p          datasets (p0, pT instead of p: end momenta only)
    /trajectories/<name>/params/<θ name>      datasets
    /trajectories/<name>/report/history       dataset, with attributes reason, iterations, wall_time
    attributes: boundary (its name), beta_real, beta_imag, action, morse_index, and every meta entry

Backend handles (the finite-element problem and vector, ``Trajectory.fe``) are
not stored.  Reading checks the file and the shapes (``times`` of length
``N+1``, ``q`` and ``p`` of the same shape ``(N+1, …)``, or ``p0`` and ``pT``
of shape ``q.shape[1:]``): a bad file is an :class:`~glep.errors.InputError`
naming it, never an h5py traceback.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from glep.errors import InputError
from glep.trajectory import SolverReport, Trajectory


def _attr(value):
    if isinstance(value, (str, int, float, bool, np.integer, np.floating)):
        return value
    return json.dumps(value, default=str)


def write_trajectory(group: h5py.Group, traj: Trajectory) -> None:
    """Write ``traj`` into an open HDF5 group."""
    group.create_dataset("times", data=traj.times)
    arrays = {"q": traj.q, **({"p": traj.p} if traj.p is not None else {"p0": traj.p0, "pT": traj.pT})}
    for key, arr in arrays.items():
        group.create_dataset(key, data=np.asarray(arr))
    pg = group.create_group("params")
    for k, v in traj.params.items():
        pg.create_dataset(k, data=np.asarray(v))
    beta = complex(traj.beta)
    group.attrs["boundary"] = traj.boundary_name
    for key in ("action", "morse_index"):
        if getattr(traj, key) is not None:
            group.attrs[key] = getattr(traj, key)
    if traj.report is not None:
        rg = group.create_group("report")
        rg.create_dataset("history", data=np.asarray(traj.report.history, dtype=float))
        rg.attrs["reason"] = traj.report.reason
        rg.attrs["iterations"] = traj.report.iterations
        if traj.report.wall_time is not None:
            rg.attrs["wall_time"] = traj.report.wall_time
    group.attrs["beta_real"] = beta.real
    group.attrs["beta_imag"] = beta.imag
    for k, v in traj.meta.items():
        group.attrs[f"meta_{k}"] = _attr(v)


def _shape_error(group: h5py.Group, what: str) -> InputError:
    return InputError(f"{group.file.filename}: trajectory {group.name!r} is inconsistent: {what}")


def _dataset(group: h5py.Group, key: str) -> np.ndarray:
    obj = group[key]
    if not isinstance(obj, h5py.Dataset):
        raise _shape_error(group, f"{key!r} must be a dataset, got a {type(obj).__name__}")
    arr = np.asarray(obj)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise _shape_error(group, f"{key!r} must be numeric, got dtype {arr.dtype}")
    return arr


def read_trajectory(group: h5py.Group) -> Trajectory:
    """Read a trajectory written by :func:`write_trajectory`, checking that its pieces fit together.

    ``times`` must be 1-D of length ``N+1`` (finite, increasing), ``q`` and ``p``
    of the same shape ``(N+1, …)``, and every parameter a numeric dataset;
    otherwise an :class:`~glep.errors.InputError` names the file, the group and
    the inconsistency.
    """
    ends = "p" not in group and "p0" in group and "pT" in group
    for key in ("times", "q", "params") + (() if ends else ("p",)):
        if key not in group:
            raise InputError(f"{group.file.filename}: HDF5 group {group.name!r} is not a glep trajectory "
                             f"(no {key!r})")
    times, q = (_dataset(group, k) for k in ("times", "q"))
    p = None if ends else _dataset(group, "p")
    if times.ndim != 1 or times.size < 1:
        raise _shape_error(group, f"times must be 1-D and non-empty, got shape {times.shape}")
    if np.iscomplexobj(times) or not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0):
        raise _shape_error(group, "times must be real, finite and increasing")
    for key, arr in (("q", q),) + ((("p", p),) if p is not None else ()):
        if arr.ndim < 2 or arr.shape[0] != times.size:
            raise _shape_error(group, f"{key} must have shape ({times.size}, ...) to match times of length "
                                      f"{times.size}, got {arr.shape}")
    if p is not None and q.shape != p.shape:
        raise _shape_error(group, f"q and p must have the same shape, got {q.shape} and {p.shape}")
    end_momenta = None
    if p is None:
        end_momenta = (_dataset(group, "p0"), _dataset(group, "pT"))
        if any(e.shape != q.shape[1:] for e in end_momenta):
            raise _shape_error(group, f"p0 and pT must have shape {q.shape[1:]} (q without its time axis), got "
                                      f"{end_momenta[0].shape} and {end_momenta[1].shape}")
    if not isinstance(group["params"], h5py.Group):
        raise _shape_error(group, "'params' must be a group of datasets")
    params = {k: _dataset(group["params"], k) for k in group["params"]}
    beta = complex(group.attrs.get("beta_real", 0.0), group.attrs.get("beta_imag", 0.0))
    meta = {k[5:]: v for k, v in group.attrs.items() if k.startswith("meta_")}
    action = group.attrs.get("action")
    index = group.attrs.get("morse_index")
    return Trajectory(times, q, p, beta.real if beta.imag == 0 else beta, str(group.attrs.get("boundary", "")),
                      params, meta, _read_report(group), None if action is None else float(action),
                      None if index is None else int(index), end_momenta)


def _read_report(group: h5py.Group) -> SolverReport | None:
    """The solver report stored under ``report`` (``None`` if the trajectory has none)."""
    if "report" not in group:
        return None
    rg = group["report"]
    if not isinstance(rg, h5py.Group) or "history" not in rg or "reason" not in rg.attrs:
        raise _shape_error(group, "'report' must be a group with a 'history' dataset and a 'reason' attribute")
    wall = rg.attrs.get("wall_time")
    return SolverReport(str(rg.attrs["reason"]), int(rg.attrs.get("iterations", 0)),
                        tuple(_dataset(rg, "history").ravel()), None if wall is None else float(wall))


def save_trajectory(path: str | Path, traj: Trajectory, name: str = "trajectory") -> None:
    """Save one trajectory to ``path`` (appending to an existing file)."""
    with h5py.File(path, "a") as f:
        grp = f.require_group("trajectories")
        if name in grp:
            del grp[name]
        write_trajectory(grp.create_group(name), traj)


@contextmanager
def _open_trajectory_file(path: str | Path, require_group: bool = True):
    """Open ``path`` read-only as a glep trajectory file; any failure to read it is an InputError.

    An empty, truncated or non-HDF5 file, a directory or a file without a
    ``/trajectories`` group gives ``"… is not a glep trajectory file (…)"``.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"path {str(path)!r} does not exist")

    def foreign(reason) -> InputError:
        return InputError(f"{str(path)!r} is not a glep trajectory file ({reason})")

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise foreign(str(exc) or type(exc).__name__) from exc
    try:
        if require_group and not isinstance(f.get("trajectories"), h5py.Group):
            raise foreign("no 'trajectories' group")
        yield f
    except InputError:
        raise
    except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise foreign(f"unreadable: {exc}") from exc
    finally:
        f.close()


def load_trajectory(path: str | Path, name: str = "trajectory") -> Trajectory:
    """Load a trajectory saved by :func:`save_trajectory` (checked by :func:`read_trajectory`)."""
    with _open_trajectory_file(path) as f:
        if name not in f["trajectories"]:
            raise InputError(f"no trajectory named {name!r} in {str(path)!r}; available: {list(f['trajectories'])}")
        return read_trajectory(f["trajectories"][name])


def list_trajectories(path: str | Path) -> list[str]:
    """Names of the trajectories stored in ``path`` (none for an HDF5 file without them)."""
    with _open_trajectory_file(path, require_group=False) as f:
        return list(f["trajectories"]) if "trajectories" in f else []
