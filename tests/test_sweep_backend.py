"""glep sweep: ``backend = "numpy" | "jax"`` of an ODE system (where its Störmer–Verlet loops run).

The compiled path runs the same loops on the same terms as the NumPy path (:mod:`glep.ivp.compiled`), so a
study's items with ``backend = "jax"`` give the NumPy items' numbers to round-off: the exact quantity (each
row's ground truth, the discrete adjoint) to 1e-12 relative, the rows' gradients at the report β to the
round-off of their contrast amplified by 1/β (as in tests/test_cli_backend.py).  Where the compiled loop
cannot run, the key is refused before any work, named.
"""

import re

import numpy as np
import pytest

import glep.estimators.sweep as sweep_module
from glep.errors import InputError
from glep.estimators.study import load_study
from glep.estimators.sweep import run_sweep
from glep.ivp import compiled
from glep.sweep_config import sweep_config

TIGHT = 1e-12  # quantities without a 1/β: the discrete adjoint (each row's ground truth)
BETA = 1e-3  # the report β
LOOSE = 64 * np.finfo(float).eps / BETA  # a finite-difference nudge divides the round-off by β
needs_jax = pytest.mark.skipif(not compiled.available(),
                               reason="the compiled path needs the optional extra JAX: pip install 'glep[jax]'")
SYSTEMS = [{"family": "hru_logcosh", "n": 3, "steps": 40, "batch": 2, "seeds": 2},
           {"family": "coupled_oscillators", "n": 3, "T": 3.0, "steps": 32}]
ROWS = ["civp-residual", "rhel"]  # each compiled item costs seconds of jit compilation


def _study(tmp_path, systems, names=ROWS):
    return sweep_config({"systems": systems, "estimators": {"names": names, "nudges": ["centred"], "betas": [BETA],
                                                           "report_beta": BETA},
                         "run": {"output": str(tmp_path / "study.h5")}})


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-300))


@needs_jax
def test_jax_items_equal_numpy_items(tmp_path):
    systems = [*SYSTEMS, *({**s, "backend": "jax"} for s in SYSTEMS)]
    outcome = run_sweep(_study(tmp_path, systems))
    assert not outcome.failed, outcome.failed
    study = load_study(tmp_path / "study.h5")
    by = {}
    for item in study.items.values():
        p = item["params"]
        by[(p["system"] % len(SYSTEMS), p["seed"], p["estimator"], p["backend"])] = item
    pairs = [(k[:3], item, by[(*k[:3], "jax")]) for k, item in by.items() if k[3] == "numpy"]
    assert len(pairs) == len(SYSTEMS) * len(ROWS) and len(by) == 2 * len(pairs)
    for key, np_item, jax_item in pairs:
        assert np_item["status"] == jax_item["status"] == "ok", key
        assert np_item["truth"] and np_item["truth"].keys() == jax_item["truth"].keys(), key
        for k in np_item["truth"]:
            assert _rel(np_item["truth"][k], jax_item["truth"][k]) <= TIGHT, (key, k)
        for k in np_item["gradient"]:
            assert _rel(np_item["gradient"][k], jax_item["gradient"][k]) <= LOOSE, (key, k)
        assert jax_item["metrics"]["cosine"] == pytest.approx(np_item["metrics"]["cosine"], rel=LOOSE), key


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a work item starts (the checks must come first)."""
    def refuse(*args, **kwargs):
        raise AssertionError("a work item ran although the study was invalid")

    monkeypatch.setattr(sweep_module, "run_item", refuse)


REFUSED = [
    ({"family": "wave", "n": 8, "steps": 4, "backend": "jax"}, ["field-echo"],
     "config key 'systems[0].backend': backend 'jax' does not apply to the field system 'wave' (the compiled path "
     "is the ODE Störmer–Verlet loop)"),
    ({"family": "coupled_oscillators", "n": 2, "steps": 8, "integrator": "midpoint", "backend": "jax"}, ["pfvp"],
     "config key 'systems[0].backend': backend 'jax' compiles the explicit Störmer–Verlet loop; the integrator "
     "'midpoint' is implicit (use 'stormer-verlet' or backend 'numpy')"),
    ({"family": "gyroscopic", "n": 2, "steps": 8, "backend": "jax"}, ["pfvp"],
     "config key 'systems[0].backend': backend 'jax' cannot run this system: gyroscopic oscillators (n=2, γ=0.1) "
     "is not separable (Gyroscopic depends on the velocity v)"),
    ({"family": "coupled_oscillators", "n": 2, "steps": 8, "backend": "torch"}, ["pfvp"],
     "config key 'systems[0].backend': "),
]


@pytest.mark.parametrize("system, names, expected", REFUSED, ids=["field", "implicit", "non-separable", "unknown"])
def test_a_backend_that_cannot_apply_is_refused_before_any_work(system, names, expected, tmp_path, no_work):
    with pytest.raises(InputError, match=re.escape(expected)):
        run_sweep(_study(tmp_path, [system], names))
    assert not (tmp_path / "study.h5").exists()


def test_jax_missing_is_refused_before_any_work(tmp_path, monkeypatch, no_work):
    monkeypatch.setattr(compiled, "available", lambda: False)
    with pytest.raises(InputError, match=re.escape(
            "config key 'systems[0].backend': backend 'jax' needs the optional extra JAX (pip install 'glep[jax]'), "
            "which is not installed; use backend 'numpy'")):
        run_sweep(_study(tmp_path, [{"family": "coupled_oscillators", "n": 2, "steps": 8, "backend": "jax"}]))


def test_the_default_backend_leaves_the_stored_configuration_as_before(tmp_path):
    """A study started before the key existed resumes: ``backend = "numpy"`` is not part of the stored study."""
    numpy_study = _study(tmp_path, [{"family": "coupled_oscillators", "n": 2, "backend": "numpy"}]).study_dict()
    assert "backend" not in numpy_study["systems"][0]
    assert _study(tmp_path, [{"family": "coupled_oscillators", "n": 2, "backend": "jax"}]).study_dict()[
        "systems"][0]["backend"] == "jax"
