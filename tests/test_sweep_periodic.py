"""glep sweep: the periodic row (q(0) = q(T), p(0) = p(T) on the finite-element backend) against its FE adjoint.

Residual-free, so the centred contrast at β = 1e-4 equals the FE discrete adjoint of the periodic ``C_h`` up to
its O(β²) bias and the Newton tolerance; a periodic problem whose trajectory is not isolated (an autonomous
system, or a resonance) is refused before work or fails with its reason.  The 2-rank run is
tests/mpi/test_sweep_mpi.py.
"""

import re
import textwrap

import numpy as np
import pytest

import glep.estimators.sweep as sweep_module
from glep.errors import InputError
from glep.estimators.cbvp import PERIODIC_LOSS, CBVPContrast, PeriodicContrast, _setup, solve_free
from glep.estimators.problem import Problem
from glep.estimators.study import load_study
from glep.estimators.sweep import build_model, expand, run_sweep
from glep.sweep_config import sweep_config

DRIVEN = [{"family": "coupled_oscillators", "n": 3, "T": 3.0, "steps": 40, "seeds": [0, 1]},
          {"family": "pendulum_chain", "n": 3, "T": 3.0, "steps": 40, "seeds": [0, 1]}]


def _config(systems, tmp_path, names=("periodic",), nudges=("one-sided", "centred"), betas=(1e-2, 1e-3, 1e-4)):
    return sweep_config({"systems": systems, "estimators": {"names": list(names), "nudges": list(nudges),
                                                            "betas": list(betas)},
                         "run": {"output": str(tmp_path / "study.h5")}})


def test_the_periodic_row_is_exact_for_its_loss_on_driven_systems(tmp_path):
    outcome = run_sweep(_config(DRIVEN, tmp_path))
    assert outcome.total == 4 and not outcome.failed
    for item in load_study(tmp_path / "study.h5").items.values():
        assert item["status"] == "ok", (item["id"], item["reason"])
        assert item["loss"] == PERIODIC_LOSS and item["label"] == "Periodic"
        # residual-free: centred bias O(β²) and the Newton tolerance at β = 1e-4, far below 1e-6
        assert item["metrics"]["relative_error"] <= 1e-6, item["id"]
        assert abs(item["slopes"]["centred"] - 2) < 0.1 and abs(item["slopes"]["one-sided"] - 1) < 0.1, item["id"]
        assert any(note.startswith("ground truth: FE discrete adjoint") for note in item["notes"]), item["notes"]


@pytest.mark.parametrize("system", DRIVEN, ids=lambda s: s["family"])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_zero_start_and_perturbed_starts_find_the_same_periodic_trajectory(system, seed, tmp_path):
    """Newton from the zero trajectory (the row's start) and from perturbed zero starts reach one trajectory."""
    point = expand(_config([{**system, "seeds": seed}], tmp_path))[0].point
    model = build_model(point)
    bc, mesh, guess = _setup(Problem.from_model(model, steps=point.steps), "periodic")
    assert guess is None  # no pinned end: the zero trajectory
    ref = solve_free(model.system, model.params, mesh, bc, rtol=1e-12, atol=1e-13).solution
    scale = np.max(np.abs(ref.q))
    rng = np.random.default_rng(seed)
    for _ in range(4):  # periodic perturbations of the zero start, up to half the solution's amplitude
        a = rng.uniform(-0.5, 0.5, model.system.n) * scale
        w, phi = rng.integers(1, 4), rng.uniform(0, 2 * np.pi)

        def start(t, a=a, w=w, phi=phi):
            return np.outer(a, np.sin(2 * np.pi * w * np.asarray(t) / mesh[0] + phi))

        got = solve_free(model.system, model.params, mesh, bc, guess=start, rtol=1e-12, atol=1e-13).solution
        assert np.max(np.abs(got.q - ref.q)) <= 1e-8 * scale


MODULE = '''
import math

import numpy as np

from glep.models import coupled_oscillators, hamiltonian_recurrent_unit
from glep.system import LagrangianSystem


def autonomous(n, seed, T=3.0):
    """The oscillator chain without its input drive: no term reads a signal or t."""
    model = coupled_oscillators(n, T=T, seed=seed)
    s = model.system
    system = LagrangianSystem(n, [t for t in s.terms if not t.inputs], cost=s.cost, signals=s.signals)
    model.system = system
    model.params = {k: v for k, v in model.params.items() if k in system.parameters}
    return model


def resonant(n, seed, T=2 * math.pi):
    """A driven linear unit with every frequency 1 over T = 2π: the periodic problem is resonant."""
    model = hamiltonian_recurrent_unit(n, T=T, seed=seed)
    model.params["A"] = np.eye(n)
    return model
'''


@pytest.fixture
def user_systems(tmp_path, monkeypatch):
    (tmp_path / "periodic_systems.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))


def test_an_autonomous_system_is_refused_before_any_work(tmp_path, user_systems, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a work item ran although the study was invalid")

    monkeypatch.setattr(sweep_module, "run_item", refuse)
    config = _config([{"factory": "periodic_systems:autonomous", "n": 2, "steps": 16},
                      {"family": "coupled_oscillators", "n": 2, "steps": 16, "batch": 2}], tmp_path)
    with pytest.raises(InputError) as info:
        run_sweep(config)
    message = str(info.value)
    assert re.search(r"config key 'estimators.names': 'periodic' cannot run on systems\[0\] "
                     r"\(periodic_systems:autonomous, n=2, seed=0\): the system is autonomous .* time-shift "
                     r"families, so the periodic problem's action Hessian is singular", message), message
    assert "'periodic' cannot run on systems[1] (coupled_oscillators, n=2, seed=0): the finite-element backend " \
           "solves one trajectory at a time (batch 2)" in message, message
    assert not (tmp_path / "study.h5").exists()


def test_a_resonant_periodic_problem_fails_with_its_reason_not_a_number(tmp_path, user_systems):
    outcome = run_sweep(_config([{"factory": "periodic_systems:resonant", "n": 2, "steps": 40}], tmp_path,
                                nudges=["centred"], betas=[1e-4]))
    assert [i for i, _ in outcome.failed] == ["000000-periodic"]
    item = load_study(tmp_path / "study.h5").items["000000-periodic"]
    assert item["status"] == "failed" and np.isnan(item["metrics"]["relative_error"])
    assert item["reason"].startswith("SingularHessianError: the action Hessian is numerically singular"), item
    assert not item["gradient"]


def test_the_periodic_estimator_object_states_its_loss_and_truth():
    est = PeriodicContrast()
    assert (est.name, est.label, est.loss, est.truth.loss) == ("periodic", "Periodic", PERIODIC_LOSS, PERIODIC_LOSS)
    assert est.truth.regular and not CBVPContrast().truth.regular and est.truth != CBVPContrast().truth


def test_the_report_shows_the_periodic_boundary_condition_like_the_others(tmp_path):
    from glep.estimators.sweep_report import by_boundary, markdown, plot_study, rows, to_csv, variants

    run_sweep(_config(DRIVEN[:1], tmp_path, names=("periodic", "cbvp", "pfvp"), nudges=["centred"],
                      betas=[1e-3, 1e-4]))
    study = load_study(tmp_path / "study.h5")
    groups = by_boundary(variants(study))
    assert {bc: sorted({v.estimator for v in vs}) for bc, vs in groups.items()} == \
        {"Periodic": ["periodic"], "CBVP": ["cbvp"], "PFVP (backward)": ["pfvp"]}
    table = markdown(study)
    assert f"| Periodic | {PERIODIC_LOSS} |" in table, table
    assert all(p.stat().st_size > 0 for p in plot_study(study, tmp_path / "plots"))
    assert [(r["estimator"], r["boundary"]) for r in rows(study)] == \
        [("periodic", "Periodic"), ("cbvp", "CBVP"), ("pfvp", "PFVP (backward)")]
    assert "Periodic" in to_csv(study).splitlines()[1]
