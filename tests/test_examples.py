"""Every example in examples/ runs once in the test suite: the time-stepping ones here, the
finite-element ones (``bvp_*.py``) in tests/test_bvp_examples.py."""

import runpy
import sys
from pathlib import Path

import pytest

FOLDER = Path(__file__).parent.parent / "examples"
ALL = sorted(FOLDER.glob("*.py"))
BVP = sorted(FOLDER.glob("bvp_*.py"))  # run by tests/test_bvp_examples.py
EXAMPLES = [p for p in ALL if p not in BVP]


def test_each_example_is_run_by_exactly_one_test_file():
    assert EXAMPLES and BVP
    assert sorted(EXAMPLES + BVP) == ALL
    assert not set(EXAMPLES) & set(BVP)


#: examples that take an output folder as their first argument -> the files they write there
WRITES = {"finite_nudging.py": ["finite_nudging.png"]}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", [str(path)] + ([str(out)] if path.name in WRITES else []))
    runpy.run_path(str(path), run_name="__main__")
    assert capsys.readouterr().out.strip()
    for name in WRITES.get(path.name, []):
        assert (out / name).stat().st_size > 0
