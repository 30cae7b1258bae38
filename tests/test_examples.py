"""Every example in examples/ runs once in the test suite: the time-stepping ones here, the
finite-element ones (``bvp_*.py``) in tests/test_bvp_examples.py."""

import runpy
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

FOLDER = Path(__file__).parent.parent / "examples"
ALL = sorted(FOLDER.glob("*.py"))
BVP = sorted(FOLDER.glob("bvp_*.py"))  # run by tests/test_bvp_examples.py
HEB_XOR = FOLDER / "heb_xor.py"  # takes an output folder: run by test_heb_xor_learns_and_writes_its_files
EXAMPLES = [p for p in ALL if p not in BVP and p != HEB_XOR]


def test_each_example_is_run_by_exactly_one_test_file():
    assert EXAMPLES and BVP
    assert sorted(EXAMPLES + BVP + [HEB_XOR]) == ALL
    assert not set(EXAMPLES) & set(BVP)


#: examples that take an output folder as their first argument -> the files they write there
WRITES = {"finite_nudging.py": ["finite_nudging.png"],
          "field_wave_training.py": ["field_wave_training.png", "field_wave_training.h5"]}


def _check_field_wave_training(out: Path) -> None:
    """Echo-trained and adjoint-trained wave fields: the same descent, every step an Armijo decrease.

    Each accepted step lowers the loss by at least its guaranteed decrease ``½ s ⟨g, M⁻¹g⟩`` (the Armijo
    condition, > 0); the echo's gradient equals the adjoint's to O(β²), so its final loss is within 10 % of
    the adjoint-trained one.
    """
    with h5py.File(out / "field_wave_training.h5") as f:
        runs = {k: {key: f[k][key][()] for key in f[k]} for k in ("echo", "adjoint")}
    for run in runs.values():
        losses, decrease = run["losses"], run["guaranteed_decrease"]
        assert len(losses) >= 2 and np.all(decrease > 0)
        assert np.all(losses[1:] <= losses[:-1] - decrease), (losses, decrease)
        assert losses[-1] <= losses[0] - decrease.sum()
    echo, adjoint = runs["echo"]["losses"][-1], runs["adjoint"]["losses"][-1]
    assert abs(echo - adjoint) <= 0.1 * adjoint, (echo, adjoint)
    assert not list(out.glob(".*.tmp"))


#: examples whose written files are checked further -> the check
CHECKS = {"field_wave_training.py": _check_field_wave_training}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", [str(path)] + ([str(out)] if path.name in WRITES else []))
    runpy.run_path(str(path), run_name="__main__")
    assert capsys.readouterr().out.strip()
    for name in WRITES.get(path.name, []):
        assert (out / name).stat().st_size > 0
    if path.name in CHECKS:
        CHECKS[path.name](out)


def test_heb_xor_learns_and_writes_its_files(monkeypatch, tmp_path, capsys):
    """The HEB XOR example reaches 4/4 and writes its loss curve and its HDF5 file (fields, gradients)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(HEB_XOR), str(tmp_path / "out")])
    runpy.run_path(str(HEB_XOR), run_name="__main__")
    assert "correct: 4/4" in capsys.readouterr().out
    assert (tmp_path / "out" / "heb_xor_loss.png").stat().st_size > 0
    with h5py.File(tmp_path / "out" / "heb_xor.h5") as f:
        assert f.attrs["glep_format"] == "glep-heb-training/1"
        assert np.array_equal(f["predicted"][()], [0, 1, 1, 0])
        assert f["losses"][-1] < f["losses"][0]
        heb, truth = f["gradients/heb/learning"][()], f["gradients/adjoint/learning"][()]
        assert np.linalg.norm(heb - truth) <= 1e-6 * np.linalg.norm(truth)
    assert not list((tmp_path / "out").glob(".*.tmp"))  # no temporary file left
