"""``glep train``: estimator-trained runs against the adjoint-trained run, configuration checks, resume, files.

The must-show of issue 10 in small: the echo and RHEL, exact for the task's time-reversible network
(their centred-nudge bias is ``O(β²)``), train from the adjoint run's initialisation on its minibatches
to a final loss within 10 % of the adjoint run's, on both built-in tasks and several seeds.
"""

import json
import tomllib
from pathlib import Path

import h5py
import numpy as np
import pytest

from glep.cli import main
from glep.errors import InputError
from glep.estimators.output import ResultsWriteError
from glep.estimators.train import (
    CHECKPOINT,
    PLOT,
    RESULTS,
    Optimizer,
    check_training,
    load_training,
    minibatch,
    run_training,
)
from glep.tasks import make_task
from glep.train_config import OptimizerSpec, train_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "train.toml"


def small(output, **tables) -> dict:
    """A training run small enough for seconds: 3 oscillators, 40 steps, 10 updates of 4 sequences."""
    cfg = {"task": {"n": 3, "T": 4.0, "steps": 40, "train_size": 8, "validation_size": 4},
           "estimators": {"names": ["echo", "rhel"]},
           "optimizer": {"name": "adam", "learning_rate": 0.05},
           "training": {"iterations": 10, "batch_size": 4, "eval_every": 5, "checkpoint_every": 4},
           "run": {"output": str(output)}}
    for table, values in tables.items():
        cfg[table] = {**cfg.get(table, {}), **values}
    return cfg


@pytest.mark.parametrize("task", ["drive-trajectory", "sinusoid-classes"])
@pytest.mark.parametrize("seed", [0, 1])
def test_echo_and_rhel_reach_the_adjoint_runs_loss(tmp_path, task, seed):
    shape = {"n": 3} if task == "drive-trajectory" else {"n": 4, "T": 6.0}  # 3 read-out oscillators, 1 driven
    cfg = train_config(small(tmp_path, task={"name": task, "seed": seed, **shape}))
    outcome = run_training(cfg)
    final = outcome.final_losses()
    adjoint = outcome.runs["adjoint"].history.validation_loss
    assert final["adjoint"] < 0.5 * adjoint[0], "the adjoint-trained run must learn something"
    for name in ("echo", "rhel"):
        assert abs(final[name] - final["adjoint"]) <= 0.1 * final["adjoint"], (name, final)
        assert final[name] < 0.5 * adjoint[0]


def test_large_beta_trains_and_plots_J_beta(tmp_path):
    cfg = train_config(small(tmp_path, estimators={"names": ["echo"], "beta": 0.3, "nudge": "one-sided",
                                                    "objective": True},
                             training={"iterations": 4, "eval_every": 2}))
    outcome = run_training(cfg)
    h = outcome.runs["echo"].history
    assert np.all(np.isfinite(h.objective)) and len(h.objective) == 3
    # J_β is the mean of C_h over the nudged family on [0, β]: not the loss itself at β = 0.3
    assert not np.allclose(h.objective, h.validation_loss, rtol=1e-6)
    assert np.all(np.isnan(outcome.runs["adjoint"].history.objective))
    assert (tmp_path / PLOT).stat().st_size > 0


def test_files_hold_the_histories(tmp_path):
    outcome = run_training(train_config(small(tmp_path, training={"iterations": 5})))
    assert outcome.results == tmp_path / RESULTS and (tmp_path / PLOT).read_bytes()[:4] == b"\x89PNG"
    histories = load_training(tmp_path / RESULTS)
    assert set(histories) == {"adjoint", "echo", "rhel"}
    for name, h in histories.items():
        for key, values in h.arrays().items():
            np.testing.assert_array_equal(values, outcome.runs[name].history.arrays()[key])
    with h5py.File(tmp_path / RESULTS) as f:
        assert json.loads(f.attrs["config"])["training"]["iterations"] == 5
        assert set(f["runs/echo/params"]) == {"k", "J", "B"}
        assert f["runs/echo"].attrs["relative_gap_to_adjoint"] < 0.1


def test_resume_continues_to_the_uninterrupted_history(tmp_path):
    whole = run_training(train_config(small(tmp_path / "whole", estimators={"names": ["echo"]})))
    cfg = train_config(small(tmp_path / "cut", estimators={"names": ["echo"]}))
    first = run_training(cfg, stop_after=6)
    assert not first.finished and first.step == 6 and (tmp_path / "cut" / CHECKPOINT).exists()
    assert not (tmp_path / "cut" / RESULTS).exists()
    with pytest.raises(InputError, match="exists: pass --resume"):
        run_training(cfg)
    rest = run_training(cfg, resume=True)
    assert rest.finished
    for name, run in whole.runs.items():
        np.testing.assert_allclose(rest.runs[name].theta, run.theta, rtol=1e-13, atol=0)
        a, b = rest.runs[name].history.arrays(), run.history.arrays()
        for key in ("train_loss", "validation_loss", "eval_step"):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-13, atol=0)


def test_resume_refuses_another_configuration(tmp_path):
    run_training(train_config(small(tmp_path)), stop_after=2)
    other = train_config(small(tmp_path, optimizer={"learning_rate": 0.01}))
    with pytest.raises(InputError, match=r"differs from the checkpoint's in \['optimizer.learning_rate'\]"):
        run_training(other, resume=True)
    with pytest.raises(InputError, match="no checkpoint.h5"):
        run_training(train_config(small(tmp_path / "empty")), resume=True)


@pytest.mark.parametrize("change, message", [
    ({"training": {"iteratons": 3}}, r"config key 'training.iteratons': unknown key"),
    ({"optimizer": {"learning_rate": "fast"}}, r"config key 'optimizer.learning_rate': expected a number"),
    ({"optimizer": {"name": "rmsprop"}}, r"config key 'optimizer.name': expected one of"),
    ({"estimators": {"names": ["echo", "hebb"]}}, r"config key 'estimators.names': unknown estimator\(s\) \['hebb'\]"),
    ({"estimators": {"names": ["echo", "heb"]}}, r"config key 'estimators.names': 'heb' does not apply to the task "
                                                 r"'drive-trajectory'"),
    ({"task": {"assembler": "fe"}}, r"config key 'task.assembler': applies to the task 'boundary-trajectory' only, "
                                    r"not to 'drive-trajectory'"),
    ({"estimators": {"names": "echo"}}, r"config key 'estimators.names': expected a list"),
    ({"estimators": {"names": ["cbvp"]}}, r"config key 'estimators.names': 'cbvp' differentiates the loss of the "
                                          r"finite-element CBVP"),
    ({"estimators": {"names": ["pfvp", "cfvp-residual"]}}, r"'cfvp-residual' differentiates the loss of the CFVP"),
    ({"task": {"classes": 3}}, r"config key 'task.classes': applies to the task 'sinusoid-classes' only"),
    ({"task": {"name": "sinusoid-classes", "n": 3}}, r"config key 'task.n'.*expected n >= 4"),
    ({"training": {"batch_size": 9}}, r"config key 'training.batch_size': expected at most task.train_size = 8"),
    ({"training": {"iterations": True}}, r"config key 'training.iterations': expected a number"),
])
def test_bad_configurations_name_the_key(tmp_path, change, message):
    with pytest.raises(InputError, match=message):
        train_config(small(tmp_path, **change))


@pytest.mark.parametrize("names, message", [
    (["echo"], r"config key 'estimators.names': 'echo' does not apply .* not time-reversible"),
    (["rhel"], r"config key 'estimators.names': 'rhel' does not apply .* not time-reversible"),
])
def test_echo_on_a_non_reversible_network_is_refused_before_work(tmp_path, names, message):
    cfg = train_config(small(tmp_path, task={"gamma": 0.2}, estimators={"names": names}))
    with pytest.raises(InputError, match=message):
        check_training(cfg)
    with pytest.raises(InputError, match=message):
        run_training(cfg)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_pfvp_trains_a_non_reversible_network(tmp_path):
    cfg = train_config(small(tmp_path, task={"gamma": 0.2}, estimators={"names": ["pfvp"]},
                             training={"iterations": 3}))
    final = run_training(cfg).final_losses()
    assert abs(final["pfvp"] - final["adjoint"]) <= 0.1 * final["adjoint"]


def test_cli_refuses_a_bad_file_before_any_work(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[training]\niterations = 3\nbatchsize = 4\n[run]\noutput = "out"\n')
    assert main(["train", str(bad)]) == 2
    assert "config key 'training.batchsize': unknown key" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_example_runs_as_written(tmp_path, capsys):
    assert main(["train", str(EXAMPLE), "--output", str(tmp_path), "--quiet"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["run", "final", "loss"]
    assert {"adjoint", "echo", "rhel"} <= {line.split()[0] for line in table.splitlines()[1:]}
    assert (tmp_path / RESULTS).exists() and (tmp_path / PLOT).exists() and (tmp_path / CHECKPOINT).exists()


def test_minibatches_cover_each_epoch_once():
    seen = np.concatenate([minibatch(3, s, 12, 4) for s in range(3)])
    assert sorted(seen) == list(range(12))
    assert not np.array_equal(np.concatenate([minibatch(3, s, 12, 4) for s in range(3, 6)]), seen)


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
def test_optimizers_minimise_a_quadratic(name):
    """``f(θ) = ½ θᵀDθ`` from several starting points: every optimizer ends near 0."""
    D = np.array([1.0, 3.0, 0.5])
    for start in np.random.default_rng(0).standard_normal((3, 3)):
        opt, theta = Optimizer(OptimizerSpec(name=name, learning_rate=0.1), 3), start.copy()
        for _ in range(400):
            theta = opt.step(theta, D * theta)
        assert np.linalg.norm(theta) < 1e-2 * np.linalg.norm(start)


def test_adam_first_step_is_the_learning_rate():
    """Adam's bias correction: the first update is ``η g/(|g| + ε)`` per coordinate."""
    opt = Optimizer(OptimizerSpec(name="adam", learning_rate=0.1), 2)
    np.testing.assert_allclose(opt.step(np.zeros(2), np.array([2.0, -0.5])), [-0.1, 0.1], rtol=1e-7)


def test_tasks_are_deterministic_and_the_teacher_fits():
    a, b = make_task(n=3, steps=30, train_size=4, validation_size=2, seed=5), make_task(
        n=3, steps=30, train_size=4, validation_size=2, seed=5)
    np.testing.assert_array_equal(a.train.targets, b.train.targets)
    teacher = a.problem(a.teacher, "train", np.arange(4)).free.loss
    student = a.problem(a.params, "train", np.arange(4)).free.loss
    assert teacher < 1e-20 * max(student, 1.0) and student > 0
    c = make_task("sinusoid-classes", n=4, classes=3, train_size=30, validation_size=3, seed=1)
    assert set(c.train.labels) == {0, 1, 2}
    with pytest.raises(InputError, match="n must be >= classes"):
        make_task("sinusoid-classes", n=3, classes=3)


def test_the_guides_configuration_is_the_examples_run():
    text = (ROOT / "docs" / "guide.md").read_text().split("## 12. Training")[1]
    block = text.split("```toml\n")[1].split("```")[0]
    guide = train_config(tomllib.loads(block))
    example = train_config(tomllib.loads(EXAMPLE.read_text()))
    assert guide.training_dict() == example.training_dict()


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path):
    from glep.estimators import train as train_module

    cfg = train_config(small(tmp_path, estimators={"names": ["echo"]}))
    run_training(cfg, stop_after=2)
    before = (tmp_path / CHECKPOINT).read_bytes()

    def broken(f):
        f["partial"] = np.zeros(3)
        raise OSError(28, "No space left on device")

    with pytest.raises(ResultsWriteError, match="cannot write .*checkpoint.h5: No space left on device; the previous"):
        train_module._atomic_h5(tmp_path / CHECKPOINT, broken)
    assert (tmp_path / CHECKPOINT).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert run_training(cfg, resume=True).finished
