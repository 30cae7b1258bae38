r"""Built-in sequence tasks for ``glep train``: data sets of driven oscillator chains.

Both tasks share one network, a chain of ``n`` unit-mass oscillators with the Lagrangian

    L(q, v, t) = ½‖v‖² − ½ Σ_i k_i q_i² − ½ Σ_i J_i (q_i − q_{i+1})² − (α/4) Σ_i q_i⁴ + qᵀ B u(t)
                 (+ γ vᵀ G q, the magnetic term of :class:`glep.gyroscopic.Gyroscopic`, if ``gamma ≠ 0``),

trainable ``θ = (k, J, B)``, started at rest, driven by a one-channel input ``u``; a data set is a
stack of sequences and a minibatch is the batch axis of one batched :class:`glep.LagrangianSystem`
(its signals of shape ``(B, S, m)``).  The loss of a minibatch is ``C_h`` summed over its members.

* ``drive-trajectory`` (regression): ``u`` a random smooth drive (a few sinusoids of random
  amplitude, frequency and phase); the target ``y`` is the last oscillator's trajectory ``q_{n−1}(t)``
  of a *teacher* network with other parameters, integrated on the same grid with the same
  integrator; running cost ``c = ½ (q_{n−1} − y(t))²``.  The teacher's parameters reach ``C_h = 0``.
* ``sinusoid-classes`` (classification): ``u = a sin(ω_c t + φ)`` with class frequency
  ``ω_c = 1 + c/2`` (``c = 0 … K−1``), amplitude ``a ∈ [0.8, 1.2]`` and phase ``φ ∈ [−0.3, 0.3]``;
  the last ``K`` oscillators are the read-out, a terminal cost ``c_T = ½‖q_{read}(T) − 0.5 e_c‖²``
  (:class:`glep.costs.TerminalCost`, no running cost); the predicted class is the largest read-out.

Every array is a function of the seed only (``numpy.random.default_rng``): the same task on every
MPI rank and in every run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from glep.boundary import CIVP
from glep.costs import TerminalCost, TrackingCost
from glep.errors import InputError
from glep.estimators.problem import Problem
from glep.grid import TimeGrid
from glep.gyroscopic import Gyroscopic
from glep.kinetic import DiagonalMass
from glep.potentials import Harmonic, InputDrive, Quartic, SpringCoupling
from glep.signals import Signal
from glep.system import LagrangianSystem

#: the names of the built-in tasks
TASKS = ("drive-trajectory", "sinusoid-classes")
#: samples per drive signal (piecewise linear in between)
DRIVE_SAMPLES = 129
#: read-out amplitude of the right class (``sinusoid-classes``)
CLASS_TARGET = 0.5


@dataclass
class Split:
    """One data split: drives ``u`` of shape ``(S, samples, 1)`` and targets.

    ``targets``: ``(S, N+1, 1)`` target trajectories on the time grid (regression) or ``(S, K)`` final
    read-out values (classification); ``labels``: the classes ``(S,)`` (classification only).
    """

    drives: np.ndarray
    targets: np.ndarray
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.drives.shape[0])


@dataclass
class SequenceTask:
    """A built-in task: its network, initial parameters and train/validation splits.

    Attributes: ``name`` (one of :data:`TASKS`), ``n`` degrees of freedom, ``T`` horizon, ``steps``
    time steps ``N``, ``classes`` ``K`` (0 for regression), ``gamma`` magnetic strength, ``anharmonic``
    ``α``, ``integrator`` (a name or None: the default of the system), ``params`` the initial ``θ``
    (the student's), ``teacher`` the teacher's ``θ`` (regression), ``train`` and ``validation``.
    """

    name: str
    n: int
    T: float
    steps: int
    classes: int
    gamma: float
    anharmonic: float
    integrator: str | None
    params: dict[str, np.ndarray]
    train: Split
    validation: Split
    teacher: dict[str, np.ndarray] | None = None
    info: dict = field(default_factory=dict)

    @property
    def grid(self) -> TimeGrid:
        return TimeGrid(self.T, self.steps)

    def split(self, which: str) -> Split:
        return {"train": self.train, "validation": self.validation}[which]

    def system(self, which: str, indices) -> LagrangianSystem:
        """The batched system of the samples ``indices`` of split ``which`` (``"train"`` or ``"validation"``)."""
        idx = np.asarray(indices, dtype=int)
        data = self.split(which)
        u = Signal.from_samples(data.drives[idx], self.T, "u")
        if self.classes:
            read = list(range(self.n - self.classes, self.n))
            return _network(self.n, self.gamma, self.anharmonic, {"u": u}, None,
                            TerminalCost(self.n, read, data.targets[idx]), self.name)
        y = Signal.from_samples(data.targets[idx], self.T, "y")
        return _network(self.n, self.gamma, self.anharmonic, {"u": u, "y": y},
                        TrackingCost(self.n, [self.n - 1], "y"), None, self.name)

    def problem(self, params: dict, which: str, indices) -> Problem:
        """The :class:`~glep.estimators.problem.Problem` of a minibatch (the samples ``indices``) at ``params``."""
        system = self.system(which, indices)
        B = len(np.atleast_1d(indices))
        return Problem(system, params, CIVP(np.zeros((B, self.n)), p0=np.zeros((B, self.n))), self.grid,
                       self.integrator, {"task": self.name})

    def accuracy_count(self, problem: Problem, which: str, indices) -> int:
        """How many samples of a classification minibatch the read-out classifies right (argmax of ``q(T)``)."""
        read = problem.free_trajectory().q[-1][:, self.n - self.classes:]
        return int(np.sum(np.argmax(read, axis=-1) == self.split(which).labels[np.asarray(indices, dtype=int)]))


def _network(n: int, gamma: float, anharmonic: float, signals: dict, cost, terminal, name: str) -> LagrangianSystem:
    terms = [DiagonalMass(n, None), Harmonic(n, "k"), SpringCoupling(n, [(i, i + 1) for i in range(n - 1)], "J"),
             InputDrive(n, 1, "u", "B")]
    if anharmonic:
        terms.append(Quartic(n, anharmonic))
    if gamma:
        terms.append(Gyroscopic(n, gamma))
    return LagrangianSystem(n, terms, cost=cost, terminal_cost=terminal, signals=signals,
                            name=f"{name} network (n={n}{f', γ={gamma:g}' if gamma else ''})")


def _network_params(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    B = np.zeros((n, 1))
    B[0, 0] = 1.0
    return {"k": 1.0 + 0.5 * rng.random(n), "J": 0.5 + 0.5 * rng.random(n - 1),
            "B": B + 0.1 * rng.standard_normal((n, 1))}


def _smooth_drives(rng: np.random.Generator, count: int, T: float, modes: int = 3) -> np.ndarray:
    """``count`` drives ``Σ_j a_j sin(ω_j t + φ_j)``, ``a_j ~ N(0, 1/modes)``, ``ω_j ∈ [0.5, 2]``: ``(count, S, 1)``."""
    t = np.linspace(0.0, T, DRIVE_SAMPLES)
    a = rng.standard_normal((count, 1, modes)) / np.sqrt(modes)
    w = rng.uniform(0.5, 2.0, (count, 1, modes))
    phi = rng.uniform(0.0, 2 * np.pi, (count, 1, modes))
    return np.sum(a * np.sin(w * t[None, :, None] + phi), axis=-1)[..., None]


def _check(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def make_task(name: str = "drive-trajectory", *, n: int = 4, T: float = 6.0, steps: int = 120,
              train_size: int = 32, validation_size: int = 16, classes: int = 3, gamma: float = 0.0,
              anharmonic: float = 0.1, integrator: str | None = None, seed: int = 0) -> SequenceTask:
    """Build a built-in task (see the module docstring); deterministic given ``seed``.

    Arguments: ``name`` one of :data:`TASKS`; ``n`` oscillators (``>= 2``, ``>= classes + 1`` for
    classification); ``T``, ``steps`` the time grid; ``train_size``, ``validation_size`` the number of
    sequences of each split; ``classes`` ``K >= 2`` (classification); ``gamma`` the magnetic strength
    (``≠ 0``: a non-reversible network); ``anharmonic`` ``α``; ``integrator`` a name or None;
    ``seed`` of every random draw.
    Returns: the :class:`SequenceTask`.
    """
    if name not in TASKS:
        raise InputError(f"task must be one of {list(TASKS)}, got {name!r}")
    n = _check("n", n, 2)
    steps, train_size = _check("steps", steps, 1), _check("train_size", train_size, 1)
    validation_size, seed = _check("validation_size", validation_size, 1), _check("seed", seed, 0)
    if not (isinstance(T, (int, float)) and np.isfinite(T) and T > 0):
        raise InputError(f"T must be a finite number > 0, got {T!r}")
    rng = np.random.default_rng([seed, 7])
    student, teacher = _network_params(rng, n), _network_params(rng, n)
    total = train_size + validation_size
    common = dict(n=n, T=float(T), steps=steps, gamma=float(gamma), anharmonic=float(anharmonic),
                  integrator=integrator, params=student)
    if name == "sinusoid-classes":
        classes = _check("classes", classes, 2)
        if n < classes + 1:
            raise InputError(f"n must be >= classes + 1 = {classes + 1} (the last {classes} oscillators are the "
                             f"read-out, the first is driven), got n = {n}")
        labels = rng.integers(0, classes, total)
        t = np.linspace(0.0, T, DRIVE_SAMPLES)
        amp, phase = rng.uniform(0.8, 1.2, total), rng.uniform(-0.3, 0.3, total)
        drives = (amp[:, None] * np.sin((1.0 + 0.5 * labels)[:, None] * t[None] + phase[:, None]))[..., None]
        targets = CLASS_TARGET * np.eye(classes)[labels]
        splits = [Split(drives[s], targets[s], labels[s]) for s in (slice(0, train_size), slice(train_size, None))]
        return SequenceTask(name, classes=classes, train=splits[0], validation=splits[1], **common)
    drives = _smooth_drives(rng, total, T)
    task = SequenceTask(name, classes=0, train=Split(drives[:train_size], np.zeros((train_size, steps + 1, 1))),
                        validation=Split(drives[train_size:], np.zeros((validation_size, steps + 1, 1))),
                        teacher=teacher, **common)
    for which in ("train", "validation"):  # the teacher's last oscillator on the grid: the targets
        data = task.split(which)
        q = task.problem(teacher, which, np.arange(len(data))).free_trajectory().q
        data.targets[...] = np.moveaxis(q[:, :, n - 1:], 0, 1)
    return task


__all__ = ["TASKS", "SequenceTask", "Split", "make_task"]
