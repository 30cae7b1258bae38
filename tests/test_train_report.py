"""Gradient alignment over training time and ``glep report train.h5``.

With ``training.alignment = true`` each estimator run also computes the discrete adjoint's gradient at its
own parameters on its minibatch: the echo and PFVP (exact, centred nudge) align to their ``O(β²)`` bias,
the CIVP contrast (which omits the boundary residual) visibly less.  The histories go to ``train.h5`` and
the checkpoint (a resumed run continues them), ``alignment.png`` draws them, and ``glep report`` tabulates a
training file (detected by its ``format`` attribute) as Markdown, CSV and plots.
"""

import csv
import io

import h5py
import numpy as np
import pytest

from glep.cli import main
from glep.estimators.train import RESULTS, run_training
from glep.estimators.train_report import ALIGNMENT_PLOT, COLUMNS, load_train_file, rows
from glep.train_config import train_config


def small(output, **tables) -> dict:
    cfg = {"task": {"n": 3, "T": 4.0, "steps": 40, "train_size": 8, "validation_size": 4},
           "estimators": {"names": ["echo", "pfvp", "civp-contrast"]},
           "optimizer": {"name": "adam", "learning_rate": 0.05},
           "training": {"iterations": 6, "batch_size": 4, "eval_every": 3, "checkpoint_every": 2, "alignment": True},
           "run": {"output": str(output)}}
    for table, values in tables.items():
        cfg[table] = {**cfg.get(table, {}), **values}
    return cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("aligned")
    return out, run_training(train_config(small(out)))


def test_alignment_is_recorded_at_every_update(trained):
    out, outcome = trained
    for name in ("echo", "pfvp", "civp-contrast"):
        h = outcome.runs[name].history
        assert len(h.alignment_cosine) == len(h.alignment_error) == 6
    assert outcome.runs["adjoint"].history.alignment_cosine == []
    for name in ("echo", "pfvp"):
        assert max(outcome.runs[name].history.alignment_error) < 1e-6, name
    contrast = outcome.runs["civp-contrast"].history
    assert min(contrast.alignment_error) > 1e3 * max(outcome.runs["echo"].history.alignment_error)
    with h5py.File(out / RESULTS) as f:
        np.testing.assert_array_equal(f["runs/echo/history/alignment_error"][()],
                                      outcome.runs["echo"].history.alignment_error)
    assert (out / ALIGNMENT_PLOT).read_bytes()[:4] == b"\x89PNG"


def test_resume_continues_the_alignment_history(tmp_path, trained):
    _, whole = trained
    cfg = train_config(small(tmp_path))
    run_training(cfg, stop_after=3)
    rest = run_training(cfg, resume=True)
    for name in ("echo", "civp-contrast"):
        for key in ("alignment_cosine", "alignment_error"):
            np.testing.assert_allclose(getattr(rest.runs[name].history, key), getattr(whole.runs[name].history, key),
                                       rtol=1e-9, atol=1e-15)


def test_report_prints_the_table_and_writes_csv_and_plots(trained, tmp_path, capsys):
    out, outcome = trained
    assert main(["report", str(out / RESULTS), "--csv", str(tmp_path / "t.csv"), "--plots", str(tmp_path / "p")]) == 0
    text = capsys.readouterr().out
    assert "| run | final train loss | final validation loss | gap to adjoint |" in text
    lines = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert [line.split("|")[1].strip() for line in lines] == ["adjoint", "echo", "pfvp", "civp-contrast"]
    table = list(csv.DictReader(io.StringIO((tmp_path / "t.csv").read_text())))
    assert tuple(table[0]) == COLUMNS
    by_run = {r["run"]: r for r in table}
    assert float(by_run["echo"]["final validation loss"]) == outcome.runs["echo"].history.validation_loss[-1]
    assert by_run["adjoint"]["cosine min"] == ""
    assert float(by_run["echo"]["cosine min"]) == min(outcome.runs["echo"].history.alignment_cosine)
    assert {p.name for p in (tmp_path / "p").iterdir()} == {"learning_curves.png", ALIGNMENT_PLOT}


def test_report_rows_of_a_run_without_alignment(tmp_path):
    run_training(train_config(small(tmp_path, estimators={"names": ["echo"]},
                                    training={"alignment": False, "iterations": 2})))
    data = load_train_file(tmp_path / RESULTS)
    assert all(np.isnan(r["cosine min"]) for r in rows(data))
    assert data.histories["echo"].alignment_cosine == []
    assert not (tmp_path / ALIGNMENT_PLOT).exists()


def test_report_refuses_plot_on_a_training_file(trained, capsys):
    out, _ = trained
    assert main(["report", str(out / RESULTS), "--plot", "x.png"]) == 2
    assert "--plot applies to glep compare results;" in capsys.readouterr().err
