"""Configuration of ``glep sweep``: a declarative study, validated before any work starts.

A study is a TOML file with three parts (``examples/sweep.toml`` lists every key)::

    name = "oscillators"                     # optional
    [[systems]]                              # one table per system; each grid key takes a value or a list
    family = "coupled_oscillators"           # a built-in family, or factory = "package.module:function"
    n = [4, 8]
    steps = [100, 200]
    seeds = [0, 1, 2]
    [estimators]
    names = ["civp-residual", "pfvp", "echo"]
    nudges = ["one-sided", "centred"]
    betas = [1e-1, 1e-2, 1e-3, 1e-4]
    [run]
    output = "sweep-output/study.h5"

The work items are the Cartesian product, per system, of ``n × T × steps × batch × seeds``
(the *system points*) with the estimator rows; every nudge and β of a row is computed in its item.

Two layers of rules, both before any work: this module checks types, ranges and names with pydantic
(unknown keys are refused and named, e.g. ``config key 'systems[0].stepz': unknown key``); then
:func:`glep.estimators.sweep.check_study` checks the combinations that need the system itself (an
estimator that does not apply to a system's kind, the echo or RHEL on a non-reversible system, RHEL on
a non-separable one, a finite-element row on a batched system, ``backend = "jax"`` where the compiled
Störmer–Verlet loop cannot run), naming the key and the system.

``backend`` (an ODE system's key, default ``"numpy"``) chooses where its Störmer–Verlet loops run, like
``glep compare --backend``: ``"jax"`` runs them jit-compiled (the optional extra ``glep[jax]``); it is
refused for field systems, implicit integrators and systems the compiled path cannot run.

A user system is named as ``package.module:function``: the module is imported and the attribute
looked up (``importlib``), never evaluated; the function is called with the grid values as keywords
(``n``, ``seed``, ``T`` and ``batch`` when given) plus ``options``, and returns a
:class:`glep.models.Model` (an ODE system) or a :class:`glep.estimators.sweep.FieldModel` with its own
``build`` (a field system).

The field systems of :mod:`glep.field_families` (``sine-gordon``, ``klein-gordon``, ``wave``, ``nls``,
``kerr``) are families too: ``n`` is their number of cells (the side of the Kerr array), ``steps`` their
time steps; their rows (``field-pfvp``, ``field-echo``, ``field-rhel``, ``field-civp-residual``, ``heb``;
on ``nls`` only ``field-echo`` and ``heb``) and the refusals of rows of the other kind are registered in
:mod:`glep.estimators.sweep`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from glep.config import (
    Count,
    Finite,
    Positive,
    Seed,
    Size,
    _no_string_list,
    load_toml,
    validate_tables,
)
from glep.estimators.registry import NUDGES
from glep.ivp.integrators import INTEGRATORS

#: ``package.module:function`` (dotted identifiers, one colon)
FACTORY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def _grid(value: Any) -> Any:
    """A grid key takes one value or a list of values (a single value is a one-point grid)."""
    return value if isinstance(value, list) else [value]


def _grid_of(kind):
    return Annotated[list[kind], Field(min_length=1), BeforeValidator(_grid)]


def _distinct(values: list) -> list:
    repeated = sorted({str(x) for x in values if values.count(x) > 1})
    if repeated:
        raise ValueError(f"each value may appear once, repeated: {repeated}")
    return values


def _estimator_names() -> tuple[str, ...]:
    from glep.estimators.sweep import estimator_names

    return estimator_names()


def _family_names() -> tuple[str, ...]:
    from glep.estimators.sweep import family_names

    return family_names()


Nudge = Literal[tuple(NUDGES)]
Integrator = Literal[tuple(sorted(INTEGRATORS))]
Option = str | bool | int | float | list[str | bool | int | float]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SystemSpec(_Strict):
    """One system of the study and its grid (every grid key: a value or a list of values)."""

    family: str | None = None
    factory: str | None = None
    label: str | None = None
    n: _grid_of(Size) = [4]
    T: _grid_of(Positive) | None = None
    steps: _grid_of(Count) = [200]
    batch: _grid_of(Count) | None = None
    seeds: _grid_of(Seed) = [0]
    integrator: Integrator | None = None
    backend: Literal["numpy", "jax"] = "numpy"
    options: dict[str, Option] = {}
    estimators: Annotated[list[str], Field(min_length=1), BeforeValidator(_no_string_list)] | None = None

    @field_validator("n", "T", "steps", "batch", "seeds", "estimators")
    @classmethod
    def _once(cls, values):
        return values if values is None else _distinct(values)

    @field_validator("family")
    @classmethod
    def _known_family(cls, name):
        known = _family_names()
        if name is not None and name not in known:
            raise ValueError(f"expected one of {', '.join(map(repr, known))}, got {name!r}")
        return name

    @field_validator("factory")
    @classmethod
    def _factory_syntax(cls, name):
        if name is not None and not FACTORY.match(name):
            raise ValueError(f"expected 'package.module:function' (a module path, a colon, a function name), "
                             f"got {name!r}")
        return name

    @field_validator("estimators")
    @classmethod
    def _known_estimators(cls, names):
        return names if names is None else _check_estimators(names)

    @model_validator(mode="after")
    def _one_source(self):
        if (self.family is None) == (self.factory is None):
            raise ValueError("give exactly one of 'family' (a built-in family) or 'factory' "
                             "('package.module:function')")
        return self


def _check_estimators(names: list[str]) -> list[str]:
    known = _estimator_names()
    bad = [x for x in names if x not in known]
    if bad:
        raise ValueError(f"unknown estimator(s) {bad}; expected among {', '.join(map(repr, known))}")
    return _distinct(names)


class EstimatorSpec(_Strict):
    """The estimator rows and how each is nudged: every nudge at every β, metrics at ``report_beta``."""

    names: Annotated[list[str], Field(min_length=1), BeforeValidator(_no_string_list)]
    nudges: Annotated[list[Nudge], Field(min_length=1), BeforeValidator(_no_string_list)] = ["centred"]
    betas: Annotated[list[Positive], Field(min_length=1), BeforeValidator(_no_string_list)] = \
        [1e-1, 1e-2, 1e-3, 1e-4, 1e-5]
    report_beta: Positive = 1e-4
    report_nudge: Nudge = "centred"
    store_gradients: bool = True

    @field_validator("names")
    @classmethod
    def _known(cls, names):
        return _check_estimators(names)

    @field_validator("nudges", "betas")
    @classmethod
    def _once(cls, values):
        return _distinct(values)


class RunSpec(_Strict):
    """How the study runs (not part of what it computes: may change between ``--resume`` runs)."""

    output: Annotated[str, Field(min_length=1)] = "sweep-output/study.h5"
    group_size: Count = 1
    commit_interval: Finite = 10.0

    @field_validator("commit_interval")
    @classmethod
    def _non_negative(cls, seconds):
        if seconds < 0:
            raise ValueError(f"expected a finite number of seconds >= 0, got {seconds!r}")
        return seconds


class SweepConfig(_Strict):
    """A validated study (see the module docstring)."""

    name: Annotated[str, Field(min_length=1)] = "study"
    systems: Annotated[list[SystemSpec], Field(min_length=1)]
    estimators: EstimatorSpec
    run: RunSpec = RunSpec()

    def study_dict(self) -> dict:
        """What the results depend on (``run`` left out), as stored in the file and compared on resume.

        A system's ``backend`` is left out when it is ``"numpy"`` (the default; the key is newer than the
        format): a study started before it existed resumes, and its numbers are the NumPy loops'.
        """
        study = json.loads(self.model_dump_json(exclude={"run"}))
        for system in study["systems"]:
            if system.get("backend") == "numpy":
                del system["backend"]
        return study


#: keys of each table (for the messages)
TABLES = {"": tuple(SweepConfig.model_fields), "systems": tuple(SystemSpec.model_fields),
          "estimators": tuple(EstimatorSpec.model_fields), "run": tuple(RunSpec.model_fields)}


def read_study(path: Path) -> dict[str, Any]:
    """The TOML file of a study, as a dict (:class:`InputError` naming the file if unreadable)."""
    return load_toml(path, name="study file", kind="a study TOML file")


def sweep_config(data: Mapping[str, Any] | Path, overrides: Mapping[str, Any] | None = None) -> SweepConfig:
    """Validate a study (a TOML path or its dict); ``overrides`` sets ``run`` keys (the command line).

    Raises :class:`InputError` with one line per problem, each naming its key
    (``config key 'systems[0].n[1]': expected an integer >= 2, got 1``).
    """
    return validate_tables(SweepConfig, data, overrides, read=read_study, tables=TABLES)
