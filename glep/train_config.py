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

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from glep.config import Count, Finite, Positive, Seed, Size, _no_string_list, load_toml, validate_tables
from glep.estimators.registry import NUDGES
from glep.ivp.integrators import INTEGRATORS
from glep.tasks import KINDS, TASKS

#: the reference run's name (always trained)
REFERENCE = "adjoint"


#: the rows of ``glep sweep`` that differentiate the task's own loss, ``C_h`` of the free CIVP
TRAINABLE = ("civp-contrast", "civp-residual", "pfvp", "echo", "rhel")
#: rows that differentiate the loss of another boundary problem through the free trajectory's ends
OTHER_LOSS = {"cfvp-contrast": "the CFVP", "cfvp-residual": "the CFVP", "cbvp": "the finite-element CBVP"}
#: the estimators of each kind of task (:data:`glep.tasks.KINDS`), the first ones its default
ESTIMATORS = {"civp": TRAINABLE, "cbvp": ("cbvp",), "modes": ("heb", "heb-averaged")}
DEFAULT_NAMES = {"civp": ["echo", "rhel"], "cbvp": ["cbvp"], "modes": ["heb"]}
#: what each kind of task is (for the messages)
KIND_TEXT = {"civp": "a CIVP from rest, time-stepped", "cbvp": "a CBVP solved by finite elements",
             "modes": "a Kerr cavity array, Strang-stepped complex modes"}
#: the keys of each task and their defaults (a key of another task is refused, naming it)
_CIVP = {"n": 4, "T": 6.0, "steps": 120, "train_size": 32, "validation_size": 16, "gamma": 0.0, "anharmonic": 0.1,
         "integrator": None, "backend": "numpy", "seed": 0}
TASK_DEFAULTS = {
    "drive-trajectory": _CIVP,
    "sinusoid-classes": {**_CIVP, "classes": 3},
    "boundary-trajectory": {"n": 3, "T": 1.0, "steps": 40, "train_size": 8, "validation_size": 4, "anharmonic": 0.1,
                            "assembler": "vectorised", "seed": 0},
    "kerr-xor": {"n": 3, "T": 20.0, "steps": 200, "train_size": 4, "validation_size": 4, "amplitude": 0.7,
                 "noise": 0.0, "seed": 0},
}


def trainable_estimators(task: str | None = None) -> tuple[str, ...]:
    """The estimator names ``glep train`` accepts (for ``task``: those whose gradient is ``dC_h/dθ`` of its loss)."""
    if task is None:
        return tuple(x for names in ESTIMATORS.values() for x in names)
    return ESTIMATORS[KINDS[task]]


Nudge = Literal[tuple(NUDGES)]
Integrator = Literal[tuple(sorted(INTEGRATORS))]
Unit = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False), BeforeValidator(lambda v: _number(v))]
NonNegative = Annotated[float, Field(allow_inf_nan=False), BeforeValidator(lambda v: _number(v)),
                        AfterValidator(lambda v: _non_negative(v))]


def _non_negative(value: float) -> float:
    if value < 0:
        raise ValueError(f"expected a finite number >= 0, got {value!r}")
    return value


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _tasks_text(names: list[str]) -> str:
    return f"the task {names[0]!r}" if len(names) == 1 else "the tasks " + ", ".join(map(repr, names))


class TaskSpec(_Strict):
    """The built-in task (:func:`glep.tasks.build_task`); keys left out take the task's defaults
    (:data:`TASK_DEFAULTS`), a key of another task is refused."""

    name: Literal[TASKS] = "drive-trajectory"
    n: Size | None = None
    T: Positive | None = None
    steps: Count | None = None
    train_size: Count | None = None
    validation_size: Count | None = None
    classes: Size | None = None
    gamma: Finite | None = None
    anharmonic: Finite | None = None
    integrator: Integrator | None = None
    backend: Literal["numpy", "jax"] | None = None
    assembler: Literal["vectorised", "fe"] | None = None
    amplitude: Positive | None = None
    noise: NonNegative | None = None
    seed: Seed | None = None

    @model_validator(mode="after")
    def _defaults(self):
        for key, value in TASK_DEFAULTS[self.name].items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)
        return self

    def check_keys(self) -> None:
        """Refuse (``ValueError`` naming the key) a key set for a task it does not apply to, and too few
        oscillators for the classes of ``sinusoid-classes``."""
        defaults = TASK_DEFAULTS[self.name]
        for key in sorted(self.model_fields_set - {"name"} - set(defaults)):
            if getattr(self, key) is not None:
                owners = [t for t, d in TASK_DEFAULTS.items() if key in d]
                raise ValueError(f"config key 'task.{key}': applies to {_tasks_text(owners)} only, not to "
                                 f"{self.name!r}")
        if self.name == "sinusoid-classes" and self.n < self.classes + 1:
            k = self.classes
            raise ValueError(f"config key 'task.n': the task 'sinusoid-classes' reads its {k} classes on the "
                             f"last {k} oscillators and drives the first: expected n >= {k + 1}, got {self.n}")

    @property
    def kind(self) -> str:
        """``"civp"``, ``"cbvp"`` or ``"modes"`` (:data:`glep.tasks.KINDS`)."""
        return KINDS[self.name]

    def task_kwargs(self) -> dict:
        """The keywords of :func:`glep.tasks.build_task` (with ``name``)."""
        return {"name": self.name, **{k: getattr(self, k) for k in TASK_DEFAULTS[self.name]}}


class EstimatorSpec(_Strict):
    """The estimator runs (each from the same θ₀ on the same minibatches as the adjoint run); ``names``
    left out: the task's default (``["echo", "rhel"]``, ``["cbvp"]``, ``["heb"]``)."""

    names: Annotated[list[str] | None, BeforeValidator(_no_string_list)] = None
    nudge: Nudge = "centred"
    beta: Positive = 1e-4
    objective: bool = False
    mass: Positive | None = None

    @field_validator("names")
    @classmethod
    def _known(cls, names):
        if names is None:
            return None
        known = trainable_estimators()
        other = [x for x in names if x in OTHER_LOSS and x not in known]
        if other:
            raise ValueError(f"{other[0]!r} differentiates the loss of {OTHER_LOSS[other[0]]} through the free "
                             "trajectory's end data, not the task's C_h (the CIVP from rest): its run would descend "
                             f"another function; train with one of {', '.join(map(repr, TRAINABLE))}")
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
    """Iterations, minibatches (``batch_size`` default ``min(8, task.train_size)``), evaluation and
    checkpoint intervals, the minibatch order's seed; ``alignment``: also the reference gradient at each
    run's own θ on each minibatch, and the cosine and relative error of the run's gradient to it."""

    iterations: Count = 40
    batch_size: Count | None = None
    eval_every: Count = 5
    checkpoint_every: Count = 10
    seed: Seed = 0
    alignment: bool = False


class RunSpec(_Strict):
    """Where the run writes (not part of what it computes: may change between ``--resume`` runs)."""

    output: Annotated[str, Field(min_length=1)] = "train-output"


class TrainConfig(_Strict):
    """A validated training run (see the module docstring)."""

    name: Annotated[str, Field(min_length=1)] = "training"
    task: TaskSpec = Field(default_factory=TaskSpec)
    estimators: EstimatorSpec = Field(default_factory=EstimatorSpec)
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    run: RunSpec = Field(default_factory=RunSpec)

    @model_validator(mode="after")
    def _batch(self):
        self.task.check_keys()
        if self.training.batch_size is None:
            training = self.training.model_copy(update={"batch_size": min(8, self.task.train_size)})
            object.__setattr__(self, "training", training)
        if self.training.batch_size > self.task.train_size:
            raise ValueError(f"config key 'training.batch_size': expected at most task.train_size = "
                             f"{self.task.train_size}, got {self.training.batch_size}")
        return self

    @model_validator(mode="after")
    def _estimators_of_the_task(self):
        kind, est = self.task.kind, self.estimators
        if est.names is None:
            est = est.model_copy(update={"names": list(DEFAULT_NAMES[kind])})
            object.__setattr__(self, "estimators", est)
        allowed = ESTIMATORS[kind]
        for x in est.names:
            if x in allowed:
                continue
            if kind == "civp" and x in OTHER_LOSS:
                raise ValueError(f"config key 'estimators.names': {x!r} differentiates the loss of {OTHER_LOSS[x]} "
                                 "through the free trajectory's end data, not the task's C_h (the CIVP from rest): "
                                 "its run would descend another function; train with one of "
                                 f"{', '.join(map(repr, allowed))}")
            raise ValueError(f"config key 'estimators.names': {x!r} does not apply to the task {self.task.name!r} "
                             f"({KIND_TEXT[kind]}); train it with {' or '.join(map(repr, allowed))}")
        if kind != "civp" and est.nudge not in ("centred", "one-sided"):
            raise ValueError(f"config key 'estimators.nudge': {est.names[0]!r} nudges with a real β (η) only: "
                             f"expected 'centred' or 'one-sided', got {est.nudge!r}")
        if kind != "civp" and est.objective:
            raise ValueError("config key 'estimators.objective': J_β is computed for the time-stepping tasks only, "
                             f"not for {self.task.name!r}; set objective = false or leave it out")
        if est.mass is not None and "heb-averaged" not in est.names:
            raise ValueError("config key 'estimators.mass': the learning mass m applies to 'heb-averaged' only "
                             f"(not named in estimators.names = {est.names})")
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


def read_training(path: Path) -> dict[str, Any]:
    """The TOML file of a training run, as a dict (:class:`InputError` naming the file if unreadable)."""
    return load_toml(path, name="configuration file", kind="a TOML configuration file")


def train_config(data: Mapping[str, Any] | Path, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Validate a training configuration (a TOML path or its dict); ``overrides`` sets ``run`` keys.

    Raises :class:`InputError` with one line per problem, each naming its key.
    """
    return validate_tables(TrainConfig, data, overrides, read=read_training, tables=TABLES)


__all__ = ["REFERENCE", "TASK_DEFAULTS", "TrainConfig", "train_config", "trainable_estimators"]
