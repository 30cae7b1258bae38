r"""Sweeps: a declarative study expanded into work items, run serially or over MPI ranks.

A *work item* is one estimator row on one *system point* (a system of the study at one value of each
grid key: ``n``, ``T``, ``steps``, ``batch``, ``seed``).  It computes, like one row of
``glep compare``, the estimate at every nudge and β, its relative error to the row's own ground truth
(the discrete adjoint of the loss it differentiates), the fitted bias slope, the metrics at the
report's β, the cost in passes and the wall time.  Items are deterministic given their parameters
(the models draw their parameters from ``seed``), so a study gives the same numbers however its items
are distributed, and they are stored by item id, never by completion order.

The registry: system kinds and the estimators that apply to them
----------------------------------------------------------------
:data:`KINDS` maps a system *kind* (``"ode"``, ``"field"``, ``"modes"``) to a
:class:`Kind`: how a system point becomes a problem, and the estimator rows (:class:`Rule`) that apply
to it, each with its requirements (:data:`REQUIREMENTS`: ``"reversible"``, ``"separable"``,
``"leapfrog"``, ``"unbatched"``, ``"terminal-cost"``, ``"driven"``, ``"leapfrog-field"``) checked on the
built system before any work starts.

The finite-element rows of ODE systems: ``cbvp`` (the CBVP through the free CIVP trajectory's ends) and
``periodic`` (the trajectory with ``q(0) = q(T)``, ``p(0) = p(T)``, Newton from the zero trajectory), both
residual-free: the GLEP contrast of ``∫∂_θL`` between nudged whole-trajectory solves against the FE
discrete adjoint of the same problem (:mod:`glep.estimators.cbvp`).  The periodic row needs a driven
system (``"driven"``: an autonomous one has time-shift families of periodic orbits, a singular action
Hessian), and a singular Hessian found at run time (a resonance) fails its item with that reason.

:data:`FAMILIES` maps a built-in family name to its constructor and :data:`MODEL_KINDS` the type of
the model a constructor (or a user's ``package.module:function``) returns to its kind.  A field family
plugs in by adding entries, nothing else::

    KINDS["field"] = Kind("field", _field_problem, FIELD_RULES, compare=_field_compare, on_comm=True)
    MODEL_KINDS.append((FieldModel, "field"))
    FAMILIES["wave"] = _field_family("wave")

and a distributed row (one that solves on a mesh shared by a group of ranks) is a :class:`Rule` with
``distributed=True``: its ``make`` receives the group's communicator (and a kind with ``on_comm=True``
builds its problems on it).

Field systems (:mod:`glep.field_families`) are registered this way: ``sine-gordon``, ``klein-gordon``
and ``wave`` are of kind ``"field"`` (grid keys: ``n`` the cells of the 1-D mesh, ``T``, ``steps`` the
leapfrog steps, ``seeds`` the draw of the parameter field; no ``batch``, no ``integrator``), with the
rows ``field-civp-residual``, ``field-pfvp``, ``field-echo``, ``field-rhel`` and ``heb`` (terminal cost
only), each compared like ``glep compare --system`` with the discrete adjoint of the field leapfrog;
``nls`` (the focusing NLS, a complex field stepped by the implicit midpoint rule) is a field system too,
with the rows ``field-echo`` (the conjugation echo) and ``heb``, each against the discrete adjoint of the
midpoint rule; the leapfrog rows are refused on it (requirement ``"leapfrog-field"``).  A user factory
returns a :class:`FieldModel` with its own ``build`` to make its system a field system.
``kerr`` (``n`` the side of the cavity array) is of kind ``"modes"`` with the row ``heb`` against the
adjoint of the Strang map.  An ODE row on a field system, or a field row on an ODE system, is refused
by :func:`check_study` naming the key.

Distribution over MPI ranks
---------------------------
The ranks are split (``Comm.Split``) into groups of ``run.group_size`` ranks; each group runs one item
at a time on its own communicator (a finite-element row distributes its mesh over the group).  Items
are handed out dynamically, largest estimated cost first: a counter in an MPI window on rank 0 is
incremented with ``Fetch_and_op`` by each group's leader when it needs work (passive target, so rank 0
need not answer while it computes).  Results go to rank 0, the only writer
(:class:`glep.estimators.study.StudyStore`), which also computes items of its own and receives the
others' results between them.  An unexpected error on any rank pushes the counter past the end, so
every group stops after its current item, and is then raised on every rank
(:func:`glep.parallel.settle`) — no rank is left waiting.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import platform
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from glep.errors import GlepError, InputError
from glep.estimators.base import AbstractEstimator
from glep.estimators.cbvp import CBVPContrast, FEAdjoint, PeriodicContrast, PeriodicFEAdjoint
from glep.estimators.contrast import CIVPContrast, Echo, PFVPContrast
from glep.estimators.field_objects import FieldCIVPResidual, FieldEcho, FieldHEB, FieldPFVP, FieldRHEL, KerrHEB
from glep.estimators.ground_truth import DiscreteAdjoint
from glep.estimators.output import _terminate_as_exit
from glep.estimators.problem import Problem
from glep.estimators.rhel import RHEL
from glep.field_families import FIELD_FAMILIES
from glep.models import FAMILIES as MODEL_FAMILIES
from glep.models import Model

# -- system points and work items -------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One system of the study at one value of each grid key."""

    system: int
    label: str
    source: str  # a family name or "package.module:function"
    n: int
    T: float | None
    steps: int
    batch: int | None
    seed: int
    integrator: str | None
    options: tuple = ()  # sorted (key, value) pairs
    backend: str = "numpy"  # where an ODE system's Störmer–Verlet loops run: "numpy" or "jax"

    def params(self) -> dict:
        return {"system": self.system, "label": self.label, "source": self.source, "n": self.n, "T": self.T,
                "steps": self.steps, "batch": self.batch, "seed": self.seed, "integrator": self.integrator,
                "backend": self.backend, "options": dict(self.options)}


@dataclass(frozen=True)
class WorkItem:
    """One estimator row on one system point; ``index`` is its place in the study's expansion."""

    index: int
    point: Point
    estimator: str

    @property
    def id(self) -> str:
        return f"{self.index:06d}-{self.estimator}"

    def params(self) -> dict:
        return {**self.point.params(), "estimator": self.estimator}

    def cost(self) -> float:
        """A rough relative cost (only its order matters: the largest items are handed out first)."""
        p = self.point
        return p.steps * p.n * (p.batch or 1) * _rule(self.estimator).relative_cost(p.n)


def expand(config) -> list[WorkItem]:
    """The work items of a validated :class:`glep.sweep_config.SweepConfig`, in a fixed order."""
    items = []
    for i, s in enumerate(config.systems):
        names = s.estimators or config.estimators.names
        label = s.label or s.family or s.factory
        grid = itertools.product(s.n, s.T or [None], s.steps, s.batch or [None], s.seeds)
        for n, T, steps, batch, seed in grid:
            point = Point(i, label, s.family or s.factory, n, T, steps, batch, seed, s.integrator,
                          tuple(sorted(s.options.items(), key=lambda kv: kv[0])), s.backend)
            for name in names:
                items.append(WorkItem(len(items), point, name))
    return items


# -- the registry ----------------------------------------------------------------------------------


def _reversible(problem: Problem, point: Point) -> str | None:
    defect = problem.reversibility_defect
    return None if defect <= 1e-12 else f"the system is not time-reversible (defect {defect:.1e})"


def _separable(problem: Problem, point: Point) -> str | None:
    sys_ = problem.system
    return None if sys_.is_separable else f"the system is not separable ({sys_.non_separable_reason})"


def _leapfrog(problem: Problem, point: Point) -> str | None:
    name = problem.integrator.name
    return None if name in ("stormer-verlet", "trapezoid") else \
        f"it differentiates the Störmer–Verlet loss, not the {name!r} integrator's"


def _unbatched(problem: Problem, point: Point) -> str | None:
    if (point.batch or 1) == 1:
        return None
    return f"the finite-element backend solves one trajectory at a time (batch {point.batch})"


def _terminal_cost(problem, point: Point) -> str | None:
    """HEB injects the error of a terminal cost at ``T``: a running cost, or none at all, is refused."""
    s = problem.system
    if s.has_cost:
        return "HEB takes a terminal cost only, and this field has a running cost"
    if not s.has_terminal_cost:
        return "HEB needs a terminal cost (an error to inject at T), and this field has none"
    return None


def _driven(problem: Problem, point: Point) -> str | None:
    """A periodic trajectory is isolated only if the dynamics read the time (an input signal, or ``t``)."""
    from glep.estimators.cbvp import autonomous

    return autonomous(problem.system)


def _field_leapfrog(problem, point: Point) -> str | None:
    """The field rows other than the echo and HEB run the leapfrog's passes (not the implicit midpoint rule's)."""
    if not getattr(problem, "midpoint", False):
        return None
    return ("the field is stepped by the implicit midpoint rule (a glep.MidpointFieldSystem, e.g. NLS), whose "
            "backward pass is the conjugation echo: its rows are 'field-echo' and 'heb' (a terminal cost only)")


#: requirement name -> check on a built problem (a reason it fails, or None)
REQUIREMENTS: dict[str, Callable[[Any, Point], str | None]] = {
    "reversible": _reversible, "separable": _separable, "leapfrog": _leapfrog, "unbatched": _unbatched,
    "terminal-cost": _terminal_cost, "driven": _driven, "leapfrog-field": _field_leapfrog}


def _cfvp_of(problem: Problem) -> Problem:
    """The CFVP through the free CIVP's final state (``q(T)``, ``p(T)`` fixed): the same trajectory."""
    from glep.boundary import CFVP

    free = problem.free
    bc = CFVP(free.Q[-1], pT=free.P[-1])
    return Problem(problem.system, problem.params, bc, problem.grid, problem.integrator, dict(problem.meta))


@dataclass(frozen=True)
class Rule:
    """An estimator row of a sweep.

    Attributes: ``make(comm)`` the estimator object (``comm``: the item's group communicator, used by
    distributed rows); ``requires`` names in :data:`REQUIREMENTS`; ``prepare`` turns the system point's
    problem into the one this row differentiates (e.g. the CFVP); ``distributed`` whether the row
    solves on the group's communicator; ``cost`` its relative cost per ``steps · n``, a function of
    ``n`` (for the load balancing).
    """

    make: Callable[[Any], AbstractEstimator]
    requires: tuple[str, ...] = ()
    prepare: Callable[[Problem], Problem] | None = None
    distributed: bool = False
    cost: Callable[[int], float] = field(default=lambda n: 3.0)

    def relative_cost(self, n: int) -> float:
        return self.cost(n)


def _ode_compare(problem: Problem, estimators: list, **kw):
    """:func:`glep.estimators.compare.compare_estimators` (imported when an item runs)."""
    from glep.estimators.compare import compare_estimators

    return compare_estimators(problem, estimators=estimators, **kw)


@dataclass(frozen=True)
class Kind:
    """A kind of system: how a model and a grid point become a problem, and the rows that apply.

    Attributes: ``build(model, point)`` the problem — ``build(model, point, comm)`` if ``on_comm``
    (``comm``: the item's group communicator, or None for a problem built only to be checked: a mesh
    of this kind is then built on that communicator); ``rules`` the rows; ``compare(problem, [estimator],
    betas=, nudges=, report_nudge=, report_beta=)`` the :class:`~glep.estimators.compare.Report` of a row
    against its ground truth.
    """

    name: str
    build: Callable[..., Any]
    rules: dict[str, Rule]
    compare: Callable[..., Any] = _ode_compare
    on_comm: bool = False

    def problem(self, model, point: Point, comm=None):
        """The problem of ``model`` at ``point`` (on ``comm`` for a kind built on the group's communicator)."""
        return self.build(model, point, comm) if self.on_comm else self.build(model, point)


class SystemKeyError(InputError):
    """An :class:`InputError` caused by one key of a system (``key``), named ``systems[i].key`` by the checks."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def _ode_integrator(model: Model, point: Point):
    """The integrator of an ODE point: its name, or with ``backend = "jax"`` the compiled Störmer–Verlet.

    Raises :class:`SystemKeyError` (key ``backend``) where the compiled loop cannot run: JAX missing, an
    implicit integrator, a system the compiled path cannot execute (non-separable, terms without an array
    namespace, a term reading ``t`` as a scalar).
    """
    if point.backend == "numpy":
        return point.integrator
    import dataclasses

    from glep.ivp import compiled
    from glep.ivp.integrators import INTEGRATORS

    if not compiled.available():
        raise SystemKeyError("backend", f"backend {point.backend!r} needs the optional extra JAX (pip install "
                             "'glep[jax]'), which is not installed; use backend 'numpy'")
    if point.integrator not in (None, "stormer-verlet", "trapezoid"):
        raise SystemKeyError("backend", f"backend {point.backend!r} compiles the explicit Störmer–Verlet loop; the "
                             f"integrator {point.integrator!r} is implicit (use 'stormer-verlet' or backend 'numpy')")
    reason = compiled.unsupported_reason(model.system)
    if reason is not None:
        raise SystemKeyError("backend", f"backend {point.backend!r} cannot run this system: {reason}; use backend "
                             "'numpy'")
    return dataclasses.replace(INTEGRATORS[point.integrator or "stormer-verlet"](), backend=point.backend)


def _ode_problem(model: Model, point: Point) -> Problem:
    return Problem.from_model(model, steps=point.steps, integrator=_ode_integrator(model, point))


@dataclass(frozen=True)
class _FEOn:
    """An FE row (or truth) solving on the item's communicator (not ``COMM_WORLD``): its mesh is the group's."""

    comm: Any = field(default=None, compare=False, hash=False)

    def mesh(self, T: float, N: int):
        from glep.bvp._mesh import uniform

        return uniform(self.comm, T, N) if self.comm is not None else (T, N)


@dataclass(frozen=True)
class _GroupFEAdjoint(_FEOn, FEAdjoint):
    pass


@dataclass(frozen=True)
class _GroupPeriodicFEAdjoint(_FEOn, PeriodicFEAdjoint):
    pass


@dataclass(frozen=True)
class _GroupCBVP(_FEOn, CBVPContrast):
    truth_type: ClassVar[type] = _GroupFEAdjoint

    @property
    def truth(self) -> FEAdjoint:
        return self.truth_type(comm=self.comm, assembler=self.assembler, degree=self.degree,
                               quadrature=self.quadrature)


@dataclass(frozen=True)
class _GroupPeriodic(_GroupCBVP, PeriodicContrast):
    truth_type: ClassVar[type] = _GroupPeriodicFEAdjoint


#: the rows of ordinary-differential-equation systems (the time-stepping backend; CBVP: finite elements)
ODE_RULES: dict[str, Rule] = {
    "civp-contrast": Rule(lambda comm: CIVPContrast()),
    "civp-residual": Rule(lambda comm: CIVPContrast(residual=True), cost=lambda n: 3.0 + 4 * n),
    "pfvp": Rule(lambda comm: PFVPContrast()),
    "echo": Rule(lambda comm: Echo(), requires=("reversible",)),
    "rhel": Rule(lambda comm: RHEL(), requires=("reversible", "separable", "leapfrog")),
    "cfvp-contrast": Rule(lambda comm: CIVPContrast(), prepare=_cfvp_of),
    "cfvp-residual": Rule(lambda comm: CIVPContrast(residual=True), prepare=_cfvp_of, cost=lambda n: 3.0 + 4 * n),
    "cbvp": Rule(lambda comm: _GroupCBVP(comm=comm), requires=("unbatched",), distributed=True, cost=lambda n: 300.0),
    "periodic": Rule(lambda comm: _GroupPeriodic(comm=comm), requires=("unbatched", "driven"), distributed=True,
                     cost=lambda n: 300.0),
}


# -- field systems (glep.field_families) -----------------------------------------------------------------


@dataclass(frozen=True)
class FieldModel:
    """A field system at one grid point: ``n`` cells, horizon ``T`` (None: the builder's default), parameter seed.

    ``family`` names a built-in family of :mod:`glep.field_families` — or, with ``build``, a user's field
    system: ``build(n=, steps=, seed=, comm=, [T=])`` returns its
    :class:`~glep.estimators.field_objects.FieldProblem` with the mesh on ``comm`` (the signature of the
    built-in builders, e.g. :func:`glep.field_families.wave_problem`; ``T`` is passed only when the study
    gives it).  A user factory ``package.module:function`` returns one to make its system a field system.
    """

    family: str
    n: int
    T: float | None
    seed: int
    build: Callable[..., Any] | None = field(default=None, compare=False)

    #: the type the problem must have, and its import (the modes kind: the Kerr array's ModeProblem)
    problem_type: ClassVar[tuple[str, str]] = ("glep.estimators.field_objects", "FieldProblem")

    def problem(self, steps: int, comm):
        """The system's problem with ``steps`` time steps, its mesh on ``comm``."""
        if self.build is None:
            from glep.field_families import build_field_problem

            return build_field_problem(self.family, self.n, self.T, steps, self.seed, comm=comm)
        kw = {"n": self.n, "steps": steps, "seed": self.seed, "comm": comm}
        if self.T is not None:
            kw["T"] = self.T
        problem = self.build(**kw)
        module, name = self.problem_type
        if not isinstance(problem, getattr(importlib.import_module(module), name)):
            args = ", ".join(f"{k}={v!r}" for k, v in kw.items() if k != "comm")
            raise InputError(f"the field system {self.family!r}: build({args}, comm=...) returned a "
                             f"{type(problem).__module__}.{type(problem).__qualname__}; expected a {module}.{name}")
        return problem


@dataclass(frozen=True)
class ModeModel(FieldModel):
    """The Kerr cavity array (``n × n`` complex modes; no mesh)."""

    problem_type: ClassVar[tuple[str, str]] = ("glep.estimators.heb", "ModeProblem")


def _field_family(name: str) -> Callable[..., FieldModel]:
    """The sweep constructor of field family ``name`` (keywords ``n``, ``seed``, ``T``; no batch, no options)."""
    cls = ModeModel if name == "kerr" else FieldModel

    def make(n: int, seed: int, T: float | None = None, batch: int | None = None) -> FieldModel:
        if batch is not None:
            raise InputError(f"the field system {name!r} runs one trajectory per item: remove 'batch' "
                             f"(got {batch})")
        return cls(name, n, T, seed)

    return make


def _field_problem(model: FieldModel, point: Point, comm=None):
    """The field problem of a point, its mesh on the group's communicator (``COMM_SELF`` for the checks)."""
    if point.integrator is not None:
        raise InputError(f"'integrator': the field system {model.family!r} steps with its own leapfrog "
                         f"(Störmer–Verlet), got {point.integrator!r}")
    if point.backend != "numpy":
        raise SystemKeyError("backend", f"backend {point.backend!r} does not apply to the field system "
                             f"{model.family!r} (the compiled path is the ODE Störmer–Verlet loop)")
    if comm is None:
        from mpi4py import MPI

        comm = MPI.COMM_SELF
    return model.problem(point.steps, comm)


def _field_compare(problem, estimators: list, **kw):
    """:func:`glep.estimators.field_objects.compare_field_estimators` (a row against its discrete adjoint)."""
    from glep.estimators.field_objects import compare_field_estimators

    return compare_field_estimators(problem, estimators, **kw)


#: the rows of field systems (the leapfrog on a finite-element mesh; truth: the discrete field adjoint)
FIELD_RULES: dict[str, Rule] = {
    "field-civp-residual": Rule(lambda comm: FieldCIVPResidual(), requires=("leapfrog-field",), distributed=True,
                                cost=lambda n: 3.0 + 2 * n),
    "field-pfvp": Rule(lambda comm: FieldPFVP(), requires=("leapfrog-field",), distributed=True),
    "field-echo": Rule(lambda comm: FieldEcho(), distributed=True),
    "field-rhel": Rule(lambda comm: FieldRHEL(), requires=("leapfrog-field",), distributed=True),
    "heb": Rule(lambda comm: FieldHEB(), requires=("terminal-cost",), distributed=True),
}
#: the row of the Kerr cavity array (truth: the adjoint of the Strang map)
MODE_RULES: dict[str, Rule] = {"heb": Rule(lambda comm: KerrHEB(), cost=lambda n: 3.0 * n)}

#: kind name -> :class:`Kind`
KINDS: dict[str, Kind] = {"ode": Kind("ode", _ode_problem, ODE_RULES),
                          "field": Kind("field", _field_problem, FIELD_RULES, _field_compare, on_comm=True),
                          "modes": Kind("modes", _field_problem, MODE_RULES, _field_compare, on_comm=True)}
#: (model type, kind name): the kind of what a family or a user factory returns (first match)
MODEL_KINDS: list[tuple[type, str]] = [(Model, "ode"), (ModeModel, "modes"), (FieldModel, "field")]
#: built-in family name -> constructor (keywords ``n``, ``seed``, ``T``, ``batch`` and the options)
FAMILIES: dict[str, Callable[..., Any]] = {**MODEL_FAMILIES, **{name: _field_family(name) for name in FIELD_FAMILIES}}


def estimator_names() -> tuple[str, ...]:
    """Every row name of every kind (the names a study may list)."""
    return tuple(dict.fromkeys(name for kind in KINDS.values() for name in kind.rules))


def family_names() -> tuple[str, ...]:
    return tuple(sorted(FAMILIES))


def _rule(name: str) -> Rule:
    for kind in KINDS.values():
        if name in kind.rules:
            return kind.rules[name]
    raise InputError(f"unknown estimator {name!r}; expected among {list(estimator_names())}")


def kind_of(model) -> Kind:
    """The :class:`Kind` of a model (from :data:`MODEL_KINDS`)."""
    for cls, name in MODEL_KINDS:
        if isinstance(model, cls):
            return KINDS[name]
    known = ", ".join(f"{cls.__module__}.{cls.__qualname__}" for cls, _ in MODEL_KINDS)
    raise InputError(f"returned a {type(model).__module__}.{type(model).__qualname__}; expected one of: {known}")


def load_factory(spec: str) -> Callable[..., Any]:
    """``package.module:function`` -> the function (imported with importlib; nothing is evaluated)."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"cannot import module {module_name!r} ({type(exc).__name__}: {exc})") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise InputError(f"module {module_name!r} has no function {attr!r}")
    return fn


def build_model(point: Point):
    """The model of a system point: the family (or factory) called with the grid values and options."""
    fn = FAMILIES[point.source] if point.source in FAMILIES else load_factory(point.source)
    kw = {"n": point.n, "seed": point.seed, **dict(point.options)}
    if point.T is not None:
        kw["T"] = point.T
    if point.batch is not None:
        kw["batch"] = point.batch
    try:
        return fn(**kw)
    except TypeError as exc:  # an option the constructor does not take
        raise InputError(f"{point.source}(**{kw}) failed: {exc}") from exc


def build(point: Point, estimator: str, comm=None):
    """``(kind, rule, problem)`` of one work item (the problem the row differentiates; ``comm``: the group's)."""
    model = build_model(point)
    kind = kind_of(model)
    if estimator not in kind.rules:
        raise InputError(f"estimator {estimator!r} does not apply to {kind.name} systems; "
                         f"applicable: {list(kind.rules)}")
    rule = kind.rules[estimator]
    problem = kind.problem(model, point, comm)
    return kind, rule, problem


# -- checks before any work -------------------------------------------------------------------------


def check_study(config) -> list[WorkItem]:
    """Every combination the pydantic model cannot see, checked on the built systems; returns the items.

    Each system point (at its smallest ``steps``) is built once and every row of that system is
    checked against the system's kind and the row's requirements.  Raises :class:`InputError`
    naming the key (``estimators.names`` or ``systems[i].estimators``), the system and the reason.
    """
    from glep.estimators.registry import nudge_from_name

    items = expand(config)
    report_nudge = nudge_from_name(config.estimators.report_nudge, 1.0)
    problems: list[str] = []
    built: dict[tuple, tuple | str] = {}  # point (steps aside) -> (kind, problem), or what went wrong
    for item in items:
        p = item.point
        s = config.systems[p.system]
        sig = (p.system, p.n, p.T, p.batch, p.seed)
        if sig not in built:
            built[sig] = _build_for_check(p, s)
        if isinstance(built[sig], str):
            problems.append(built[sig])
            continue
        kind, problem = built[sig]
        key = f"systems[{p.system}].estimators" if s.estimators else "estimators.names"
        where = f"systems[{p.system}] ({p.label}, n={p.n}, seed={p.seed})"
        if item.estimator not in kind.rules:
            problems.append(f"config key {key!r}: {item.estimator!r} does not apply to {where}, a {kind.name} "
                            f"system; applicable: {list(kind.rules)}")
            continue
        rule = kind.rules[item.estimator]
        for req in rule.requires:
            why = REQUIREMENTS[req](problem, p)
            if why:
                problems.append(f"config key {key!r}: {item.estimator!r} cannot run on {where}: {why}")
        if not rule.make(None).accepts(report_nudge):
            problems.append(f"config key 'estimators.report_nudge': {item.estimator!r} cannot use the "
                            f"{config.estimators.report_nudge!r} nudge")
    if problems:
        raise InputError("\n".join(dict.fromkeys(problems)))
    return items


def _build_for_check(p: Point, s) -> tuple | str:
    """``(kind, problem)`` of a system point at its smallest ``steps``, or the message naming the bad key."""
    try:
        model = build_model(p)
        kind = kind_of(model)
    except (GlepError, ValueError) as exc:
        src = "factory" if s.factory else "options" if isinstance(exc.__cause__, TypeError) else "family"
        return f"config key 'systems[{p.system}].{src}': {exc}"
    try:
        return kind, kind.problem(model, Point(**{**p.__dict__, "steps": min(s.steps)}))
    except GlepError as exc:
        key = f".{exc.key}" if isinstance(exc, SystemKeyError) else ""
        return f"config key 'systems[{p.system}]{key}': {exc}"


# -- one work item -----------------------------------------------------------------------------------


def run_item(item: WorkItem, spec, comm=None) -> dict:
    """Compute one work item: the row of ``glep compare`` for one estimator on one system point.

    ``spec`` is the study's :class:`glep.sweep_config.EstimatorSpec`; ``comm`` the group's
    communicator (distributed rows solve on it).  An estimator that fails gives ``status "failed"``
    and its reason (not an exception); an error in building the problem is raised.
    """
    t0 = time.perf_counter()
    kind, rule, problem = build(item.point, item.estimator, comm)
    if rule.prepare is not None:
        problem = rule.prepare(problem)
    est = rule.make(comm)
    report = kind.compare(problem, [est], betas=spec.betas, nudges=spec.nudges,
                          report_nudge=spec.report_nudge, report_beta=spec.report_beta)
    row = report.rows[0]
    out = {"id": item.id, "index": item.index, "params": item.params(), "status": row.status,
           "reason": row.reason, "detail": row.detail, "label": row.label, "loss": row.loss or est.loss,
           "exact": bool(row.exact), "passes": row.passes, "wall_time": row.wall_time,
           "forward_time": report.forward_time, "parameter_count": _parameter_count(problem),
           "metrics": row.metrics, "slopes": row.slopes, "notes": row.notes, "point_failures": row.point_failures,
           "betas": np.asarray(report.betas, dtype=float), "errors": dict(row.errors), "gradient": {}, "truth": {}}
    if spec.store_gradients and not row.failed:
        out["gradient"] = dict(report.estimates[row.name].theta)
        if kind.name != "ode" or est.truth == DiscreteAdjoint():  # a field report's truth is its row's
            out["truth"] = dict(report.truth.theta)
    out["item_time"] = time.perf_counter() - t0
    return out


def _parameter_count(problem) -> int:
    """Trainable numbers of a problem (the Kerr array: its learning field)."""
    count = getattr(problem, "parameter_count", None)
    return int(count) if count is not None else int(np.size(problem.learning_field))


# -- the run ---------------------------------------------------------------------------------------------


def run_meta(comm, group_size: int) -> dict:
    """Versions, machine and MPI layout of this run.

    Collective: it initialises PETSc and SLEPc on every rank.  Both initialise and finalise collectively
    on ``COMM_WORLD``, so they must not first load inside an item that runs on one group only (a
    finite-element row's Morse index loads SLEPc): the job would hang at exit.
    """
    import dolfinx_solver  # noqa: F401  isort: skip
    import dolfinx
    import h5py
    import mpi4py
    import petsc4py
    import scipy
    import slepc4py
    from slepc4py import SLEPc  # noqa: F401  (initialised here, on every rank)

    import glep

    return {"version_glep": glep.__version__, "version_numpy": np.__version__, "version_scipy": scipy.__version__,
            "version_h5py": h5py.__version__, "version_petsc4py": petsc4py.__version__,
            "version_slepc4py": slepc4py.__version__,
            "version_dolfinx": dolfinx.__version__, "version_mpi4py": mpi4py.__version__,
            "version_python": platform.python_version(), "machine_platform": platform.platform(),
            "machine_hostname": socket.gethostname(), "mpi_size": int(comm.size), "mpi_group_size": int(group_size)}


@dataclass
class SweepOutcome:
    """What a run did: items in the study, finished before this run, run now, and the failed rows.

    Times in seconds: ``wall_time`` all of it; ``loop_time`` running, recording and merging the items
    (the checks and start-up excluded); ``write_time`` the part of it rank 0 spent recording and merging;
    ``loop_cpu`` the processor time of that loop on each rank (what the speed-up would be on idle cores).
    """

    path: str
    total: int
    before: int
    now: int
    failed: list[tuple[str, str]]
    wall_time: float
    write_time: float = 0.0
    loop_time: float = 0.0
    loop_cpu: list[float] = field(default_factory=list)

    def summary(self) -> str | None:
        """``"2 of 40 items failed: ..."``, or None."""
        if not self.failed:
            return None
        shown = ", ".join(f"{i} ({r})" for i, r in self.failed[:5])
        more = f", and {len(self.failed) - 5} more" if len(self.failed) > 5 else ""
        return f"{len(self.failed)} of {self.total} items failed: {shown}{more}"


class _Writer:
    """Rank 0's side: record results, commit every ``interval`` seconds, show progress."""

    def __init__(self, store, interval: float, bar, say):
        self.store, self.interval, self.bar, self.say = store, interval, bar, say
        self.last = time.perf_counter()
        self.failed: list[tuple[str, str]] = []
        self.count = 0
        self.write_time = 0.0

    def __call__(self, result: Mapping) -> None:
        t = time.perf_counter()
        self.store.record(result)
        if t - self.last >= self.interval:
            self.store.commit()
            self.last = time.perf_counter()
        self.write_time += time.perf_counter() - t
        self.count += 1
        if result["status"] != "ok":
            self.failed.append((result["id"], result["reason"]))
            self.say(f"{result['id']}: FAILED ({result['reason']})")
        if self.bar is not None:
            self.bar.update(1)


@contextlib.contextmanager
def _signals_blocked():
    """Hold SIGTERM and SIGINT while the journal is merged at the end (a second signal waits for it)."""
    sigs = {signal.SIGTERM, signal.SIGINT}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    except (AttributeError, ValueError):
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _progress_bar(total: int, initial: int, show: bool, desc: str):
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="item", file=sys.stderr, dynamic_ncols=True)


def run_sweep(config, *, resume: bool = False, comm=None, progress: bool = False,
              say: Callable[[str], None] | None = None,
              checkpoint: Callable[[str], None] | None = None) -> SweepOutcome:
    """Run a validated study (:class:`glep.sweep_config.SweepConfig`) into its study file.

    Every rank of ``comm`` (default ``COMM_WORLD``) calls it.  Checks (:func:`check_study`), the MPI
    layout and the study file are agreed before any work starts; ``resume`` continues a study file
    without redoing its finished items (refused if the configuration changed).  ``progress``: a
    progress bar with the time remaining on rank 0 (tqdm, on stderr); ``say``: messages;
    ``checkpoint`` (tests): called with a stage name at each step a kill must survive.
    Returns a :class:`SweepOutcome` (on every rank; ``failed`` lists failed rows).
    """
    from mpi4py import MPI

    from glep.estimators.study import StudyStore
    from glep.parallel import agree, settle

    comm = MPI.COMM_WORLD if comm is None else comm
    root = comm.rank == 0
    say = say or (lambda msg: None)
    step = checkpoint or (lambda stage: None)
    t0 = time.perf_counter()
    g = config.run.group_size

    def check():
        if comm.size % g:
            raise InputError(f"config key 'run.group_size': {g} does not divide the {comm.size} MPI ranks")
        return check_study(config) if root else None

    # PETSc and SLEPc first, on every rank: the checks build field meshes on rank 0 alone (on COMM_SELF),
    # and loading PETSc there first would wait for the other ranks (its initialisation is collective)
    meta = agree(lambda: run_meta(comm, g), comm, what="reading the library versions")
    items = agree(check, comm, what="checking the study")
    items = expand(config) if items is None else items
    store = agree(lambda: StudyStore.open(config.run.output, config.study_dict(), meta, len(items), resume=resume,
                                          checkpoint=step) if root else None, comm, what="opening the study file")
    finished = comm.bcast(store.finished if root else None, root=0)
    todo = sorted((it for it in items if it.id not in finished), key=lambda it: (-it.cost(), it.index))
    if root:
        say(f"{config.name}: {len(items)} items, {len(items) - len(todo)} finished before, {len(todo)} to run "
            f"on {comm.size} rank(s) in groups of {g}")
    bar = _progress_bar(len(items), len(items) - len(todo), progress and root, config.name)
    writer = _Writer(store, config.run.commit_interval, bar, say) if root else None
    error: BaseException | None = None
    t_loop, c_loop = time.perf_counter(), time.process_time()
    with _terminate_as_exit():  # SIGTERM exits through Python: the journal is merged, temporaries removed
        try:
            if comm.size == 1:
                _serial(todo, config.estimators, comm, writer, step)
            else:
                error = _parallel(todo, config.estimators, comm, g, writer, step)
        finally:
            if root:
                with _signals_blocked():
                    t = time.perf_counter()
                    try:
                        store.commit()
                    except GlepError as exc:
                        error = error or exc
                    writer.write_time += time.perf_counter() - t
                if bar is not None:
                    bar.close()
    loop_time = time.perf_counter() - t_loop
    loop_cpu = comm.allgather(time.process_time() - c_loop)
    settle(error, comm, what="the sweep")
    failed = comm.bcast(sorted(writer.failed) if root else None, root=0)
    done = comm.bcast(writer.count if root else 0, root=0)
    return SweepOutcome(str(config.run.output), len(items), len(items) - len(todo), done, failed,
                        time.perf_counter() - t0, writer.write_time if root else 0.0, loop_time,
                        loop_cpu)


def _serial(todo: list[WorkItem], spec, comm, writer: _Writer, step) -> None:
    for item in todo:
        step("item started")
        writer(run_item(item, spec, comm))


_TAG = 77
_ABORT = 1 << 40


def _parallel(todo: list[WorkItem], spec, comm, g: int, writer: _Writer | None, step) -> BaseException | None:
    """Dynamic distribution (see the module docstring); returns this rank's error, if any (not raised)."""
    from mpi4py import MPI

    group = comm.Split(comm.rank // g, comm.rank)
    leader = group.rank == 0
    leaders = comm.size // g
    win = MPI.Win.Allocate(8 if comm.rank == 0 else 0, 8, comm=comm)
    if comm.rank == 0:
        np.frombuffer(win.tomemory(), dtype="i8")[0] = 0
    comm.Barrier()
    win.Lock_all()

    def fetch(add: int = 1) -> int:
        one, got = np.array([add], dtype="i8"), np.zeros(1, dtype="i8")
        win.Fetch_and_op(one, got, 0, 0, MPI.SUM)
        win.Flush(0)
        return int(got[0])

    error: BaseException | None = None
    sends = []
    done_from = 0

    def receive(block: bool) -> None:
        nonlocal done_from, error
        while block or comm.iprobe(source=MPI.ANY_SOURCE, tag=_TAG):
            kind, payload = comm.recv(source=MPI.ANY_SOURCE, tag=_TAG)
            if kind == "done":
                done_from += 1
                if block and done_from == leaders - 1:
                    return
                continue
            deliver(payload)

    def deliver(result) -> None:
        """Rank 0: record a result; a failure to write stops every group after its item (settled later)."""
        nonlocal error
        if error is not None:
            return
        try:
            writer(result)
        except Exception as exc:  # noqa: BLE001 - raised on every rank by settle() in run_sweep
            error = exc
            fetch(_ABORT)

    try:
        while True:
            index = group.bcast(fetch() if leader else None, root=0)
            if index >= len(todo):
                break
            step("item started")
            result = run_item(todo[index], spec, group)
            result["rank"] = comm.rank
            if comm.rank == 0:
                deliver(result)
            elif leader:
                sends.append(comm.isend(("result", result), dest=0, tag=_TAG))
            if comm.rank == 0:
                receive(block=False)
    except Exception as exc:  # noqa: BLE001 - raised on every rank by settle() in run_sweep
        error = exc
        fetch(_ABORT)
    if leader and comm.rank != 0:
        sends.append(comm.isend(("done", None), dest=0, tag=_TAG))
    if comm.rank == 0 and leaders > 1 and done_from < leaders - 1:
        receive(block=True)
    MPI.Request.Waitall(sends)
    win.Unlock_all()
    win.Free()
    group.Free()
    return error


__all__ = ["FAMILIES", "FIELD_RULES", "KINDS", "MODEL_KINDS", "MODE_RULES", "REQUIREMENTS", "FieldModel", "Kind",
           "ModeModel", "Point", "Rule", "SweepOutcome", "SystemKeyError", "WorkItem", "build", "check_study",
           "estimator_names", "expand", "run_item", "run_sweep"]
