r"""Complex mode systems: Kerr-nonlinear cavity arrays, the set-up of Hamiltonian Echo Backpropagation.

A system of ``n`` complex modes ``φ ∈ ℂⁿ`` (batched: ``φ`` of shape ``(B, n)``) with the Hamiltonian

    H(φ, φ*) = Σ_ij M_ij φ_i* φ_j + ½ Σ_i g_i |φ_i|⁴,        M = Mᵀ real,

and the equations of motion ``i φ̇ = ∂H/∂φ* = M φ + g |φ|² φ``.  With ``φ = (q + i p)/√2`` these are
Hamilton's equations ``q̇ = ∂H/∂p``, ``ṗ = −∂H/∂q`` for the real pair ``(q, p)``.  The diagonal of ``M`` holds
on-site frequencies ``ω_i``, its off-diagonal entries hoppings (``J_ij (φ_i* φ_j + c.c.)``, so ``M_ij = J_ij``).

**Time reversal is complex conjugation.**  Because ``M`` and ``g`` are real, ``H(φ*) = H(φ)`` and
``φ ↦ φ*`` (that is ``(q, p) ↦ (q, −p)``) maps solutions run forward to solutions run backward.  A complex
Hermitian ``M`` (a synthetic gauge field) would break this; it is refused.

**The HEB set-up** (López-Pastor & Marquardt, PRX 13, 031020 (2023); the authors' published cavity-array
code was read for the set-up, none of it is copied): the modes split into

* the *learning field* ``Θ``: an ``Lx × Ly`` square lattice of Kerr cavities with nearest-neighbour hopping
  ``J`` and Kerr coefficient ``g``.  Its initial state ``Θ(0)`` is what is learned; it starts real
  (zero "momentum" quadrature ``Im Θ``), and learning moves its real ("position") quadrature;
* the *evaluation field* ``Ψ``: port modes, one per chosen lattice site (by default the four corners), each
  with its own frequency ``ω_j`` and Kerr coefficient, coupled to its site by ``κ (Ψ_j* Θ_s(j) + c.c.)``.
  Inputs are written into the initial state of the *input ports*, the output is read from the *output
  ports* at the final time ``T``.

So the whole device is one :class:`KerrModes` system whose coupling matrix has the lattice hoppings, the
port couplings and the port frequencies; the learning field is "coupled to the evaluation field" through
``κ`` and through the shared dynamics, and the parameters of the computation are the learning field's
initial amplitudes.  :func:`kerr_cavity_array` builds it (defaults: the paper's ``4 × 4``, ``J = 10``,
``g = −2``, ``κ = 0.3``).

Costs at the final time are read from the output ports: :class:`IntensityCost` (photodetection,
``½ Σ (|φ_o|² − y)²``) and :class:`AmplitudeCost` (``½ Σ |φ_o − y|²``, the paper's choice).  Each returns
its value per batch member and the Wirtinger derivative ``∂C/∂φ*`` that HEB injects.

Gradient convention of the whole module family: for a real function ``C`` of complex modes the gradient is
``G = ∂C/∂Re φ + i ∂C/∂Im φ = 2 ∂C/∂φ*`` (steepest ascent; ``dC = Re Σ G* δφ``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from glep.errors import InputError
from glep.validation import as_finite_array


def _indices(value, name: str, n: int) -> np.ndarray:
    """Distinct integer mode indices in ``[0, n)``."""
    try:
        arr = np.asarray(value, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a sequence of integer mode indices, got {value!r}") from exc
    if arr.size and (not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))):
        raise InputError(f"{name} must hold integer mode indices, got {value!r}")
    idx = arr.astype(int)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise InputError(f"{name} must hold mode indices in [0, {n}), got {idx.tolist()}")
    if len(set(idx.tolist())) != idx.size:
        raise InputError(f"{name} must not repeat a mode, got {idx.tolist()}")
    return idx


@dataclass(frozen=True, eq=False)
class KerrModes:
    r"""``H(φ) = φ† M φ + ½ Σ_i g_i |φ_i|⁴`` with ``M`` real symmetric; ``i φ̇ = Mφ + g|φ|²φ``.

    Arguments
    ---------
    coupling:
        ``M`` (``n × n``, real symmetric): on-site frequencies on the diagonal, hoppings off it.
    kerr:
        ``g`` (``n``): Kerr coefficient of each mode.
    learning, evaluation:
        Disjoint mode indices of the learning field ``Θ`` and of the evaluation field ``Ψ`` (their union
        need not be every mode).
    inputs, outputs:
        Mode indices (within ``evaluation``) where inputs are written at ``t = 0`` and outputs read at ``T``.
    name:
        A label.
    lattice_shape:
        ``(Lx, Ly)`` of the learning lattice when there is one (for plots).
    """

    coupling: np.ndarray
    kerr: np.ndarray
    learning: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    evaluation: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    inputs: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    outputs: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    name: str = "Kerr modes"
    lattice_shape: tuple[int, int] | None = None

    def __post_init__(self):
        if np.iscomplexobj(self.coupling) and np.any(np.imag(self.coupling) != 0):
            raise InputError("coupling must be a real symmetric matrix: time reversal is complex conjugation only "
                             "when M is real (a complex Hermitian coupling, a synthetic gauge field, breaks it)")
        M = as_finite_array(np.real(self.coupling), "coupling", ndim=2)
        if M.shape[0] != M.shape[1] or M.shape[0] == 0:
            raise InputError(f"coupling must be a non-empty square matrix, got shape {M.shape}")
        if not np.allclose(M, M.T, rtol=0.0, atol=1e-14 * max(1.0, float(np.abs(M).max()))):
            raise InputError("coupling must be symmetric (M_ij = M_ji, a Hermitian real matrix)")
        n = M.shape[0]
        g = as_finite_array(np.broadcast_to(self.kerr, (n,)) if np.ndim(self.kerr) == 0 else self.kerr, "kerr",
                            shape=(n,))
        learning = _indices(self.learning, "learning", n)
        evaluation = _indices(self.evaluation, "evaluation", n)
        if set(learning.tolist()) & set(evaluation.tolist()):
            raise InputError("learning and evaluation must be disjoint sets of modes")
        inputs, outputs = _indices(self.inputs, "inputs", n), _indices(self.outputs, "outputs", n)
        for label, idx in (("inputs", inputs), ("outputs", outputs)):
            if not set(idx.tolist()) <= set(evaluation.tolist()):
                raise InputError(f"{label} must be modes of the evaluation field {evaluation.tolist()}, "
                                 f"got {idx.tolist()}")
        for key, value in (("coupling", 0.5 * (M + M.T)), ("kerr", g.copy()), ("learning", learning),
                           ("evaluation", evaluation), ("inputs", inputs), ("outputs", outputs)):
            object.__setattr__(self, key, value)

    @property
    def n(self) -> int:
        """Number of modes."""
        return self.coupling.shape[0]

    def check_state(self, phi, name: str = "phi") -> np.ndarray:
        """``phi`` as a complex array of shape ``(B, n)`` (a single state ``(n,)`` becomes ``B = 1``)."""
        arr = as_finite_array(phi, name, dtype=complex)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.n:
            raise InputError(f"{name} must have shape (B, {self.n}) or ({self.n},) for the {self.n} modes of "
                             f"{self.name}, got {np.shape(phi)}")
        return arr

    def hamiltonian(self, phi) -> np.ndarray:
        """``H(φ)`` per batch member (real)."""
        phi = self.check_state(phi)
        a2 = np.abs(phi) ** 2
        return np.real(np.einsum("bi,ij,bj->b", phi.conj(), self.coupling, phi)) + 0.5 * a2 ** 2 @ self.kerr

    def vector_field(self, phi) -> np.ndarray:
        """``φ̇ = −i (Mφ + g|φ|²φ)``."""
        phi = self.check_state(phi)
        return -1j * (phi @ self.coupling.T + self.kerr * np.abs(phi) ** 2 * phi)

    def state(self, learning_field, evaluation_field) -> np.ndarray:
        """The full state ``φ`` (``(B, n)``, zero on modes of neither field) from ``Θ`` and ``Ψ``.

        ``learning_field`` is ``(n_Θ,)`` (shared by the batch) or ``(B, n_Θ)``; ``evaluation_field`` is
        ``(B, n_Ψ)`` (or ``(n_Ψ,)``).
        """
        theta = as_finite_array(learning_field, "learning_field", dtype=complex)
        psi = as_finite_array(evaluation_field, "evaluation_field", dtype=complex)
        nl, ne = self.learning.size, self.evaluation.size
        if theta.shape[-1:] != (nl,) or theta.ndim > 2:
            raise InputError(f"learning_field must have shape ({nl},) or (B, {nl}), got {theta.shape}")
        if psi.shape[-1:] != (ne,) or psi.ndim > 2:
            raise InputError(f"evaluation_field must have shape ({ne},) or (B, {ne}), got {psi.shape}")
        psi = np.atleast_2d(psi)
        B = psi.shape[0] if theta.ndim == 1 else theta.shape[0]
        if psi.shape[0] not in (1, B):
            raise InputError(f"learning_field and evaluation_field disagree on the batch size: "
                             f"{theta.shape} and {psi.shape}")
        phi = np.zeros((B, self.n), complex)
        phi[:, self.learning] = theta
        phi[:, self.evaluation] = psi
        return phi

    def input_state(self, values) -> np.ndarray:
        """Evaluation-field states ``(B, n_Ψ)``: ``values`` ``(B, n_inputs)`` on the input ports, zero elsewhere."""
        v = as_finite_array(values, "values", dtype=complex)
        v = np.atleast_2d(v)
        if v.ndim != 2 or v.shape[1] != self.inputs.size:
            raise InputError(f"values must have shape (B, {self.inputs.size}) (one column per input port), "
                             f"got {np.shape(values)}")
        psi = np.zeros((v.shape[0], self.evaluation.size), complex)
        where = {m: j for j, m in enumerate(self.evaluation.tolist())}
        psi[:, [where[m] for m in self.inputs.tolist()]] = v
        return psi


def _lattice_hopping(lx: int, ly: int, J: float) -> np.ndarray:
    """Nearest-neighbour hopping matrix of an ``lx × ly`` open square lattice, sites numbered ``x·ly + y``."""
    n = lx * ly
    M = np.zeros((n, n))
    for x in range(lx):
        for y in range(ly):
            s = x * ly + y
            if x + 1 < lx:
                M[s, s + ly] = M[s + ly, s] = J
            if y + 1 < ly:
                M[s, s + 1] = M[s + 1, s] = J
    return M


def _size(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _real(value, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a real number, got {value!r}") from exc
    if not np.isfinite(v):
        raise InputError(f"{name} must be finite, got {value!r}")
    return v


def kerr_lattice(lx: int, ly: int, J: float = 10.0, g: float = -2.0, omega: float = 0.0) -> KerrModes:
    """An ``lx × ly`` Kerr lattice (hopping ``J``, Kerr ``g``, on-site ``ω``), every mode a learning mode."""
    lx, ly = _size(lx, "lx"), _size(ly, "ly")
    M = _lattice_hopping(lx, ly, _real(J, "J")) + _real(omega, "omega") * np.eye(lx * ly)
    return KerrModes(M, np.full(lx * ly, _real(g, "g")), learning=np.arange(lx * ly),
                     name=f"{lx}x{ly} Kerr lattice", lattice_shape=(lx, ly))


def kerr_cavity_array(lx: int = 4, ly: int = 4, J: float = 10.0, g: float = -2.0, kappa: float = 0.3,
                      port_sites=None, port_frequencies=0.0, port_kerr: float | None = None,
                      inputs=(0, 1), outputs=(0,)) -> KerrModes:
    r"""The HEB cavity array: a learning lattice ``Θ`` with port modes ``Ψ`` (the evaluation field).

    ``H = J Σ_<ab> (Θ_a* Θ_b + c.c.) + κ Σ_j (Ψ_j* Θ_s(j) + c.c.) + Σ_j ω_j |Ψ_j|² + ½ g Σ |Θ_a|⁴
    + ½ g_port Σ |Ψ_j|⁴``.  Modes ``0 … lx·ly − 1`` are the lattice (site ``(x, y)`` is ``x·ly + y``),
    modes ``lx·ly + j`` the ports.

    Arguments
    ---------
    lx, ly:
        Lattice size (the paper: 4 × 4).
    J, g, kappa:
        Hopping, Kerr coefficient of the lattice, port–site coupling.
    port_sites:
        Lattice sites ``(x, y)`` the ports attach to; default the four corners (fewer when the lattice is a
        line or a point).
    port_frequencies:
        ``ω_j`` (one number or one per port).
    port_kerr:
        Kerr coefficient of the ports (default ``g``, as in the paper where every cavity is nonlinear).
    inputs, outputs:
        Port numbers (positions in ``port_sites``) written at ``t = 0`` / read at ``T``.
    """
    lx, ly = _size(lx, "lx"), _size(ly, "ly")
    J, g, kappa = _real(J, "J"), _real(g, "g"), _real(kappa, "kappa")
    gp = g if port_kerr is None else _real(port_kerr, "port_kerr")
    if port_sites is None:
        port_sites = list(dict.fromkeys([(0, 0), (0, ly - 1), (lx - 1, 0), (lx - 1, ly - 1)]))
    sites = []
    for s in port_sites:
        if len(tuple(s)) != 2 or not all(isinstance(c, (int, np.integer)) for c in s) \
                or not (0 <= s[0] < lx and 0 <= s[1] < ly):
            raise InputError(f"port_sites must be lattice sites (x, y) with 0 <= x < {lx}, 0 <= y < {ly}, got {s!r}")
        sites.append(int(s[0]) * ly + int(s[1]))
    n_lat, n_port = lx * ly, len(sites)
    if n_port == 0:
        raise InputError("port_sites must name at least one lattice site")
    omega = as_finite_array(np.broadcast_to(port_frequencies, (n_port,)) if np.ndim(port_frequencies) == 0
                            else port_frequencies, "port_frequencies", shape=(n_port,))
    ports = np.arange(n_lat, n_lat + n_port)
    M = np.zeros((n_lat + n_port, n_lat + n_port))
    M[:n_lat, :n_lat] = _lattice_hopping(lx, ly, J)
    M[ports, ports] = omega
    M[ports, sites] = M[sites, ports] = kappa
    for label, value in (("inputs", inputs), ("outputs", outputs)):
        _indices(value, f"{label} (port numbers)", n_port)  # the ports must exist
    return KerrModes(M, np.r_[np.full(n_lat, g), np.full(n_port, gp)], learning=np.arange(n_lat),
                     evaluation=ports, inputs=ports[list(inputs)], outputs=ports[list(outputs)],
                     name=f"{lx}x{ly} Kerr cavity array with {n_port} ports", lattice_shape=(lx, ly))


# -- costs at the final time ------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class _OutputCost:
    system: KerrModes
    targets: np.ndarray

    def __post_init__(self):
        if not isinstance(self.system, KerrModes):
            raise InputError(f"system must be a KerrModes, got {type(self.system).__name__}")
        if self.system.outputs.size == 0:
            raise InputError(f"system ({self.system.name}) has no output ports to read a cost from")
        y = as_finite_array(self.targets, "targets", dtype=self._dtype)
        y = np.atleast_2d(y)
        if y.ndim != 2 or y.shape[1] != self.system.outputs.size:
            raise InputError(f"targets must have shape (B, {self.system.outputs.size}) (one column per output "
                             f"port), got {np.shape(self.targets)}")
        object.__setattr__(self, "targets", y)

    _dtype = float

    def _outputs(self, phi) -> np.ndarray:
        phi = self.system.check_state(phi)
        if phi.shape[0] != self.targets.shape[0]:
            raise InputError(f"phi has batch size {phi.shape[0]} but the cost has {self.targets.shape[0]} targets")
        return phi, phi[:, self.system.outputs]

    def total(self, phi) -> float:
        """``C = Σ_b C_b``."""
        return float(np.sum(self.value(phi)))

    def gradient(self, phi) -> np.ndarray:
        """``G = 2 ∂C/∂φ*`` (``(B, n)``)."""
        return 2.0 * self.wirtinger(phi)


class IntensityCost(_OutputCost):
    r"""``C_b = ½ Σ_o (|φ_o|² − y_bo)²`` at the output ports (a photodetector reading).

    ``∂C/∂φ_o* = (|φ_o|² − y) φ_o``.
    """

    def value(self, phi) -> np.ndarray:
        _, out = self._outputs(phi)
        return 0.5 * np.sum((np.abs(out) ** 2 - self.targets) ** 2, axis=1)

    def wirtinger(self, phi) -> np.ndarray:
        phi, out = self._outputs(phi)
        d = np.zeros_like(phi)
        d[:, self.system.outputs] = (np.abs(out) ** 2 - self.targets) * out
        return d


class AmplitudeCost(_OutputCost):
    r"""``C_b = ½ Σ_o |φ_o − y_bo|²`` (complex targets); ``∂C/∂φ_o* = ½ (φ_o − y)``."""

    _dtype = complex

    def value(self, phi) -> np.ndarray:
        _, out = self._outputs(phi)
        return 0.5 * np.sum(np.abs(out - self.targets) ** 2, axis=1)

    def wirtinger(self, phi) -> np.ndarray:
        phi, out = self._outputs(phi)
        d = np.zeros_like(phi)
        d[:, self.system.outputs] = 0.5 * (out - self.targets)
        return d
