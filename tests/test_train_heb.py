"""``glep train`` on ``kerr-xor``: a Kerr cavity array learning XOR with HEB, against the Strang map's adjoint.

Centred HEB is the gradient of the discrete loss up to its ``O(η²)`` bias (``tests/test_heb.py``), so its run
follows the adjoint-trained run to round-off; the gradient read from an averaged HEB update (decay steps
with masses ``±m``) carries an ``O(η/m)`` relative error.  With SGD at rate ``B η/m`` (the minibatch gradient
is the mean over its ``B`` samples, the HEB update adds their changes) the ``heb-averaged`` run *is* the
physical averaged HEB update (:func:`glep.estimators.heb.heb_update`): the echo and the decay do the step,
the optimizer only reads it back.
"""

import numpy as np
import pytest

from glep.errors import InputError
from glep.estimators.heb import heb_update
from glep.estimators.train import run_training
from glep.tasks import make_mode_task
from glep.train_config import train_config


def small(output, **tables) -> dict:
    """The 3×3 array in 200 Strang steps, the 4 XOR patterns, 10 full-batch Adam updates."""
    cfg = {"task": {"name": "kerr-xor"}, "estimators": {"names": ["heb", "heb-averaged"]},
           "optimizer": {"name": "adam", "learning_rate": 0.05},
           "training": {"iterations": 10, "eval_every": 5, "checkpoint_every": 5},
           "run": {"output": str(output)}}
    for table, values in tables.items():
        cfg[table] = {**cfg.get(table, {}), **values}
    return cfg


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_heb_reaches_the_adjoint_runs_loss(tmp_path, seed):
    outcome = run_training(train_config(small(tmp_path, task={"seed": seed}, training={"alignment": True})))
    final, adjoint = outcome.final_losses(), outcome.runs["adjoint"].history
    assert final["adjoint"] < 0.7 * adjoint.validation_loss[0], "the adjoint-trained run must learn something"
    for name in ("heb", "heb-averaged"):
        assert abs(final[name] - final["adjoint"]) <= 0.1 * final["adjoint"], (name, final)
        assert outcome.runs[name].history.accuracy[-1] == adjoint.accuracy[-1]
    heb, averaged = outcome.runs["heb"].history, outcome.runs["heb-averaged"].history
    assert max(heb.alignment_error) < 1e-6  # centred, η = 1e-4: O(η²)
    assert 1e-6 < max(averaged.alignment_error) < 1e-2  # O(η/m) = 1e-4 times the landscape's factor


def test_heb_averaged_with_sgd_at_rate_eta_over_m_is_the_physical_update(tmp_path):
    eta, mass = 1e-4, 1e-4 / 0.3
    cfg = small(tmp_path, estimators={"names": ["heb-averaged"], "beta": eta, "mass": mass},
                optimizer={"name": "sgd", "learning_rate": 4 * eta / mass}, training={"iterations": 1, "eval_every": 1})
    outcome = run_training(train_config(cfg))
    task = make_mode_task()
    new, _ = heb_update(task.problem(task.params, "train", np.arange(4)), eta, mass, averaged=True)
    np.testing.assert_allclose(outcome.runs["heb-averaged"].theta, new.real, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("change, message", [
    ({"estimators": {"names": ["echo"]}}, r"config key 'estimators.names': 'echo' does not apply to the task "
                                          r"'kerr-xor' \(a Kerr cavity array, Strang-stepped complex modes\); train "
                                          r"it with 'heb' or 'heb-averaged'"),
    ({"estimators": {"names": ["cbvp"]}}, r"config key 'estimators.names': 'cbvp' does not apply to the task "
                                          r"'kerr-xor'"),
    ({"estimators": {"names": ["heb"], "mass": 2.0}}, r"config key 'estimators.mass': the learning mass m applies "
                                                       r"to 'heb-averaged' only"),
    ({"estimators": {"nudge": "complex"}}, r"config key 'estimators.nudge': 'heb' nudges with a real β \(η\) only"),
    ({"task": {"gamma": 0.1}}, r"config key 'task.gamma': applies to the tasks 'drive-trajectory', "
                               r"'sinusoid-classes' only, not to 'kerr-xor'"),
    ({"task": {"noise": -0.1}}, r"config key 'task.noise': expected a finite number >= 0, got -0.1"),
    ({"training": {"batch_size": 5}}, r"config key 'training.batch_size': expected at most task.train_size = 4"),
])
def test_other_rows_and_keys_are_refused_naming_the_key(tmp_path, change, message):
    with pytest.raises(InputError, match=message):
        train_config(small(tmp_path, **change))


def test_noisy_inputs_cycle_the_four_patterns():
    task = make_mode_task(train_size=8, validation_size=4, noise=0.05, seed=4)
    assert task.train.labels.tolist() == [0, 1, 1, 0] * 2
    clean = 0.7 * np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 2)
    assert 0 < np.max(np.abs(task.train.drives - clean)) < 0.5
