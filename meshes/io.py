r"""Saving and loading time meshes and trajectories with :mod:`dolfinx.io`.

* :func:`save_time_mesh` / :func:`load_time_mesh`: XDMF (``.xdmf`` + ``.h5``),
  collective over the mesh's communicator; the loaded mesh is re-partitioned
  over the communicator it is read on (any number of ranks, not necessarily
  the number that wrote it).  A *layered* mesh — identical cell layers stacked
  between time planes, as every mesh of :mod:`glep.meshes` (time meshes,
  space–time rectangles and boxes) — is recognised from the file's arrays
  (:func:`glep.meshes._fast.detect_layers`) and rebuilt in linear time with a
  contiguous time partition (:func:`glep.meshes._fast.layered_mesh`); any other
  mesh goes through :meth:`dolfinx.io.XDMFFile.read_mesh` (graph partitioner
  and reordering).
* :func:`save_trajectory`: a P1 trajectory function, as XDMF (mesh + nodal
  values, readable with h5py or ParaView) or VTX/ADIOS2 (``.bp``), with
  optionally several time stamps (e.g. the nudged trajectories ``β = 0, ±β``
  written as successive "steps").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import dolfinx.fem
import dolfinx.io
import dolfinx.mesh
import numpy as np
from mpi4py import MPI

from glep.errors import InputError
from glep.meshes._fast import detect_layers, layered_mesh, scatter_plane_times
from glep.meshes.time_meshes import _check_ghost_mode

__all__ = ["save_time_mesh", "load_time_mesh", "save_trajectory"]


def _xdmf_path(path) -> Path:
    path = Path(path)
    if path.suffix != ".xdmf":
        raise InputError(f"XDMF files must end in .xdmf, got {str(path)!r}")
    return path


def save_time_mesh(mesh: dolfinx.mesh.Mesh, path, *, name: str = "mesh") -> None:
    """Write ``mesh`` to ``path`` (``.xdmf``; heavy data in the ``.h5`` beside it). Collective."""
    path = _xdmf_path(path)
    mesh.name = name
    with dolfinx.io.XDMFFile(mesh.comm, str(path), "w") as f:
        f.write_mesh(mesh)


def _gather_rows(comm: MPI.Comm, local: np.ndarray) -> np.ndarray | None:
    """The row blocks read by each rank, concatenated in rank order on rank 0 (``None`` elsewhere)."""
    blocks = comm.gather(local, root=0)
    return np.concatenate(blocks) if comm.rank == 0 else None


def _read_layered(f: dolfinx.io.XDMFFile, comm: MPI.Comm, name: str, ghost_mode: dolfinx.mesh.GhostMode
                  ) -> dolfinx.mesh.Mesh | None:
    """Rebuild the mesh ``name`` of an open file as a layered mesh, or ``None`` if it is not one. Collective.

    Every rank reads a block of rows (dolfinx's distributed read); rank 0
    gathers them (node ``i`` of the cells is row ``i`` of the geometry) and
    recognises the layers; the plane times are scattered, the one-layer
    pattern broadcast.
    """
    cell_type, degree = f.read_cell_type(name)
    if degree != 1:
        return None
    cells = _gather_rows(comm, f.read_topology_data(name))
    x = _gather_rows(comm, f.read_geometry_data(name))
    pattern, times, error = None, None, None
    if comm.rank == 0:
        try:
            pattern, times = detect_layers(x, cells, cell_type) or (None, None)
        except IndexError as exc:                 # cells naming rows the geometry does not have
            error = f"the mesh {name!r} in the file is inconsistent: {exc}"
    pattern, n_t, error = comm.bcast((pattern, None if times is None else times.size - 1, error), root=0)
    if error is not None:
        raise InputError(error)
    if pattern is None:
        return None
    return layered_mesh(comm, pattern, n_t, scatter_plane_times(comm, times, n_t), ghost_mode)


def load_time_mesh(comm: MPI.Comm, path, *, name: str = "mesh",
                   ghost_mode: dolfinx.mesh.GhostMode = dolfinx.mesh.GhostMode.shared_facet
                   ) -> dolfinx.mesh.Mesh:
    """Read a mesh written by :func:`save_time_mesh`, distributed over ``comm``. Collective.

    A layered mesh (every mesh glep builds) is rebuilt with the vertex
    coordinates of the file, in linear time, rank ``r`` owning a contiguous
    block of time layers; its local cell and vertex numbering is time order,
    not the file's.  Other meshes are read by :meth:`dolfinx.io.XDMFFile.read_mesh`.
    """
    path = _xdmf_path(path)
    ghost_mode = _check_ghost_mode(ghost_mode)
    if not comm.bcast(path.exists() if comm.rank == 0 else None, root=0):
        raise InputError(f"no mesh file at {str(path)!r}")
    with dolfinx.io.XDMFFile(comm, str(path), "r") as f:
        mesh = _read_layered(f, comm, name, ghost_mode)
        if mesh is None:
            mesh = f.read_mesh(ghost_mode=ghost_mode, name=name)
    mesh.name = name
    return mesh


def save_trajectory(q: dolfinx.fem.Function | Sequence[dolfinx.fem.Function], path, *,
                    times: Sequence[float] | float = 0.0, engine: str = "xdmf") -> None:
    """Write a trajectory function (or several snapshots on one mesh) to ``path``. Collective.

    Parameters
    ----------
    q:
        A P1 function on a time mesh (coordinate degree 1, as every mesh of
        :mod:`glep.meshes`), or a list of such functions sharing one space
        and name, written as successive stamps.
    path:
        ``.xdmf`` for ``engine="xdmf"``, ``.bp`` for ``engine="vtx"``.
    times:
        The stamp of each function (a float for a single function).
    engine:
        ``"xdmf"`` or ``"vtx"`` (ADIOS2).
    """
    funcs = [q] if isinstance(q, dolfinx.fem.Function) else list(q)
    stamps = [float(times)] if isinstance(times, (int, float)) else [float(s) for s in times]
    if len(stamps) != len(funcs):
        raise InputError(f"give one stamp per function: {len(funcs)} functions, {len(stamps)} stamps")
    mesh = funcs[0].function_space.mesh
    path = Path(path)
    if engine == "xdmf":
        path = _xdmf_path(path)
        with dolfinx.io.XDMFFile(mesh.comm, str(path), "w") as f:
            f.write_mesh(mesh)
            for fn, s in zip(funcs, stamps):
                f.write_function(fn, s)
    elif engine == "vtx":
        if path.suffix != ".bp":
            raise InputError(f"VTX output must end in .bp, got {str(path)!r}")
        if not dolfinx.io.has_adios2:
            raise InputError("this dolfinx was built without ADIOS2: use engine='xdmf'")
        target = dolfinx.fem.Function(funcs[0].function_space, name=funcs[0].name)
        with dolfinx.io.VTXWriter(mesh.comm, str(path), [target], engine="BP4") as w:
            for fn, s in zip(funcs, stamps):
                target.x.array[:] = fn.x.array
                w.write(s)
    else:
        raise InputError(f"engine must be 'xdmf' or 'vtx', got {engine!r}")
