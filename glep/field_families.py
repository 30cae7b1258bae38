r"""Field model families of ``glep compare --system NAME``: small default problems on a spatial mesh.

Each family builds a learning problem from ``(n, T, steps, seed)`` and declares its defaults and the
estimators that apply to it (:mod:`glep.estimators.field_objects`):

================  ==================================================================  ========================
name              problem (1-D mesh of ``n`` cells; trainable field; inputs; read-out)  estimators
================  ==================================================================  ========================
``sine-gordon``   ``φ_tt − φ_xx + κ(x) sin φ = 0`` on ``[−2, 2]``, boundary input          CIVP + residual, PFVP,
                  ``φ(±2, t) = ±0.2 sin 2t``, running read-out ``y = sin(x + t)`` on        echo, RHEL
                  ``x ≥ −0.5`` and a terminal one
``klein-gordon``  φ⁴: ``φ_tt − φ_xx + μ(x)φ + λφ³ = 0`` (``μ ≈ −1``, ``λ = 1``) on            the same and HEB
                  ``[−4, 4]`` from a kink, natural ends, a source ``0.5 cos 3t`` near
                  ``x = −4``, a terminal read-out ``φ(x, T) → 0`` on ``x ≥ 1`` only
``wave``          ``φ_tt = (κ(x)φ_x)_x`` on ``[0, 1]``, fixed ends, a source                CIVP + residual, PFVP,
                  ``sin 6t`` near ``x = 0``, running read-out ``y = 0.1 sin 2πt`` on        echo, RHEL
                  ``x ≥ 0.7``
``nls``           focusing NLS ``i u_t + u_xx − V(x)u + 2|u|²u = 0`` on ``[−8, 8]`` from a    echo, HEB (conjugation
                  soliton (implicit midpoint, complex field ``u = a + ib``), terminal       echo vs the midpoint
                  read-out on ``x ≥ −2``                                                    adjoint)
``kerr``          the ``n × n`` Kerr cavity array of :mod:`glep.estimators.heb` (XOR in      HEB (vs the adjoint of
                  intensities, :func:`glep.kerr_cavity_array`; complex modes)               the Strang map)
================  ==================================================================  ========================

The trainable fields are a smooth profile times ``1 + 0.1·r`` (``r`` uniform in ``[0, 1]`` per dof,
drawn with ``seed``).  This module imports no finite-element library until a problem is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FieldFamily:
    """A field model family: a constructor ``build(n, T, steps, seed)`` and its defaults.

    Attributes:
        name: the ``--system`` name.
        build: ``(n, T, steps, seed) -> problem`` (a ``FieldProblem`` or a ``ModeProblem``).
        n: default size (cells of the mesh; the lattice side for ``kerr``).
        T: default horizon.
        steps: default number of time steps.
        estimators: the estimators that apply (the default rows, in order).
    """

    name: str
    build: Callable
    n: int
    T: float
    steps: int
    estimators: tuple[str, ...]


def _random_field(system, name: str, profile: Callable, seed: int) -> None:
    """Set parameter field ``name`` to ``profile(x) · (1 + 0.1 r)``, ``r`` uniform per dof (seeded, by coordinates)."""
    Q = system.spaces[name]
    X = Q.tabulate_dof_coordinates()
    # one draw per dof from its coordinate: the same field on any number of ranks
    r = np.array([np.random.default_rng([seed, int(round(1e6 * x)) % 2**32]).random() for x in X[:, 0]])
    system.set_parameter(name, profile(X.T) * (1.0 + 0.1 * r))


def sine_gordon_problem(n: int = 16, T: float = 0.8, steps: int = 32, seed: int = 0, comm=None):
    """The ``sine-gordon`` family (see the module docstring)."""
    import dolfinx_solver  # noqa: F401, I001  isort: skip  (before dolfinx)
    import ufl
    from dolfinx import mesh
    from mpi4py import MPI

    from glep import field_models as fm
    from glep.estimators.field_objects import FieldProblem
    from glep.field_system import FieldCost, FieldSystem

    msh = mesh.create_interval(MPI.COMM_WORLD if comm is None else comm, n, [-2.0, 2.0])
    system = FieldSystem(fm.sine_gordon(), msh, dirichlet=lambda x, t: 0.1 * np.sin(2 * t) * x[0],
                         cost=FieldCost(target=lambda x, t: ufl.sin(x[0] + t), region=lambda x: x[0] >= -0.5),
                         terminal_cost=FieldCost(target=0.3, region=lambda x: x[0] <= 1.0),
                         initial=(lambda x: 2.0 * np.exp(-x[0] ** 2), lambda x: 0.5 * np.cos(x[0])))
    _random_field(system, "kappa", lambda x: 1.0 + 0.3 * np.sin(x[0]), seed)
    return FieldProblem(system, T, steps)


def klein_gordon_problem(n: int = 32, T: float = 1.0, steps: int = 40, seed: int = 0, comm=None):
    """The ``klein-gordon`` (φ⁴) family (see the module docstring)."""
    import dolfinx_solver  # noqa: F401, I001  isort: skip
    import ufl
    from dolfinx import mesh
    from mpi4py import MPI

    from glep import field_models as fm
    from glep.estimators.field_objects import FieldProblem
    from glep.field_system import FieldCost, FieldSystem

    msh = mesh.create_interval(MPI.COMM_WORLD if comm is None else comm, n, [-4.0, 4.0])
    system = FieldSystem(fm.klein_gordon(lam=1.0), msh, dirichlet=None,
                         source=lambda x, t: 0.5 * ufl.cos(3 * t) * ufl.exp(-4 * (x[0] + 4.0) ** 2),
                         terminal_cost=FieldCost(target=0.0, region=lambda x: x[0] >= 1.0),
                         initial=(lambda x: fm.phi4_kink(x[0] + 1.0, 0.0), 0.0))
    _random_field(system, "mu", lambda x: -np.ones_like(x[0]), seed)
    return FieldProblem(system, T, steps)


def wave_problem(n: int = 20, T: float = 1.0, steps: int = 40, seed: int = 0, comm=None):
    """The ``wave`` family (see the module docstring)."""
    import dolfinx_solver  # noqa: F401, I001  isort: skip
    import ufl
    from dolfinx import mesh
    from mpi4py import MPI

    from glep import field_models as fm
    from glep.estimators.field_objects import FieldProblem
    from glep.field_system import FieldCost, FieldSystem

    msh = mesh.create_interval(MPI.COMM_WORLD if comm is None else comm, n, [0.0, 1.0])
    system = FieldSystem(fm.wave(), msh,
                         source=lambda x, t: ufl.sin(6 * t) * ufl.exp(-50 * (x[0] - 0.1) ** 2),
                         cost=FieldCost(target=lambda x, t: 0.1 * ufl.sin(2 * np.pi * t), region=lambda x: x[0] >= 0.7))
    _random_field(system, "kappa", lambda x: 1.0 + 0.5 * x[0], seed)
    return FieldProblem(system, T, steps)


def nls_problem(n: int = 32, T: float = 0.4, steps: int = 8, seed: int = 0, comm=None):
    """The ``nls`` family: a focusing NLS soliton on ``[−8, 8]`` (implicit midpoint), potential field ``V(x)``."""
    import dolfinx_solver  # noqa: F401, I001  isort: skip
    import ufl
    from dolfinx import mesh
    from mpi4py import MPI

    from glep import field_models as fm
    from glep.estimators.field_objects import FieldProblem
    from glep.field_midpoint import MidpointFieldSystem
    from glep.field_system import FieldCost

    def initial(x):
        u = fm.nls_soliton(x[0], 0.0, eta=1.0, xi=0.5)
        return np.vstack([u.real, u.imag])

    msh = mesh.create_interval(MPI.COMM_WORLD if comm is None else comm, n, [-8.0, 8.0])
    target = FieldCost(target=lambda x, t: ufl.as_vector([0.3 * ufl.exp(-x[0] ** 2), 0.1]),
                       region=lambda x: x[0] >= -2.0)
    system = MidpointFieldSystem(fm.nls(g=2.0), msh, initial=(initial, 0.0), terminal_cost=target)
    _random_field(system, "V", lambda x: 0.1 * np.cos(x[0]), seed)
    return FieldProblem(system, T, steps)


def kerr_problem(n: int = 3, T: float = 20.0, steps: int = 200, seed: int = 0, comm=None):
    """The ``kerr`` family: the ``n × n`` cavity array learning XOR (docs/guide.md §7), a seeded ``Θ(0)``
    (``comm`` is ignored: the modes are not distributed)."""
    from glep.estimators.heb import ModeProblem
    from glep.modes import IntensityCost, kerr_cavity_array

    array = kerr_cavity_array(n, n, J=10.0, g=-2.0, kappa=1.0, inputs=(0, 1), outputs=(3,))
    bits = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    cost = IntensityCost(array, 0.15 * np.array([[0.0], [1.0], [1.0], [0.0]]))
    theta = np.full(n * n, 1.0 / n) * (1.0 + 0.1 * np.random.default_rng(seed).random(n * n))
    return ModeProblem(array, cost, theta, array.input_state(0.7 * bits), T=T, steps=steps)


_GLEP = ("civp-residual", "pfvp", "echo", "rhel")

#: field family name -> :class:`FieldFamily` (the ``--system`` names of field models)
FIELD_FAMILIES: dict[str, FieldFamily] = {f.name: f for f in (
    FieldFamily("sine-gordon", sine_gordon_problem, 16, 0.8, 32, _GLEP),
    FieldFamily("klein-gordon", klein_gordon_problem, 32, 1.0, 40, (*_GLEP, "heb")),
    FieldFamily("wave", wave_problem, 20, 1.0, 40, _GLEP),
    FieldFamily("nls", nls_problem, 32, 0.4, 8, ("echo", "heb")),
    FieldFamily("kerr", kerr_problem, 3, 20.0, 200, ("heb",)),
)}


def build_field_problem(name: str, n: int | None = None, T: float | None = None, steps: int | None = None,
                        seed: int = 0, comm=None):
    """The problem of family ``name`` (defaults: the family's) on the mesh communicator ``comm`` (default
    ``COMM_WORLD``; the Kerr array has no mesh)."""
    from glep.errors import InputError  # noqa: PLC0415

    if name not in FIELD_FAMILIES:
        raise InputError(f"unknown field system {name!r}; choose from {sorted(FIELD_FAMILIES)}")
    fam = FIELD_FAMILIES[name]
    return fam.build(fam.n if n is None else n, fam.T if T is None else T, fam.steps if steps is None else steps,
                     seed, comm=comm)


__all__ = ["FIELD_FAMILIES", "FieldFamily", "build_field_problem", "klein_gordon_problem", "kerr_problem",
           "nls_problem", "sine_gordon_problem", "wave_problem"]
