"""glep sweep: studies validated before any work, run into one study file, resumed, reported.

The kill-and-resume tests are in tests/test_sweep_kill.py, the MPI ones in tests/mpi/test_sweep_mpi.py.
"""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

import glep.estimators.sweep as sweep_module
from glep.cli import main
from glep.errors import InputError, SolverError
from glep.estimators.base import AbstractEstimator
from glep.estimators.cbvp import PERIODIC_LOSS
from glep.estimators.study import journal_path, load_study, numbers, same_numbers
from glep.estimators.sweep import KINDS, MODEL_KINDS, ODE_RULES, Kind, Rule, check_study, expand
from glep.sweep_config import sweep_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "sweep.toml"

TINY = """
name = "tiny"
[[systems]]
family = "coupled_oscillators"
n = [2, 3]
steps = 16
[estimators]
names = ["pfvp", "echo"]
nudges = ["one-sided", "centred"]
betas = [1e-2, 1e-3]
[run]
output = "{output}"
"""


def _study(tmp_path: Path, text: str = TINY, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).replace("{output}", str(tmp_path / "out" / "study.h5")))
    return path


def _empty(journal: Path) -> bool:
    """No journal line waits to be merged."""
    return not journal.exists() or journal.stat().st_size == 0


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a work item starts (the checks must come first)."""
    def refuse(*args, **kwargs):
        raise AssertionError("a work item ran although the study was invalid")

    monkeypatch.setattr(sweep_module, "run_item", refuse)


# -- malformed or inconsistent studies: refused before any work, naming the key -----------------------
SYSTEM = '[[systems]]\nfamily = "coupled_oscillators"\nn = 3\nsteps = 16\n'
ESTIMATORS = '[estimators]\nnames = ["pfvp"]\n'
BAD = [
    ("nmae = 'x'\n" + SYSTEM + ESTIMATORS, "config key 'nmae': unknown key; known in the top level: ['name'"),
    (SYSTEM + "stepz = 3\n" + ESTIMATORS, "config key 'systems[0].stepz': unknown key; known in 'systems'"),
    (SYSTEM + ESTIMATORS + "beta = [1e-3]\n", "config key 'estimators.beta': unknown key; known in 'estimators'"),
    (SYSTEM + ESTIMATORS + "[run]\noutptu = 'x.h5'\n", "config key 'run.outptu': unknown key; known in 'run'"),
    (SYSTEM.replace("n = 3", "n = 'four'") + ESTIMATORS,
     "config key 'systems[0].n[0]': expected an integer, got 'four'"),
    (SYSTEM.replace("n = 3", "n = [4, 1]") + ESTIMATORS,
     "config key 'systems[0].n[1]': expected an integer >= 2, got 1"),
    (SYSTEM.replace("n = 3", "n = 3\nseeds = [1, 1]") + ESTIMATORS,
     "config key 'systems[0].seeds': each value may appear once, repeated: ['1']"),
    (SYSTEM + ESTIMATORS + "betas = '1e-3'\n",
     "config key 'estimators.betas': expected a list, e.g. ['1e-3'], got the string '1e-3'"),
    (SYSTEM + ESTIMATORS + "betas = [1e-2, -1e-3]\n", "config key 'estimators.betas[1]': expected a finite number > 0"),
    (SYSTEM + '[estimators]\nnames = ["pfvp", "magic"]\n', "config key 'estimators.names': unknown estimator(s) "
     "['magic']; expected among 'civp-contrast'"),
    (SYSTEM + ESTIMATORS + "nudges = ['sideways']\n", "config key 'estimators.nudges[0]': expected one of"),
    (SYSTEM.replace("n = 3", "n = 3\nfactory = 'm:f'") + ESTIMATORS,
     "config key 'systems[0]': give exactly one of 'family' (a built-in family) or 'factory'"),
    (SYSTEM.replace('family = "coupled_oscillators"', 'factory = "os.system(1)"') + ESTIMATORS,
     "config key 'systems[0].factory': expected 'package.module:function'"),
    (SYSTEM.replace('"coupled_oscillators"', '"nope"') + ESTIMATORS,
     "config key 'systems[0].family': expected one of 'coupled_oscillators'"),
    (SYSTEM, "config key 'estimators': missing"),
    (ESTIMATORS, "config key 'systems': missing"),
    (SYSTEM + ESTIMATORS + "[run]\ngroup_size = 0\n", "config key 'run.group_size': expected an integer >= 1, got 0"),
    (SYSTEM + ESTIMATORS + "[run]\ncommit_interval = -1.0\n",
     "config key 'run.commit_interval': expected a finite number of seconds >= 0, got -1.0"),
    (SYSTEM.replace("steps = 16", "steps = true") + ESTIMATORS,
     "config key 'systems[0].steps[0]': expected a number, got the boolean true"),
    # impossible combinations, found on the built systems
    (SYSTEM.replace("coupled_oscillators", "gyroscopic") + '[estimators]\nnames = ["pfvp", "echo"]\n',
     "config key 'estimators.names': 'echo' cannot run on systems[0] (gyroscopic, n=3, seed=0): the system is not "
     "time-reversible (defect"),
    (SYSTEM + 'integrator = "midpoint"\n[estimators]\nnames = ["rhel"]\n',
     "config key 'estimators.names': 'rhel' cannot run on systems[0] (coupled_oscillators, n=3, seed=0): it "
     "differentiates the Störmer–Verlet loss, not the 'midpoint' integrator's"),
    (SYSTEM + 'batch = 2\nestimators = ["cbvp"]\n' + ESTIMATORS,
     "config key 'systems[0].estimators': 'cbvp' cannot run on systems[0] (coupled_oscillators, n=3, seed=0): the "
     "finite-element backend solves one trajectory at a time (batch 2)"),
    (SYSTEM + ESTIMATORS + 'nudges = ["complex"]\nreport_nudge = "complex"\n[[systems]]\nfamily = "pendulum_chain"\n'
     'estimators = ["cbvp"]\n', "config key 'estimators.report_nudge': 'cbvp' cannot use the 'complex' nudge"),
    (SYSTEM.replace('family = "coupled_oscillators"', 'factory = "no_such_module_xyz:make"') + ESTIMATORS,
     "config key 'systems[0].factory': cannot import module 'no_such_module_xyz' (ModuleNotFoundError"),
    (SYSTEM + "options = { bogus = 1 }\n" + ESTIMATORS,
     "config key 'systems[0].options': coupled_oscillators(**{'n': 3, 'seed': 0, 'bogus': 1}) failed: "),
]


@pytest.mark.parametrize("text,expected", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_study_is_refused_naming_the_key(text, expected, tmp_path, capsys, no_work):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    out = tmp_path / "out" / "study.h5"
    assert main(["sweep", str(cfg), "--output", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "glep: error: " in err and expected in err, err
    assert "Traceback" not in err
    assert not out.exists()


def test_every_problem_is_reported_at_once(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(SYSTEM.replace("n = 3", "n = 1\nstepz = 2") + ESTIMATORS + "betas = []\n")
    with pytest.raises(InputError) as info:
        sweep_config(cfg)
    lines = str(info.value).splitlines()
    assert len(lines) == 3, lines
    assert any("'systems[0].stepz': unknown key" in line for line in lines)
    assert any("'systems[0].n[0]': expected an integer >= 2, got 1" in line for line in lines)
    assert any("'estimators.betas': expected a non-empty list" in line for line in lines)


def test_a_missing_or_broken_study_file(tmp_path, capsys, no_work):
    assert main(["sweep", str(tmp_path / "nope.toml")]) == 2
    assert f"study file '{tmp_path / 'nope.toml'}' does not exist" in capsys.readouterr().err
    bad = tmp_path / "broken.toml"
    bad.write_text("[[systems]\n")
    assert main(["sweep", str(bad)]) == 2
    assert "is not valid TOML" in capsys.readouterr().err


# -- the field kind plugs in through the registry ------------------------------------------------------
@dataclass
class FakeFieldModel:
    """Stands for a field model (a system on a spatial mesh) until field families land."""

    n: int


@dataclass(frozen=True)
class FakeFieldEstimator(AbstractEstimator):
    name: ClassVar[str] = "field-pfvp"
    label: ClassVar[str] = "field PFVP"

    def estimate(self, problem, nudge, progress=None):
        raise AssertionError("not run by this test")


def test_a_field_kind_plugs_in_and_ode_only_rows_are_refused_on_it(monkeypatch, tmp_path, capsys, no_work):
    monkeypatch.setitem(KINDS, "field", Kind("field", lambda model, point: model,
                                             {"field-pfvp": Rule(lambda comm: FakeFieldEstimator())}))
    monkeypatch.setattr(sweep_module, "MODEL_KINDS", [*MODEL_KINDS, (FakeFieldModel, "field")])
    monkeypatch.setitem(sweep_module.FAMILIES, "fake_wave", lambda n, seed, **kw: FakeFieldModel(n))
    ok = sweep_config({"systems": [{"family": "fake_wave", "n": 8}], "estimators": {"names": ["field-pfvp"]}})
    assert [it.estimator for it in check_study(ok)] == ["field-pfvp"]
    cfg = tmp_path / "field.toml"
    cfg.write_text('[[systems]]\nfamily = "fake_wave"\nn = 8\n[estimators]\nnames = ["field-pfvp", "echo"]\n'
                   '[[systems]]\nfamily = "coupled_oscillators"\nn = 2\nestimators = ["field-pfvp"]\n')
    assert main(["sweep", str(cfg), "--output", str(tmp_path / "o.h5")]) == 2
    err = capsys.readouterr().err
    assert "config key 'estimators.names': 'echo' does not apply to systems[0] (fake_wave, n=8, seed=0), a field " \
           "system; applicable: ['field-pfvp']" in err, err
    assert "config key 'systems[1].estimators': 'field-pfvp' does not apply to systems[1] (coupled_oscillators, " \
           "n=2, seed=0), a ode system" in err, err


# -- running, resuming, reporting --------------------------------------------------------------------------
def test_example_study_runs_as_written_and_is_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", str(EXAMPLE), "--quiet"]) == 0
    out = capsys.readouterr().out
    study = load_study("sweep-output/study.h5")
    assert study.complete and f"{len(study.items)} items run, 0 finished before" in out
    assert _empty(journal_path(study.path))  # merged at the end
    for item in study.items.values():
        assert item["status"] == "ok", item["id"]
        # every row here is exact for its loss: centred bias O(β²) at β = 1e-4, far below 1e-6
        assert item["metrics"]["relative_error"] < 1e-6, item["id"]
        assert abs(item["slopes"]["centred"] - 2) < 0.1 and abs(item["slopes"]["one-sided"] - 1) < 0.1, item["id"]
    for key in ("version_glep", "version_numpy", "version_petsc4py", "version_dolfinx", "version_mpi4py",
                "machine_platform", "machine_hostname", "mpi_size", "schema_version"):
        assert key in study.attrs, key
    assert main(["report", "sweep-output/study.h5", "--csv", "table.csv"]) == 0
    md = capsys.readouterr().out
    for label in ("CIVP + residual", "PFVP", "echo", "RHEL", "CFVP + residual", "C_h of the free CFVP trajectory",
                  "| Periodic | C_h of the periodic trajectory (q(0) = q(T), p(0) = p(T)"):
        assert label in md, md
    table = list(csv.DictReader(open("table.csv")))
    assert len(table) == len({(it["params"]["system"], it["params"]["n"], it["params"]["steps"],
                               it["params"]["estimator"]) for it in study.items.values()})
    assert {r["seeds"] for r in table if r["system"].startswith("oscillators")} == {"2"}


def test_report_plots(tmp_path, capsys):
    cfg = _study(tmp_path, TINY.replace("steps = 16", "steps = 16\nT = [2.0, 3.0]"))
    assert main(["sweep", str(cfg), "--quiet"]) == 0
    assert main(["report", str(tmp_path / "out" / "study.h5"), "--plots", str(tmp_path / "plots")]) == 0
    for name in ("error_vs_beta.png", "cost_vs_parameters.png", "error_by_boundary.png", "alignment_vs_horizon.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 0, name


def test_resume_does_not_redo_and_refuses_a_changed_study(tmp_path, capsys):
    cfg = _study(tmp_path)
    assert main(["sweep", str(cfg), "--quiet"]) == 0
    first = numbers(load_study(tmp_path / "out" / "study.h5"))
    assert len(first) == 4
    capsys.readouterr()
    assert main(["sweep", str(cfg), "--quiet"]) == 2
    assert "exists; pass --resume to continue that study" in capsys.readouterr().err
    assert main(["sweep", str(cfg), "--resume", "--quiet"]) == 0
    assert "0 items run, 4 finished before, 4 in the study" in capsys.readouterr().out
    assert same_numbers(numbers(load_study(tmp_path / "out" / "study.h5")), first) == []
    changed = _study(tmp_path, TINY.replace("n = [2, 3]", "n = [2, 4]").replace("betas = [1e-2, 1e-3]",
                                                                                  "betas = [1e-2]"), "changed.toml")
    assert main(["sweep", str(changed), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "the configuration changed since" in err, err
    assert "systems[0].n: [2, 3] in the file, [2, 4] now" in err and "estimators.betas: [0.01, 0.001] in the file, " \
                                                                       "[0.01] now" in err, err
    # run keys may change: another commit interval resumes
    moved = _study(tmp_path, TINY + "commit_interval = 0.5\n", "moved.toml")
    assert main(["sweep", str(moved), "--resume", "--quiet"]) == 0


def test_a_user_factory_given_as_module_and_function(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(textwrap.dedent("""
        from glep.models import pendulum_chain

        def chain(n, seed, T=3.0, twist=0.0):
            model = pendulum_chain(n, T=T, seed=seed)
            model.params["J"] = model.params["J"] + twist
            return model
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = _study(tmp_path, TINY.replace('family = "coupled_oscillators"', 'factory = "my_models:chain"\n'
                                         'options = { twist = 0.1 }').replace('"echo"', '"civp-residual"'))
    assert main(["sweep", str(cfg), "--quiet"]) == 0
    study = load_study(tmp_path / "out" / "study.h5")
    assert [it["params"]["source"] for it in study.items.values()] == ["my_models:chain"] * 4
    assert all(it["status"] == "ok" and it["metrics"]["relative_error"] < 1e-6 for it in study.items.values())


@dataclass(frozen=True)
class Broken(AbstractEstimator):
    name: ClassVar[str] = "broken"
    label: ClassVar[str] = "broken"

    def estimate(self, problem, nudge, progress=None):
        raise SolverError("Newton did not converge", reason="DIVERGED_MAX_IT")


def test_a_failing_row_is_kept_with_its_reason_and_the_run_exits_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(ODE_RULES, "broken", Rule(lambda comm: Broken()))
    cfg = _study(tmp_path, TINY.replace('"echo"', '"broken"'))
    assert main(["sweep", str(cfg), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "glep: 2 of 4 items failed: 000001-broken (SolverError: Newton did not converge (reason: " \
           "DIVERGED_MAX_IT))" in err, err
    study = load_study(tmp_path / "out" / "study.h5")
    assert study.complete
    assert [it["status"] for it in study.items.values()] == ["ok", "failed", "ok", "failed"]
    assert main(["report", str(study.path)]) == 0
    assert "| 1 (SolverError: Newton did not converge" in capsys.readouterr().out


def test_progress_bar_on_request(tmp_path, capsys):
    cfg = _study(tmp_path)
    assert main(["sweep", str(cfg), "--progress"]) == 0
    err = capsys.readouterr().err
    assert "tiny: 100%" in err and "4/4" in err, err  # tqdm: items done of all, with the time remaining


def test_expansion_order_and_ids_are_the_configurations(tmp_path):
    cfg = sweep_config(_study(tmp_path))
    items = expand(cfg)
    assert [it.id for it in items] == ["000000-pfvp", "000001-echo", "000002-pfvp", "000003-echo"]
    assert [it.point.n for it in items] == [2, 2, 3, 3]
    assert json.loads(json.dumps(items[0].params()))["estimator"] == "pfvp"


def test_report_options_belong_to_their_kind_of_file(tmp_path, capsys):
    cfg = _study(tmp_path)
    assert main(["sweep", str(cfg), "--quiet"]) == 0
    assert main(["report", str(tmp_path / "out" / "study.h5"), "--plot", str(tmp_path / "x.png")]) == 2
    assert "--plot applies to glep compare results" in capsys.readouterr().err
    other = tmp_path / "other.h5"
    other.write_bytes(b"not hdf5")
    assert main(["report", str(other), "--csv", str(tmp_path / "t.csv")]) == 2
    assert "--csv and --plots apply to study files" in capsys.readouterr().err


MPIRUN = shutil.which("mpirun", path=str(Path(sys.executable).parent)) or shutil.which("mpirun")


@pytest.mark.skipif(MPIRUN is None, reason="mpirun not found")
def test_an_error_on_one_rank_stops_every_rank(tmp_path):
    """MPMD: rank 1 is given a study file that does not exist; both ranks stop, the message printed once."""
    good = _study(tmp_path)
    glep = [sys.executable, "-m", "glep.cli", "sweep"]
    cmd = [MPIRUN, "-n", "1", *glep, str(good), "--quiet", ":", "-n", "1", *glep, str(tmp_path / "missing.toml"),
           "--quiet"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1")) as proc:
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("mpirun hung")
    assert proc.returncode != 0
    message = f"glep: error on rank 1 of 2: study file '{tmp_path / 'missing.toml'}' does not exist"
    assert err.count(message) == 1 and err.count("glep: error") == 1, err
    assert not (tmp_path / "out" / "study.h5").exists()


def test_the_guides_study_runs_as_written(tmp_path, monkeypatch, capsys):
    """docs/guide.md, section 11: its TOML study runs and its claims hold (the echo is refused on gyroscopic, the
    periodic row is below 1e-6)."""
    section = (ROOT / "docs" / "guide.md").read_text().split("## 11. Studies")[1].split("\n## ")[0]
    blocks = re.findall(r"```toml\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    Path("study.toml").write_text(blocks[0])
    assert main(["sweep", "study.toml", "--quiet"]) == 0
    study = load_study("guide-study/study.h5")
    assert study.complete and len(study.items) == 2 * 3 * 3 + 2 + 2
    assert all(it["status"] == "ok" and it["metrics"]["relative_error"] < 1e-6 for it in study.items.values())
    assert [it["loss"] for it in study.items.values() if it["params"]["estimator"] == "periodic"] == [PERIODIC_LOSS]
    Path("wrong.toml").write_text(blocks[0].replace('estimators = ["pfvp", "civp-residual"]\n', ""))
    assert main(["sweep", "wrong.toml", "--output", "other.h5", "--quiet"]) == 2
    assert "'echo' cannot run on systems[1] (gyroscopic, n=3, seed=0)" in capsys.readouterr().err
