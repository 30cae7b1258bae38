"""Time-stepping backend: variational integrators, echo, sensitivities, adjoint, shooting."""

from glep.ivp.adjoint import AdjointResult, adjoint_gradient, discrete_loss
from glep.ivp.discrete import (
    GAUSS2,
    MIDPOINT,
    TRAPEZOID,
    AbstractDiscreteLagrangian,
    DiscreteLagrangian,
    Mirrored,
    QuadratureRule,
    StepMesh,
)
from glep.ivp.hamiltonian import leapfrog
from glep.ivp.integrators import Gauss2, ImplicitMidpoint, Integrator, StormerVerlet, Trapezoidal, integrator_for
from glep.ivp.sensitivity import final_sensitivities, parameter_directions, tangent_sweep
from glep.ivp.stepping import integrate

__all__ = [
    "AdjointResult", "adjoint_gradient", "discrete_loss",
    "GAUSS2", "MIDPOINT", "TRAPEZOID", "AbstractDiscreteLagrangian", "DiscreteLagrangian", "Mirrored",
    "QuadratureRule", "StepMesh",
    "leapfrog", "Gauss2", "ImplicitMidpoint", "Integrator", "StormerVerlet", "Trapezoidal", "integrator_for",
    "final_sensitivities", "parameter_directions", "tangent_sweep", "integrate",
]
