"""Hamiltonian Echo Backpropagation on Kerr cavity arrays (glep.estimators.heb).

Checked against the discrete adjoint of the same Strang map (itself certified in tests/test_kerr_modes.py):
centred HEB within 1e-6 relative at η = 1e-4 for the learning field (the parameter field) and for the
evaluation field's initial state; the bias orders of the one-sided (1) and centred (2) read-outs; the bias of
plain HEB learning updates (proportional to the learning mass m, independent of η) and its removal by averaged
HEB (error of order η/m); and XOR trained with HEB updates to 4/4 from several random initial fields.
"""

import numpy as np
import pytest

from glep.errors import InputError, SolverError
from glep.estimators.heb import (
    HEB,
    ModeAdjoint,
    ModeProblem,
    decay_step,
    heb,
    heb_update,
    mode_adjoint,
    train,
    update_gradient,
)
from glep.estimators.metrics import compare, fit_slope
from glep.modes import AmplitudeCost, IntensityCost, kerr_cavity_array

XOR_BITS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR = np.array([0, 1, 1, 0])


def _problem(seed: int, *, lattice=(4, 4), steps=500, cost="intensity", kappa=0.3) -> ModeProblem:
    """The paper's array (J = 10, g = −2, T = 20) with a random real learning field and perturbed inputs."""
    s = kerr_cavity_array(*lattice, J=10.0, g=-2.0, kappa=kappa, outputs=(0, 3))
    rng = np.random.default_rng(seed)
    theta = rng.random(s.learning.size)
    theta /= np.linalg.norm(theta)
    psi = s.input_state(0.8 * XOR_BITS + 0.05 * rng.standard_normal(XOR_BITS.shape))
    targets = rng.random((4, 2))
    c = IntensityCost(s, 0.3 * targets) if cost == "intensity" else AmplitudeCost(s, targets * np.exp(2j * targets))
    return ModeProblem(s, c, theta, psi, T=20.0, steps=steps)


def _rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("cost", ["intensity", "amplitude"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_centred_heb_matches_the_discrete_adjoint(seed, cost):
    p = _problem(seed, cost=cost)
    g, truth = heb(p, 1e-4), mode_adjoint(p)
    assert np.isclose(g.loss, truth.loss, rtol=1e-12)
    assert _rel(g.learning, truth.learning) <= 1e-6  # the parameter field Θ(0)
    assert _rel(g.evaluation, truth.evaluation) <= 1e-6  # the initial state Ψ(0) of every input
    metrics = compare(g.as_estimate().theta, truth.as_estimate().theta)
    assert metrics["relative_error"] <= 1e-6 and metrics["cosine"] > 1 - 1e-12
    assert g.passes == 3 and HEB().passes == 3 and HEB().truth == ModeAdjoint()


def test_bias_orders_of_the_one_sided_and_centred_read_outs():
    p = _problem(3, lattice=(3, 3), steps=300)
    truth = mode_adjoint(p)
    etas = [1e-2 * 2.0 ** -k for k in range(5)]
    slopes = {}
    for scheme in ("one-sided", "centred"):
        errors = [_rel(heb(p, e, scheme).learning, truth.learning) for e in etas]
        slopes[scheme] = fit_slope(etas, errors)
    assert 0.9 < slopes["one-sided"] < 1.1 and 1.9 < slopes["centred"] < 2.1, slopes


def test_the_estimator_object_is_the_function():
    p = _problem(4, lattice=(3, 3), steps=100)
    a, b = HEB(1e-3, "one-sided")(p), heb(p, 1e-3, "one-sided")
    assert np.array_equal(a.learning, b.learning) and a.passes == 2
    assert np.array_equal(ModeAdjoint()(p).learning, mode_adjoint(p).learning)


def test_plain_heb_update_is_biased_in_proportion_to_the_mass_and_averaged_heb_removes_it():
    """Learning with the decay step: plain HEB reads ``∂C/∂x − m ∂C/∂y``, averaged HEB ``∂C/∂x + O(η/m)``.

    Measured: the plain error is proportional to m (fitted order 1) and does not shrink with η; the averaged
    error is of order 1 in η/m, far below the plain one at the same (η, m).
    """
    p = _problem(5, lattice=(3, 3), steps=300)
    truth = mode_adjoint(p)
    gx, gy = truth.learning.real, truth.learning.imag
    assert np.linalg.norm(gy) > 0.05 * np.linalg.norm(gx)  # the cost depends on the learning field's momentum
    masses = [1e-2, 1e-1, 1.0]
    plain = [_rel(update_gradient(p, 1e-5, m, averaged=False), gx) for m in masses]
    assert 0.95 < np.polyfit(np.log(masses), np.log(plain), 1)[0] < 1.05, plain
    # the bias is m ∂C/∂y, to O(η/m)
    for m, err in zip(masses, plain):
        assert np.isclose(err, m * np.linalg.norm(gy) / np.linalg.norm(gx), rtol=0.05)
    assert np.isclose(_rel(update_gradient(p, 1e-4, 1.0, averaged=False), gx), plain[-1], rtol=0.02)
    pairs = [(1e-3, 1.0), (1e-4, 1.0), (1e-5, 1.0), (1e-4, 0.1), (1e-5, 0.01)]
    averaged = [_rel(update_gradient(p, eta, m, averaged=True), gx) for eta, m in pairs]
    ratio = [eta / m for eta, m in pairs]
    assert 0.9 < np.polyfit(np.log(ratio), np.log(averaged), 1)[0] < 1.1, averaged
    assert averaged[1] < 1e-2 * plain[-1]  # η = 1e-4, m = 1: the bias is gone


def test_decay_step():
    theta = np.array([1.0 + 0.2j, -0.5 - 0.4j])
    assert np.allclose(decay_step(theta, 0.5), [1.4, -1.3])
    part = decay_step(theta, 2.0, damping=np.log(2.0))
    assert np.allclose(part, [1.05 + 0.1j, -0.6 - 0.2j])
    assert np.all(np.abs(decay_step(theta, 1e-6, cutoff=0.1).real - theta.real) < 0.1)
    with pytest.raises(InputError, match="mass must be a finite non-zero number"):
        decay_step(theta, 0.0)
    with pytest.raises(InputError, match="damping must be >= 0"):
        decay_step(theta, 1.0, damping=-1.0)


# -- XOR ------------------------------------------------------------------------------------------
AMPLITUDE, HIGH = 0.7, 0.3 * 0.7 ** 2  # input amplitude of a 1 bit; target output intensity of XOR = 1


def _xor_problem(seed: int) -> ModeProblem:
    """The example's small set-up: 3×3 lattice, J = 10, g = −2, κ = 1, T = 20 in 200 steps; inputs at ports
    0 and 1, output intensity read at port 3 (the far corner)."""
    s = kerr_cavity_array(3, 3, J=10.0, g=-2.0, kappa=1.0, inputs=(0, 1), outputs=(3,))
    theta = np.random.default_rng(seed).random(s.learning.size)
    return ModeProblem(s, IntensityCost(s, HIGH * XOR[:, None]), theta / np.linalg.norm(theta),
                       s.input_state(AMPLITUDE * XOR_BITS), T=20.0, steps=200)


def _margin(p: ModeProblem) -> float:
    """Smallest signed distance of the output intensity from the threshold HIGH/2 (positive: all 4 correct)."""
    intensity = np.abs(p.final_state()[:, p.system.outputs[0]]) ** 2
    return float(np.min(np.where(XOR == 1, intensity - HIGH / 2, HIGH / 2 - intensity)))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_xor_is_learned_with_averaged_heb_updates(seed):
    """Learning rate η/m = 0.3, displacements saturated at 0.1 (measured: 2–40 steps for seeds 0–7)."""
    p = _xor_problem(seed)
    run = train(p, eta=1e-4, mass=1e-4 / 0.3, iterations=200, cutoff=0.1, stop=lambda q: _margin(q) > 0.2 * HIGH)
    assert run.stopped_early, (seed, _margin(run.problem), run.losses[-1])
    assert _margin(run.problem) > 0.2 * HIGH  # 4/4 correct, each by 20 % of the output swing
    assert run.losses[-1] < run.losses[0] and run.passes == 4 * len(run.losses)


# -- input errors ---------------------------------------------------------------------------------
def test_bad_heb_input_is_refused():
    p = _problem(0, lattice=(2, 2), steps=20)
    with pytest.raises(InputError, match="eta must be a finite number > 0"):
        heb(p, 0.0)
    with pytest.raises(InputError, match="scheme must be 'centred' or 'one-sided'"):
        heb(p, 1e-4, "forward")
    with pytest.raises(InputError, match="problem must be a glep.estimators.heb.ModeProblem"):
        heb("problem")
    with pytest.raises(InputError, match="iterations must be an integer >= 1"):
        train(p, 1e-4, 1e-3, 0)
    other = kerr_cavity_array(2, 2, outputs=(0, 3))
    with pytest.raises(InputError, match="cost was built for another system"):
        ModeProblem(other, p.cost, p.learning_field, p.evaluation_field)
    with pytest.raises(InputError, match="evaluation_field has 2 inputs but the cost has 4 targets"):
        ModeProblem(p.system, p.cost, p.learning_field, p.evaluation_field[:2])
    with pytest.raises(InputError, match=r"learning_field must have shape \(4,\)"):
        ModeProblem(p.system, p.cost, np.zeros(3), p.evaluation_field)
    with pytest.raises(InputError, match="update_gradient reads"):
        update_gradient(p.with_learning_field(p.learning_field + 0.1j), 1e-4, 1.0, averaged=True)


def test_an_overflowing_echo_is_reported():
    p = _problem(0, lattice=(2, 2), steps=20)
    with pytest.raises(SolverError, match="the echo of .* overflowed"):
        heb(p, 1e300)
    with pytest.raises(SolverError, match="the echo of .* overflowed"):
        heb_update(p, 1e300, 1.0)


def test_training_results_are_written_atomically(tmp_path):
    import h5py

    from glep.estimators.heb import write_training
    from glep.estimators.output import ResultsWriteError

    p = _xor_problem(0)
    run = train(p, eta=1e-4, mass=1e-4 / 0.3, iterations=2)
    h5, png = write_training(tmp_path / "out", run, gradients={"adjoint": mode_adjoint(run.problem)},
                             arrays={"targets": HIGH * XOR}, config={"seed": 0}, stem="xor")
    with h5py.File(h5) as f:
        assert f.attrs["glep_format"] == "glep-heb-training/1" and f["losses"].shape == (2,)
        assert np.array_equal(f["learning_field"][()], run.problem.learning_field)
        assert f["gradients/adjoint/learning"].shape == (9,)
    assert png.stat().st_size > 0 and not list((tmp_path / "out").glob(".*.tmp"))
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ResultsWriteError, match="cannot write the training results to"):
        write_training(blocker / "out", run)
    with pytest.raises(InputError, match="training must be the result of glep.estimators.heb.train"):
        write_training(tmp_path, "run")
