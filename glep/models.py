r"""Built-in model families.

Each constructor returns a :class:`Model`: a system, a parameter point, the
free CIVP's initial data and a suggested horizon.  They are the families of
the RHEL and GLEP papers:

* :func:`coupled_oscillators` — masses, on-site springs and pairwise couplings
  (all trainable), a weak quartic anharmonicity, an input drive on the first
  oscillator and a tracking target on the last.  Trainable masses make the
  kinetic term θ-dependent (the PFVP ``t = 0`` term).
* :func:`hamiltonian_recurrent_unit` — ``H = ½‖p‖² + ½φᵀAφ − φᵀBu`` (linear)
  or with a log-cosh layer ``Σ log cosh(Wφ + b)`` (nonlinear).
* :func:`pendulum_chain` — pendula coupled by torsion springs.
* :func:`gyroscopic_oscillators` — coupled oscillators in a magnetic field of
  strength ``γ``; time reversal is broken for ``γ ≠ 0``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from glep.boundary import CIVP
from glep.costs import TerminalCost, TrackingCost
from glep.errors import InputError
from glep.gyroscopic import Gyroscopic
from glep.kinetic import DiagonalMass
from glep.potentials import (
    Harmonic,
    InputDrive,
    LogCoshLayer,
    Pendulum,
    QuadraticForm,
    Quartic,
    SpringCoupling,
)
from glep.signals import Signal
from glep.system import LagrangianSystem


@dataclass
class Model:
    """A system with a parameter point and the free trajectory's initial data."""

    system: LagrangianSystem
    params: dict[str, np.ndarray]
    boundary: CIVP
    T: float
    info: dict = field(default_factory=dict)


def _drive_and_target(T: float, m: int, k: int, batch: int | None, seed: int, samples: int = 257):
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, T, samples)
    B = batch or 1
    phase = rng.uniform(0, 2 * np.pi, size=(B, 1, 1))
    freqs = 1.0 + 0.5 * np.arange(m)
    u = np.sin(freqs[None, None, :] * t[None, :, None] + phase)
    yfreq = 0.6 + 0.2 * np.arange(k)
    y = 0.5 * np.sin(yfreq[None, None, :] * t[None, :, None] + 0.5 * phase)
    if batch is None:
        u, y = u[0], y[0]
    return Signal.from_samples(u, T, "u"), Signal.from_samples(y, T, "y")


def _check_n(n, minimum=1):
    if isinstance(n, bool) or int(n) != n or n < minimum:
        raise InputError(f"n must be an integer >= {minimum}, got {n!r}")
    return int(n)


def coupled_oscillators(n: int = 4, *, T: float = 10.0, batch: int | None = None, anharmonic: float = 0.1,
                        trainable_mass: bool = True, gyroscopic: float = 0.0, terminal: bool = False,
                        seed: int = 0) -> Model:
    """Chain of ``n`` coupled oscillators driven at oscillator 0, target on oscillator ``n−1``."""
    n = _check_n(n, 2)
    rng = np.random.default_rng(seed)
    edges = [(i, i + 1) for i in range(n - 1)]
    terms = [DiagonalMass(n, "m" if trainable_mass else None), Harmonic(n, "k"),
             SpringCoupling(n, edges, "J"), InputDrive(n, 1, "u", "B")]
    if anharmonic:
        terms.append(Quartic(n, anharmonic))
    if gyroscopic:
        terms.append(Gyroscopic(n, gyroscopic))
    u, y = _drive_and_target(T, 1, 1, batch, seed)
    terminal_cost = TerminalCost(n, [n - 1], [0.3]) if terminal else None
    system = LagrangianSystem(n, terms, cost=TrackingCost(n, [n - 1], "y"), terminal_cost=terminal_cost,
                              signals={"u": u, "y": y},
                              name=_gyroscopic_name(n, gyroscopic) if gyroscopic else f"coupled oscillators (n={n})")
    params = {"k": 1.0 + 0.5 * rng.random(n), "J": 0.5 + 0.5 * rng.random(n - 1),
              "B": np.zeros((n, 1))}
    params["B"][0, 0] = 1.0
    params["B"] += 0.1 * rng.standard_normal((n, 1))
    if trainable_mass:
        params["m"] = 1.0 + 0.3 * rng.random(n)
    v0 = 0.2 * rng.standard_normal(n)
    q0 = 0.1 * rng.standard_normal(n)
    return Model(system, params, CIVP(q0, v0=v0), T, {"family": "coupled_oscillators", "n": n})


def gyroscopic_oscillators(n: int = 4, gamma: float = 0.1, **kw) -> Model:
    """Coupled oscillators in a magnetic field ``γ vᵀ G q`` (breaks time reversal)."""
    model = coupled_oscillators(n, gyroscopic=gamma, **kw)
    model.system.name = _gyroscopic_name(model.system.n, gamma)
    model.info.update(family="gyroscopic_oscillators", gamma=gamma)
    return model


def _gyroscopic_name(n: int, gamma: float) -> str:
    return f"gyroscopic oscillators (n={n}, γ={gamma:g})"


def hamiltonian_recurrent_unit(n: int = 8, *, m: int = 2, hidden: int | None = None, T: float = 8.0,
                               batch: int | None = None, seed: int = 0) -> Model:
    """Linear (``hidden=None``) or log-cosh nonlinear Hamiltonian recurrent unit."""
    n = _check_n(n, 2)
    rng = np.random.default_rng(seed)
    terms = [DiagonalMass(n, None), QuadraticForm(n, "A"), InputDrive(n, m, "u", "B")]
    if hidden:
        terms.append(LogCoshLayer(n, hidden, "W", "b"))
    u, y = _drive_and_target(T, m, 1, batch, seed)
    system = LagrangianSystem(n, terms, cost=TrackingCost(n, [n - 1], "y"), signals={"u": u, "y": y},
                              name=f"HRU (n={n}, {'log-cosh' if hidden else 'linear'})")
    R = rng.standard_normal((n, n)) / np.sqrt(n)
    params = {"A": np.eye(n) + 0.3 * (R + R.T), "B": rng.standard_normal((n, m)) / np.sqrt(m)}
    if hidden:
        params["W"] = rng.standard_normal((hidden, n)) / np.sqrt(n)
        params["b"] = 0.1 * rng.standard_normal(hidden)
    q0 = 0.1 * rng.standard_normal(n)
    return Model(system, params, CIVP(q0, p0=np.zeros(n)), T,
                 {"family": "hamiltonian_recurrent_unit", "n": n, "hidden": hidden or 0})


def pendulum_chain(n: int = 4, *, T: float = 8.0, batch: int | None = None, seed: int = 0) -> Model:
    """``n`` pendula (trainable gravity ``w``) coupled by torsion springs ``J``."""
    n = _check_n(n, 2)
    rng = np.random.default_rng(seed)
    edges = [(i, i + 1) for i in range(n - 1)]
    terms = [DiagonalMass(n, "m"), Pendulum(n, "w"), SpringCoupling(n, edges, "J"), InputDrive(n, 1, "u", "B")]
    u, y = _drive_and_target(T, 1, 1, batch, seed)
    system = LagrangianSystem(n, terms, cost=TrackingCost(n, [n - 1], "y"), signals={"u": u, "y": y},
                              name=f"pendulum chain (n={n})")
    params = {"m": 1.0 + 0.2 * rng.random(n), "w": 1.0 + 0.5 * rng.random(n),
              "J": 0.5 + 0.3 * rng.random(n - 1), "B": 0.5 * rng.standard_normal((n, 1))}
    q0 = 0.3 * rng.standard_normal(n)
    return Model(system, params, CIVP(q0, v0=0.1 * rng.standard_normal(n)), T,
                 {"family": "pendulum_chain", "n": n})


FAMILIES = {
    "coupled_oscillators": coupled_oscillators,
    "hru_linear": lambda **kw: hamiltonian_recurrent_unit(**kw),
    "hru_logcosh": lambda **kw: hamiltonian_recurrent_unit(hidden=kw.pop("hidden", 6), **kw),
    "pendulum_chain": pendulum_chain,
    "gyroscopic": gyroscopic_oscillators,
}
