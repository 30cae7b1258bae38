"""Gradients on space-time solutions: the FE discrete adjoint is certified by a Taylor test; the CBVP and PFVP
contrasts match it (relative error <= 1e-6 at centred β = 1e-4) for a parameter field, in 1+1-D and 2+1-D."""

import dolfinx_solver  # noqa: F401  isort: skip

import numpy as np
import pytest
from mpi4py import MPI

from glep.bvp import spacetime as st
from glep.bvp.spacetime_gradients import adjoint_gradient, contrast_gradient, pfvp_contrast_gradient
from glep.errors import InputError
from glep.field_models import klein_gordon, wave

COMM = MPI.COMM_WORLD


def _kappa(X):
    return 1.0 + 0.3 * np.sin(np.pi * X[0])


def _problem_1d(lag=None, condition=None, params=None, n=12, nt=10, T=0.7):
    m = st.spacetime_mesh(COMM, 1.0, T, n, nt)
    cost = st.tracking_cost(lambda X: 0.5 * np.sin(np.pi * X[0]) * X[1], region=[(0.2, 0.8), (0.3, T)])
    condition = condition or st.SpaceTimeCBVP(lambda X: np.sin(np.pi * X[0]), lambda X: 0.4 * np.sin(2 * np.pi * X[0]))
    return st.SpaceTimeProblem(lag or wave(), m, condition, params=params or {"kappa": _kappa}, cost=cost,
                               terminal_cost=lambda phi, x: 0.5 * phi**2)


def _problem_2d():
    T = 0.5
    m = st.spacetime_mesh(COMM, [(0.0, 1.0), (0.0, 1.0)], T, 4, 4)

    def phi0(X):
        return np.sin(np.pi * X[0]) * np.sin(np.pi * X[1])

    cost = st.tracking_cost(0.2, region=[(0.25, 0.75), (0.0, 1.0), (0.2, T)])
    return st.SpaceTimeProblem(wave(), m, st.SpaceTimeCBVP(phi0, lambda X: 0.5 * phi0(X)),
                               params={"kappa": lambda X: 1.0 + 0.2 * X[0] * X[1]}, cost=cost)


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def test_adjoint_taylor_test():
    """C(θ + εd) − C(θ) − ε ∇C·d = O(ε²) for a field direction d (fitted slope ≥ 1.9) — nonlinear φ⁴ with a mass
    field μ(x) and a scalar coupling λ."""
    p = _problem_1d(klein_gordon(mu=1.0, lam=0.5), params={"mu": lambda X: 1.0 + X[0], "lam": 0.5})
    sol = st.solve(p)
    g = adjoint_gradient(p, sol)
    c0 = g.loss
    theta = p.params()
    rng = np.random.default_rng(0)
    d_mu = rng.standard_normal(theta["mu"].shape)
    d_lam = 0.7
    slope_dir = float(g.dual["mu"] @ d_mu + g.dual["lam"] * d_lam)
    eps = np.array([1e-2, 5e-3, 2.5e-3])
    rem = []
    for e in eps:
        p.set_params({"mu": theta["mu"] + e * d_mu, "lam": float(theta["lam"] + e * d_lam)})
        st.solve(p, sol)
        rem.append(abs(p.loss() - c0 - e * slope_dir))
    assert np.polyfit(np.log(eps), np.log(rem), 1)[0] >= 1.9, rem


def test_riesz_representative_is_labelled_and_consistent():
    """The Riesz representative r of the dual vector g satisfies M_x r = g (checked through rᵀ M_x r = gᵀ r)."""
    p = _problem_1d()
    g = adjoint_gradient(p, st.solve(p))
    assert g.method == "FE discrete adjoint"
    dual, riesz = g.dual["kappa"], g.riesz["kappa"]
    assert dual.shape == riesz.shape == (13,)
    # the mass-weighted norm: g·r = ‖r‖²_{L²}, positive, and r is smooth where g is mesh-scaled
    assert dual @ riesz > 0
    assert np.max(np.abs(riesz)) > np.max(np.abs(dual))  # g ~ h·r on a uniform mesh of 12 cells


@pytest.mark.parametrize("make", [_problem_1d, _problem_2d], ids=["1+1-D", "2+1-D"])
def test_cbvp_contrast_matches_adjoint(make):
    """Centred β = 1e-4: the CBVP contrast equals the discrete adjoint for the parameter field κ(x)."""
    p = make()
    sol = st.solve(p)
    truth = adjoint_gradient(p, sol)
    est = contrast_gradient(p, sol, 1e-4)
    assert _rel(est.flat(), truth.flat()) <= 1e-6
    assert abs(est.loss - truth.loss) <= 1e-12 * abs(truth.loss)  # the problem is left at the free solution


def test_cbvp_contrast_nonlinear_with_scalar():
    """φ⁴ Klein–Gordon with a mass field μ(x) and a scalar λ: contrast = adjoint for both kinds of parameter."""
    p = _problem_1d(klein_gordon(mu=1.0, lam=0.5), params={"mu": lambda X: 1.0 + X[0], "lam": 0.5})
    sol = st.solve(p)
    truth = adjoint_gradient(p, sol)
    est = contrast_gradient(p, sol, 1e-4)
    assert _rel(est.flat(), truth.flat()) <= 1e-6
    assert abs(est.dual["lam"] - truth.dual["lam"]) <= 1e-6 * abs(truth.dual["lam"])


def test_pfvp_contrast_matches_civp_adjoint():
    """PFVP: final-value problems through the free CIVP's (φ(T), p(T)), nudged ±β, against the CIVP's adjoint."""
    cond = st.SpaceTimeCIVP(lambda X: np.sin(np.pi * X[0]), lambda X: 0.5 * np.sin(2 * np.pi * X[0]))
    p = _problem_1d(condition=cond, n=10, nt=24)  # h_t/h_x = 0.29: below leapfrog's CFL limit 1/√3
    sol = st.solve(p)
    truth = adjoint_gradient(p, sol)
    est = pfvp_contrast_gradient(p, sol, 1e-4)
    assert _rel(est.flat(), truth.flat()) <= 1e-6


def test_gradient_bad_input():
    p = _problem_1d()
    sol = st.solve(p)
    with pytest.raises(InputError, match="beta must be a finite number > 0"):
        contrast_gradient(p, sol, -1.0)
    civp = _problem_1d(condition=st.SpaceTimeCIVP(lambda X: np.sin(np.pi * X[0]), 0.0), nt=24)
    with pytest.raises(InputError, match="leaves a boundary residual"):
        contrast_gradient(civp, st.solve(civp))
    with pytest.raises(InputError, match="starts from a free CIVP"):
        pfvp_contrast_gradient(p, sol)
    m = st.spacetime_mesh(COMM, 1.0, 0.5, 4, 4)
    nocost = st.SpaceTimeProblem(wave(), m, st.SpaceTimeCBVP())
    with pytest.raises(InputError, match="needs a cost"):
        adjoint_gradient(nocost, st.solve(nocost))


def test_piecewise_constant_field_and_triangles():
    """A DG0 parameter field on quadrilaterals, and a P1 field on triangles: contrast = adjoint."""
    p = _problem_1d(wave(element=("DG", 0)), params={"kappa": _kappa})
    assert p.field_coordinates("kappa").shape == (12, 1)  # one value per spatial cell
    sol = st.solve(p)
    assert _rel(contrast_gradient(p, sol, 1e-4).flat(), adjoint_gradient(p, sol).flat()) <= 1e-6
    T = 0.7
    m = st.spacetime_mesh(COMM, 1.0, T, 10, 8, cell="triangle")
    p = st.SpaceTimeProblem(wave(), m, st.SpaceTimeCBVP(lambda X: np.sin(np.pi * X[0]), 0.0),
                            params={"kappa": _kappa}, cost=st.tracking_cost(0.1, region=[(0.2, 0.8), (0.3, T)]))
    sol = st.solve(p)
    assert _rel(contrast_gradient(p, sol, 1e-4).flat(), adjoint_gradient(p, sol).flat()) <= 1e-6
    with pytest.raises(InputError, match="only \\('P', k\\) fields and \\('DG', 0\\)"):
        st.SpaceTimeProblem(wave(element=("DG", 0)), m, st.SpaceTimeCBVP())
