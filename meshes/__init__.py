r"""Time meshes for the finite-element backend (:mod:`glep.bvp`).

Physical time is the ``x``-coordinate of a dolfinx interval mesh (the
``y``-coordinate of a space–time rectangle, the ``z``-coordinate of a
space–time box, for field equations).  Meshes are stacks of time layers built
in linear time, each MPI rank owning a contiguous block of layers in time
order (:mod:`glep.meshes._fast`); adaptation (:func:`refine_time_mesh`,
:func:`coarsen_time_mesh`) is driven by a per-cell indicator such as the
Euler–Lagrange residual estimate :func:`el_residual_indicator`.
"""

import dolfinx_solver  # noqa: F401  isort: skip  (configures PETSc before dolfinx/petsc4py load)

from glep.meshes.adapt import (
    coarsen_time_mesh,
    el_residual_indicator,
    el_residual_indicator_nodal,
    indicator_function,
    indicator_in_time_order,
    refine_time_mesh,
)
from glep.meshes.functions import nodal_values, trajectory_function, trajectory_space, transfer_trajectory
from glep.meshes.io import load_time_mesh, save_time_mesh, save_trajectory
from glep.meshes.time_meshes import (
    cell_time_positions,
    graded_time_mesh,
    graded_vertices,
    owned_cell_count,
    space_time_box_mesh,
    space_time_mesh,
    time_mesh_from_vertices,
    time_mesh_vertices,
    uniform_time_mesh,
)

__all__ = [
    "uniform_time_mesh", "graded_time_mesh", "graded_vertices", "space_time_mesh", "space_time_box_mesh",
    "time_mesh_from_vertices",
    "time_mesh_vertices", "cell_time_positions", "owned_cell_count",
    "refine_time_mesh", "coarsen_time_mesh", "el_residual_indicator", "el_residual_indicator_nodal",
    "indicator_in_time_order", "indicator_function",
    "trajectory_space", "trajectory_function", "nodal_values", "transfer_trajectory",
    "save_time_mesh", "load_time_mesh", "save_trajectory",
]
