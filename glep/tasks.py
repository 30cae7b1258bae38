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

* ``boundary-trajectory`` (regression, a boundary-value problem): the same chain without ``γ``, each
  sample pinning both ends, ``q(0) = a`` and ``q(T) = b`` (``a, b ~ N(0, 0.5²)`` per oscillator), and
  driven by its own smooth ``u`` (``DRIVE_GAIN`` times a drive of ``drive-trajectory``).  The trajectory
  is the stationary point of the action under these ends
  (the CBVP), solved by Newton on the finite-element backend (P1 elements, Gauss–Lobatto quadrature:
  :mod:`glep.bvp`; ``steps`` elements); the target ``y`` is the last oscillator of the teacher's CBVP
  solution at the nodes and the loss the running tracking cost ``C_h = ∫ ½ (q_{n−1} − y)² dt`` with the
  action's quadrature (the teacher reaches ``C_h = 0``).  The horizon ``T`` is kept below the first
  conjugate time (``ω_max T < π``, default ``T = 1``) so that the CBVP's solution is unique and its Hessian
  regular.
* ``kerr-xor`` (classification on complex modes): the ``n × n`` Kerr cavity array of
  :func:`glep.modes.kerr_cavity_array` (``J = 10``, ``g = −2``, ``κ = 1``, ports at the corners, inputs
  on ports 0 and 1, the output intensity read on port 3 at ``T``), the XOR of two bits written as input
  amplitudes ``A·bits`` (plus ``N(0, noise²)``; sample ``i`` holds the pattern ``i mod 4``).  The
  parameters are the real quadrature ``x = Re Θ(0)`` of the learning field (its momentum ``Im Θ(0) = 0``);
  the loss is :class:`glep.modes.IntensityCost` towards ``0.3 A²·XOR`` and a sample is classified right
  when its output intensity lies on the correct side of ``0.15 A²``.

Every array is a function of the seed only (``numpy.random.default_rng``): the same task on every
MPI rank and in every run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from glep.boundary import CBVP, CIVP
from glep.costs import TerminalCost, TrackingCost
from glep.errors import GlepError, InputError, SolverError
from glep.estimators.problem import Problem
from glep.grid import TimeGrid
from glep.gyroscopic import Gyroscopic
from glep.kinetic import DiagonalMass
from glep.potentials import Harmonic, InputDrive, Quartic, SpringCoupling
from glep.signals import Signal
from glep.system import LagrangianSystem

#: the names of the built-in tasks
TASKS = ("drive-trajectory", "sinusoid-classes", "boundary-trajectory", "kerr-xor")
#: the machinery that trains each task: ``"civp"`` time stepping from rest, ``"cbvp"`` finite-element
#: boundary-value solves, ``"modes"`` the Strang map of a Kerr cavity array
KINDS = {"drive-trajectory": "civp", "sinusoid-classes": "civp", "boundary-trajectory": "cbvp", "kerr-xor": "modes"}
#: samples per drive signal (piecewise linear in between)
DRIVE_SAMPLES = 129
#: amplitude of the drives of ``boundary-trajectory`` (over its short horizon a unit drive barely moves the chain)
DRIVE_GAIN = 4.0
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
    backend: str = "numpy"
    kind = "civp"

    @property
    def stepper(self):
        """The integrator of every problem: its name (NumPy loops), or with ``backend = "jax"`` one
        Störmer–Verlet object whose loops JAX compiles (:mod:`glep.ivp.compiled`), shared by every problem."""
        if self.backend == "numpy":
            return self.integrator
        if getattr(self, "_stepper", None) is None:
            import dataclasses

            from glep.ivp.integrators import INTEGRATORS

            self._stepper = dataclasses.replace(INTEGRATORS[self.integrator or "stormer-verlet"](),
                                                backend=self.backend)
        return self._stepper

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
        terms, tracking = self._parts()
        if self.classes:
            read = list(range(self.n - self.classes, self.n))
            return _system(self.n, terms, self.gamma, {"u": u}, None,
                           TerminalCost(self.n, read, data.targets[idx]), self.name)
        y = Signal.from_samples(data.targets[idx], self.T, "y")
        return _system(self.n, terms, self.gamma, {"u": u, "y": y}, tracking, None, self.name)

    def _parts(self):
        """The network's terms and the tracking cost, made once: every minibatch's system shares these
        objects and differs only in its signals (and terminal targets), so a compiled backend, whose loops
        are cached per term and cost objects (:mod:`glep.ivp.compiled`), compiles them once per task."""
        if getattr(self, "_terms", None) is None:
            self._terms = (_terms(self.n, self.gamma, self.anharmonic),
                           None if self.classes else TrackingCost(self.n, [self.n - 1], "y"))
        return self._terms

    def problem(self, params: dict, which: str, indices) -> Problem:
        """The :class:`~glep.estimators.problem.Problem` of a minibatch (the samples ``indices``) at ``params``."""
        system = self.system(which, indices)
        B = len(np.atleast_1d(indices))
        return Problem(system, params, CIVP(np.zeros((B, self.n)), p0=np.zeros((B, self.n))), self.grid,
                       self.stepper, {"task": self.name})

    def accuracy_count(self, problem: Problem, which: str, indices) -> int:
        """How many samples of a classification minibatch the read-out classifies right (argmax of ``q(T)``)."""
        read = problem.free_trajectory().q[-1][:, self.n - self.classes:]
        return int(np.sum(np.argmax(read, axis=-1) == self.split(which).labels[np.asarray(indices, dtype=int)]))


def _terms(n: int, gamma: float, anharmonic: float) -> list:
    """The chain's terms: unit masses, springs ``k``, couplings ``J``, the drive ``B u`` (+ quartic, magnetic)."""
    terms = [DiagonalMass(n, None), Harmonic(n, "k"), SpringCoupling(n, [(i, i + 1) for i in range(n - 1)], "J"),
             InputDrive(n, 1, "u", "B")]
    if anharmonic:
        terms.append(Quartic(n, anharmonic))
    if gamma:
        terms.append(Gyroscopic(n, gamma))
    return terms


def _system(n: int, terms: list, gamma: float, signals: dict, cost, terminal, name: str) -> LagrangianSystem:
    return LagrangianSystem(n, terms, cost=cost, terminal_cost=terminal, signals=signals,
                            name=f"{name} network (n={n}{f', γ={gamma:g}' if gamma else ''})")


def _network(n: int, gamma: float, anharmonic: float, signals: dict, cost, terminal, name: str) -> LagrangianSystem:
    return _system(n, _terms(n, gamma, anharmonic), gamma, signals, cost, terminal, name)


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
              anharmonic: float = 0.1, integrator: str | None = None, backend: str = "numpy",
              seed: int = 0) -> SequenceTask:
    """Build a built-in task (see the module docstring); deterministic given ``seed``.

    Arguments: ``name`` one of :data:`TASKS`; ``n`` oscillators (``>= 2``, ``>= classes + 1`` for
    classification); ``T``, ``steps`` the time grid; ``train_size``, ``validation_size`` the number of
    sequences of each split; ``classes`` ``K >= 2`` (classification); ``gamma`` the magnetic strength
    (``≠ 0``: a non-reversible network); ``anharmonic`` ``α``; ``integrator`` a name or None;
    ``backend`` ``"numpy"`` or ``"jax"`` (the compiled Störmer–Verlet loops); ``seed`` of every random draw.
    Returns: the :class:`SequenceTask`.
    """
    if name not in ("drive-trajectory", "sinusoid-classes"):
        raise InputError(f"task must be 'drive-trajectory' or 'sinusoid-classes' (build_task: any of {list(TASKS)}), "
                         f"got {name!r}")
    n = _check("n", n, 2)
    steps, train_size = _check("steps", steps, 1), _check("train_size", train_size, 1)
    validation_size, seed = _check("validation_size", validation_size, 1), _check("seed", seed, 0)
    if not (isinstance(T, (int, float)) and np.isfinite(T) and T > 0):
        raise InputError(f"T must be a finite number > 0, got {T!r}")
    rng = np.random.default_rng([seed, 7])
    student, teacher = _network_params(rng, n), _network_params(rng, n)
    total = train_size + validation_size
    if backend not in ("numpy", "jax"):
        raise InputError(f"backend must be 'numpy' or 'jax', got {backend!r}")
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
        return SequenceTask(name, classes=classes, train=splits[0], validation=splits[1], backend=backend, **common)
    drives = _smooth_drives(rng, total, T)
    task = SequenceTask(name, classes=0, train=Split(drives[:train_size], np.zeros((train_size, steps + 1, 1))),
                        validation=Split(drives[train_size:], np.zeros((validation_size, steps + 1, 1))),
                        teacher=teacher, **common)
    for which in ("train", "validation"):  # the teacher's last oscillator on the grid (NumPy loops): the targets
        data = task.split(which)
        q = task.problem(teacher, which, np.arange(len(data))).free_trajectory().q
        data.targets[...] = np.moveaxis(q[:, :, n - 1:], 0, 1)
    task.backend = backend  # the data do not depend on the backend that trains
    return task


# -- boundary-trajectory: finite-element CBVPs ------------------------------------------------------------
@dataclass
class BoundaryTask:
    """``boundary-trajectory``: per sample the CBVP ``q(0) = a_i``, ``q(T) = b_i`` of the driven chain.

    Attributes as :class:`SequenceTask` (``steps``: finite elements ``N``; ``gamma = 0``, no integrator),
    plus ``ends`` per split (``{"train": (S, 2, n), "validation": ...}``: ``a_i``, ``b_i``) and the
    ``assembler`` of :func:`glep.bvp.make_discretisation` (``"vectorised"`` or ``"fe"``).
    """

    name: str
    n: int
    T: float
    steps: int
    anharmonic: float
    assembler: str
    params: dict[str, np.ndarray]
    train: Split
    validation: Split
    ends: dict[str, np.ndarray]
    teacher: dict[str, np.ndarray] | None = None
    classes = 0
    gamma = 0.0
    kind = "cbvp"

    def split(self, which: str) -> Split:
        return {"train": self.train, "validation": self.validation}[which]

    def system(self, which: str, i: int) -> LagrangianSystem:
        """The (unbatched) system of sample ``i`` of split ``which``: its drive and its target."""
        data = self.split(which)
        u = Signal.from_samples(data.drives[i], self.T, "u")
        y = Signal.from_samples(data.targets[i], self.T, "y")
        return _network(self.n, 0.0, self.anharmonic, {"u": u, "y": y}, TrackingCost(self.n, [self.n - 1], "y"),
                        None, self.name)

    def condition(self, which: str, i: int) -> CBVP:
        """The boundary condition ``q(0) = a_i``, ``q(T) = b_i``."""
        a, b = self.ends[which][i]
        return CBVP(a.copy(), b.copy())

    def mesh(self):
        """The time mesh ``[0, T]`` of ``steps`` P1 elements on ``COMM_SELF`` (every rank solves whole samples)."""
        if getattr(self, "_mesh", None) is None:
            from mpi4py import MPI

            from glep.bvp._mesh import uniform

            self._mesh = uniform(MPI.COMM_SELF, self.T, self.steps)
        return self._mesh

    def straight(self, which: str, i: int) -> np.ndarray:
        """The straight line between the pinned ends at the ``N + 1`` nodes: ``(N + 1, n)`` (a first guess)."""
        a, b = self.ends[which][i]
        s = np.linspace(0.0, 1.0, self.steps + 1)[:, None]
        return (1 - s) * a + s * b

    def solve(self, params: dict, which: str, i: int, guess: np.ndarray | None = None):
        """The solved free CBVP of sample ``i`` (a :class:`glep.estimators.cbvp.FreeFE`), Newton from ``guess``
        (nodal values ``(N + 1, n)``; default the straight line)."""
        from glep.estimators.cbvp import solve_free

        guess = self.straight(which, i) if guess is None else guess
        return solve_free(self.system(which, i), params, self.mesh(), self.condition(which, i),
                          assembler=self.assembler, guess=guess)


def make_boundary_task(*, n: int = 3, T: float = 1.0, steps: int = 40, train_size: int = 8,
                       validation_size: int = 4, anharmonic: float = 0.1, assembler: str = "vectorised",
                       seed: int = 0) -> BoundaryTask:
    """The ``boundary-trajectory`` task (module docstring); its targets are the teacher's CBVP solutions."""
    if assembler not in ("vectorised", "fe"):
        raise InputError(f"assembler must be 'vectorised' or 'fe', got {assembler!r}")
    rng = np.random.default_rng([seed, 11])
    student, teacher = _network_params(rng, n), _network_params(rng, n)
    total = train_size + validation_size
    drives = DRIVE_GAIN * _smooth_drives(rng, total, T)
    ends = 0.5 * rng.standard_normal((total, 2, n))
    zeros = np.zeros((total, steps + 1, 1))
    parts = (slice(0, train_size), slice(train_size, None))
    task = BoundaryTask("boundary-trajectory", n, float(T), steps, float(anharmonic), assembler, student,
                        *[Split(drives[s], zeros[s].copy()) for s in parts], {"train": ends[parts[0]],
                                                                            "validation": ends[parts[1]]}, teacher)
    for which in ("train", "validation"):
        data = task.split(which)
        for i in range(len(data)):
            try:
                sol = task.solve(teacher, which, i).solution
            except GlepError as exc:
                raise SolverError(f"boundary-trajectory: the teacher's CBVP of {which} sample {i} has no solution "
                                  f"from the straight line between its ends (T = {T:g}; below the first conjugate "
                                  f"time, T ≲ 1, it is unique and regular): {exc}") from exc
            data.targets[i, :, 0] = np.asarray(sol.q)[:, 0, n - 1]
    return task


# -- kerr-xor: a Kerr cavity array learning XOR ------------------------------------------------------------
XOR_BITS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])


@dataclass
class ModeTask:
    """``kerr-xor``: the cavity array, its Strang steps, the XOR samples (``drives``: the input amplitudes
    ``(S, 2)``; ``targets``: the output intensities ``(S, 1)``; ``labels``: XOR) and the initial ``x``."""

    name: str
    n: int
    T: float
    steps: int
    amplitude: float
    params: dict[str, np.ndarray]
    train: Split
    validation: Split
    classes = 2
    gamma = 0.0
    kind = "modes"

    def split(self, which: str) -> Split:
        return {"train": self.train, "validation": self.validation}[which]

    @property
    def array(self):
        from glep.modes import kerr_cavity_array

        if getattr(self, "_array", None) is None:
            self._array = kerr_cavity_array(self.n, self.n, J=10.0, g=-2.0, kappa=1.0, inputs=(0, 1), outputs=(3,))
        return self._array

    @property
    def threshold(self) -> float:
        """The output intensity separating XOR = 1 from 0: ``0.15 A²``."""
        return 0.15 * self.amplitude ** 2

    def problem(self, params: dict, which: str, indices):
        """The :class:`glep.estimators.heb.ModeProblem` of the samples ``indices`` at ``Θ(0) = x`` (real)."""
        from glep.estimators.heb import ModeProblem
        from glep.modes import IntensityCost

        idx = np.asarray(indices, dtype=int)
        data, s = self.split(which), self.array
        return ModeProblem(s, IntensityCost(s, data.targets[idx]), np.asarray(params["x"], dtype=complex),
                           s.input_state(data.drives[idx]), T=self.T, steps=self.steps)

    def accuracy_count(self, problem, which: str, indices) -> int:
        """How many samples' output intensities lie on their label's side of :attr:`threshold`."""
        intensity = np.abs(problem.final_state()[:, self.array.outputs[0]]) ** 2
        labels = self.split(which).labels[np.asarray(indices, dtype=int)]
        return int(np.sum((intensity > self.threshold).astype(int) == labels))


def make_mode_task(*, n: int = 3, T: float = 20.0, steps: int = 200, train_size: int = 4, validation_size: int = 4,
                   amplitude: float = 0.7, noise: float = 0.0, seed: int = 0) -> ModeTask:
    """The ``kerr-xor`` task (module docstring): ``Θ(0)`` a seeded random real field of unit norm."""
    rng = np.random.default_rng([seed, 13])
    theta = rng.random(n * n)
    splits = []
    for size in (train_size, validation_size):
        labels_of = np.arange(size) % 4
        amps = amplitude * XOR_BITS[labels_of] + noise * rng.standard_normal((size, 2))
        xor = (XOR_BITS[labels_of].sum(axis=1) == 1).astype(int)
        splits.append(Split(amps, 0.3 * amplitude ** 2 * xor[:, None].astype(float), xor))
    return ModeTask("kerr-xor", n, float(T), steps, float(amplitude), {"x": theta / np.linalg.norm(theta)}, *splits)


def build_task(name: str, **kw):
    """The task ``name`` of :data:`TASKS` with the keywords of its maker (:func:`make_task`,
    :func:`make_boundary_task`, :func:`make_mode_task`)."""
    if name == "boundary-trajectory":
        return make_boundary_task(**kw)
    if name == "kerr-xor":
        return make_mode_task(**kw)
    return make_task(name, **kw)


__all__ = ["KINDS", "TASKS", "BoundaryTask", "ModeTask", "SequenceTask", "Split", "build_task",
           "make_boundary_task", "make_mode_task", "make_task"]
