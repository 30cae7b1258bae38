"""glep sweep on field systems: the field rows and HEB run, resume, and are refused where they do not apply.

The study is ``examples/sweep_fields.toml`` (sine-gordon, klein-gordon and the Kerr cavity array; 11 items);
the 2-rank run is tests/mpi/test_sweep_fields_mpi.py.
"""

import re
import tomllib
from pathlib import Path

import pytest

import glep.estimators.sweep as sweep_module
from glep.errors import InputError
from glep.estimators.field_objects import LOSS, KerrAdjoint
from glep.estimators.study import load_study
from glep.estimators.sweep import check_study, run_sweep
from glep.sweep_config import sweep_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "sweep_fields.toml"


def _example(output: Path) -> dict:
    data = tomllib.loads(EXAMPLE.read_text())
    data["run"]["output"] = str(output)
    return data


class Stop(Exception):
    """Raised by the test's checkpoint to interrupt a run between items."""


def test_field_study_runs_resumes_and_every_row_is_exact(tmp_path):
    config = sweep_config(_example(tmp_path / "study.h5"))
    total = len(check_study(config))
    started = []

    def interrupt(stage):
        if stage == "item started":
            started.append(stage)
            if len(started) == 5:
                raise Stop

    with pytest.raises(Stop):
        run_sweep(config, checkpoint=interrupt)
    assert len(load_study(tmp_path / "study.h5").items) == 4  # the four finished items were kept
    outcome = run_sweep(config, resume=True)
    assert (outcome.total, outcome.before, outcome.now) == (total, 4, total - 4) and not outcome.failed
    study = load_study(tmp_path / "study.h5")
    assert study.complete and len(study.items) == total
    rows = {(it["params"]["label"], it["params"]["estimator"]) for it in study.items.values()}
    assert rows == {("sine-gordon", e) for e in ("field-civp-residual", "field-pfvp", "field-echo", "field-rhel")} \
        | {("klein-gordon", "heb"), ("klein-gordon", "field-pfvp"), ("kerr", "heb")}
    for item in study.items.values():
        assert item["status"] == "ok", (item["id"], item["reason"])
        # every row is exact for its loss: centred bias O(β²) and round-off O(ε/β) at β = 1e-4, far below 1e-6
        assert item["metrics"]["relative_error"] <= 1e-6, item["id"]
        assert item["metrics"]["cosine"] > 1 - 1e-9, item["id"]
        assert item["passes"] > 1 and item["wall_time"] > 0, item["id"]
        kerr = item["params"]["label"] == "kerr"
        assert item["loss"] == (KerrAdjoint.loss if kerr else LOSS), item["id"]
        assert set(item["gradient"]) == set(item["truth"]) and item["truth"], item["id"]


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a work item starts (the checks must come first)."""
    def refuse(*args, **kwargs):
        raise AssertionError("a work item ran although the study was invalid")

    monkeypatch.setattr(sweep_module, "run_item", refuse)


FIELD_ROWS = "['field-civp-residual', 'field-pfvp', 'field-echo', 'field-rhel', 'heb']"
REFUSED = [
    ({"family": "sine-gordon", "n": 8, "steps": 4, "estimators": ["echo"]},
     f"config key 'systems[0].estimators': 'echo' does not apply to systems[0] (sine-gordon, n=8, seed=0), a field "
     f"system; applicable: {FIELD_ROWS}"),
    ({"family": "coupled_oscillators", "n": 2, "steps": 4},
     "config key 'estimators.names': 'field-pfvp' does not apply to systems[0] (coupled_oscillators, n=2, seed=0), "
     "a ode system; applicable: ['civp-contrast'"),
    ({"family": "kerr", "n": 2, "steps": 4},
     "config key 'estimators.names': 'field-pfvp' does not apply to systems[0] (kerr, n=2, seed=0), a modes system; "
     "applicable: ['heb']"),
    ({"family": "wave", "n": 8, "steps": 4, "estimators": ["heb"]},
     "config key 'systems[0].estimators': 'heb' cannot run on systems[0] (wave, n=8, seed=0): HEB takes a terminal "
     "cost only, and this field has a running cost"),
    ({"family": "wave", "n": 8, "steps": 4, "batch": 2},
     "config key 'systems[0].family': the field system 'wave' runs one trajectory per item: remove 'batch' (got 2)"),
    ({"family": "wave", "n": 8, "steps": 4, "integrator": "midpoint"},
     "config key 'systems[0]': 'integrator': the field system 'wave' steps with its own leapfrog"),
    ({"family": "wave", "n": 8, "steps": 4, "options": {"c": 2.0}},
     "config key 'systems[0].options': wave(**"),
]


@pytest.mark.parametrize("system, expected", REFUSED)
def test_rows_that_do_not_apply_are_refused_before_any_work(system, expected, tmp_path, no_work):
    config = sweep_config({"systems": [system], "estimators": {"names": ["field-pfvp"]},
                           "run": {"output": str(tmp_path / "study.h5")}})
    with pytest.raises(InputError, match=re.escape(expected)):
        run_sweep(config)
    assert not (tmp_path / "study.h5").exists()


# -- user field systems (a factory returning a FieldModel) and the NLS -------------------------------------
USER_FIELDS = '''
from glep.estimators.sweep import FieldModel
from glep.field_families import klein_gordon_problem, nls_problem


def kink(n, seed, T=0.5):
    """The phi^4 kink of the klein-gordon family over its own horizon: a user's field system."""
    return FieldModel("user-kink", n, T, seed, build=klein_gordon_problem)


def soliton(n, seed, T=0.2):
    """An NLS soliton (implicit midpoint): a user's field system with the echo and HEB rows only."""
    return FieldModel("user-soliton", n, T, seed, build=nls_problem)


def not_a_field(n, seed):
    return FieldModel("not-a-field", n, None, seed, build=lambda **kw: "a string")
'''


@pytest.fixture
def user_fields(tmp_path, monkeypatch):
    (tmp_path / "user_fields.py").write_text(USER_FIELDS)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_user_field_systems_and_the_nls_run_their_rows_exactly(tmp_path, user_fields):
    leapfrog = ["field-civp-residual", "field-pfvp", "field-echo", "field-rhel", "heb"]
    config = sweep_config({"systems": [
        {"factory": "user_fields:kink", "n": 12, "steps": 10, "estimators": leapfrog},
        {"factory": "user_fields:soliton", "n": 16, "steps": 4, "seeds": [0, 1]},
        {"family": "nls", "n": 16, "T": 0.2, "steps": 4}],
        "estimators": {"names": ["field-echo", "heb"], "betas": [1e-3, 1e-4]},
        "run": {"output": str(tmp_path / "study.h5")}})
    outcome = run_sweep(config)
    assert outcome.total == 5 + 2 * 2 + 2 and not outcome.failed, outcome.failed
    study = load_study(tmp_path / "study.h5")
    rows = {(it["params"]["source"], it["params"]["estimator"]) for it in study.items.values()}
    assert rows == {("user_fields:kink", e) for e in leapfrog} | {
        (s, e) for s in ("user_fields:soliton", "nls") for e in ("field-echo", "heb")}
    for item in study.items.values():
        assert item["status"] == "ok", (item["id"], item["reason"])
        # exact for its loss (the leapfrog's or the midpoint rule's C_h): centred bias O(β²) at β = 1e-4
        assert item["metrics"]["relative_error"] <= 1e-6, item["id"]
        assert item["loss"] and set(item["gradient"]) == set(item["truth"]), item["id"]
    # the user's soliton at its own horizon is the built-in family's at that horizon, number for number
    by = {(it["params"]["source"], it["params"]["seed"], it["params"]["estimator"]): it for it in study.items.values()}
    for est in ("field-echo", "heb"):
        a, b = by[("user_fields:soliton", 0, est)], by[("nls", 0, est)]
        for k in a["gradient"]:
            assert (a["gradient"][k] == b["gradient"][k]).all(), (est, k)


USER_REFUSED = [
    ({"family": "nls", "n": 16, "steps": 4, "estimators": ["field-echo", "field-pfvp"]},
     "config key 'systems[0].estimators': 'field-pfvp' cannot run on systems[0] (nls, n=16, seed=0): the field is "
     "stepped by the implicit midpoint rule (a glep.MidpointFieldSystem, e.g. NLS), whose backward pass is the "
     "conjugation echo: its rows are 'field-echo' and 'heb'"),
    ({"factory": "user_fields:soliton", "n": 16, "steps": 4, "estimators": ["field-rhel"]},
     "config key 'systems[0].estimators': 'field-rhel' cannot run on systems[0] (user_fields:soliton, n=16, "
     "seed=0): the field is stepped by the implicit midpoint rule"),
    ({"factory": "user_fields:kink", "n": 8, "steps": 4, "estimators": ["echo"]},
     f"config key 'systems[0].estimators': 'echo' does not apply to systems[0] (user_fields:kink, n=8, seed=0), a "
     f"field system; applicable: {FIELD_ROWS}"),
    ({"factory": "user_fields:not_a_field", "n": 8, "steps": 4, "estimators": ["field-echo"]},
     "config key 'systems[0]': the field system 'not-a-field': build(n=8, steps=4, seed=0, comm=...) returned a "
     "builtins.str; expected a glep.estimators.field_objects.FieldProblem"),
    ({"factory": "user_fields:kink", "n": 8, "steps": 4, "batch": 2, "estimators": ["field-echo"]},
     "config key 'systems[0].factory': user_fields:kink(**{'n': 8, 'seed': 0, 'batch': 2}) failed: kink() got an "
     "unexpected keyword argument 'batch'"),
]


@pytest.mark.parametrize("system, expected", USER_REFUSED)
def test_rows_a_user_field_or_the_nls_cannot_run_are_refused_before_any_work(system, expected, tmp_path,
                                                                             user_fields, no_work):
    config = sweep_config({"systems": [system], "estimators": {"names": ["field-echo"]},
                           "run": {"output": str(tmp_path / "study.h5")}})
    with pytest.raises(InputError, match=re.escape(expected)):
        run_sweep(config)
    assert not (tmp_path / "study.h5").exists()
