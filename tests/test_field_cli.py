"""``glep compare --system NAME`` for the field systems (glep.field_families): table, results.h5, refusals.

Every field system runs with two β points and writes results.h5 atomically; every exact row agrees with
the discrete adjoint to ≤ 1e-6 at centred β = 1e-4 (THEORY §6); a name or option that does not apply is
refused (exit 2) with a message naming the choices; an estimator that refuses the problem is a FAILED row
(exit 1).
"""

import json
import re

import h5py
import pytest

from glep.cli import main
from glep.config import DEFAULTS, compare_config
from glep.errors import InputError
from glep.estimators.output import load_report
from glep.estimators.registry import FIELD_ESTIMATORS
from glep.field_families import FIELD_FAMILIES

FAST = ["--betas", "1e-2", "1e-4", "--quiet"]


@pytest.mark.parametrize("system", list(FIELD_FAMILIES))
def test_each_field_system_runs_and_writes_its_results(system, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compare", "--system", system, *FAST, "--output", str(out)]) == 0
    table = capsys.readouterr().out
    family = FIELD_FAMILIES[system]
    labels = ["HEB"] if system == "kerr" else [FIELD_ESTIMATORS[e].label for e in family.estimators]
    rows = {line.split("  ")[0].strip(): line for line in table.splitlines()}
    assert "discrete adjoint" in rows and all(label in rows for label in labels), table
    report = load_report(out / "results.h5")
    assert [r.label for r in report.rows] == labels
    for r in report.rows:
        assert r.status == "ok" and r.metrics["relative_error"] <= 1e-6, (r.name, r.metrics)
    with h5py.File(out / "results.h5") as f:
        assert json.loads(f.attrs["config"])["system"] == system
        assert json.loads(f.attrs["config"])["steps"] == family.steps
    assert not list(out.glob(".*.tmp"))


def test_field_defaults_and_the_ode_defaults_are_unchanged():
    wave = compare_config({"system": "wave"})
    fam = FIELD_FAMILIES["wave"]
    assert (wave.n, wave.steps, wave.estimators) == (fam.n, fam.steps, list(fam.estimators))
    assert compare_config({}).model_dump() == DEFAULTS and DEFAULTS["n"] == 4 and DEFAULTS["steps"] == 400
    assert compare_config({"system": "wave", "n": "8", "steps": "12"}).steps == 12


def test_bad_system_name_names_the_choices(capsys):
    assert main(["compare", "--system", "sine_gordon", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "option --system" in err and "'sine-gordon'" in err and "'coupled_oscillators'" in err, err


@pytest.mark.parametrize(("argv", "message"), [
    (["--system", "wave", "--estimators", "cbvp"], r"\['cbvp'\] do not apply to system 'wave'; choose from"),
    (["--system", "kerr", "--estimators", "pfvp"], r"do not apply to system 'kerr'; choose from \['heb'\]"),
    (["--estimators", "heb"], r"\['heb'\] do not apply to system 'coupled_oscillators'"),
    (["--system", "sine-gordon", "--integrator", "midpoint"], "option --integrator: does not apply to the field"),
    (["--system", "klein-gordon", "--batch", "3"], "option --batch: does not apply to the field"),
])
def test_options_that_do_not_apply_are_refused(argv, message, capsys):
    assert main(["compare", *argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    with pytest.raises(InputError, match=message):
        compare_config({k.lstrip("-"): v if k != "--estimators" else [v] for k, v in zip(argv[::2], argv[1::2],
                                                                                       strict=True)})


def test_heb_on_a_running_cost_is_a_failed_row(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["compare", "--system", "wave", "--estimators", "pfvp", "heb", *FAST, "--output", str(out)])
    captured = capsys.readouterr()
    assert rc == 1
    assert "HEB" in captured.out and "FAILED" in captured.out
    assert "1 of 2 estimators failed: heb (InputError: HEB takes a terminal cost only" in captured.err
    report = load_report(out / "results.h5")
    assert [r.status for r in report.rows] == ["ok", "failed"]


def test_glep_report_reads_a_field_results_file(tmp_path, capsys):
    """``glep report`` prints the stored table as it was (the truth's loss is stored: no spurious note)."""
    out = tmp_path / "out"
    assert main(["compare", "--system", "kerr", "--n", "2", "--steps", "40", *FAST, "--output", str(out)]) == 0
    live = capsys.readouterr().out
    assert main(["report", str(out / "results.h5")]) == 0
    again = capsys.readouterr().out
    row = [line for line in again.splitlines() if line.startswith("HEB")][0]
    assert row.endswith("  exact") and row.split()[1:4] == [line for line in live.splitlines()
                                                             if line.startswith("HEB")][0].split()[1:4]
