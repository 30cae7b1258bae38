r"""Strang splitting of Kerr mode systems, its discrete adjoint and the conjugation echo.

For ``H = φ†Mφ + ½ Σ g|φ|⁴`` (:class:`glep.modes.KerrModes`) both parts have exact flows:

* the quadratic part, ``L_τ φ = e^{−iτM} φ`` (a unitary matrix, from the eigen-decomposition of the real
  symmetric ``M``);
* the Kerr part, ``K_τ φ = e^{−iτ g|φ|²} φ`` (it conserves every ``|φ_i|``, so its flow is explicit).

One step is the symmetric (Strang) composition ``S_h = L_{h/2} ∘ K_h ∘ L_{h/2}``.  It is

* **symplectic**: a composition of exact Hamiltonian flows;
* **symmetric**: ``S_h^{-1} = S_{−h}``; hence of even order, here **order 2** (global error ``O(h²)``,
  checked in ``tests/test_kerr_modes.py``);
* **time-reversible under conjugation**: ``conj ∘ L_τ ∘ conj = L_{−τ}`` and ``conj ∘ K_τ ∘ conj = K_{−τ}``
  because ``M`` and ``g`` are real, so ``conj ∘ S_h ∘ conj = S_{−h} = S_h^{-1}`` *exactly* (in exact
  arithmetic).  The echo — conjugate, run the same ``N`` steps forward, conjugate — is therefore the exact
  inverse of the discrete flow map ``F = S_h^N``; in floating point it retraces to round-off
  (:func:`retrace_error`).

The discrete loss is ``C(F(φ₀))`` for a cost at the final time.  Its gradient ``G₀ = 2 ∂C/∂φ₀*`` (the module
convention of :mod:`glep.modes`) is computed by the discrete adjoint of the same steps (:func:`adjoint`):
with the real inner product ``⟨a, b⟩ = Re Σ a* b``, the adjoint of ``L_τ`` is ``L_τ^H`` and that of ``K_τ``
at ``a`` (``b = K_τ a``, ``θ = τ g |a|²``) is

    λ_a = e^{iθ} λ_b + 2 τ g Im(λ_b* b) a          (elementwise),

starting from ``λ_N = 2 ∂C/∂φ_N*``.
"""

from __future__ import annotations

import numpy as np

from glep.errors import InputError
from glep.modes import KerrModes
from glep.validation import check_positive


def _steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise InputError(f"steps must be an integer >= 1, got {steps!r}")
    return int(steps)


def _system(system) -> KerrModes:
    if not isinstance(system, KerrModes):
        raise InputError(f"system must be a glep.modes.KerrModes, got {type(system).__name__}")
    return system


class StrangKerr:
    r"""The Strang step ``S_h = L_{h/2} K_h L_{h/2}`` of a :class:`KerrModes` system (``h = T/steps``).

    Arguments
    ---------
    system:
        The mode system.
    T:
        Duration (> 0).
    steps:
        Number of steps ``N``.
    """

    def __init__(self, system: KerrModes, T: float, steps: int):
        self.system = _system(system)
        self.T = check_positive(T, "T")
        self.steps = _steps(steps)
        self.h = self.T / self.steps
        lam, V = np.linalg.eigh(system.coupling)
        # row-vector convention: φ_row ↦ φ_row @ U.T with U = V e^{−iτΛ} Vᵀ (symmetric, so U.T = U)
        self._half = (V * np.exp(-0.5j * self.h * lam)) @ V.T
        self._full = (V * np.exp(-1j * self.h * lam)) @ V.T
        self._hg = self.h * system.kerr

    def kerr(self, a: np.ndarray) -> np.ndarray:
        """``K_h a = e^{−i h g |a|²} a``."""
        return np.exp(-1j * self._hg * (a.real ** 2 + a.imag ** 2)) * a

    def step(self, phi: np.ndarray) -> np.ndarray:
        """One step ``S_h φ`` (``φ`` of shape ``(B, n)``)."""
        return self.kerr(phi @ self._half) @ self._half

    def propagate(self, phi0, store: bool = False) -> np.ndarray:
        """``F(φ₀) = S_h^N φ₀`` (shape ``(B, n)``), or the whole trajectory ``(N+1, B, n)`` when ``store``.

        Without ``store`` the half steps of consecutive steps are fused (``L_{h/2} L_{h/2} = L_h``).
        """
        phi = self.system.check_state(phi0, "phi0")
        if store:
            out = np.empty((self.steps + 1,) + phi.shape, complex)
            out[0] = phi
            for k in range(self.steps):
                out[k + 1] = self.step(out[k])
            return out
        a = phi @ self._half
        for _ in range(self.steps - 1):
            a = self.kerr(a) @ self._full
        return self.kerr(a) @ self._half

    def echo(self, phi_T) -> np.ndarray:
        """Time-reversed run: ``conj(F(conj(φ_T)))`` — equal to ``F^{-1}(φ_T)`` (see the module docstring)."""
        return np.conj(self.propagate(np.conj(self.system.check_state(phi_T, "phi_T"))))

    def adjoint(self, trajectory: np.ndarray, lam_T: np.ndarray) -> np.ndarray:
        """Pull a cotangent ``λ_N`` back through the stored trajectory: ``λ₀ = (DF)ᵀ λ_N`` (real pairing)."""
        lam = np.array(lam_T, dtype=complex)
        half_h = np.conj(self._half)  # U^H in the row convention: λ_row ↦ λ_row @ conj(U)
        for k in range(self.steps - 1, -1, -1):
            a = trajectory[k] @ self._half
            b = self.kerr(a)
            lam_b = lam @ half_h
            lam_a = np.exp(1j * self._hg * np.abs(a) ** 2) * lam_b + 2.0 * self._hg * np.imag(np.conj(lam_b) * b) * a
            lam = lam_a @ half_h
        return lam


def propagate(system: KerrModes, phi0, T: float, steps: int, *, store: bool = False) -> np.ndarray:
    """Integrate ``i φ̇ = Mφ + g|φ|²φ`` from ``φ₀`` over ``[0, T]`` with ``steps`` Strang steps (order 2)."""
    return StrangKerr(system, T, steps).propagate(phi0, store=store)


def echo(system: KerrModes, phi_T, T: float, steps: int) -> np.ndarray:
    """The conjugation echo ``conj(F(conj(φ_T)))`` (the exact inverse of the discrete flow)."""
    return StrangKerr(system, T, steps).echo(phi_T)


def retrace_error(system: KerrModes, phi0, T: float, steps: int) -> float:
    """``‖echo(F(φ₀)) − φ₀‖ / ‖φ₀‖``: zero in exact arithmetic, round-off in floating point."""
    stepper = StrangKerr(system, T, steps)
    phi0 = system.check_state(phi0, "phi0")
    back = stepper.echo(stepper.propagate(phi0))
    return float(np.linalg.norm(back - phi0) / np.linalg.norm(phi0))


def adjoint(system: KerrModes, phi0, T: float, steps: int, cost) -> tuple[float, np.ndarray]:
    """Discrete adjoint of the Strang map: ``(C, G₀)`` with ``C = Σ_b C_b(F(φ₀))`` and ``G₀ = 2 ∂C/∂φ₀*``.

    ``cost`` is a final-time cost of :mod:`glep.modes` (``value``, ``wirtinger``).  Cost: one stored forward
    pass and one backward sweep (which recomputes the half steps).
    """
    stepper = StrangKerr(system, T, steps)
    traj = stepper.propagate(phi0, store=True)
    lam_T = 2.0 * cost.wirtinger(traj[-1])
    return float(np.sum(cost.value(traj[-1]))), stepper.adjoint(traj, lam_T)


def loss(system: KerrModes, phi0, T: float, steps: int, cost) -> float:
    """``C = Σ_b C_b(F(φ₀))`` of the discrete flow."""
    return float(np.sum(cost.value(propagate(system, phi0, T, steps))))
