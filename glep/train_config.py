"""Configuration of ``glep train``: a training run, validated before any work starts.

A TOML file with five tables (``examples/train.toml`` lists every key)::

    name = "drive-trajectory"            # optional
    [task]                               # a built-in task (glep.tasks)
    name = "drive-trajectory"            # or "sinusoid-classes"
    n = 4
    T = 6.0
    steps = 120
    [estimators]                         # every run starts from the same θ₀ and sees the same minibatches
    names = ["echo", "rhel"]             # the discrete adjoint ("adjoint") is always trained too: the reference
    nudge = "centred"
    beta = 1e-4
    [optimizer]
    name = "adam"                        # "sgd", "momentum" or "adam"
    learning_rate = 0.02
    [training]
    iterations = 40
    batch_size = 8
    [run]
    output = "train-output"

Two layers of rules, both before any work: this module checks types, ranges and names with pydantic
(unknown keys are refused and named: ``config key 'training.iteratons': unknown key``; so are keys of
the other task, e.g. ``task.classes`` for the regression task); then
:func:`glep.estimators.train.check_training` builds the task and checks what needs the system (the
echo or RHEL on a non-reversible network, RHEL on a non-separable one, the finite-element CBVP on a
batch, a nudge an estimator does not take), naming the key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from glep.config import Count, Finite, Positive, Seed, Size, _no_string_list, format_validation, load_toml
from glep.errors import InputError
from glep.estimators.registry import NUDGES
from glep.ivp.integrators import INTEGRATORS
from glep.tasks import TASKS

#: the reference run's name (always trained)
REFERENCE = "adjoint"


#: the rows of ``glep sweep`` that differentiate the task's own loss, ``C_h`` of the free CIVP
TRAINABLE = ("civp-contrast", "civp-residual", "pfvp", "echo", "rhel")
#: rows that differentiate the loss of another boundary problem through the free trajectory's ends
OTHER_LOSS = {"cfvp-contrast": "the CFVP", "cfvp-residual": "the CFVP", "cbvp": "the finite-element CBVP"}


def trainable_estimators() -> tuple[str, ...]:
    """The estimator names ``glep train`` accepts: those whose gradient is ``dC_h/dθ`` of the task's CIVP."""
    return TRAINABLE


Nudge = Literal[tuple(NUDGES)]
Integrator = Literal[tuple(sorted(INTEGRATORS))]
Unit = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False), BeforeValidator(lambda v: _number(v))]


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskSpec(_Strict):
    """The built-in task (:func:`glep.tasks.make_task`)."""

    name: Literal[TASKS] = "drive-trajectory"
    n: Size = 4
    T: Positive = 6.0
    steps: Count = 120
    train_size: Count = 32
    validation_size: Count = 16
    classes: Size | None = None
    gamma: Finite = 0.0
    anharmonic: Finite = 0.1
    integrator: Integrator | None = None
    seed: Seed = 0

    @model_validator(mode="after")
    def _classes(self):
        if self.name == "sinusoid-classes":
            k = 3 if self.classes is None else self.classes
            if self.n < k + 1:
                raise ValueError(f"config key 'task.n': the task 'sinusoid-classes' reads its {k} classes on the "
                                 f"last {k} oscillators and drives the first: expected n >= {k + 1}, got {self.n}")
        elif self.classes is not None:
            raise ValueError("config key 'task.classes': applies to the task 'sinusoid-classes' only, "
                             f"not to {self.name!r}")
        return self

    def task_kwargs(self) -> dict:
        kw = self.model_dump(exclude={"classes"})
        if self.name == "sinusoid-classes":
            kw["classes"] = 3 if self.classes is None else self.classes
        return kw


class EstimatorSpec(_Strict):
    """The estimator runs (each from the same θ₀ on the same minibatches as the adjoint run)."""

    names: Annotated[list[str], BeforeValidator(_no_string_list)] = ["echo", "rhel"]
    nudge: Nudge = "centred"
    beta: Positive = 1e-4
    objective: bool = False

    @field_validator("names")
    @classmethod
    def _known(cls, names):
        known = trainable_estimators()
        other = [x for x in names if x in OTHER_LOSS]
        if other:
            raise ValueError(f"{other[0]!r} differentiates the loss of {OTHER_LOSS[other[0]]} through the free "
                             "trajectory's end data, not the task's C_h (the CIVP from rest): its run would descend "
                             f"another function; train with one of {', '.join(map(repr, known))}")
        bad = [x for x in names if x not in known and x != REFERENCE]
        if bad:
            raise ValueError(f"unknown estimator(s) {bad}; expected among {', '.join(map(repr, known))} "
                             f"(the '{REFERENCE}' run is always trained, as the reference)")
        repeated = sorted({x for x in names if names.count(x) > 1})
        if repeated:
            raise ValueError(f"each estimator may appear once, repeated: {repeated}")
        return [x for x in names if x != REFERENCE]


class OptimizerSpec(_Strict):
    """``sgd``: ``θ ← θ − η g``; ``momentum``: ``v ← μv + g, θ ← θ − η v``; ``adam`` (Kingma & Ba)."""

    name: Literal["sgd", "momentum", "adam"] = "adam"
    learning_rate: Positive = 0.02
    momentum: Unit = 0.9
    beta1: Unit = 0.9
    beta2: Unit = 0.999
    epsilon: Positive = 1e-8


class TrainingSpec(_Strict):
    """Iterations, minibatches, evaluation and checkpoint intervals, the minibatch order's seed."""

    iterations: Count = 40
    batch_size: Count = 8
    eval_every: Count = 5
    checkpoint_every: Count = 10
    seed: Seed = 0


class RunSpec(_Strict):
    """Where the run writes (not part of what it computes: may change between ``--resume`` runs)."""

    output: Annotated[str, Field(min_length=1)] = "train-output"


class TrainConfig(_Strict):
    """A validated training run (see the module docstring)."""

    name: Annotated[str, Field(min_length=1)] = "training"
    task: TaskSpec = TaskSpec()
    estimators: EstimatorSpec = EstimatorSpec()
    optimizer: OptimizerSpec = OptimizerSpec()
    training: TrainingSpec = TrainingSpec()
    run: RunSpec = RunSpec()

    @model_validator(mode="after")
    def _batch(self):
        if self.training.batch_size > self.task.train_size:
            raise ValueError(f"config key 'training.batch_size': expected at most task.train_size = "
                             f"{self.task.train_size}, got {self.training.batch_size}")
        return self

    def run_names(self) -> list[str]:
        """The runs, the reference first."""
        return [REFERENCE, *self.estimators.names]

    def training_dict(self) -> dict:
        """What the results depend on (``run`` left out): stored in the checkpoint and compared on resume."""
        return json.loads(self.model_dump_json(exclude={"run"}))


#: keys of each table (for the messages)
TABLES = {"": tuple(TrainConfig.model_fields), "task": tuple(TaskSpec.model_fields),
          "estimators": tuple(EstimatorSpec.model_fields), "optimizer": tuple(OptimizerSpec.model_fields),
          "training": tuple(TrainingSpec.model_fields), "run": tuple(RunSpec.model_fields)}


def _format(exc: ValidationError, where: str) -> str:
    return format_validation(exc, where, TABLES)


def read_training(path: Path) -> dict[str, Any]:
    """The TOML file of a training run, as a dict (:class:`InputError` naming the file if unreadable)."""
    return load_toml(path, name="configuration file", kind="a TOML configuration file")


def train_config(data: Mapping[str, Any] | Path, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Validate a training configuration (a TOML path or its dict); ``overrides`` sets ``run`` keys.

    Raises :class:`InputError` with one line per problem, each naming its key.
    """
    where = ""
    if isinstance(data, Path):
        where, data = f"{data}: ", read_training(data)
    values = dict(data)
    run = {k: v for k, v in (overrides or {}).items() if v is not None}
    if run:
        table = values.get("run", {})
        values["run"] = {**table, **run} if isinstance(table, dict) else table
    try:
        return TrainConfig(**values)
    except ValidationError as exc:
        raise InputError(_format(exc, where)) from None


__all__ = ["REFERENCE", "TrainConfig", "train_config", "trainable_estimators"]
