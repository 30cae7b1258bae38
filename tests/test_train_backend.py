"""``task.backend = "jax"``: the time-stepping tasks trained with the JAX-compiled Störmer–Verlet loops.

The compiled path runs the same loops on the same terms as the NumPy path (:mod:`glep.ivp.compiled`), and
the task's data (the teacher's targets) are computed with the NumPy loops whatever the backend, so the jax
run repeats the numpy run's history to round-off: the estimators' centred differences divide it by ``2β``
(``β = 1e-2`` here keeps that near ``1e-13``), a few Adam updates amplify it little (bound ``1e-10``).
Refusals name the key and come before any training work.
"""

import numpy as np
import pytest

import glep.estimators.train as train_module
from glep.errors import InputError
from glep.estimators.train import run_training
from glep.ivp import compiled
from glep.train_config import train_config

needs_jax = pytest.mark.skipif(not compiled.available(),
                               reason="the compiled path needs the optional extra JAX: pip install 'glep[jax]'")


def small(output, **task) -> dict:
    return {"task": {"n": 3, "T": 4.0, "steps": 40, "train_size": 8, "validation_size": 4, **task},
            "estimators": {"names": ["echo"], "beta": 1e-2},
            "optimizer": {"name": "adam", "learning_rate": 0.05},
            "training": {"iterations": 3, "batch_size": 4, "eval_every": 3, "checkpoint_every": 3},
            "run": {"output": str(output)}}


@needs_jax
def test_the_jax_run_repeats_the_numpy_runs_history(tmp_path):
    numpy_run = run_training(train_config(small(tmp_path / "numpy", backend="numpy")))
    jax_run = run_training(train_config(small(tmp_path / "jax", backend="jax")))
    for name, run in numpy_run.runs.items():
        other = jax_run.runs[name]
        np.testing.assert_allclose(other.theta, run.theta, rtol=1e-10, atol=0)
        for key in ("train_loss", "validation_loss"):
            np.testing.assert_allclose(getattr(other.history, key), getattr(run.history, key), rtol=1e-10, atol=0)
    assert numpy_run.final_losses()["adjoint"] < numpy_run.runs["adjoint"].history.validation_loss[0]


@pytest.fixture
def no_work(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("training started although the backend was refused")

    monkeypatch.setattr(train_module, "local_gradient", refuse)
    monkeypatch.setattr(train_module, "local_evaluation", refuse)


@pytest.mark.parametrize("task, message", [
    ({"integrator": "midpoint"}, r"config key 'task.backend': backend 'jax' compiles the explicit Störmer–Verlet "
                                 r"loop; task.integrator 'midpoint' is implicit"),
    ({"gamma": 0.2}, r"config key 'task.backend': backend 'jax' cannot run the task's network: .* is not separable"),
])
def test_refusals_name_the_key_before_any_work(tmp_path, monkeypatch, no_work, task, message):
    monkeypatch.setattr(compiled, "available", lambda: True)  # the refusal does not depend on JAX here
    with pytest.raises(InputError, match=message):
        run_training(train_config(small(tmp_path / "out", backend="jax", **task)))
    assert not (tmp_path / "out").exists()


def test_refused_without_jax(tmp_path, monkeypatch, no_work):
    monkeypatch.setattr(compiled, "available", lambda: False)
    with pytest.raises(InputError, match=r"config key 'task.backend': backend 'jax' needs the optional extra JAX "
                                         r"\(pip install 'glep\[jax\]'\), which is not installed"):
        run_training(train_config(small(tmp_path / "out", backend="jax")))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("cfg, message", [
    ({"task": {"backend": "torch"}}, r"config key 'task.backend': expected one of"),
    ({"task": {"name": "kerr-xor", "backend": "jax"}},
     r"config key 'task.backend': applies to the tasks 'drive-trajectory', 'sinusoid-classes' only, not to 'kerr-xor'"),
])
def test_backend_key_is_checked(cfg, message):
    with pytest.raises(InputError, match=message):
        train_config(cfg)


@needs_jax
def test_minibatches_share_one_compiled_system(tmp_path):
    """Every minibatch's system is made of the task's one set of terms and cost objects: the compiled
    loops (cached per those objects) are traced once per task, not once per minibatch."""
    compiled.clear_cache()
    cfg = small(tmp_path / "jax", backend="jax")
    cfg["training"].update(iterations=6, eval_every=6, checkpoint_every=6)
    run_training(train_config(cfg))
    assert compiled.cache_info()["systems"] == 1
