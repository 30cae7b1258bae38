"""Clear errors before any work: trajectory files, masses, input signals; and honest system names."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from glep.errors import InputError
from glep.estimators.problem import Problem
from glep.io import list_trajectories, load_trajectory, save_trajectory
from glep.models import FAMILIES, coupled_oscillators


# -- trajectory files ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A valid trajectory file and the trajectory in it."""
    path = tmp_path_factory.mktemp("traj") / "t.h5"
    traj = Problem.from_model(coupled_oscillators(3), steps=20).free_trajectory()
    save_trajectory(path, traj, "free")
    return path, traj


def _copy_with(saved, tmp_path, edit):
    """A copy of the saved file with ``edit(group)`` applied to its trajectory group."""
    src, _ = saved
    dst = tmp_path / "edited.h5"
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "a") as f:
        edit(f["trajectories/free"])
    return dst


def _replace(group, key, data):
    del group[key]
    group.create_dataset(key, data=data)


def test_valid_file_loads(saved):
    path, traj = saved
    back = load_trajectory(path, "free")
    np.testing.assert_array_equal(back.q, traj.q)
    assert list_trajectories(path) == ["free"]


@pytest.mark.parametrize("content", [b"", b"time,q\n0,1\n", bytes(range(256)) * 8], ids=["empty", "text", "binary"])
def test_non_hdf5_file(tmp_path, content):
    path = tmp_path / "bad.h5"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"bad\.h5' is not a glep trajectory file \(.+\)"):
        load_trajectory(path)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_truncated_file(saved, tmp_path, keep):
    src, _ = saved
    data = src.read_bytes()
    path = tmp_path / "cut.h5"
    path.write_bytes(data[: int(keep * len(data))])
    with pytest.raises(InputError, match=r"cut\.h5' is not a glep trajectory file \(.+\)"):
        load_trajectory(path, "free")


def test_hdf5_without_trajectories(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(3))
    with pytest.raises(InputError, match=r"other\.h5' is not a glep trajectory file \(no 'trajectories' group\)"):
        load_trajectory(path)
    assert list_trajectories(path) == []


def test_directory_and_missing_path(tmp_path):
    with pytest.raises(InputError, match="is not a glep trajectory file"):
        load_trajectory(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        load_trajectory(tmp_path / "missing.h5")


@pytest.mark.parametrize("edit, message", [
    (lambda g: _replace(g, "times", np.zeros((21, 2))), r"times must be 1-D and non-empty, got shape \(21, 2\)"),
    (lambda g: _replace(g, "times", np.linspace(1.0, 0.0, 21)), "times must be real, finite and increasing"),
    (lambda g: _replace(g, "q", np.zeros((20, 1, 3))), r"q must have shape \(21, \.\.\.\) to match times of length "
                                                       r"21, got \(20, 1, 3\)"),
    (lambda g: _replace(g, "p", np.zeros((21, 3))), r"q and p must have the same shape, got \(21, 1, 3\) and "
                                                    r"\(21, 3\)"),
    (lambda g: _replace(g, "q", np.zeros(21)), r"q must have shape \(21, \.\.\.\)"),
    (lambda g: _replace(g, "q", np.array([b"x"] * 21)), "'q' must be numeric"),
    (lambda g: (g.__delitem__("p"), g.create_group("p")), "'p' must be a dataset, got a Group"),
    (lambda g: g.__delitem__("params"), r"is not a glep trajectory \(no 'params'\)"),
    (lambda g: (g.__delitem__("params"), g.create_dataset("params", data=1.0)), "'params' must be a group"),
], ids=["times-2d", "times-decreasing", "q-length", "p-shape", "q-1d", "q-text", "p-group", "no-params",
        "params-dataset"])
def test_inconsistent_trajectory(saved, tmp_path, edit, message):
    path = _copy_with(saved, tmp_path, edit)
    with pytest.raises(InputError, match=r"edited\.h5: .*" + message):
        load_trajectory(path, "free")


# -- system names ------------------------------------------------------------------------
def test_every_family_carries_its_own_name():
    """``glep compare --system X`` prints ``problem.system.name``: each family's must be distinct and say what
    the family is (``gyroscopic`` was labelled "coupled oscillators")."""
    names = {}
    for family, build in FAMILIES.items():
        name = build(T=2.0).system.name
        flat = name.lower().replace("-", "")
        for word in family.lower().split("_"):
            assert word in flat, f"family {family!r}: system name {name!r} does not mention {word!r}"
        names[family] = name
    assert len(set(names.values())) == len(names), names
