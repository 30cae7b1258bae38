# ruff: noqa: E402  (dolfinx_solver and glep.memory must run before the other imports)
"""glep: gradient estimators for physical learning systems.

Generalized Lagrangian Equilibrium Propagation (GLEP) on trajectories defined
by boundary conditions, Hamiltonian Echo Learning (RHEL, HEB), exact discrete
adjoints as ground truth, a time-stepping backend (:mod:`glep.ivp`) and a
finite-element backend on time meshes (:mod:`glep.bvp`).
"""

# Large NumPy temporaries reuse freed heap memory instead of page-faulting afresh (glep.memory).
from glep import memory as _memory  # isort: skip

_memory.apply_default()

# dolfinx-solver-real must configure PETSc before dolfinx or petsc4py load.
import dolfinx_solver  # noqa: F401, E402  isort: skip

from glep.boundary import CBVP, CFVP, CIVP, PFVP, DirichletNatural, Periodic, Robin
from glep.costs import TerminalCost, TrackingCost
from glep.errors import (
    GlepError,
    InputError,
    NotReversibleError,
    SaddleError,
    SingularHessianError,
    SolverError,
)
from glep.grid import TimeGrid
from glep.gyroscopic import Gyroscopic
from glep.kinetic import DiagonalMass
from glep.potentials import (
    Harmonic,
    InputDrive,
    LogCoshLayer,
    Pendulum,
    QuadraticForm,
    Quartic,
    SpringCoupling,
)
from glep.signals import Signal
from glep.system import LagrangianSystem
from glep.terms import FixedPotentialTerm, KineticTerm, PotentialTerm, Term
from glep.trajectory import Trajectory
from glep.ufl_term import UFLTerm

__version__ = "0.1.0"

__all__ = [
    "CBVP", "CFVP", "CIVP", "PFVP", "DirichletNatural", "Periodic", "Robin",
    "TerminalCost", "TrackingCost",
    "GlepError", "InputError", "NotReversibleError", "SaddleError", "SingularHessianError", "SolverError",
    "TimeGrid", "Gyroscopic", "DiagonalMass",
    "Harmonic", "InputDrive", "LogCoshLayer", "Pendulum", "QuadraticForm", "Quartic", "SpringCoupling",
    "Signal", "LagrangianSystem", "FixedPotentialTerm", "KineticTerm", "PotentialTerm", "Term", "Trajectory", "UFLTerm",
]
