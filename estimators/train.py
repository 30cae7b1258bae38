r"""Training with a gradient estimator: ``glep train``.

Every run starts from the same ``θ₀`` and sees the same minibatches; the discrete adjoint's run
(``"adjoint"``) is the reference the others are plotted against.  One step of a run, at minibatch
``b`` of size ``B`` (:func:`minibatch`, a function of the seed and the step only):

    g = (1/B) Σ_{i ∈ b} ĝ_i(θ),    θ ← update(θ, g)    (SGD, momentum or Adam: :class:`Optimizer`)

where ``ĝ_i`` is the estimator's ``dC_h/dθ`` of sequence ``i``.  Under MPI the minibatch is split
over the ranks (``numpy.array_split``), each rank computes ``Σ_{i ∈ its share} ĝ_i`` on one batched
system, and one ``Allreduce`` (sum) gives every rank the same ``g``: the same run on 1 or ``P``
ranks, to round-off.  Each rank's computation is one agreed phase (:func:`glep.parallel.collective`):
an error on one rank stops every rank with its message.

Every ``eval_every`` steps the validation loss ``(1/S) Σ_i C_h(i)`` (and, for classification, the
accuracy) is computed, and with ``objective = true`` the finite-β objective ``J_β`` of each
estimator's nudged family (:func:`glep.estimators.finite.free_energy`), the function a large-β
estimator descends.  Every ``checkpoint_every`` steps the parameters, optimizer states and histories
are written atomically to ``checkpoint.h5``; the minibatch order is a function of ``(seed, step)``,
so ``--resume`` continues to the history an uninterrupted run would have written.  At the end
``train.h5`` (histories, final parameters, configuration) and ``learning_curves.png``.

The tasks (:mod:`glep.tasks`) come in three kinds.  ``civp``: a batched CIVP from rest, stepped by a
variational integrator (NumPy loops, or JAX-compiled Störmer–Verlet with ``task.backend = "jax"``);
estimators the time-stepping rows, reference the discrete adjoint.  ``cbvp``: per sample a CBVP solved
by Newton on the finite-element backend (each rank solves its own samples on a ``COMM_SELF`` mesh,
warm-started from the run's last solution of that sample, a table every rank holds: the solutions join
the gradient's ``Allreduce`` and the checkpoint); estimator the residual-free contrast ``cbvp``,
reference the FE discrete adjoint; a failed Newton or adjoint solve stops the run naming the sample.
``modes``: the Kerr cavity array; estimators HEB (``η = β``, centred or one-sided) and the gradient read
from an averaged HEB update ``−(m/η) Δx`` (mass ``m``; with SGD at rate ``Bη/m`` the run *is* the
averaged HEB update, but its read-out is not linear in the samples: split over ranks it differs from the
1-rank run at ``O(η/m)``), reference the Strang map's discrete adjoint.

With ``training.alignment = true`` every estimator run also computes the reference gradient ``g`` at its
own ``θ`` on each minibatch and records ``cos(ĝ, g)`` and ``‖ĝ − g‖/‖g‖`` (:class:`History`; plotted in
``alignment.png``, tabulated by ``glep report train.h5``: :mod:`glep.estimators.train_report`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from glep.errors import InputError
from glep.ivp.sensitivity import flatten, unflatten

CHECKPOINT, RESULTS, PLOT = "checkpoint.h5", "train.h5", "learning_curves.png"
FORMAT = "glep-train"


# -- optimizers -------------------------------------------------------------------------------------
class Optimizer:
    r"""SGD ``θ ← θ − η g``; momentum ``v ← μ v + g, θ ← θ − η v``; Adam
    ``m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², θ ← θ − η m̂/(√v̂ + ε)`` with ``m̂ = m/(1−β₁ᵗ)``,
    ``v̂ = v/(1−β₂ᵗ)``.  ``state`` (arrays and the step count ``t``) is what a checkpoint stores.
    """

    def __init__(self, spec, size: int):
        self.spec = spec
        self.state: dict[str, np.ndarray] = {"t": np.zeros(1)}
        if spec.name == "momentum":
            self.state["v"] = np.zeros(size)
        elif spec.name == "adam":
            self.state["m"], self.state["v"] = np.zeros(size), np.zeros(size)

    def step(self, theta: np.ndarray, g: np.ndarray) -> np.ndarray:
        """The updated parameters (``theta`` is not modified)."""
        s, st = self.spec, self.state
        st["t"] = st["t"] + 1
        if s.name == "sgd":
            return theta - s.learning_rate * g
        if s.name == "momentum":
            st["v"] = s.momentum * st["v"] + g
            return theta - s.learning_rate * st["v"]
        t = float(st["t"][0])
        st["m"] = s.beta1 * st["m"] + (1 - s.beta1) * g
        st["v"] = s.beta2 * st["v"] + (1 - s.beta2) * g * g
        mhat, vhat = st["m"] / (1 - s.beta1 ** t), st["v"] / (1 - s.beta2 ** t)
        return theta - s.learning_rate * mhat / (np.sqrt(vhat) + s.epsilon)


# -- runs and histories -----------------------------------------------------------------------------
@dataclass
class History:
    """A run's curves: ``train_loss[s]`` the minibatch loss before update ``s``; at each evaluation
    (``eval_step``: updates done) ``validation_loss``, ``accuracy`` (NaN for regression) and
    ``objective`` ``J_β`` on the validation set (NaN if not computed); with ``training.alignment``, per
    update ``alignment_cosine[s]`` ``cos(ĝ, g)`` and ``alignment_error[s]`` ``‖ĝ − g‖/‖g‖`` of the run's
    minibatch gradient ``ĝ`` and the reference gradient ``g`` at the run's own ``θ`` (empty otherwise, and
    for the reference run)."""

    train_loss: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    objective: list[float] = field(default_factory=list)
    alignment_cosine: list[float] = field(default_factory=list)
    alignment_error: list[float] = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=int if k == "eval_step" else float) for k, v in self.__dict__.items()}

    @classmethod
    def from_arrays(cls, arrays: dict) -> History:
        return cls(**{k: [int(x) if k == "eval_step" else float(x) for x in arrays.get(k, ())]
                      for k in cls().__dict__})

    def align(self, g: np.ndarray, ref: np.ndarray) -> None:
        """Record ``cos(g, ref)`` and ``‖g − ref‖/‖ref‖`` (NaN where ``ref = 0``)."""
        norm = float(np.linalg.norm(ref))
        den = norm * float(np.linalg.norm(g))
        self.alignment_cosine.append(float(g @ ref) / den if den > 0 else float("nan"))
        self.alignment_error.append(float(np.linalg.norm(g - ref)) / norm if norm > 0 else float("nan"))


@dataclass
class Run:
    """One training run: its name, flat parameters, optimizer, history and solver ``state`` (the
    finite-element task's ``warm``: the last solution of each training sample, the next Newton guess)."""

    name: str
    theta: np.ndarray
    optimizer: Optimizer
    history: History = field(default_factory=History)
    state: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class TrainingOutcome:
    """What :func:`run_training` returns: the runs, the updates done, the files written (rank 0)."""

    runs: dict[str, Run]
    step: int
    finished: bool
    shapes: dict
    results: Path | None = None
    plot: Path | None = None
    wall_time: float = 0.0

    def final_losses(self) -> dict[str, float]:
        return {name: r.history.validation_loss[-1] for name, r in self.runs.items()}

    def params(self, name: str) -> dict[str, np.ndarray]:
        return unflatten(self.runs[name].theta, self.shapes)


def minibatch(seed: int, step: int, train_size: int, batch_size: int) -> np.ndarray:
    """The training indices of update ``step``: epoch ``e = step // E`` (``E = train_size // batch_size``)
    draws the permutation ``default_rng([seed, e])``; the step takes its ``step mod E``-th block."""
    per_epoch = train_size // batch_size
    epoch, pos = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(train_size)
    return np.sort(perm[pos * batch_size:(pos + 1) * batch_size])


def _share(indices: np.ndarray, comm) -> np.ndarray:
    return np.array_split(indices, comm.size)[comm.rank]


# -- gradients --------------------------------------------------------------------------------------
def _estimator(name: str):
    """``(rule, estimator)`` of a time-stepping run (``None`` for the adjoint)."""
    if name == "adjoint":
        return None, None
    from glep.estimators.sweep import ODE_RULES

    rule = ODE_RULES[name]
    return rule, rule.make(None)


@dataclass
class StepOptions:
    """What an update needs besides ``θ``: ``align`` (also the reference gradient), the estimators' table
    of the configuration (``β``, nudge name, mass), the whole minibatch ``batch`` and, for the
    finite-element task, the run's ``warm`` table of the last solutions (``(train_size, N + 1, n)``)."""

    align: bool = False
    estimators: object = None
    batch: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    warm: np.ndarray | None = None


def parameter_shapes(task) -> dict[str, tuple]:
    """The shapes of the task's trainable parameters."""
    if task.kind == "modes":
        return {"x": np.shape(task.params["x"])}
    if task.kind == "cbvp":
        return dict(task.system("train", 0).parameters)
    return dict(task.problem(task.params, "train", [0]).system.parameters)


def local_gradient(task, name: str, nudge, theta: dict, indices: np.ndarray, shapes,
                   options: StepOptions | None = None) -> dict[str, np.ndarray]:
    """This rank's share of an update: ``{"loss": [Σ C_h(i)], "grad": Σ ĝ_i, "ref": Σ g_i}`` over its
    sequences ``indices`` (``"ref"``: the reference gradient at the same ``θ``, with ``options.align``),
    and for the finite-element task ``"warm"``: the solutions ``(B, N + 1, n)`` at their minibatch rows
    (zeros elsewhere).  Empty (``{}``) for no sequence: the caller fills zeros."""
    options = options or StepOptions()
    if len(indices) == 0:
        return {}
    if task.kind == "cbvp":
        return _cbvp_gradient(task, name, nudge, theta, indices, shapes, options)
    if task.kind == "modes":
        return _mode_gradient(task, name, theta, indices, options)
    from glep.estimators.ground_truth import adjoint

    problem = task.problem(theta, "train", indices)
    rule, est = _estimator(name)
    if est is None:
        grad, ref = adjoint(problem).theta, None
    else:
        grad = est.estimate(rule.prepare(problem) if rule.prepare else problem, nudge).theta
        ref = adjoint(problem).theta if options.align else None
    out = {"loss": np.array([problem.free.loss]), "grad": flatten(grad, shapes)}
    if ref is not None:
        out["ref"] = flatten(ref, shapes)
    return out


def _full(grad: dict, shapes) -> dict[str, np.ndarray]:
    return {k: np.asarray(grad.get(k, np.zeros(s)), dtype=float).reshape(s) for k, s in shapes.items()}


def _solve_cbvp(task, theta: dict, which: str, i: int, guess, name: str):
    """The free CBVP of one sample; a failed or singular solve becomes a :class:`SolverError` naming it."""
    from glep.errors import GlepError, SolverError

    try:
        return task.solve(theta, which, int(i), guess)
    except GlepError as exc:
        raise SolverError(f"the CBVP of {which} sample {int(i)} ({name} run) has no solution from its guess: "
                          f"{exc}") from exc


def _cbvp_gradient(task, name, nudge, theta, indices, shapes, options: StepOptions) -> dict[str, np.ndarray]:
    """Per sample: the free CBVP (Newton from the run's last solution of that sample), its ``C_h``, the FE
    discrete adjoint's gradient and/or the residual-free contrast (nudged solves from the tangent prediction)."""
    from glep.bvp.adjoint import adjoint_gradient, discrete_loss
    from glep.errors import GlepError, SolverError
    from glep.estimators.cbvp import contrast_gradient

    size = int(sum(np.prod(s, dtype=int) for s in shapes.values()))
    loss, grad, ref = 0.0, np.zeros(size), np.zeros(size)
    warm = np.zeros((len(options.batch), task.steps + 1, task.n))
    rows = {int(b): r for r, b in enumerate(options.batch)}
    for i in indices:
        guess = None if options.warm is None else options.warm[int(i)]
        free = _solve_cbvp(task, theta, "train", i, guess, name)
        try:
            truth = flatten(_full(adjoint_gradient(free.problem).theta, shapes), shapes) \
                if name == "adjoint" or options.align else None
            g = truth if name == "adjoint" else flatten(_full(contrast_gradient(free, nudge), shapes), shapes)
        except GlepError as exc:
            raise SolverError(f"train sample {int(i)} ({name} run): {exc}") from exc
        loss += discrete_loss(free.problem)
        grad += g
        if truth is not None:
            ref += truth
        warm[rows[int(i)]] = np.asarray(free.solution.q)[:, 0, :]
    out = {"loss": np.array([loss]), "grad": grad, "warm": warm}
    if options.align and name != "adjoint":
        out["ref"] = ref
    return out


def _mode_gradient(task, name, theta, indices, options: StepOptions) -> dict[str, np.ndarray]:
    """HEB (centred or one-sided, ``η = β``), the gradient read from an averaged HEB update (mass ``m``), or
    the discrete adjoint of the Strang map: ``∂C/∂x`` of the real quadrature, summed over the samples."""
    from glep.estimators.heb import heb, heb_update, mode_adjoint

    problem = task.problem(theta, "train", indices)
    est = options.estimators
    truth = mode_adjoint(problem) if name == "adjoint" or options.align else None
    if name == "adjoint":
        grad, loss = truth.learning.real, truth.loss
    elif name == "heb":
        res = heb(problem, est.beta, est.nudge)
        grad, loss = res.learning.real, res.loss
    else:  # heb-averaged: Δx = −(η/m) ∂C/∂x + O(η²/m²)
        mass = 1.0 if est.mass is None else est.mass
        new, loss = heb_update(problem, est.beta, mass, averaged=True)
        grad = -(mass / est.beta) * (new.real - problem.learning_field.real)
    out = {"loss": np.array([loss]), "grad": np.asarray(grad, dtype=float)}
    if options.align and name != "adjoint":
        out["ref"] = truth.learning.real
    return out


def local_evaluation(task, name: str, nudge, theta: dict, indices: np.ndarray, objective: bool) -> np.ndarray:
    """``[Σ C_h(i), #right, Σ J_β(i)]`` over this rank's validation sequences ``indices``."""
    if len(indices) == 0:
        return np.zeros(3)
    if task.kind == "cbvp":  # Newton from the straight line between the ends: no state
        from glep.bvp.adjoint import discrete_loss

        return np.array([sum(discrete_loss(_solve_cbvp(task, theta, "validation", i, None, name).problem)
                             for i in indices), 0.0, 0.0])
    problem = task.problem(theta, "validation", indices)
    right = task.accuracy_count(problem, "validation", indices) if task.classes else 0
    if task.kind == "modes":
        return np.array([problem.loss(), right, 0.0])
    J = 0.0
    if objective and name != "adjoint":
        from glep.estimators.finite import free_energy

        rule, est = _estimator(name)
        J = free_energy(_family(est, rule.prepare(problem) if rule.prepare else problem), nudge).value
    return np.array([problem.free.loss, right, J])


def _family(est, problem):
    from glep.estimators.finite import FinalStateFamily, InitialValueFamily

    return {"initial-value": InitialValueFamily, "final-state": FinalStateFamily}[est.nudged_family](problem)


def _layout(task, name: str, size: int, options: StepOptions) -> list[tuple[str, tuple]]:
    """The parts of an update's sum, the same on every rank."""
    parts = [("loss", (1,)), ("grad", (size,))]
    if options.align and name != "adjoint":
        parts.append(("ref", (size,)))
    if task.kind == "cbvp":
        parts.append(("warm", (len(options.batch), task.steps + 1, task.n)))
    return parts


def _summed_parts(parts: dict, layout, comm) -> dict[str, np.ndarray]:
    """``parts`` summed over the ranks (one ``Allreduce``); a part a rank did not give counts as zeros."""
    vec = np.concatenate([np.asarray(parts[k], dtype=float).ravel() if k in parts else np.zeros(int(np.prod(s)))
                          for k, s in layout])
    total, out, at = _summed(vec, comm), {}, 0
    for k, s in layout:
        m = int(np.prod(s))
        out[k], at = total[at:at + m].reshape(s), at + m
    return out


def _summed(vec: np.ndarray, comm) -> np.ndarray:
    from mpi4py import MPI

    out = np.empty_like(vec)
    comm.Allreduce(np.ascontiguousarray(vec), out, op=MPI.SUM)
    return out


# -- checks before any work -------------------------------------------------------------------------
def check_training(config, comm=None):
    """Build the task and check every run on its first minibatch; returns ``(task, nudge)``.

    Raises :class:`InputError` naming the key: an estimator whose requirements the network does not
    meet (``estimators.names``: the echo or RHEL on a non-reversible network…), a nudge it does not
    take (``estimators.nudge``), ``J_β`` of an estimator without a nudged family (``estimators.objective``),
    a backend that cannot run the network (``task.backend``).  The task's own key checks (which estimators
    apply to which task) are made by :mod:`glep.train_config`.
    """
    from glep.estimators.registry import nudge_from_name
    from glep.tasks import build_task

    nudge = nudge_from_name(config.estimators.nudge, config.estimators.beta)
    if config.task.kind == "civp" and config.task.backend != "numpy":
        _check_backend(config)
    task = build_task(**config.task.task_kwargs())
    if task.kind == "civp":
        _check_civp(config, task, nudge)
    return task, nudge


def _check_backend(config) -> None:
    """``task.backend = "jax"``: JAX installed and the explicit Störmer–Verlet loop (the network is checked
    in :func:`_check_civp`)."""
    from glep.ivp import compiled

    if not compiled.available():
        raise InputError("config key 'task.backend': backend 'jax' needs the optional extra JAX "
                         "(pip install 'glep[jax]'), which is not installed; use backend 'numpy'")
    if config.task.integrator not in (None, "stormer-verlet"):
        raise InputError(f"config key 'task.backend': backend 'jax' compiles the explicit Störmer–Verlet loop; "
                         f"task.integrator {config.task.integrator!r} is implicit (use 'stormer-verlet' or "
                         "backend 'numpy')")


def _check_civp(config, task, nudge) -> None:
    from glep.estimators.sweep import REQUIREMENTS

    tr = config.training
    first = minibatch(tr.seed, 0, config.task.train_size, tr.batch_size)
    if config.task.backend != "numpy":
        from glep.ivp.compiled import unsupported_reason

        why = unsupported_reason(task.system("train", first))
        if why:
            raise InputError(f"config key 'task.backend': backend 'jax' cannot run the task's network: {why}; "
                             "use backend 'numpy'")
    problem = task.problem(task.params, "train", first)
    point = SimpleNamespace(batch=tr.batch_size)  # what the sweep's requirement checks read
    for name in config.estimators.names:
        rule, est = _estimator(name)
        for req in rule.requires:
            why = REQUIREMENTS[req](problem, point)
            if why:
                raise InputError(f"config key 'estimators.names': {name!r} does not apply to the task "
                                 f"{task.name!r} ({problem.system.name}): {why}")
        if not est.accepts(nudge):
            raise InputError(f"config key 'estimators.nudge': {name!r} does not take the {config.estimators.nudge!r} "
                             "nudge")
        if config.estimators.objective and est.nudged_family not in ("initial-value", "final-state"):
            raise InputError(f"config key 'estimators.objective': J_β of {name!r} (the {est.nudged_family} family) "
                             "is not computed during training; set objective = false or leave it out")


# -- checkpoints and results ------------------------------------------------------------------------
def _atomic_h5(path: Path, fill: Callable) -> None:
    """Write an HDF5 file by ``fill(h5py.File)`` into a temporary file next to ``path``, then rename it."""
    import h5py

    from glep.estimators.output import _fsync, _temp_path

    with _writing(path):
        tmp = _temp_path(path)
        try:
            with h5py.File(tmp, "w") as f:
                fill(f)
            _fsync(tmp)
            os.replace(tmp, path)
            _fsync(path.parent)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise


@contextlib.contextmanager
def _writing(path: Path):
    """An ``OSError`` while writing ``path`` becomes a :class:`ResultsWriteError` naming it (a user-facing error)."""
    from glep.errors import GlepError
    from glep.estimators.output import ResultsWriteError

    try:
        yield
    except OSError as exc:
        if isinstance(exc, GlepError):
            raise
        raise ResultsWriteError(f"cannot write {path}: {exc.strerror or exc}; the previous file there, if any, "
                                "is unchanged") from exc


def _write_runs(f, runs: dict[str, Run], config, step: int, shapes: dict, kind: str) -> None:
    f.attrs["format"] = FORMAT
    f.attrs["kind"] = kind
    f.attrs["config"] = json.dumps(config.training_dict())
    f.attrs["step"] = step
    f.attrs["runs"] = json.dumps(list(runs))
    for name, run in runs.items():
        g = f.create_group(f"runs/{name}")
        g["theta"] = run.theta
        for k, v in run.history.arrays().items():
            g[f"history/{k}"] = v
        for k, v in run.optimizer.state.items():
            g[f"optimizer/{k}"] = v
        for k, v in run.state.items():
            g[f"state/{k}"] = v
        for k, v in unflatten(run.theta, shapes).items():
            g[f"params/{k}"] = v


def save_checkpoint(out: Path, runs: dict[str, Run], config, step: int, shapes: dict) -> Path:
    """Write ``checkpoint.h5`` atomically (rank 0 only)."""
    path = out / CHECKPOINT
    _atomic_h5(path, lambda f: _write_runs(f, runs, config, step, shapes, "checkpoint"))
    return path


def load_checkpoint(out: Path, config) -> tuple[int, dict[str, dict]]:
    """``(step, {run: {"theta", "history", "optimizer"}})`` of ``out/checkpoint.h5``, checked against ``config``."""
    import h5py

    path = out / CHECKPOINT
    if not path.is_file():
        raise InputError(f"--resume: there is no {CHECKPOINT} in {str(out)!r} to continue")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise InputError(f"--resume: {path} is not a glep train checkpoint")
            stored = json.loads(f.attrs["config"])
            step = int(f.attrs["step"])
            state = {name: {"theta": g["theta"][()],
                            "history": {k: v[()] for k, v in g["history"].items()},
                            "optimizer": {k: v[()] for k, v in g["optimizer"].items()},
                            "state": {k: v[()] for k, v in g["state"].items()} if "state" in g else {}}
                     for name, g in f["runs"].items()}
    except (OSError, KeyError) as exc:
        raise InputError(f"--resume: cannot read {path} ({exc})") from exc
    now = config.training_dict()
    differ = [f"{t}.{k}" for t in now if isinstance(now[t], dict)
              for k in now[t] if stored.get(t, {}).get(k) != now[t][k]]
    differ += [t for t in now if not isinstance(now[t], dict) and stored.get(t) != now[t]]
    if differ:
        raise InputError(f"--resume: the configuration differs from the checkpoint's in {differ}; "
                         "resume with the same configuration (only [run] may change), or start afresh elsewhere")
    return step, state


def _atomic_png(png: Path, draw: Callable) -> None:
    """Draw a PNG by ``draw(temporary path)`` next to ``png``, then rename it into place."""
    from glep.estimators.output import _temp_path

    with _writing(png):
        tmp = _temp_path(png)
        try:
            draw(tmp)
            os.replace(tmp, png)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise


def write_results(out: Path, runs: dict[str, Run], config, step: int, shapes: dict, lib: dict) -> tuple[Path, Path]:
    """``train.h5`` and ``learning_curves.png`` (and ``alignment.png`` with ``training.alignment``), each written
    atomically (rank 0 only); ``lib`` the versions."""
    png = out / PLOT
    _atomic_png(png, lambda tmp: plot_curves(runs, tmp, config))
    if config.training.alignment:
        from glep.estimators.train_report import ALIGNMENT_PLOT, _title, plot_alignment

        _atomic_png(out / ALIGNMENT_PLOT, lambda tmp: plot_alignment({n: r.history for n, r in runs.items()}, tmp,
                                                                     _title(config)))

    def fill(f):
        _write_runs(f, runs, config, step, shapes, "results")
        f.attrs["versions"] = json.dumps(lib)
        ref = runs["adjoint"].history.validation_loss[-1]
        for name, run in runs.items():
            f[f"runs/{name}"].attrs["final_validation_loss"] = run.history.validation_loss[-1]
            f[f"runs/{name}"].attrs["relative_gap_to_adjoint"] = abs(run.history.validation_loss[-1] - ref) / ref

    _atomic_h5(out / RESULTS, fill)
    return out / RESULTS, png


def load_training(path: str | Path) -> dict[str, History]:
    """The histories of a ``train.h5`` (or ``checkpoint.h5``) file, by run name."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise InputError(f"{path} is not a glep train file")
            return {name: History.from_arrays({k: v[()] for k, v in g["history"].items()})
                    for name, g in f["runs"].items()}
    except OSError as exc:
        raise InputError(f"cannot read {path} ({exc})") from exc


def plot_curves(runs: dict[str, Run], path, config) -> None:
    """Learning curves: validation loss (and minibatch loss, faint) of every run with the adjoint's dashed
    in black; the relative gap ``|C_run − C_adjoint| / C_adjoint``; ``J_β`` beside ``C`` if computed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    objective = config.estimators.objective and len(runs) > 1
    fig, axes = plt.subplots(1, 3 if objective else 2, figsize=(13 if objective else 9, 3.8))
    ref = runs["adjoint"].history
    for i, (name, run) in enumerate(runs.items()):
        h = run.history
        style = dict(color="black", ls="--", lw=2) if name == "adjoint" else dict(color=f"C{i}")
        axes[0].plot(h.eval_step, h.validation_loss, marker="o", ms=3, label=name, **style)
        axes[0].plot(np.arange(len(h.train_loss)), h.train_loss, alpha=0.25, color=style["color"])
        if name != "adjoint":
            gap = np.abs(np.array(h.validation_loss) - ref.validation_loss) / np.array(ref.validation_loss)
            axes[1].semilogy(h.eval_step, np.where(gap > 0, gap, np.nan), marker="o", ms=3, label=name, color=f"C{i}")
            if objective:
                axes[2].plot(h.eval_step, h.objective, marker="s", ms=3, color=f"C{i}", label=f"{name} J_β")
                axes[2].plot(h.eval_step, h.validation_loss, ls=":", color=f"C{i}", label=f"{name} C")
    axes[0].set(yscale="log", xlabel="update", ylabel="loss per sequence", title="validation (faint: minibatch)")
    axes[1].set(xlabel="update", ylabel="|C − C_adjoint| / C_adjoint", title="gap to the adjoint-trained run")
    if objective:
        axes[2].set(yscale="log", xlabel="update", title=f"J_β beside C (β = {config.estimators.beta:g})")
        axes[2].legend(fontsize=7)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{config.name}: task {config.task.name}, {config.optimizer.name}, "
                 f"batch {config.training.batch_size}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


# -- the loop ---------------------------------------------------------------------------------------
def _evaluate(task, config, nudge, runs: dict[str, Run], shapes, step: int, comm) -> None:
    from glep.parallel import collective

    S = config.task.validation_size
    mine = _share(np.arange(S), comm)
    for name, run in runs.items():
        with collective(comm, what=f"evaluating the {name} run after {step} updates"):
            vec = local_evaluation(task, name, nudge, unflatten(run.theta, shapes), mine, config.estimators.objective)
        loss, right, J = _summed(vec, comm) / S
        h = run.history
        h.eval_step.append(step)
        h.validation_loss.append(float(loss))
        h.accuracy.append(float(right) if task.classes else float("nan"))
        h.objective.append(float(J) if config.estimators.objective and name != "adjoint" else float("nan"))


def _fresh_runs(config, task, shapes) -> dict[str, Run]:
    theta0 = flatten(task.params, shapes)
    state = {}
    if task.kind == "cbvp":  # the first Newton guesses: the straight lines between the ends
        state["warm"] = np.stack([task.straight("train", i) for i in range(len(task.train))])
    return {name: Run(name, theta0.copy(), Optimizer(config.optimizer, theta0.size),
                      state={k: v.copy() for k, v in state.items()}) for name in config.run_names()}


def _resumed_runs(config, state: dict, shapes) -> dict[str, Run]:
    runs = {}
    for name in config.run_names():
        s = state[name]
        opt = Optimizer(config.optimizer, s["theta"].size)
        opt.state = {k: np.array(v) for k, v in s["optimizer"].items()}
        runs[name] = Run(name, np.array(s["theta"]), opt, History.from_arrays(s["history"]),
                         {k: np.array(v) for k, v in s["state"].items()})
    return runs


def run_training(config, *, resume: bool = False, comm=None, say: Callable[[str], None] | None = None,
                 stop_after: int | None = None) -> TrainingOutcome:
    """Train every run of ``config`` (a :class:`glep.train_config.TrainConfig`) on ``comm`` (default WORLD).

    Collective.  ``resume`` continues ``run.output/checkpoint.h5``; ``stop_after`` ends this call after
    that many updates (a checkpoint is written there: an interrupted run, for tests).  Rank 0 writes
    the files.  Returns the :class:`TrainingOutcome` (the same runs on every rank).
    """
    from mpi4py import MPI

    from glep.config import check_output_folder
    from glep.parallel import agree, collective, is_root

    comm = MPI.COMM_WORLD if comm is None else comm
    say = say or (lambda m: None)
    t0 = time.perf_counter()
    out, root = Path(config.run.output), is_root(comm)
    task, nudge = agree(lambda: check_training(config, comm), comm, what="checking the training")
    shapes = parameter_shapes(task)

    def prepare():
        if not root:
            return None
        check_output_folder(out)
        if resume:
            return load_checkpoint(out, config)
        if (out / CHECKPOINT).exists():
            raise InputError(f"{out / CHECKPOINT} exists: pass --resume to continue that run, or choose another "
                             "output folder")
        return None

    loaded = comm.bcast(agree(prepare, comm, what="preparing the output folder"), root=0)
    if loaded is None:
        step, runs = 0, _fresh_runs(config, task, shapes)
        _evaluate(task, config, nudge, runs, shapes, 0, comm)
    else:
        step, state = loaded
        runs = _resumed_runs(config, state, shapes)
        say(f"resumed after {step} updates")
    tr = config.training
    end = tr.iterations if stop_after is None else min(tr.iterations, step + stop_after)
    size = flatten(task.params, shapes).size
    say(f"{task.name}: P = {size} parameters, {len(runs)} runs "
        f"({', '.join(runs)}), {tr.iterations} updates of {tr.batch_size} sequences on {comm.size} rank(s)")
    while step < end:
        batch = minibatch(tr.seed, step, config.task.train_size, tr.batch_size)
        mine = _share(batch, comm)
        for name, run in runs.items():
            options = StepOptions(tr.alignment, config.estimators, batch, run.state.get("warm"))
            with collective(comm, what=f"update {step + 1} of the {name} run"):
                parts = local_gradient(task, name, nudge, unflatten(run.theta, shapes), mine, shapes, options)
            total = _summed_parts(parts, _layout(task, name, size, options), comm)
            g = total["grad"] / tr.batch_size
            run.history.train_loss.append(float(total["loss"][0]) / tr.batch_size)
            if "ref" in total:
                run.history.align(g, total["ref"] / tr.batch_size)
            if "warm" in total:
                run.state["warm"][batch] = total["warm"]
            run.theta = run.optimizer.step(run.theta, g)
        step += 1
        if step % tr.eval_every == 0 or step == tr.iterations:
            _evaluate(task, config, nudge, runs, shapes, step, comm)
            say(f"update {step}: validation loss " + ", ".join(
                f"{n} {r.history.validation_loss[-1]:.4g}" for n, r in runs.items()))
        if step % tr.checkpoint_every == 0 or step == end:
            agree(lambda done=step: save_checkpoint(out, runs, config, done, shapes) if root else None, comm,
                  what="writing the checkpoint")
    outcome = TrainingOutcome(runs, step, step == tr.iterations, shapes)
    if outcome.finished:
        from glep.estimators.output import versions

        lib = versions()  # imports PETSc, which is collective: on every rank
        files = agree(lambda: write_results(out, runs, config, step, shapes, lib) if root else None, comm,
                      what="writing the results")
        outcome.results, outcome.plot = files if files else (None, None)
    outcome.wall_time = time.perf_counter() - t0
    return outcome


def format_table(outcome: TrainingOutcome) -> str:
    """The final validation loss of every run and its relative gap to the adjoint-trained run."""
    final = outcome.final_losses()
    ref = final["adjoint"]
    rows = [f"{'run':<16} {'final loss':>12} {'gap to adjoint':>15} {'accuracy':>9}"]
    for name, run in outcome.runs.items():
        acc = run.history.accuracy[-1]
        rows.append(f"{name:<16} {final[name]:>12.5g} {abs(final[name] - ref) / ref:>15.2e} "
                    f"{'' if np.isnan(acc) else f'{acc:.0%}':>9}")
    return "\n".join(rows)


__all__ = ["History", "Optimizer", "Run", "TrainingOutcome", "check_training", "format_table", "load_training",
           "minibatch", "run_training"]
