"""The built-in field densities and their exact solutions (glep.field_models).

The exact solutions are checked by substitution into their equations with
fourth-order central differences: the residual must fall like ``h⁴`` (fitted),
which a wrong solution or a wrong equation cannot do.  The densities are
checked by deriving their Euler–Lagrange equations with UFL at a point.
"""

import numpy as np
import pytest

from glep import field_models as fm
from glep.errors import InputError
from glep.fields import FieldLagrangian, FieldParameter


def _d1(f, x, t, h, axis):
    e = (h, 0.0) if axis == 0 else (0.0, h)
    return (-f(x + 2 * e[0], t + 2 * e[1]) + 8 * f(x + e[0], t + e[1]) - 8 * f(x - e[0], t - e[1])
            + f(x - 2 * e[0], t - 2 * e[1])) / (12 * h)


def _d2(f, x, t, h, axis):
    e = (h, 0.0) if axis == 0 else (0.0, h)
    return (-f(x + 2 * e[0], t + 2 * e[1]) + 16 * f(x + e[0], t + e[1]) - 30 * f(x, t)
            + 16 * f(x - e[0], t - e[1]) - f(x - 2 * e[0], t - 2 * e[1])) / (12 * h * h)


CASES = {
    "kg standing wave": (lambda x, t: fm.klein_gordon_standing_wave(x, t, k=2, L=3.0, mu=0.7),
                         lambda u, x, t, h, f: _d2(f, x, t, h, 1) - _d2(f, x, t, h, 0) + 0.7 * u),
    "sg breather": (lambda x, t: fm.sine_gordon_breather(x, t, m=0.5),
                    lambda u, x, t, h, f: _d2(f, x, t, h, 1) - _d2(f, x, t, h, 0) + np.sin(u)),
    "sg kink": (lambda x, t: fm.sine_gordon_kink(x, t, c=0.2),
                lambda u, x, t, h, f: _d2(f, x, t, h, 1) - _d2(f, x, t, h, 0) + np.sin(u)),
    "phi4 kink": (lambda x, t: fm.phi4_kink(x, t, v=0.3),
                  lambda u, x, t, h, f: _d2(f, x, t, h, 1) - _d2(f, x, t, h, 0) - u + u**3),
    "nls soliton": (lambda x, t: fm.nls_soliton(x, t, eta=1.2, xi=0.4, x0=0.3, phase=0.1),
                    lambda u, x, t, h, f: 1j * _d1(f, x, t, h, 1) + _d2(f, x, t, h, 0) + 2 * np.abs(u) ** 2 * u),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_exact_solutions_solve_their_equations(name):
    f, residual = CASES[name]
    rng = np.random.default_rng(7)
    x, t = rng.uniform(-2, 2, 20), rng.uniform(0, 3, 20)
    hs = np.array([0.04, 0.02, 0.01])
    errs = [np.max(np.abs(residual(f(x, t), x, t, h, f))) for h in hs]
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert slope == pytest.approx(4.0, abs=0.5), (name, errs)


def _euler_lagrange(model, phi, phi_t, phi_tt, grad_phi, hess_phi, theta):
    """EL residual ``∂ℒ/∂φ − d/dt ∂ℒ/∂φ_t − ∇·∂ℒ/∂∇φ`` by UFL differentiation at one point (1-D)."""
    import ufl
    from ufl.algorithms import expand_derivatives

    c = model.components
    # differentiate with ufl.variable wrappers of (φ, φ_t, ∇φ), evaluated at constant values
    ph = ufl.variable(ufl.as_vector(phi) if c > 1 else ufl.as_ufl(phi))
    pt = ufl.variable(ufl.as_vector(phi_t) if c > 1 else ufl.as_ufl(phi_t))
    gp = ufl.variable(ufl.as_matrix([[g] for g in grad_phi]) if c > 1 else ufl.as_vector([grad_phi]))
    th = {k: ufl.as_ufl(v) for k, v in theta.items()}
    L = model(ph, pt, gp, th, None, 0.0)

    def ev(expr):
        e = expand_derivatives(expr)
        return np.array([float(e[i]) for i in range(c)]) if c > 1 else np.array([float(e)])

    dL_dphi = ev(ufl.diff(L, ph))
    # d/dt ∂ℒ/∂φ_t and ∇·∂ℒ/∂∇φ: the densities are quadratic in (φ_t, ∇φ) with coefficients that depend
    # on θ only (or linear in φ_t with φ-linear coefficients for NLS), so the chain rule is explicit here
    Ht = ufl.diff(ufl.diff(L, pt), pt)
    Hx = ufl.diff(ufl.diff(L, gp), gp)
    Htp = ufl.diff(ufl.diff(L, pt), ph)
    Ht_, Hx_, Htp_ = (expand_derivatives(M) for M in (Ht, Hx, Htp))

    def mat(M, shape):
        return np.array([[float(M[i, j]) for j in range(shape[1])] for i in range(shape[0])]) if c > 1 \
            else np.array([[float(M)]])

    ddt = mat(Ht_, (c, c)) @ np.atleast_1d(phi_tt) + mat(Htp_, (c, c)) @ np.atleast_1d(phi_t)
    if c > 1:
        hx = np.array([[float(Hx_[i, 0, j, 0]) for j in range(c)] for i in range(c)])
    else:
        hx = np.array([[float(Hx_[0, 0])]])
    div = hx @ np.atleast_1d(hess_phi)
    return dL_dphi - ddt - div


def test_densities_give_their_equations():
    """Each density's Euler–Lagrange residual, derived by UFL, equals the stated equation at a point."""
    phi, phi_t, phi_tt, gx, gxx = 0.3, -0.2, 0.5, 0.7, -1.1
    kg = fm.klein_gordon(mu=0.8, lam=0.4)
    r = _euler_lagrange(kg, phi, phi_t, phi_tt, gx, gxx, {"mu": 0.8, "lam": 0.4})
    assert r[0] == pytest.approx(-(phi_tt - gxx + 0.8 * phi + 0.4 * phi**3), rel=1e-14)
    sg = fm.sine_gordon(kappa=1.3)
    r = _euler_lagrange(sg, phi, phi_t, phi_tt, gx, gxx, {"kappa": 1.3})
    assert r[0] == pytest.approx(-(phi_tt - gxx + 1.3 * np.sin(phi)), rel=1e-14)
    wv = fm.wave(kappa=2.0)
    r = _euler_lagrange(wv, phi, phi_t, phi_tt, gx, gxx, {"kappa": 2.0})
    assert r[0] == pytest.approx(-(phi_tt - 2.0 * gxx), rel=1e-14)
    # NLS: u = a + ib, i u_t + u_xx − V u + g|u|²u = 0 ⇔ the EL equations of (b, a) up to sign
    a, b, at, bt, axx, bxx = 0.3, -0.4, 0.2, 0.6, -0.5, 0.9
    r = _euler_lagrange(fm.nls(g=1.5, potential=0.25), [a, b], [at, bt], [0.0, 0.0], [0.1, 0.2], [axx, bxx],
                        {"V": 0.25, "g": 1.5})
    u, ut, uxx = a + 1j * b, at + 1j * bt, axx + 1j * bxx
    eq = 1j * ut + uxx - 0.25 * u + 1.5 * abs(u) ** 2 * u
    # δ/δa gives 2 Re(eq) and δ/δb gives 2 Im(eq) for this normalisation
    assert r == pytest.approx([2 * eq.real, 2 * eq.imag], rel=1e-13)


def test_reversal_and_parameters():
    assert fm.wave().reversal_signs == ((1,), (-1,))
    assert fm.nls().reversal_signs == ((1, -1), (-1, 1))
    assert set(fm.klein_gordon().field_parameters) == {"mu"}
    assert set(fm.klein_gordon().scalar_parameters) == {"lam"}


@pytest.mark.parametrize("kwargs, match", [
    ({"density": 3}, "density must be a function"),
    ({"density": lambda **k: 0, "components": 0}, "components must be an integer >= 1"),
    ({"density": lambda **k: 0, "parameters": {"a b": FieldParameter("scalar", 1.0)}}, "identifiers"),
    ({"density": lambda **k: 0, "parameters": {"a": 1.0}}, "must be a FieldParameter"),
    ({"density": lambda **k: 0, "reversal": ((1,), (2,))}, "reversal must be two tuples"),
])
def test_bad_field_lagrangian(kwargs, match):
    with pytest.raises(InputError, match=match):
        FieldLagrangian(**kwargs)


@pytest.mark.parametrize("args, match", [
    (("vector", 1.0), "kind must be"),
    (("scalar", lambda x: x), "needs a number"),
    (("field", "x"), "must be a number or a function"),
    (("field", 1.0, ("Q", 1)), "element must be"),
    (("field", 1.0, ("P", 0)), "element must be"),
])
def test_bad_field_parameter(args, match):
    with pytest.raises(InputError, match=match):
        FieldParameter(*args)
