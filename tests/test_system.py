"""The system definition: Legendre transform, reversibility check, signals."""

import numpy as np

from glep import Signal
from glep.models import coupled_oscillators, gyroscopic_oscillators


def test_legendre_transform_general_and_separable():
    rng = np.random.default_rng(0)
    for model in (coupled_oscillators(3), gyroscopic_oscillators(4, gamma=0.7)):
        sys_, th = model.system, model.system.check_params(model.params)
        q, v = rng.standard_normal((2, 2, sys_.n))
        x = sys_.inputs_at(0.3)
        p = sys_.gradient(q, v, th, x, 0.3)[1]
        np.testing.assert_allclose(sys_.velocity_from_momentum(q, p, th, x, 0.3), v, atol=1e-12)
        # Hamilton's equation q̇ = ∂H/∂p, by central differences of H in p
        eps = 1e-6
        dH = np.stack([(sys_.hamiltonian(q, p + eps * e, th, x, 0.3) - sys_.hamiltonian(q, p - eps * e, th, x, 0.3))
                       / (2 * eps) for e in np.eye(sys_.n)], -1)
        np.testing.assert_allclose(dH, v, rtol=1e-7, atol=1e-8)


def test_reversibility_is_measured_not_declared():
    rev = coupled_oscillators(3)
    assert rev.system.reversibility_defect(rev.params) == 0.0
    gyro = gyroscopic_oscillators(4, gamma=0.2)
    d = gyro.system.reversibility_defect(gyro.params)
    assert d > 1e-3
    stronger = gyroscopic_oscillators(4, gamma=0.4)
    assert stronger.system.reversibility_defect(stronger.params) > d


def test_signal_reversal_and_interpolation():
    s = Signal.from_samples(np.array([[0.0], [1.0], [4.0]]), T=2.0)
    np.testing.assert_allclose(s(0.5), [[0.5]])
    np.testing.assert_allclose(s(1.5), [[2.5]])
    r = s.reversed(2.0)
    for t in (0.0, 0.3, 1.7, 2.0):
        np.testing.assert_allclose(r(t), s(2.0 - t))
