r"""Hamiltonian Echo Backpropagation (HEB) for complex mode systems (López-Pastor & Marquardt, PRX 13, 031020).

Set-up (:mod:`glep.modes`): modes ``φ = (Θ, Ψ)`` of a :class:`~glep.modes.KerrModes` system, the learning
field ``Θ`` and the evaluation field ``Ψ``; inputs in ``Ψ(0)``, a cost ``C(φ(T))`` read at the output ports at
the final time.  The parameters are the learning field's initial state ``Θ(0)``.

**The HEB protocol** (one input, batched over inputs here):

1. forward: ``φ_T = F(φ₀)`` (``F = S_h^N``, the Strang map of :mod:`glep.ivp.modes`);
2. error-signal injection at ``T`` on the output ports: ``φ_T ← φ_T − iη ∂C/∂φ*``;
3. time reversal (complex conjugation), echo (the same ``N`` steps), time reversal again:
   ``φ₀' = conj(F(conj(φ_T − iη ∂C/∂φ*)))``;
4. read-out: ``φ₀' − φ₀ = −iη ∂(C∘F)/∂φ₀* + O(η²)``, i.e. the gradient ``G₀ = 2∂(C∘F)/∂φ₀*`` is
   ``(2i/η)(φ₀' − φ₀)`` (one-sided, bias ``O(η)``) or ``(i/η)(φ₀'(η) − φ₀'(−η))`` (centred, ``O(η²)``), for
   the learning field (the parameter field) and for the evaluation field's initial state alike.

**Why it is exact for the discrete map.**  The injection is the time-``η`` flow of the Hamiltonian ``C``
(``i φ̇ = ∂(ηC)/∂φ*``).  The Strang map ``F`` is symplectic, and its echo is exactly ``F^{-1}`` because
``conj ∘ S_h ∘ conj = S_h^{-1}`` (a *symmetric* composition of conjugation-reversible exact flows).  For a
symplectic ``F``, ``F^{-1} ∘ Φ^C_η ∘ F = Φ^{C∘F}_η``: the returned state is the exact time-``η`` flow of the
pulled-back cost, so the read-out converges to the gradient of the *discrete* loss computed by the discrete
adjoint, with the bias of the difference quotient only (``tests/test_heb.py``: ≤ 1e-6 relative at centred
``η = 1e-4``).  The exactness needs both properties of the step: with a non-symmetric step (Lie splitting) the
echo is not the inverse, with a non-symplectic one the pulled-back flow is not ``Φ^{C∘F}``; either would make
the read-out agree with the discrete adjoint only up to the time-step error (not measured here).

**Learning with the echo (the decay step).**  With ``Θ = x + iy`` (``x`` the "position" quadrature that is
learned, ``y`` its momentum), step 4 changes ``Θ`` by ``−iη ∂C/∂Θ* = (η/2)(∂C/∂y − i ∂C/∂x)``: the momentum
receives the gradient kick ``−(η/2) ∂C/∂x``, the position a spurious ``+(η/2) ∂C/∂y`` (the cost's dependence on
the learning field's momentum).  A *decay step* of the learning field (damped free motion with mass ``m``:
``x ← x + (1 − e^{−γ}) y/m``, ``y ← e^{−γ} y``, as in the authors' cavity-array simulations) turns the kick
into the update ``Δx = −(η/2m) ∂C/∂x + (η/2) ∂C/∂y`` (for ``y = 0`` and full decay): gradient descent with
rate ``η/2m`` plus a bias ``m ∂C/∂y`` in the gradient read from it, which does not vanish as ``η → 0`` and is
proportional to ``m`` relative to the update.  **Averaged HEB** repeats the cycle with ``(−η, −m)``: the
descent terms add (``Δx = −(η/m) ∂C/∂x``) and the momentum terms cancel, leaving an error ``O(η/m)``
relative to the update (both measured in ``tests/test_heb.py``).

This is a standalone API in the spirit of :mod:`glep.estimators.base` (whose estimators take a Lagrangian
:class:`~glep.estimators.problem.Problem`): a :class:`ModeProblem`, the estimator :class:`HEB` with its
ground truth :class:`ModeAdjoint`, and results as :class:`ModeGradient` (convertible to a
:class:`~glep.estimators.result.GradientEstimate` for :func:`glep.agreement`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from glep.errors import InputError, SolverError
from glep.estimators.result import GradientEstimate
from glep.ivp.modes import StrangKerr
from glep.modes import KerrModes
from glep.validation import as_finite_array, check_positive


@dataclass(frozen=True, eq=False)
class ModeProblem:
    r"""A final-time learning problem on a mode system: ``C(Θ(0)) = Σ_b C_b(F(Θ(0), Ψ_b(0)))``.

    Arguments
    ---------
    system:
        The :class:`~glep.modes.KerrModes` system (learning and evaluation fields).
    cost:
        A final-time cost of :mod:`glep.modes` (its batch size is the number of inputs ``B``).
    learning_field:
        ``Θ(0)`` (``(n_Θ,)``, shared by every input).
    evaluation_field:
        ``Ψ_b(0)`` (``(B, n_Ψ)``): the inputs.
    T, steps:
        Duration and number of Strang steps.
    """

    system: KerrModes
    cost: object
    learning_field: np.ndarray
    evaluation_field: np.ndarray
    T: float = 20.0
    steps: int = 500
    stepper: StrangKerr = field(init=False, repr=False)

    def __post_init__(self):
        if not isinstance(self.system, KerrModes):
            raise InputError(f"system must be a glep.modes.KerrModes, got {type(self.system).__name__}")
        if not (hasattr(self.cost, "value") and hasattr(self.cost, "wirtinger")):
            raise InputError("cost must be a final-time cost of glep.modes (IntensityCost, AmplitudeCost...), "
                             f"got {type(self.cost).__name__}")
        if getattr(self.cost, "system", self.system) is not self.system:
            raise InputError("cost was built for another system than the problem's")
        nl = self.system.learning.size
        if nl == 0:
            raise InputError(f"system ({self.system.name}) has no learning field to learn")
        theta = as_finite_array(self.learning_field, "learning_field", dtype=complex, shape=(nl,))
        psi = np.atleast_2d(as_finite_array(self.evaluation_field, "evaluation_field", dtype=complex))
        if psi.ndim != 2 or psi.shape[1] != self.system.evaluation.size:
            raise InputError(f"evaluation_field must have shape (B, {self.system.evaluation.size}), "
                             f"got {np.shape(self.evaluation_field)}")
        if psi.shape[0] != self.cost.targets.shape[0]:
            raise InputError(f"evaluation_field has {psi.shape[0]} inputs but the cost has "
                             f"{self.cost.targets.shape[0]} targets")
        object.__setattr__(self, "learning_field", theta)
        object.__setattr__(self, "evaluation_field", psi)
        object.__setattr__(self, "stepper", StrangKerr(self.system, self.T, self.steps))
        object.__setattr__(self, "T", self.stepper.T)
        object.__setattr__(self, "steps", self.stepper.steps)

    @property
    def batch(self) -> int:
        return self.evaluation_field.shape[0]

    def initial_state(self, learning_field=None) -> np.ndarray:
        """``φ₀`` (``(B, n)``) with the problem's (or the given) learning field."""
        theta = self.learning_field if learning_field is None else learning_field
        return self.system.state(theta, self.evaluation_field)

    def with_learning_field(self, learning_field) -> ModeProblem:
        """The same problem at another ``Θ(0)``."""
        return ModeProblem(self.system, self.cost, learning_field, self.evaluation_field, self.T, self.steps)

    def final_state(self, learning_field=None) -> np.ndarray:
        """``φ(T) = F(φ₀)``."""
        return self.stepper.propagate(self.initial_state(learning_field))

    def loss(self, learning_field=None) -> float:
        """``C = Σ_b C_b(φ_b(T))``."""
        return float(np.sum(self.cost.value(self.final_state(learning_field))))


@dataclass
class ModeGradient:
    """A gradient ``G = ∂C/∂Re + i ∂C/∂Im`` of a :class:`ModeProblem`'s loss.

    Attributes
    ----------
    name:
        ``"HEB"``, ``"discrete adjoint"``...
    learning:
        ``G`` for the shared learning field ``Θ(0)`` (``(n_Θ,)``, summed over the inputs).
    evaluation:
        ``G`` for each input's evaluation-field initial state ``Ψ_b(0)`` (``(B, n_Ψ)``).
    loss:
        ``C`` at the free trajectory.
    passes:
        Cost in forward passes (one pass = ``N`` steps of the whole batch).
    """

    name: str
    learning: np.ndarray
    evaluation: np.ndarray
    loss: float
    passes: float = 0.0
    wall_time: float = 0.0
    eta: float = 0.0
    scheme: str = ""
    notes: list[str] = field(default_factory=list)

    def as_estimate(self) -> GradientEstimate:
        """The same numbers as a :class:`GradientEstimate` with real groups ``learning.re``, ``learning.im``,
        ``evaluation.re``, ``evaluation.im`` (for :func:`glep.agreement`)."""
        groups = {"learning.re": self.learning.real, "learning.im": self.learning.imag,
                  "evaluation.re": self.evaluation.real, "evaluation.im": self.evaluation.imag}
        return GradientEstimate(self.name, groups, passes=self.passes, wall_time=self.wall_time, nudge=self.scheme,
                                beta=self.eta, loss="C of the final state of the Strang map", notes=list(self.notes))


def _check_problem(problem) -> ModeProblem:
    if not isinstance(problem, ModeProblem):
        raise InputError(f"problem must be a glep.estimators.heb.ModeProblem, got {type(problem).__name__}")
    return problem


def _split(problem: ModeProblem, G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = problem.system
    return G[:, s.learning].sum(axis=0), G[:, s.evaluation]


def echo_states(problem: ModeProblem, etas, learning_field=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HEB steps 1–3 for each ``η`` in ``etas``: ``(φ₀, φ_T, φ₀'(η))``, the echoes stacked as ``(len(etas), B, n)``.

    All echoes run as one batch (as independent devices would run side by side).
    """
    phi0 = problem.initial_state(learning_field)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, as a SolverError
        phi_T = problem.stepper.propagate(phi0)
        if not np.all(np.isfinite(phi_T)):
            raise SolverError(f"the forward run of {problem.system.name} overflowed: the intensities |φ|² of the "
                              "initial state exceed the floating-point range")
        w = problem.cost.wirtinger(phi_T)
        starts = np.concatenate([phi_T - 1j * e * w for e in etas])
        back = problem.stepper.propagate(np.conj(starts)).conj() if np.all(np.isfinite(starts)) else starts
    if not np.all(np.isfinite(back)):
        raise SolverError(f"the echo of {problem.system.name} overflowed: the injected error signal η = "
                          f"{max(abs(e) for e in etas):.3e} is too large for this state")
    return phi0, phi_T, back.reshape((len(etas),) + phi0.shape)


def heb(problem: ModeProblem, eta: float = 1e-4, scheme: str = "centred") -> ModeGradient:
    r"""The HEB gradient read from the echo: one-sided ``(2i/η)(φ₀' − φ₀)`` or centred ``(i/η)(φ₀'(η) − φ₀'(−η))``.

    Arguments
    ---------
    problem:
        The :class:`ModeProblem`.
    eta:
        Strength ``η`` of the injected error signal (> 0).
    scheme:
        ``"centred"`` (bias ``O(η²)``, 3 passes) or ``"one-sided"`` (bias ``O(η)``, 2 passes).

    Returns
    -------
    ModeGradient
        For the learning field (summed over inputs) and for each input's evaluation field.
    """
    problem = _check_problem(problem)
    eta = check_positive(eta, "eta")
    if scheme not in ("centred", "one-sided"):
        raise InputError(f"scheme must be 'centred' or 'one-sided', got {scheme!r}")
    t0 = time.perf_counter()
    etas = (eta, -eta) if scheme == "centred" else (eta,)
    phi0, phi_T, back = echo_states(problem, etas)
    G = (1j / eta) * (back[0] - back[1]) if scheme == "centred" else (2j / eta) * (back[0] - phi0)
    learning, evaluation = _split(problem, G)
    return ModeGradient("HEB", learning, evaluation, float(np.sum(problem.cost.value(phi_T))), passes=1 + len(etas),
                        wall_time=time.perf_counter() - t0, eta=eta, scheme=scheme,
                        notes=["exact for the discrete map: symmetric symplectic Strang step, conjugation echo"])


def mode_adjoint(problem: ModeProblem) -> ModeGradient:
    """The ground truth: the discrete adjoint of the Strang map (one stored pass and one backward sweep)."""
    problem = _check_problem(problem)
    t0 = time.perf_counter()
    stepper = problem.stepper
    traj = stepper.propagate(problem.initial_state(), store=True)
    G = stepper.adjoint(traj, 2.0 * problem.cost.wirtinger(traj[-1]))
    learning, evaluation = _split(problem, G)
    return ModeGradient("discrete adjoint", learning, evaluation, float(np.sum(problem.cost.value(traj[-1]))),
                        passes=2.0, wall_time=time.perf_counter() - t0)


@dataclass(frozen=True)
class ModeAdjoint:
    """The discrete adjoint of the Strang map as a ground-truth object (:func:`mode_adjoint`)."""

    name: ClassVar[str] = "discrete adjoint"
    loss: ClassVar[str] = "C of the final state of the Strang map"

    def __call__(self, problem: ModeProblem) -> ModeGradient:
        return mode_adjoint(problem)


@dataclass(frozen=True)
class HEB:
    """HEB as an estimator object: exact for the discrete map, ``1 + len(η's)`` passes, truth :class:`ModeAdjoint`."""

    eta: float = 1e-4
    scheme: str = "centred"
    name: ClassVar[str] = "heb"
    label: ClassVar[str] = "HEB"
    loss: ClassVar[str] = "C of the final state of the Strang map"
    exact: ClassVar[bool] = True

    @property
    def truth(self) -> ModeAdjoint:
        return ModeAdjoint()

    @property
    def passes(self) -> float:
        return 3.0 if self.scheme == "centred" else 2.0

    def __call__(self, problem: ModeProblem) -> ModeGradient:
        return heb(problem, self.eta, self.scheme)


# -- learning: the echo's change of Θ(0), the decay step, plain and averaged HEB updates ----------------------
def decay_step(learning_field, mass: float, damping: float = np.inf, cutoff: float | None = None) -> np.ndarray:
    r"""Damped free motion of the learning field: ``x ← x + k``, ``k = (1 − e^{−γ}) y/m``, ``y ← e^{−γ} y``
    (``Θ = x + iy``).

    ``mass`` ``m`` may be negative (the second half of averaged HEB); ``damping`` ``γ ≥ 0`` (``inf``: the
    momentum is fully converted).  ``cutoff`` ``c`` saturates each displacement, ``k ← k / √(1 + k²/c²)``
    (a bounded response, as in the authors' simulations; ``None``: linear).
    """
    theta = as_finite_array(learning_field, "learning_field", dtype=complex)
    try:
        m = float(mass)
    except (TypeError, ValueError) as exc:
        raise InputError(f"mass must be a non-zero number, got {mass!r}") from exc
    if not np.isfinite(m) or m == 0.0:
        raise InputError(f"mass must be a finite non-zero number, got {mass!r}")
    gamma = float(damping)
    if not gamma >= 0.0:
        raise InputError(f"damping must be >= 0 (inf: full decay), got {damping!r}")
    keep = np.exp(-gamma)
    kick = (1.0 - keep) * theta.imag / m
    if cutoff is not None:
        c = check_positive(cutoff, "cutoff")
        kick = kick / np.sqrt(1.0 + (kick / c) ** 2)
    return theta.real + kick + 1j * keep * theta.imag


def echo_change(problem: ModeProblem, eta: float, learning_field=None) -> tuple[np.ndarray, float]:
    """``ΔΘ = Σ_b (Θ_b'(0) − Θ(0))`` after one HEB cycle with error signal ``η`` (any sign), and the loss.

    The changes of the ``B`` inputs are added: to first order in ``η`` this is what running them one after
    another on the same device gives.
    """
    theta = problem.learning_field if learning_field is None else learning_field
    phi0, phi_T, back = echo_states(problem, (eta,), theta)
    change = (back[0][:, problem.system.learning] - phi0[:, problem.system.learning]).sum(axis=0)
    return change, float(np.sum(problem.cost.value(phi_T)))


def heb_update(problem: ModeProblem, eta: float, mass: float, *, averaged: bool = True,
               damping: float = np.inf, cutoff: float | None = None) -> tuple[np.ndarray, float]:
    r"""One HEB learning step of the learning field: echo with ``η`` and decay with ``m``; if ``averaged``, then
    echo with ``−η`` and decay with ``−m``.

    Returns ``(Θ_new(0), C)`` with ``C`` the loss before the step.  For the averaged step
    ``Re Θ_new − Re Θ = −(η/m) ∂C/∂x + O(η²/m²)``, a gradient-descent step of rate ``η/m`` (``cutoff``: see
    :func:`decay_step`).

    Raises
    ------
    SolverError
        If the learning field is no longer finite (the step ``η/m`` is too large for the landscape).
    """
    problem = _check_problem(problem)
    eta = check_positive(eta, "eta")
    change, c = echo_change(problem, eta)
    theta = decay_step(problem.learning_field + change, mass, damping, cutoff)
    if averaged:
        change, _ = echo_change(problem, -eta, theta)
        theta = decay_step(theta + change, -mass, damping, cutoff)
    if not np.all(np.isfinite(theta)):
        raise SolverError(f"the HEB update diverged (loss before the step {c:.3e}): the learning rate η/m = "
                          f"{eta / abs(mass):.3e} is too large; reduce η/m or set a cutoff")
    return theta, c


def update_gradient(problem: ModeProblem, eta: float, mass: float, *, averaged: bool) -> np.ndarray:
    r"""The gradient ``∂C/∂x`` (``x = Re Θ(0)``) read from one HEB update with full decay, starting at ``y = 0``:
    ``−(2m/η) Δx`` (plain) or ``−(m/η) Δx`` (averaged).  Plain HEB reads ``∂C/∂x − m ∂C/∂y``; averaged HEB
    reads ``∂C/∂x + O(η/m)``."""
    problem = _check_problem(problem)
    if np.any(problem.learning_field.imag != 0):
        raise InputError("update_gradient reads ∂C/∂x from a learning field with zero momentum (a real Θ(0))")
    theta, _ = heb_update(problem, eta, mass, averaged=averaged)
    return -(mass / eta) * (1.0 if averaged else 2.0) * (theta.real - problem.learning_field.real)


@dataclass
class Training:
    """The record of :func:`train`: the learned field, the loss before every step, the number of passes."""

    problem: ModeProblem
    losses: np.ndarray
    passes: int
    wall_time: float
    stopped_early: bool = False


def train(problem: ModeProblem, eta: float, mass: float, iterations: int, *, averaged: bool = True,
          damping: float = np.inf, cutoff: float | None = None, stop=None) -> Training:
    r"""Repeat :func:`heb_update` ``iterations`` times (each one a forward pass and an echo, twice if ``averaged``).

    ``stop(problem)`` (optional) is asked after every step and ends the training when true.
    """
    problem = _check_problem(problem)
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise InputError(f"iterations must be an integer >= 1, got {iterations!r}")
    t0, losses, early = time.perf_counter(), [], False
    for _ in range(int(iterations)):
        theta, c = heb_update(problem, eta, mass, averaged=averaged, damping=damping, cutoff=cutoff)
        losses.append(c)
        problem = problem.with_learning_field(theta)
        if stop is not None and stop(problem):
            early = True
            break
    per_step = 4 if averaged else 2
    return Training(problem, np.asarray(losses), per_step * len(losses), time.perf_counter() - t0, early)


# -- results on disk ----------------------------------------------------------------------------------------
TRAINING_FORMAT = "glep-heb-training/1"


def _write_h5(path, training: Training, gradients: dict, arrays: dict, config: dict, run_id: str) -> None:
    import json

    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["glep_format"] = TRAINING_FORMAT
        f.attrs["run_id"] = run_id
        f.attrs["config"] = json.dumps(config)
        f.attrs["system"] = training.problem.system.name
        f.attrs["passes"] = training.passes
        f.attrs["wall_time"] = training.wall_time
        f.create_dataset("losses", data=training.losses)
        f.create_dataset("learning_field", data=training.problem.learning_field)
        for key, value in arrays.items():
            f.create_dataset(key, data=np.asarray(value))
        g = f.create_group("gradients")
        for key, grad in gradients.items():
            h = g.create_group(key)
            h.create_dataset("learning", data=grad.learning)
            h.create_dataset("evaluation", data=grad.evaluation)
            h.attrs.update({"name": grad.name, "loss": grad.loss, "passes": grad.passes, "eta": grad.eta,
                            "scheme": grad.scheme})


def _plot_losses(path, training: Training, title: str, run_id: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.semilogy(np.arange(len(training.losses)), training.losses, lw=1.5)
    ax.set_xlabel("HEB training step")
    ax.set_ylabel("loss C (before the step)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"glep_run_id": run_id})
    plt.close(fig)


def write_training(out_dir, training: Training, *, gradients: dict | None = None, arrays: dict | None = None,
                   config: dict | None = None, stem: str = "heb_training", title: str = "HEB training"):
    """Write ``<stem>.h5`` (losses, learned field, gradients, arrays, config) and ``<stem>_loss.png`` atomically.

    As :func:`glep.estimators.output.write_results`: both go to hidden temporary files in ``out_dir``, are
    flushed and renamed into place (PNG first, HDF5 last, one run id in both), so an interrupted write leaves
    the previous files or the new ones, never a partial file.  Returns ``(h5 path, png path)``.
    """
    import contextlib
    import os
    import uuid
    from pathlib import Path

    from glep.errors import GlepError
    from glep.estimators.output import ResultsWriteError, _fsync, _temp_path, _terminate_as_exit

    if not isinstance(training, Training):
        raise InputError(f"training must be the result of glep.estimators.heb.train, got {type(training).__name__}")
    out_dir = Path(out_dir)
    h5, png = out_dir / f"{stem}.h5", out_dir / f"{stem}_loss.png"
    run_id, temps = uuid.uuid4().hex, []
    with _terminate_as_exit():
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            temps += [_temp_path(png), _temp_path(h5)]
            _plot_losses(temps[0], training, title, run_id)
            _fsync(temps[0])
            _write_h5(temps[1], training, gradients or {}, arrays or {}, config or {}, run_id)
            _fsync(temps[1])
            os.replace(temps[0], png)
            os.replace(temps[1], h5)
            _fsync(out_dir)
        except BaseException as exc:
            for tmp in temps:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            if isinstance(exc, OSError) and not isinstance(exc, GlepError):
                raise ResultsWriteError(f"cannot write the training results to {out_dir}: {exc.strerror or exc}; "
                                        "the previous results there, if any, are unchanged") from exc
            raise
    return h5, png
