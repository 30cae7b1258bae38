"""``glep train`` on the finite-element task ``boundary-trajectory``: the CBVP contrast against the FE adjoint.

Each sample pins ``q(0)`` and ``q(T)`` of the driven chain; its trajectory is the CBVP's Newton solution on
the FE backend and the loss a running tracking cost.  The residual-free contrast (:mod:`glep.estimators.cbvp`)
is the gradient of the discrete ``C_h`` up to its ``O(β²)`` centred bias (relative ``~1e-9`` at ``β = 1e-4``,
recorded by the alignment history), so the estimator-trained run follows the adjoint-trained run to
round-off; the 10 % bound is the issue's must-show.  Newton warm-starts from each sample's last solution,
which the checkpoint stores: a resumed run repeats the uninterrupted one's solves.
"""

import numpy as np
import pytest

from glep.errors import InputError, SolverError
from glep.estimators.train import CHECKPOINT, RESULTS, run_training
from glep.tasks import make_boundary_task
from glep.train_config import train_config


def small(output, **tables) -> dict:
    """4 training samples of a 3-oscillator chain on 40 elements, 6 updates of 2 samples."""
    cfg = {"task": {"name": "boundary-trajectory", "train_size": 4, "validation_size": 2},
           "optimizer": {"name": "adam", "learning_rate": 0.1},
           "training": {"iterations": 6, "batch_size": 2, "eval_every": 3, "checkpoint_every": 2},
           "run": {"output": str(output)}}
    for table, values in tables.items():
        cfg[table] = {**cfg.get(table, {}), **values}
    return cfg


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cbvp_reaches_the_fe_adjoint_runs_loss(tmp_path, seed):
    """Full-batch Adam on 3 samples (minibatches of 2 of them differ too much for a monotone curve; the
    validation loss of 2 held-out samples need not fall with so few: measured 0.07–0.6 of the start at
    learning rate 0.05, the training loss 0.18–0.63 at 0.02)."""
    cfg = small(tmp_path, task={"seed": seed, "train_size": 3}, optimizer={"learning_rate": 0.02},
                training={"alignment": True, "batch_size": 3})
    outcome = run_training(train_config(cfg))
    final, adjoint = outcome.final_losses(), outcome.runs["adjoint"].history.train_loss
    assert adjoint[-1] < 0.75 * adjoint[0], "the adjoint-trained run must learn something"
    assert abs(final["cbvp"] - final["adjoint"]) <= 0.1 * final["adjoint"], final
    h = outcome.runs["cbvp"].history
    assert len(h.alignment_error) == 6 and max(h.alignment_error) < 1e-6  # O(β²) bias, β = 1e-4
    assert min(h.alignment_cosine) > 1 - 1e-9


def test_the_teacher_fits_its_own_targets():
    task = make_boundary_task(train_size=2, validation_size=1, seed=3)
    from glep.bvp.adjoint import discrete_loss

    teacher = [discrete_loss(task.solve(task.teacher, "train", i).problem) for i in range(2)]
    student = [discrete_loss(task.solve(task.params, "train", i).problem) for i in range(2)]
    assert max(teacher) < 1e-20 * max(student) and min(student) > 0


def test_resume_continues_to_the_uninterrupted_history(tmp_path):
    whole = run_training(train_config(small(tmp_path / "whole")))
    cfg = train_config(small(tmp_path / "cut"))
    first = run_training(cfg, stop_after=3)
    assert not first.finished and (tmp_path / "cut" / CHECKPOINT).exists()
    rest = run_training(cfg, resume=True)
    assert rest.finished and (tmp_path / "cut" / RESULTS).exists()
    for name, run in whole.runs.items():
        np.testing.assert_allclose(rest.runs[name].theta, run.theta, rtol=1e-13, atol=0)
        np.testing.assert_allclose(rest.runs[name].state["warm"], run.state["warm"], rtol=1e-13, atol=1e-15)
        for key in ("train_loss", "validation_loss"):
            np.testing.assert_allclose(getattr(rest.runs[name].history, key), getattr(run.history, key),
                                       rtol=1e-13, atol=0)


@pytest.mark.parametrize("change, message", [
    ({"estimators": {"names": ["echo"]}}, r"config key 'estimators.names': 'echo' does not apply to the task "
                                          r"'boundary-trajectory' \(a CBVP solved by finite elements\); train it "
                                          r"with 'cbvp'"),
    ({"estimators": {"names": ["cbvp", "pfvp"]}}, r"config key 'estimators.names': 'pfvp' does not apply"),
    ({"estimators": {"nudge": "complex"}}, r"config key 'estimators.nudge': 'cbvp' nudges with a real β"),
    ({"estimators": {"objective": True}}, r"config key 'estimators.objective': J_β is computed for the "
                                          r"time-stepping tasks only"),
    ({"task": {"integrator": "midpoint"}}, r"config key 'task.integrator': applies to the tasks 'drive-trajectory', "
                                           r"'sinusoid-classes' only, not to 'boundary-trajectory'"),
    ({"task": {"backend": "jax"}}, r"config key 'task.backend': applies to the tasks"),
    ({"task": {"assembler": "petsc"}}, r"config key 'task.assembler': expected one of"),
])
def test_time_stepping_rows_and_keys_are_refused_naming_the_key(tmp_path, change, message):
    with pytest.raises(InputError, match=message):
        train_config(small(tmp_path, **change))


def test_a_failed_solve_stops_the_run_with_its_reason(tmp_path, monkeypatch):
    """A Newton failure (here injected after the checks, in the second update) is the run's error, naming the
    sample and the run; no results file is written."""
    import glep.estimators.cbvp as cbvp_module

    real, calls = cbvp_module.solve_free, []

    def fails_later(*args, **kwargs):
        calls.append(1)
        if len(calls) > 20:
            raise SolverError("Newton did not converge (DIVERGED_LINE_SEARCH)")
        return real(*args, **kwargs)

    monkeypatch.setattr(cbvp_module, "solve_free", fails_later)
    with pytest.raises(SolverError, match=r"the CBVP of (train|validation) sample \d \((adjoint|cbvp) run\) has no "
                                          r"solution from its guess: Newton did not converge \(DIVERGED_LINE_SEARCH\)"):
        run_training(train_config(small(tmp_path)))
    assert not (tmp_path / RESULTS).exists()
