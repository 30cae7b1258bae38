"""Gradient estimators (GLEP variants, echo, RHEL), ground truths, metrics and reports."""

from glep.estimators.compare import ESTIMATORS, Report, compare_estimators, format_table
from glep.estimators.contrast import civp_contrast, contrast_integrand, echo, pfvp, retrace_error
from glep.estimators.ground_truth import adjoint, finite_differences, taylor_test
from glep.estimators.metrics import compare, cosine, fit_slope
from glep.estimators.nudging import Centred, ComplexStep, Nudge, OneSided, nudge_from_name
from glep.estimators.problem import Problem
from glep.estimators.result import GradientEstimate
from glep.estimators.rhel import rhel

__all__ = [
    "ESTIMATORS", "Report", "compare_estimators", "format_table",
    "civp_contrast", "contrast_integrand", "echo", "pfvp", "retrace_error",
    "adjoint", "finite_differences", "taylor_test", "compare", "cosine", "fit_slope",
    "Centred", "ComplexStep", "Nudge", "OneSided", "nudge_from_name", "Problem", "GradientEstimate", "rhel",
]
