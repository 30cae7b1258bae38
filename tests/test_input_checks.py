"""Clear errors before any work: trajectory files, masses, input signals; and honest system names."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import glep
from glep.errors import InputError
from glep.estimators.problem import Problem
from glep.grid import TimeGrid
from glep.io import list_trajectories, load_trajectory, save_trajectory
from glep.ivp.shooting import shoot_cbvp
from glep.models import FAMILIES, coupled_oscillators
from glep.signals import Signal


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
    (lambda g: g.__delitem__("p"), r"is not a glep trajectory \(no 'p'\)"),
    (lambda g: (g.__delitem__("p"), g.create_dataset("p0", data=np.zeros((1, 3))),
                g.create_dataset("pT", data=np.zeros(3))),
     r"p0 and pT must have shape \(1, 3\) \(q without its time axis\), got \(1, 3\) and \(3,\)"),
    (lambda g: g["report"].attrs.__delitem__("reason"), "'report' must be a group with a 'history' dataset and a "
                                                        "'reason' attribute"),
], ids=["times-2d", "times-decreasing", "q-length", "p-shape", "q-1d", "q-text", "p-group", "no-params",
        "params-dataset", "no-momenta", "end-momenta-shape", "report-without-reason"])
def test_inconsistent_trajectory(saved, tmp_path, edit, message):
    path = _copy_with(saved, tmp_path, edit)
    with pytest.raises(InputError, match=r"edited\.h5: .*" + message):
        load_trajectory(path, "free")


# -- masses ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model():
    return coupled_oscillators(3, T=5.0)


@pytest.mark.parametrize("mass", [0.0, -1.0])
def test_non_positive_trainable_mass(model, mass):
    params = dict(model.params, m=np.array([1.0, mass, 1.2]))
    expected = rf"params\['m'\] holds the masses of DiagonalMass and must be > 0; got \[{mass}\] at index \[1\]"
    for integrator in (None, "midpoint"):  # Störmer–Verlet overflowed, implicit midpoint returned a number
        with pytest.raises(InputError, match=expected):
            Problem(model.system, params, model.boundary, TimeGrid(5.0, 50), integrator)
    with pytest.raises(InputError, match=expected):
        shoot_cbvp(model.system, params, TimeGrid(5.0, 50), np.zeros(3), np.ones(3))


def test_non_positive_fixed_mass():
    with pytest.raises(InputError, match=r"masses must be > 0, got \[1.0, 0.0\]"):
        glep.DiagonalMass(2, None, masses=[1.0, 0.0])


# -- input signals -------------------------------------------------------------------------
def _samples(T, channels, S=11):
    t = np.linspace(0.0, T, S)[:, None]
    return Signal.from_samples(np.sin(t + np.arange(channels)), T, "u")


def test_signal_shorter_than_the_horizon(model):
    system = model.system.with_signals(u=_samples(2.0, 1))
    with pytest.raises(InputError, match=r"signal 'u' ends at t = 2, before the horizon T = 5: give samples covering "
                                         r"\[0, 5\]"):
        Problem(system, model.params, model.boundary, TimeGrid(5.0, 50))
    with pytest.raises(InputError, match="signal 'u' ends at t = 2, before the horizon T = 5"):
        shoot_cbvp(system, model.params, TimeGrid(5.0, 50), np.zeros(3), np.ones(3))
    with pytest.raises(InputError, match=r"defined on \[0, 2\] cannot be played backwards on \[0, 5\]"):
        system.time_reversed(5.0)
    Problem(system, model.params, model.boundary, TimeGrid(2.0, 50))  # within its horizon: accepted
    from glep.bvp import make_discretisation

    for assembler in ("fe", "vectorised"):  # the finite-element backend checks too, against the mesh's end
        with pytest.raises(InputError, match="signal 'u' ends at t = 2, before the horizon T = 5"):
            make_discretisation(system, model.params, (5.0, 20), assembler=assembler)


def test_signals_without_an_end_are_accepted(model):
    system = model.system.with_signals(u=Signal.constant([0.3]), y=Signal.from_function(lambda t: [np.sin(t)], 1))
    Problem(system, model.params, model.boundary, TimeGrid(50.0, 50))


@pytest.mark.parametrize("name, channels, reader", [("u", 2, "InputDrive"), ("y", 3, "TrackingCost")])
def test_signal_with_the_wrong_number_of_channels(model, name, channels, reader):
    bad = {name: _samples(5.0, channels)}
    expected = (rf"signal '{name}' has {channels} channel\(s\), but {reader} reads 1: give '{name}' samples of "
                rf"shape \(S, 1\) or \(B, S, 1\)")
    with pytest.raises(InputError, match=expected):
        model.system.with_signals(**bad)
    with pytest.raises(InputError, match=expected):
        glep.LagrangianSystem(3, model.system.terms, cost=model.system.cost,
                              signals=dict(model.system.signals, **bad))


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
