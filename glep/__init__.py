# ruff: noqa: E402  (glep.memory must run before the other imports)
r"""glep: gradient estimators for physical learning systems.

Generalized Lagrangian Equilibrium Propagation (GLEP) on trajectories defined
by boundary conditions, Recurrent Hamiltonian Echo Learning (RHEL), exact
discrete adjoints as ground truth, a time-stepping backend (:mod:`glep.ivp`)
and a finite-element backend on time meshes (:mod:`glep.bvp`).

Every estimator approximates ``dC_h/dθ``, the gradient of the discrete loss
``C_h(θ) = Σ_k w_k c(q_k, t_k)`` of the trajectory fixed by a boundary condition,
from trajectories of the nudged Lagrangian ``L_β = L + βc``::

    import glep
    problem = glep.Problem.from_model(glep.models.coupled_oscillators(n=4), steps=400)
    g = glep.echo(problem, glep.Centred(beta=1e-4))
    print(glep.agreement(g.theta, glep.adjoint(problem).theta))

The public names are listed in ``__all__``.  Systems, terms, boundary
conditions and errors are imported with the package (NumPy only); estimators,
integrators, :class:`UFLTerm` and the finite-element solvers are imported on
first use (PEP 562), so ``import glep`` loads neither UFL, PETSc nor DOLFINx.
Whenever they are loaded, :mod:`dolfinx_solver` configures PETSc first
(:mod:`glep.bvp`, :mod:`glep.meshes` and :mod:`glep.ufl_term` import it before
anything else).
"""

# Large NumPy temporaries reuse freed heap memory instead of page-faulting afresh (glep.memory).
from glep import memory as _memory  # isort: skip

_memory.apply_default()

import importlib as _importlib
import sys as _sys
from typing import Any as _Any


class _SolverFirst:
    """A ``sys.meta_path`` finder that imports :mod:`dolfinx_solver` before DOLFINx, PETSc or SLEPc.

    The wheel's bindings need ``dolfinx_solver`` (it loads MPI ahead of them); with this hook a
    user's ``import glep; import dolfinx`` works in any order.  It finds nothing itself: it only
    runs that import once, then lets the normal finders load the module asked for.
    """

    _targets = frozenset({"dolfinx", "petsc4py", "slepc4py"})
    _busy = False

    def find_spec(self, name, path=None, target=None):
        if name in self._targets and "dolfinx_solver" not in _sys.modules and not self._busy:
            type(self)._busy = True
            try:
                _importlib.import_module("dolfinx_solver")
            except ImportError:  # not installed: the finite-element extras are unavailable anyway
                pass
            finally:
                type(self)._busy = False
        return None


if not any(isinstance(f, _SolverFirst) for f in _sys.meta_path):
    _sys.meta_path.insert(0, _SolverFirst())

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
from glep.trajectory import SolverReport, Trajectory

__version__ = "0.1.0"

#: Public name -> (module, attribute) for everything imported on first use.  This is the one place
#: where a public name is bound to its implementation: moving or wrapping one is a one-line change.
_LAZY: dict[str, tuple[str, str]] = {
    # systems defined by a UFL expression (loads UFL and, when evaluated, DOLFINx)
    "UFLTerm": ("glep.ufl_term", "UFLTerm"),
    # the learning problem and its estimators
    "Problem": ("glep.estimators.problem", "Problem"),
    "GradientEstimate": ("glep.estimators.result", "GradientEstimate"),
    "echo": ("glep.estimators.contrast", "echo"),
    "pfvp": ("glep.estimators.contrast", "pfvp"),
    "civp": ("glep.estimators.contrast", "civp_contrast"),
    "rhel": ("glep.estimators.rhel", "rhel"),
    "cbvp": ("glep.estimators.cbvp", "cbvp"),
    "adjoint": ("glep.estimators.ground_truth", "adjoint"),
    # the same estimators and truths as strategy objects (they declare loss, exactness, cost, truth)
    "AbstractEstimator": ("glep.estimators.base", "AbstractEstimator"),
    "CIVPContrast": ("glep.estimators.contrast", "CIVPContrast"),
    "PFVPContrast": ("glep.estimators.contrast", "PFVPContrast"),
    "Echo": ("glep.estimators.contrast", "Echo"),
    "RHEL": ("glep.estimators.rhel", "RHEL"),
    "CBVPContrast": ("glep.estimators.cbvp", "CBVPContrast"),
    "PeriodicContrast": ("glep.estimators.cbvp", "PeriodicContrast"),
    "PeriodicFEAdjoint": ("glep.estimators.cbvp", "PeriodicFEAdjoint"),
    "DiscreteAdjoint": ("glep.estimators.ground_truth", "DiscreteAdjoint"),
    "FEAdjoint": ("glep.estimators.cbvp", "FEAdjoint"),
    "finite_differences": ("glep.estimators.ground_truth", "finite_differences"),
    "taylor_test": ("glep.estimators.ground_truth", "taylor_test"),
    "compare": ("glep.estimators.compare", "compare_estimators"),
    "Report": ("glep.estimators.compare", "Report"),
    "format_table": ("glep.estimators.compare", "format_table"),
    "agreement": ("glep.estimators.metrics", "compare"),
    # finite nudging: the objective J each estimator descends exactly at finite β
    "free_energy": ("glep.estimators.finite", "free_energy"),
    "FreeEnergyGradient": ("glep.estimators.finite", "FreeEnergyGradient"),
    "integrated_residual": ("glep.estimators.finite", "integrated_residual"),
    "IntegratedResidual": ("glep.estimators.finite", "IntegratedResidual"),
    "finite_beta_rows": ("glep.estimators.finite", "finite_beta_rows"),
    # nudging schemes (finite differences in β)
    "Nudge": ("glep.estimators.nudging", "Nudge"),
    "Centred": ("glep.estimators.nudging", "Centred"),
    "OneSided": ("glep.estimators.nudging", "OneSided"),
    "ComplexStep": ("glep.estimators.nudging", "ComplexStep"),
    # time stepping
    "integrate": ("glep.ivp.stepping", "integrate"),
    # Störmer–Verlet, on the NumPy path or compiled (StormerVerlet(backend="jax"), the extra glep[jax])
    "StormerVerlet": ("glep.ivp.integrators", "StormerVerlet"),
    "shoot": ("glep.ivp.shooting", "shoot_cbvp"),
    # finite-element whole-trajectory solves (load dolfinx and PETSc)
    "solve_bvp": ("glep.bvp", "solve_bvp"),
    "find_solutions": ("glep.bvp", "find_solutions"),
    "FESolve": ("glep.bvp", "FESolve"),
    # their solvers, as strategy objects (solve_bvp(..., solver=...))
    **{name: ("glep.bvp", name) for name in
       ("Newton", "TrustRegion", "ResidualDescent", "GradientFlow", "Deflation", "Continuation")},
    # complex mode systems (Kerr cavity arrays) and Hamiltonian Echo Backpropagation
    "KerrModes": ("glep.modes", "KerrModes"),
    "kerr_cavity_array": ("glep.modes", "kerr_cavity_array"),
    "kerr_lattice": ("glep.modes", "kerr_lattice"),
    "IntensityCost": ("glep.modes", "IntensityCost"),
    "AmplitudeCost": ("glep.modes", "AmplitudeCost"),
    "StrangKerr": ("glep.ivp.modes", "StrangKerr"),
    "ModeProblem": ("glep.estimators.heb", "ModeProblem"),
    "ModeGradient": ("glep.estimators.heb", "ModeGradient"),
    "heb": ("glep.estimators.heb", "heb"),
    "HEB": ("glep.estimators.heb", "HEB"),
    "mode_adjoint": ("glep.estimators.heb", "mode_adjoint"),
    "ModeAdjoint": ("glep.estimators.heb", "ModeAdjoint"),
    "heb_update": ("glep.estimators.heb", "heb_update"),
    "heb_train": ("glep.estimators.heb", "train"),
    # field systems on a spatial mesh, time stepping (load dolfinx and PETSc)
    "FieldSystem": ("glep.field_system", "FieldSystem"),
    "FieldCost": ("glep.field_system", "FieldCost"),
    "FieldGradient": ("glep.field_system", "FieldGradient"),
    "field_forward": ("glep.ivp.field_stepping", "forward"),
    "field_adjoint": ("glep.ivp.field_adjoint", "field_adjoint"),
    "field_pfvp": ("glep.estimators.field_estimators", "field_pfvp"),
    "field_echo": ("glep.estimators.field_estimators", "field_echo"),
    "field_civp": ("glep.estimators.field_estimators", "field_civp"),
    "FieldProblem": ("glep.estimators.field_objects", "FieldProblem"),
    "AbstractFieldEstimator": ("glep.estimators.field_objects", "AbstractFieldEstimator"),
    "FieldPFVP": ("glep.estimators.field_objects", "FieldPFVP"),
    "FieldEcho": ("glep.estimators.field_objects", "FieldEcho"),
    "FieldRHEL": ("glep.estimators.field_objects", "FieldRHEL"),
    "FieldCIVPResidual": ("glep.estimators.field_objects", "FieldCIVPResidual"),
    "FieldHEB": ("glep.estimators.field_objects", "FieldHEB"),
    "FieldAdjoint": ("glep.estimators.field_objects", "FieldAdjoint"),
    "KerrHEB": ("glep.estimators.field_objects", "KerrHEB"),
    "compare_field_estimators": ("glep.estimators.field_objects", "compare_field_estimators"),
    "MidpointFieldSystem": ("glep.field_midpoint", "MidpointFieldSystem"),
    "field_midpoint_forward": ("glep.ivp.field_stepping", "midpoint_forward"),
    "field_midpoint_adjoint": ("glep.ivp.field_midpoint_adjoint", "midpoint_adjoint"),
    "nls_echo": ("glep.estimators.field_nls", "nls_echo"),
    "plot_field_history": ("glep.field_plots", "plot_field_history"),
    # field equations on space-time meshes (glep.bvp.spacetime)
    "spacetime_mesh": ("glep.bvp.spacetime", "spacetime_mesh"),
    "SpaceTimeProblem": ("glep.bvp.spacetime", "SpaceTimeProblem"),
    "SpaceTimeCBVP": ("glep.bvp.spacetime", "SpaceTimeCBVP"),
    "SpaceTimeCIVP": ("glep.bvp.spacetime", "SpaceTimeCIVP"),
    "SpaceTimeCFVP": ("glep.bvp.spacetime", "SpaceTimeCFVP"),
    "SpaceTimePeriodic": ("glep.bvp.spacetime", "SpaceTimePeriodic"),
    "solve_spacetime": ("glep.bvp.spacetime", "solve"),
    "KrylovNewton": ("glep.bvp.spacetime_krylov", "KrylovNewton"),
    # training on built-in sequence tasks (glep train)
    "make_task": ("glep.tasks", "make_task"),
    "SequenceTask": ("glep.tasks", "SequenceTask"),
    "make_boundary_task": ("glep.tasks", "make_boundary_task"),
    "BoundaryTask": ("glep.tasks", "BoundaryTask"),
    "make_mode_task": ("glep.tasks", "make_mode_task"),
    "ModeTask": ("glep.tasks", "ModeTask"),
    "load_train_file": ("glep.estimators.train_report", "load_train_file"),
    "TrainConfig": ("glep.train_config", "TrainConfig"),
    "training_config": ("glep.train_config", "train_config"),
    "run_training": ("glep.estimators.train", "run_training"),
    # trajectory files
    "save_trajectory": ("glep.io", "save_trajectory"),
    "load_trajectory": ("glep.io", "load_trajectory"),
}

#: Subpackages and modules reachable as attributes (``glep.models``, ``glep.bvp``...), imported on first use.
_SUBMODULES = frozenset({
    "models", "ivp", "bvp", "estimators", "meshes", "io", "ufl_term", "parallel", "config", "cli", "modes",
})

__all__ = [
    # problems, estimators, nudging, comparison
    "Problem", "GradientEstimate", "echo", "pfvp", "civp", "rhel", "cbvp", "adjoint",
    "AbstractEstimator", "CIVPContrast", "PFVPContrast", "Echo", "RHEL", "CBVPContrast", "DiscreteAdjoint", "FEAdjoint",
    "PeriodicContrast", "PeriodicFEAdjoint",
    "finite_differences", "taylor_test", "compare", "Report", "format_table", "agreement",
    "free_energy", "FreeEnergyGradient", "integrated_residual", "IntegratedResidual", "finite_beta_rows",
    "Nudge", "Centred", "OneSided", "ComplexStep",
    # solvers
    "integrate", "StormerVerlet", "shoot", "solve_bvp", "find_solutions", "FESolve",
    "Newton", "TrustRegion", "ResidualDescent", "GradientFlow", "Deflation", "Continuation",
    # field equations on space-time meshes
    "spacetime_mesh", "SpaceTimeProblem", "SpaceTimeCBVP", "SpaceTimeCIVP", "SpaceTimeCFVP", "SpaceTimePeriodic",
    "solve_spacetime", "KrylovNewton",
    # systems and terms
    "LagrangianSystem", "Term", "KineticTerm", "PotentialTerm", "FixedPotentialTerm", "UFLTerm",
    "DiagonalMass", "Gyroscopic",
    "Harmonic", "InputDrive", "LogCoshLayer", "Pendulum", "QuadraticForm", "Quartic", "SpringCoupling",
    "Signal", "TerminalCost", "TrackingCost", "models",
    # boundary conditions, grids, trajectories
    "CBVP", "CFVP", "CIVP", "PFVP", "DirichletNatural", "Periodic", "Robin",
    "TimeGrid", "Trajectory", "SolverReport", "save_trajectory", "load_trajectory",
    # complex mode systems and HEB
    "KerrModes", "kerr_cavity_array", "kerr_lattice", "IntensityCost", "AmplitudeCost", "StrangKerr",
    "ModeProblem", "ModeGradient", "heb", "HEB", "mode_adjoint", "ModeAdjoint", "heb_update", "heb_train",
    # field systems (time stepping)
    "FieldSystem", "FieldCost", "FieldGradient", "field_forward", "field_adjoint", "field_pfvp", "field_echo",
    "field_civp", "FieldProblem", "AbstractFieldEstimator", "FieldPFVP", "FieldEcho", "FieldRHEL",
    "FieldCIVPResidual", "FieldHEB", "FieldAdjoint", "KerrHEB", "compare_field_estimators",
    "MidpointFieldSystem", "field_midpoint_forward", "field_midpoint_adjoint", "nls_echo",
    "plot_field_history",
    # training (glep train)
    "make_task", "SequenceTask", "make_boundary_task", "BoundaryTask", "make_mode_task", "ModeTask",
    "TrainConfig", "training_config", "run_training", "load_train_file",
    # errors
    "GlepError", "InputError", "NotReversibleError", "SaddleError", "SingularHessianError", "SolverError",
]


def __getattr__(name: str) -> _Any:
    """Import a public name (or a submodule) on first access (PEP 562) and cache it in the module."""
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(_importlib.import_module(module), attribute)
    elif name in _SUBMODULES:
        value = _importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, the lazily imported ones included."""
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)
