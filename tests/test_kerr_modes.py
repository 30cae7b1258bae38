"""Kerr mode systems (glep.modes) and their Strang splitting (glep.ivp.modes).

Checked: the exact sub-flows, order 2 of the Strang step, exact conservation of the norm, time reversal
by complex conjugation (one step and whole runs retrace to round-off), the discrete adjoint against a
Taylor test and central differences, and input errors naming the argument.
"""

import numpy as np
import pytest
from scipy.linalg import expm

from glep.errors import InputError
from glep.estimators.metrics import fit_slope
from glep.ivp.modes import StrangKerr, adjoint, echo, loss, propagate, retrace_error
from glep.modes import AmplitudeCost, IntensityCost, KerrModes, kerr_cavity_array, kerr_lattice

EPS = np.finfo(float).eps


def _state(system, seed, B=3, scale=0.5):
    rng = np.random.default_rng(seed)
    return scale * (rng.standard_normal((B, system.n)) + 1j * rng.standard_normal((B, system.n)))


def _direction(shape, seed):
    rng = np.random.default_rng(1000 + seed)
    d = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    return d / np.linalg.norm(d)


# -- the model ------------------------------------------------------------------------------------
def test_cavity_array_layout():
    s = kerr_cavity_array(4, 4, J=10.0, g=-2.0, kappa=0.3)
    assert s.n == 20 and s.learning.tolist() == list(range(16)) and s.evaluation.tolist() == [16, 17, 18, 19]
    # ports at the four corners, coupled with κ; lattice hoppings J to the nearest neighbours only
    assert [int(np.flatnonzero(s.coupling[p, :16])[0]) for p in s.evaluation] == [0, 3, 12, 15]
    assert np.allclose(s.coupling[s.evaluation][:, [0, 3, 12, 15]], 0.3 * np.eye(4))
    assert np.count_nonzero(s.coupling[:16, :16]) == 2 * 24 and set(np.unique(s.coupling[:16, :16])) == {0.0, 10.0}
    assert s.inputs.tolist() == [16, 17] and s.outputs.tolist() == [16]
    assert np.all(s.kerr == -2.0)


def test_hamiltonian_and_vector_field_agree():
    """``φ̇ = −i ∂H/∂φ*``: the vector field is the Wirtinger derivative of H, by central differences."""
    s = kerr_cavity_array(2, 3)
    phi = _state(s, 0, B=1)
    d = _direction(phi.shape, 0)
    f = s.vector_field(phi)
    # dH = Re Σ (2 ∂H/∂φ*)* δφ and 2 ∂H/∂φ* = 2i φ̇
    fd = (s.hamiltonian(phi + 1e-6 * d) - s.hamiltonian(phi - 1e-6 * d))[0] / 2e-6
    assert np.isclose(fd, np.real(np.sum(np.conj(2j * f) * d)), rtol=1e-7)


# -- the integrator -------------------------------------------------------------------------------
def test_linear_and_kerr_parts_are_exact_flows():
    lin = kerr_cavity_array(3, 2, g=0.0)
    phi = _state(lin, 1)
    exact = phi @ expm(-1j * 1.7 * lin.coupling).T
    assert np.max(np.abs(propagate(lin, phi, 1.7, 3) - exact)) < 1e3 * EPS
    kerr = KerrModes(np.zeros((4, 4)), np.array([-2.0, 1.0, 0.5, 3.0]))
    phi = _state(kerr, 2)
    exact = np.exp(-1j * kerr.kerr * np.abs(phi) ** 2 * 1.7) * phi
    assert np.max(np.abs(propagate(kerr, phi, 1.7, 5) - exact)) < 1e3 * EPS


def test_strang_step_has_order_two():
    s = kerr_cavity_array(2, 2, J=2.0, g=-2.0, kappa=1.0)
    phi = _state(s, 3, scale=0.4)
    ref = propagate(s, phi, 2.0, 16384)
    steps = [64, 128, 256, 512]
    errors = [np.max(np.abs(propagate(s, phi, 2.0, n) - ref)) for n in steps]
    slope = fit_slope([1.0 / n for n in steps], errors)
    assert 1.9 < slope < 2.1, (errors, slope)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_norm_is_conserved_and_energy_error_is_second_order(seed):
    s = kerr_cavity_array(3, 3, J=10.0, g=-2.0, kappa=1.0)
    phi = _state(s, seed, scale=0.3)
    drift = []
    for n in (400, 800, 1600):
        traj = propagate(s, phi, 5.0, n, store=True)
        # every sub-flow is unitary or a phase: Σ|φ|² is conserved to round-off at every step
        norms = np.linalg.norm(traj, axis=2)
        assert np.max(np.abs(norms - norms[0])) < 1e2 * n * EPS * np.max(norms)
        energy = s.hamiltonian(traj.reshape(-1, s.n)).reshape(n + 1, -1)
        drift.append(np.max(np.abs(energy - energy[0])))
    assert 1.8 < np.log2(drift[0] / drift[1]) < 2.2 and 1.8 < np.log2(drift[1] / drift[2]) < 2.2, drift


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conjugation_is_time_reversal_of_one_step(seed):
    """``conj ∘ S_h ∘ conj = S_h^{-1}``: one step forward, conjugate, one step, conjugate returns the state."""
    s = kerr_cavity_array(4, 4)
    stepper = StrangKerr(s, 20.0, 500)
    phi = _state(s, seed)
    back = np.conj(stepper.step(np.conj(stepper.step(phi))))
    assert np.max(np.abs(back - phi)) < 50 * EPS * np.max(np.abs(phi))


def test_echo_retraces_the_paper_run_to_round_off():
    """4×4 lattice, J = 10, g = −2, T = 20 in 500 steps: forward, conjugate, forward, conjugate.

    In exact arithmetic the echo is the inverse; the error is round-off amplified by the chaotic growth of the
    Kerr lattice (measured 3e-12 here, against 1 for a non-reversible step).  The error grows with N but stays
    many orders below the HEB signal (η = 1e-4).
    """
    s = kerr_cavity_array(4, 4, J=10.0, g=-2.0, kappa=0.3)
    phi = s.state(np.full(16, 0.25), s.input_state(0.8 * np.array([[1.0, 1.0], [1.0, 0.0]])))
    errors = [retrace_error(s, phi, 20.0 * n / 500, n) for n in (125, 250, 500)]
    assert max(errors) < 1e-10, errors
    assert np.max(np.abs(echo(s, propagate(s, phi, 20.0, 500), 20.0, 500) - phi)) < 1e-10


# -- the discrete adjoint -------------------------------------------------------------------------
def _costs(s, B):
    rng = np.random.default_rng(7)
    return [IntensityCost(s, rng.random((B, s.outputs.size))),
            AmplitudeCost(s, rng.standard_normal((B, s.outputs.size)) + 1j * rng.standard_normal((B, s.outputs.size)))]


@pytest.mark.parametrize("which", [0, 1], ids=["intensity", "amplitude"])
@pytest.mark.parametrize("seed", [0, 1])
def test_adjoint_passes_the_taylor_test(which, seed):
    s = kerr_cavity_array(3, 3, J=10.0, g=-2.0, kappa=1.0, outputs=(0, 3))
    phi = _state(s, seed, B=2, scale=0.4)
    cost = _costs(s, 2)[which]
    C, G = adjoint(s, phi, 10.0, 200, cost)
    d = _direction(phi.shape, seed)
    eps = [1e-2 * 2.0 ** -k for k in range(6)]
    rem = [abs(loss(s, phi + e * d, 10.0, 200, cost) - C - e * np.real(np.sum(np.conj(G) * d))) for e in eps]
    slope = np.polyfit(np.log(eps), np.log(rem), 1)[0]
    assert slope >= 1.9, (rem, slope)
    fd = (loss(s, phi + 1e-6 * d, 10.0, 200, cost) - loss(s, phi - 1e-6 * d, 10.0, 200, cost)) / 2e-6
    assert np.isclose(fd, np.real(np.sum(np.conj(G) * d)), rtol=1e-6, atol=1e-9 * np.linalg.norm(G))


# -- input errors ---------------------------------------------------------------------------------
def test_bad_models_are_refused():
    with pytest.raises(InputError, match="coupling must be a real symmetric matrix"):
        KerrModes(np.array([[0.0, 1j], [-1j, 0.0]]), 0.0)
    with pytest.raises(InputError, match="coupling must be symmetric"):
        KerrModes(np.array([[0.0, 1.0], [2.0, 0.0]]), 0.0)
    with pytest.raises(InputError, match="kerr must have shape"):
        KerrModes(np.zeros((2, 2)), [1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="learning and evaluation must be disjoint"):
        KerrModes(np.zeros((2, 2)), 0.0, learning=[0, 1], evaluation=[1])
    with pytest.raises(InputError, match="inputs must be modes of the evaluation field"):
        KerrModes(np.zeros((3, 3)), 0.0, learning=[0], evaluation=[1, 2], inputs=[0])
    with pytest.raises(InputError, match="learning must hold mode indices in"):
        KerrModes(np.zeros((2, 2)), 0.0, learning=[5])
    with pytest.raises(InputError, match="lx must be an integer >= 1"):
        kerr_lattice(0, 3)
    with pytest.raises(InputError, match="port_sites must be lattice sites"):
        kerr_cavity_array(2, 2, port_sites=[(0, 5)])
    with pytest.raises(InputError, match=r"outputs \(port numbers\) must hold mode indices in \[0, 4\)"):
        kerr_cavity_array(2, 2, outputs=(7,))
    with pytest.raises(InputError, match="J must be finite"):
        kerr_cavity_array(2, 2, J=np.inf)


def test_bad_runs_are_refused():
    s = kerr_cavity_array(2, 2)
    with pytest.raises(InputError, match="steps must be an integer >= 1"):
        propagate(s, np.zeros(s.n), 1.0, 0)
    with pytest.raises(InputError, match="T must be a finite number > 0"):
        propagate(s, np.zeros(s.n), -1.0, 10)
    with pytest.raises(InputError, match=r"phi0 must have shape \(B, 8\)"):
        propagate(s, np.zeros(5), 1.0, 10)
    with pytest.raises(InputError, match="phi0 contains non-finite values"):
        propagate(s, np.full(s.n, np.nan), 1.0, 10)
    with pytest.raises(InputError, match="system must be a glep.modes.KerrModes"):
        propagate("lattice", np.zeros(s.n), 1.0, 10)
    with pytest.raises(InputError, match=r"targets must have shape \(B, 1\)"):
        IntensityCost(s, np.zeros((4, 2)))
    with pytest.raises(InputError, match="has no output ports"):
        IntensityCost(kerr_lattice(2, 2), np.zeros((1, 1)))
    with pytest.raises(InputError, match=r"values must have shape \(B, 2\)"):
        s.input_state(np.zeros((4, 3)))
