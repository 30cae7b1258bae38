"""One validation for ``glep compare``: the same rules for command-line and TOML values, before any work."""

import hashlib
import importlib
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

from glep.cli import main
from glep.config import DEFAULTS, KEYS, compare_config
from glep.errors import InputError

compare_module = importlib.import_module("glep.estimators.compare")  # the package re-exports a function 'compare'
ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "compare.toml"
TINY = ["--steps", "20", "--betas", "1e-3", "--estimators", "pfvp", "--quiet"]


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the computation starts (validation must come first)."""
    def refuse(*args, **kwargs):
        raise AssertionError("compare_estimators ran although the input was invalid")

    monkeypatch.setattr(compare_module, "compare_estimators", refuse)


def _toml_value(value) -> str:
    if isinstance(value, str):
        return repr(value).replace("'", '"')
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


# key, command-line strings, TOML value (None: not expressible there), expected text after the key's label
BAD = [
    ("steps", ["abc"], "abc", "expected an integer, got 'abc'"),
    ("steps", ["0"], 0, "expected an integer >= 1, got"),
    ("steps", ["2.5"], 2.5, "expected an integer, got"),
    ("steps", None, True, "expected a number, got the boolean true"),
    ("n", ["-3"], -3, "expected an integer >= 2, got"),
    ("n", ["1"], 1, "expected an integer >= 2, got"),
    ("batch", ["0"], 0, "expected an integer >= 1, got"),
    ("seed", ["-1"], -1, "expected an integer >= 0, got"),
    ("T", ["inf"], "inf", "expected a finite number, got"),
    ("T", ["nan"], "nan", "expected a finite number, got"),
    ("T", ["-1"], -1.0, "expected a finite number > 0, got"),
    ("T", ["ten"], "ten", "expected a number, got 'ten'"),
    ("gamma", ["inf"], "inf", "expected a finite number, got"),
    ("report_beta", ["0"], 0.0, "expected a finite number > 0, got"),
    ("report_beta", ["-1e-4"], -1e-4, "expected a finite number > 0, got"),
    ("system", ["foo"], "foo", "expected one of 'coupled_oscillators', 'gyroscopic', 'hru_linear', 'hru_logcosh', "
                              "'pendulum_chain', 'sine-gordon', 'klein-gordon', 'wave', 'nls' or 'kerr', got 'foo'"),
    ("system", None, 5, "expected one of 'coupled_oscillators'"),
    ("integrator", ["rk4"], "rk4", "expected one of 'gauss2', 'midpoint', 'stormer-verlet' or 'trapezoid', got 'rk4'"),
    ("betas", ["1e-2", "-1e-3"], [1e-2, -1e-3], "(item 2): expected a finite number > 0, got"),
    ("betas", ["1e-2", "inf"], [1e-2, "inf"], "(item 2): expected a finite number, got"),
    ("betas", ["0"], [0.0], "(item 1): expected a finite number > 0, got"),
    ("betas", None, "1e-3", "expected a list, e.g. ['1e-3'], got the string '1e-3'"),
    ("betas", None, [], "expected a non-empty list, got []"),
    ("nudges", ["centred", "sideways"], ["centred", "sideways"],
     "(item 2): expected one of 'one-sided', 'centred' or 'complex', got 'sideways'"),
    ("nudges", None, "centred", "expected a list, e.g. ['centred'], got the string 'centred'"),
    ("estimators", ["pfvp", "magic"], ["pfvp", "magic"], "(item 2): expected one of 'civp-contrast', "
                                                          "'civp-residual', 'pfvp', 'echo', 'rhel', 'cbvp', "
                                                          "'periodic' or 'heb'"),
    ("estimators", ["pfvp", "pfvp"], ["pfvp", "pfvp"], "each name may appear once, repeated: ['pfvp']"),
    ("estimators", None, "pfvp", "expected a list, e.g. ['pfvp'], got the string 'pfvp'"),
    ("output", None, 3, "expected a string, got 3"),
]


@pytest.mark.parametrize("key,cli,toml,expected", BAD, ids=[f"{b[0]}={b[2]!r}" for b in BAD])
def test_bad_value_named_in_the_message_from_cli_and_toml(key, cli, toml, expected, tmp_path, capsys, no_work):
    out = tmp_path / "out"
    if cli is not None:
        rc = main(["compare", f"--{key.replace('_', '-')}", *cli, "--output", str(out), "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2
        assert f"glep: error: option --{key.replace('_', '-')}" in err and expected in err, err
        assert "Traceback" not in err
    if toml is not None:
        if toml in ("inf", "nan") and key != "system":
            text = f"{key} = {toml}\n"  # TOML's own non-finite floats
        else:
            text = f"{key} = {_toml_value(toml)}\n"
        cfg = tmp_path / "c.toml"
        cfg.write_text(text)
        where = [] if key == "output" else ["--output", str(out)]  # the command line would win
        rc = main(["compare", "--config", str(cfg), *where, "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2
        assert f"glep: error: config key '{key}'" in err and expected in err, err
    assert not out.exists()  # nothing was created: the options were refused first


def test_every_bad_key_is_reported_at_once(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('steps = "abc"\nsystem = 5\n')
    with pytest.raises(InputError) as info:
        compare_config({"T": "inf"}, cfg)
    lines = str(info.value).splitlines()
    assert len(lines) == 3
    assert any(line.startswith("config key 'steps': expected an integer, got 'abc'") for line in lines)
    assert any(line.startswith("config key 'system': expected one of") for line in lines)
    assert any(line.startswith("option --T: expected a finite number, got 'inf'") for line in lines)


def test_command_line_overrides_toml_and_strings_are_read_by_the_same_rules(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[compare]\nsteps = 30\nbetas = [1e-2, 1e-3]\nnudges = ["centred"]\nT = 2.5\n')
    c = compare_config({"steps": "50", "betas": ["1e-1"], "seed": "3"}, cfg)
    assert (c.steps, c.betas, c.nudges, c.T, c.seed) == (50, [0.1], ["centred"], 2.5, 3)
    assert c.system == DEFAULTS["system"] and c.report_beta == DEFAULTS["report_beta"]


@pytest.mark.parametrize("text,expected", [
    ("stepz = 3\n", "unknown option(s) ['stepz']; known: ['system', 'n', 'T'"),
    ("[compare]\nsteps = 3\n[other]\nx = 1\n", "keys ['other'] lie outside the [compare] table"),
    ("compare = 3\n", "'compare' must be a table ([compare]), got 3"),
    ("steps = \n", "is not valid TOML"),
])
def test_bad_toml_file(text, expected, tmp_path, capsys, no_work):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    assert main(["compare", "--config", str(cfg), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.startswith("glep: error: --config"), err


def test_missing_config_file_and_folder_as_config(tmp_path, capsys, no_work):
    assert main(["compare", "--config", str(tmp_path / "nope.toml")]) == 2
    assert f"--config: file '{tmp_path / 'nope.toml'}' does not exist" in capsys.readouterr().err
    assert main(["compare", "--config", str(tmp_path)]) == 2
    assert "is a folder, not a TOML file" in capsys.readouterr().err


def test_negative_beta_on_the_command_line_is_a_value_not_an_option(tmp_path, capsys, no_work):
    """argparse would read ``-1e-3`` as an unknown option; it reaches the validation as a value instead."""
    rc = main(["compare", "--betas", "-1e-3", "--report-beta", "-1e-4", "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "option --betas (item 1): expected a finite number > 0, got '-1e-3'" in err
    assert "option --report-beta: expected a finite number > 0, got '-1e-4'" in err
    assert "unrecognized arguments" not in err and "expected at least one argument" not in err


def test_infinite_horizon_refused_without_numpy_warnings(tmp_path, capsys, no_work):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main(["compare", "--T", "inf", "--output", str(tmp_path / "o")])
    assert rc == 2
    assert "glep: error: option --T: expected a finite number, got 'inf'" in capsys.readouterr().err
    assert [str(w.message) for w in caught] == []


def test_argparse_errors_and_help(capsys):
    assert main(["compare", "--bogus"]) == 2
    err = capsys.readouterr().err
    assert "usage: glep" in err and "glep: error: unrecognized arguments: --bogus" in err
    assert main(["compare", "--steps"]) == 2
    assert "argument --steps: expected one argument" in capsys.readouterr().err
    assert main(["compare", "--help"]) == 0
    assert "--report-beta" in capsys.readouterr().out


# ---- the output folder, checked before computing --------------------------------------------------------------

def test_output_that_is_a_file(tmp_path, capsys, no_work):
    target = tmp_path / "results"
    target.write_text("not a folder")
    assert main(["compare", *TINY, "--output", str(target)]) == 2
    assert f"glep: error: --output: '{target}' is a file, not a folder" in capsys.readouterr().err
    assert target.read_text() == "not a folder"


def test_output_below_a_file_cannot_be_created(tmp_path, capsys, no_work):
    (tmp_path / "f").write_text("")
    assert main(["compare", *TINY, "--output", str(tmp_path / "f" / "sub")]) == 2
    assert f"--output: cannot create the folder '{tmp_path / 'f' / 'sub'}'" in capsys.readouterr().err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_output_folder_not_writable(tmp_path, capsys, no_work):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(["compare", *TINY, "--output", str(ro)]) == 2
        assert f"--output: the folder '{ro}' is not writable" in capsys.readouterr().err
    finally:
        ro.chmod(0o700)


def test_output_folder_refusing_the_test_file(tmp_path, capsys, monkeypatch, no_work):
    """The folder exists but a file cannot be created in it (as for a read-only folder, even as root)."""
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("glep.config.tempfile.mkstemp", refuse)
    assert main(["compare", *TINY, "--output", str(tmp_path)]) == 2
    assert f"--output: the folder '{tmp_path}' is not writable (Permission denied)" in capsys.readouterr().err


def test_output_folder_created_with_parents_and_no_probe_left(tmp_path, capsys):
    out = tmp_path / "a" / "b"
    assert main(["compare", *TINY, "--output", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["error_vs_beta.png", "results.h5"]
    assert "PFVP" in capsys.readouterr().out


# ---- the shipped example --------------------------------------------------------------------------------------

def test_example_config_documents_every_option_at_its_default():
    text = EXAMPLE.read_text()
    for key in KEYS:
        assert f"\n{key} =" in text or f"\n# {key} =" in text, f"examples/compare.toml does not document {key!r}"
    assert compare_config({}, EXAMPLE).model_dump() == DEFAULTS


def test_example_config_runs(tmp_path, capsys):
    """``glep compare --config examples/compare.toml`` (every estimator) with few steps."""
    rc = main(["compare", "--config", str(EXAMPLE), "--steps", "20", "--output", str(tmp_path), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    for label in ("CIVP contrast", "CIVP + residual", "PFVP", "echo", "RHEL", "CBVP"):
        assert label in out
    assert (tmp_path / "results.h5").exists()


# ---- ./dev.sh compare resolves relative paths against the caller's folder --------------------------------------

def test_dev_sh_runs_glep_from_the_callers_folder(tmp_path):
    """A stand-in repository (its set-up already done) whose glep prints its folder and arguments."""
    repo, caller = tmp_path / "repo", tmp_path / "caller"
    (repo / ".venv" / "bin").mkdir(parents=True)
    caller.mkdir()
    shutil.copy(ROOT / "dev.sh", repo / "dev.sh")
    (repo / "pyproject.toml").write_text("[project]\nname = 'stand-in'\n")
    stamp = hashlib.sha256((repo / "pyproject.toml").read_bytes()).hexdigest()
    (repo / ".venv" / ".glep-installed").write_text(stamp + "\n")
    for name, body in (("python", "exit 0"), ("glep", 'echo "cwd=$PWD"; echo "args=$*"')):
        exe = repo / ".venv" / "bin" / name
        exe.write_text(f"#!/bin/sh\n{body}\n")
        exe.chmod(0o755)
    out = subprocess.run(["../repo/dev.sh", "compare", "--config", "c.toml", "--output", "out"], cwd=caller,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert Path(lines[0].removeprefix("cwd=")).resolve() == caller.resolve()
    assert lines[1] == "args=compare --config c.toml --output out"
