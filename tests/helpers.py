"""Shared builders for the tests."""

from __future__ import annotations

import glep  # noqa: F401
from glep.estimators.problem import Problem
from glep.models import FAMILIES

REVERSIBLE = ["coupled_oscillators", "hru_linear", "hru_logcosh", "pendulum_chain"]


def problem(family: str, steps: int = 200, **kw) -> Problem:
    return Problem.from_model(FAMILIES[family](**kw), steps=steps)
