"""Gradient estimators (GLEP variants, echo, RHEL, CBVP), ground truths, metrics and reports.

Every estimator is a function (``pfvp(problem, nudge)``) and a strategy
object (``PFVPContrast()(problem, nudge)``, :mod:`glep.estimators.base`) declaring
its loss, exactness, cost and ground truth; :func:`compare_estimators` runs
a list of them.  Names of estimators and nudges exist only in
:mod:`glep.estimators.registry` (for the command line and TOML files).  The CBVP function is
``glep.estimators.cbvp.cbvp`` (not re-exported here, where ``cbvp`` is its module).
"""

from glep.estimators.base import AbstractEstimator, AbstractTruth, FunctionEstimator
from glep.estimators.cbvp import (
    CBVPContrast,
    FEAdjoint,
    PeriodicContrast,
    PeriodicFEAdjoint,
    cbvp_gradient,
    cbvp_truth,
    fe_adjoint_gradient,
)
from glep.estimators.compare import Report, compare_estimators, format_table
from glep.estimators.contrast import (
    CIVPContrast,
    Echo,
    PFVPContrast,
    civp_contrast,
    contrast_integrand,
    echo,
    pfvp,
    retrace_error,
)
from glep.estimators.ground_truth import DiscreteAdjoint, adjoint, finite_differences, taylor_test
from glep.estimators.metrics import compare, cosine, fit_slope
from glep.estimators.nudging import Centred, ComplexStep, Nudge, OneSided
from glep.estimators.problem import Problem
from glep.estimators.registry import ESTIMATORS, NUDGES, nudge_from_name
from glep.estimators.result import GradientEstimate
from glep.estimators.rhel import RHEL, rhel

__all__ = [
    "AbstractEstimator", "AbstractTruth", "FunctionEstimator",
    "CIVPContrast", "PFVPContrast", "Echo", "RHEL", "CBVPContrast", "PeriodicContrast", "DiscreteAdjoint", "FEAdjoint",
    "PeriodicFEAdjoint",
    "ESTIMATORS", "NUDGES", "nudge_from_name", "Report", "compare_estimators", "format_table",
    "civp_contrast", "contrast_integrand", "echo", "pfvp", "retrace_error", "rhel",
    "cbvp_truth", "cbvp_gradient", "fe_adjoint_gradient",
    "adjoint", "finite_differences", "taylor_test", "compare", "cosine", "fit_slope",
    "Centred", "ComplexStep", "Nudge", "OneSided", "Problem", "GradientEstimate",
]
